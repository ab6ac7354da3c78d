"""The card login, without HTTP: verified credential → citizen → user.

Every channel (HiPKI with the card today, the mobile citizen certificate next) ends in
the same sequence once a signature has arrived, and this module is its one copy:

1. the **credential source** of the channel consumes the challenge and verifies its
   token (signature, certificate profile, chain, revocation), returning a
   :class:`Credential`; :class:`HipkiCardSource` is the source for the card token;
2. the certificate lock (abuse limits, :mod:`moica_auth.ratelimit`);
3. the personal fields typed by the citizen, verified by the configured verifiers
   (:mod:`moica_auth.identity.verifiers`), which also report what they *proved*;
4. identity binding (:class:`~moica_auth.backends.MoicaBackend`): an account is keyed by
   an ID-number hash only on pair-proving evidence of this very login;
5. the caller's session is established (:class:`LoginSession`), then audit and signals.

:func:`perform_login` returns a :class:`LoginOutcome` or a :class:`LoginRefusal`; it never
raises for a refusal. The HTTP view (:mod:`moica_auth.views`) only parses the request,
calls it and writes the answer.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.contrib.auth import authenticate
from django.db import transaction

from moica_auth import signals
from moica_auth.backends import MoicaToken
from moica_auth.certificate import CitizenCertificate, load_certificate
from moica_auth.challenge import Challenge
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    AccountUnavailable,
    FieldRequired,
    LoginUnavailable,
    MalformedRequest,
    MoicaAuthError,
    TooManyAttempts,
)
from moica_auth.models import LoginAttempt
from moica_auth.ratelimit import Reservation
from moica_auth.revocation.types import RevocationResult
from moica_auth.services import Services, get_services
from moica_auth.session import SessionRecord
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import VerifiedLogin

__all__ = [
    "PERSONAL_FIELDS",
    "Assurance",
    "ClientInfo",
    "Credential",
    "CredentialSource",
    "HipkiCardSource",
    "LoginOutcome",
    "LoginRefusal",
    "LoginSession",
    "PersonalInput",
    "RevocationSummary",
    "admit_client",
    "perform_login",
    "refuse",
    "revocation_of",
]

logger = logging.getLogger("moica_auth")

#: Personal fields a login may verify besides the card itself.
PERSONAL_FIELDS = ("id_number", "birth_date")


# --- typed input ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientInfo:
    """Who is asking: the client address (abuse limits, audit), the ``Origin`` header the
    challenge must have been issued for, and the HTTP request if there is one (it is only
    handed to signal receivers)."""

    ip: str | None
    origin: str | None = None
    request: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, repr=False)
class PersonalInput:
    """The personal fields typed by the citizen (raw text) and those a step-up page asked
    for. ``repr()`` never shows the values."""

    id_number: str | None = None
    birth_date: str | None = None
    requested: frozenset[str] = frozenset()

    def posted(self) -> frozenset[str]:
        return frozenset(name for name in PERSONAL_FIELDS if getattr(self, name) is not None)

    def __repr__(self) -> str:
        return f"PersonalInput(posted={sorted(self.posted())}, requested={sorted(self.requested)})"


@dataclass(frozen=True)
class RevocationSummary:
    """What the login keeps of a revocation result: its status, source and time."""

    status: str
    source: str
    checked_at: datetime

    def as_json(self) -> dict[str, str]:
        return {
            "status": self.status,
            "source": self.source,
            "checked_at": self.checked_at.isoformat(),
        }


def revocation_of(result: RevocationResult | None, *, now: datetime) -> RevocationSummary | None:
    """The one place that turns a revocation result into the session's summary
    (``None``: not checked)."""
    if result is None:
        return None
    return RevocationSummary(
        status=result.status,
        source=result.source or "",
        checked_at=result.checked_at or now,
    )


@dataclass(frozen=True)
class Credential:
    """A verified credential from one channel: the certificate path (and status) that
    signed the consumed challenge.

    ``verified`` is the channel verifier's result (for HiPKI a
    :class:`~moica_auth.verifier.VerifiedLogin`: ``.citizen``, ``.chain``,
    ``.revocation``); ``evidence`` is what the audit row keeps of a successful login
    (signed text, signature, certificate), or ``None``.
    """

    channel: str
    verified: VerifiedLogin = field(repr=False)
    challenge: Challenge = field(repr=False)
    evidence: tuple[str, str, str] | None = field(default=None, repr=False)

    @property
    def citizen(self) -> CitizenCertificate:
        citizen: CitizenCertificate = self.verified.citizen
        return citizen


class CredentialSource(Protocol):
    """A login channel: turns what the client sent into a :class:`Credential`.

    ``claimed_fingerprint`` is the certificate the client *says* it signed with (or
    ``None``), used only to refuse a locked certificate before any expensive work;
    ``obtain`` consumes the challenge (single use) and verifies the token, raising a
    :class:`MoicaAuthError` on any refusal.
    """

    channel: str

    def claimed_fingerprint(self) -> str | None: ...

    def obtain(
        self, services: Services, *, session_id: str, client: ClientInfo, at: datetime
    ) -> Credential: ...


class HipkiCardSource:
    """The card token HiPKI returns (``signature``, ``signature_type``, ``certb64``,
    ``cardSN``) for the challenge with ``nonce``."""

    channel = "hipki"

    def __init__(
        self,
        *,
        signature: str,
        signature_type: str,
        certificate: str | None,
        card_sn: str | None,
        nonce: str,
    ) -> None:
        self.signature = signature
        self.signature_type = signature_type
        self.certificate = certificate
        self.card_sn = card_sn
        self.nonce = nonce
        # The certificate parsed by claimed_fingerprint, handed on to the verifier so
        # that it is not decoded and parsed a second time.
        self._parsed: x509.Certificate | None = None

    def __repr__(self) -> str:
        return f"HipkiCardSource(signature_type={self.signature_type!r})"

    def claimed_fingerprint(self) -> str | None:
        if self.certificate is None:
            return None
        self._parsed = load_certificate(self.certificate)
        return self._parsed.fingerprint(hashes.SHA256()).hex()

    def obtain(
        self, services: Services, *, session_id: str, client: ClientInfo, at: datetime
    ) -> Credential:
        challenge = services.challenges.consume(
            nonce=self.nonce, session_id=session_id, origin=client.origin
        )
        try:
            verified = services.verifier.verify(
                content=challenge.tbs_bytes(),
                signature=self.signature,
                signature_type=self.signature_type,
                certificate=self._parsed if self._parsed is not None else self.certificate,
                # HiPKI may sign the nonce's text or the 32 bytes it encodes.
                expected_nonces=(challenge.nonce_bytes(), challenge.nonce.encode("ascii")),
                expected_card_number=self.card_sn,
                at=at,
            )
        except MoicaAuthError:
            raise
        except Exception as exc:
            # Fail closed on anything the verifier did not anticipate; never a 500 for
            # attacker-chosen bytes. Only the exception type is logged.
            logger.exception("moica verifier raised %s", type(exc).__name__)
            raise MalformedRequest("the signed token could not be processed") from exc
        leaf_der = verified.signature.certificate.public_bytes(serialization.Encoding.DER)
        return Credential(
            channel=self.channel,
            verified=verified,
            challenge=challenge,
            evidence=(challenge.tbs, self.signature, base64.b64encode(leaf_der).decode()),
        )


class LoginSession(Protocol):
    """The caller's session (for HTTP: the Django session of the request).

    ``establish`` logs ``user`` in and writes the session record (in this order: Django's
    ``login()`` rotates the session); ``abandon`` undoes it after a later failure.
    """

    @property
    def session_id(self) -> str: ...

    def previous_record(self) -> SessionRecord | None: ...

    def establish(self, user: Any, record: SessionRecord) -> None: ...

    def abandon(self) -> None: ...


# --- typed outcome ----------------------------------------------------------------------


@dataclass(frozen=True)
class Assurance:
    """How the citizen was authenticated: the channel (``"hipki"``, …), the certificate
    form (``"card"``/``"mobile"``) and where the revocation status came from
    (``"ocsp"``, ``"crl"``, or ``"unchecked"`` when revocation checking is off)."""

    channel: str
    form: str
    revocation: str


@dataclass(frozen=True)
class LoginOutcome:
    """A successful login."""

    user: Any
    citizen: CitizenCertificate
    fields: frozenset[str]
    assurance: Assurance
    record: SessionRecord


@dataclass(frozen=True)
class LoginRefusal:
    """A refused login: the error to answer with, and the citizen when the signature had
    already verified (``None`` otherwise)."""

    error: MoicaAuthError
    citizen: CitizenCertificate | None = None


# --- the orchestration ------------------------------------------------------------------


def perform_login(
    source: CredentialSource,
    personal: PersonalInput,
    *,
    session: LoginSession,
    client: ClientInfo,
    services: Services | None = None,
    reservation: Reservation | None = None,
) -> LoginOutcome | LoginRefusal:
    """Run the whole login for a credential from ``source``.

    ``reservation``: the address's attempt from :func:`admit_client`, when the caller
    reserved it before parsing; otherwise it is reserved here.

    Refusals (every :class:`MoicaAuthError`) are counted, audited and signalled, and
    returned as :class:`LoginRefusal`; anything unexpected becomes
    ``LoginRefusal(LoginUnavailable)`` and a session already established is abandoned.
    """
    try:
        services = services or get_services()
    except MoicaAuthError as exc:
        logger.error("moica login unavailable: %s", exc.code)
        return LoginRefusal(exc)
    citizen: CitizenCertificate | None = None
    held = reservation if reservation is not None else Reservation()
    try:
        try:
            # An address is held to its limit before any work on its token.
            services.limiter.reserve(held, ip=client.ip)
            services.limiter.check(ip=None, fingerprint=source.claimed_fingerprint())
            now = services.clock()
            credential = source.obtain(
                services, session_id=session.session_id, client=client, at=now
            )
            citizen = credential.citizen
            # Only a verified signature counts against the certificate: otherwise anyone
            # could lock a citizen out by posting their (public) certificate with garbage.
            # Reserved before the personal-data verifiers run (an oracle for guesses).
            services.limiter.reserve(held, fingerprint=citizen.fingerprint_sha256)
            fields, id_hash = _verify_personal_data(services, citizen, personal, held)
            user = _bind(credential, fields, id_hash, client)
        except MoicaAuthError as exc:
            _on_failure(services, exc, client=client, citizen=citizen, reservation=held)
            return LoginRefusal(exc, citizen)
        return _complete(services, session, client, credential, user, fields, now, held)
    except Exception as exc:
        # Only the type is logged: the message or traceback may quote the request.
        logger.error("moica login failed unexpectedly: %s", type(exc).__name__)
        error = LoginUnavailable(type(exc).__name__)
        # 5xx: counts for nobody; the slots are released.
        _on_failure(services, error, client=client, citizen=None, reservation=held)
        return LoginRefusal(error)


def admit_client(services: Services, client: ClientInfo) -> Reservation:
    """Reserve an attempt for the client address before any work on its request, its
    body included (``TooManyAttempts`` when it is locked or all its attempts are taken).
    Hand the reservation to :func:`perform_login` or :func:`refuse`."""
    reservation = Reservation()
    services.limiter.reserve(reservation, ip=client.ip)
    return reservation


def refuse(
    error: MoicaAuthError,
    *,
    client: ClientInfo,
    services: Services | None = None,
    reservation: Reservation | None = None,
) -> LoginRefusal:
    """Count, audit and signal a refusal decided before :func:`perform_login` ran (a
    locked address, a malformed request), as :func:`perform_login` does its own."""
    _on_failure(services, error, client=client, citizen=None, reservation=reservation)
    return LoginRefusal(error)


def _bind(
    credential: Credential, fields: frozenset[str], id_hash: str | None, client: ClientInfo
) -> Any:
    token = MoicaToken.create(
        citizen=credential.citizen, fields=fields, id_hash=id_hash, verified=credential.verified
    )
    user = authenticate(client.request, moica_token=token)
    if user is None:
        raise AccountUnavailable("no active user for this citizen")
    return user


def _complete(
    services: Services,
    session: LoginSession,
    client: ClientInfo,
    credential: Credential,
    user: Any,
    fields: frozenset[str],
    now: datetime,
    held: Reservation,
) -> LoginOutcome | LoginRefusal:
    citizen = credential.citizen
    revocation = revocation_of(credential.verified.revocation, now=now)
    previous = session.previous_record()
    record = SessionRecord.from_login(
        credential.verified,
        user_pk=str(user.pk),
        fields=fields,
        previous=previous if previous is not None and previous.user_pk == str(user.pk) else None,
        revocation=revocation.as_json() if revocation else None,
        now=now,
        configured=_trust_holds(services),
        channel=credential.channel,
    )
    try:
        # One savepoint: a database error here rolls back the login's own writes and
        # leaves an outer transaction (ATOMIC_REQUESTS) usable for the undo and audit.
        with transaction.atomic():
            session.establish(user, record)
            if fields >= frozenset(PERSONAL_FIELDS):
                # Only a login that proved every personal field clears the card's failures.
                services.limiter.succeeded(fingerprint=citizen.fingerprint_sha256, reservation=held)
            _audit(
                outcome=LoginAttempt.OK,
                ip=client.ip,
                citizen=citizen,
                revocation=revocation,
                user=user,
                evidence=credential.evidence,
            )
    except Exception as exc:
        logger.error("moica login failed after login(): %s", type(exc).__name__)
        try:
            session.abandon()
        except Exception:
            logger.error("moica logout after a failed login failed")
        error = LoginUnavailable(type(exc).__name__)
        _on_failure(services, error, client=client, citizen=None, reservation=held)
        return LoginRefusal(error)
    try:
        services.limiter.settle(held, counted=frozenset())
    except MoicaAuthError:
        logger.warning("moica rate limit store unavailable while releasing an attempt")
    logger.info("moica login ok fingerprint=%s", citizen.fingerprint_sha256[:16])
    _send(signals.moica_login_succeeded, client, code="ok", citizen=citizen)
    return LoginOutcome(
        user=user,
        citizen=citizen,
        fields=fields,
        assurance=Assurance(
            channel=credential.channel,
            form=citizen.form,
            revocation=revocation.source if revocation and revocation.source else "unchecked",
        ),
        record=record,
    )


def _trust_holds(services: Services) -> Callable[[x509.Certificate], bool] | None:
    """``TrustStore.holds`` of the verifier's trust store (``None`` for a verifier
    without one: the session record then keeps every intermediate)."""
    trust = getattr(getattr(services.verifier, "config", None), "trust", None)
    return trust.holds if isinstance(trust, TrustStore) else None


def _verify_personal_data(
    services: Services, citizen: CitizenCertificate, personal: PersonalInput, held: Reservation
) -> tuple[frozenset[str], str | None]:
    """Verify the personal fields; return (verified field names, ID-number HMAC to bind
    the account to, or ``None``)."""
    from moica_auth.identity.id_number import id_number_hash, parse_id_number
    from moica_auth.identity.roc_date import parse_birth_date
    from moica_auth.identity.verifiers import PersonalData, verify_personal_evidence

    posted = personal.posted()
    required = frozenset(app_settings.REQUIRED_FIELDS | personal.requested | posted)
    missing = sorted(required - posted)
    if missing:
        raise FieldRequired("personal data required", fields=missing)
    if not required:
        return frozenset(), None
    id_number = parse_id_number(personal.id_number) if personal.id_number is not None else None
    today: date = services.clock().date()
    birth_date = (
        parse_birth_date(personal.birth_date, today=today)
        if personal.birth_date is not None
        else None
    )
    if id_number is not None:
        # Guesses at one person's birth date spread over several cards still meet one
        # limit: the (keyed) hash of the typed number holds a slot too.
        guess_key = id_number_hash(id_number, key=app_settings.HASH_KEY)
        services.limiter.reserve(held, id_key=guess_key)
    evidence = verify_personal_evidence(
        citizen=citizen,
        data=PersonalData(id_number=id_number, birth_date=birth_date),
        required=required,
        verifiers=services.personal_verifiers,
    )
    id_hash = None
    # The binding rule (docs/security.md): an account is keyed by an ID number only when
    # a verifier proved, in this login, that this number belongs to this certificate.
    if id_number is not None and "id_number" in evidence.pair_proven:
        id_hash = guess_key
    return evidence.fields, id_hash


def _audit(
    *,
    outcome: str,
    ip: str | None,
    citizen: CitizenCertificate | None,
    revocation: RevocationSummary | None = None,
    user: Any = None,
    evidence: tuple[str, str, str] | None = None,
) -> None:
    row = LoginAttempt(
        outcome=outcome[:64],
        cert_fingerprint=citizen.fingerprint_sha256 if citizen else "",
        cert_serial=citizen.serial_number_hex[:64] if citizen else "",
        issuer=citizen.issuer[:500] if citizen else "",
        revocation_source=(revocation.source if revocation else "")[:16],
        revocation_checked_at=revocation.checked_at if revocation else None,
        client_ip=ip,
        user=user,
    )
    if evidence is not None:
        row.signed_content, row.signature, row.certificate = evidence
    row.save()


def _send(signal: Any, client: ClientInfo, **kwargs: Any) -> None:
    """Send ``signal``; a failing receiver is logged (by type) and does not change the
    answer, which is already decided (``Signal.send_robust``)."""
    for receiver, result in signal.send_robust(
        sender=perform_login, request=client.request, **kwargs
    ):
        if isinstance(result, Exception):
            logger.error(
                "moica signal receiver %s raised %s",
                getattr(receiver, "__qualname__", receiver),
                type(result).__name__,
            )


def _on_failure(
    services: Services | None,
    exc: MoicaAuthError,
    *,
    client: ClientInfo,
    citizen: CitizenCertificate | None,
    reservation: Reservation | None = None,
) -> None:
    ip = client.ip
    fingerprint = citizen.fingerprint_sha256 if citizen is not None else None
    # Server-side trouble (5xx: an OCSP outage, Redis down, misconfiguration) is not the
    # client's attempt and must not lock a whole office behind one NAT address. A missing
    # field is no guess at the card holder's data, so it does not count against the card.
    counted: frozenset[str] = frozenset()
    if exc.http_status < 500 and not isinstance(exc, TooManyAttempts):
        counted = frozenset({"ip"} if isinstance(exc, FieldRequired) else {"ip", "cert", "id"})
    if services is not None:
        try:
            if reservation is not None:
                services.limiter.settle(reservation, counted=counted)
            elif counted:
                services.limiter.failed(ip=ip, fingerprint=None)
        except MoicaAuthError:
            logger.warning("moica rate limit store unavailable while counting a failure")
    logger.info(
        "moica login refused code=%s fingerprint=%s",
        exc.code,
        fingerprint[:16] if fingerprint else "-",
    )
    try:
        # A refusal by a lock before any signature verified costs the sender nothing:
        # only the first per address and lock period gets a row, so a locked client
        # cannot fill the table (the log line above records every one).
        if (
            not isinstance(exc, TooManyAttempts)
            or citizen is not None
            or (services is not None and services.limiter.first_lock_refusal(ip=ip))
        ):
            _audit(outcome=exc.code, ip=ip, citizen=citizen)
    except Exception:  # the refusal stands even if the audit row cannot be written
        logger.error("moica audit row for a refusal could not be written")
    _send(signals.moica_login_failed, client, code=exc.code, citizen=citizen)
