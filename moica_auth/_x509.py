"""X.509 helpers shared by validation, revocation, the Django wiring and the test PKI
(private).

* :func:`verify_with_key`: does a public key verify a signature over some bytes, for
  every key type the project meets (RFC 5280 §4.1.1.3: certificates, CRLs; RFC 6960
  §4.2.1: OCSP responses);
* key identifiers (RFC 5280 §4.2.1.2 method (1)): :func:`key_digest`, :func:`key_id`,
  :func:`declared_key_ids`;
* :func:`is_ca`, :func:`asserts_crl_sign`;
* :func:`load_certificate_setting`: certificates from a setting (paths, PEM, DER, objects).

A missing extension never raises; a malformed one raises ``ValueError`` as cryptography
does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from moica_auth.certificate import load_certificates
from moica_auth.exceptions import ConfigurationError

__all__ = [
    "asserts_crl_sign",
    "declared_key_ids",
    "is_ca",
    "key_digest",
    "key_id",
    "load_certificate_setting",
    "verify_with_key",
]


def verify_with_key(
    public_key: object,
    signature: bytes,
    data: bytes | memoryview,
    *,
    params: object,
    hash_algorithm: hashes.HashAlgorithm | None,
) -> bool:
    """Whether ``public_key`` verifies ``signature`` over ``data``.

    ``params`` is what cryptography reports as ``signature_algorithm_parameters``
    (``PKCS1v15`` / ``PSS`` for RSA, ``ECDSA`` for EC, ``None`` otherwise). Any mismatch
    between the key type and the parameters, an unknown key type or a bad signature is
    ``False``, never an exception. Whether the hash is acceptable is decided by callers.
    """
    # cryptography accepts any bytes-like object; a view avoids copying a 20 MB CRL.
    raw = cast(bytes, data)
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PKCS1v15 | padding.PSS) or hash_algorithm is None:
                return False
            public_key.verify(signature, raw, params, hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            public_key.verify(signature, raw, params)
        elif isinstance(public_key, dsa.DSAPublicKey):
            if hash_algorithm is None:
                return False
            public_key.verify(signature, raw, hash_algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, raw)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def key_digest(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 §4.2.1.2 method (1)), computed
    from the key itself, never read from an extension."""
    return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest


def key_id(certificate: x509.Certificate) -> str:
    """:func:`key_digest` as upper-case hex: how the CRL index names an issuer key. Two
    CAs with the same DN (MOICA G2 and G3) never share one."""
    return key_digest(certificate).hex().upper()


def declared_key_ids(certificate: x509.Certificate) -> set[bytes]:
    """Every key id ``certificate`` answers to: :func:`key_digest` and the value of its
    SubjectKeyIdentifier extension, when it has one."""
    ids = {key_digest(certificate)}
    with contextlib.suppress(x509.ExtensionNotFound):
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        ids.add(ski.value.digest)
    return ids


def load_certificate_setting(
    values: Iterable[str | bytes | Path | x509.Certificate],
) -> list[x509.Certificate]:
    """Certificates from a setting: file paths, PEM text, DER/PEM bytes or objects.

    Raises :class:`ConfigurationError` for an unreadable file or a value of another type.
    """
    out: list[x509.Certificate] = []
    for value in values:
        if isinstance(value, x509.Certificate):
            out.append(value)
        elif isinstance(value, bytes):
            out.extend(load_certificates(value))
        elif isinstance(value, str | Path):
            text = str(value)
            if "-----BEGIN" in text:
                out.extend(load_certificates(text))
            else:
                try:
                    out.extend(load_certificates(Path(text).read_bytes()))
                except OSError as exc:
                    raise ConfigurationError(f"cannot read certificate file {text}") from exc
        else:
            raise ConfigurationError(
                f"unsupported certificate setting value of type {type(value).__name__}"
            )
    return out


def is_ca(certificate: x509.Certificate) -> bool:
    """basicConstraints cA=TRUE (RFC 5280 §4.2.1.9); absent means not a CA."""
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def asserts_crl_sign(certificate: x509.Certificate) -> bool:
    """keyUsage is present and asserts cRLSign (RFC 5280 §4.2.1.3).

    Stricter than "may sign CRLs" (where an absent keyUsage allows everything): a
    certificate offered as a separate CRL signer must say so explicitly.
    """
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return False
