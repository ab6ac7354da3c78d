"""Phase 2 parts below the browser: the virtual card's RAW signing and bounded evidence input.

The virtual card's RAW answer goes through the same server-side verifier a real card's
would (``verify_signing``), so a card that signed something else, or a DigestInfo the
verifier would not accept, fails here.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moica_auth.exceptions import EvidenceInvalid
from moica_auth.signing.evidence import verify_evidence
from moica_auth.signing.request import digest_info
from moica_auth.testing.pki import CitizenCard
from moica_auth.testing.virtual_card import RET_BAD_REQUEST, VirtualCard, VirtualCardServer


def _server(card: CitizenCard) -> tuple[VirtualCardServer, str]:
    server = VirtualCardServer([VirtualCard.from_citizen_card(card, card_id="c")], port=0)
    server.insert("c")
    return server, server._state["c"].pin


def _raw(tbs: bytes, pin: str) -> dict[str, Any]:
    return {
        "func": "MakeSignature",
        "signatureType": "RAW",
        "tbs": base64.b64encode(tbs).decode(),
        "tbsEncoding": "base64",
        "hashAlgorithm": "SHA256",
        "withCardSN": "true",
        "pin": pin,
    }


def test_virtual_card_raw_signs_the_digest_info_as_pkcs1(card_g3: CitizenCard) -> None:
    server, pin = _server(card_g3)
    text = "moica-auth-sign/1\n測試".encode()
    answer = server.sign(_raw(digest_info(text), pin))
    assert answer["ret_code"] == 0, answer
    cert = x509.load_der_x509_certificate(base64.b64decode(answer["certb64"]))
    assert cert == card_g3.signing.certificate
    assert answer["cardSN"] == card_g3.card_number
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    # RAW over DigestInfo(SHA-256(text)) is exactly RSASSA-PKCS1-v1_5 over the text.
    key.verify(base64.b64decode(answer["signature"]), text, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize(
    "tbs",
    [
        b"not a digest info",
        digest_info(b"x")[:-1],  # one byte short
        digest_info(b"x") + b"\x00",  # one byte long
        bytes.fromhex("302f300b060960864801650304020104") + bytes(32),  # NULL omitted
    ],
    ids=["text", "short", "long", "no-null"],
)
def test_virtual_card_raw_refuses_anything_but_a_digest_info(
    card_g3: CitizenCard, tbs: bytes
) -> None:
    server, pin = _server(card_g3)
    answer = server.sign(_raw(tbs, pin))
    assert answer["ret_code"] == RET_BAD_REQUEST
    assert "signature" not in answer


def test_virtual_card_raw_still_checks_the_pin(card_g3: CitizenCard) -> None:
    server, pin = _server(card_g3)
    wrong = "000000" if pin != "000000" else "111111"
    answer = server.sign(_raw(digest_info(b"x"), wrong))
    assert answer["ret_code"] != 0
    assert "signature" not in answer


@pytest.mark.parametrize("data", [b"[" * 200_000, b'{"a":' * 100_000], ids=["list", "dict"])
def test_deeply_nested_evidence_is_a_typed_refusal(data: bytes) -> None:
    with pytest.raises(EvidenceInvalid) as caught:
        verify_evidence(data, anchors=[])
    assert caught.value.data["field"] == "file"
