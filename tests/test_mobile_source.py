"""The mobile credential source end to end: challenge → MOI (virtual, real HTTP) →
phone signs → checksum, signature, profile, chain, revocation, challenge consumed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from moica_auth.exceptions import (
    CertificateRevoked,
    ChainInvalid,
    IdNumberMismatch,
    MoicaAuthError,
    SessionMismatch,
    SignatureInvalid,
    UntrustedIssuer,
)
from moica_auth.mobile import errors
from moica_auth.mobile.source import MobileCredential, MobileCredentialSource, MobilePending
from moica_auth.stores import MemoryStore, RedisStore
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.mobile_fixtures import (
    AT,
    CITIZEN,
    NO_PHONE,
    ORIGIN,
    OTHER,
    ReplayingTransport,
    TableSource,
    _reset_faults,
    make_source,
    vsp_fixture,
)

__all__ = ["_reset_faults", "vsp_fixture"]

SESSION = "session-key-of-the-citizen"


def _finish(
    vsp: VirtualSpApi,
    source: MobileCredentialSource,
    transaction: str,
    *,
    id_number: str = CITIZEN,
    session: str = SESSION,
) -> MobileCredential:
    vsp.approve(id_number=id_number)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = source.poll(transaction=transaction, session_id=session, origin=ORIGIN, at=AT)
        if isinstance(answer, MobileCredential):
            return answer
        time.sleep(answer.retry_after)
    raise AssertionError("no result")


def _refused(
    vsp: VirtualSpApi,
    source: MobileCredentialSource,
    transaction: str,
    error: type[MoicaAuthError] | tuple[type[MoicaAuthError], ...],
    **kw: Any,
) -> MoicaAuthError:
    with pytest.raises(error) as info:
        _finish(vsp, source, transaction, **kw)
    return info.value


class TestLogin:
    @pytest.mark.parametrize("mode", ["push", "qr", "app2app"])
    def test_mobile_login_yields_a_mobile_credential(self, vsp: VirtualSpApi, mode: str) -> None:
        source = make_source(vsp)
        started = source.start(
            session_id=SESSION, id_number=CITIZEN, mode=mode, client_ip="192.0.2.1"
        )
        assert (started.sp_ticket is None) == (mode == "push")
        assert (started.app_link is not None) == (mode == "app2app")
        inbox = vsp.pending(CITIZEN)
        # The phone is asked to SIGN exactly the issued challenge, never ATH-only.
        assert inbox[-1].op_code == "SIGN"
        tbs = inbox[-1].sign_infos[0]["sign_data"]
        assert tbs.startswith(f"moica-auth/1 origin={ORIGIN} nonce=")
        credential = _finish(vsp, source, started.transaction)
        assert credential.channel == "mobile-sp-api" and credential.form == "mobile"
        assert credential.citizen.form == "mobile"
        assert credential.challenge.tbs == tbs
        assert credential.id_number.value == CITIZEN

    def test_pkcs7_is_supported(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp, sign_type="PKCS#7")
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        assert _finish(vsp, source, started.transaction).form == "mobile"

    def test_the_store_never_holds_the_id_number(self, vsp: VirtualSpApi) -> None:
        store = MemoryStore()
        source = make_source(vsp, store=store)
        source.start(session_id=SESSION, id_number=CITIZEN, mode="push", client_ip="192.0.2.9")
        dump = repr(store.__dict__)
        assert CITIZEN not in dump and CITIZEN[-4:] in dump  # last 4 only (on the cert anyway)

    def test_pending_until_the_citizen_answers(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        answer = source.poll(transaction=started.transaction, session_id=SESSION, at=AT)
        assert isinstance(answer, MobilePending)


class TestRefusals:
    def test_wrong_idp_checksum(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.fault = "bad_checksum"
        _refused(vsp, source, started.transaction, errors.MobileChecksumInvalid)

    def test_signature_over_another_text(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.fault = "other_data"
        _refused(vsp, source, started.transaction, SignatureInvalid)

    def test_certificate_from_another_ca(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.fault = "foreign_cert"
        _refused(vsp, source, started.transaction, (UntrustedIssuer, ChainInvalid))

    def test_card_certificate_on_the_mobile_path(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.fault = "card_cert"
        _refused(vsp, source, started.transaction, errors.MobileCertificateRequired)

    def test_certificate_of_another_person(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.fault = "other_person"
        _refused(vsp, source, started.transaction, IdNumberMismatch)

    def test_revoked_phone_certificate(self, vsp: VirtualSpApi) -> None:
        table = TableSource(revoked={vsp.phone(CITIZEN).signing.certificate.serial_number})
        source = make_source(vsp, revocation=table)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        _refused(vsp, source, started.transaction, CertificateRevoked)

    def test_expired_ticket(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp, time_limit=30)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="qr")
        real = vsp.clock
        vsp.clock = lambda: real() + 31
        try:
            with pytest.raises(errors.MobileTicketExpired):
                source.poll(transaction=started.transaction, session_id=SESSION, at=AT)
        finally:
            vsp.clock = real
        with pytest.raises(errors.MobileTransactionUnknown):  # final: the record is gone
            source.poll(transaction=started.transaction, session_id=SESSION, at=AT)

    def test_reused_ticket_and_result(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        _finish(vsp, source, started.transaction)
        time.sleep(0.25)
        with pytest.raises(errors.MobileTransactionUnknown):
            source.poll(transaction=started.transaction, session_id=SESSION, at=AT)

    def test_replayed_result_for_a_new_transaction(self, vsp: VirtualSpApi) -> None:
        """An attacker on the path replays MOI's answer of an earlier login: the
        idp_checksum covers the transaction_id, so the replay does not verify."""
        source = make_source(vsp)
        transport = ReplayingTransport()
        source.client.transport = transport
        first = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        _finish(vsp, source, first.transaction)
        transport.replay = True
        second = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        time.sleep(0.25)
        with pytest.raises(errors.MobileChecksumInvalid):
            source.poll(transaction=second.transaction, session_id=SESSION, at=AT)

    def test_result_for_another_session(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        calls = vsp.calls["ATH-02"]
        with pytest.raises(SessionMismatch):
            source.poll(transaction=started.transaction, session_id="attacker", at=AT)
        assert vsp.calls["ATH-02"] == calls  # refused before any upstream call
        # and the citizen's own session still completes
        assert _finish(vsp, source, started.transaction).form == "mobile"

    def test_push_flood_to_one_id_number(self, vsp: VirtualSpApi) -> None:
        source = make_source(
            vsp, push_limits={"per_id": 2, "id_window": 60}, max_pending_per_session=20
        )
        for n in range(2):
            source.start(session_id=f"s{n}", id_number=OTHER, mode="push", client_ip=f"192.0.2.{n}")
        pushes = vsp.calls["ATH-03"]
        with pytest.raises(errors.MobileTooManyPushes) as info:
            source.start(session_id="s9", id_number=OTHER, mode="push", client_ip="192.0.2.99")
        assert info.value.http_status == 429 and info.value.data["retry_after"] >= 1
        assert vsp.calls["ATH-03"] == pushes  # the phone did not ring

    def test_push_flood_from_one_ipv6_64(self, vsp: VirtualSpApi) -> None:
        source = make_source(
            vsp, push_limits={"per_ip": 2, "ip_window": 60}, max_pending_per_session=20
        )
        source.start(session_id="a", id_number=CITIZEN, mode="push", client_ip="2001:db8::1")
        source.start(session_id="b", id_number=OTHER, mode="push", client_ip="2001:db8::2")
        with pytest.raises(errors.MobileTooManyPushes):
            source.start(
                session_id="c", id_number=CITIZEN, mode="push", client_ip="2001:db8::ffff:3"
            )

    def test_pending_cap_per_session(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp, max_pending_per_session=2)
        for _ in range(2):
            source.start(session_id="busy", id_number=CITIZEN, mode="qr")
        with pytest.raises(errors.MobileTooManyPending):
            source.start(session_id="busy", id_number=CITIZEN, mode="qr")

    def test_no_bound_phone_with_device_check(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp, check_device=True)
        with pytest.raises(errors.MobileNoDevice):
            source.start(session_id=SESSION, id_number=NO_PHONE, mode="push")

    def test_mode_not_enabled(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp, modes=["qr"])
        with pytest.raises(errors.MobileRequestRejected):
            source.start(session_id=SESSION, id_number=CITIZEN, mode="push")

    def test_cancelled(self, vsp: VirtualSpApi) -> None:
        source = make_source(vsp)
        started = source.start(session_id=SESSION, id_number=CITIZEN, mode="push")
        vsp.cancel(id_number=CITIZEN)
        with pytest.raises(errors.MobileUserCancelled):
            source.poll(transaction=started.transaction, session_id=SESSION, at=AT)


@pytest.mark.redis
def test_single_flight_across_workers(vsp: VirtualSpApi, redis_url: str) -> None:
    """Two workers (two sources on one Redis) and 16 concurrent browser polls make one
    ATH-02 call within one poll interval."""
    store = RedisStore.from_url(redis_url, prefix="mobile-single-flight:")
    workers = [make_source(vsp, store=store, poll_interval=2.0) for _ in range(2)]
    started = workers[0].start(session_id=SESSION, id_number=CITIZEN, mode="push")
    before = vsp.calls["ATH-02"]
    barrier = threading.Barrier(16)

    def poll(n: int) -> None:
        barrier.wait()
        workers[n % 2].poll(transaction=started.transaction, session_id=SESSION, at=AT)

    threads = [threading.Thread(target=poll, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert vsp.calls["ATH-02"] - before == 1
