"""A MOICA-like test PKI: GRCA G2/G3 roots, MOICA G2/G3 intermediates, citizen cards.

.. warning::

   **Every key here is a public test key** (see :mod:`moica_auth.testing.keys`). Nothing
   issued by :class:`TestPKI` must ever be trusted outside tests.

The hierarchy mirrors the real one (``../shared/data/anchors/README.md``):

* ``grca_g2``: RSA-4096, ``C=TW, O=Government Root Certification Authority``;
  basicConstraints critical (cA, no pathLen), SKI, keyUsage critical keyCertSign+cRLSign.
* ``grca_g3``: RSA-4096, ``C=TW, O=行政院, CN=Government Root Certification Authority - G3``;
  keyUsage also asserts digitalSignature.
* ``moica_g2`` (RSA-2048, under G2) and ``moica_g3`` (RSA-4096, under G3) with the
  **byte-identical** subject ``C=TW, O=行政院, OU=內政部憑證管理中心`` and the real
  extension lists, in the real order, so code must tell them apart by AKI/SKI (RFC 5280
  §4.2.1.1, §4.2.1.2), never by name.
* Citizen cards (:meth:`TestPKI.issue_card`): a signing and an encryption certificate with
  the real end-entity profile (``../shared/data/vectors/README.md``): no SAN, no EKU, no
  basicConstraints; AKI, SKI, keyUsage (critical), certificatePolicies,
  SubjectDirectoryAttributes, cRLDistributionPoints (partition + complete), AIA.

Everything is deterministic: keys come from the seed, serials are derived from the seed
and a label, and validity is relative to a pinned clock (``FIXED_TIME`` by default), so the
same seed gives byte-identical certificates and CRLs on every run.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Any, ClassVar

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
)

from moica_auth.testing.keys import deterministic_rsa_key

__all__ = [
    "FIXED_TIME",
    "GRCA_G2_DN",
    "GRCA_G3_DN",
    "MOICA_DN",
    "MOICA_POLICY_OID",
    "OID_CARD_NUMBER_ATTRIBUTE",
    "OID_SDA_FORM",
    "OID_SDA_ID_LAST4",
    "OID_SDA_SUBJECT_TYPE",
    "OID_SUBJECT_DIRECTORY_ATTRIBUTES",
    "SUBJECT_TYPE_NATURAL_PERSON",
    "CertifiedKey",
    "CitizenCard",
    "TestPKI",
    "citizen_subject",
    "default_pki",
    "key_usage",
    "make_id_number",
    "subject_directory_attributes",
]

MOICA_POLICY_OID = "2.16.886.101.0.3.3"
FIXED_TIME: datetime = datetime(2026, 1, 1, tzinfo=UTC)

OID_SUBJECT_DIRECTORY_ATTRIBUTES = "2.5.29.9"
OID_SDA_SUBJECT_TYPE = "2.16.886.1.100.2.1"
OID_SDA_FORM = "2.16.886.1.100.2.2"
OID_SDA_ID_LAST4 = "2.16.886.1.100.2.51"
SUBJECT_TYPE_NATURAL_PERSON = "2.16.886.1.100.3.1.1"
OID_CARD_NUMBER_ATTRIBUTE = "2.16.886.1.100.2.204"

_GENERATIONS = ("G2", "G3")
_DAY = timedelta(days=1)


def _attr(
    oid: ObjectIdentifier, value: str, string_type: x509.name._ASN1Type
) -> x509.RelativeDistinguishedName:
    return x509.RelativeDistinguishedName([x509.NameAttribute(oid, value, _type=string_type)])


# cryptography exposes the string type only through this private enum; spelling it out
# keeps the DER identical to the real certificates whatever its defaults become.
_PRINTABLE = x509.name._ASN1Type.PrintableString
_UTF8 = x509.name._ASN1Type.UTF8String

GRCA_G2_DN = x509.Name(
    [
        _attr(NameOID.COUNTRY_NAME, "TW", _PRINTABLE),
        _attr(NameOID.ORGANIZATION_NAME, "Government Root Certification Authority", _UTF8),
    ]
)
GRCA_G3_DN = x509.Name(
    [
        _attr(NameOID.COUNTRY_NAME, "TW", _PRINTABLE),
        _attr(NameOID.ORGANIZATION_NAME, "行政院", _UTF8),
        _attr(NameOID.COMMON_NAME, "Government Root Certification Authority - G3", _UTF8),
    ]
)
#: ``C=TW, O=行政院, OU=內政部憑證管理中心``: the subject of every MOICA generation.
MOICA_DN = x509.Name(
    [
        _attr(NameOID.COUNTRY_NAME, "TW", _PRINTABLE),
        _attr(NameOID.ORGANIZATION_NAME, "行政院", _UTF8),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "內政部憑證管理中心", _UTF8),
    ]
)

_ID_LETTER_VALUES = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}  # fmt: skip


def make_id_number(seed: str, *, letter: str = "A", sex: int = 1) -> str:
    """A deterministic, checksum-valid national ID number (test data only).

    The checksum is the one in DOMAIN.md: letter value tens ×1, units ×9, digits 2–9
    weighted 8…1, plus the check digit, ≡ 0 (mod 10).
    """
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    body = f"{sex}{digest % 10**7:07d}"
    value = _ID_LETTER_VALUES[letter]
    total = value // 10 + (value % 10) * 9
    total += sum(int(d) * w for d, w in zip(body, range(8, 0, -1), strict=True))
    return f"{letter}{body}{(10 - total % 10) % 10}"


def _derive_int(*parts: str, nbytes: int = 16) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:nbytes], "big")


def _derive_serial(*parts: str) -> int:
    # 16 bytes like the real MOICA serials, forced positive and non-zero (RFC 5280 §4.1.2.2).
    return _derive_int("serial", *parts) or 1


def _derive_digits(n: int, *parts: str) -> str:
    return f"{_derive_int('digits', *parts) % 10**n:0{n}d}"


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key (a public TEST key)."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        """The unencrypted PKCS#8 PEM of the private key."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def subject_key_identifier(self) -> bytes:
        """The SKI value (RFC 5280 §4.2.1.2) of the certificate."""
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest


@dataclass(frozen=True)
class CitizenCard:
    """A virtual 自然人憑證 card: a signing and an encryption certificate (test data only)."""

    signing: CertifiedKey
    encryption: CertifiedKey
    issuer: CertifiedKey
    generation: str
    name: str
    id_number: str
    subject_serial: str
    card_number: str
    pin: str = "123456"
    user_code: str = "12345678"
    root: CertifiedKey | None = None
    #: The clock of the issuing :class:`TestPKI` (the soft card's default signingTime).
    issued_at: datetime | None = None

    @property
    def id_last4(self) -> str:
        return self.id_number[-4:]

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The CA certificates above the card certificates: MOICA, then GRCA (if known)."""
        certs = [self.issuer.certificate]
        if self.root is not None:
            certs.append(self.root.certificate)
        return tuple(certs)

    def to_pkcs12(self, password: bytes) -> bytes:
        """PKCS#12 (RFC 7292) with the signing key and certificate, the encryption
        certificate and the CA chain (the encryption private key is not included)."""
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        cas = [
            pkcs12.PKCS12Certificate(self.encryption.certificate, b"encryption"),
            *(pkcs12.PKCS12Certificate(c, b"ca") for c in self.chain),
        ]
        return pkcs12.serialize_key_and_certificates(
            name=f"{self.card_number} signing".encode(),
            key=self.signing.private_key,
            cert=self.signing.certificate,
            cas=cas,
            encryption_algorithm=encryption,
        )


def citizen_subject(name: str, subject_serial: str) -> x509.Name:
    """The real end-entity subject: C (PrintableString), CN (UTF8String), serialNumber
    (PrintableString), one attribute per RDN, in that DER order."""
    return x509.Name(
        [
            _attr(NameOID.COUNTRY_NAME, "TW", _PRINTABLE),
            _attr(NameOID.COMMON_NAME, name, _UTF8),
            _attr(NameOID.SERIAL_NUMBER, subject_serial, _PRINTABLE),
        ]
    )


class _AttributeValues(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_core.Any


class _Attribute(asn1_core.Sequence):  # type: ignore[misc]
    # RFC 5280 §4.1.2.4 Attribute ::= SEQUENCE { type, values SET OF AttributeValue }
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("type", asn1_core.ObjectIdentifier),
        ("values", _AttributeValues),
    ]


class _Attributes(asn1_core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Attribute


def subject_directory_attributes(
    *, id_last4: str | None, form: str = "card", subject_type: str = SUBJECT_TYPE_NATURAL_PERSON
) -> x509.UnrecognizedExtension:
    """The MOICA SubjectDirectoryAttributes extension (RFC 5280 §4.2.1.8).

    ``SEQUENCE OF Attribute {type, SET OF value}`` with the subject type (an OID), the form
    (PrintableString ``"mobile"``, only for the mobile certificate) and the ID last 4
    (UTF8String). cryptography has no class for 2.5.29.9, so the DER is built with
    asn1crypto and carried as an :class:`~cryptography.x509.UnrecognizedExtension`, which
    cryptography writes byte-for-byte.
    """
    values: list[dict[str, Any]] = [
        {"type": OID_SDA_SUBJECT_TYPE, "values": [asn1_core.ObjectIdentifier(subject_type)]}
    ]
    if form == "mobile":
        values.append({"type": OID_SDA_FORM, "values": [asn1_core.PrintableString("mobile")]})
    if id_last4 is not None:
        values.append({"type": OID_SDA_ID_LAST4, "values": [asn1_core.UTF8String(id_last4)]})
    der = _Attributes(
        [
            {"type": v["type"], "values": [asn1_core.Any.load(x.dump()) for x in v["values"]]}
            for v in values
        ]
    ).dump()
    return x509.UnrecognizedExtension(ObjectIdentifier(OID_SUBJECT_DIRECTORY_ATTRIBUTES), der)


def _crl_dps(urls: Sequence[str]) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            for u in urls
        ]
    )


def _aia(*, ca_issuers: str | None, ocsp: str | None) -> x509.AuthorityInformationAccess:
    descriptions = []
    # The real certificates list caIssuers before OCSP.
    if ca_issuers is not None:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers)
            )
        )
    if ocsp is not None:
        descriptions.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp)
            )
        )
    return x509.AuthorityInformationAccess(descriptions)


def _aki_for(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # keyIdentifier only, copied from the issuer's SKI (RFC 5280 §4.2.1.1 method), as in
    # the real MOICA certificates: no authorityCertIssuer / serial.
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier(ski.digest, None, None)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()  # type: ignore[arg-type]
        )


def key_usage(**flags: bool) -> x509.KeyUsage:
    """A KeyUsage with the named bits set and every other bit clear (RFC 5280 §4.2.1.3)."""
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    values = {n: flags.get(n, False) for n in names}
    return x509.KeyUsage(**values)


class TestPKI:
    """A deterministic MOICA-like PKI. All keys are **public test keys**.

    ``seed`` determines every key and serial; ``now`` is the clock every default validity
    period is computed from (default :data:`FIXED_TIME`). ``crl_base_url`` is where the
    citizen certificates' cRLDistributionPoints point
    (``{crl_base_url}/MOICA-{gen}-10-31.crl`` and ``…-complete.crl``); the MOICA CA
    certificates point at ``{grca_crl_base_url or crl_base_url}/GRCA-{gen}.crl``.
    caIssuers URLs live next to the CRLs, under ``…/certs/``. ``ocsp_url`` goes in the AIA
    of citizen certificates (and, as in the real MOICA G3, of the G3 intermediate).

    The RSA-4096 keys (both roots and MOICA G3) are generated lazily, on first use.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        *,
        seed: str = "moica-auth-test",
        now: datetime = FIXED_TIME,
        crl_base_url: str = "http://127.0.0.1:8765/crl",
        ocsp_url: str | None = "http://127.0.0.1:8765/ocsp",
        grca_crl_base_url: str | None = None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.seed = seed
        self.now = now.astimezone(UTC)
        self.crl_base_url = crl_base_url.rstrip("/")
        self.ocsp_url = ocsp_url
        self.grca_crl_base_url = (grca_crl_base_url or self.crl_base_url).rstrip("/")
        self.certs_base_url = self.crl_base_url.rsplit("/", 1)[0] + "/certs"

    # ------------------------------------------------------------------ helpers
    def key(self, label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
        """The deterministic test key for ``label`` under this PKI's seed."""
        return deterministic_rsa_key(f"{self.seed}/{label}", bits)

    def serial(self, label: str) -> int:
        """The deterministic certificate serial for ``label`` under this PKI's seed."""
        return _derive_serial(self.seed, label)

    def _build(
        self,
        *,
        subject: x509.Name,
        issuer_name: x509.Name,
        public_key: Any,
        signing_key: rsa.RSAPrivateKey,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        extensions: Sequence[tuple[x509.ExtensionType, bool]],
        hash_algorithm: hashes.HashAlgorithm | None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        # cryptography writes extensions in the order they are added: the order matters
        # because the test certificates mirror the real ones.
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        if isinstance(hash_algorithm, hashes.SHA1 | hashes.MD5):
            # cryptography refuses to *create* SHA-1/MD5 signatures, but tests need such
            # certificates to prove they are rejected: sign with SHA-256, then re-sign.
            cert = builder.sign(signing_key, hashes.SHA256())
            return _resign_certificate(cert, signing_key, hash_algorithm)
        return builder.sign(signing_key, hash_algorithm)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ CAs
    @functools.cached_property
    def grca_g2(self) -> CertifiedKey:
        """GRCA G2 look-alike: RSA-4096 self-signed root (extensions BC, SKI, KU)."""
        key = self.key("grca-g2", 4096)
        cert = self._build(
            subject=GRCA_G2_DN,
            issuer_name=GRCA_G2_DN,
            public_key=key.public_key(),
            signing_key=key,
            serial=self.serial("grca-g2"),
            not_before=self.now - timedelta(days=3650),
            not_after=self.now + timedelta(days=3650 * 2),
            extensions=[
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                (key_usage(key_cert_sign=True, crl_sign=True), True),
            ],
            hash_algorithm=hashes.SHA256(),
        )
        return CertifiedKey(cert, key)

    @functools.cached_property
    def grca_g3(self) -> CertifiedKey:
        """GRCA G3 look-alike: RSA-4096 self-signed root (KU adds digitalSignature)."""
        key = self.key("grca-g3", 4096)
        cert = self._build(
            subject=GRCA_G3_DN,
            issuer_name=GRCA_G3_DN,
            public_key=key.public_key(),
            signing_key=key,
            serial=self.serial("grca-g3"),
            not_before=self.now - timedelta(days=3 * 365),
            not_after=self.now + timedelta(days=20 * 365),
            extensions=[
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                (key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
            ],
            hash_algorithm=hashes.SHA256(),
        )
        return CertifiedKey(cert, key)

    @functools.cached_property
    def moica_g2(self) -> CertifiedKey:
        """MOICA G2 look-alike: RSA-2048 under GRCA G2, extensions in the real order
        (AKI, SKI, KU, certificatePolicies, BC pathlen 0, CRLDP, AIA caIssuers only)."""
        issuer = self.grca_g2
        key = self.key("moica-g2", 2048)
        cert = self._build(
            subject=MOICA_DN,
            issuer_name=issuer.certificate.subject,
            public_key=key.public_key(),
            signing_key=issuer.private_key,
            serial=self.serial("moica-g2"),
            not_before=self.now - timedelta(days=5 * 365),
            not_after=self.now + timedelta(days=8 * 365),
            extensions=[
                (_aki_for(issuer.certificate), False),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                (key_usage(key_cert_sign=True, crl_sign=True), True),
                (_policies([MOICA_POLICY_OID]), False),
                (x509.BasicConstraints(ca=True, path_length=0), True),
                (_crl_dps([f"{self.grca_crl_base_url}/GRCA-G2.crl"]), False),
                (_aia(ca_issuers=f"{self.certs_base_url}/GRCA-G2.crt", ocsp=None), False),
            ],
            hash_algorithm=hashes.SHA256(),
        )
        return CertifiedKey(cert, key)

    @functools.cached_property
    def moica_g3(self) -> CertifiedKey:
        """MOICA G3 look-alike: RSA-4096 under GRCA G3, extensions in the real order
        (AKI, SKI, KU, CRLDP, AIA caIssuers+OCSP, BC pathlen 0, certificatePolicies)."""
        issuer = self.grca_g3
        key = self.key("moica-g3", 4096)
        cert = self._build(
            subject=MOICA_DN,
            issuer_name=issuer.certificate.subject,
            public_key=key.public_key(),
            signing_key=issuer.private_key,
            serial=self.serial("moica-g3"),
            not_before=self.now - timedelta(days=2 * 365),
            not_after=self.now + timedelta(days=18 * 365),
            extensions=[
                (_aki_for(issuer.certificate), False),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                (key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
                (_crl_dps([f"{self.grca_crl_base_url}/GRCA-G3.crl"]), False),
                (
                    _aia(ca_issuers=f"{self.certs_base_url}/GRCA-G3.crt", ocsp=self.ocsp_url),
                    False,
                ),
                (x509.BasicConstraints(ca=True, path_length=0), True),
                (_policies([MOICA_POLICY_OID]), False),
            ],
            hash_algorithm=hashes.SHA256(),
        )
        return CertifiedKey(cert, key)

    def moica(self, generation: str) -> CertifiedKey:
        """The MOICA CA of ``generation`` ("G2" or "G3")."""
        _check_generation(generation)
        return self.moica_g2 if generation == "G2" else self.moica_g3

    def root(self, generation: str) -> CertifiedKey:
        """The GRCA root of ``generation`` ("G2" or "G3")."""
        _check_generation(generation)
        return self.grca_g2 if generation == "G2" else self.grca_g3

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The trust anchors: (GRCA G2, GRCA G3)."""
        return (self.grca_g2.certificate, self.grca_g3.certificate)

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The intermediates: (MOICA G2, MOICA G3)."""
        return (self.moica_g2.certificate, self.moica_g3.certificate)

    # ------------------------------------------------------------------ end entities
    def default_crl_urls(self, generation: str) -> list[str]:
        """The citizen CRLDP default: the ``10-31`` partition, then the complete CRL."""
        return [
            f"{self.crl_base_url}/MOICA-{generation}-10-31.crl",
            f"{self.crl_base_url}/MOICA-{generation}-complete.crl",
        ]

    def citizen_extensions(
        self,
        *,
        issuer: CertifiedKey,
        public_key: rsa.RSAPublicKey,
        usage: str,
        id_last4: str | None,
        form: str = "card",
        crl_urls: Sequence[str],
        ocsp_url: str | None,
        policy_oids: Sequence[str] = (MOICA_POLICY_OID,),
        email: str | None = None,
        ca_issuers_url: str | None = None,
    ) -> list[tuple[x509.ExtensionType, bool]]:
        """The real MOICA end-entity extension list, in order, as (extension, critical).

        AKI (keyid), SKI, keyUsage (critical; ``usage="signing"`` → digitalSignature,
        ``"encryption"`` → keyEncipherment+dataEncipherment), certificatePolicies,
        SubjectDirectoryAttributes, SAN (rfc822Name, only when ``email``),
        cRLDistributionPoints, AIA (caIssuers, then OCSP unless ``ocsp_url`` is None).
        Exposed so tests can replace or drop one entry.
        """
        if usage == "signing":
            ku = key_usage(digital_signature=True)
        elif usage == "encryption":
            ku = key_usage(key_encipherment=True, data_encipherment=True)
        else:
            raise ValueError(f"usage must be 'signing' or 'encryption', not {usage!r}")
        if form not in ("card", "mobile"):
            raise ValueError(f"form must be 'card' or 'mobile', not {form!r}")
        exts: list[tuple[x509.ExtensionType, bool]] = [
            (_aki_for(issuer.certificate), False),
            (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
            (ku, True),
            (_policies(policy_oids), False),
            (subject_directory_attributes(id_last4=id_last4, form=form), False),
        ]
        if email is not None:
            exts.append((x509.SubjectAlternativeName([x509.RFC822Name(email)]), False))
        if crl_urls:
            exts.append((_crl_dps(crl_urls), False))
        if ca_issuers_url is None:
            ca_issuers_url = f"{self.certs_base_url}/IssuedToThisCA.p7b"
        exts.append((_aia(ca_issuers=ca_issuers_url, ocsp=ocsp_url), False))
        return exts

    def issue_card(
        self,
        *,
        generation: str = "G3",
        name: str = "王小明",
        id_number: str = "A123456789",
        subject_serial: str | None = None,
        card_number: str | None = None,
        email: str | None = None,
        form: str = "card",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        crl_urls: Sequence[str] | None = None,
        ocsp_url: str | EllipsisType | None = ...,
        policy_oids: Sequence[str] = (MOICA_POLICY_OID,),
        key_bits: int = 2048,
        pin: str = "123456",
        user_code: str = "12345678",
        label: str | None = None,
    ) -> CitizenCard:
        """Issue a citizen card: a signing and an encryption certificate under MOICA
        ``generation`` with the real end-entity profile.

        Defaults: validity ``now - 30 days`` for 5 years (card) or 1 year (``form="mobile"``,
        which also adds SDA 2.16.886.1.100.2.2 = "mobile"); CRLDP = the ``10-31`` partition
        and the complete CRL under ``crl_base_url``; OCSP = ``self.ocsp_url`` (``None``: no
        OCSP entry). ``label`` seeds the keys and the default subject serial and card
        number: the same label gives the same keys (default: derived from generation, ID
        number, form, subject serial and name). Certificate serials also depend on every
        other argument, so cards that differ never share a serial.
        """
        _check_generation(generation)
        issuer = self.moica(generation)
        if label is None:
            label = f"card/{generation}/{id_number}/{form}/{subject_serial or ''}/{name}"
        if subject_serial is None:
            subject_serial = _derive_digits(16, self.seed, label, "subject-serial")
        if card_number is None:
            card_number = "TP03" + _derive_digits(12, self.seed, label, "card-number")
        if not_before is None:
            not_before = self.now - timedelta(days=30)
        if not_after is None:
            not_after = not_before + timedelta(days=365 if form == "mobile" else 5 * 365)
        if crl_urls is None:
            crl_urls = self.default_crl_urls(generation)
        resolved_ocsp = self.ocsp_url if isinstance(ocsp_url, EllipsisType) else ocsp_url
        subject = citizen_subject(name, subject_serial)
        # The same label keeps the keys, but two certificates that differ in any field
        # must not share a serial (RFC 5280 §4.1.2.2), or a CRL entry for one would
        # revoke the other: the serial also covers every parameter.
        fingerprint = hashlib.sha256(
            repr(
                (
                    name,
                    subject_serial,
                    id_number,
                    form,
                    not_before.isoformat(),
                    not_after.isoformat(),
                    list(crl_urls),
                    resolved_ocsp,
                    list(policy_oids),
                    email,
                    key_bits,
                )
            ).encode()
        ).hexdigest()[:16]

        def one(usage: str) -> CertifiedKey:
            key = self.key(f"{label}/{usage}", key_bits)
            exts = self.citizen_extensions(
                issuer=issuer,
                public_key=key.public_key(),
                usage=usage,
                id_last4=id_number[-4:],
                form=form,
                crl_urls=crl_urls,
                ocsp_url=resolved_ocsp,
                policy_oids=policy_oids,
                email=email,
            )
            return self.issue_leaf(
                issuer=issuer,
                subject=subject,
                private_key=key,
                extensions=exts,
                not_before=not_before,
                not_after=not_after,
                serial=self.serial(f"card/{label}/{usage}/{fingerprint}"),
                label=f"{label}/{usage}",
            )

        return CitizenCard(
            signing=one("signing"),
            encryption=one("encryption"),
            issuer=issuer,
            generation=generation,
            name=name,
            id_number=id_number,
            subject_serial=subject_serial,
            card_number=card_number,
            pin=pin,
            user_code=user_code,
            root=self.root(generation),
            issued_at=self.now,
        )

    def issue_leaf(
        self,
        *,
        issuer: CertifiedKey,
        subject: x509.Name,
        label: str,
        public_key: Any = None,
        private_key: rsa.RSAPrivateKey | None = None,
        key_bits: int = 2048,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
        hash_algorithm: hashes.HashAlgorithm | None = None,
        issuer_name: x509.Name | None = None,
    ) -> CertifiedKey:
        """Issue any certificate under ``issuer``: the low-level tool for broken variants
        (no keyUsage, keyCertSign, wrong policy, RSA-1024, SHA-1 signature, EKU, expired…).

        Key: ``private_key`` if given, else the deterministic key for ``label`` with
        ``key_bits``. ``public_key`` (any type) overrides the certified key; the returned
        ``private_key`` then does not match the certificate. ``extensions`` is written
        as given, in order (default: AKI and SKI only). ``hash_algorithm`` defaults to
        SHA-256. ``issuer_name`` overrides the issuer DN (default: the issuer's subject).
        Validity defaults to ``now - 30 days`` … ``+ 5 years``.
        """
        key = private_key if private_key is not None else self.key(f"leaf/{label}", key_bits)
        cert_key = public_key if public_key is not None else key.public_key()
        if extensions is None:
            extensions = [
                (_aki_for(issuer.certificate), False),
                (x509.SubjectKeyIdentifier.from_public_key(cert_key), False),
            ]
        if not_before is None:
            not_before = self.now - timedelta(days=30)
        if not_after is None:
            not_after = not_before + timedelta(days=5 * 365)
        cert = self._build(
            subject=subject,
            issuer_name=issuer_name if issuer_name is not None else issuer.certificate.subject,
            public_key=cert_key,
            signing_key=issuer.private_key,
            serial=serial if serial is not None else self.serial(f"leaf/{label}"),
            not_before=not_before,
            not_after=not_after,
            extensions=extensions,
            hash_algorithm=hash_algorithm if hash_algorithm is not None else hashes.SHA256(),
        )
        return CertifiedKey(cert, key)

    def issue_ocsp_responder(
        self,
        *,
        issuer: CertifiedKey,
        label: str = "ocsp",
        with_ocsp_signing_eku: bool = True,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> CertifiedKey:
        """A delegated OCSP responder certificate (RFC 6960 §4.2.2.2) issued by ``issuer``:
        keyUsage critical digitalSignature, EKU id-kp-OCSPSigning (unless
        ``with_ocsp_signing_eku=False``, for the rejection test), id-pkix-ocsp-nocheck.
        Valid ``now - 30 days`` for one year by default."""
        key = self.key(f"ocsp/{label}", 2048)
        subject = x509.Name(
            [
                *MOICA_DN.rdns,
                _attr(NameOID.COMMON_NAME, f"MOICA OCSP Responder ({label})", _UTF8),
            ]
        )
        exts: list[tuple[x509.ExtensionType, bool]] = [
            (_aki_for(issuer.certificate), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (key_usage(digital_signature=True), True),
        ]
        if with_ocsp_signing_eku:
            exts.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False))
        exts.append((x509.OCSPNoCheck(), False))
        if not_before is None:
            not_before = self.now - timedelta(days=30)
        if not_after is None:
            not_after = not_before + timedelta(days=365)
        return self.issue_leaf(
            issuer=issuer,
            subject=subject,
            private_key=key,
            extensions=exts,
            not_before=not_before,
            not_after=not_after,
            label=f"ocsp/{label}/{issuer.certificate.serial_number:x}",
        )

    # ------------------------------------------------------------------ CRLs
    def make_crl(
        self,
        *,
        issuer: CertifiedKey,
        revoked: Sequence[tuple[int, datetime, x509.ReasonFlags | None]] = (),
        number: int = 2026010100,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
        scope_url: str | None = None,
        hash_algorithm: hashes.HashAlgorithm | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    ) -> x509.CertificateRevocationList:
        """A v2 CRL (RFC 5280 §5) from ``issuer``.

        Extensions: AKI (keyid = issuer SKI, §5.2.1), cRLNumber (§5.2.3), and, when
        ``scope_url`` is set, a **critical** IssuingDistributionPoint (§5.2.5) whose
        fullName is that partition URL. Each revoked entry is (serial, revocationDate,
        reason); a reason is written as a CRLReason entry extension (§5.3.1; ``None`` →
        no reason; ``ReasonFlags.remove_from_crl`` is allowed for delta CRLs).
        ``this_update`` defaults to ``now``, ``next_update`` to ``this_update + 1 day``.
        ``signing_key`` signs instead of the issuer's key (bad-signature tests).
        """
        if this_update is None:
            this_update = self.now
        if next_update is None:
            next_update = this_update + _DAY
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.certificate.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(_aki_for(issuer.certificate), critical=False)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        if scope_url is not None:
            builder = builder.add_extension(
                x509.IssuingDistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(scope_url)],
                    relative_name=None,
                    only_contains_user_certs=False,
                    only_contains_ca_certs=False,
                    only_some_reasons=None,
                    indirect_crl=False,
                    only_contains_attribute_certs=False,
                ),
                critical=True,
            )
        for ext, critical in extra_extensions:
            builder = builder.add_extension(ext, critical=critical)
        for serial, revoked_at, reason in revoked:
            entry = (
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            )
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        key = signing_key if signing_key is not None else issuer.private_key
        if isinstance(hash_algorithm, hashes.SHA1 | hashes.MD5):
            # See _build: cryptography will not create SHA-1 signatures.
            return _resign_crl(builder.sign(key, hashes.SHA256()), key, hash_algorithm)
        return builder.sign(key, hash_algorithm or hashes.SHA256())  # type: ignore[arg-type]

    # ------------------------------------------------------------------ clones
    def rekey_clone(
        self,
        real: x509.Certificate,
        *,
        issuer: CertifiedKey | None = None,
        label: str,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> CertifiedKey:
        """A re-keyed clone of a REAL CA certificate.

        Same subject, issuer name, serial, validity and signature hash; every extension
        is copied byte-for-byte (raw extnValue, same criticality and order), **including
        the real SKI and AKI**: they are identifiers, and keeping them lets generation
        detection by key identifier work on the clone. Only the key is new (same size as
        the real one, seeded by ``label``; or ``private_key``, e.g. an existing CA key of
        this PKI, to skip generating another RSA-4096 key). Self-signed when ``issuer`` is
        None, otherwise signed by ``issuer``.
        """
        real_pub = real.public_key()
        if not isinstance(real_pub, rsa.RSAPublicKey):
            raise ValueError("rekey_clone supports RSA certificates only")
        key = private_key or self.key(f"clone/{label}", real_pub.key_size)
        parsed = asn1_x509.Certificate.load(real.public_bytes(serialization.Encoding.DER))
        exts: list[tuple[x509.ExtensionType, bool]] = []
        for ext in parsed["tbs_certificate"]["extensions"]:
            exts.append(
                (
                    x509.UnrecognizedExtension(
                        ObjectIdentifier(ext["extn_id"].dotted), ext["extn_value"].contents
                    ),
                    bool(ext["critical"].native),
                )
            )
        cert = self._build(
            subject=real.subject,
            issuer_name=real.issuer,
            public_key=key.public_key(),
            signing_key=issuer.private_key if issuer is not None else key,
            serial=real.serial_number,
            not_before=real.not_valid_before_utc,
            not_after=real.not_valid_after_utc,
            extensions=exts,
            hash_algorithm=real.signature_hash_algorithm or hashes.SHA256(),
        )
        return CertifiedKey(cert, key)


def _resign_certificate(
    cert: x509.Certificate, key: rsa.RSAPrivateKey, hash_algorithm: hashes.HashAlgorithm
) -> x509.Certificate:
    """Re-sign ``cert`` with PKCS#1 v1.5 and a legacy hash (RFC 5280 §4.1.1.2/§4.1.2.3)."""
    algo_name = {"sha1": "sha1_rsa", "md5": "md5_rsa"}[hash_algorithm.name]
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["signature"] = asn1_algos.SignedDigestAlgorithm({"algorithm": algo_name})
    tbs_der = tbs.dump(force=True)
    signature = key.sign(tbs_der, padding.PKCS1v15(), hash_algorithm)
    resigned = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": algo_name}),
            "signature_value": signature,
        }
    )
    return x509.load_der_x509_certificate(resigned.dump())


def _resign_crl(
    crl: x509.CertificateRevocationList,
    key: rsa.RSAPrivateKey,
    hash_algorithm: hashes.HashAlgorithm,
) -> x509.CertificateRevocationList:
    """Re-sign ``crl`` with PKCS#1 v1.5 and a legacy hash (RFC 5280 §5.1.1.2/§5.1.2.2)."""
    algo_name = {"sha1": "sha1_rsa", "md5": "md5_rsa"}[hash_algorithm.name]
    parsed = asn1_crl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_cert_list"]
    tbs["signature"] = asn1_algos.SignedDigestAlgorithm({"algorithm": algo_name})
    tbs_der = tbs.dump(force=True)
    resigned = asn1_crl.CertificateList(
        {
            "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der),
            "signature_algorithm": asn1_algos.SignedDigestAlgorithm({"algorithm": algo_name}),
            "signature": key.sign(tbs_der, padding.PKCS1v15(), hash_algorithm),
        }
    )
    return x509.load_der_x509_crl(resigned.dump())


def _policies(oids: Sequence[str]) -> x509.CertificatePolicies:
    return x509.CertificatePolicies(
        [x509.PolicyInformation(ObjectIdentifier(o), None) for o in oids]
    )


def _check_generation(generation: str) -> None:
    if generation not in _GENERATIONS:
        raise ValueError(f"generation must be 'G2' or 'G3', not {generation!r}")


@functools.lru_cache(maxsize=8)
def default_pki(seed: str = "moica-auth-test") -> TestPKI:
    """A shared :class:`TestPKI` with default settings (one per process and seed), so
    test modules reuse its CA certificates instead of rebuilding them."""
    return TestPKI(seed=seed)
