"""Shared helpers for the certificate, chain and verifier tests.

Plain cached functions (not fixtures), so test modules can call them from their own
module-scoped fixtures without pytest's fixture-import dance. Everything is built from the
deterministic test PKI and pinned to its clock.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from moica_auth.testing.pki import FIXED_TIME, CitizenCard, TestPKI, default_pki
from moica_auth.validation.trust import TrustStore

AT: datetime = FIXED_TIME


def pki() -> TestPKI:
    return default_pki()


@functools.cache
def trust() -> TrustStore:
    """Both GRCA roots as anchors and both MOICA CAs as intermediates."""
    p = pki()
    return TrustStore.from_certificates(p.anchors, p.intermediates)


@functools.cache
def card(generation: str = "G3", form: str = "card", email: str | None = None) -> CitizenCard:
    return pki().issue_card(
        generation=generation,
        form=form,
        email=email,
        name="測試一",
        id_number="A123456789",
        label=f"validation/{generation}/{form}/{email}",
    )


# --- real reference data (../shared/data) ---------------------------------------------


def load_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def real_anchor(shared: Path, name: str) -> x509.Certificate:
    return load_pem(shared / "anchors" / f"{name}.pem")


def real_vectors(shared: Path) -> list[dict[str, Any]]:
    data = json.loads((shared / "vectors" / "sign-vectors.json").read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


# --- malformed certificates cryptography loads lazily ---------------------------------


def with_duplicate_extension(
    cert: x509.Certificate, issuer_key: CertificateIssuerPrivateKeyTypes, index: int = 1
) -> x509.Certificate:
    """``cert`` with its extension number ``index`` repeated (RFC 5280 §4.2: "MUST NOT
    include more than one instance of a particular extension"), re-signed by
    ``issuer_key``. cryptography loads it, and raises ``x509.DuplicateExtension`` (not a
    ``ValueError``) only when ``.extensions`` is first read."""
    original = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = original["tbs_certificate"]
    tbs["extensions"].append(asn1_x509.Extension.load(tbs["extensions"][index].dump()))
    tbs_der = tbs.dump(force=True)
    assert isinstance(issuer_key, rsa.RSAPrivateKey)
    signature = issuer_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    rebuilt = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": original["signature_algorithm"],
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(rebuilt.dump())


def with_unknown_key_algorithm(
    cert: x509.Certificate, issuer_key: CertificateIssuerPrivateKeyTypes
) -> x509.Certificate:
    """``cert`` with its SubjectPublicKeyInfo algorithm changed from rsaEncryption to an
    OID nobody knows, re-signed by ``issuer_key``. cryptography loads it, and raises
    ``UnsupportedAlgorithm`` (not a ``ValueError``) from ``public_key()``."""
    rsa_encryption = bytes.fromhex("06092a864886f70d010101")
    unknown = bytes.fromhex("06092a864886f70d010163")  # 1.2.840.113549.1.1.99, same length
    tbs_der = cert.tbs_certificate_bytes
    assert tbs_der.count(rsa_encryption) == 1
    tbs_der = tbs_der.replace(rsa_encryption, unknown)
    assert isinstance(issuer_key, rsa.RSAPrivateKey)
    signature = issuer_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    # asn1crypto cannot re-encode a key it does not know, so assemble the DER by hand.
    original = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    body = (
        tbs_der
        + original["signature_algorithm"].dump()
        + asn1_core.OctetBitString(signature).dump()
    )
    return x509.load_der_x509_certificate(b"\x30" + _length(body) + body)


def _length(body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([len(body)])
    octets = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets
