"""The public test responders (moica_auth.testing.responders), over real HTTP."""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from moica_auth.revocation.crl import parse_crl
from moica_auth.revocation.ocsp import OcspSource, build_request
from moica_auth.testing.pki import CitizenCard, TestPKI
from moica_auth.testing.responders import FAULTS, ResponderServer, demo_crls, serve_demo
from tests.ocsp_fixtures import (
    CLIENT_TIMEOUT,
    NOW,
)

CRL_PATH = "/crl/test.crl"
CRL_BODY = b"0\x03\x02\x01\x00" * 100  # the server serves bytes; it does not parse them


def post_ocsp(ocsp_server: ResponderServer, der: bytes, path: str = "/ocsp") -> ocsp.OCSPResponse:
    response = requests.post(
        ocsp_server.url_for(path),
        data=der,
        headers={"Content-Type": "application/ocsp-request"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def request_for(card: CitizenCard, nonce: bytes | None = b"\x01" * 32) -> bytes:
    request = build_request(
        certificate=card.signing.certificate, issuer=card.issuer.certificate, nonce=nonce
    )
    return request.public_bytes(Encoding.DER)


# --- CRL files ------------------------------------------------------------------------------


def test_serves_published_crl(ocsp_server: ResponderServer) -> None:
    url = ocsp_server.publish_crl(CRL_PATH, CRL_BODY)
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.content == CRL_BODY
    assert response.headers["Content-Type"] == "application/pkix-crl"
    assert ocsp_server.hits(CRL_PATH) == 1
    ocsp_server.unpublish(CRL_PATH)
    assert requests.get(url, timeout=5).status_code == 404


def test_unknown_path_is_404(ocsp_server: ResponderServer) -> None:
    assert requests.get(ocsp_server.url_for("/nothing"), timeout=5).status_code == 404


def test_crl_fault_down(ocsp_server: ResponderServer) -> None:
    url = ocsp_server.publish_crl(CRL_PATH, CRL_BODY)
    ocsp_server.set_fault(CRL_PATH, "down")
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_crl_fault_slow(ocsp_server: ResponderServer) -> None:
    url = ocsp_server.publish_crl(CRL_PATH, CRL_BODY)
    ocsp_server.set_fault(CRL_PATH, "slow")
    with pytest.raises(requests.Timeout):
        requests.get(url, timeout=CLIENT_TIMEOUT)


def test_crl_fault_http500_and_garbage(ocsp_server: ResponderServer) -> None:
    url = ocsp_server.publish_crl(CRL_PATH, CRL_BODY)
    ocsp_server.set_fault(CRL_PATH, "http500")
    assert requests.get(url, timeout=5).status_code == 500
    ocsp_server.set_fault(CRL_PATH, "garbage")
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.content != CRL_BODY
    ocsp_server.set_fault(CRL_PATH, None)
    assert requests.get(url, timeout=5).content == CRL_BODY


def test_crl_fault_truncate(ocsp_server: ResponderServer) -> None:
    url = ocsp_server.publish_crl(CRL_PATH, CRL_BODY)
    ocsp_server.set_fault(CRL_PATH, "truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=5)


def test_rejects_unknown_fault_and_status(ocsp_server: ResponderServer) -> None:
    assert "wrong_nonce" in FAULTS
    with pytest.raises(ValueError):
        ocsp_server.set_fault(CRL_PATH, "flaky")
    with pytest.raises(ValueError):
        ocsp_server.set_status(1, "maybe")  # type: ignore[arg-type]


def test_stop_refuses_and_start_serves_again_at_the_same_url() -> None:
    with ResponderServer() as own:
        url = own.publish_crl(CRL_PATH, CRL_BODY)
        own.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
        own.start()
        assert requests.get(url, timeout=5).content == CRL_BODY


# --- OCSP -----------------------------------------------------------------------------------


def test_ocsp_post_echoes_nonce_and_uses_the_clock(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    response = post_ocsp(ocsp_server, request_for(card_g3, nonce=b"\x07" * 32))
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == card_g3.signing.certificate.serial_number
    assert response.this_update_utc == NOW
    assert response.produced_at_utc == NOW
    nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"\x07" * 32
    assert response.certificates == []  # signed by the CA itself: nothing to include


def test_ocsp_get_per_rfc6960_appendix_a(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    encoded = urllib.parse.quote(base64.b64encode(request_for(card_g3)).decode(), safe="")
    response = requests.get(f"{ocsp_server.url_for('/ocsp')}/{encoded}", timeout=5)
    assert response.status_code == 200
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert ocsp_server.hits("/ocsp") == 1


def test_ocsp_revoked_and_hold(ocsp_server: ResponderServer, card_g3: CitizenCard) -> None:
    serial = card_g3.signing.certificate.serial_number
    ocsp_server.set_status(serial, "revoked", revoked_at=NOW, reason="affiliation_changed")
    response = post_ocsp(ocsp_server, request_for(card_g3))
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason == x509.ReasonFlags.affiliation_changed
    assert response.revocation_time_utc == NOW
    ocsp_server.set_status(serial, "hold")
    response = post_ocsp(ocsp_server, request_for(card_g3))
    assert response.revocation_reason == x509.ReasonFlags.certificate_hold


def test_ocsp_unknown_issuer_is_unauthorized(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    ocsp_server.add_ocsp(
        issuer=ocsp_pki.moica_g2.certificate, signer=ocsp_pki.moica_g2, path="/only"
    )
    response = post_ocsp(ocsp_server, request_for(card_g3), path="/only")
    assert response.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_ocsp_malformed_request(ocsp_server: ResponderServer) -> None:
    response = post_ocsp(ocsp_server, b"not a request")
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_default_status_unknown(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    ocsp_server.add_ocsp(
        issuer=ocsp_pki.moica_g3.certificate,
        signer=ocsp_pki.moica_g3,
        path="/strict",
        default_status="unknown",
    )
    response = post_ocsp(ocsp_server, request_for(card_g3), path="/strict")
    assert response.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_delegated_responder_certificate_is_included(
    ocsp_server: ResponderServer, card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    delegate = ocsp_pki.issue_ocsp_responder(issuer=ocsp_pki.moica_g3, label="included")
    ocsp_server.add_ocsp(issuer=ocsp_pki.moica_g3.certificate, signer=delegate, path="/delegate")
    response = post_ocsp(ocsp_server, request_for(card_g3), path="/delegate")
    assert response.certificates == [delegate.certificate]
    assert response.responder_key_hash == (
        x509.SubjectKeyIdentifier.from_public_key(delegate.certificate.public_key()).digest
    )


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("no_nonce", lambda r: x509.OCSPNonce not in [e.value.__class__ for e in r.extensions]),
        (
            "wrong_nonce",
            lambda r: (
                r.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce != b"\x01" * 32
            ),
        ),
        ("stale", lambda r: r.next_update_utc < NOW),
        ("wrong_cert_id", lambda r: r.serial_number != 0),
    ],
)
def test_ocsp_content_faults(
    ocsp_server: ResponderServer, card_g3: CitizenCard, fault: str, check: object
) -> None:
    ocsp_server.set_fault("/ocsp", fault)
    response = post_ocsp(ocsp_server, request_for(card_g3))
    assert callable(check) and check(response)
    if fault == "wrong_cert_id":
        assert response.serial_number == card_g3.signing.certificate.serial_number + 1


def test_pause_holds_requests_until_resume(
    ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    ocsp_server.pause("/ocsp")
    done = threading.Event()

    def client() -> None:
        post_ocsp(ocsp_server, request_for(card_g3))
        done.set()

    thread = threading.Thread(target=client)
    thread.start()
    give_up = time.monotonic() + 30  # only so a broken build fails instead of hanging
    while ocsp_server.hits("/ocsp") < 1:
        assert time.monotonic() < give_up, "the request never reached the responder"
        threading.Event().wait(0.01)
    assert not done.is_set()
    ocsp_server.resume("/ocsp")
    thread.join(timeout=10)
    assert done.is_set()


def test_serve_demo_answers_for_both_generations(ocsp_pki: TestPKI) -> None:
    g2 = ocsp_pki.issue_card(generation="G2", label="ocsp-tests/g2")
    g3 = ocsp_pki.issue_card(generation="G3", label="ocsp-tests/g3")
    demo = serve_demo(ocsp_pki, port=0, clock=lambda: NOW)
    try:
        source = OcspSource(responder_url=demo.url_for("/ocsp"), timeout=5)
        for card in (g2, g3):
            answer = source.status(
                certificate=card.signing.certificate, issuer=card.issuer.certificate, at=NOW
            )
            assert answer.status == "good"
        paths = sorted(demo_crls(ocsp_pki, now=NOW))
        assert len(paths) == 6  # partition + complete per MOICA CA, one per GRCA root
        issuers = [*ocsp_pki.intermediates, *ocsp_pki.anchors]
        for path in paths:
            der = requests.get(demo.url_for(path), timeout=5).content
            parsed = parse_crl(der, issuers=issuers, at=NOW)
            assert len(parsed.entries) == 0
    finally:
        demo.stop()
