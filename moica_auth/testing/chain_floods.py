"""Login tokens that carry certificate floods: the inputs of the bounded-work tests.

**Attack inputs for tests and benchmarks only.** Every certificate a CMS SignedData carries
(RFC 5652 §5.1) is an untrusted path-building candidate, so an unauthenticated client can
make the server search among whatever it sends. These builders make the three floods
``docs/security.md`` ("Bounded work") measures, each signed by the attacker's own key (no
card needed):

* :func:`self_issued_flood`: CA certificates with one Name as subject and issuer, all
  with one key, so that each verifies every other;
* :func:`big_exponent_flood`: CA certificates whose RSA key has a public exponent of
  thousands of bits (one verification then costs as much as a private-key operation);
* :func:`distinct_flood`: CA certificates with distinct keys under one Name.

:func:`flood_token` wraps a flood into a HiPKI ``sign`` answer whose signer certificate is
issued, under that Name, by the flood's key, so that the issuer search explores the flood.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from moica_auth.testing.softcard import build_signed_data

__all__ = [
    "FLOOD_NAME",
    "Flood",
    "big_exponent_flood",
    "distinct_flood",
    "flood_token",
    "self_issued_flood",
]

MOICA_POLICY = "2.16.886.101.0.3.3"

#: The Name every flood certificate bears (and the attacker's leaf names as issuer).
FLOOD_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flood CA"),
    ]
)


@dataclass(frozen=True)
class Flood:
    """Carried certificates and the key that signed them (and signs the attacker's leaf)."""

    certificates: tuple[x509.Certificate, ...]
    signing_key: CertificateIssuerPrivateKeyTypes


def _ca_certificate(
    *,
    serial: int,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: CertificateIssuerPrivateKeyTypes,
    at: datetime,
) -> x509.Certificate:
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(FLOOD_NAME)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(at - timedelta(days=1))
        .not_valid_after(at + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signing_key, algorithm)
    )


def self_issued_flood(
    count: int, *, signing_key: CertificateIssuerPrivateKeyTypes, at: datetime
) -> Flood:
    """``count`` self-issued CA certificates sharing ``signing_key``'s key."""
    certs = tuple(
        _ca_certificate(
            serial=serial,
            subject=FLOOD_NAME,
            public_key=signing_key.public_key(),
            signing_key=signing_key,
            at=at,
        )
        for serial in range(1, count + 1)
    )
    return Flood(certificates=certs, signing_key=signing_key)


def big_exponent_flood(
    count: int,
    *,
    signing_key: rsa.RSAPrivateKey,
    modulus: int,
    at: datetime,
    exponent_bits: int = 3072,
) -> Flood:
    """``count`` CA certificates under :data:`FLOOD_NAME` whose RSA public key is
    ``modulus`` with an odd public exponent of ``exponent_bits`` bits (below ``modulus``)."""
    if exponent_bits >= modulus.bit_length():
        raise ValueError("the exponent must be shorter than the modulus")
    certs = []
    for serial in range(1, count + 1):
        exponent = (1 << (exponent_bits - 1)) | (serial << 1) | 1
        key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        certs.append(
            _ca_certificate(
                serial=serial,
                subject=FLOOD_NAME,
                public_key=key,
                signing_key=signing_key,
                at=at,
            )
        )
    return Flood(certificates=tuple(certs), signing_key=signing_key)


def distinct_flood(
    count: int, *, signing_key: CertificateIssuerPrivateKeyTypes, at: datetime
) -> Flood:
    """``count`` CA certificates under :data:`FLOOD_NAME`, each with its own Ed25519 key."""
    certs = tuple(
        _ca_certificate(
            serial=serial,
            subject=FLOOD_NAME,
            public_key=ed25519.Ed25519PrivateKey.generate().public_key(),
            signing_key=signing_key,
            at=at,
        )
        for serial in range(1, count + 1)
    )
    return Flood(certificates=certs, signing_key=signing_key)


def flood_token(
    flood: Flood | Sequence[x509.Certificate],
    *,
    content: bytes,
    leaf_key: rsa.RSAPrivateKey,
    at: datetime,
    nonce: bytes | None = None,
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
) -> dict[str, Any]:
    """A HiPKI ``sign`` answer (``signature``, ``certb64``, ``signatureType``) over
    ``content``, signed with ``leaf_key``, whose leaf names :data:`FLOOD_NAME` as issuer
    and is signed by the flood's key (or ``issuer_key``), carrying the flood."""
    if isinstance(flood, Flood):
        certificates = flood.certificates
        issuer_key = issuer_key or flood.signing_key
    else:
        certificates = tuple(flood)
    if issuer_key is None:
        raise ValueError("issuer_key is needed with a bare certificate list")
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")]))
        .issuer_name(FLOOD_NAME)
        .public_key(leaf_key.public_key())
        .serial_number(0x7FFF)
        .not_valid_before(at - timedelta(days=1))
        .not_valid_after(at + timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # The MOICA policy, so that the leaf passes the profile's own checks and the
        # whole of path building runs.
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(MOICA_POLICY), None)]
            ),
            critical=False,
        )
        .sign(issuer_key, algorithm)
    )
    der = build_signed_data(
        content=content,
        private_key=leaf_key,
        certificate=leaf,
        nonce=nonce,
        certificates=[leaf, *certificates],
    )
    return {
        "signature": base64.b64encode(der).decode("ascii"),
        "certb64": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode("ascii"),
        "signatureType": "PKCS7",
    }
