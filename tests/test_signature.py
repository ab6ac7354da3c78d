"""Signature verification of what the card returns (moica_auth.signature).

Every rejection asserts its error ``code``. What a card really returns comes from the shared
soft card (moica_auth.testing.softcard) over the shared test PKI; the broken CMS variants it
cannot produce (other versions, signer ids, algorithm OIDs, attribute sets) come from
tests/signature_fixtures.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moica_auth.exceptions import MoicaAuthError
from moica_auth.signature import (
    DEFAULT_ALLOWED_HASHES,
    MAX_SIGNATURE_BYTES,
    OID_CARD_NUMBER,
    OID_RANDOM_NONCE,
    VerifiedSignature,
    decode_signature,
    verify_signature,
)
from moica_auth.testing.pki import CitizenCard, default_pki
from moica_auth.testing.softcard import SoftCard
from moica_auth.testing.softcard import build_signed_data as soft_signed_data
from tests.signature_fixtures import (
    CHALLENGE,
    NONCE,
    SIGNED_AT,
    CmsSpec,
    attribute,
    build_signed_data,
    default_spec,
    opaque,
    other_signing_card,
    signing_card,
)
from tests.validation_fixtures import with_duplicate_extension


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def card() -> CitizenCard:
    return signing_card()


@pytest.fixture(scope="module")
def other_card() -> CitizenCard:
    return other_signing_card()


@pytest.fixture(scope="module")
def spec(card: CitizenCard) -> CmsSpec:
    return default_spec(card)


@pytest.fixture(scope="module")
def soft(card: CitizenCard) -> SoftCard:
    return SoftCard(card)


@pytest.fixture(scope="module")
def response(soft: SoftCard) -> dict[str, Any]:
    """The HiPKI ``sign`` response of a PKCS7 login signature with nonce and card number."""
    return soft.sign(CHALLENGE, nonce=NONCE)


@pytest.fixture(scope="module")
def good_der(response: dict[str, Any]) -> bytes:
    return base64.b64decode(response["signature"])


def card_signed(card: CitizenCard, **kwargs: Any) -> bytes:
    """A SignedData from the soft card's low-level builder, signed by ``card``."""
    kwargs.setdefault("content", CHALLENGE)
    return soft_signed_data(
        private_key=card.signing.private_key, certificate=card.signing.certificate, **kwargs
    )


def pkcs7(der: bytes | str, **kwargs: object) -> VerifiedSignature:
    kwargs.setdefault("content", CHALLENGE)
    return verify_signature(signature=der, signature_type="PKCS7", **kwargs)  # type: ignore[arg-type]


def rejects(code: str, der: bytes | str, **kwargs: object) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        pkcs7(der, **kwargs)
    assert exc.value.code == code, exc.value


# --- PKCS7: what is accepted ------------------------------------------------------------


def test_hipki_pkcs7_response_verifies(card: CitizenCard, response: dict[str, Any]) -> None:
    result = pkcs7(
        response["signature"],
        certificate=response["certb64"],
        expected_nonce=NONCE,
        expected_card_number=response["cardSN"],
    )
    assert result.signature_type == "PKCS7"
    assert result.hash_algorithm == "sha256"
    assert result.padding == "pkcs1v15"
    assert result.signed_content == CHALLENGE
    assert result.signing_time == card.issued_at
    assert result.nonce == NONCE
    assert result.card_number == card.card_number
    assert _der(result.certificate) == card.signing.cert_der()
    assert result.certificates == ()


@pytest.mark.parametrize("attached", [True, False], ids=["attached", "detached"])
@pytest.mark.parametrize("signed_attrs", [True, False], ids=["attrs", "no-attrs"])
def test_attached_detached_with_and_without_attributes(
    soft: SoftCard, attached: bool, signed_attrs: bool
) -> None:
    answer = soft.sign(
        CHALLENGE, nonce=NONCE, detached=not attached, signed_attributes=signed_attrs
    )
    result = pkcs7(answer["signature"], certificate=answer["certb64"])
    assert result.signed_content == CHALLENGE
    if not signed_attrs:
        assert (result.nonce, result.card_number, result.signing_time) == (None, None, None)


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA384", "SHA512"])
@pytest.mark.parametrize("pss", [False, True], ids=["pkcs1v15", "pss"])
def test_accepted_hashes_and_paddings(soft: SoftCard, hash_name: str, pss: bool) -> None:
    answer = soft.sign(CHALLENGE, nonce=NONCE, hash_algorithm=hash_name, pss=pss)
    result = pkcs7(answer["signature"], hash_algorithm=hash_name)
    assert result.hash_algorithm == hash_name.lower()
    assert result.padding == ("pss" if pss else "pkcs1v15")


@pytest.mark.parametrize("sig_alg", ["sha256_rsa", "rsassa_pkcs1v15"])
def test_signature_algorithm_with_or_without_hash_in_oid(spec: CmsSpec, sig_alg: str) -> None:
    assert pkcs7(build_signed_data(replace(spec, signature_algorithm=sig_alg))).padding == (
        "pkcs1v15"
    )


def test_signer_identified_by_subject_key_identifier(spec: CmsSpec) -> None:
    der = build_signed_data(replace(spec, sid="subject_key_identifier"))
    assert pkcs7(der).nonce == NONCE


def test_certificate_from_certb64_when_not_carried(card: CitizenCard, soft: SoftCard) -> None:
    answer = soft.sign(CHALLENGE, nonce=NONCE, include_certificate=False)
    result = pkcs7(answer["signature"], certificate=answer["certb64"])
    assert _der(result.certificate) == card.signing.cert_der()


def test_other_carried_certificates_are_returned(card: CitizenCard, soft: SoftCard) -> None:
    answer = soft.sign(CHALLENGE, nonce=NONCE, extra_certificates=card.chain)
    result = pkcs7(answer["signature"], certificate=answer["certb64"])
    assert [_der(c) for c in result.certificates] == [_der(c) for c in card.chain]
    assert _der(result.certificate) == card.signing.cert_der()


def test_signature_covers_original_attribute_bytes_not_a_re_encoding(spec: CmsSpec) -> None:
    # Attributes in non-canonical (unsorted) order: a verifier that re-encodes the SET
    # (sorting it as DER demands) would hash different bytes than were signed.
    der = build_signed_data(replace(spec, attribute_order=lambda attrs: attrs[::-1]))
    assert pkcs7(der).nonce == NONCE


@pytest.mark.parametrize(
    "encode",
    [
        lambda der: der,
        lambda der: base64.b64encode(der),
        lambda der: base64.b64encode(der).decode(),
        lambda der: base64.encodebytes(der).decode(),  # MIME line breaks
        lambda der: base64.urlsafe_b64encode(der).decode().rstrip("="),
        lambda der: "  " + base64.b64encode(der).decode() + "\r\n",
    ],
    ids=["der", "b64-bytes", "b64-str", "b64-lines", "urlsafe-unpadded", "whitespace"],
)
def test_signature_encodings(good_der: bytes, encode: object) -> None:
    assert decode_signature(encode(good_der)) == good_der  # type: ignore[operator]
    assert pkcs7(encode(good_der)).nonce == NONCE  # type: ignore[operator]


def test_signature_type_is_case_insensitive(good_der: bytes) -> None:
    assert verify_signature(content=CHALLENGE, signature=good_der, signature_type="pkcs7")


def test_sha1_only_when_explicitly_allowed(soft: SoftCard) -> None:
    answer = soft.sign(CHALLENGE, hash_algorithm="SHA1")
    result = pkcs7(answer["signature"], allowed_hashes=DEFAULT_ALLOWED_HASHES | {"sha1"})
    assert result.hash_algorithm == "sha1"


def test_card_number_as_octet_string(spec: CmsSpec) -> None:
    extra = attribute(OID_CARD_NUMBER, opaque(core.OctetString(b"TP03123456789012")))
    der = build_signed_data(replace(spec, card_number=None, extra_attributes=[extra]))
    assert pkcs7(der, expected_card_number="TP03123456789012").card_number == ("TP03123456789012")


def test_nonce_as_printable_string(spec: CmsSpec) -> None:
    extra = attribute(OID_RANDOM_NONCE, opaque(core.PrintableString("abc123")))
    der = build_signed_data(replace(spec, nonce=None, extra_attributes=[extra]))
    assert pkcs7(der, expected_nonce=b"abc123").nonce == b"abc123"


def test_encryption_key_signature_verifies_but_reports_that_certificate(
    card: CitizenCard, soft: SoftCard
) -> None:
    # Refusing the encryption certificate is the chain validator's job (keyUsage, RFC
    # 5280 §4.2.1.3); here it must come back as the signer, never as the signing cert.
    answer = soft.sign(CHALLENGE, use_encryption_key=True)
    result = pkcs7(answer["signature"], certificate=answer["certb64"])
    assert _der(result.certificate) == card.encryption.cert_der()


# --- PKCS7: content, attributes, signature ----------------------------------------------


def test_rejects_attached_content_that_is_not_the_challenge(good_der: bytes) -> None:
    rejects("content_mismatch", good_der, content=CHALLENGE + b"x")


def test_rejects_attached_content_even_if_correctly_signed(soft: SoftCard) -> None:
    answer = soft.sign(b"another challenge", nonce=NONCE)
    rejects("content_mismatch", answer["signature"])


@pytest.mark.parametrize("signed_attrs", [True, False], ids=["attrs", "no-attrs"])
def test_rejects_detached_signature_over_other_content(soft: SoftCard, signed_attrs: bool) -> None:
    answer = soft.sign(CHALLENGE, detached=True, signed_attributes=signed_attrs)
    rejects("signature_invalid", answer["signature"], content=CHALLENGE[:-1] + b"?")


def test_rejects_wrong_message_digest(card: CitizenCard) -> None:
    rejects("signature_invalid", card_signed(card, message_digest=b"\x00" * 32))


def test_rejects_content_type_attribute_other_than_id_data(card: CitizenCard) -> None:
    der = card_signed(card, content_type="1.2.840.113549.1.7.2")
    rejects("signature_invalid", der)


def test_rejects_attributes_changed_after_signing(card: CitizenCard) -> None:
    def swap_nonce(attrs: list[cms.CMSAttribute]) -> list[cms.CMSAttribute]:
        kept = [a for a in attrs if a["type"].dotted != OID_RANDOM_NONCE]
        return [*kept, attribute(OID_RANDOM_NONCE, opaque(core.OctetString(b"forged")))]

    der = card_signed(card, nonce=NONCE, tamper_attributes=swap_nonce)
    rejects("signature_invalid", der, expected_nonce=b"forged")


@pytest.mark.parametrize("missing", ["content_type", "message_digest"])
def test_rejects_missing_mandatory_attribute(spec: CmsSpec, missing: str) -> None:
    rejects("malformed_signature", build_signed_data(replace(spec, drop_attributes=[missing])))


def test_rejects_duplicate_attribute(spec: CmsSpec) -> None:
    dup = attribute(OID_RANDOM_NONCE, opaque(core.OctetString(b"second")))
    rejects("malformed_signature", build_signed_data(replace(spec, extra_attributes=[dup])))


def test_rejects_attribute_with_two_values(spec: CmsSpec) -> None:
    two = attribute(
        "signing_time", cms.Time({"utc_time": SIGNED_AT}), cms.Time({"utc_time": SIGNED_AT})
    )
    rejects("malformed_signature", build_signed_data(replace(spec, extra_attributes=[two])))


def test_rejects_signature_over_implicitly_tagged_attributes(spec: CmsSpec) -> None:
    rejects("signature_invalid", build_signed_data(replace(spec, sign_tagged_attributes=True)))


def test_rejects_tampered_signature_value(good_der: bytes) -> None:
    # The RSA signature is the last OCTET STRING of the structure: flip its last byte.
    tampered = good_der[:-1] + bytes([good_der[-1] ^ 0x01])
    rejects("signature_invalid", tampered)


def test_rejects_signature_by_another_key(card: CitizenCard, other_card: CitizenCard) -> None:
    der = soft_signed_data(
        content=CHALLENGE,
        private_key=other_card.signing.private_key,
        certificate=card.signing.certificate,
    )
    rejects("signature_invalid", der)


# --- PKCS7: certificates ----------------------------------------------------------------


def test_rejects_certb64_that_is_not_the_carried_certificate(
    good_der: bytes, other_card: CitizenCard
) -> None:
    rejects("certificate_mismatch", good_der, certificate=other_card.signing.cert_der())


def test_rejects_certb64_that_does_not_match_the_signer_id(
    card: CitizenCard, other_card: CitizenCard
) -> None:
    der = card_signed(card, certificates=[])
    rejects("certificate_mismatch", der, certificate=other_card.signing.certificate)


def test_rejects_certb64_that_does_not_match_the_signer_key_id(
    spec: CmsSpec, other_card: CitizenCard
) -> None:
    der = build_signed_data(replace(spec, include_certificate=False, sid="subject_key_identifier"))
    rejects("certificate_mismatch", der, certificate=other_card.signing.certificate)


def test_rejects_when_no_certificate_at_all(soft: SoftCard) -> None:
    answer = soft.sign(CHALLENGE, include_certificate=False)
    rejects("malformed_signature", answer["signature"])


def test_rejects_when_only_unrelated_certificates_are_carried(
    card: CitizenCard, other_card: CitizenCard
) -> None:
    der = card_signed(card, certificates=[other_card.signing.certificate])
    rejects("malformed_signature", der)


@pytest.mark.parametrize("sid", ["subject_key_identifier", "issuer_and_serial_number"])
def test_rejects_carried_certificate_with_duplicate_extensions(
    spec: CmsSpec, card: CitizenCard, sid: str
) -> None:
    # The signer lookup by subjectKeyIdentifier reads the carried certificate's
    # extensions; cryptography's DuplicateExtension must not escape verify_signature.
    bad = with_duplicate_extension(card.signing.certificate, card.issuer.private_key)
    der = build_signed_data(
        replace(spec, sid=sid, include_certificate=False, extra_certificates=[bad])
    )
    rejects("malformed_signature", der)
    rejects("malformed_signature", der, certificate=card.signing.certificate)


def test_rejects_malformed_certb64(good_der: bytes) -> None:
    rejects("malformed_certificate", good_der, certificate="not a certificate!")


def test_rejects_non_rsa_signer_key(card: CitizenCard) -> None:
    ec_leaf = default_pki().issue_leaf(
        issuer=card.issuer,
        subject=card.signing.certificate.subject,
        label="signature-tests/ec",
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )
    # Signed with the card's RSA key but naming the EC certificate: the key type alone
    # must refuse it.
    der = soft_signed_data(
        content=CHALLENGE,
        private_key=card.signing.private_key,
        certificate=ec_leaf.certificate,
    )
    rejects("signature_invalid", der)


def test_rejects_non_rsa_signature_algorithm(spec: CmsSpec) -> None:
    rejects(
        "signature_invalid", build_signed_data(replace(spec, signature_algorithm="sha256_ecdsa"))
    )


# --- PKCS7: hashes ----------------------------------------------------------------------


def test_rejects_sha1_by_default(soft: SoftCard) -> None:
    rejects("weak_hash", soft.sign(CHALLENGE, hash_algorithm="SHA1")["signature"])


def test_rejects_md5_even_when_allowed(soft: SoftCard) -> None:
    der = soft.sign(CHALLENGE, hash_algorithm="MD5")["signature"]
    rejects("weak_hash", der, allowed_hashes=frozenset({"md5", "sha256"}))


def test_rejects_signature_algorithm_hash_disagreeing_with_digest(spec: CmsSpec) -> None:
    rejects("signature_invalid", build_signed_data(replace(spec, signature_algorithm="sha384_rsa")))


def test_rejects_sha1_signature_algorithm(spec: CmsSpec) -> None:
    rejects("weak_hash", build_signed_data(replace(spec, signature_algorithm="sha1_rsa")))


def test_rejects_pss_hash_disagreeing_with_digest(spec: CmsSpec) -> None:
    params = {
        "hash_algorithm": {"algorithm": "sha512"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha512"}},
        "salt_length": 32,
    }
    rejects("signature_invalid", build_signed_data(replace(spec, pss=True, pss_params=params)))


def test_rejects_pss_with_default_sha1_parameters(spec: CmsSpec) -> None:
    rejects("weak_hash", build_signed_data(replace(spec, pss=True, pss_params={"salt_length": 32})))


def test_rejects_pss_with_wrong_salt_length(spec: CmsSpec) -> None:
    params = {
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        "salt_length": 20,  # the signature used 32
    }
    rejects("signature_invalid", build_signed_data(replace(spec, pss=True, pss_params=params)))


def test_rejects_requested_hash_other_than_the_one_used(good_der: bytes) -> None:
    rejects("weak_hash", good_der, hash_algorithm="SHA384")
    assert pkcs7(good_der, hash_algorithm="SHA256").hash_algorithm == "sha256"


# --- PKCS7: nonce and card number -------------------------------------------------------


def test_rejects_other_nonce(good_der: bytes) -> None:
    rejects("nonce_mismatch", good_der, expected_nonce=b"another nonce")


def test_rejects_missing_nonce_when_one_is_expected(soft: SoftCard) -> None:
    rejects("nonce_mismatch", soft.sign(CHALLENGE)["signature"], expected_nonce=NONCE)


def test_rejects_nonce_expected_without_signed_attributes(soft: SoftCard) -> None:
    answer = soft.sign(CHALLENGE, nonce=NONCE, signed_attributes=False)
    rejects("nonce_mismatch", answer["signature"], expected_nonce=NONCE)


def test_rejects_other_card_number(good_der: bytes) -> None:
    rejects("card_number_mismatch", good_der, expected_card_number="TP03999999999999")


def test_rejects_missing_card_number_when_one_is_expected(
    soft: SoftCard, card: CitizenCard
) -> None:
    answer = soft.sign(CHALLENGE, nonce=NONCE, with_card_sn=False)
    rejects("card_number_mismatch", answer["signature"], expected_card_number=card.card_number)


def test_rejects_malformed_nonce_attribute(spec: CmsSpec) -> None:
    bad = attribute(OID_RANDOM_NONCE, opaque(core.Integer(7)))
    rejects(
        "malformed_signature", build_signed_data(replace(spec, nonce=None, extra_attributes=[bad]))
    )


# --- PKCS7: structure -------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 2])
def test_rejects_signer_count_other_than_one(spec: CmsSpec, count: int) -> None:
    rejects("malformed_signature", build_signed_data(replace(spec, signer_count=count)))


def test_rejects_content_info_that_is_not_signed_data(spec: CmsSpec) -> None:
    rejects("malformed_signature", build_signed_data(replace(spec, content_info_type="data")))


def test_rejects_encapsulated_content_type_other_than_data(spec: CmsSpec) -> None:
    der = build_signed_data(replace(spec, econtent_type="1.2.3.4"))
    rejects("malformed_signature", der)


@pytest.mark.parametrize(
    ("sid", "version"),
    [("issuer_and_serial_number", "v3"), ("subject_key_identifier", "v1")],
)
def test_rejects_signer_info_version_not_matching_sid(
    spec: CmsSpec, sid: str, version: str
) -> None:
    der = build_signed_data(
        replace(spec, sid=sid, signer_version=version, signed_data_version="v3")
    )
    rejects("malformed_signature", der)


def test_rejects_signed_data_version_1_with_version_3_signer(spec: CmsSpec) -> None:
    der = build_signed_data(replace(spec, sid="subject_key_identifier", signed_data_version="v1"))
    rejects("malformed_signature", der)


@pytest.mark.parametrize("version", ["v0", "v2", "v4", "v5"])
def test_rejects_unsupported_signed_data_version(spec: CmsSpec, version: str) -> None:
    rejects("malformed_signature", build_signed_data(replace(spec, signed_data_version=version)))


_SHA256_ALG_ID = bytes.fromhex("300d06096086480165030402010500")


def test_rejects_digest_algorithm_parameters_other_than_null(good_der: bytes) -> None:
    # Same length, so the structure stays well-formed: NULL becomes an empty OCTET STRING.
    bad = good_der.replace(_SHA256_ALG_ID, _SHA256_ALG_ID[:-2] + b"\x04\x00")
    rejects("malformed_signature", bad)


def test_rejects_garbage_in_the_unsigned_digest_algorithms_set(good_der: bytes) -> None:
    # Found by fuzzing: asn1crypto parses lazily, so a field the verifier does not use
    # must still be parsed, or garbage in it would be carried along silently.
    bad = good_der.replace(_SHA256_ALG_ID, _SHA256_ALG_ID[:-2] + b"\x80\x00", 1)
    rejects("malformed_signature", bad)


def _with_carried_certificate_bytes(
    good_der: bytes, card: CitizenCard, offset: int, value: int
) -> bytes:
    cert = bytearray(card.signing.cert_der())
    cert[offset] = value
    assert good_der.count(card.signing.cert_der()) == 1
    return good_der.replace(card.signing.cert_der(), bytes(cert))


def test_rejects_carried_certificate_with_invalid_version(
    good_der: bytes, card: CitizenCard
) -> None:
    # Found by fuzzing: cryptography raises InvalidVersion, which is not a ValueError.
    # DER: 30 82 LL LL | 30 82 LL LL | A0 03 02 01 <version>
    rejects("malformed_signature", _with_carried_certificate_bytes(good_der, card, 12, 0x3D))


def test_rejects_carried_certificate_with_negative_serial(
    good_der: bytes, card: CitizenCard
) -> None:
    # DER: … A0 03 02 01 02 | 02 <len> <serial…>: make the serial's first octet negative.
    rejects("malformed_signature", _with_carried_certificate_bytes(good_der, card, 15, 0x80))


def test_rejects_truncated_der(good_der: bytes) -> None:
    for cut in (1, 10, len(good_der) // 2, len(good_der) - 1):
        rejects("malformed_signature", good_der[:cut])


def test_rejects_trailing_garbage(good_der: bytes) -> None:
    rejects("malformed_signature", good_der + b"\x00")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        b"",
        "not base64 at all!",
        "QUJD=QUJD",
        "ab+c-d",  # standard and URL-safe alphabets mixed
        "A",  # impossible base64 length
        "中文",
        b"\x01\x02\x03",
        "MIIB",  # base64 of a truncated SEQUENCE
        base64.b64encode(b"\x30\x03\x02\x01\x01").decode(),  # a SEQUENCE, not a ContentInfo
    ],
)
def test_rejects_garbage(garbage: bytes | str) -> None:
    rejects("malformed_signature", garbage)


def test_rejects_huge_input() -> None:
    rejects("malformed_signature", b"\x30\x83\x10\x00\x00" + b"\x00" * (MAX_SIGNATURE_BYTES + 1))
    rejects("malformed_signature", "A" * (MAX_SIGNATURE_BYTES * 2 + 4))


def test_rejects_unknown_signature_type(good_der: bytes) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(content=CHALLENGE, signature=good_der, signature_type="RAW")
    assert exc.value.code == "malformed_signature"


# --- PKCS1 ------------------------------------------------------------------------------


def _pkcs1(card: CitizenCard, content: bytes, hash_algorithm: hashes.HashAlgorithm) -> str:
    """The soft card's PKCS1 ``signature`` field (base64) over ``content``."""
    answer = SoftCard(card).sign(
        content, signature_type="PKCS1", hash_algorithm=hash_algorithm.name
    )
    signature: str = answer["signature"]
    return signature


@pytest.mark.parametrize(
    ("name", "expected"), [("SHA256", "sha256"), ("sha-384", "sha384"), ("SHA512", "sha512")]
)
def test_hipki_pkcs1_response_verifies(soft: SoftCard, name: str, expected: str) -> None:
    answer = soft.sign(CHALLENGE, signature_type="PKCS1", hash_algorithm=name)
    result = verify_signature(
        content=CHALLENGE,
        signature=answer["signature"],
        signature_type="PKCS1",
        certificate=answer["certb64"],
        hash_algorithm=name,
        # Not checked for PKCS1: HiPKI's cardSN is not signed (docs/signatures.md).
        expected_card_number=answer["cardSN"],
    )
    assert result.signature_type == "PKCS1"
    assert result.hash_algorithm == expected
    assert result.padding == "pkcs1v15"
    assert (result.nonce, result.card_number, result.signing_time) == (None, None, None)
    assert result.certificates == ()


def test_pkcs1_rejects_an_expected_nonce_it_cannot_carry(soft: SoftCard) -> None:
    # A bare signature has no signed attributes: a caller that asks for a nonce must not
    # get a silent pass (the nonce binding has to come from the signed content).
    answer = soft.sign(CHALLENGE, signature_type="PKCS1")
    for expected in (NONCE, NONCE.decode()):
        with pytest.raises(MoicaAuthError) as info:
            verify_signature(
                content=CHALLENGE,
                signature=answer["signature"],
                signature_type="PKCS1",
                certificate=answer["certb64"],
                expected_nonce=expected,  # type: ignore[arg-type]
            )
        assert info.value.code == "nonce_mismatch"
    # A signature that does not verify still says so first.
    with pytest.raises(MoicaAuthError) as info:
        verify_signature(
            content=CHALLENGE + b"!",
            signature=answer["signature"],
            signature_type="PKCS1",
            certificate=answer["certb64"],
            expected_nonce=NONCE,
        )
    assert info.value.code == "signature_invalid"


def test_allowed_hash_names_are_normalised(soft: SoftCard) -> None:
    # HiPKI and settings spell them "SHA256" / "SHA-256": compared raw they matched nothing
    # and every signature was refused as weak_hash.
    answer = soft.sign(CHALLENGE, signature_type="PKCS1")
    for allowed in (frozenset({"SHA256"}), frozenset({"SHA-256", "SHA-512"})):
        result = verify_signature(
            content=CHALLENGE,
            signature=answer["signature"],
            signature_type="PKCS1",
            certificate=answer["certb64"],
            allowed_hashes=allowed,
        )
        assert result.hash_algorithm == "sha256"
    # Normalising never widens the set, and MD5 stays refused whatever it is called.
    with pytest.raises(MoicaAuthError) as info:
        verify_signature(
            content=CHALLENGE,
            signature=answer["signature"],
            signature_type="PKCS1",
            certificate=answer["certb64"],
            allowed_hashes=frozenset({"SHA-512", "MD5"}),
        )
    assert info.value.code == "weak_hash"
    with pytest.raises(MoicaAuthError) as info:
        verify_signature(
            content=CHALLENGE,
            signature=answer["signature"],
            signature_type="PKCS1",
            certificate=answer["certb64"],
            allowed_hashes="sha256",  # type: ignore[arg-type]
        )
    assert info.value.code == "weak_hash"


def test_pkcs1_defaults_to_sha256(card: CitizenCard) -> None:
    result = verify_signature(
        content=CHALLENGE,
        signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
        signature_type="PKCS1",
        certificate=card.signing.certificate,
    )
    assert result.hash_algorithm == "sha256"


def test_pkcs1_pss_only_when_asked(card: CitizenCard, soft: SoftCard) -> None:
    kwargs: dict[str, Any] = {
        "content": CHALLENGE,
        "signature": soft.sign(CHALLENGE, signature_type="PKCS1", pss=True)["signature"],
        "signature_type": "PKCS1",
        "certificate": card.signing.certificate,
    }
    assert verify_signature(**kwargs, padding="pss").padding == "pss"
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(**kwargs)
    assert exc.value.code == "signature_invalid"


def test_pkcs1_rejects_changed_content(card: CitizenCard) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE + b"!",
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
            certificate=card.signing.certificate,
        )
    assert exc.value.code == "signature_invalid"


def test_pkcs1_rejects_other_hash_than_signed(card: CitizenCard) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE,
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
            certificate=card.signing.certificate,
            hash_algorithm="SHA512",
        )
    assert exc.value.code == "signature_invalid"


def test_pkcs1_rejects_other_certificate(card: CitizenCard, other_card: CitizenCard) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE,
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
            certificate=other_card.signing.certificate,
        )
    assert exc.value.code == "signature_invalid"


def test_pkcs1_requires_a_certificate(card: CitizenCard) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE,
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
        )
    assert exc.value.code == "malformed_signature"


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("SHA1", DEFAULT_ALLOWED_HASHES),
        ("MD5", DEFAULT_ALLOWED_HASHES | {"md5"}),
        ("SHA3-256", DEFAULT_ALLOWED_HASHES),
        ("nonsense", DEFAULT_ALLOWED_HASHES),
    ],
)
def test_pkcs1_rejects_weak_or_unknown_hash(
    card: CitizenCard, name: str, allowed: frozenset[str]
) -> None:
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE,
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
            certificate=card.signing.certificate,
            hash_algorithm=name,
            allowed_hashes=allowed,
        )
    assert exc.value.code == "weak_hash"


def test_pkcs1_sha1_when_explicitly_allowed(card: CitizenCard) -> None:
    result = verify_signature(
        content=CHALLENGE,
        signature=_pkcs1(card, CHALLENGE, hashes.SHA1()),  # noqa: S303 - the refused hash
        signature_type="PKCS1",
        certificate=card.signing.certificate,
        hash_algorithm="SHA1",
        allowed_hashes=DEFAULT_ALLOWED_HASHES | {"sha1"},
    )
    assert result.hash_algorithm == "sha1"


def test_pkcs1_rejects_non_rsa_certificate(card: CitizenCard) -> None:
    ec_leaf = default_pki().issue_leaf(
        issuer=card.issuer,
        subject=card.signing.certificate.subject,
        label="signature-tests/ec-pkcs1",
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(
            content=CHALLENGE,
            signature=_pkcs1(card, CHALLENGE, hashes.SHA256()),
            signature_type="PKCS1",
            certificate=ec_leaf.certificate,
        )
    assert exc.value.code == "signature_invalid"


# --- real MOICA vectors -----------------------------------------------------------------


def _real_vectors(shared_data: object) -> list[dict[str, str]]:
    path = shared_data / "vectors" / "sign-vectors.json"  # type: ignore[operator]
    vectors: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    return vectors


@pytest.mark.realdata
def test_real_pkcs1_vectors_verify(shared_data: object) -> None:
    vectors = _real_vectors(shared_data)
    assert len(vectors) == 2
    for vector in vectors:
        # Assert on derived facts only: the vectors carry a real person's data.
        result = verify_signature(
            content=vector["tbs_ascii"].encode("ascii"),
            signature=vector["signature_b64"],
            signature_type="PKCS1",
            certificate=vector["certb64"],
            hash_algorithm=vector["hash_algorithm"],
        )
        # Plain values only: a failing assert must not print the certificate (its subject).
        outcome = (result.signature_type, result.hash_algorithm, result.padding)
        assert outcome == ("PKCS1", "sha256", "pkcs1v15"), vector["id"]


@pytest.mark.realdata
def test_real_pkcs1_vectors_reject_one_changed_byte(shared_data: object) -> None:
    for vector in _real_vectors(shared_data):
        tbs = bytearray(vector["tbs_ascii"].encode("ascii"))
        tbs[0] ^= 0x01
        with pytest.raises(MoicaAuthError) as exc:
            verify_signature(
                content=bytes(tbs),
                signature=vector["signature_b64"],
                signature_type="PKCS1",
                certificate=vector["certb64"],
                hash_algorithm=vector["hash_algorithm"],
            )
        assert exc.value.code == "signature_invalid", vector["id"]


# --- token shapes: every one a signer can produce is read by the one CMS parser ---------


def _variants(card: CitizenCard, spec: CmsSpec) -> list[tuple[str, bytes, str]]:
    """(label, SignedData, expected outcome: "ok" or an error code)."""
    soft = SoftCard(card)
    other = other_signing_card()
    return [
        ("hipki", base64.b64decode(soft.sign(CHALLENGE, nonce=NONCE)["signature"]), "ok"),
        (
            "with chain",
            base64.b64decode(
                soft.sign(CHALLENGE, nonce=NONCE, extra_certificates=card.chain)["signature"]
            ),
            "ok",
        ),
        ("spec", build_signed_data(spec), "ok"),
        ("signing time", build_signed_data(replace(spec, signing_time=SIGNED_AT)), "ok"),
        ("detached", build_signed_data(replace(spec, attached=False)), "ok"),
        ("sha384", build_signed_data(replace(spec, hash_name="sha384")), "ok"),
        ("sha1", build_signed_data(replace(spec, hash_name="sha1")), "weak_hash"),
        (
            "sha256WithRSA",
            build_signed_data(replace(spec, signature_algorithm="sha256_rsa")),
            "ok",
        ),
        ("ski", build_signed_data(replace(spec, sid="subject_key_identifier")), "ok"),
        (
            "other carried",
            build_signed_data(replace(spec, extra_certificates=[other.signing.certificate])),
            "ok",
        ),
        ("pss", build_signed_data(replace(spec, pss=True)), "ok"),
        (
            "unknown attribute",
            build_signed_data(
                replace(spec, extra_attributes=[attribute("1.2.3.4", opaque(core.Null()))])
            ),
            "ok",
        ),
        ("version 3", build_signed_data(replace(spec, signed_data_version="v3")), "ok"),
    ]


def test_every_token_shape_verifies_with_what_was_signed(card: CitizenCard, spec: CmsSpec) -> None:
    # The shapes signers produce (HiPKI's, with the chain, detached, by SKI, PSS, with an
    # attribute we do not use, ...): each verifies with or without certb64 and returns the
    # signer and the signed nonce; SHA-1 is refused whichever shape carries it.
    for label, der, outcome in _variants(card, spec):
        for certificate in (card.signing.certificate, None):
            if outcome != "ok":
                rejects(outcome, der, certificate=certificate)
                continue
            result = pkcs7(der, certificate=certificate, expected_nonce=NONCE)
            assert result.certificate == card.signing.certificate, label
            assert result.nonce == NONCE, label
            assert result.signed_content == CHALLENGE, label
        if outcome == "ok":
            # Another card's certb64 is never taken for this signer.
            rejects(
                "certificate_mismatch", der, certificate=other_signing_card().signing.certificate
            )


def test_tokens_without_attributes_or_certificates_verify(card: CitizenCard, spec: CmsSpec) -> None:
    bare = build_signed_data(replace(spec, signed_attrs=False))
    result = pkcs7(bare, certificate=card.signing.certificate)
    assert result.nonce is None and result.certificate == card.signing.certificate
    rejects("nonce_mismatch", bare, certificate=card.signing.certificate, expected_nonce=NONCE)
    uncarried = build_signed_data(replace(spec, include_certificate=False))
    assert pkcs7(uncarried, certificate=card.signing.certificate, expected_nonce=NONCE).nonce
    rejects("malformed_signature", uncarried)


def _reencode(der: bytes, long_form: bytes) -> bytes:
    """``der`` with every TLV re-encoded, the one whose octets are ``long_form`` with a
    needlessly long (BER, not DER) length: ``04 82 01 00 …`` → ``04 83 00 01 00 …``."""

    def length(n: int, node: bytes) -> bytes:
        if node == long_form:
            return b"\x83" + n.to_bytes(3, "big")
        if n < 0x80:
            return bytes([n])
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([0x80 | len(octets)]) + octets

    def walk(data: bytes) -> bytes:
        out = b""
        pos = 0
        while pos < len(data):
            tag, first = data[pos], data[pos + 1]
            if first < 0x80:
                start, n = pos + 2, first
            else:
                count = first & 0x7F
                start, n = pos + 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count])
            node, body = data[pos : start + n], data[start : start + n]
            inner = walk(body) if tag & 0x20 else body
            out += bytes([tag]) + length(len(inner), node) + inner
            pos = start + n
        return out

    return walk(der)


def test_ber_lengths_outside_the_signed_octets_verify_the_same(
    good_der: bytes, card: CitizenCard
) -> None:
    # The unsigned signature OCTET STRING with a long-form length it does not need: BER,
    # which the parser reads; the token verifies to the very same result.
    assert _reencode(good_der, b"") == good_der
    signer_info = cms.ContentInfo.load(good_der)["content"]["signer_infos"][0]
    signature = signer_info["signature"].dump()
    ber = _reencode(good_der, signature)
    assert ber != good_der and len(ber) == len(good_der) + 1
    result = pkcs7(ber, certificate=card.signing.certificate, expected_nonce=NONCE)
    assert result == pkcs7(good_der, certificate=card.signing.certificate, expected_nonce=NONCE)


def test_garbage_in_a_field_we_do_not_use_is_refused(good_der: bytes) -> None:
    # The fuzz finding: NULL parameters in digestAlgorithms replaced by a context tag.
    bad = good_der.replace(
        bytes.fromhex("300d06096086480165030402010500"),
        bytes.fromhex("300d06096086480165030402018000"),
        1,
    )
    assert bad != good_der
    rejects("malformed_signature", bad, certificate=signing_card().signing.certificate)


def _tlv_nodes(der: bytes) -> list[tuple[int, int, int]]:
    """(offset, header length, contents length) of every TLV of ``der``, depth first."""
    out: list[tuple[int, int, int]] = []

    def walk(start: int, end: int) -> None:
        pos = start
        while pos < end:
            first = der[pos + 1]
            count = first & 0x7F if first & 0x80 else 0
            header = 2 + count
            length = int.from_bytes(der[pos + 2 : pos + header]) if count else first
            out.append((pos, header, length))
            if der[pos] & 0x20:
                walk(pos + header, pos + header + length)
            pos += header + length

    walk(0, len(der))
    return out


def _rebuild(der: bytes, target: int, how: str) -> bytes:
    """``der`` re-encoded with the TLV at offset ``target`` changed (lengths fixed up):
    ``long`` a non-minimal length, ``indefinite`` BER's 0x80 length (constructed only),
    ``inside`` a NULL appended to its contents, ``after`` a NULL after it, ``twice`` it
    repeated."""

    def length(n: int, pad: bool) -> bytes:
        octets = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
        if pad:
            octets = b"\x00" + octets
        elif n < 0x80:
            return bytes([n])
        return bytes([0x80 | len(octets)]) + octets

    def walk(start: int, end: int) -> bytes:
        out = b""
        pos = start
        while pos < end:
            first = der[pos + 1]
            count = first & 0x7F if first & 0x80 else 0
            header = 2 + count
            n = int.from_bytes(der[pos + 2 : pos + header]) if count else first
            tag, body_start = der[pos], pos + header
            body = (
                walk(body_start, body_start + n) if tag & 0x20 else der[body_start : body_start + n]
            )
            here = pos == target
            if here and how == "inside":
                body += b"\x05\x00"
            if here and how == "indefinite":
                node = bytes([tag, 0x80]) + body + b"\x00\x00"
            else:
                node = bytes([tag]) + length(len(body), here and how == "long") + body
            out += node
            if here and how in ("after", "twice"):
                out += b"\x05\x00" if how == "after" else node
            pos = body_start + n
        return out

    return walk(0, len(der))


def test_every_re_encoded_node_verifies_identically_or_is_refused(
    good_der: bytes, card: CitizenCard, spec: CmsSpec
) -> None:
    # Each TLV of a token (and of one by subjectKeyIdentifier, with signingTime) in turn:
    # a non-minimal or indefinite length, trailing octets inside it or after it, or
    # repeated (a second SignerInfo, attribute, value, ...). Whatever is accepted returns
    # the signer and signed data of the original token; everything else is a typed
    # refusal.
    ski = build_signed_data(
        replace(
            spec, sid="subject_key_identifier", signed_data_version="v3", signing_time=SIGNED_AT
        )
    )
    for token in (good_der, ski):
        assert _rebuild(token, -1, "") == token
        expected = pkcs7(token, certificate=card.signing.certificate, expected_nonce=NONCE)
        accepted = refused = 0
        for offset, _, _ in _tlv_nodes(token):
            constructed = bool(token[offset] & 0x20)
            for how in ("long", "indefinite", "inside", "after", "twice"):
                if how == "indefinite" and not constructed:
                    continue
                variant = _rebuild(token, offset, how)
                try:
                    result = pkcs7(
                        variant, certificate=card.signing.certificate, expected_nonce=NONCE
                    )
                except MoicaAuthError:
                    refused += 1
                    continue
                accepted += 1
                # What was signed and who signed it are unchanged; carried certificates are
                # not signed, and a re-encoded copy is only one more path candidate.
                assert replace(result, certificates=()) == replace(expected, certificates=()), (
                    offset,
                    how,
                )
        assert accepted and refused
    # The signed attributes with a long length: the signature is verified over their
    # original octets (RFC 5652 §5.4), so the token is still good.
    signed_attrs = cms.ContentInfo.load(good_der)["content"]["signer_infos"][0]["signed_attrs"]
    attrs = good_der.index(signed_attrs.dump())
    ber = _rebuild(good_der, attrs, "long")
    assert ber != good_der
    assert pkcs7(ber, expected_nonce=NONCE).nonce == NONCE


def test_a_released_buffer_is_a_malformed_signature(good_der: bytes) -> None:
    view = memoryview(good_der)
    assert decode_signature(view) == good_der
    view.release()
    with pytest.raises(MoicaAuthError) as exc:
        decode_signature(view)
    assert exc.value.code == "malformed_signature"


def test_signer_match_by_rfc5280_name_comparison(good_der: bytes, card: CitizenCard) -> None:
    # The SignerIdentifier is not signed. Its issuer may differ from the certificate's in
    # octets and still be the same Name under RFC 5280 §7.1 (another string type, another
    # case): the certificate is then the signer, by raw-octet match or by asn1crypto's
    # comparison. Another serial matches nothing.
    issuer = card.signing.certificate.issuer.public_bytes()
    country = bytes.fromhex("0603550406") + b"\x13\x02TW"
    assert good_der.count(issuer) == 2 and issuer.count(country) == 1  # the cert's, the sid's
    sid_at = good_der.rindex(issuer)

    def with_sid_issuer(name: bytes) -> bytes:
        assert len(name) == len(issuer)
        return good_der[:sid_at] + name + good_der[sid_at + len(name) :]

    utf8 = with_sid_issuer(issuer.replace(country, country[:5] + b"\x0c\x02TW"))
    lower = with_sid_issuer(issuer.replace(country, country[:7] + b"tw"))
    serial = card.signing.certificate.serial_number
    serial_der = core.Integer(serial).dump()
    at = good_der.index(serial_der, sid_at + len(issuer))
    other_serial = (
        good_der[:at] + core.Integer(serial ^ 1).dump() + good_der[at + len(serial_der) :]
    )
    assert len(other_serial) == len(good_der)

    for token in (utf8, lower):
        for certificate in (card.signing.certificate, None):
            result = pkcs7(token, certificate=certificate, expected_nonce=NONCE)
            assert result.certificate == card.signing.certificate
    rejects("certificate_mismatch", other_serial, certificate=card.signing.certificate)
    rejects("malformed_signature", other_serial)


def test_crls_and_unsigned_attributes_are_read_but_change_nothing(
    good_der: bytes, card: CitizenCard
) -> None:
    # Neither is signed nor used: the parser reads them completely and the token verifies
    # the same; a second SignerInfo next to the first is refused.
    from asn1crypto import crl as asn1_crl

    p = default_pki()
    issuer = p.moica_g2 if card.generation == "G2" else p.moica_g3
    crl_der = p.make_crl(issuer=issuer).public_bytes(serialization.Encoding.DER)

    def edited(edit: Any) -> bytes:
        info = cms.ContentInfo.load(good_der)
        edit(info["content"])
        return bytes(info.dump(force=False))

    def add_crl(signed_data: Any) -> None:
        signed_data["crls"] = cms.RevocationInfoChoices(
            [cms.RevocationInfoChoice(name="crl", value=asn1_crl.CertificateList.load(crl_der))]
        )

    def add_unsigned(signed_data: Any) -> None:
        signer = signed_data["signer_infos"][0]
        signer["unsigned_attrs"] = cms.CMSAttributes(
            [attribute(OID_RANDOM_NONCE, opaque(core.OctetString(b"not signed")))]
        )

    def two_signers(signed_data: Any) -> None:
        first = signed_data["signer_infos"][0]
        signed_data["signer_infos"] = cms.SignerInfos(
            [cms.SignerInfo.load(first.dump()), cms.SignerInfo.load(first.dump())]
        )

    expected = pkcs7(good_der, expected_nonce=NONCE)
    for token in (edited(add_crl), edited(add_unsigned)):
        assert token != good_der
        assert pkcs7(token, expected_nonce=NONCE) == expected
    doubled = edited(two_signers)
    rejects("malformed_signature", doubled)
    rejects("malformed_signature", doubled, certificate=card.signing.certificate)


def test_the_signature_covers_the_original_attribute_octets(spec: CmsSpec) -> None:
    # RFC 5652 §5.4: the signature is over the signed attributes' own octets re-tagged as
    # a SET (0x31), never over a re-encoding, nor over the [0]-tagged octets.
    unsorted = build_signed_data(replace(spec, attribute_order=lambda attrs: attrs[::-1]))
    tagged = build_signed_data(replace(spec, sign_tagged_attributes=True))
    assert pkcs7(unsorted).nonce == NONCE
    rejects("signature_invalid", tagged)
