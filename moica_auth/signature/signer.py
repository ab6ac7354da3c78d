"""The signer and what it signed: certificate selection, signed attributes, RSA checks.

* :func:`resolve_certificates`: the signer certificate is the carried one matching the
  SignerIdentifier (RFC 5652 §5.3), or certb64; both present must be the same DER.
* :func:`single_value`, :func:`string_or_octets`, :func:`signing_time_of`: the signed
  attributes HiPKI adds (randomNonce, card number, signingTime).
* :func:`signer_key`, :func:`rsa_verify`: the one RSA verification, with a key screened
  first (:func:`moica_auth.validation.bounds.require_usable_key`).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms
from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from moica_auth.certificate import EXTENSION_ERRORS
from moica_auth.exceptions import (
    CertificateMismatch,
    MalformedSignature,
    MoicaAuthError,
    SignatureInvalid,
)
from moica_auth.signature.cms import ParsedSignedData, SignerIdentifier, der_of
from moica_auth.validation.bounds import require_usable_key

__all__ = [
    "matches_sid",
    "resolve_certificates",
    "rsa_verify",
    "signer_key",
    "signing_time_of",
    "single_value",
    "string_or_octets",
]


def single_value(parsed: ParsedSignedData, oid: str) -> Any | None:
    values = parsed.attributes.get(oid)
    return None if values is None else values[0]


def string_or_octets(value: Any, what: str) -> bytes:
    """An attribute value as bytes: OCTET STRING as is, character strings as UTF-8."""
    try:
        # Unknown attribute types arrive as ``Any``; load the universal type it holds.
        loaded = asn1.load(value.dump(), strict=True) if isinstance(value, asn1.Any) else value
        if isinstance(loaded, asn1.OctetString):
            native = loaded.native
            if isinstance(native, bytes):
                return native
        elif isinstance(loaded, asn1.AbstractString):
            return str(loaded.native).encode("utf-8")
    except MoicaAuthError:
        raise
    except Exception as exc:
        raise MalformedSignature(f"{what} attribute is malformed") from exc
    raise MalformedSignature(f"{what} attribute is neither an OCTET STRING nor a string")


def signing_time_of(value: Any) -> datetime:
    try:
        loaded = value.native if not isinstance(value, asn1.Any) else cms.Time.load(value.dump())
        when = loaded if isinstance(loaded, datetime) else loaded.native
    except Exception as exc:
        raise MalformedSignature("signingTime attribute is malformed") from exc
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise MalformedSignature("signingTime attribute is malformed")
    return when.astimezone(UTC)


def matches_sid(cert: x509.Certificate, sid: SignerIdentifier) -> bool:
    """RFC 5652 §5.3 SignerIdentifier against a certificate."""
    if sid.subject_key_identifier is not None:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except (x509.ExtensionNotFound, *EXTENSION_ERRORS):
            return False
        return hmac.compare_digest(ski.value.digest, sid.subject_key_identifier)
    if cert.serial_number != sid.serial_number or sid.issuer is None:
        return False
    try:
        if sid.issuer_der is not None and cert.issuer.public_bytes() == sid.issuer_der:
            # The same octets are the same Name (the usual case: the signer copies the
            # certificate's issuer verbatim); only differently encoded Names need §7.1.
            return True
        # asn1crypto compares Names with the RFC 5280 §7.1 preparation rules.
        return bool(asn1_x509.Name.load(cert.issuer.public_bytes()) == sid.issuer)
    except Exception:
        return False


def resolve_certificates(
    parsed: ParsedSignedData,
    supplied: x509.Certificate | None,
    supplied_der: bytes | None = None,
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """Pick the signer certificate; return it and the other carried certificates."""
    if supplied is not None and supplied_der is None:
        supplied_der = der_of(supplied)
    carried: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for der in parsed.certificates_der:
        if der in seen:
            continue
        seen.add(der)
        if der == supplied_der and supplied is not None:
            # The usual HiPKI case (certb64 is also carried): parse the certificate once.
            carried.append(supplied)
            continue
        try:
            loaded = x509.load_der_x509_certificate(der)
            # Extensions are parsed lazily; read them now so that a duplicate or broken
            # extension is refused here, not raised later by whoever touches it.
            _ = loaded.extensions
        except Exception as exc:
            # ValueError, but also x509.InvalidVersion / DuplicateExtension (not
            # ValueErrors) and friends.
            raise MalformedSignature("a certificate in the SignedData is malformed") from exc
        carried.append(loaded)

    matching = [cert for cert in carried if matches_sid(cert, parsed.sid)]
    if len(matching) > 1:
        raise MalformedSignature("more than one carried certificate matches the signer")
    embedded = matching[0] if matching else None

    if embedded is not None and supplied is not None:
        if embedded is not supplied and der_of(embedded) != supplied_der:
            raise CertificateMismatch("certb64 is not the certificate inside the SignedData")
        signer = embedded
    elif embedded is not None:
        signer = embedded
    elif supplied is not None:
        if not matches_sid(supplied, parsed.sid):
            raise CertificateMismatch("certb64 does not match the SignerInfo's signer id")
        signer = supplied
    else:
        raise MalformedSignature("no signer certificate: none carried and no certb64 given")
    others = tuple(cert for cert in carried if cert is not signer)
    return signer, others


def signer_key(cert: x509.Certificate) -> rsa.RSAPublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid("signer public key cannot be read") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        # MOICA cards hold RSA keys only (RFC 3370 §3.2 / RFC 4056 are all we implement).
        raise SignatureInvalid(f"signer key type {type(key).__name__} is not supported")
    # An RSA exponent of thousands of bits makes one verification cost as much as a
    # private-key operation: refuse keys no card has before verifying with them.
    require_usable_key(cert, profile="generic", role="signer certificate")
    return key


def rsa_verify(
    key: rsa.RSAPublicKey,
    signature: bytes,
    data: bytes,
    pad: rsa_padding.AsymmetricPadding,
    hash_algorithm: hashes.HashAlgorithm,
) -> None:
    try:
        key.verify(signature, data, pad, hash_algorithm)
    except InvalidSignature as exc:
        raise SignatureInvalid("the signature does not verify with the signer key") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid("the signature cannot be verified with the signer key") from exc
