"""A software stand-in for a citizen card behind the HiPKI local component.

.. warning:: The card keys come from :mod:`moica_auth.testing.pki`: **public test keys**.

:class:`SoftCard` answers a ``MakeSignature`` request the way the HiPKI local component
(跨平台網頁元件) does with a card's signing key: ``PKCS1`` gives a bare RSASSA-PKCS1-v1_5
(RFC 8017 §8.2) signature over the tbs; ``PKCS7`` gives a CMS SignedData (RFC 5652 §5)
whose signed attributes carry contentType, messageDigest, signingTime, the request nonce
(PKCS #9 randomNonce, 1.2.840.113549.1.9.25.3) and the card number (2.16.886.1.100.2.204).

cryptography cannot write CMS with custom signed attributes, so :func:`build_signed_data`
builds the structures with asn1crypto and signs with cryptography. It is public so tests
can build deliberately broken SignedData (wrong messageDigest or contentType attribute,
attributes changed after signing).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from moica_auth.testing.pki import OID_CARD_NUMBER_ATTRIBUTE, CitizenCard

__all__ = [
    "HIPKI_VERSION",
    "OID_CARD_NUMBER_ATTRIBUTE",
    "OID_RANDOM_NONCE",
    "SoftCard",
    "build_signed_data",
    "hash_for",
    "raw_sign_response",
    "sign_response",
]

HIPKI_VERSION = "1.3.4.103327"
OID_RANDOM_NONCE = "1.2.840.113549.1.9.25.3"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA1": hashes.SHA1,
    "SHA224": hashes.SHA224,
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
    "MD5": hashes.MD5,
}


def hash_for(name: str) -> hashes.HashAlgorithm:
    """The hash for a HiPKI ``hashAlgorithm`` name (``"SHA256"``, ``"sha-256"``, …)."""
    key = name.upper().replace("-", "")
    if key not in _HASHES:
        raise ValueError(f"unsupported hash algorithm {name!r}")
    return _HASHES[key]()


def _pss(hash_algorithm: hashes.HashAlgorithm) -> padding.PSS:
    # Salt length = digest length: the RFC 4055 §3.1 recommendation, and what the
    # RSASSA-PSS-params written below declare.
    return padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)


class _AnyValues(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class _RawAttribute(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("type", core.ObjectIdentifier),
        ("values", _AnyValues),
    ]


def _attribute(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    """Attribute ::= SEQUENCE { attrType OID, attrValues SET OF ANY } (RFC 5652 §5.3).

    Encoded generically, then re-read as a CMSAttribute, so any value type fits any
    attribute type: asn1crypto has no spec for the nonce and card-number attributes, and
    tests need mismatched ones."""
    raw = _RawAttribute({"type": oid, "values": [core.Any.load(value.dump())]})
    return cms.CMSAttribute.load(raw.dump())


def build_signed_data(
    *,
    content: bytes,
    private_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    hash_algorithm: str = "SHA256",
    detached: bool = False,
    signed_attributes: bool = True,
    signing_time: datetime | None = None,
    nonce: bytes | None = None,
    card_number: str | None = None,
    certificates: Sequence[x509.Certificate] | None = None,
    pss: bool = False,
    message_digest: bytes | None = None,
    content_type: str = "1.2.840.113549.1.7.1",
    econtent_type: str = "1.2.840.113549.1.7.1",
    extra_attributes: Sequence[cms.CMSAttribute] = (),
    tamper_attributes: Callable[[list[cms.CMSAttribute]], list[cms.CMSAttribute]] | None = None,
) -> bytes:
    """Build a DER ``ContentInfo`` holding a CMS SignedData (RFC 5652 §5.1) with one signer.

    * ``encapContentInfo`` (§5.2): ``econtent_type`` (id-data) with ``content`` as
      eContent, omitted when ``detached``.
    * ``SignerInfo`` (§5.3): version 1, ``sid`` = issuerAndSerialNumber of
      ``certificate``, signatureAlgorithm rsaEncryption (RFC 3370 §3.2) or RSASSA-PSS with
      explicit parameters (RFC 4056 §2) when ``pss``.
    * Signed attributes (when ``signed_attributes``): contentType (value
      ``content_type``), messageDigest (``message_digest`` or the real digest of
      ``content``), signingTime (when given), randomNonce (when given), card number (when
      given), then ``extra_attributes``. They are DER-sorted as a SET OF must be and the
      signature covers the DER of that SET (RFC 5652 §5.4). Without signed attributes the
      signature covers ``content`` itself.
    * ``tamper_attributes`` (tests only) rewrites the attribute list *after* signing, so
      the signature no longer matches.
    * ``certificates`` (§5.1): default ``[certificate]``; ``[]`` omits the field.
    """
    hash_obj = hash_for(hash_algorithm)
    digest_name = hash_obj.name.replace("-", "")  # asn1crypto names: "sha256", …
    digest_algorithm = algos.DigestAlgorithm({"algorithm": digest_name})
    asn1_cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))

    attrs_value: cms.CMSAttributes | None = None
    to_sign = content
    if signed_attributes:
        if message_digest is None:
            h = hashes.Hash(hash_obj)
            h.update(content)
            message_digest = h.finalize()
        attrs = [
            _attribute("1.2.840.113549.1.9.3", core.ObjectIdentifier(content_type)),
            _attribute("1.2.840.113549.1.9.4", core.OctetString(message_digest)),
        ]
        if signing_time is not None:
            attrs.append(_attribute("1.2.840.113549.1.9.5", cms.Time({"utc_time": signing_time})))
        if nonce is not None:
            attrs.append(_attribute(OID_RANDOM_NONCE, core.OctetString(nonce)))
        if card_number is not None:
            attrs.append(_attribute(OID_CARD_NUMBER_ATTRIBUTE, core.PrintableString(card_number)))
        attrs.extend(extra_attributes)
        # DER: the components of a SET OF are sorted by their encodings (X.690 §11.6).
        attrs.sort(key=lambda a: a.dump())
        to_sign = cms.CMSAttributes(attrs).dump()
        if tamper_attributes is not None:
            attrs = tamper_attributes(list(attrs))
        attrs_value = cms.CMSAttributes(attrs)

    if pss:
        signature = private_key.sign(to_sign, _pss(hash_obj), hash_obj)
        sig_alg = algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": algos.RSASSAPSSParams(
                    {
                        "hash_algorithm": {"algorithm": digest_name},
                        "mask_gen_algorithm": {
                            "algorithm": "mgf1",
                            "parameters": {"algorithm": digest_name},
                        },
                        "salt_length": hash_obj.digest_size,
                    }
                ),
            }
        )
    else:
        signature = private_key.sign(to_sign, padding.PKCS1v15(), hash_obj)
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})

    signer_info: dict[str, Any] = {
        "version": "v1",
        "sid": cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": asn1_cert.issuer,
                    "serial_number": asn1_cert.serial_number,
                }
            }
        ),
        "digest_algorithm": digest_algorithm,
        "signature_algorithm": sig_alg,
        "signature": signature,
    }
    if attrs_value is not None:
        signer_info["signed_attrs"] = attrs_value

    encap: dict[str, Any] = {"content_type": econtent_type}
    if not detached:
        encap["content"] = content
    signed_data: dict[str, Any] = {
        "version": "v1",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": encap,
        "signer_infos": [signer_info],
    }
    certs = [certificate] if certificates is None else list(certificates)
    if certs:
        signed_data["certificates"] = [
            asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in certs
        ]
    der: bytes = cms.ContentInfo(
        {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
    ).dump()
    return der


def sign_response(
    tbs: bytes,
    *,
    private_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    card_number: str | None,
    signing_time: datetime,
    signature_type: str = "PKCS7",
    hash_algorithm: str = "SHA256",
    nonce: bytes | None = None,
    detached: bool = False,
    signed_attributes: bool = True,
    include_certificate: bool = True,
    pss: bool = False,
    extra_certificates: Sequence[x509.Certificate] = (),
) -> dict[str, Any]:
    """The HiPKI ``sign`` response for ``tbs`` signed with ``private_key``.

    ``{"func": "sign", "ret_code": 0, "last_error": 0, "message": "", "signature":
    <base64>, "certb64": <base64 DER of the signer certificate>, "cardSN": <card number>
    (only when ``card_number`` is not None), "version": HIPKI_VERSION}``.

    ``signature_type="PKCS1"``: RSASSA-PKCS1-v1_5 (RFC 8017 §8.2), or RSASSA-PSS (§8.1)
    when ``pss``, over ``tbs`` with ``hash_algorithm`` (the card hashes the data itself).
    ``"PKCS7"``: a SignedData from :func:`build_signed_data` whose signed attributes
    carry ``signing_time``, ``nonce`` and ``card_number``.
    """
    hash_obj = hash_for(hash_algorithm)
    kind = signature_type.upper()
    if kind == "PKCS1":
        pad: padding.AsymmetricPadding = _pss(hash_obj) if pss else padding.PKCS1v15()
        signature = private_key.sign(tbs, pad, hash_obj)
    elif kind == "PKCS7":
        signature = build_signed_data(
            content=tbs,
            private_key=private_key,
            certificate=certificate,
            hash_algorithm=hash_algorithm,
            detached=detached,
            signed_attributes=signed_attributes,
            signing_time=signing_time,
            nonce=nonce,
            card_number=card_number,
            certificates=[
                *([certificate] if include_certificate else []),
                *extra_certificates,
            ],
            pss=pss,
        )
    else:
        raise ValueError(f"unsupported signature type {signature_type!r}")
    return _sign_answer(signature, certificate, card_number)


def _sign_answer(
    signature: bytes, certificate: x509.Certificate, card_number: str | None
) -> dict[str, Any]:
    """The component's successful ``sign`` answer (docs/protocol.md)."""
    response: dict[str, Any] = {
        "func": "sign",
        "ret_code": 0,
        "last_error": 0,
        "message": "",
        "signature": base64.b64encode(signature).decode("ascii"),
        "certb64": base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode(
            "ascii"
        ),
    }
    if card_number is not None:
        response["cardSN"] = card_number
    response["version"] = HIPKI_VERSION
    return response


class SoftCard:
    """Signs exactly as the HiPKI local component does with a card's signing key.

    ``clock`` gives the signingTime; by default it is the clock of the :class:`TestPKI`
    that issued the card (``card.issued_at``), so test output is reproducible. Pass
    ``clock=lambda: datetime.now(UTC)`` for a live demo.
    """

    def __init__(self, card: CitizenCard, *, clock: Callable[[], datetime] | None = None) -> None:
        self.card = card
        if clock is None:
            issued_at = card.issued_at

            def clock() -> datetime:
                return issued_at if issued_at is not None else datetime.now(UTC)

        self.clock = clock

    def sign(
        self,
        tbs: bytes,
        *,
        signature_type: str = "PKCS7",
        hash_algorithm: str = "SHA256",
        nonce: bytes | None = None,
        with_card_sn: bool = True,
        detached: bool = False,
        signed_attributes: bool = True,
        include_certificate: bool = True,
        pss: bool = False,
        extra_certificates: Sequence[x509.Certificate] = (),
        use_encryption_key: bool = False,
    ) -> dict[str, Any]:
        """Sign ``tbs`` with the card's signing key and return the HiPKI ``sign``
        response (see :func:`sign_response`); ``cardSN`` (and the card-number signed
        attribute) only when ``with_card_sn``. ``use_encryption_key`` signs with the
        *encryption* key and certificate instead, which a verifier must reject.
        """
        signer = self.card.encryption if use_encryption_key else self.card.signing
        return sign_response(
            tbs,
            private_key=signer.private_key,
            certificate=signer.certificate,
            card_number=self.card.card_number if with_card_sn else None,
            signing_time=self.clock(),
            signature_type=signature_type,
            hash_algorithm=hash_algorithm,
            nonce=nonce,
            detached=detached,
            signed_attributes=signed_attributes,
            include_certificate=include_certificate,
            pss=pss,
            extra_certificates=extra_certificates,
        )


# DER prefixes of DigestInfo (RFC 8017 §9.2 note 1): the only inputs the RAW signer takes.
_DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}


def raw_sign_response(
    digest_info: bytes,
    *,
    private_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    card_number: str | None,
) -> dict[str, Any]:
    """The HiPKI ``sign`` response of ``signatureType: "RAW"``: the card pads the given
    DER DigestInfo (PKCS#1 v1.5, type 1) and applies its key without hashing again.

    Only a SHA-256/384/512 DigestInfo is accepted (``ValueError`` otherwise): that is what
    a portal sends for RAW, and a test card that signed arbitrary bytes would let a test
    pass for a request no real verifier accepts.
    """
    for prefix, algorithm in _DIGEST_INFO_PREFIXES.items():
        digest = digest_info[len(prefix) :]
        if digest_info.startswith(prefix) and len(digest) == algorithm.digest_size:
            signature = private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
            break
    else:
        raise ValueError("RAW tbs must be a SHA-256/384/512 DigestInfo")
    return _sign_answer(signature, certificate, card_number)
