"""CMS SignedData parsing (RFC 5652 §3, §5) with ``asn1crypto``: the one parser.

:func:`parse_signed_data` reads a ContentInfo → SignedData with exactly one SignerInfo
into a :class:`ParsedSignedData`, checking every structural rule and touching every field
(``asn1crypto`` parses lazily: anything left unread could raise later, or be carried
along unchecked). It verifies nothing: :mod:`moica_auth.signature.signer` and
:mod:`moica_auth.signature.verify` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from asn1crypto import core as asn1
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from moica_auth.exceptions import MalformedSignature, MoicaAuthError, WeakHash
from moica_auth.signature.algorithms import (
    DIGEST_BY_OID,
    OID_DATA,
    OID_MGF1,
    OID_SIGNED_DATA,
    RSASSA_PSS,
)
from moica_auth.validation.bounds import MAX_CARRIED_CERTIFICATES, require_carried_count

__all__ = [
    "ParsedSignedData",
    "SignerIdentifier",
    "der_of",
    "issuer_der_of",
    "oid_of",
    "parse_signed_data",
]


@dataclass(frozen=True)
class SignerIdentifier:
    issuer: asn1_x509.Name | None
    serial_number: int | None
    subject_key_identifier: bytes | None
    issuer_der: bytes | None = None  # the issuer Name's original DER octets


@dataclass(frozen=True)
class ParsedSignedData:
    certificates_der: tuple[bytes, ...]
    econtent: bytes | None
    sid: SignerIdentifier
    digest_algorithm: str
    signature_algorithm_oid: str
    pss_params: tuple[str, str, int] | None  # (hash, mgf1 hash, salt length)
    signed_attrs_der: bytes | None  # the SET OF re-tagged from [0] IMPLICIT
    attributes: dict[str, tuple[Any, ...]]
    signature: bytes


def oid_of(value: Any) -> str:
    return str(value.dotted)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def issuer_der_of(cert: x509.Certificate) -> bytes | None:
    """The DER of ``cert``'s issuer Name; None if it does not parse (cryptography reads
    the Name lazily, on first access)."""
    try:
        return cert.issuer.public_bytes()
    except ValueError:
        return None


def parse_signed_data(
    der: bytes,
    supplied: x509.Certificate | None = None,
    supplied_der: bytes | None = None,
    max_certificates: int = MAX_CARRIED_CERTIFICATES,
) -> ParsedSignedData:
    """Parse ContentInfo → SignedData (RFC 5652 §3, §5.1) and its single SignerInfo (§5.3).

    Every structural rule is checked here; every asn1crypto access happens inside this
    function because asn1crypto parses lazily and would otherwise raise its own
    exceptions later.

    ``supplied`` (certb64, already loaded by ``cryptography``) only saves work: octets of
    the SignedData that are byte-identical to a part of it that ``cryptography`` has
    parsed strictly (the certificate itself, its issuer Name) are not parsed a second
    time; everything else is parsed exactly as without it.

    More than ``max_certificates`` carried certificates raise :class:`ChainTooComplex`
    before any of them is parsed (they are all path-building candidates later).
    """
    if supplied is not None and supplied_der is None:
        supplied_der = der_of(supplied)
    try:
        return _parse_signed_data_unchecked(der, supplied, supplied_der, max_certificates)
    except MoicaAuthError:
        raise
    except Exception as exc:
        # asn1crypto raises ValueError, TypeError, KeyError, OverflowError, RecursionError…
        # depending on where the garbage is; all of it means "not a SignedData we accept".
        raise MalformedSignature("signature is not a well-formed CMS SignedData") from exc


def _parse_signed_data_unchecked(
    der: bytes,
    supplied: x509.Certificate | None,
    supplied_der: bytes | None,
    max_certificates: int,
) -> ParsedSignedData:
    if der[:1] != b"\x30":
        raise MalformedSignature("signature is not a DER SEQUENCE")
    info = cms.ContentInfo.load(der, strict=True)
    if oid_of(info["content_type"]) != OID_SIGNED_DATA:
        raise MalformedSignature("ContentInfo is not SignedData")
    signed_data = info["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise MalformedSignature("ContentInfo is not SignedData")

    version = signed_data["version"].native
    if version not in ("v1", "v3"):
        # v4/v5 only come with attribute or "other" certificate formats we do not accept.
        raise MalformedSignature(f"unsupported SignedData version {version}")

    encap = signed_data["encap_content_info"]
    if oid_of(encap["content_type"]) != OID_DATA:
        raise MalformedSignature("encapsulated content type is not id-data")
    content_field = encap["content"]
    econtent: bytes | None = None
    if not isinstance(content_field, asn1.Void):
        native = content_field.native
        if not isinstance(native, bytes):
            raise MalformedSignature("eContent is not an OCTET STRING")
        econtent = native

    certificates: list[bytes] = []
    cert_set = signed_data["certificates"]
    if not isinstance(cert_set, asn1.Void):
        # Counting reads only each element's header; nothing is parsed beyond the limit.
        require_carried_count(len(cert_set), max_certificates)
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
    _ = signed_data["digest_algorithms"].native
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
        sid = SignerIdentifier(
            issuer=issuer,
            serial_number=int(sid_choice.chosen["serial_number"].native),
            subject_key_identifier=None,
            issuer_der=issuer.dump(),
        )
        # Force the lazy Name parse now so that garbage fails here, unless these are the
        # very octets of certb64's issuer, which cryptography has parsed already.
        if supplied is None or sid.issuer_der != issuer_der_of(supplied):
            _ = issuer.native
    else:
        if signer_version != "v3":
            raise MalformedSignature("SignerInfo with subjectKeyIdentifier must be version 3")
        ski = sid_choice.chosen.native
        if not isinstance(ski, bytes):
            raise MalformedSignature("subjectKeyIdentifier is not an OCTET STRING")
        sid = SignerIdentifier(issuer=None, serial_number=None, subject_key_identifier=ski)
    if signer_version == "v3" and version != "v3":
        # RFC 5652 §5.1: any version 3 SignerInfo makes the SignedData version 3.
        raise MalformedSignature("SignedData version must be 3 with a version 3 SignerInfo")

    digest_oid = oid_of(signer["digest_algorithm"]["algorithm"])
    digest = DIGEST_BY_OID.get(digest_oid)
    if digest is None:
        raise WeakHash(f"unknown digest algorithm {digest_oid}", hash_algorithm=digest_oid)

    # RFC 5754 §2 / RFC 4055 §5: digest and PKCS#1 v1.5 parameters are absent or NULL.
    if signer["digest_algorithm"]["parameters"].native is not None:
        raise MalformedSignature("digestAlgorithm parameters must be absent or NULL")
    sig_alg = signer["signature_algorithm"]
    sig_oid = oid_of(sig_alg["algorithm"])
    if sig_oid == RSASSA_PSS:
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
            attr_oid = oid_of(attribute["type"])
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

    return ParsedSignedData(
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
    hash_oid = oid_of(parsed["hash_algorithm"]["algorithm"])
    mgf = parsed["mask_gen_algorithm"]
    if oid_of(mgf["algorithm"]) != OID_MGF1:
        raise MalformedSignature("RSASSA-PSS mask generation function is not MGF1")
    mgf_hash_oid = oid_of(mgf["parameters"]["algorithm"])
    salt_length = int(parsed["salt_length"].native)
    if parsed["trailer_field"].native not in ("trailer_field_bc", 1):
        raise MalformedSignature("RSASSA-PSS trailer field must be 1")
    hash_name = DIGEST_BY_OID.get(hash_oid)
    mgf_hash = DIGEST_BY_OID.get(mgf_hash_oid)
    if hash_name is None or mgf_hash is None:
        raise WeakHash("unknown RSASSA-PSS hash algorithm")
    if salt_length < 0 or salt_length > 1024:
        raise MalformedSignature("RSASSA-PSS salt length is out of range")
    return (hash_name, mgf_hash, salt_length)
