"""A low-level CMS SignedData builder for the signature tests' *broken* variants.

The soft card (:mod:`moica_auth.testing.softcard`) produces what HiPKI produces; these
helpers produce what it must never accept: wrong OIDs, wrong versions, two signers,
duplicated attributes, digests that disagree, signatures over the wrong bytes. Built with
asn1crypto (cryptography cannot write most of these variants) and signed with the test
PKI's keys.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moica_auth.signature import OID_CARD_NUMBER, OID_RANDOM_NONCE
from moica_auth.testing.pki import CitizenCard, default_pki

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - to test that it is refused
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
    "md5": hashes.MD5(),  # noqa: S303 - to test that it is refused
}


def attribute(oid: str, *values: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": list(values)})


def opaque(value: core.Asn1Value) -> core.Any:
    """A value for an attribute type asn1crypto does not know (nonce, card number)."""
    return core.Any.load(value.dump())


@dataclass
class CmsSpec:
    """Everything a test may want to get wrong, with HiPKI-like defaults."""

    content: bytes
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    hash_name: str = "sha256"
    attached: bool = True
    signed_attrs: bool = True
    pss: bool = False
    pss_params: dict[str, Any] | None = None  # raw RSASSA-PSS-params (None: derived)
    signature_algorithm: str | None = None  # OID or asn1crypto name; default per pss
    include_certificate: bool = True
    extra_certificates: Sequence[x509.Certificate] = ()
    sid: str = "issuer_and_serial_number"  # or "subject_key_identifier"
    signer_version: str | None = None
    signed_data_version: str | None = None
    nonce: bytes | None = b"nonce-0123456789"
    card_number: str | None = "TP03000000000001"
    signing_time: datetime | None = None
    econtent: bytes | None = None  # override what is attached (default: content)
    econtent_type: str = "data"
    content_type_attr: str = "data"
    message_digest: bytes | None = None  # override
    extra_attributes: list[cms.CMSAttribute] = field(default_factory=list)
    attribute_order: Callable[[list[cms.CMSAttribute]], list[cms.CMSAttribute]] | None = None
    drop_attributes: Sequence[str] = ()
    sign_tagged_attributes: bool = False  # sign the [0] form instead of the SET (a bug)
    signer_count: int = 1
    content_info_type: str = "signed_data"


def _hash(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def build_signed_data(spec: CmsSpec) -> bytes:
    """A DER ContentInfo holding the SignedData ``spec`` describes (RFC 5652 §5)."""
    cert_der = spec.certificate.public_bytes(serialization.Encoding.DER)
    asn1_cert = asn1_x509.Certificate.load(cert_der)
    digest_algorithm = algos.DigestAlgorithm({"algorithm": spec.hash_name})

    attrs_value: cms.CMSAttributes | None = None
    to_sign = spec.content
    if spec.signed_attrs:
        attrs = [
            attribute("content_type", spec.content_type_attr),
            attribute(
                "message_digest",
                spec.message_digest
                if spec.message_digest is not None
                else _hash(spec.hash_name, spec.content),
            ),
        ]
        if spec.signing_time is not None:
            attrs.append(attribute("signing_time", cms.Time({"utc_time": spec.signing_time})))
        if spec.nonce is not None:
            attrs.append(attribute(OID_RANDOM_NONCE, opaque(core.OctetString(spec.nonce))))
        if spec.card_number is not None:
            attrs.append(attribute(OID_CARD_NUMBER, opaque(core.PrintableString(spec.card_number))))
        attrs.extend(spec.extra_attributes)
        attrs = [a for a in attrs if a["type"].native not in spec.drop_attributes]
        if spec.attribute_order is not None:
            attrs = spec.attribute_order(attrs)
        attrs_value = cms.CMSAttributes(attrs)
        to_sign = attrs_value.dump()
        if spec.sign_tagged_attributes:
            to_sign = b"\xa0" + to_sign[1:]

    hash_algorithm = HASHES[spec.hash_name]
    pad: padding.AsymmetricPadding
    if spec.pss:
        pad = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=32)
        params = spec.pss_params
        if params is None:
            params = {
                "hash_algorithm": {"algorithm": spec.hash_name},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": spec.hash_name},
                },
                "salt_length": 32,
            }
        sig_alg = algos.SignedDigestAlgorithm(
            {"algorithm": "rsassa_pss", "parameters": algos.RSASSAPSSParams(params)}
        )
    else:
        pad = padding.PKCS1v15()
        sig_alg = algos.SignedDigestAlgorithm(
            {"algorithm": spec.signature_algorithm or "rsassa_pkcs1v15"}
        )
    signature = spec.key.sign(to_sign, pad, hash_algorithm)

    if spec.sid == "subject_key_identifier":
        ski = spec.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        sid = cms.SignerIdentifier({"subject_key_identifier": ski.value.digest})
        default_version = "v3"
    else:
        sid = cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": asn1_cert.issuer,
                    "serial_number": asn1_cert.serial_number,
                }
            }
        )
        default_version = "v1"
    signer_info: dict[str, Any] = {
        "version": spec.signer_version or default_version,
        "sid": sid,
        "digest_algorithm": digest_algorithm,
        "signature_algorithm": sig_alg,
        "signature": signature,
    }
    if attrs_value is not None:
        signer_info["signed_attrs"] = attrs_value

    certificates = []
    if spec.include_certificate:
        certificates.append(asn1_cert)
    for extra in spec.extra_certificates:
        certificates.append(
            asn1_x509.Certificate.load(extra.public_bytes(serialization.Encoding.DER))
        )
    econtent = spec.econtent if spec.econtent is not None else spec.content
    encap: dict[str, Any] = {"content_type": spec.econtent_type}
    if spec.attached:
        # Other content types are not OCTET STRING-typed in asn1crypto: wrap explicitly.
        encap["content"] = econtent if spec.econtent_type == "data" else core.OctetString(econtent)
    signed_data: dict[str, Any] = {
        "version": spec.signed_data_version or default_version,
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": encap,
        "signer_infos": [cms.SignerInfo(signer_info)] * spec.signer_count,
    }
    if certificates:
        signed_data["certificates"] = certificates
    if spec.content_info_type != "signed_data":
        other: bytes = cms.ContentInfo(
            {"content_type": spec.content_info_type, "content": econtent}
        ).dump()
        return other
    der: bytes = cms.ContentInfo(
        {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
    ).dump()
    return der


# --- shared test data (plain functions: each test module wraps them in its fixtures) ----

CHALLENGE = b"moica-auth login v1\nnonce=3q2-7w\norigin=https://rp.example\n"
NONCE = b"3q2-7w-nonce-value"
SIGNED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@functools.cache
def signing_card() -> CitizenCard:
    """The card whose signing key signs the tests' SignedData (MOICA G2, RSA-2048)."""
    return default_pki().issue_card(generation="G2", label="signature-tests/card-1")


@functools.cache
def other_signing_card() -> CitizenCard:
    """A second card: another key, another certificate, same issuer."""
    return default_pki().issue_card(
        generation="G2", id_number="B223456781", label="signature-tests/card-2"
    )


def default_spec(card: CitizenCard) -> CmsSpec:
    """A HiPKI-like attached SignedData over :data:`CHALLENGE` with every attribute."""
    return CmsSpec(
        content=CHALLENGE,
        key=card.signing.private_key,
        certificate=card.signing.certificate,
        nonce=NONCE,
        card_number=card.card_number,
        signing_time=SIGNED_AT,
    )
