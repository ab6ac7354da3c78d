"""OcspSource (RFC 6960) against a real local responder: every check rejects with its code."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

from moica_auth.exceptions import (
    ConfigurationError,
    MoicaAuthError,
    OcspInvalid,
    RevocationUnavailable,
)
from moica_auth.revocation.ocsp import OcspSource, build_request, responder_url_of
from moica_auth.stores import MemoryStore, RedisStore
from moica_auth.testing.pki import CertifiedKey, CitizenCard, TestPKI
from moica_auth.testing.responders import ResponderServer, _set_produced_at
from tests.ocsp_fixtures import (
    CLIENT_TIMEOUT,
    NOW,
    Clock,
    CountingStore,
)
from tests.validation_fixtures import with_duplicate_extension, with_unknown_key_algorithm


def source(**kwargs: object) -> OcspSource:
    kwargs.setdefault("timeout", CLIENT_TIMEOUT)
    return OcspSource(**kwargs)  # type: ignore[arg-type]


def ask(src: OcspSource, card: CitizenCard, *, at=NOW):
    return src.status(certificate=card.signing.certificate, issuer=card.issuer.certificate, at=at)


def rejects(exc_type: type[MoicaAuthError], code: str, src: OcspSource, card: CitizenCard, **kw):
    with pytest.raises(exc_type) as info:
        ask(src, card, **kw)
    assert info.value.code == code
    return info.value


# --- answers ------------------------------------------------------------------------------


def test_good_from_the_aia_responder(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    assert responder_url_of(card_g3.signing.certificate) == ocsp_server.url_for("/ocsp")
    answer = ask(source(), card_g3)
    assert answer.status == "good"
    assert answer.source == "ocsp"
    assert answer.this_update == NOW
    assert answer.next_update == NOW + timedelta(hours=12)
    assert ocsp_server.hits("/ocsp") == 1


def test_good_for_g2_from_the_shared_responder(
    ocsp_server: ResponderServer, card_g2: CitizenCard
) -> None:
    assert ask(source(), card_g2).status == "good"


def test_revoked_carries_reason_and_time(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    when = NOW - timedelta(days=3)
    ocsp_server.set_status(
        card_g3.signing.certificate.serial_number,
        "revoked",
        revoked_at=when,
        reason="key_compromise",
    )
    answer = ask(source(), card_g3)
    assert answer.status == "revoked"
    assert answer.reason == "key_compromise"
    assert answer.revoked_at == when


def test_certificate_hold_reads_hold(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_status(card_g3.signing.certificate.serial_number, "hold", revoked_at=NOW)
    answer = ask(source(), card_g3)
    assert answer.status == "hold"
    assert answer.reason == "certificate_hold"


def test_unknown_fails_closed(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_status(card_g3.signing.certificate.serial_number, "unknown")
    rejects(RevocationUnavailable, "revocation_unavailable", source(), card_g3)


def test_rejects_certificate_without_responder(
    ocsp_server: ResponderServer, ocsp_pki: TestPKI
) -> None:
    card = ocsp_pki.issue_card(generation="G2", ocsp_url=None, label="ocsp-tests/no-aia")
    rejects(RevocationUnavailable, "revocation_unavailable", source(), card)
    assert ocsp_server.hits("/ocsp") == 0


def test_responder_url_override_and_rewrite(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    ocsp_server.add_ocsp(issuer=card_g3.issuer.certificate, signer=card_g3.issuer, path="/alt")
    aia = ocsp_server.url_for("/ocsp")
    assert ask(source(responder_urls={aia: ocsp_server.url_for("/alt")}), card_g3).status == "good"
    assert ask(source(responder_url=ocsp_server.url_for("/alt")), card_g3).status == "good"
    assert ocsp_server.hits("/alt") == 2
    assert ocsp_server.hits("/ocsp") == 0


# --- transport failures -------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["down", "slow", "http500", "truncate"])
def test_transport_failure_is_unavailable(
    ocsp_server: ResponderServer, card_g3: CitizenCard, fault: str
) -> None:
    ocsp_server.set_fault("/ocsp", fault)
    rejects(RevocationUnavailable, "revocation_unavailable", source(), card_g3)


def test_stopped_responder_is_unavailable(ocsp_pki: TestPKI, card_g3: CitizenCard) -> None:
    stopped = ResponderServer().start()
    url = stopped.url_for("/ocsp")
    stopped.stop()
    rejects(RevocationUnavailable, "revocation_unavailable", source(responder_url=url), card_g3)


def test_garbage_body_is_invalid(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_fault("/ocsp", "garbage")
    rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)


def test_oversized_body_is_invalid(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    rejects(OcspInvalid, "ocsp_invalid", source(max_response_bytes=100), card_g3)


def test_unauthorized_responder_is_invalid(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    # A responder that serves only G2 answers "unauthorized" for a G3 certificate.
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g2.certificate, signer=ocsp_pki.moica_g2, path="/g2")
    err = rejects(
        OcspInvalid, "ocsp_invalid", source(responder_url=ocsp_server.url_for("/g2")), card_g3
    )
    assert "UNAUTHORIZED" in err.detail


# --- response verification ----------------------------------------------------------------


def test_rejects_wrong_signer(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_fault("/ocsp", "wrong_signer")
    rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)


def test_rejects_answer_for_another_certificate(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    ocsp_server.set_fault("/ocsp", "wrong_cert_id")
    rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)


def test_rejects_g2_answer_signed_by_g3_with_the_same_name(
    ocsp_server: ResponderServer, card_g2: CitizenCard, ocsp_pki: TestPKI
) -> None:
    # MOICA G2 and G3 share their DN: only the key tells them apart.
    ocsp_server.add_ocsp(
        issuer=ocsp_pki.moica_g2.certificate, signer=ocsp_pki.moica_g3, path="/mix"
    )
    rejects(OcspInvalid, "ocsp_invalid", source(responder_url=ocsp_server.url_for("/mix")), card_g2)


def test_accepts_delegated_responder(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    delegate = ocsp_pki.issue_ocsp_responder(issuer=ocsp_pki.moica_g3, label="good")
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g3.certificate, signer=delegate, path="/delegated")
    answer = ask(source(responder_url=ocsp_server.url_for("/delegated")), card_g3)
    assert answer.status == "good"


def test_rejects_delegated_responder_without_ocsp_signing_eku(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    delegate = ocsp_pki.issue_ocsp_responder(
        issuer=ocsp_pki.moica_g3, label="no-eku", with_ocsp_signing_eku=False
    )
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g3.certificate, signer=delegate, path="/no-eku")
    err = rejects(
        OcspInvalid, "ocsp_invalid", source(responder_url=ocsp_server.url_for("/no-eku")), card_g3
    )
    assert "OCSPSigning" in err.detail


def test_rejects_delegated_responder_of_another_ca(
    ocsp_server: ResponderServer, card_g2: CitizenCard, ocsp_pki: TestPKI
) -> None:
    delegate = ocsp_pki.issue_ocsp_responder(issuer=ocsp_pki.moica_g3, label="other-ca")
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g2.certificate, signer=delegate, path="/other-ca")
    err = rejects(
        OcspInvalid, "ocsp_invalid", source(responder_url=ocsp_server.url_for("/other-ca")), card_g2
    )
    assert "not issued by the CA" in err.detail


def test_rejects_expired_delegated_responder(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    delegate = ocsp_pki.issue_ocsp_responder(
        issuer=ocsp_pki.moica_g3,
        label="expired",
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=35),
    )
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g3.certificate, signer=delegate, path="/expired")
    err = rejects(
        OcspInvalid, "ocsp_invalid", source(responder_url=ocsp_server.url_for("/expired")), card_g3
    )
    assert "not valid" in err.detail


def test_rejects_wrong_nonce(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_fault("/ocsp", "wrong_nonce")
    err = rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)
    assert "nonce" in err.detail


def test_rejects_missing_nonce(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_fault("/ocsp", "no_nonce")
    err = rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)
    assert "nonce" in err.detail


def test_nonce_optout_accepts_responder_without_nonce(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    ocsp_server.set_fault("/ocsp", "no_nonce")
    src = source(nonce_optout=frozenset({ocsp_server.url_for("/ocsp")}))
    assert ask(src, card_g3).status == "good"


def test_rejects_stale_response(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    ocsp_server.set_fault("/ocsp", "stale")
    err = rejects(OcspInvalid, "ocsp_invalid", source(), card_g3)
    assert "stale" in err.detail


def test_rejects_response_past_next_update_beyond_skew(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    src = source(clock_skew=timedelta(minutes=5))
    assert ask(src, card_g3, at=NOW + timedelta(hours=12, minutes=4)).status == "good"
    rejects(OcspInvalid, "ocsp_invalid", src, card_g3, at=NOW + timedelta(hours=12, minutes=6))


def test_rejects_response_from_the_future(
    ocsp_server: ResponderServer, card_g3: CitizenCard, responder_clock: Clock
) -> None:
    responder_clock.now = NOW + timedelta(hours=1)
    err = rejects(OcspInvalid, "ocsp_invalid", source(clock_skew=timedelta(minutes=5)), card_g3)
    assert "future" in err.detail


@pytest.mark.parametrize(
    "bad", [{"timeout": 0}, {"max_response_bytes": 0}, {"max_age": timedelta(0)}]
)
def test_rejects_bad_configuration(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        OcspSource(**bad)  # type: ignore[arg-type]
    assert info.value.code == "configuration_error"


def test_request_carries_sha1_certid_and_32_byte_nonce(card_g3: CitizenCard) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    request = build_request(
        certificate=card_g3.signing.certificate, issuer=card_g3.issuer.certificate, nonce=b"n" * 32
    )
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    assert request.serial_number == card_g3.signing.certificate.serial_number
    nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"n" * 32


# --- cache and single flight --------------------------------------------------------------


def test_cache_hit_avoids_second_request(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    src = source(store=MemoryStore())
    assert ask(src, card_g3).status == "good"
    assert ask(src, card_g3, at=NOW + timedelta(minutes=10)).status == "good"
    assert ocsp_server.hits("/ocsp") == 1


def test_cache_never_crosses_issuers_with_the_same_serial(
    ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    # MOICA G2 and G3 share one DN and may reuse serial numbers: a revoked answer cached
    # for the G2 certificate must never answer for the G3 certificate with that serial.
    serial = card_g3.signing.certificate.serial_number
    g2_twin = ocsp_pki.issue_leaf(
        issuer=ocsp_pki.moica_g2,
        subject=card_g3.signing.certificate.subject,
        # The same extensions (AIA -> the shared responder) except the key identifiers.
        extensions=[
            (ext.value, ext.critical)
            for ext in card_g3.signing.certificate.extensions
            if not isinstance(ext.value, x509.AuthorityKeyIdentifier | x509.SubjectKeyIdentifier)
        ],
        serial=serial,
        label="ocsp-tests/g2-twin",
    )
    assert g2_twin.certificate.issuer == card_g3.signing.certificate.issuer
    src = source(store=MemoryStore())
    ocsp_server.set_status(serial, "revoked", reason="key_compromise")
    revoked = src.status(
        certificate=g2_twin.certificate, issuer=ocsp_pki.moica_g2.certificate, at=NOW
    )
    assert revoked.status == "revoked"
    ocsp_server.ocsp("/ocsp").clear()
    assert ask(src, card_g3).status == "good"  # asked upstream, not read from G2's entry
    assert ocsp_server.hits("/ocsp") == 2


def test_cached_answer_expires_with_max_age(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    src = source(store=MemoryStore(), max_age=timedelta(minutes=30))
    ask(src, card_g3)
    ask(src, card_g3, at=NOW + timedelta(minutes=31))
    assert ocsp_server.hits("/ocsp") == 2


def test_revoked_answer_is_cached_in_redis(
    ocsp_server: ResponderServer, card_g3: CitizenCard, redis_url: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix="test-ocsp-cache:")
    ocsp_server.set_status(
        card_g3.signing.certificate.serial_number, "revoked", revoked_at=NOW, reason="superseded"
    )
    first = ask(source(store=store), card_g3)
    # A second source (another worker) sharing the Redis store answers from the cache.
    second = ask(source(store=store), card_g3)
    assert (first.status, second.status) == ("revoked", "revoked")
    assert second.reason == "superseded"
    assert second.revoked_at == NOW
    assert ocsp_server.hits("/ocsp") == 1


def test_failures_are_not_cached(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    src = source(store=MemoryStore())
    ocsp_server.set_fault("/ocsp", "http500")
    rejects(RevocationUnavailable, "revocation_unavailable", src, card_g3)
    ocsp_server.set_fault("/ocsp", None)
    assert ask(src, card_g3).status == "good"
    assert ocsp_server.hits("/ocsp") == 2


def test_works_without_the_store(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    # Nothing listens on port 1: the cache is only an optimisation, the answer still comes.
    dead = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="dead:")
    assert ask(source(store=dead), card_g3).status == "good"


def _single_flight(ocsp_server: ResponderServer, card: CitizenCard, store: CountingStore) -> None:
    callers = 8
    ocsp_server.pause("/ocsp")
    results: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            answer: object = ask(source(store=store, lock_wait=30.0), card).status
        except MoicaAuthError as exc:
            answer = exc.code
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=worker) for _ in range(callers)]
    for thread in threads:
        thread.start()
    try:
        # The leader's request is held at the responder; wait until every other caller
        # has lost the lock race and is waiting for the leader's answer.
        give_up = time.monotonic() + 30  # only so a broken build fails instead of hanging
        while store.lost_races < callers - 1 or ocsp_server.hits("/ocsp") < 1:
            if time.monotonic() > give_up:
                pytest.fail(f"callers never queued: {store.lost_races} lost races")
            threading.Event().wait(0.01)
    finally:
        ocsp_server.resume("/ocsp")
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["good"] * callers
    assert ocsp_server.hits("/ocsp") == 1


def test_single_flight_memory(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    _single_flight(ocsp_server, card_g3, CountingStore(MemoryStore()))


def test_single_flight_redis(
    ocsp_server: ResponderServer, card_g2: CitizenCard, redis_url: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix="test-ocsp-flight:")
    _single_flight(ocsp_server, card_g2, CountingStore(store))


def test_waiter_fails_closed_when_nothing_arrives(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    # Another worker (sharing the store) is asking the responder, which holds its
    # request; this one may wait only 0.2 s for that answer, then must fail closed
    # rather than send its own request or guess.
    store = MemoryStore()
    ocsp_server.pause("/ocsp")
    # The leader would wait 30 s for the responder: only the waiter's own bound can end it.
    leader_source = source(store=store, timeout=30.0)
    leader = threading.Thread(target=lambda: _ask_quietly(leader_source, card_g3))
    leader.start()
    try:
        give_up = time.monotonic() + 30  # only so a broken build fails instead of hanging
        while ocsp_server.hits("/ocsp") < 1:
            if time.monotonic() > give_up:
                pytest.fail("the first worker never reached the responder")
            threading.Event().wait(0.01)
        started = time.monotonic()
        err = rejects(
            RevocationUnavailable,
            "revocation_unavailable",
            source(store=store, lock_wait=0.2),
            card_g3,
        )
        waited = time.monotonic() - started
    finally:
        ocsp_server.resume("/ocsp")
        leader.join(timeout=30)
    assert "timed out waiting for a concurrent" in err.detail
    assert waited < 5.0  # bounded by its own lock_wait, not by the leader
    assert ocsp_server.hits("/ocsp") == 1  # the waiter sent nothing of its own


def _ask_quietly(src: OcspSource, card: CitizenCard) -> None:
    with contextlib.suppress(MoicaAuthError):
        ask(src, card)


# --- responses without nextUpdate (RFC 6960 §4.2.2.1: "newer information is always
# available") ------------------------------------------------------------------------------


class _FixedTimeResponder:
    """A real HTTP OCSP responder on 127.0.0.1 whose answers carry a fixed thisUpdate
    and **no nextUpdate** (the shared ResponderServer always sets one). It echoes the
    request nonce and signs as the CA itself."""

    def __init__(
        self,
        card: CitizenCard,
        this_update: datetime,
        *,
        next_update: datetime | None = None,
        extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
        signer: CertifiedKey | None = None,
        certificates: tuple[x509.Certificate, ...] = (),
        swap: tuple[bytes, bytes] | None = None,
    ) -> None:
        owner = self
        # (carried, served): the bytes ``carried`` are replaced by the same-length bytes
        # ``served`` after signing (the certs field is outside the signed tbsResponseData),
        # for certificates neither cryptography nor asn1crypto will encode.
        self.swap = swap
        self.card = card
        self.signer = signer or card.issuer
        self.certificates = certificates
        self.this_update = this_update
        self.next_update = next_update
        self.extensions = extensions
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                owner.hits += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = owner.respond(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/ocsp"

    def respond(self, request_der: bytes) -> bytes:
        request = x509_ocsp.load_der_ocsp_request(request_der)
        issuer = self.card.issuer
        builder = (
            x509_ocsp.OCSPResponseBuilder()
            .add_response(
                cert=self.card.signing.certificate,
                issuer=issuer.certificate,
                algorithm=hashes.SHA1(),  # noqa: S303 - CertID lookup key
                cert_status=x509_ocsp.OCSPCertStatus.GOOD,
                this_update=self.this_update.replace(tzinfo=None),
                next_update=self.next_update.replace(tzinfo=None) if self.next_update else None,
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(x509_ocsp.OCSPResponderEncoding.HASH, self.signer.certificate)
        )
        if self.certificates:
            builder = builder.certificates(list(self.certificates))
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
            builder = builder.add_extension(nonce, critical=False)
        except x509.ExtensionNotFound:
            pass
        for extension, critical in self.extensions:
            builder = builder.add_extension(extension, critical=critical)
        key = self.signer.private_key
        response = builder.sign(key, hashes.SHA256())
        # cryptography stamps producedAt with the wall clock; pin it to thisUpdate.
        der = _set_produced_at(response, produced_at=self.this_update, key=key)
        if self.swap is not None:
            carried, served = self.swap
            assert len(carried) == len(served) and der.count(carried) == 1
            der = der.replace(carried, served)
        return der

    def __enter__(self) -> _FixedTimeResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def test_response_without_next_update_is_judged_by_its_age(card_g3: CitizenCard) -> None:
    with _FixedTimeResponder(card_g3, this_update=NOW - timedelta(minutes=50)) as responder:
        src = source(responder_url=responder.url, max_age=timedelta(hours=1))
        assert ask(src, card_g3).status == "good"  # 50 minutes old: fresh enough
        err = rejects(OcspInvalid, "ocsp_invalid", src, card_g3, at=NOW + timedelta(minutes=11))
        assert "max_age" in err.detail


def test_cached_response_without_next_update_expires_with_its_this_update(
    card_g3: CitizenCard,
) -> None:
    # max_age bounds the age of the *information* (thisUpdate), not just how long we
    # have held it: a cached copy must not outlive what a fresh fetch would accept.
    with _FixedTimeResponder(card_g3, this_update=NOW - timedelta(minutes=50)) as responder:
        src = source(store=MemoryStore(), responder_url=responder.url, max_age=timedelta(hours=1))
        assert ask(src, card_g3).status == "good"
        assert ask(src, card_g3, at=NOW + timedelta(minutes=5)).status == "good"
        assert responder.hits == 1  # still within max_age of thisUpdate: from the cache
        rejects(OcspInvalid, "ocsp_invalid", src, card_g3, at=NOW + timedelta(minutes=11))
        assert responder.hits == 2  # the stale cached copy was not served


@pytest.mark.parametrize("critical", [True, False])
def test_unknown_critical_response_extension_is_refused(
    card_g3: CitizenCard, critical: bool
) -> None:
    # RFC 6960 §4.4: unrecognised extensions are ignored "unless they have the critical
    # flag set and are not understood"; a critical one we do not understand is no answer.
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")
    with _FixedTimeResponder(
        card_g3,
        this_update=NOW,
        next_update=NOW + timedelta(hours=1),
        extensions=((unknown, critical),),
    ) as responder:
        src = source(responder_url=responder.url)
        if critical:
            err = rejects(OcspInvalid, "ocsp_invalid", src, card_g3)
            assert "critical" in err.detail
        else:
            assert ask(src, card_g3).status == "good"


def test_delegated_responder_with_duplicate_extensions_is_invalid(
    ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    # The responder certificate comes off the (plain HTTP) network. cryptography raises
    # DuplicateExtension (not a ValueError) when its extensions are read; that must be
    # ocsp_invalid ("no answer", so the policy falls back to the CRL), not a crash.
    delegate = ocsp_pki.issue_ocsp_responder(issuer=card_g3.issuer, label="dup-ext")
    bad = with_duplicate_extension(delegate.certificate, card_g3.issuer.private_key)
    with _FixedTimeResponder(
        card_g3,
        this_update=NOW,
        next_update=NOW + timedelta(hours=1),
        signer=delegate,
        certificates=(bad,),
    ) as responder:
        src = source(responder_url=responder.url)
        err = rejects(OcspInvalid, "ocsp_invalid", src, card_g3)
        assert "extensions" in err.detail
    # The same responder with its well-formed certificate is accepted.
    with _FixedTimeResponder(
        card_g3,
        this_update=NOW,
        next_update=NOW + timedelta(hours=1),
        signer=delegate,
        certificates=(delegate.certificate,),
    ) as responder:
        assert ask(source(responder_url=responder.url), card_g3).status == "good"


def test_carried_certificate_with_unknown_key_algorithm_is_skipped(
    ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    # public_key() of a certificate carried in the response raises UnsupportedAlgorithm;
    # such a certificate names no responder: ocsp_invalid (the policy falls back), never
    # a library exception.
    delegate = ocsp_pki.issue_ocsp_responder(issuer=card_g3.issuer, label="unknown-key")
    bad = with_unknown_key_algorithm(delegate.certificate, card_g3.issuer.private_key)
    with _FixedTimeResponder(
        card_g3,
        this_update=NOW,
        next_update=NOW + timedelta(hours=1),
        signer=delegate,
        certificates=(delegate.certificate,),
        swap=(delegate.certificate.public_bytes(Encoding.DER), bad.public_bytes(Encoding.DER)),
    ) as responder:
        rejects(OcspInvalid, "ocsp_invalid", source(responder_url=responder.url), card_g3)


def test_unparsable_response_field_is_invalid_not_a_crash(card_g3: CitizenCard) -> None:
    # cryptography parses an OCSP response lazily: an unknown CertID hash algorithm
    # raises UnsupportedAlgorithm (not a ValueError) from inside verification, before the
    # signature is checked. An on-path attacker (OCSP is plain HTTP) must not be able to
    # turn that into a library exception, which would also skip the CRL fallback.
    sha1 = bytes.fromhex("06052b0e03021a")  # 1.3.14.3.2.26, the CertID hash
    unknown = bytes.fromhex("06052b0e03021b")  # 1.3.14.3.2.27
    with _FixedTimeResponder(
        card_g3, this_update=NOW, next_update=NOW + timedelta(hours=1), swap=(sha1, unknown)
    ) as responder:
        err = rejects(OcspInvalid, "ocsp_invalid", source(responder_url=responder.url), card_g3)
        assert "malformed" in err.detail
