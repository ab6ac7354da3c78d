"""The soft card signs like the HiPKI local component (moica_auth.testing.softcard)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moica_auth.testing.pki import FIXED_TIME, CitizenCard, TestPKI, default_pki
from moica_auth.testing.softcard import (
    HIPKI_VERSION,
    OID_CARD_NUMBER_ATTRIBUTE,
    OID_RANDOM_NONCE,
    SoftCard,
    build_signed_data,
    hash_for,
)

TBS = b"moica-auth challenge 0001"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_DATA = "1.2.840.113549.1.7.1"


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return default_pki()


@pytest.fixture(scope="module")
def card(pki: TestPKI) -> CitizenCard:
    return pki.issue_card(generation="G3")


@pytest.fixture(scope="module")
def softcard(card: CitizenCard) -> SoftCard:
    return SoftCard(card)


def signed_data(response: dict[str, Any]) -> cms.SignedData:
    info = cms.ContentInfo.load(base64.b64decode(response["signature"]))
    assert info["content_type"].dotted == "1.2.840.113549.1.7.2"
    return info["content"]


def attributes(signer: cms.SignerInfo) -> dict[str, bytes]:
    """{attribute OID: DER of its single value}; asserts one value per attribute."""
    out: dict[str, bytes] = {}
    for attr in signer["signed_attrs"]:
        values = list(attr["values"])
        assert len(values) == 1
        oid = attr["type"].dotted
        assert oid not in out
        out[oid] = values[0].dump()
    return out


def signed_attrs_der(signer: cms.SignerInfo) -> bytes:
    # RFC 5652 §5.4: the signature covers the SET OF tag (0x31), not the [0] IMPLICIT tag.
    tagged: bytes = signer["signed_attrs"].dump()
    return b"\x31" + tagged[1:]


def verify_attrs_signature(signer: cms.SignerInfo, cert: x509.Certificate, pss=False) -> None:
    h = hashes.SHA256()
    pad = padding.PSS(padding.MGF1(h), h.digest_size) if pss else padding.PKCS1v15()
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signer["signature"].native, signed_attrs_der(signer), pad, h)


# --------------------------------------------------------------------------- response shape


def test_response_has_the_hipki_shape(softcard, card):
    response = softcard.sign(TBS)
    assert list(response) == [
        "func",
        "ret_code",
        "last_error",
        "message",
        "signature",
        "certb64",
        "cardSN",
        "version",
    ]
    assert response["func"] == "sign"
    assert response["ret_code"] == 0 and response["last_error"] == 0
    assert response["cardSN"] == card.card_number
    assert response["version"] == HIPKI_VERSION
    assert base64.b64decode(response["certb64"]) == card.signing.cert_der()


def test_without_card_sn_there_is_no_card_number(softcard):
    response = softcard.sign(TBS, with_card_sn=False)
    assert "cardSN" not in response
    signer = signed_data(response)["signer_infos"][0]
    assert OID_CARD_NUMBER_ATTRIBUTE not in attributes(signer)


def test_unknown_signature_type_is_refused(softcard):
    with pytest.raises(ValueError):
        softcard.sign(TBS, signature_type="RAW")
    with pytest.raises(ValueError):
        hash_for("SHA3")


# --------------------------------------------------------------------------- PKCS1


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA384", "SHA512"])
def test_pkcs1_verifies_with_the_signing_key(softcard, card, hash_name):
    response = softcard.sign(TBS, signature_type="PKCS1", hash_algorithm=hash_name)
    sig = base64.b64decode(response["signature"])
    assert len(sig) == 256
    card.signing.certificate.public_key().verify(sig, TBS, padding.PKCS1v15(), hash_for(hash_name))
    with pytest.raises(InvalidSignature):
        card.signing.certificate.public_key().verify(
            sig, TBS + b"x", padding.PKCS1v15(), hash_for(hash_name)
        )


def test_pkcs1_is_deterministic(softcard):
    a = softcard.sign(TBS, signature_type="PKCS1")
    b = softcard.sign(TBS, signature_type="PKCS1")
    assert a == b


def test_pkcs1_pss(softcard, card):
    response = softcard.sign(TBS, signature_type="PKCS1", pss=True)
    h = hashes.SHA256()
    card.signing.certificate.public_key().verify(
        base64.b64decode(response["signature"]), TBS, padding.PSS(padding.MGF1(h), 32), h
    )


def test_encryption_key_signs_with_the_encryption_certificate(softcard, card):
    response = softcard.sign(TBS, signature_type="PKCS1", use_encryption_key=True)
    assert base64.b64decode(response["certb64"]) == card.encryption.cert_der()
    card.encryption.certificate.public_key().verify(
        base64.b64decode(response["signature"]), TBS, padding.PKCS1v15(), hashes.SHA256()
    )


# --------------------------------------------------------------------------- PKCS7


def test_pkcs7_structure_and_signed_attributes(softcard, card):
    nonce = bytes(range(16))
    response = softcard.sign(TBS, nonce=nonce)
    sd = signed_data(response)
    assert sd["version"].native == "v1"
    assert [d["algorithm"].native for d in sd["digest_algorithms"]] == ["sha256"]
    encap = sd["encap_content_info"]
    assert encap["content_type"].dotted == OID_DATA
    assert encap["content"].native == TBS
    certs = [c.chosen.dump() for c in sd["certificates"]]
    assert certs == [card.signing.cert_der()]
    (signer,) = sd["signer_infos"]
    assert signer["version"].native == "v1"
    sid = signer["sid"].chosen
    assert sid["serial_number"].native == card.signing.certificate.serial_number
    assert sid["issuer"].dump() == card.signing.certificate.issuer.public_bytes()
    assert signer["digest_algorithm"]["algorithm"].native == "sha256"
    assert signer["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.1"
    attrs = attributes(signer)
    assert set(attrs) == {
        OID_CONTENT_TYPE,
        OID_MESSAGE_DIGEST,
        OID_SIGNING_TIME,
        OID_RANDOM_NONCE,
        OID_CARD_NUMBER_ATTRIBUTE,
    }
    assert core.ObjectIdentifier.load(attrs[OID_CONTENT_TYPE]).dotted == OID_DATA
    assert core.OctetString.load(attrs[OID_MESSAGE_DIGEST]).native == (hashlib.sha256(TBS).digest())
    assert cms.Time.load(attrs[OID_SIGNING_TIME]).native == FIXED_TIME
    assert attrs[OID_SIGNING_TIME][0] == 0x17  # UTCTime
    assert core.OctetString.load(attrs[OID_RANDOM_NONCE]).native == nonce
    assert core.PrintableString.load(attrs[OID_CARD_NUMBER_ATTRIBUTE]).native == (card.card_number)
    verify_attrs_signature(signer, card.signing.certificate)


def test_signed_attributes_are_der_sorted(softcard):
    signer = signed_data(softcard.sign(TBS, nonce=b"n"))["signer_infos"][0]
    encoded = [a.dump() for a in signer["signed_attrs"]]
    assert encoded == sorted(encoded)


def test_pkcs7_is_reproducible_with_a_pinned_clock(card):
    a = SoftCard(card, clock=lambda: FIXED_TIME).sign(TBS, nonce=b"n")
    b = SoftCard(card, clock=lambda: FIXED_TIME).sign(TBS, nonce=b"n")
    assert a == b


def test_clock_sets_signing_time(card):
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    signer = signed_data(SoftCard(card, clock=lambda: when).sign(TBS))["signer_infos"][0]
    assert cms.Time.load(attributes(signer)[OID_SIGNING_TIME]).native == when


def test_no_nonce_attribute_without_a_nonce(softcard):
    signer = signed_data(softcard.sign(TBS))["signer_infos"][0]
    assert OID_RANDOM_NONCE not in attributes(signer)


def test_detached_omits_econtent(softcard, card):
    sd = signed_data(softcard.sign(TBS, detached=True))
    assert sd["encap_content_info"]["content"].native is None
    verify_attrs_signature(sd["signer_infos"][0], card.signing.certificate)


def test_without_signed_attributes_the_signature_covers_the_content(softcard, card):
    sd = signed_data(softcard.sign(TBS, signed_attributes=False))
    signer = sd["signer_infos"][0]
    assert signer["signed_attrs"].native is None
    card.signing.certificate.public_key().verify(
        signer["signature"].native, TBS, padding.PKCS1v15(), hashes.SHA256()
    )


def test_certificates_field(softcard, card, pki):
    sd = signed_data(softcard.sign(TBS, include_certificate=False))
    assert sd["certificates"].native is None
    sd = signed_data(
        softcard.sign(TBS, include_certificate=False, extra_certificates=[pki.moica_g3.certificate])
    )
    assert [c.chosen.dump() for c in sd["certificates"]] == [pki.moica_g3.cert_der()]
    sd = signed_data(softcard.sign(TBS, extra_certificates=[pki.moica_g3.certificate]))
    assert [c.chosen.dump() for c in sd["certificates"]] == [
        card.signing.cert_der(),
        pki.moica_g3.cert_der(),
    ]


def test_pkcs7_pss_has_explicit_parameters(softcard, card):
    signer = signed_data(softcard.sign(TBS, pss=True))["signer_infos"][0]
    alg = signer["signature_algorithm"]
    assert alg["algorithm"].dotted == "1.2.840.113549.1.1.10"
    params = alg["parameters"]
    assert params["hash_algorithm"]["algorithm"].native == "sha256"
    assert params["mask_gen_algorithm"]["algorithm"].native == "mgf1"
    assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == "sha256"
    assert params["salt_length"].native == 32
    verify_attrs_signature(signer, card.signing.certificate, pss=True)


def test_pkcs7_with_encryption_key(softcard, card):
    response = softcard.sign(TBS, use_encryption_key=True)
    sd = signed_data(response)
    assert [c.chosen.dump() for c in sd["certificates"]] == [card.encryption.cert_der()]
    verify_attrs_signature(sd["signer_infos"][0], card.encryption.certificate)


# --------------------------------------------------------------------------- broken variants


def _load(der: bytes) -> cms.SignerInfo:
    return cms.ContentInfo.load(der)["content"]["signer_infos"][0]


def test_build_signed_data_with_wrong_message_digest(card):
    der = build_signed_data(
        content=TBS,
        private_key=card.signing.private_key,
        certificate=card.signing.certificate,
        message_digest=b"\x00" * 32,
    )
    signer = _load(der)
    assert core.OctetString.load(attributes(signer)[OID_MESSAGE_DIGEST]).native == b"\0" * 32
    # The signature itself is valid: only the digest check can catch this.
    verify_attrs_signature(signer, card.signing.certificate)


def test_build_signed_data_with_wrong_content_type_attribute(card):
    der = build_signed_data(
        content=TBS,
        private_key=card.signing.private_key,
        certificate=card.signing.certificate,
        content_type="1.2.840.113549.1.7.2",
    )
    signer = _load(der)
    assert core.ObjectIdentifier.load(attributes(signer)[OID_CONTENT_TYPE]).dotted == (
        "1.2.840.113549.1.7.2"
    )
    verify_attrs_signature(signer, card.signing.certificate)


def test_build_signed_data_with_tampered_attributes(card):
    def swap_nonce(attrs: list[cms.CMSAttribute]) -> list[cms.CMSAttribute]:
        return [
            a
            if a["type"].dotted != OID_RANDOM_NONCE
            else cms.CMSAttribute.load(a.dump().replace(b"good-nonce", b"evil-nonce"))
            for a in attrs
        ]

    der = build_signed_data(
        content=TBS,
        private_key=card.signing.private_key,
        certificate=card.signing.certificate,
        nonce=b"good-nonce",
        tamper_attributes=swap_nonce,
    )
    signer = _load(der)
    assert core.OctetString.load(attributes(signer)[OID_RANDOM_NONCE]).native == b"evil-nonce"
    with pytest.raises(InvalidSignature):
        verify_attrs_signature(signer, card.signing.certificate)


def test_build_signed_data_defaults(card):
    der = build_signed_data(
        content=TBS, private_key=card.signing.private_key, certificate=card.signing.certificate
    )
    signer = _load(der)
    # No time, nonce or card number unless asked for.
    assert set(attributes(signer)) == {OID_CONTENT_TYPE, OID_MESSAGE_DIGEST}
    verify_attrs_signature(signer, card.signing.certificate)


# --------------------------------------------------------------------------- interop


def test_the_library_verifier_accepts_soft_card_output(softcard, card):
    signature = pytest.importorskip("moica_auth.signature")
    response = softcard.sign(TBS, nonce=b"nonce-1")
    verified = signature.verify_signature(
        content=TBS,
        signature=response["signature"],
        signature_type="PKCS7",
        expected_nonce=b"nonce-1",
        expected_card_number=card.card_number,
    )
    assert verified.certificate == card.signing.certificate
    assert verified.signing_time == FIXED_TIME
    response = softcard.sign(TBS, signature_type="PKCS1")
    verified = signature.verify_signature(
        content=TBS,
        signature=response["signature"],
        signature_type="PKCS1",
        certificate=response["certb64"],
    )
    assert verified.certificate.public_bytes(serialization.Encoding.DER) == (
        card.signing.cert_der()
    )


def test_sha1_is_available_for_rejection_tests(softcard, card):
    response = softcard.sign(TBS, signature_type="PKCS1", hash_algorithm="SHA1")
    rsa_key = card.signing.certificate.public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey)
    rsa_key.verify(
        base64.b64decode(response["signature"]),
        TBS,
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303
    )
    signer = signed_data(softcard.sign(TBS, hash_algorithm="SHA1"))["signer_infos"][0]
    assert signer["digest_algorithm"]["algorithm"].native == "sha1"
