"""The MOICA citizen certificate profile: load a certificate and read its fields.

:func:`load_certificate` turns whatever arrives from the wire (PEM, DER, base64 DER as
HiPKI's ``certb64``) into an ``x509.Certificate``; :class:`CitizenCertificate` reads the
profile the relying party needs (name, card serial, ID last-4, form, usage, generation).

This module *parses*; it does not decide whether a certificate is acceptable. Chain,
validity, key usage and policy checks live in :mod:`moica_auth.validation.chain`.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from moica_auth._wire import wire_bytes
from moica_auth.exceptions import MalformedCertificate

__all__ = [
    "EXTENSION_ERRORS",
    "MAX_CERTIFICATE_BYTES",
    "MOICA_G2_SKI",
    "MOICA_G3_SKI",
    "OID_CARD_FORM",
    "OID_ID_LAST4",
    "OID_NATURAL_PERSON",
    "OID_SUBJECT_TYPE",
    "PROFILE_CACHE_MAX_DER",
    "PROFILE_CACHE_SIZE",
    "CitizenCertificate",
    "load_certificate",
    "load_certificates",
    "require_parsable",
]

# A real MOICA leaf is ~1.5 kB; 64 kB leaves room for odd CAs while refusing to
# feed megabytes of attacker-chosen input to the DER parser.
MAX_CERTIFICATE_BYTES: Final = 64 * 1024
# A bundle (anchors + intermediates) may legitimately hold many certificates.
MAX_BUNDLE_BYTES: Final = 4 * 1024 * 1024

OID_SUBJECT_DIRECTORY_ATTRIBUTES: Final = "2.5.29.9"
OID_SUBJECT_TYPE: Final = "2.16.886.1.100.2.1"
OID_CARD_FORM: Final = "2.16.886.1.100.2.2"
OID_ID_LAST4: Final = "2.16.886.1.100.2.51"
OID_NATURAL_PERSON: Final = "2.16.886.1.100.3.1.1"

# SubjectKeyIdentifier of the MOICA issuing CAs (see ../shared/data/anchors/README.md).
# All MOICA generations share one DN, so the generation is told apart by key id only.
MOICA_G2_SKI: Final = "FA9B3467090A9822F762488B8226A645C5C322A4"
MOICA_G3_SKI: Final = "4720A3B1264BCD6D48ACF2640886972C7454115F"
_GENERATION_BY_SKI: Final = {MOICA_G2_SKI: "G2", MOICA_G3_SKI: "G3"}

_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_END: Final = b"-----END CERTIFICATE-----"
_PEM_WHITESPACE: Final = frozenset(b" \t\r\n\x0b\x0c")
_BASE64_RE: Final = re.compile(rb"[A-Za-z0-9+/=_-]+")


def _as_bytes(data: bytes | str, limit: int) -> bytes:
    raw = wire_bytes(data, what="certificate", error=MalformedCertificate)
    if not raw:
        raise MalformedCertificate("empty certificate")
    if len(raw) > limit:
        raise MalformedCertificate(f"certificate input larger than {limit} bytes")
    return raw


#: What cryptography raises when it first reads a loaded certificate's extensions (it
#: parses them lazily): ValueError for bad DER, and two classes that are *not*
#: ValueErrors, DuplicateExtension (RFC 5280 §4.2: one instance per extension) and
#: UnsupportedGeneralNameType.
EXTENSION_ERRORS: Final = (
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

# What cryptography raises for a certificate it cannot load: ValueError for bad DER, and
# x509.InvalidVersion (an Exception, *not* a ValueError) for a version other than v1-v3.
_LOAD_ERRORS: Final = (ValueError, x509.InvalidVersion)


def _parse_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except _LOAD_ERRORS as exc:
        raise MalformedCertificate("not a DER X.509 certificate") from exc


def _decode_base64(raw: bytes) -> bytes:
    compact = b"".join(raw.split())
    if not compact or not _BASE64_RE.fullmatch(compact):
        raise MalformedCertificate("certificate is neither PEM, DER nor base64")
    try:
        if b"-" in compact or b"_" in compact:
            return base64.urlsafe_b64decode(compact + b"=" * (-len(compact) % 4))
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCertificate("certificate base64 is invalid") from exc


def _pem_certificate_blocks(text: bytes, most: int) -> list[bytes]:
    """The first ``most`` ``BEGIN CERTIFICATE`` … ``END CERTIFICATE`` blocks of ``text``
    (RFC 7468 §2), each from a BEGIN line followed by white space to the nearest END line.

    One forward pass of ``bytes.find``: every search starts where the previous one
    stopped, so the work is linear in ``len(text)`` whatever it holds. (A lazy regular
    expression re-scans to the end of the input from every BEGIN marker: 64 KB of bare
    markers cost 0.65 s.)"""
    blocks: list[bytes] = []
    pos = 0
    while len(blocks) < most:
        start = text.find(_PEM_BEGIN, pos)
        if start < 0:
            break
        after = start + len(_PEM_BEGIN)
        if after >= len(text) or text[after] not in _PEM_WHITESPACE:
            pos = after
            continue
        end = text.find(_PEM_END, after)
        if end < 0:
            break  # no END anywhere after this BEGIN: none after a later one either
        pos = end + len(_PEM_END)
        blocks.append(text[start:pos])
    return blocks


def load_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    """Decode one X.509 certificate (RFC 5280 §4.1) from PEM, DER or base64 DER.

    Accepts an ``x509.Certificate`` (returned as is), a PEM block (RFC 7468 §5), raw DER
    (starts with a SEQUENCE tag), or base64 of the DER with or without whitespace (the
    HiPKI ``certb64`` field). Anything else, input over :data:`MAX_CERTIFICATE_BYTES`, a
    PEM holding more than one certificate, or trailing garbage raises
    :class:`MalformedCertificate`.
    """
    if isinstance(data, x509.Certificate):
        return data
    raw = _as_bytes(data, MAX_CERTIFICATE_BYTES)
    stripped = raw.strip()
    if b"-----BEGIN" in stripped:
        # Text around the block (``openssl x509 -text`` output) is allowed, RFC 7468 §2.
        blocks = _pem_certificate_blocks(stripped, most=2)
        if len(blocks) != 1:
            raise MalformedCertificate("expected exactly one PEM certificate")
        try:
            return x509.load_pem_x509_certificate(blocks[0])
        except _LOAD_ERRORS as exc:
            raise MalformedCertificate("PEM certificate is invalid") from exc
    if raw[:1] == b"\x30":
        return _parse_der(raw)
    return _parse_der(_decode_base64(stripped))


def require_parsable(cert: x509.Certificate, role: str = "certificate") -> None:
    """Raise :class:`MalformedCertificate` unless ``cert``'s extensions and public key parse.

    cryptography loads a certificate without reading either and raises later, from
    whatever first touches ``.extensions`` or ``public_key()``, with classes that are not
    ValueErrors (:data:`EXTENSION_ERRORS`, ``UnsupportedAlgorithm`` for a key type it does
    not know). Call this on every attacker-supplied certificate before other code reads it.
    """
    try:
        _ = cert.extensions
    except EXTENSION_ERRORS as exc:
        raise MalformedCertificate(f"{role} extensions are invalid") from exc
    try:
        cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedCertificate(f"{role} public key cannot be read") from exc


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Decode a PEM bundle (one or more ``CERTIFICATE`` blocks) or a single certificate.

    Text outside the PEM blocks (comments in a CA bundle) is ignored, as RFC 7468 §2
    allows. A single DER or base64 certificate is returned as a one-element list.
    """
    raw = _as_bytes(data, MAX_BUNDLE_BYTES)
    if b"-----BEGIN" in raw:
        blocks = _pem_certificate_blocks(raw, most=len(raw))
        if not blocks:
            raise MalformedCertificate("no PEM certificate found")
        try:
            return [x509.load_pem_x509_certificate(block) for block in blocks]
        except _LOAD_ERRORS as exc:
            raise MalformedCertificate("PEM certificate in bundle is invalid") from exc
    if len(raw) > MAX_CERTIFICATE_BYTES:
        raise MalformedCertificate(f"certificate input larger than {MAX_CERTIFICATE_BYTES} bytes")
    return [load_certificate(raw)]


# --- SubjectDirectoryAttributes (RFC 5280 §4.2.1.8) -----------------------------------


class _AttributeValues(asn1.SetOf):  # type: ignore[misc]
    _child_spec = asn1.Any


class _Attribute(asn1.Sequence):  # type: ignore[misc]
    _fields = [("type", asn1.ObjectIdentifier), ("values", _AttributeValues)]  # noqa: RUF012


class _SubjectDirectoryAttributes(asn1.SequenceOf):  # type: ignore[misc]
    _child_spec = _Attribute


def _sda_der(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(OID_SUBJECT_DIRECTORY_ATTRIBUTES)
        )
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    # cryptography < 46 has no SubjectDirectoryAttributes type and hands back the raw
    # extnValue; newer releases may parse it, in which case re-encode it.
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    return value.public_bytes()


def _read_sda(cert: x509.Certificate) -> dict[str, Any]:
    """Return {attribute OID: first value (str)} of the SDA; empty when absent.

    A SubjectDirectoryAttributes that is present but not valid DER, or whose values for
    the attributes we read are of an unexpected type, raises ``MalformedCertificate``:
    silently treating it as absent could turn a tampered field into "no ID last-4".
    """
    der = _sda_der(cert)
    if der is None:
        return {}
    out: dict[str, Any] = {}
    try:
        parsed = _SubjectDirectoryAttributes.load(der, strict=True)
        for attribute in parsed:
            oid = attribute["type"].dotted
            values = attribute["values"]
            if len(values) == 0:
                raise MalformedCertificate(f"SDA attribute {oid} has no value")
            first = values[0]
            if oid == OID_SUBJECT_TYPE:
                out[oid] = asn1.ObjectIdentifier.load(first.dump(), strict=True).dotted
            elif oid in (OID_ID_LAST4, OID_CARD_FORM):
                encoded = first.dump()
                # asn1crypto leaves .tag unset on nested Any values: read the
                # identifier octet (universal, primitive) directly.
                if encoded[:1] == b"\x0c":
                    text = asn1.UTF8String.load(encoded, strict=True).native
                elif encoded[:1] == b"\x13":
                    text = asn1.PrintableString.load(encoded, strict=True).native
                else:
                    raise MalformedCertificate(f"SDA attribute {oid} has an unexpected type")
                out[oid] = text
    except MalformedCertificate:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise MalformedCertificate("SubjectDirectoryAttributes is not valid DER") from exc
    return out


# --- the profile ----------------------------------------------------------------------

#: How many certificate profiles :meth:`CitizenCertificate.from_certificate` keeps (LRU).
PROFILE_CACHE_SIZE: Final = 1024
# Only certificates up to this size are kept: a MOICA certificate is ~1.5 kB, while an
# attacker's self-signed one (cached before any chain check) may be up to the 64 kB input
# limit, which would make the bounded cache hold ~100 MB.
PROFILE_CACHE_MAX_DER: Final = 8 * 1024
_PROFILE_CACHE: OrderedDict[bytes, CitizenCertificate] = OrderedDict()
_PROFILE_LOCK: Final = threading.Lock()

_KEY_USAGE_FIELDS: Final = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _key_usage_names(ku: x509.KeyUsage) -> tuple[str, ...]:
    names = [name for name in _KEY_USAGE_FIELDS if getattr(ku, name)]
    if ku.key_agreement:
        # encipher_only / decipher_only are only defined when keyAgreement is set.
        if ku.encipher_only:
            names.append("encipher_only")
        if ku.decipher_only:
            names.append("decipher_only")
    return tuple(names)


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[Any] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _first_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _key_info(cert: x509.Certificate) -> tuple[str, int]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    return type(key).__name__.lower(), 0


def _usage(key_usage: tuple[str, ...], is_ca: bool) -> str:
    if is_ca:
        return "ca"
    granted = set(key_usage)
    if "digital_signature" in granted and granted <= {"digital_signature", "content_commitment"}:
        return "signing"
    if granted & {"key_encipherment", "data_encipherment"}:
        return "encryption"
    return "other"


@dataclass(frozen=True)
class CitizenCertificate:
    """The fields of a MOICA certificate a relying party uses.

    Parsed from RFC 5280 §4.1 (subject, validity, key) and §4.2 extensions: subject
    serialNumber (X.520 2.5.4.5, the 16-character card serial), SubjectDirectoryAttributes
    (§4.2.1.8; MOICA attributes 2.16.886.1.100.2.1 subject type, .2.2 form, .2.51 ID
    last-4), subjectAltName rfc822Name (§4.2.1.6, optional), certificatePolicies
    (§4.2.1.4), keyUsage (§4.2.1.3), basicConstraints (§4.2.1.9) and key identifiers
    (§4.2.1.1, §4.2.1.2). Works on CA certificates too (their citizen fields are None).

    It never holds a full ID number (the certificate carries only the last four).
    """

    subject: str
    issuer: str
    serial_number_hex: str
    name: str | None
    card_serial: str | None
    id_last4: str | None
    email: str | None
    subject_type: str | None
    form: str
    policy_oids: tuple[str, ...]
    generation: str | None
    usage: str
    key_usage: tuple[str, ...]
    key_type: str
    key_size: int
    subject_key_id: str | None
    authority_key_id: str | None
    is_ca: bool
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str

    @classmethod
    def from_certificate(cls, cert: x509.Certificate | bytes | str) -> CitizenCertificate:
        """Read the profile of ``cert``; raises ``MalformedCertificate`` on bad extensions.

        The profile is a pure function of the certificate's DER, and an instance is
        immutable, so the last :data:`PROFILE_CACHE_SIZE` profiles are kept, keyed by the
        whole DER (not a digest of it), for certificates of at most
        :data:`PROFILE_CACHE_MAX_DER` bytes and for this class only (not subclasses); a
        failure is never cached.
        """
        cert = load_certificate(cert)
        der = cert.public_bytes(serialization.Encoding.DER)
        if cls is not CitizenCertificate or len(der) > PROFILE_CACHE_MAX_DER:
            # A subclass gets instances of its own class, never the cached base ones.
            return cls._parse_checked(cert)
        with _PROFILE_LOCK:
            cached = _PROFILE_CACHE.get(der)
            if cached is not None:
                _PROFILE_CACHE.move_to_end(der)
                return cached
        profile = cls._parse_checked(cert)
        with _PROFILE_LOCK:
            _PROFILE_CACHE[der] = profile
            _PROFILE_CACHE.move_to_end(der)
            while len(_PROFILE_CACHE) > PROFILE_CACHE_SIZE:
                _PROFILE_CACHE.popitem(last=False)
        return profile

    @classmethod
    def _parse_checked(cls, cert: x509.Certificate) -> CitizenCertificate:
        try:
            return cls._parse(cert)
        except MalformedCertificate:
            raise
        except EXTENSION_ERRORS as exc:
            # cryptography parses extensions lazily (see EXTENSION_ERRORS).
            raise MalformedCertificate("certificate extensions are invalid") from exc
        except UnsupportedAlgorithm as exc:
            # public_key() of an algorithm cryptography does not know (_key_info).
            raise MalformedCertificate("certificate public key algorithm is unsupported") from exc

    @classmethod
    def _parse(cls, cert: x509.Certificate) -> CitizenCertificate:
        sda = _read_sda(cert)

        ku_ext = _ext(cert, ExtensionOID.KEY_USAGE)
        key_usage = _key_usage_names(ku_ext.value) if ku_ext else ()
        bc_ext = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
        is_ca = bool(bc_ext and bc_ext.value.ca)

        ski_ext = _ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        ski = ski_ext.value.digest.hex().upper() if ski_ext else None
        aki_ext = _ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        aki_raw = aki_ext.value.key_identifier if aki_ext else None
        aki = aki_raw.hex().upper() if aki_raw else None

        generation = _GENERATION_BY_SKI.get(aki or "")
        if is_ca and ski in _GENERATION_BY_SKI:
            # The MOICA CA itself: its AKI names GRCA, its SKI says which MOICA it is.
            generation = _GENERATION_BY_SKI[ski]

        policies_ext = _ext(cert, ExtensionOID.CERTIFICATE_POLICIES)
        policy_oids = (
            tuple(p.policy_identifier.dotted_string for p in policies_ext.value)
            if policies_ext
            else ()
        )

        email: str | None = None
        san_ext = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if san_ext:
            emails = san_ext.value.get_values_for_type(x509.RFC822Name)
            email = emails[0] if emails else None

        key_type, key_size = _key_info(cert)
        form_value = sda.get(OID_CARD_FORM)
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial_number_hex=format(cert.serial_number, "X"),
            name=_first_attr(cert.subject, NameOID.COMMON_NAME),
            card_serial=_first_attr(cert.subject, NameOID.SERIAL_NUMBER),
            id_last4=sda.get(OID_ID_LAST4),
            email=email,
            subject_type=sda.get(OID_SUBJECT_TYPE),
            form="mobile" if form_value == "mobile" else "card",
            policy_oids=policy_oids,
            generation=generation,
            usage=_usage(key_usage, is_ca),
            key_usage=key_usage,
            key_type=key_type,
            key_size=key_size,
            subject_key_id=ski,
            authority_key_id=aki,
            is_ca=is_ca,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict: datetimes as ISO 8601, tuples as lists."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        return out
