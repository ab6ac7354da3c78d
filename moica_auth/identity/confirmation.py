"""Client for the MOICA ID confirmation service (身分確認服務).

MOICA lets approved relying parties ask whether a full ID number belongs to the holder of
a certificate: a signed XML request carries the RP's ClientID (its certificate's
thumbprint), a nonce and up to 1000 records of (16-character subject serialNumber, full
ID number, optional Gregorian birth date ``YYYYMMDD``); each record gets a result code.

The agency's XML schema is given to approved RPs only, so the element names here are
**our rendering** (namespace :data:`NAMESPACE`, documented in ``docs/personal-data.md``);
adjust them to the agency's specification once approved. What does not change:

* both directions are signed with an enveloped XML Signature (XML-DSig 1.1 §6.6.4,
  ``Reference URI=""``), exclusive canonicalisation (``xml-exc-c14n``), RSA or ECDSA with
  SHA-256; signing and verification use ``signxml``;
* a response is trusted only when its signature verifies with the pinned service
  certificate, the signature is a direct child of the root, the signed root is the
  expected element, the nonce is echoed, and every record is answered exactly once.
  Anything else (HTTP error, server error code 1001–1022, unknown code, bad signature)
  raises :class:`PersonalDataUnverified`: the check fails closed.

Requests contain full ID numbers: this module never logs a request or a response, and
records print masked.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from moica_auth.certificate import load_certificate
from moica_auth.exceptions import (
    ConfigurationError,
    MalformedCertificate,
    MalformedRequest,
    PersonalDataUnverified,
)
from moica_auth.identity.id_number import IdNumber

__all__ = [
    "MAX_RECORDS",
    "NAMESPACE",
    "SERVER_ERROR_CODES",
    "ConfirmationClient",
    "ConfirmationRecord",
    "ConfirmationResult",
    "ConfirmationStatus",
    "SigningKey",
    "client_from_config",
    "client_id_for",
    "sign_document",
    "verify_document",
]

logger = logging.getLogger(__name__)


class _NoCanonicalForms(logging.Filter):
    """Drops signxml's DEBUG records: they print every canonicalised document, which
    here means full ID numbers and birth dates."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


# signxml logs through this one logger; a logger's own filters see every record it creates.
logging.getLogger("signxml.processor").addFilter(_NoCanonicalForms())

#: XML namespace of our rendering of the messages.
NAMESPACE = "urn:moica-auth:id-confirmation:v1"
VERSION = "1"
REQUEST_TAG = f"{{{NAMESPACE}}}IdConfirmationRequest"
RESPONSE_TAG = f"{{{NAMESPACE}}}IdConfirmationResponse"
#: The service answers at most this many records per request.
MAX_RECORDS = 1000
#: Server-level error codes (the request as a whole was refused).
SERVER_ERROR_CODES = range(1001, 1023)
#: Responses larger than this are refused unread (1000 records need ~60 kB).
MAX_RESPONSE_BYTES = 2 * 1024 * 1024

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_CARD_SERIAL = re.compile(r"[0-9A-Za-z]{16}")
_ACCEPTED_SIGNATURE_METHODS = frozenset(
    {
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
    }
)
_ACCEPTED_DIGESTS = frozenset(
    {DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
)
_LOCAL_HOSTS = frozenset({"localhost"})


class ConfirmationStatus(IntEnum):
    """Per-record result codes of the service."""

    MATCH = 0  # the ID number (and birth date, if sent) belongs to that certificate
    NO_SUCH_PAIR = 1  # the certificate and the ID number (or birth date) don't go together
    NO_CERTIFICATE = 2  # this ID number has no certificate
    NOT_ACTIVATED = 3
    EXPIRED = 4
    REVOKED = 5


@dataclass(frozen=True, repr=False)
class ConfirmationRecord:
    """One question to the service: does ``id_number`` hold certificate ``card_serial``?

    ``card_serial`` is the certificate's subject serialNumber (X.520 2.5.4.5), 16 ASCII
    alphanumerics, sent as is. Invalid input raises :class:`MalformedRequest`.
    """

    card_serial: str
    id_number: IdNumber
    birth_date: date | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.card_serial, str) or not _CARD_SERIAL.fullmatch(self.card_serial):
            raise MalformedRequest("card serial must be 16 alphanumerics")
        if not isinstance(self.id_number, IdNumber):
            raise MalformedRequest("id_number must be a parsed IdNumber")
        if self.birth_date is not None and (
            isinstance(self.birth_date, datetime)
            or not isinstance(self.birth_date, date)
            or self.birth_date.year < 1000  # YYYYMMDD needs four digits
        ):
            raise MalformedRequest("birth_date must be a date with a four-digit year")

    def __repr__(self) -> str:
        birth = "<set>" if self.birth_date is not None else None
        return (
            f"ConfirmationRecord(card_serial={self.card_serial!r}, "
            f"id_number={self.id_number!r}, birth_date={birth})"
        )


@dataclass(frozen=True)
class ConfirmationResult:
    """The service's answer for one record."""

    record: ConfirmationRecord
    status: ConfirmationStatus

    @property
    def matched(self) -> bool:
        return self.status is ConfirmationStatus.MATCH


def client_id_for(certificate: x509.Certificate) -> str:
    """The ClientID of a relying party: its certificate's thumbprint.

    That is the SHA-1 fingerprint of the DER certificate in upper-case hex, as Windows
    shows it (an identifier, not a security primitive: the service authenticates the
    request by its signature). Pass ``client_id=`` to :class:`ConfirmationClient` if the
    agency specifies another form.
    """
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


def _signature_method(key: SigningKey) -> SignatureMethod:
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256
    raise ConfigurationError("the signing key must be an RSA or EC private key")


def sign_document(root: etree._Element, *, key: SigningKey, cert: x509.Certificate) -> bytes:
    """Sign ``root`` with an enveloped XML Signature and serialise it.

    XML-DSig 1.1: ``Reference URI=""`` over the whole document (§4.4.3.2) with the
    enveloped-signature transform (§6.6.4) and exclusive c14n (xml-exc-c14n §3), SHA-256
    digest, RSA-SHA256 or ECDSA-SHA256 over SignedInfo; the certificate goes in
    ``KeyInfo/X509Data`` for the peer's convenience (the peer verifies against its own
    pinned copy, never against it).
    """
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=_signature_method(key),
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, cert=[cert])
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def verify_document(
    body: bytes, *, cert: x509.Certificate, expected_tag: str, at: datetime | None = None
) -> etree._Element:
    """Verify an enveloped signature made by ``cert`` and return **only what was signed**.

    The signature must be a direct child of the root with exactly one reference, use an
    accepted algorithm (no SHA-1), be made by the key of ``cert`` (which must be valid
    at ``at``), and the signed element must be ``expected_tag``. DTDs and entities are
    refused (signxml's parser). Raises :class:`PersonalDataUnverified` otherwise.
    """
    config = SignatureConfiguration(
        location="./",
        expect_references=1,
        signature_methods=_ACCEPTED_SIGNATURE_METHODS,
        digest_algorithms=_ACCEPTED_DIGESTS,
        verification_time=at,
    )
    try:
        result = XMLVerifier().verify(body, x509_cert=cert, expect_config=config)
    except (SignXMLException, etree.LxmlError, ValueError) as exc:
        raise PersonalDataUnverified("the XML signature did not verify") from exc
    if isinstance(result, list) or result.signed_xml is None:
        raise PersonalDataUnverified("the XML signature does not cover one document")
    signed = result.signed_xml
    if signed.tag != expected_tag:
        raise PersonalDataUnverified("the signed element is not the expected message")
    return signed


def _child_text(parent: etree._Element, name: str) -> str:
    found = parent.findall(f"{{{NAMESPACE}}}{name}")
    if len(found) != 1 or found[0].text is None:
        raise PersonalDataUnverified(f"response needs exactly one {name}")
    return found[0].text.strip()


def _element(parent: etree._Element | None, name: str, text: str | None = None) -> etree._Element:
    tag = f"{{{NAMESPACE}}}{name}"
    element = (
        # A None key declares the default namespace; lxml-stubs do not allow it.
        etree.Element(tag, nsmap={None: NAMESPACE})  # type: ignore[dict-item]
        if parent is None
        else etree.SubElement(parent, tag)
    )
    if text is not None:
        element.text = text
    return element


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http":
        # Plain HTTP only to this machine (the test server); the real service is HTTPS.
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host in _LOCAL_HOSTS
        if local:
            return url
    raise ConfigurationError("the confirmation service URL must be https://")


class ConfirmationClient:
    """Ask the MOICA ID confirmation service about (card serial, ID number) pairs.

    ``client_cert``/``client_key`` are the RP's registered certificate and key (they sign
    requests; ClientID is :func:`client_id_for` the certificate unless ``client_id`` is
    given). ``service_cert`` is the service's signing certificate, pinned: responses
    signed by anything else are refused. ``timeout`` is seconds for connect and read.
    """

    def __init__(
        self,
        url: str,
        *,
        client_cert: x509.Certificate,
        client_key: SigningKey,
        service_cert: x509.Certificate,
        timeout: float = 10.0,
        client_id: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.url = _check_url(url)
        _signature_method(client_key)
        der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ours = client_key.public_key().public_bytes(der, spki)
        if ours != client_cert.public_key().public_bytes(der, spki):
            raise ConfigurationError("the client key does not belong to the client certificate")
        self.client_cert = client_cert
        self.service_cert = service_cert
        self.timeout = timeout
        self.client_id = client_id or client_id_for(client_cert)
        self._client_key = client_key
        self._session = session

    def __repr__(self) -> str:
        return f"ConfirmationClient(url={self.url!r}, client_id={self.client_id!r})"

    def build_request(self, records: Sequence[ConfirmationRecord], *, nonce: str) -> bytes:
        """The signed request document for ``records`` (public for tests and debugging).

        It contains full ID numbers: never log it.
        """
        _check_records(records)
        root = _element(None, "IdConfirmationRequest")
        root.set("Version", VERSION)
        _element(root, "ClientID", self.client_id)
        _element(root, "Nonce", nonce)
        container = _element(root, "Records")
        container.set("Count", str(len(records)))
        for seq, record in enumerate(records, start=1):
            item = _element(container, "Record")
            item.set("Seq", str(seq))
            _element(item, "SerialNumber", record.card_serial)
            _element(item, "IDNumber", record.id_number.value)
            if record.birth_date is not None:
                _element(item, "BirthDate", record.birth_date.strftime("%Y%m%d"))
        return sign_document(root, key=self._client_key, cert=self.client_cert)

    def confirm(
        self, records: Sequence[ConfirmationRecord], *, at: datetime | None = None
    ) -> list[ConfirmationResult]:
        """Send ``records`` (1 to :data:`MAX_RECORDS`) and return one result per record, in order.

        ``at`` is the time the service certificate must be valid at (``None``: now).
        Raises :class:`MalformedRequest` for bad input and :class:`PersonalDataUnverified`
        when no trustworthy answer was obtained.
        """
        _check_records(records)
        nonce = base64.b64encode(secrets.token_bytes(24)).decode("ascii")
        body = self.build_request(records, nonce=nonce)
        answer = self._post(body)
        results = self.parse_response(answer, nonce=nonce, records=records, at=at)
        logger.info(
            "moica id confirmation: %d record(s), %d matched",
            len(results),
            sum(result.matched for result in results),
        )
        return results

    def _post(self, body: bytes) -> bytes:
        post = self._session.post if self._session is not None else requests.post
        try:
            response = post(
                self.url,
                data=body,
                headers={"Content-Type": "application/xml; charset=utf-8"},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise PersonalDataUnverified("the confirmation service is unreachable") from exc
        with response:
            if response.status_code != requests.codes.ok:
                raise PersonalDataUnverified(
                    f"the confirmation service answered HTTP {response.status_code}",
                    http_status=response.status_code,
                )
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(chunk_size=65536):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise PersonalDataUnverified("the confirmation response is too large")
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise PersonalDataUnverified("the confirmation response was cut off") from exc
        return b"".join(chunks)

    def parse_response(
        self,
        body: bytes,
        *,
        nonce: str,
        records: Sequence[ConfirmationRecord],
        at: datetime | None = None,
    ) -> list[ConfirmationResult]:
        """Check a response to the request with ``nonce`` and map it to results.

        Order of checks: signature by the pinned service certificate (only the signed
        content is read after that), version, server result code (1001–1022 →
        :class:`PersonalDataUnverified` with ``server_code``), nonce echo (constant-time),
        then exactly one known per-record code for each ``Seq`` 1…n.
        """
        root = verify_document(body, cert=self.service_cert, expected_tag=RESPONSE_TAG, at=at)
        if root.get("Version") != VERSION:
            raise PersonalDataUnverified("unsupported response version")
        # A signed refusal is reported whatever its nonce: replaying one can only make a
        # check fail, never pass, and a service may not echo a request it could not read.
        server_code = _int(_child_text(root, "ResultCode"))
        if server_code in SERVER_ERROR_CODES:
            raise PersonalDataUnverified(
                f"the confirmation service refused the request ({server_code})",
                server_code=server_code,
            )
        if server_code != 0:
            raise PersonalDataUnverified(f"unknown server result code {server_code}")
        if not hmac.compare_digest(_child_text(root, "Nonce").encode(), nonce.encode()):
            raise PersonalDataUnverified("the response does not echo the request nonce")
        containers = root.findall(f"{{{NAMESPACE}}}Results")
        if len(containers) != 1:
            raise PersonalDataUnverified("response needs exactly one Results")
        codes: dict[int, ConfirmationStatus] = {}
        for item in containers[0].findall(f"{{{NAMESPACE}}}Result"):
            seq = _int(item.get("Seq"))
            if seq in codes or not 1 <= seq <= len(records):
                raise PersonalDataUnverified("a result does not answer a record exactly once")
            try:
                codes[seq] = ConfirmationStatus(_int(_child_text(item, "Code")))
            except ValueError as exc:
                raise PersonalDataUnverified("unknown per-record result code") from exc
        if len(codes) != len(records):
            raise PersonalDataUnverified("the response does not answer every record")
        return [
            ConfirmationResult(record=record, status=codes[seq])
            for seq, record in enumerate(records, start=1)
        ]

    def confirm_one(
        self, record: ConfirmationRecord, *, at: datetime | None = None
    ) -> ConfirmationResult:
        """:meth:`confirm` for a single record."""
        return self.confirm([record], at=at)[0]


def _int(text: str | None) -> int:
    if text is None or not re.fullmatch(r"[0-9]{1,6}", text.strip()):
        raise PersonalDataUnverified("a number in the response is malformed")
    return int(text)


def _check_records(records: Sequence[ConfirmationRecord]) -> None:
    if isinstance(records, ConfirmationRecord) or not isinstance(records, Sequence):
        raise MalformedRequest("records must be a sequence of ConfirmationRecord")
    if not 1 <= len(records) <= MAX_RECORDS:
        raise MalformedRequest(f"between 1 and {MAX_RECORDS} records per request")
    if not all(isinstance(record, ConfirmationRecord) for record in records):
        raise MalformedRequest("records must be ConfirmationRecord objects")


_CONFIG_KEYS = frozenset(
    {"url", "client_cert", "client_key", "client_key_password", "service_cert", "timeout",
     "client_id"}
)  # fmt: skip


def _read_material(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, Path) or (isinstance(value, str) and "-----BEGIN" not in value):
        try:
            return Path(value).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the {what} file") from exc
    if isinstance(value, str):
        return value.encode("ascii", "replace")
    raise ConfigurationError(f"the {what} must be a path, PEM text or bytes")


def _load_cert_setting(value: object, what: str) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    try:
        return load_certificate(_read_material(value, what))
    except MalformedCertificate as exc:
        raise ConfigurationError(f"the {what} is not a certificate") from exc


def _load_key_setting(value: object, password: object) -> SigningKey:
    if isinstance(value, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return value
    if password is not None and not isinstance(password, bytes | str):
        raise ConfigurationError("client_key_password must be bytes or text")
    secret = password.encode() if isinstance(password, str) else password
    data = _read_material(value, "client key")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=secret)
        else:
            key = serialization.load_der_private_key(data, password=secret)
    except (ValueError, TypeError) as exc:
        # Deliberately vague: the message must not echo key material or the password.
        raise ConfigurationError("the client key cannot be loaded") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError("the client key must be an RSA or EC private key")
    return key


def client_from_config(config: Mapping[str, object]) -> ConfirmationClient:
    """Build a :class:`ConfirmationClient` from a settings mapping.

    Keys: ``url`` (https), ``client_cert`` and ``service_cert`` (a path, PEM/DER bytes,
    PEM text or an ``x509.Certificate``), ``client_key`` (a path, PEM/DER bytes or PEM
    text of a PKCS#8/traditional private key, or a key object), optionally
    ``client_key_password``, ``timeout`` (seconds, default 10) and ``client_id``.
    Anything missing, unknown or unreadable raises :class:`ConfigurationError`.
    """
    if not isinstance(config, Mapping):
        raise ConfigurationError("the confirmation service settings must be a mapping")
    if unknown := set(config) - _CONFIG_KEYS:
        raise ConfigurationError(f"unknown confirmation service settings {sorted(unknown)}")
    if missing := {"url", "client_cert", "client_key", "service_cert"} - set(config):
        raise ConfigurationError(f"missing confirmation service settings {sorted(missing)}")
    url, timeout, client_id = config["url"], config.get("timeout", 10.0), config.get("client_id")
    if not isinstance(url, str):
        raise ConfigurationError("the confirmation service url must be text")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigurationError("the confirmation service timeout must be positive seconds")
    if client_id is not None and not isinstance(client_id, str):
        raise ConfigurationError("client_id must be text")
    return ConfirmationClient(
        url,
        client_cert=_load_cert_setting(config["client_cert"], "client certificate"),
        client_key=_load_key_setting(config["client_key"], config.get("client_key_password")),
        service_cert=_load_cert_setting(config["service_cert"], "service certificate"),
        timeout=float(timeout),
        client_id=client_id,
    )
