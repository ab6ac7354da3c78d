"""``moica_auth.login``: the login orchestration without HTTP (no request, no client).

A credential source (the HiPKI card token, or a stub standing in for a second channel),
the typed personal fields and a plain in-memory session go in; a typed outcome or a typed
refusal comes out, with the audit row, the abuse counters and the signals as side effects.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from moica_auth.challenge import Challenge
from moica_auth.exceptions import (
    BirthDateMismatch,
    LoginUnavailable,
    NonceMismatch,
    TooManyAttempts,
)
from moica_auth.login import (
    Assurance,
    ClientInfo,
    Credential,
    HipkiCardSource,
    LoginOutcome,
    LoginRefusal,
    PersonalInput,
    perform_login,
)
from moica_auth.models import CitizenIdentity, LoginAttempt
from moica_auth.services import Services, get_services
from moica_auth.session import SESSION_KEY, SessionRecord
from moica_auth.signals import moica_login_failed, moica_login_succeeded
from moica_auth.testing.pki import CitizenCard
from moica_auth.testing.softcard import SoftCard
from tests.django_fixtures import ALICE_ID

pytestmark = pytest.mark.django_db

CLIENT = ClientInfo(ip="192.0.2.10", origin="http://testserver")


@dataclass
class MemorySession:
    """A session that is not HTTP: what a login left, in a dict."""

    session_id: str = "session-1"
    data: dict[str, Any] = field(default_factory=dict)
    user: Any = None
    abandoned: bool = False
    fail_on_establish: bool = False

    def previous_record(self) -> SessionRecord | None:
        return SessionRecord.read(self.data) if self.user is not None else None

    def establish(self, user: Any, record: SessionRecord) -> None:
        if self.fail_on_establish:
            self.user = user
            raise RuntimeError("session store broke")
        self.user = user
        record.write(self.data)

    def abandon(self) -> None:
        self.abandoned = True
        self.user = None
        self.data.clear()


def issue(session: MemorySession) -> Challenge:
    return get_services().challenges.issue(session_id=session.session_id)


def card_source(card: CitizenCard, challenge: Challenge, **sign: Any) -> HipkiCardSource:
    sign.setdefault("nonce", challenge.nonce_bytes())
    signed = SoftCard(card).sign(challenge.tbs_bytes(), **sign)
    return HipkiCardSource(
        signature=signed["signature"],
        signature_type=sign.get("signature_type", "PKCS7"),
        certificate=signed["certb64"],
        card_sn=signed.get("cardSN"),
        nonce=challenge.nonce,
    )


def test_card_login_without_http(moica_settings, cards):
    session = MemorySession()
    challenge = issue(session)
    result = perform_login(
        card_source(cards.alice, challenge), PersonalInput(), session=session, client=CLIENT
    )
    assert isinstance(result, LoginOutcome), result
    assert result.assurance == Assurance(channel="hipki", form="card", revocation="unchecked")
    assert result.fields == frozenset()
    assert session.user == result.user == CitizenIdentity.objects.get().user
    assert session.data[SESSION_KEY]["fingerprint"] == result.citizen.fingerprint_sha256
    attempt = LoginAttempt.objects.get()
    assert attempt.outcome == "ok" and attempt.client_ip == "192.0.2.10"
    assert attempt.signed_content == challenge.tbs


@pytest.mark.parametrize("encoding", ["bytes", "text"])
def test_verifier_accepts_both_nonce_encodings(moica_settings, cards, encoding):
    session = MemorySession()
    challenge = issue(session)
    nonce = challenge.nonce_bytes() if encoding == "bytes" else challenge.nonce.encode()
    result = perform_login(
        card_source(cards.alice, challenge, nonce=nonce),
        PersonalInput(),
        session=session,
        client=CLIENT,
    )
    assert isinstance(result, LoginOutcome), result


@pytest.mark.parametrize("nonce", [b"another nonce", None])
def test_verifier_refuses_a_wrong_or_missing_signed_nonce(moica_settings, cards, nonce):
    session = MemorySession()
    challenge = issue(session)
    sign: dict[str, Any] = {"nonce": nonce}
    result = perform_login(
        card_source(cards.alice, challenge, **sign),
        PersonalInput(),
        session=session,
        client=CLIENT,
    )
    assert isinstance(result, LoginRefusal)
    assert isinstance(result.error, NonceMismatch)
    assert session.user is None and not CitizenIdentity.objects.exists()


def test_refusal_is_typed_counted_audited_and_signalled(moica_settings, cards):
    seen: list[str] = []

    def failed(sender: Any, request: Any, code: str, citizen: Any, **kwargs: Any) -> None:
        assert request is None  # no HTTP request in this login
        seen.append(code)

    moica_login_failed.connect(failed)
    try:
        results = []
        for _ in range(4):
            session = MemorySession()
            source = card_source(cards.alice, issue(session))
            personal = PersonalInput(id_number=ALICE_ID, birth_date="0700101")
            results.append(perform_login(source, personal, session=session, client=CLIENT))
    finally:
        moica_login_failed.disconnect(failed)
    assert all(isinstance(r, LoginRefusal) for r in results)
    errors = [r.error for r in results if isinstance(r, LoginRefusal)]
    assert [type(e) for e in errors[:3]] == [BirthDateMismatch] * 3
    assert isinstance(errors[3], TooManyAttempts)  # the default limit is 3 per card
    assert seen == ["birth_date_mismatch"] * 3 + ["too_many_attempts"]
    assert LoginAttempt.objects.filter(outcome="birth_date_mismatch").count() == 3


def test_failure_after_the_session_was_established_is_undone(moica_settings, cards):
    session = MemorySession(fail_on_establish=True)
    result = perform_login(
        card_source(cards.alice, issue(session)), PersonalInput(), session=session, client=CLIENT
    )
    assert isinstance(result, LoginRefusal) and isinstance(result.error, LoginUnavailable)
    assert session.abandoned and session.user is None
    assert not LoginAttempt.objects.filter(outcome="ok").exists()


class StubMobileSource:
    """A second channel: the mobile citizen certificate, whose app signs the challenge
    text with PKCS#1 and hands back its certificate (no HiPKI, no token shape of its own
    here). It adds only what the channel needs; everything after the credential is the
    same orchestration."""

    channel = "mobile"

    def __init__(self, card: CitizenCard, nonce: str) -> None:
        self.card = card
        self.nonce = nonce
        self.obtained = 0

    def claimed_fingerprint(self) -> str | None:
        return None

    def obtain(
        self, services: Services, *, session_id: str, client: ClientInfo, at: datetime
    ) -> Credential:
        self.obtained += 1
        challenge = services.challenges.consume(
            nonce=self.nonce, session_id=session_id, origin=client.origin
        )
        signed = SoftCard(self.card).sign(challenge.tbs_bytes(), signature_type="PKCS1")
        verified = services.verifier.verify(
            content=challenge.tbs_bytes(),
            signature=base64.b64decode(signed["signature"]),
            signature_type="PKCS1",
            certificate=signed["certb64"],
            at=at,
        )
        return Credential(channel=self.channel, verified=verified, challenge=challenge)


def test_second_channel_reuses_the_whole_login(moica_settings, pki):
    phone = pki.issue_card(generation="G3", name="測試行動", form="mobile", label="phone")
    session = MemorySession()
    source = StubMobileSource(phone, issue(session).nonce)
    ok: list[Any] = []

    def succeeded(sender: Any, code: str, citizen: Any, **kwargs: Any) -> None:
        ok.append(citizen)

    moica_login_succeeded.connect(succeeded)
    try:
        result = perform_login(source, PersonalInput(), session=session, client=CLIENT)
    finally:
        moica_login_succeeded.disconnect(succeeded)
    assert isinstance(result, LoginOutcome), result
    assert result.assurance == Assurance(channel="mobile", form="mobile", revocation="unchecked")
    assert session.data[SESSION_KEY]["form"] == "mobile"
    assert [c.fingerprint_sha256 for c in ok] == [result.citizen.fingerprint_sha256]
    # The same challenge cannot be used twice, whatever the channel.
    again = perform_login(source, PersonalInput(), session=MemorySession(), client=CLIENT)
    assert isinstance(again, LoginRefusal)
    assert source.obtained == 2


def test_login_page_shows_the_origin_being_signed_for(moica_settings):
    from django.test import Client

    page = Client().get("/moica/login-page/", HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-moica-origin="http://testserver"' in text
    assert "<strong>http://testserver</strong>" in text and "網址列" in text
    moica_settings.MOICA_AUTH_ORIGIN = "https://portal.example.gov.tw"
    english = Client().get("/moica/login-page/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "<strong>https://portal.example.gov.tw</strong>" in english
    assert "address bar" in english
