"""The entry point: :func:`verify_signature` of a HiPKI PKCS7 or PKCS1 signature."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding

from moica_auth.certificate import load_certificate, require_parsable
from moica_auth.exceptions import (
    CardNumberMismatch,
    ContentMismatch,
    MalformedSignature,
    NonceMismatch,
    SignatureInvalid,
    WeakHash,
)
from moica_auth.signature.algorithms import (
    DEFAULT_ALLOWED_HASHES,
    OID_CARD_NUMBER,
    OID_CONTENT_TYPE,
    OID_DATA,
    OID_MESSAGE_DIGEST,
    OID_RANDOM_NONCE,
    OID_SIGNING_TIME,
    RSA_PKCS1_SIG_HASH,
    RSASSA_PSS,
    check_hash,
    normalize_hash_name,
)
from moica_auth.signature.cms import der_of, oid_of, parse_signed_data
from moica_auth.signature.signer import (
    resolve_certificates,
    rsa_verify,
    signer_key,
    signing_time_of,
    single_value,
    string_or_octets,
)
from moica_auth.signature.wire import decode_signature
from moica_auth.validation.bounds import MAX_CARRIED_CERTIFICATES

__all__ = ["VerifiedSignature", "verify_signature"]


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
    max_certificates: int = MAX_CARRIED_CERTIFICATES,
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
    Anything unparsable raises :class:`MalformedSignature`. A SignedData carrying more
    than ``max_certificates`` certificates raises :class:`ChainTooComplex` before any of
    them is parsed, and a signer key no card has (an RSA exponent above 32 bits, an
    even exponent, a modulus above 16,384 bits) raises :class:`UnsupportedKey` before
    it verifies anything. The certificate is not
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
            max_certificates=max_certificates,
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
    hash_cls = check_hash(hash_name, allowed_hashes)
    if certificate is None:
        raise MalformedSignature("a PKCS1 signature needs the signer certificate (certb64)")
    key = signer_key(certificate)
    pad: rsa_padding.AsymmetricPadding
    if padding_name == "pss":
        # A bare signature carries no PSS parameters; the salt length does not affect
        # security (RFC 8017 §9.1 note 4), so accept any, with MGF1 over the same hash.
        pad = rsa_padding.PSS(mgf=rsa_padding.MGF1(hash_cls()), salt_length=rsa_padding.PSS.AUTO)
    else:
        pad = rsa_padding.PKCS1v15()
    rsa_verify(key, signature, content, pad, hash_cls())
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
    max_certificates: int,
) -> VerifiedSignature:
    supplied_der = der_of(supplied) if supplied is not None else None
    parsed = parse_signed_data(der, supplied, supplied_der, max_certificates)

    # Hash policy first: cheap, and a weak hash must be refused before any other work.
    digest_name = parsed.digest_algorithm
    hash_cls = check_hash(digest_name, allowed_hashes)
    pad: rsa_padding.AsymmetricPadding
    if parsed.signature_algorithm_oid == RSASSA_PSS:
        if parsed.pss_params is None:  # pragma: no cover - the parser sets it for this OID
            raise MalformedSignature("RSASSA-PSS parameters are missing")
        pss_hash, mgf_hash, salt_length = parsed.pss_params
        check_hash(pss_hash, allowed_hashes)
        check_hash(mgf_hash, allowed_hashes)
        if pss_hash != digest_name or mgf_hash != digest_name:
            raise SignatureInvalid("RSASSA-PSS hashes disagree with the digestAlgorithm")
        pad = rsa_padding.PSS(mgf=rsa_padding.MGF1(hash_cls()), salt_length=salt_length)
        padding_name = "pss"
    elif parsed.signature_algorithm_oid in RSA_PKCS1_SIG_HASH:
        sig_hash = RSA_PKCS1_SIG_HASH[parsed.signature_algorithm_oid]
        if sig_hash is not None:
            check_hash(sig_hash, allowed_hashes)
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

    signer, others = resolve_certificates(parsed, supplied, supplied_der)
    key = signer_key(signer)

    if parsed.econtent is not None and parsed.econtent != content:
        raise ContentMismatch("the signed content is not the issued challenge")

    nonce: bytes | None = None
    card_number: str | None = None
    signing_time: datetime | None = None
    if parsed.signed_attrs_der is not None:
        content_type = single_value(parsed, OID_CONTENT_TYPE)
        message_digest = single_value(parsed, OID_MESSAGE_DIGEST)
        if content_type is None or message_digest is None:
            # RFC 5652 §5.3: both are mandatory whenever signedAttrs is present.
            raise MalformedSignature("signedAttrs lacks contentType or messageDigest")
        try:
            content_type_oid = oid_of(content_type)
            digest_value = message_digest.native
        except Exception as exc:
            raise MalformedSignature("contentType or messageDigest is malformed") from exc
        if content_type_oid != OID_DATA:
            raise SignatureInvalid("contentType attribute is not the eContentType (id-data)")
        hasher = hashes.Hash(hash_cls())
        hasher.update(content)
        if not isinstance(digest_value, bytes) or not hmac.compare_digest(
            digest_value, hasher.finalize()
        ):
            raise SignatureInvalid("messageDigest does not match the content")
        signed_bytes = parsed.signed_attrs_der

        time_value = single_value(parsed, OID_SIGNING_TIME)
        signing_time = signing_time_of(time_value) if time_value is not None else None
        nonce_value = single_value(parsed, OID_RANDOM_NONCE)
        nonce = string_or_octets(nonce_value, "nonce") if nonce_value is not None else None
        card_value = single_value(parsed, OID_CARD_NUMBER)
        if card_value is not None:
            try:
                card_number = string_or_octets(card_value, "card number").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedSignature("card number attribute is not text") from exc
    else:
        signed_bytes = content

    rsa_verify(key, parsed.signature, signed_bytes, pad, hash_cls())

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
