"""The virtual HiPKI component: real HTTP on 127.0.0.1, real signatures, real PIN rules."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509

from moica_auth.challenge import ChallengeService
from moica_auth.exceptions import NonceMismatch
from moica_auth.hipki import describe
from moica_auth.signature import verify_signature
from moica_auth.stores import MemoryStore
from moica_auth.testing.pki import FIXED_TIME, CitizenCard, default_pki, make_id_number
from moica_auth.testing.virtual_card import (
    LAST_CARD_LOCKED,
    LAST_PIN_LENGTH,
    LAST_TRIES_LEFT_1,
    LAST_TRIES_LEFT_2,
    LAST_WRONG_PIN,
    RET_BAD_REQUEST,
    RET_CANCELLED,
    RET_CARD_LOGIN_FAILED,
    RET_CERT_EXPIRED,
    RET_NO_CARD,
    RET_NO_PIN,
    RET_NO_READER,
    RET_SITE_NOT_TRUSTED,
    RET_SITE_NOT_TRUSTED_INFO,
    SLOT_DESCRIPTION,
    VirtualCard,
    VirtualCardServer,
    load_cards,
)

# The clock every signature is made at: inside the test cards' validity.
AT = FIXED_TIME
TBS = "moica-auth/1 origin=https://portal.example.gov.tw nonce=q3Xh0bS2m1n4r7t9v8w6y5z0A1B2C3D4E5F6G7H8I9E iat=2026-01-01T00:00:00Z"  # noqa: E501
NONCE = "q3Xh0bS2m1n4r7t9v8w6y5z0A1B2C3D4E5F6G7H8I9E"
TIMEOUT = 10


def _nonce_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def citizen() -> CitizenCard:
    return default_pki().issue_card()


@pytest.fixture(scope="module")
def other_citizen() -> CitizenCard:
    return default_pki().issue_card(
        generation="G2", id_number=make_id_number("virtual-card-other"), pin="87654321"
    )


@pytest.fixture(scope="module")
def cards(citizen: CitizenCard, other_citizen: CitizenCard) -> list[VirtualCard]:
    # One card loaded the way the CLI loads it: from its PKCS#12.
    p12 = other_citizen.to_pkcs12(b"p12-password")
    return [
        VirtualCard.from_citizen_card(citizen, card_id="main"),
        VirtualCard.from_pkcs12(
            p12, b"p12-password", card_id="other", pin="87654321", user_code="11112222"
        ),
    ]


def _server(cards: list[VirtualCard], **kwargs: Any) -> VirtualCardServer:
    kwargs.setdefault("clock", lambda: AT)
    return VirtualCardServer(cards, port=0, **kwargs)


@pytest.fixture
def server(cards: list[VirtualCard]) -> Iterator[VirtualCardServer]:
    with _server(cards) as srv:
        srv.insert("main")
        yield srv


def sign_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "func": "MakeSignature",
        "signatureType": "PKCS7",
        "tbs": TBS,
        "tbsEncoding": "NONE",
        "hashAlgorithm": "SHA256",
        "withCardSN": "true",
        "pin": "123456",
        "nonce": NONCE,
        "slotDescription": SLOT_DESCRIPTION,
    }
    request.update(overrides)
    return {k: v for k, v in request.items() if v is not None}


def post(server: VirtualCardServer, path: str, body: dict[str, Any], **headers: str) -> Any:
    response = requests.post(server.url + path, json=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
    return response.json()


def sign(server: VirtualCardServer, **overrides: Any) -> Any:
    return post(server, "/sign", sign_request(**overrides))


def assert_failure(answer: dict[str, Any], ret_code: int, last_error: int = 0) -> None:
    assert answer["func"] == "sign"
    assert (answer["ret_code"], answer["last_error"]) == (ret_code, last_error)
    assert "signature" not in answer


# --- signing --------------------------------------------------------------------------


def test_signs_pkcs7_with_nonce_and_card_number(
    server: VirtualCardServer, citizen: CitizenCard
) -> None:
    answer = sign(server)
    assert answer["ret_code"] == 0
    assert answer["cardSN"] == citizen.card_number
    verified = verify_signature(
        content=TBS.encode(),
        signature=answer["signature"],
        signature_type="PKCS7",
        expected_nonce=_nonce_bytes(NONCE),
        expected_card_number=citizen.card_number,
    )
    assert verified.certificate == citizen.signing.certificate
    assert verified.signing_time == AT
    assert x509.load_der_x509_certificate(base64.b64decode(answer["certb64"])) == (
        citizen.signing.certificate
    )


def test_signed_nonce_is_the_request_nonce(server: VirtualCardServer) -> None:
    answer = sign(server)
    with pytest.raises(NonceMismatch) as caught:
        verify_signature(
            content=TBS.encode(),
            signature=answer["signature"],
            signature_type="PKCS7",
            expected_nonce=b"\x00" * 32,
        )
    assert caught.value.code == "nonce_mismatch"


def test_a_real_challenge_verifies_end_to_end(
    server: VirtualCardServer, citizen: CitizenCard
) -> None:
    # The browser passes the challenge's nonce text as the component's "nonce"; the
    # signed attribute must then hold the bytes the server expects.
    service = ChallengeService(
        MemoryStore(), origin="https://portal.example", binding_key=b"k" * 32, clock=lambda: AT
    )
    challenge = service.issue(session_id="session-1")
    answer = sign(server, tbs=challenge.tbs, nonce=challenge.nonce)
    verified = verify_signature(
        content=challenge.tbs_bytes(),
        signature=answer["signature"],
        signature_type="PKCS7",
        certificate=answer["certb64"],
        expected_nonce=challenge.nonce_bytes(),
        expected_card_number=answer["cardSN"],
    )
    assert verified.nonce == challenge.nonce_bytes()
    assert verified.card_number == citizen.card_number


def test_signs_pkcs1_and_returns_the_certificate(
    server: VirtualCardServer, citizen: CitizenCard
) -> None:
    answer = sign(server, signatureType="PKCS1", nonce=None)
    assert answer["ret_code"] == 0
    verified = verify_signature(
        content=TBS.encode(),
        signature=answer["signature"],
        signature_type="PKCS1",
        certificate=answer["certb64"],
    )
    assert verified.certificate == citizen.signing.certificate
    assert verified.hash_algorithm == "sha256"


def test_honours_base64_tbs_and_hash_algorithm(server: VirtualCardServer) -> None:
    data = bytes(range(40))
    answer = sign(
        server,
        tbs=base64.b64encode(data).decode(),
        tbsEncoding="base64",
        hashAlgorithm="SHA384",
    )
    verified = verify_signature(content=data, signature=answer["signature"], signature_type="PKCS7")
    assert verified.hash_algorithm == "sha384"


def test_without_card_sn_leaves_the_card_number_out(server: VirtualCardServer) -> None:
    answer = sign(server, withCardSN="false")
    assert "cardSN" not in answer
    verified = verify_signature(
        content=TBS.encode(), signature=answer["signature"], signature_type="PKCS7"
    )
    assert verified.card_number is None


def test_card_loaded_from_pkcs12_signs(
    server: VirtualCardServer, other_citizen: CitizenCard
) -> None:
    server.insert("other")
    answer = sign(server, pin="87654321")
    verified = verify_signature(
        content=TBS.encode(),
        signature=answer["signature"],
        signature_type="PKCS7",
        expected_card_number=other_citizen.card_number,
    )
    assert verified.certificate == other_citizen.signing.certificate


def test_rejects_malformed_request(server: VirtualCardServer) -> None:
    assert_failure(sign(server, func="Decrypt"), RET_BAD_REQUEST)
    assert_failure(sign(server, signatureType="RAW"), RET_BAD_REQUEST)
    assert_failure(sign(server, hashAlgorithm="WHIRLPOOL"), RET_BAD_REQUEST)
    assert_failure(sign(server, tbsEncoding="base64", tbs="not base64!"), RET_BAD_REQUEST)


def test_refuses_non_json_posts_that_a_foreign_page_could_send(server: VirtualCardServer) -> None:
    # text/plain is a CORS "simple" request: another site could make a browser send it.
    response = requests.post(
        server.url + "/sign",
        data='{"func":"MakeSignature","pin":"000000"}',
        headers={"Content-Type": "text/plain"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 415
    assert response.json()["ret_code"] == RET_BAD_REQUEST
    assert server.pin_tries_left("main") == 3
    preflight = requests.options(server.url + "/sign", timeout=TIMEOUT)
    assert "access-control-allow-origin" not in {k.lower() for k in preflight.headers}


# --- pkcs11info -----------------------------------------------------------------------


def test_pkcs11info_lists_signing_and_encryption_certificates(
    server: VirtualCardServer, citizen: CitizenCard
) -> None:
    info = requests.get(server.url + "/pkcs11info?withcert=true", timeout=TIMEOUT).json()
    assert info["ret_code"] == 0
    assert info["serverVersion"]
    (slot,) = info["slots"]
    assert slot["slotDescription"] == SLOT_DESCRIPTION
    token = slot["token"]
    assert token["serialNumber"] == citizen.card_number
    by_usage = {c["usage"]: c for c in token["certs"]}
    assert set(by_usage) == {"digitalSignature", "keyEncipherment"}
    signing = by_usage["digitalSignature"]
    assert base64.b64decode(signing["certb64"]) == citizen.signing.cert_der()
    assert base64.b64decode(by_usage["keyEncipherment"]["certb64"]) == (
        citizen.encryption.cert_der()
    )
    assert signing["sn"] == f"{citizen.signing.certificate.serial_number:X}"
    assert signing["subjectDN"] == citizen.signing.certificate.subject.rfc4514_string()
    assert signing["issuerDN"] == citizen.signing.certificate.issuer.rfc4514_string()
    assert signing["subjectID"] == citizen.id_last4


def test_pkcs11info_over_post_and_without_certificates(server: VirtualCardServer) -> None:
    info = post(server, "/pkcs11info", {"func": "pkcs11info", "withcert": "true"})
    assert len(info["slots"][0]["token"]["certs"]) == 2
    bare = requests.get(server.url + "/pkcs11info", timeout=TIMEOUT).json()
    assert "certs" not in bare["slots"][0]["token"]


def test_pkcs11info_without_card_or_reader(server: VirtualCardServer) -> None:
    server.remove()
    info = requests.get(server.url + "/pkcs11info?withcert=true", timeout=TIMEOUT).json()
    assert info["slots"] == [{"slotDescription": SLOT_DESCRIPTION, "token": None}]
    server.reader_connected = False
    info = requests.get(server.url + "/pkcs11info", timeout=TIMEOUT).json()
    assert info["slots"] == []


# --- PIN rules ------------------------------------------------------------------------


def test_wrong_pin_counts_down_then_locks_the_card(server: VirtualCardServer) -> None:
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_1)
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED)
    assert server.is_locked("main")
    # Locked: even the right PIN is refused from now on.
    assert_failure(sign(server), RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED)
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED)


def test_messages_for_the_pin_countdown(server: VirtualCardServer) -> None:
    first = sign(server, pin="000000")
    second = sign(server, pin="000000")
    third = sign(server, pin="000000")
    assert describe(first["ret_code"], first["last_error"]).tries_left == 2
    assert describe(second["ret_code"], second["last_error"]).tries_left == 1
    assert describe(third["ret_code"], third["last_error"]).key == "card_locked"


def test_correct_pin_resets_the_count(server: VirtualCardServer) -> None:
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_1)
    assert sign(server)["ret_code"] == 0
    assert server.pin_tries_left("main") == 3
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)


def test_pin_counts_are_per_card(server: VirtualCardServer) -> None:
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)
    server.insert("other")
    assert_failure(sign(server, pin="000000"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)
    assert server.pin_tries_left("main") == 2


@pytest.mark.parametrize("pin", ["12345", "123456789", "12ab56", "１２３４５６", " 123456"])
def test_rejects_pin_of_wrong_length_without_counting_it(
    server: VirtualCardServer, pin: str
) -> None:
    answer = sign(server, pin=pin)
    assert_failure(answer, RET_CARD_LOGIN_FAILED, LAST_PIN_LENGTH)
    assert describe(answer["ret_code"], answer["last_error"]).key == "pin_length"
    assert server.pin_tries_left("main") == 3


def test_rejects_empty_pin(server: VirtualCardServer) -> None:
    assert_failure(sign(server, pin=""), RET_NO_PIN)
    answer = sign(server, pin=None)
    assert_failure(answer, RET_NO_PIN)
    assert describe(answer["ret_code"], answer["last_error"]).key == "no_pin"


def test_answers_never_echo_the_pin(server: VirtualCardServer) -> None:
    for pin in ("654321", "9876543"):
        response = requests.post(server.url + "/sign", json=sign_request(pin=pin), timeout=TIMEOUT)
        assert pin not in response.text


# --- unlock ---------------------------------------------------------------------------


def _lock(server: VirtualCardServer) -> None:
    for _ in range(3):
        sign(server, pin="000000")
    assert server.is_locked("main")


def test_unlock_with_user_code_sets_a_new_pin(server: VirtualCardServer) -> None:
    _lock(server)
    answer = post(
        server, "/unlock", {"card": "main", "user_code": "12345678", "new_pin": "24681357"}
    )
    assert answer["ret_code"] == 0
    assert not server.is_locked("main")
    assert_failure(sign(server, pin="123456"), RET_CARD_LOGIN_FAILED, LAST_TRIES_LEFT_2)
    assert sign(server, pin="24681357")["ret_code"] == 0


def test_unlock_refuses_a_bad_new_pin(server: VirtualCardServer) -> None:
    _lock(server)
    answer = server.unlock("main", "12345678", "123")
    assert (answer["ret_code"], answer["last_error"]) == (RET_CARD_LOGIN_FAILED, LAST_PIN_LENGTH)
    assert server.is_locked("main")


def test_four_wrong_user_codes_lock_the_user_code(server: VirtualCardServer) -> None:
    _lock(server)
    for left in (3, 2, 1):
        answer = server.unlock("main", "00000000", "24681357")
        assert (answer["ret_code"], answer["last_error"]) == (
            RET_CARD_LOGIN_FAILED,
            LAST_WRONG_PIN,
        )
        assert answer["tries_left"] == left
    answer = server.unlock("main", "00000000", "24681357")
    assert answer["last_error"] == LAST_CARD_LOCKED
    # Locked: the right user code no longer unlocks.
    answer = server.unlock("main", "12345678", "24681357")
    assert (answer["ret_code"], answer["last_error"]) == (RET_CARD_LOGIN_FAILED, LAST_CARD_LOCKED)
    assert server.is_locked("main")


def test_right_user_code_resets_its_count(server: VirtualCardServer) -> None:
    for _ in range(3):
        server.unlock("main", "00000000", "24681357")
    assert server.unlock("main", "12345678", "24681357")["ret_code"] == 0
    assert server.unlock("main", "00000000", "24681357")["tries_left"] == 3


# --- reader, card, faults -------------------------------------------------------------


def test_no_card(server: VirtualCardServer) -> None:
    server.remove()
    assert server.inserted is None
    answer = sign(server)
    assert_failure(answer, RET_NO_CARD)
    assert describe(answer["ret_code"], answer["last_error"]).key == "no_card"


def test_no_reader(server: VirtualCardServer) -> None:
    server.reader_connected = False
    answer = sign(server)
    assert_failure(answer, RET_NO_READER)
    assert describe(answer["ret_code"], answer["last_error"]).key == "no_reader"


def test_other_slot_has_no_card(server: VirtualCardServer) -> None:
    assert_failure(sign(server, slotDescription="Some Other Reader"), RET_NO_CARD)


def test_insert_and_remove_over_http(server: VirtualCardServer) -> None:
    assert post(server, "/_virtual/remove", {})["inserted"] is None
    assert post(server, "/_virtual/insert", {"card": "other"})["inserted"] == "other"
    refused = requests.post(server.url + "/_virtual/insert", json={"card": "nope"}, timeout=TIMEOUT)
    assert refused.status_code == 404
    assert server.inserted == "other"
    with pytest.raises(KeyError):
        server.insert("nope")


def test_injected_cancel_leaves_the_pin_count_alone(server: VirtualCardServer) -> None:
    server.inject_fault(RET_CANCELLED)
    answer = sign(server, pin="000000")
    assert_failure(answer, RET_CANCELLED)
    assert describe(answer["ret_code"], answer["last_error"]).key == "cancelled"
    assert server.pin_tries_left("main") == 3
    assert sign(server)["ret_code"] == 0


@pytest.mark.parametrize("code", [0x7600000D, 0x83000102, 0x76100001, 0x76990001])
def test_fault_control_answers_any_code_once(server: VirtualCardServer, code: int) -> None:
    assert post(server, "/_virtual/fault", {"ret_code": f"0x{code:X}"})["ret_code"] == 0
    assert_failure(sign(server), code)
    assert sign(server)["ret_code"] == 0  # used up


def test_fault_control_sends_negative_int_forms(server: VirtualCardServer) -> None:
    post(
        server,
        "/_virtual/fault",
        {"ret_code": RET_CARD_LOGIN_FAILED, "last_error": LAST_TRIES_LEFT_2, "signed": True},
    )
    answer = sign(server)
    # Only codes with the top bit set have a negative form (0x8…): 0x76… stay positive.
    assert (answer["ret_code"], answer["last_error"]) == (RET_CARD_LOGIN_FAILED, -2147483646)
    assert describe(answer["ret_code"], answer["last_error"]).tries_left == 2
    post(server, "/_virtual/fault", {"ret_code": 0x83000102, "signed": True})
    answer = sign(server)
    assert answer["ret_code"] == 0x83000102 - (1 << 32)
    assert describe(answer["ret_code"]).key == "wrong_card_moeaca"


def test_fault_control_counts_and_clears(server: VirtualCardServer) -> None:
    post(server, "/_virtual/fault", {"ret_code": RET_NO_READER, "count": 3})
    assert_failure(sign(server), RET_NO_READER)
    post(server, "/_virtual/fault", {"clear": True})
    assert sign(server)["ret_code"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ret_code": 0},
        {"ret_code": "garbage"},
        {"ret_code": 1 << 32},
        {"ret_code": 0x76000006, "count": 0},
        {"ret_code": 0x76000006, "count": True},
        {"ret_code": 0x76000006, "count": 10**6},
        {"ret_code": 0x76000006, "last_error": "x"},
        {"ret_code": 0x76000006, "signed": "yes"},
    ],
)
def test_fault_control_refuses_bad_bodies(server: VirtualCardServer, body: dict[str, Any]) -> None:
    refused = requests.post(server.url + "/_virtual/fault", json=body, timeout=TIMEOUT)
    assert refused.status_code == 400
    assert refused.json()["ret_code"] == RET_BAD_REQUEST
    assert sign(server)["ret_code"] == 0  # nothing injected


def test_expired_certificate(cards: list[VirtualCard], citizen: CitizenCard) -> None:
    late = citizen.signing.certificate.not_valid_after_utc + timedelta(days=1)
    with _server(cards, clock=lambda: late) as srv:
        srv.insert("main")
        answer = sign(srv)
    assert_failure(answer, RET_CERT_EXPIRED)
    assert describe(answer["ret_code"], answer["last_error"]).key == "certificate_expired"


# --- trusted sites --------------------------------------------------------------------


@pytest.fixture
def strict(cards: list[VirtualCard]) -> Iterator[VirtualCardServer]:
    with _server(cards, require_trusted_domains=True, trusted_domains=["portal.example"]) as srv:
        srv.insert("main")
        yield srv


def test_untrusted_site_cannot_sign(strict: VirtualCardServer) -> None:
    answer = post(strict, "/sign", sign_request(domain="evil.example"))
    assert_failure(answer, RET_SITE_NOT_TRUSTED)
    assert describe(answer["ret_code"], answer["last_error"]).key == "site_not_trusted"
    # No domain at all is not trusted either (fail closed).
    assert_failure(post(strict, "/sign", sign_request()), RET_SITE_NOT_TRUSTED)
    assert strict.pin_tries_left("main") == 3


def test_browser_origin_beats_the_domain_field(strict: VirtualCardServer) -> None:
    answer = post(
        strict, "/sign", sign_request(domain="portal.example"), Origin="https://evil.example"
    )
    assert_failure(answer, RET_SITE_NOT_TRUSTED)


def test_trusted_site_signs(strict: VirtualCardServer) -> None:
    # As the popup sends it: from the component's own origin, naming the opener's host.
    answer = post(
        strict,
        "/sign",
        sign_request(domain="portal.example"),
        Origin=strict.url,
    )
    assert answer["ret_code"] == 0


def test_untrusted_site_cannot_list_the_card(strict: VirtualCardServer) -> None:
    info = post(strict, "/pkcs11info", {"func": "pkcs11info", "domain": "evil.example"})
    assert info["ret_code"] == RET_SITE_NOT_TRUSTED_INFO
    assert "slots" not in info
    assert describe(info["ret_code"]).key == "site_not_trusted"


def test_add_domain_asks_then_trusts(strict: VirtualCardServer) -> None:
    page = requests.get(strict.url + "/addDomain?domain=new.example", timeout=TIMEOUT)
    assert page.status_code == 200
    assert 'id="confirm"' in page.text
    assert "new.example" not in strict.trusted_domains
    confirmed = requests.post(
        strict.url + "/addDomain", data={"domain": "new.example"}, timeout=TIMEOUT
    )
    assert confirmed.status_code == 200
    assert "new.example" in strict.trusted_domains
    assert post(strict, "/sign", sign_request(domain="new.example"))["ret_code"] == 0


def test_add_domain_refuses_garbage(strict: VirtualCardServer) -> None:
    page = requests.get(
        strict.url + "/addDomain?domain=%3Cscript%3Ealert(1)%3C/script%3E", timeout=TIMEOUT
    )
    assert page.status_code == 400
    assert "<script>alert" not in page.text


# --- pages ----------------------------------------------------------------------------


def test_popup_form_runs_the_postmessage_bridge(server: VirtualCardServer) -> None:
    page = requests.get(server.url + "/popupForm", timeout=TIMEOUT)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    text = page.text
    assert '{func: "getTbs"}' in text
    assert "window.opener" in text
    assert "window.close()" in text
    # The answer goes back to the requesting origin only.
    assert "opener.postMessage(JSON.stringify(result), origin)" in text


def test_self_test_page(server: VirtualCardServer) -> None:
    page = requests.get(server.url + "/selfTest.htm", timeout=TIMEOUT)
    assert page.status_code == 200
    assert "main" in page.text


# --- the CLI's card folder ------------------------------------------------------------


def test_loads_the_cards_written_by_the_pki_command(tmp_path: Path) -> None:
    from moica_auth.testing.__main__ import write_pki

    manifest = write_pki(
        tmp_path, seed="moica-auth-demo", crl_base_url="http://127.0.0.1:1/crl", ocsp_url=None
    )
    loaded = load_cards(tmp_path)
    assert [c.card_id for c in loaded] == [Path(c["file"]).stem for c in manifest["cards"]]
    first, entry = loaded[0], manifest["cards"][0]
    assert first.card_number == entry["card_number"]
    with VirtualCardServer(loaded, port=0, clock=lambda: AT) as srv:
        srv.insert(first.card_id)
        answer = sign(srv, pin=entry["pin"])
    verified = verify_signature(
        content=TBS.encode(),
        signature=answer["signature"],
        signature_type="PKCS7",
        expected_card_number=entry["card_number"],
    )
    assert f"{verified.certificate.serial_number:X}" == entry["signing_serial"]


# --- hostile neighbours -----------------------------------------------------------------


def test_binds_the_loopback_interface_only(cards: list[VirtualCard]) -> None:
    with _server(cards) as srv:
        assert srv._httpd is not None
        assert srv._httpd.server_address[0] == "127.0.0.1"
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com", ""):  # noqa: S104
        with pytest.raises(ValueError):
            VirtualCardServer(cards, host=host, port=0)
    for host in ("127.0.0.1", "localhost", "::1"):
        VirtualCardServer(cards, host=host, port=0)  # only checked, never started


def test_cli_refuses_a_public_address(tmp_path: Path) -> None:
    from moica_auth.testing.__main__ import write_pki
    from moica_auth.testing.virtual_card import main

    write_pki(
        tmp_path, seed="moica-auth-demo", crl_base_url="http://127.0.0.1:1/crl", ocsp_url=None
    )
    with pytest.raises((SystemExit, ValueError)):
        main(["--cards", str(tmp_path), "--host", "0.0.0.0", "--port", "0"])  # noqa: S104


def test_a_rebound_host_name_cannot_drive_the_card(server: VirtualCardServer) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, so its pages are same-origin
    # with "the component" and could post JSON. The Host header gives it away.
    host = f"evil.example:{server.port}"
    response = requests.post(
        server.url + "/sign",
        json=sign_request(pin="000000"),
        headers={"Host": host},
        timeout=TIMEOUT,
    )
    assert response.status_code == 403
    assert "signature" not in response.text
    assert server.pin_tries_left("main") == 3
    info = requests.get(
        server.url + "/pkcs11info?withcert=true", headers={"Host": host}, timeout=TIMEOUT
    )
    assert info.status_code == 403
    assert "certs" not in info.text
    unlock = requests.post(
        server.url + "/unlock",
        json={"card": "main", "user_code": "0", "new_pin": "123456"},
        headers={"Host": host},
        timeout=TIMEOUT,
    )
    assert unlock.status_code == 403
    for name in ("127.0.0.1", "localhost"):
        ok = requests.post(
            server.url + "/sign",
            json=sign_request(),
            headers={"Host": f"{name}:{server.port}"},
            timeout=TIMEOUT,
        )
        assert ok.json()["ret_code"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example", "Referer": "http://127.0.0.1/addDomain"},
    ],
)
def test_another_site_cannot_confirm_add_domain(
    strict: VirtualCardServer, headers: dict[str, str]
) -> None:
    # A form on any page can POST application/x-www-form-urlencoded here: only the
    # component's own confirmation page may.
    response = requests.post(
        strict.url + "/addDomain",
        data={"domain": "evil.example"},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert response.status_code == 403
    assert "evil.example" not in strict.trusted_domains


def test_the_confirmation_page_itself_can_add_a_domain(strict: VirtualCardServer) -> None:
    response = requests.post(
        strict.url + "/addDomain",
        data={"domain": "new.example"},
        headers={
            "Origin": strict.url,
            "Referer": strict.url + "/addDomain?domain=new.example",
            "Sec-Fetch-Site": "same-origin",
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert "new.example" in strict.trusted_domains


def test_pages_cannot_be_framed(strict: VirtualCardServer) -> None:
    # Framed, the "Trust this site" button could be clickjacked.
    for path in ("/addDomain?domain=new.example", "/popupForm", "/selfTest.htm", "/pkcs11info"):
        response = requests.get(strict.url + path, timeout=TIMEOUT)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "access-control-allow-origin" not in {k.lower() for k in response.headers}


def test_a_bad_content_length_is_a_clean_refusal(server: VirtualCardServer) -> None:
    import socket

    for length in ("abc", "-1"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"POST /addDomain HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + length.encode() + b"\r\n\r\ndomain=x.example"
            )
            sock.shutdown(socket.SHUT_WR)
            status = sock.recv(64).split(b"\r\n", 1)[0]
        assert b" 400 " in status, status
    assert "x.example" not in server.trusted_domains


def test_no_pin_or_user_code_in_the_logs(
    server: VirtualCardServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="moica_auth.testing.virtual_card")
    sign(server, pin="97531864")
    sign(server, pin="24680135")
    sign(server, pin="1357")
    sign(server)
    post(server, "/unlock", {"card": "main", "user_code": "86420975", "new_pin": "11223344"})
    requests.post(server.url + "/sign", data="pin=55667788", timeout=TIMEOUT)
    requests.get(server.url + "/nowhere", timeout=TIMEOUT)
    assert caplog.records, "the server logged nothing at all"
    for secret in ("97531864", "24680135", "1357", "123456", "86420975", "11223344", "55667788"):
        assert secret not in caplog.text


def test_user_code_tries_are_per_card(server: VirtualCardServer) -> None:
    for _ in range(3):
        server.unlock("main", "00000000", "24681357")
    answer = server.unlock("other", "00000000", "24681357")
    assert answer["tries_left"] == 3
    assert server.unlock("main", "00000000", "24681357")["last_error"] == LAST_CARD_LOCKED
    assert server.unlock("other", "11112222", "24681357")["ret_code"] == 0


def test_popup_answers_only_its_opener(server: VirtualCardServer) -> None:
    text = requests.get(server.url + "/popupForm", timeout=TIMEOUT).text
    assert "event.source !== opener" in text
    assert text.count("postMessage(") == 2
    # getTbs carries nothing secret; it is the only message addressed to "*".
    assert 'opener.postMessage(JSON.stringify({func: "getTbs"}), "*")' in text
