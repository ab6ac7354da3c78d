"""Verify what the card signed: CMS SignedData (HiPKI ``PKCS7``) or a bare PKCS#1 signature.

The HiPKI local component signs the challenge text the server issued and answers with
``signature`` (base64) and ``certb64`` (the signer certificate). :func:`verify_signature`
checks that signature and returns a :class:`VerifiedSignature`; it does **not** decide
whether the certificate is trustworthy (chain, validity, key usage, revocation): that is
:mod:`moica_auth.validation.chain` and :mod:`moica_auth.revocation`.

``cryptography`` has no public API to *verify* CMS (it can only sign), so this module
parses the SignedData structure (RFC 5652 §5) with ``asn1crypto`` and verifies the one
RSA signature with ``cryptography`` primitives. Everything is fail-closed: every input
that is not exactly what we expect raises a :class:`~moica_auth.exceptions.MoicaAuthError`
subclass, never a library exception and never ``False``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import cms
from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from moica_auth._wire import wire_bytes
from moica_auth.certificate import (
    EXTENSION_ERRORS,
    load_certificate,
    require_parsable,
)
from moica_auth.exceptions import (
    CardNumberMismatch,
    CertificateMismatch,
    ContentMismatch,
    MalformedSignature,
    MoicaAuthError,
    NonceMismatch,
    SignatureInvalid,
    WeakHash,
)

__all__ = [
    "DEFAULT_ALLOWED_HASHES",
    "MAX_SIGNATURE_BYTES",
    "OID_CARD_NUMBER",
    "OID_RANDOM_NONCE",
    "SUPPORTED_HASHES",
    "VerifiedSignature",
    "decode_signature",
    "normalize_hash_name",
    "verify_signature",
]

DEFAULT_ALLOWED_HASHES: Final = frozenset({"sha256", "sha384", "sha512"})

# A HiPKI SignedData with the signer certificate is ~2-3 kB; 64 KiB leaves room for a few
# intermediates while refusing to feed megabytes of attacker-chosen input to the parser.
MAX_SIGNATURE_BYTES: Final = 64 * 1024

# Signed attributes HiPKI adds to its PKCS7 output (see ../shared/DOMAIN.md).
OID_RANDOM_NONCE: Final = "1.2.840.113549.1.9.25.3"  # PKCS #9 randomNonce
OID_CARD_NUMBER: Final = "2.16.886.1.100.2.204"

_OID_DATA: Final = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
_OID_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"
_OID_MGF1: Final = "1.2.840.113549.1.1.8"

# Digest algorithm OIDs (RFC 3370 §2, RFC 5754 §2). MD2/MD5 are named so that they get
# the precise "weak hash" refusal instead of "unknown algorithm".
_DIGEST_BY_OID: Final = {
    "1.2.840.113549.2.2": "md2",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

# Signature algorithm OIDs (RFC 3370 §3.2, RFC 4055 §5, RFC 5754 §3.2): the value is the
# hash the OID fixes, or None when the hash comes from elsewhere (digestAlgorithm / PSS
# parameters).
_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
_RSASSA_PSS: Final = "1.2.840.113549.1.1.10"
_RSA_PKCS1_SIG_HASH: Final = {
    _RSA_ENCRYPTION: None,
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.4": "md5",
    "1.2.840.113549.1.1.5": "sha1",
    "1.3.14.3.2.29": "sha1",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# Never acceptable, whatever ``allowed_hashes`` says (collisions are practical).
_ALWAYS_REJECTED: Final = frozenset({"md2", "md4", "md5"})
#: Every name ``allowed_hashes`` may usefully hold (SHA-1 only if explicitly allowed).
SUPPORTED_HASHES: Final = frozenset(_HASHES)

_BASE64_TEXT_RE: Final = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")
_STANDARD_B64_RE: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified over ``signed_content`` with ``certificate``'s key.

    Only the signature is established: the certificate is *not* yet validated.
    """

    certificate: x509.Certificate
    signature_type: str  # "PKCS7" | "PKCS1"
    hash_algorithm: str  # "sha256" | "sha384" | "sha512" (or "sha1" if explicitly allowed)
    padding: str  # "pkcs1v15" | "pss"
    signed_content: bytes
    signing_time: datetime | None
    nonce: bytes | None  # signed attribute 1.2.840.113549.1.9.25.3
    card_number: str | None  # signed attribute 2.16.886.1.100.2.204
    # Every other certificate carried in the SignedData (candidate intermediates).
    certificates: tuple[x509.Certificate, ...] = ()


# --- input decoding -------------------------------------------------------------------


def decode_signature(data: bytes | str) -> bytes:
    """Decode a signature from the wire: base64 text or raw DER/binary bytes.

    Accepts standard or URL-safe base64 (RFC 4648 §4, §5), with or without whitespace and
    padding, as ``str`` or ``bytes``; ``bytes`` that are not base64 text are taken as raw
    binary (a DER SignedData always contains non-ASCII length octets). Empty input, text
    that is not base64, and anything larger than :data:`MAX_SIGNATURE_BYTES` raise
    :class:`MalformedSignature`.
    """
    raw = wire_bytes(data, what="signature", error=MalformedSignature)
    # Text is always base64; bytes are base64 text only if they look like it.
    text = isinstance(data, str) or _BASE64_TEXT_RE.fullmatch(raw) is not None
    # Base64 inflates by 4/3 (plus whitespace), so the wire limit is a little higher than
    # the decoded one; both bound the work done on attacker-chosen input.
    if len(raw) > MAX_SIGNATURE_BYTES * 2:
        raise MalformedSignature(f"signature input larger than {MAX_SIGNATURE_BYTES * 2} bytes")
    decoded = _decode_base64(raw) if text else raw
    if not decoded:
        raise MalformedSignature("empty signature")
    if len(decoded) > MAX_SIGNATURE_BYTES:
        raise MalformedSignature(f"signature larger than {MAX_SIGNATURE_BYTES} bytes")
    return decoded


def _decode_base64(raw: bytes) -> bytes:
    compact = b"".join(raw.split())
    if b"-" in compact or b"_" in compact:
        if b"+" in compact or b"/" in compact:
            raise MalformedSignature("signature mixes standard and URL-safe base64")
        compact = compact.translate(bytes.maketrans(b"-_", b"+/"))
    # URL-safe producers often drop the padding; restore it rather than refuse.
    if b"=" not in compact:
        compact += b"=" * (-len(compact) % 4)
    if len(compact) % 4 or not _STANDARD_B64_RE.fullmatch(compact):
        raise MalformedSignature("signature is not valid base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignature("signature is not valid base64") from exc


def normalize_hash_name(name: str) -> str:
    """``"SHA256"``, ``"SHA-256"``, ``"sha256"`` → ``"sha256"`` (HiPKI ``hashAlgorithm``)."""
    return name.strip().lower().replace("-", "").replace("_", "")


def _check_hash(name: str, allowed_hashes: frozenset[str]) -> type[hashes.HashAlgorithm]:
    """Refuse MD2/MD5 always, and anything outside ``allowed_hashes`` (SHA-1 by default)."""
    if name in _ALWAYS_REJECTED or name not in allowed_hashes or name not in _HASHES:
        raise WeakHash(f"hash algorithm {name!r} is not accepted", hash_algorithm=name)
    return _HASHES[name]


# --- CMS parsing (asn1crypto) ---------------------------------------------------------


@dataclass(frozen=True)
class _SignerIdentifier:
    issuer: asn1_x509.Name | None
    serial_number: int | None
    subject_key_identifier: bytes | None
    issuer_der: bytes | None = None  # the issuer Name's original DER octets


@dataclass(frozen=True)
class _ParsedSignedData:
    certificates_der: tuple[bytes, ...]
    econtent: bytes | None
    sid: _SignerIdentifier
    digest_algorithm: str
    signature_algorithm_oid: str
    pss_params: tuple[str, str, int] | None  # (hash, mgf1 hash, salt length)
    signed_attrs_der: bytes | None  # the SET OF re-tagged from [0] IMPLICIT
    attributes: dict[str, tuple[Any, ...]]
    signature: bytes


def _oid(value: Any) -> str:
    return str(value.dotted)


def _parse_signed_data(
    der: bytes, supplied: x509.Certificate | None = None, supplied_der: bytes | None = None
) -> _ParsedSignedData:
    """Parse ContentInfo → SignedData (RFC 5652 §3, §5.1) and its single SignerInfo (§5.3).

    Every structural rule is checked here; every asn1crypto access happens inside this
    function because asn1crypto parses lazily and would otherwise raise its own
    exceptions later.

    ``supplied`` (certb64, already loaded by ``cryptography``) only saves work: octets of
    the SignedData that are byte-identical to a part of it that ``cryptography`` has
    parsed strictly (the certificate itself, its issuer Name) are not parsed a second
    time; everything else is parsed exactly as without it.
    """
    if supplied is not None and supplied_der is None:
        supplied_der = _der(supplied)
    canonical = _parse_canonical(der, supplied, supplied_der)
    if canonical is not None:
        return canonical
    try:
        return _parse_signed_data_unchecked(der, supplied, supplied_der)
    except MoicaAuthError:
        raise
    except Exception as exc:
        # asn1crypto raises ValueError, TypeError, KeyError, OverflowError, RecursionError…
        # depending on where the garbage is; all of it means "not a SignedData we accept".
        raise MalformedSignature("signature is not a well-formed CMS SignedData") from exc


def _parse_signed_data_unchecked(
    der: bytes, supplied: x509.Certificate | None = None, supplied_der: bytes | None = None
) -> _ParsedSignedData:
    if der[:1] != b"\x30":
        raise MalformedSignature("signature is not a DER SEQUENCE")
    info = cms.ContentInfo.load(der, strict=True)
    if _oid(info["content_type"]) != _OID_SIGNED_DATA:
        raise MalformedSignature("ContentInfo is not SignedData")
    signed_data = info["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise MalformedSignature("ContentInfo is not SignedData")

    version = signed_data["version"].native
    if version not in ("v1", "v3"):
        # v4/v5 only come with attribute or "other" certificate formats we do not accept.
        raise MalformedSignature(f"unsupported SignedData version {version}")

    encap = signed_data["encap_content_info"]
    if _oid(encap["content_type"]) != _OID_DATA:
        raise MalformedSignature("encapsulated content type is not id-data")
    content_field = encap["content"]
    econtent: bytes | None = None
    if not isinstance(content_field, asn1.Void):
        native = content_field.native
        if not isinstance(native, bytes):
            raise MalformedSignature("eContent is not an OCTET STRING")
        econtent = native

    if supplied is not None and supplied_der is None:
        supplied_der = _der(supplied)
    certificates: list[bytes] = []
    cert_set = signed_data["certificates"]
    if not isinstance(cert_set, asn1.Void):
        for choice in cert_set:
            if choice.name != "certificate":
                raise MalformedSignature(f"unsupported certificate format {choice.name}")
            cert_der = choice.chosen.dump()
            # The certb64 copy was loaded by cryptography already: read its serial there
            # instead of parsing the TBSCertificate again with asn1crypto.
            serial = (
                supplied.serial_number
                if supplied is not None and cert_der == supplied_der
                else choice.chosen.serial_number
            )
            if serial <= 0:
                # RFC 5280 §4.1.2.2; refused here so that cryptography never has to load
                # (and warn about) it.
                raise MalformedSignature("a carried certificate has a non-positive serial")
            certificates.append(cert_der)

    # asn1crypto parses lazily: touch every field we do not otherwise read, so that
    # garbage anywhere in the structure is refused rather than silently carried along.
    # A digestAlgorithms SET holding exactly one canonical encoding of a known digest
    # (what every signer sends) provably parses, so only anything else is parsed.
    digest_algorithms = signed_data["digest_algorithms"]
    if digest_algorithms.contents not in _CANONICAL_DIGEST_ALGORITHMS:
        _ = digest_algorithms.native
    crls = signed_data["crls"]
    if not isinstance(crls, asn1.Void):
        _ = crls.native

    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise MalformedSignature(f"expected exactly one SignerInfo, found {len(signer_infos)}")
    signer = signer_infos[0]

    # RFC 5652 §5.3: version 1 ⇔ issuerAndSerialNumber, version 3 ⇔ subjectKeyIdentifier.
    signer_version = signer["version"].native
    sid_choice = signer["sid"]
    if sid_choice.name == "issuer_and_serial_number":
        if signer_version != "v1":
            raise MalformedSignature("SignerInfo with issuerAndSerialNumber must be version 1")
        issuer = sid_choice.chosen["issuer"]
        sid = _SignerIdentifier(
            issuer=issuer,
            serial_number=int(sid_choice.chosen["serial_number"].native),
            subject_key_identifier=None,
            issuer_der=issuer.dump(),
        )
        # Force the lazy Name parse now so that garbage fails here, unless these are the
        # very octets of certb64's issuer, which cryptography has parsed already.
        if supplied is None or sid.issuer_der != _issuer_der(supplied):
            _ = issuer.native
    else:
        if signer_version != "v3":
            raise MalformedSignature("SignerInfo with subjectKeyIdentifier must be version 3")
        ski = sid_choice.chosen.native
        if not isinstance(ski, bytes):
            raise MalformedSignature("subjectKeyIdentifier is not an OCTET STRING")
        sid = _SignerIdentifier(issuer=None, serial_number=None, subject_key_identifier=ski)
    if signer_version == "v3" and version != "v3":
        # RFC 5652 §5.1: any version 3 SignerInfo makes the SignedData version 3.
        raise MalformedSignature("SignedData version must be 3 with a version 3 SignerInfo")

    digest_oid = _oid(signer["digest_algorithm"]["algorithm"])
    digest = _DIGEST_BY_OID.get(digest_oid)
    if digest is None:
        raise WeakHash(f"unknown digest algorithm {digest_oid}", hash_algorithm=digest_oid)

    # RFC 5754 §2 / RFC 4055 §5: digest and PKCS#1 v1.5 parameters are absent or NULL.
    if signer["digest_algorithm"]["parameters"].native is not None:
        raise MalformedSignature("digestAlgorithm parameters must be absent or NULL")
    sig_alg = signer["signature_algorithm"]
    sig_oid = _oid(sig_alg["algorithm"])
    if sig_oid == _RSASSA_PSS:
        pss_params: tuple[str, str, int] | None = _parse_pss_params(sig_alg["parameters"])
    else:
        pss_params = None
        if sig_alg["parameters"].native is not None:
            raise MalformedSignature("signatureAlgorithm parameters must be absent or NULL")

    signed_attrs = signer["signed_attrs"]
    signed_attrs_der: bytes | None = None
    attributes: dict[str, tuple[Any, ...]] = {}
    if not isinstance(signed_attrs, asn1.Void):
        # RFC 5652 §5.4: the signature covers the DER of the SET OF attributes, i.e. the
        # original octets with the [0] IMPLICIT tag replaced by the universal SET tag.
        # Re-encoding the parsed value could silently "repair" what was signed.
        signed_attrs_der = b"\x31" + _der_length(len(signed_attrs.contents))
        signed_attrs_der += signed_attrs.contents
        if len(signed_attrs) == 0:
            raise MalformedSignature("signedAttrs is present but empty")
        _ = signed_attrs.native  # parse every attribute, including ones we do not use
        for attribute in signed_attrs:
            attr_oid = _oid(attribute["type"])
            if attr_oid in attributes:
                # RFC 5652 §5.3: an attribute type appears at most once.
                raise MalformedSignature(f"signed attribute {attr_oid} appears twice")
            values = tuple(attribute["values"])
            if len(values) != 1:
                raise MalformedSignature(f"signed attribute {attr_oid} must have one value")
            attributes[attr_oid] = values

    unsigned_attrs = signer["unsigned_attrs"]
    if not isinstance(unsigned_attrs, asn1.Void):
        _ = unsigned_attrs.native
    signature = signer["signature"].native
    if not isinstance(signature, bytes) or not signature:
        raise MalformedSignature("SignerInfo signature is empty")

    return _ParsedSignedData(
        certificates_der=tuple(certificates),
        econtent=econtent,
        sid=sid,
        digest_algorithm=digest,
        signature_algorithm_oid=sig_oid,
        pss_params=pss_params,
        signed_attrs_der=signed_attrs_der,
        attributes=attributes,
        signature=signature,
    )


# --- the canonical fast path (own DER walk) -------------------------------------------
#
# asn1crypto builds a Python object for every node, which costs more than the RSA
# verification. A HiPKI token is always shaped the same way, so _parse_canonical reads
# exactly that shape with a strict DER walk: definite, minimal lengths; every TLV nested
# exactly inside its parent with nothing left over (the carried certificates and the
# SignerIdentifier's issuer Name are handed whole to asn1crypto, exactly as the full path
# reads them, so BER inside them is read the same way by both); the field order and tags
# of RFC 5652; versions 1/3 consistent with the SignerIdentifier; digest and signature
# AlgorithmIdentifiers in the canonical encoding of a known OID with NULL or absent
# parameters; exactly one SignerInfo; no crls, no unsignedAttrs; signed attributes
# limited to contentType, messageDigest, signingTime, randomNonce and card number, each
# once, each with one value, each value loaded with the class asn1crypto itself uses and
# its ``.native`` forced. Anything else, including everything malformed, returns None
# and takes the full asn1crypto path above, which accepts everything this accepts (with
# the same result: tests/test_signature_fuzz.py checks both on mutated tokens) and
# raises the usual errors for the rest. So the fast path accepts nothing new and decides
# no error itself.


class _NotCanonical(Exception):
    """The input is not in the canonical shape: use the asn1crypto path."""


def _tlv(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """The (start, end) of the contents of the DER TLV at ``pos`` with identifier ``tag``."""
    if pos + 2 > end or buf[pos] != tag:
        raise _NotCanonical
    first = buf[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        # 0x80 is BER's indefinite length; over 3 octets is beyond MAX_SIGNATURE_BYTES.
        if not 1 <= count <= 3 or pos + 2 + count > end or buf[pos + 2] == 0:
            raise _NotCanonical
        length = int.from_bytes(buf[pos + 2 : pos + 2 + count], "big")
        if length < 0x80:  # DER: the shortest length form
            raise _NotCanonical
        start = pos + 2 + count
    if start + length > end:
        raise _NotCanonical
    return start, start + length


def _peek(buf: bytes, pos: int, end: int) -> int:
    """The identifier octet at ``pos``, or -1 at the end of the enclosing value."""
    return buf[pos] if pos < end else -1


def _der_oid(dotted: str) -> bytes:
    return bytes(asn1.ObjectIdentifier(dotted).dump())


def _algorithm_identifiers(oids: Iterable[str]) -> dict[bytes, str]:
    """DER of AlgorithmIdentifier {oid, parameters NULL or absent} → dotted OID."""
    out: dict[bytes, str] = {}
    for dotted in oids:
        for params in (b"", b"\x05\x00"):
            body = _der_oid(dotted) + params
            out[b"\x30" + bytes([len(body)]) + body] = dotted
    return out


_CANONICAL_DIGEST_ALGORITHMS: Final = _algorithm_identifiers(_DIGEST_BY_OID)
_CANONICAL_RSA_ALGORITHMS: Final = _algorithm_identifiers(_RSA_PKCS1_SIG_HASH)
_DER_OID_SIGNED_DATA: Final = _der_oid(_OID_SIGNED_DATA)
_DER_OID_DATA: Final = _der_oid(_OID_DATA)
# randomNonce / card number values (asn1crypto: Any): OCTET STRING, UTF8String, PrintableString.
_CANONICAL_STRING_TAGS: Final = frozenset({0x04, 0x0C, 0x13})
# Attribute type OID → the class asn1crypto parses its value with (Any ones as universal).
_CANONICAL_ATTRIBUTES: Final[dict[bytes, tuple[str, type[asn1.Asn1Value] | None]]] = {
    _der_oid(_OID_CONTENT_TYPE): (_OID_CONTENT_TYPE, cms.ContentType),
    _der_oid(_OID_MESSAGE_DIGEST): (_OID_MESSAGE_DIGEST, asn1.OctetString),
    _der_oid(_OID_SIGNING_TIME): (_OID_SIGNING_TIME, cms.Time),
    _der_oid(OID_RANDOM_NONCE): (OID_RANDOM_NONCE, None),
    _der_oid(OID_CARD_NUMBER): (OID_CARD_NUMBER, None),
}


def _parse_canonical(
    der: bytes, supplied: x509.Certificate | None, supplied_der: bytes | None = None
) -> _ParsedSignedData | None:
    """:func:`_parse_signed_data_unchecked` for the canonical shape only, else None."""
    try:
        if supplied is not None and supplied_der is None:
            supplied_der = _der(supplied)
        return _parse_canonical_unchecked(der, supplied, supplied_der)
    except Exception:
        # _NotCanonical, or anything an asn1crypto leaf load raised: the full path decides.
        return None


def _parse_canonical_unchecked(
    der: bytes, supplied: x509.Certificate | None, supplied_der: bytes | None
) -> _ParsedSignedData:
    end = len(der)
    # ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT SignedData }
    ci_start, ci_end = _tlv(der, 0, end, 0x30)
    if ci_end != end:
        raise _NotCanonical
    _, oid_end = _tlv(der, ci_start, ci_end, 0x06)
    if der[ci_start:oid_end] != _DER_OID_SIGNED_DATA:
        raise _NotCanonical
    explicit_start, explicit_end = _tlv(der, oid_end, ci_end, 0xA0)
    if explicit_end != ci_end:
        raise _NotCanonical
    sd_start, sd_end = _tlv(der, explicit_start, explicit_end, 0x30)
    if sd_end != explicit_end:
        raise _NotCanonical

    # SignedData ::= SEQUENCE { version, digestAlgorithms, encapContentInfo,
    #   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos }
    pos = sd_start
    v_start, pos = _tlv(der, pos, sd_end, 0x02)
    version = der[v_start:pos]
    if version not in (b"\x01", b"\x03"):
        raise _NotCanonical
    da_start, pos = _tlv(der, pos, sd_end, 0x31)
    if der[da_start:pos] not in _CANONICAL_DIGEST_ALGORITHMS:
        raise _NotCanonical

    eci_start, eci_end = _tlv(der, pos, sd_end, 0x30)
    pos = eci_end
    _, oid_end = _tlv(der, eci_start, eci_end, 0x06)
    if der[eci_start:oid_end] != _DER_OID_DATA:
        raise _NotCanonical
    econtent: bytes | None = None
    if oid_end != eci_end:
        wrap_start, wrap_end = _tlv(der, oid_end, eci_end, 0xA0)
        octets_start, octets_end = _tlv(der, wrap_start, wrap_end, 0x04)
        if wrap_end != eci_end or octets_end != wrap_end:
            raise _NotCanonical
        econtent = der[octets_start:octets_end]

    certificates: list[bytes] = []
    if _peek(der, pos, sd_end) == 0xA0:
        set_start, set_end = _tlv(der, pos, sd_end, 0xA0)
        pos = set_end
        cert_pos = set_start
        while cert_pos < set_end:
            _, cert_end = _tlv(der, cert_pos, set_end, 0x30)
            cert_der = der[cert_pos:cert_end]
            cert_pos = cert_end
            if supplied is not None and cert_der == supplied_der:
                serial = supplied.serial_number
            else:
                serial = asn1_x509.Certificate.load(cert_der, strict=True).serial_number
            if serial <= 0:
                raise _NotCanonical
            certificates.append(cert_der)

    # signerInfos SET OF SignerInfo: exactly one, and nothing after it.
    set_start, set_end = _tlv(der, pos, sd_end, 0x31)
    if set_end != sd_end:
        raise _NotCanonical
    si_start, si_end = _tlv(der, set_start, set_end, 0x30)
    if si_end != set_end:
        raise _NotCanonical

    # SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm,
    #   signedAttrs [0] IMPLICIT OPTIONAL, signatureAlgorithm, signature,
    #   unsignedAttrs [1] IMPLICIT OPTIONAL }
    v_start, pos = _tlv(der, si_start, si_end, 0x02)
    signer_version = der[v_start:pos]
    sid_tag = _peek(der, pos, si_end)
    if sid_tag == 0x30 and signer_version == b"\x01":
        ias_start, pos = _tlv(der, pos, si_end, 0x30)
        _, name_end = _tlv(der, ias_start, pos, 0x30)
        serial_start, serial_end = _tlv(der, name_end, pos, 0x02)
        if serial_end != pos or serial_start == serial_end:
            raise _NotCanonical
        issuer_der = der[ias_start:name_end]
        issuer = asn1_x509.Name.load(issuer_der, strict=True)
        if supplied is None or issuer_der != _issuer_der(supplied):
            _ = issuer.native
        sid = _SignerIdentifier(
            issuer=issuer,
            serial_number=int.from_bytes(der[serial_start:serial_end], "big", signed=True),
            subject_key_identifier=None,
            issuer_der=issuer_der,
        )
    elif sid_tag == 0x80 and signer_version == b"\x03" and version == b"\x03":
        ski_start, pos = _tlv(der, pos, si_end, 0x80)
        sid = _SignerIdentifier(
            issuer=None, serial_number=None, subject_key_identifier=der[ski_start:pos]
        )
    else:
        raise _NotCanonical

    alg_start = pos
    _, pos = _tlv(der, pos, si_end, 0x30)
    digest_oid = _CANONICAL_DIGEST_ALGORITHMS.get(der[alg_start:pos])
    if digest_oid is None:
        raise _NotCanonical

    attributes: dict[str, tuple[Any, ...]] = {}
    signed_attrs_der: bytes | None = None
    if _peek(der, pos, si_end) == 0xA0:
        attrs_start, attrs_end = _tlv(der, pos, si_end, 0xA0)
        if attrs_start == attrs_end:
            raise _NotCanonical
        signed_attrs_der = b"\x31" + der[pos + 1 : attrs_end]
        pos = attrs_end
        attr_pos = attrs_start
        while attr_pos < attrs_end:
            a_start, a_end = _tlv(der, attr_pos, attrs_end, 0x30)
            attr_pos = a_end
            _, type_end = _tlv(der, a_start, a_end, 0x06)
            known = _CANONICAL_ATTRIBUTES.get(der[a_start:type_end])
            if known is None or known[0] in attributes:
                raise _NotCanonical
            values_start, values_end = _tlv(der, type_end, a_end, 0x31)
            if values_end != a_end or values_start == values_end:
                raise _NotCanonical
            value_tag = der[values_start]
            spec = known[1]
            if spec is None and value_tag not in _CANONICAL_STRING_TAGS:
                raise _NotCanonical
            _, value_end = _tlv(der, values_start, values_end, value_tag)
            if value_end != values_end or value_tag & 0x1F == 0x1F:
                raise _NotCanonical
            value_der = der[values_start:values_end]
            value = (
                asn1.load(value_der, strict=True)
                if spec is None
                else spec.load(value_der, strict=True)
            )
            _ = value.native  # as the full path's signed_attrs.native does
            attributes[known[0]] = (value,)

    alg_start = pos
    _, pos = _tlv(der, pos, si_end, 0x30)
    sig_oid = _CANONICAL_RSA_ALGORITHMS.get(der[alg_start:pos])
    if sig_oid is None:
        raise _NotCanonical
    sig_start, pos = _tlv(der, pos, si_end, 0x04)
    if pos != si_end or sig_start == pos:
        raise _NotCanonical

    return _ParsedSignedData(
        certificates_der=tuple(certificates),
        econtent=econtent,
        sid=sid,
        digest_algorithm=_DIGEST_BY_OID[digest_oid],
        signature_algorithm_oid=sig_oid,
        pss_params=None,
        signed_attrs_der=signed_attrs_der,
        attributes=attributes,
        signature=der[sig_start:pos],
    )


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _parse_pss_params(params: Any) -> tuple[str, str, int]:
    """RSASSA-PSS-params (RFC 4055 §3.1); absent fields take the RFC's SHA-1 defaults."""
    if isinstance(params, asn1.Void | asn1.Null) or params is None:
        # All defaults means SHA-1, which the hash policy then refuses.
        return ("sha1", "sha1", 20)
    if not isinstance(params, asn1.Sequence):
        raise MalformedSignature("RSASSA-PSS parameters are malformed")
    parsed = params
    _ = parsed.native  # parse the nested AlgorithmIdentifiers completely
    hash_oid = _oid(parsed["hash_algorithm"]["algorithm"])
    mgf = parsed["mask_gen_algorithm"]
    if _oid(mgf["algorithm"]) != _OID_MGF1:
        raise MalformedSignature("RSASSA-PSS mask generation function is not MGF1")
    mgf_hash_oid = _oid(mgf["parameters"]["algorithm"])
    salt_length = int(parsed["salt_length"].native)
    if parsed["trailer_field"].native not in ("trailer_field_bc", 1):
        raise MalformedSignature("RSASSA-PSS trailer field must be 1")
    hash_name = _DIGEST_BY_OID.get(hash_oid)
    mgf_hash = _DIGEST_BY_OID.get(mgf_hash_oid)
    if hash_name is None or mgf_hash is None:
        raise WeakHash("unknown RSASSA-PSS hash algorithm")
    if salt_length < 0 or salt_length > 1024:
        raise MalformedSignature("RSASSA-PSS salt length is out of range")
    return (hash_name, mgf_hash, salt_length)


# --- attributes -----------------------------------------------------------------------


def _single_value(parsed: _ParsedSignedData, oid: str) -> Any | None:
    values = parsed.attributes.get(oid)
    return None if values is None else values[0]


def _string_or_octets(value: Any, what: str) -> bytes:
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


def _signing_time(value: Any) -> datetime:
    try:
        loaded = value.native if not isinstance(value, asn1.Any) else cms.Time.load(value.dump())
        when = loaded if isinstance(loaded, datetime) else loaded.native
    except Exception as exc:
        raise MalformedSignature("signingTime attribute is malformed") from exc
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise MalformedSignature("signingTime attribute is malformed")
    return when.astimezone(UTC)


# --- certificates ---------------------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _issuer_der(cert: x509.Certificate) -> bytes | None:
    """The DER of ``cert``'s issuer Name; None if it does not parse (cryptography reads
    the Name lazily, on first access)."""
    try:
        return cert.issuer.public_bytes()
    except ValueError:
        return None


def _matches_sid(cert: x509.Certificate, sid: _SignerIdentifier) -> bool:
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


def _resolve_certificates(
    parsed: _ParsedSignedData,
    supplied: x509.Certificate | None,
    supplied_der: bytes | None = None,
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """Pick the signer certificate; return it and the other carried certificates."""
    if supplied is not None and supplied_der is None:
        supplied_der = _der(supplied)
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

    matching = [cert for cert in carried if _matches_sid(cert, parsed.sid)]
    if len(matching) > 1:
        raise MalformedSignature("more than one carried certificate matches the signer")
    embedded = matching[0] if matching else None

    if embedded is not None and supplied is not None:
        if embedded is not supplied and _der(embedded) != supplied_der:
            raise CertificateMismatch("certb64 is not the certificate inside the SignedData")
        signer = embedded
    elif embedded is not None:
        signer = embedded
    elif supplied is not None:
        if not _matches_sid(supplied, parsed.sid):
            raise CertificateMismatch("certb64 does not match the SignerInfo's signer id")
        signer = supplied
    else:
        raise MalformedSignature("no signer certificate: none carried and no certb64 given")
    others = tuple(cert for cert in carried if cert is not signer)
    return signer, others


# --- RSA verification (cryptography) --------------------------------------------------


def _rsa_key(cert: x509.Certificate) -> rsa.RSAPublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureInvalid("signer public key cannot be read") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        # MOICA cards hold RSA keys only (RFC 3370 §3.2 / RFC 4056 are all we implement).
        raise SignatureInvalid(f"signer key type {type(key).__name__} is not supported")
    return key


def _rsa_verify(
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


# --- the verb -------------------------------------------------------------------------


def verify_signature(
    *,
    content: bytes,
    signature: bytes | str,
    signature_type: str,
    certificate: bytes | str | x509.Certificate | None = None,
    hash_algorithm: str | None = None,
    allowed_hashes: frozenset[str] = DEFAULT_ALLOWED_HASHES,
    expected_nonce: bytes | None = None,
    expected_card_number: str | None = None,
    padding: str = "pkcs1v15",
) -> VerifiedSignature:
    """Verify the HiPKI ``signature`` over ``content`` (the challenge text the server issued).

    ``signature_type`` is HiPKI's ``signatureType`` (case-insensitive):

    * ``"PKCS7"``: a CMS SignedData (RFC 5652 §5) with exactly one SignerInfo, attached
      (eContent must equal ``content`` byte for byte, else :class:`ContentMismatch`) or
      detached (verified against ``content``), with or without signed attributes (§5.4:
      contentType must be id-data and messageDigest the hash of the content, else
      :class:`SignatureInvalid`). RSA PKCS#1 v1.5 (RFC 3370 §3.2) or RSASSA-PSS with the
      parameters from the SignerInfo (RFC 4056 §2). The signer certificate is the carried
      one that matches the SignerIdentifier, or ``certificate``; if both exist they must
      be the same DER (:class:`CertificateMismatch`); if neither, :class:`MalformedSignature`.
      The randomNonce and card-number signed attributes are returned and, when
      ``expected_nonce`` / ``expected_card_number`` are given, must be present and equal
      (:class:`NonceMismatch`, :class:`CardNumberMismatch`).
    * ``"PKCS1"``: a bare RSA signature (RFC 8017 §8) over ``content`` with
      ``certificate``'s key (required); ``hash_algorithm`` is HiPKI's ``hashAlgorithm``
      (default SHA-256). Only PKCS#1 v1.5 is tried unless ``padding="pss"`` (then MGF1
      with the same hash, any salt length, RFC 8017 §8.1). There are no attributes: the
      nonce must be inside the signed challenge text itself, so an ``expected_nonce``
      cannot be checked and raises :class:`NonceMismatch` (fail closed; pass ``None`` and
      bind the nonce through ``content``). ``expected_card_number`` is not checked for
      PKCS1: HiPKI's ``cardSN`` is not signed, so it proves nothing either way.

    Hashes outside ``allowed_hashes`` (SHA-1 by default), and MD5 always, raise
    :class:`WeakHash`; so does a ``hash_algorithm`` that disagrees with the one in a PKCS7.
    Anything unparsable raises :class:`MalformedSignature`. The certificate is not
    validated here: pass :attr:`VerifiedSignature.certificate` to the chain validator.
    """
    if isinstance(content, bytearray | memoryview):
        content = bytes(content)
    if not isinstance(content, bytes):
        raise MalformedSignature("content must be bytes")
    if isinstance(expected_nonce, str):
        # Callers holding the nonce as text (HiPKI's request field is a string).
        expected_nonce = expected_nonce.encode("utf-8")
    kind = signature_type.strip().upper() if isinstance(signature_type, str) else ""
    requested_hash = normalize_hash_name(hash_algorithm) if hash_algorithm else None
    if padding not in ("pkcs1v15", "pss"):
        raise MalformedSignature(f"unsupported padding {padding!r}")
    if isinstance(allowed_hashes, str | bytes):
        raise WeakHash("allowed_hashes must be a collection of hash names, not one string")
    # "SHA256" / "SHA-256" in a setting mean "sha256"; compared raw they would match nothing.
    allowed_hashes = frozenset(
        normalize_hash_name(name) for name in allowed_hashes if isinstance(name, str)
    )
    raw = decode_signature(signature)
    supplied = load_certificate(certificate) if certificate is not None else None
    if supplied is not None:
        require_parsable(supplied, "certb64")

    if kind == "PKCS1":
        verified = _verify_pkcs1(
            content=content,
            signature=raw,
            certificate=supplied,
            hash_name=requested_hash or "sha256",
            allowed_hashes=allowed_hashes,
            padding_name=padding,
        )
        if expected_nonce is not None:
            # Fail closed rather than ignore the caller's demand: a bare signature has no
            # attributes, so nothing signed can carry the nonce. The binding then has to
            # come from ``content`` itself (the challenge tbs names its nonce).
            raise NonceMismatch(
                "a PKCS1 signature carries no signed nonce; bind the nonce through the "
                "signed content and pass expected_nonce=None"
            )
        return verified
    if kind == "PKCS7":
        return _verify_pkcs7(
            content=content,
            der=raw,
            supplied=supplied,
            requested_hash=requested_hash,
            allowed_hashes=allowed_hashes,
            expected_nonce=expected_nonce,
            expected_card_number=expected_card_number,
        )
    raise MalformedSignature(f"unsupported signature type {signature_type!r}")


def _verify_pkcs1(
    *,
    content: bytes,
    signature: bytes,
    certificate: x509.Certificate | None,
    hash_name: str,
    allowed_hashes: frozenset[str],
    padding_name: str,
) -> VerifiedSignature:
    hash_cls = _check_hash(hash_name, allowed_hashes)
    if certificate is None:
        raise MalformedSignature("a PKCS1 signature needs the signer certificate (certb64)")
    key = _rsa_key(certificate)
    pad: rsa_padding.AsymmetricPadding
    if padding_name == "pss":
        # A bare signature carries no PSS parameters; the salt length does not affect
        # security (RFC 8017 §9.1 note 4), so accept any, with MGF1 over the same hash.
        pad = rsa_padding.PSS(mgf=rsa_padding.MGF1(hash_cls()), salt_length=rsa_padding.PSS.AUTO)
    else:
        pad = rsa_padding.PKCS1v15()
    _rsa_verify(key, signature, content, pad, hash_cls())
    return VerifiedSignature(
        certificate=certificate,
        signature_type="PKCS1",
        hash_algorithm=hash_name,
        padding=padding_name,
        signed_content=content,
        signing_time=None,
        nonce=None,
        card_number=None,
    )


def _verify_pkcs7(
    *,
    content: bytes,
    der: bytes,
    supplied: x509.Certificate | None,
    requested_hash: str | None,
    allowed_hashes: frozenset[str],
    expected_nonce: bytes | None,
    expected_card_number: str | None,
) -> VerifiedSignature:
    supplied_der = _der(supplied) if supplied is not None else None
    parsed = _parse_signed_data(der, supplied, supplied_der)

    # Hash policy first: cheap, and a weak hash must be refused before any other work.
    digest_name = parsed.digest_algorithm
    hash_cls = _check_hash(digest_name, allowed_hashes)
    pad: rsa_padding.AsymmetricPadding
    if parsed.signature_algorithm_oid == _RSASSA_PSS:
        if parsed.pss_params is None:  # pragma: no cover - the parser sets it for this OID
            raise MalformedSignature("RSASSA-PSS parameters are missing")
        pss_hash, mgf_hash, salt_length = parsed.pss_params
        _check_hash(pss_hash, allowed_hashes)
        _check_hash(mgf_hash, allowed_hashes)
        if pss_hash != digest_name or mgf_hash != digest_name:
            raise SignatureInvalid("RSASSA-PSS hashes disagree with the digestAlgorithm")
        pad = rsa_padding.PSS(mgf=rsa_padding.MGF1(hash_cls()), salt_length=salt_length)
        padding_name = "pss"
    elif parsed.signature_algorithm_oid in _RSA_PKCS1_SIG_HASH:
        sig_hash = _RSA_PKCS1_SIG_HASH[parsed.signature_algorithm_oid]
        if sig_hash is not None:
            _check_hash(sig_hash, allowed_hashes)
            if sig_hash != digest_name:
                raise SignatureInvalid("signature algorithm hash disagrees with digestAlgorithm")
        pad = rsa_padding.PKCS1v15()
        padding_name = "pkcs1v15"
    else:
        raise SignatureInvalid(
            f"signature algorithm {parsed.signature_algorithm_oid} is not supported (RSA only)"
        )
    if requested_hash is not None and requested_hash != digest_name:
        raise WeakHash(
            f"the signature uses {digest_name}, not the requested {requested_hash}",
            hash_algorithm=digest_name,
        )

    signer, others = _resolve_certificates(parsed, supplied, supplied_der)
    key = _rsa_key(signer)

    if parsed.econtent is not None and parsed.econtent != content:
        raise ContentMismatch("the signed content is not the issued challenge")

    nonce: bytes | None = None
    card_number: str | None = None
    signing_time: datetime | None = None
    if parsed.signed_attrs_der is not None:
        content_type = _single_value(parsed, _OID_CONTENT_TYPE)
        message_digest = _single_value(parsed, _OID_MESSAGE_DIGEST)
        if content_type is None or message_digest is None:
            # RFC 5652 §5.3: both are mandatory whenever signedAttrs is present.
            raise MalformedSignature("signedAttrs lacks contentType or messageDigest")
        try:
            content_type_oid = _oid(content_type)
            digest_value = message_digest.native
        except Exception as exc:
            raise MalformedSignature("contentType or messageDigest is malformed") from exc
        if content_type_oid != _OID_DATA:
            raise SignatureInvalid("contentType attribute is not the eContentType (id-data)")
        hasher = hashes.Hash(hash_cls())
        hasher.update(content)
        if not isinstance(digest_value, bytes) or not hmac.compare_digest(
            digest_value, hasher.finalize()
        ):
            raise SignatureInvalid("messageDigest does not match the content")
        signed_bytes = parsed.signed_attrs_der

        time_value = _single_value(parsed, _OID_SIGNING_TIME)
        signing_time = _signing_time(time_value) if time_value is not None else None
        nonce_value = _single_value(parsed, OID_RANDOM_NONCE)
        nonce = _string_or_octets(nonce_value, "nonce") if nonce_value is not None else None
        card_value = _single_value(parsed, OID_CARD_NUMBER)
        if card_value is not None:
            try:
                card_number = _string_or_octets(card_value, "card number").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedSignature("card number attribute is not text") from exc
    else:
        signed_bytes = content

    _rsa_verify(key, parsed.signature, signed_bytes, pad, hash_cls())

    # Checked only after the signature verified, so that these codes speak about signed data.
    if expected_nonce is not None and (
        nonce is None or not hmac.compare_digest(nonce, expected_nonce)
    ):
        raise NonceMismatch("the signed nonce is missing or not the issued one")
    if expected_card_number is not None and (
        card_number is None
        or not hmac.compare_digest(card_number.encode(), expected_card_number.encode())
    ):
        raise CardNumberMismatch("the signed card number is missing or not the expected one")

    return VerifiedSignature(
        certificate=signer,
        signature_type="PKCS7",
        hash_algorithm=digest_name,
        padding=padding_name,
        signed_content=content,
        signing_time=signing_time,
        nonce=nonce,
        card_number=card_number,
        certificates=others,
    )
