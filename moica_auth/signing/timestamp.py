"""RFC 3161 time-stamps: ask a configured TSA, and verify a token (online and offline).

:class:`TsaClient` builds a TimeStampReq (RFC 3161 §2.4.1) with asn1crypto's ``tsp``
module, POSTs it as ``application/timestamp-query`` with a connect/read timeout and a size
bound, and hands the answer to :func:`verify_token`, the same function the offline evidence
verifier uses. cryptography has no CMS verification API, so the token's SignedData
(RFC 5652 §5.4) is checked here by hand, deliberately narrowly:

* exactly one SignerInfo, eContentType id-ct-TSTInfo, the signed attributes contentType =
  id-ct-TSTInfo and messageDigest = hash(eContent) (RFC 5652 §11.1, §11.2);
* an ESS signingCertificate(V2) attribute naming the signer certificate's hash (RFC 3161
  §2.4.2, RFC 5816), so the certificate cannot be swapped;
* an RSA PKCS#1 v1.5 signature with SHA-256/384/512 over the DER of the signed attributes;
* the signer certificate has extendedKeyUsage **critical** and exactly id-kp-timeStamping
  (RFC 3161 §2.3) and is one of the configured TSA anchors, or chains to one through
  intermediate CAs (the token's own certificates, configured or recorded intermediates):
  RFC 5280 path validation by :func:`~moica_auth.validation.chain.validate_chain`
  (``generic`` profile, so ``cryptography.x509.verification`` builds and checks the
  path) at genTime, and again at ``valid_at`` when the caller names a later time (the
  verification time, or the time a later archive time-stamp proves);
* the work is bounded: a token carrying more than :data:`MAX_TOKEN_CERTIFICATES`
  certificates is refused before any is parsed, and path building is capped like a
  login's (:mod:`moica_auth.validation.bounds`);
* the TSTInfo messageImprint equals the expected SHA-256 digest, and the nonce (online)
  equals the one sent.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import requests
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from moica_auth.exceptions import (
    ChainTooComplex,
    MoicaAuthError,
    TimestampError,
    TimestampUntrusted,
    UntrustedIssuer,
)
from moica_auth.validation.chain import ValidationPolicy, validate_chain
from moica_auth.validation.trust import TrustStore

__all__ = [
    "MAX_TOKEN_CERTIFICATES",
    "TSA_MAX_CHAIN_DEPTH",
    "TimeStampResp",
    "TimestampToken",
    "TsaClient",
    "verify_token",
]

MAX_RESPONSE_BYTES: Final = 64 * 1024
#: Certificates a token may carry (the TSA's own and its CAs'), and intermediates one
#: path search may consider in all: the same cap as a login token's carried certificates.
MAX_TOKEN_CERTIFICATES: Final = 8
#: Intermediate CAs between the TSA certificate and a configured TSA anchor.
TSA_MAX_CHAIN_DEPTH: Final = 3
# RFC 5280 only (a TSA certificate is no citizen certificate); EKU is checked apart.
_TSA_POLICY: Final = ValidationPolicy(
    profile="generic",
    max_chain_depth=TSA_MAX_CHAIN_DEPTH,
    max_carried_certificates=MAX_TOKEN_CERTIFICATES,
)
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 §2.4.2 TimeStampResp. asn1crypto's own class makes the token mandatory,
    so a refusal (which has none) could not even be read."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style (it mutates this list)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclass(frozen=True)
class TimestampToken:
    """A verified time-stamp token (the DER ContentInfo) and what it asserts."""

    der: bytes
    gen_time: datetime
    serial_number: int
    policy: str
    tsa_certificate: x509.Certificate
    imprint: bytes
    #: The validated path, TSA certificate first and anchor last (the TSA certificate
    #: alone when it is itself a configured anchor).
    tsa_chain: tuple[x509.Certificate, ...] = ()


def _fail(message: str) -> TimestampError:
    return TimestampError(message)


def _signing_cert_hash_ok(attrs: Any, cert_der: bytes) -> bool:
    for attr in attrs:
        kind = attr["type"].native
        if kind == "signing_certificate_v2":
            for value in attr["values"]:
                for ess in value["certs"]:
                    algo = ess["hash_algorithm"]["algorithm"].native
                    name = "sha256" if algo in (None, "sha256") else algo
                    if name not in _HASHES:
                        continue
                    digest = hashlib.new(name, cert_der).digest()
                    if hmac.compare_digest(ess["cert_hash"].native, digest):
                        return True
        elif kind == "signing_certificate":
            for value in attr["values"]:
                for ess in value["certs"]:
                    digest = hashlib.sha1(cert_der, usedforsecurity=False).digest()
                    if hmac.compare_digest(ess["cert_hash"].native, digest):
                        return True
    return False


def _check_tsa_eku(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TimestampUntrusted("the TSA certificate has no extendedKeyUsage") from exc
    except ValueError as exc:
        raise TimestampUntrusted("the TSA certificate's extensions are malformed") from exc
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampUntrusted(
            "the TSA certificate's extendedKeyUsage must be critical and only timeStamping"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _tsa_path(
    cert: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    candidates: Sequence[x509.Certificate],
    at: datetime,
) -> tuple[x509.Certificate, ...]:
    """The path TSA certificate → … → anchor valid at ``at``; raises TimestampUntrusted."""
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise TimestampUntrusted(f"the TSA certificate was not valid at {at.isoformat()}")
    if cert in anchors:
        # A TSA certificate pinned as an anchor itself (RFC 5280 §6.1.1 (d)).
        return (cert,)
    ca_anchors = [a for a in anchors if _is_ca(a)]
    if not ca_anchors:
        raise TimestampUntrusted("the TSA certificate is not issued by a configured TSA anchor")
    try:
        validated = validate_chain(
            certificate=cert,
            trust=TrustStore.from_certificates(ca_anchors),
            intermediates=candidates,
            policy=_TSA_POLICY,
            at=at,
        )
    except UntrustedIssuer as exc:
        raise TimestampUntrusted(
            "the TSA certificate is not issued by a configured TSA anchor"
        ) from exc
    except ChainTooComplex as exc:
        raise TimestampUntrusted(
            f"the time-stamp path carries more than {MAX_TOKEN_CERTIFICATES} certificates"
        ) from exc
    except MoicaAuthError as exc:
        raise TimestampUntrusted(
            f"the TSA certificate's path to its anchor does not validate at {at.isoformat()} "
            f"({exc.code}: {exc.detail})"
        ) from exc
    return validated.chain


def verify_token(
    token_der: bytes,
    *,
    imprint: bytes | None,
    anchors: Sequence[x509.Certificate],
    nonce: int | None = None,
    intermediates: Sequence[x509.Certificate] = (),
    valid_at: datetime | None = None,
) -> TimestampToken:
    """Verify a TimeStampToken (RFC 3161 §2.4.2) over the SHA-256 digest ``imprint``
    (``None``: any SHA-256 imprint, returned for the caller to compare).

    The TSA certificate's path to one of ``anchors`` is built from the token's own
    certificates and ``intermediates`` (untrusted candidates, at most
    :data:`MAX_TOKEN_CERTIFICATES` in all) and validated at genTime and, when given, at
    ``valid_at`` too (not before genTime).

    Raises :class:`TimestampError` (malformed, wrong imprint or nonce, bad signature) or
    :class:`TimestampUntrusted` (the signer is not a configured TSA, or its path does
    not validate).
    """
    if not anchors:
        raise TimestampUntrusted("no TSA anchors are configured")
    if valid_at is not None and (valid_at.tzinfo is None or valid_at.utcoffset() is None):
        raise ValueError("valid_at must be timezone-aware")
    try:
        info = cms.ContentInfo.load(token_der, strict=True)
        if info["content_type"].native != "signed_data":
            raise _fail("the time-stamp token is not a SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise _fail("the time-stamp token does not carry a TSTInfo")
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der, strict=True)
        signers = signed["signer_infos"]
        if len(signers) != 1:
            raise _fail("the time-stamp token must have exactly one signer")
        signer = signers[0]
        digest_name = signer["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise _fail(f"time-stamp digest {digest_name!r} is not allowed")
        attrs = signer["signed_attrs"]
        if not len(attrs):
            raise _fail("the time-stamp token has no signed attributes")
        found: dict[str, Any] = {}
        for attr in attrs:
            found.setdefault(attr["type"].native, attr["values"][0].native)
        if found.get("content_type") != "tst_info":
            raise _fail("the time-stamp contentType attribute is not id-ct-TSTInfo")
        expected = hashlib.new(digest_name, tst_der).digest()
        if not hmac.compare_digest(found.get("message_digest") or b"", expected):
            raise _fail("the time-stamp messageDigest does not match its TSTInfo")
        sid = signer["sid"]
        certificate: x509.Certificate | None = None
        cert_der = b""
        carried = list(signed["certificates"] or [])
        # Bounded before any carried certificate is parsed (as a login token's are).
        if len(carried) > MAX_TOKEN_CERTIFICATES:
            raise TimestampUntrusted(
                f"the time-stamp token carries {len(carried)} certificates, more than "
                f"the {MAX_TOKEN_CERTIFICATES} accepted"
            )
        others: list[x509.Certificate] = []
        for choice in carried:
            if choice.name != "certificate":
                continue
            candidate: asn1_x509.Certificate = choice.chosen
            if sid.name == "issuer_and_serial_number":
                match = (
                    candidate.issuer == sid.chosen["issuer"]
                    and candidate.serial_number == sid.chosen["serial_number"].native
                )
            else:
                match = candidate.key_identifier == sid.chosen.native
            if match and certificate is None:
                cert_der = candidate.dump()
                certificate = x509.load_der_x509_certificate(cert_der)
            else:
                others.append(x509.load_der_x509_certificate(candidate.dump()))
        if certificate is None:
            raise _fail("the time-stamp token does not carry its signer certificate")
        if not _signing_cert_hash_ok(attrs, cert_der):
            raise _fail("the time-stamp signingCertificate attribute does not name its signer")
        signed_attrs_der = attrs.untag().dump(force=False)
        signed_attrs_der = b"\x31" + signed_attrs_der[1:]
        signature = signer["signature"].native
        gen_time = tst["gen_time"].native
        imprint_alg = tst["message_imprint"]["hash_algorithm"]["algorithm"].native
        got_imprint = tst["message_imprint"]["hashed_message"].native
        tst_nonce = tst["nonce"].native
        serial = tst["serial_number"].native
        policy = tst["policy"].dotted
    except TimestampError:
        raise
    except Exception as exc:
        # asn1crypto parses lazily: whatever a hostile token makes it raise (ValueError,
        # TypeError, KeyError, OverflowError, …) means "not a token", never a crash.
        raise _fail(f"the time-stamp token is malformed ({type(exc).__name__})") from exc
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _fail("only RSA time-stamp signatures are accepted")
    try:
        key.verify(signature, signed_attrs_der, padding.PKCS1v15(), _HASHES[digest_name]())
    except InvalidSignature as exc:
        raise _fail("the time-stamp token's signature does not verify") from exc
    if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
        raise _fail("the time-stamp genTime is not a UTC time")
    gen_time = gen_time.astimezone(UTC)
    _check_tsa_eku(certificate)
    pool = [*others, *(c for c in intermediates if c not in others)]
    if len(pool) > MAX_TOKEN_CERTIFICATES:
        raise TimestampUntrusted(
            f"the time-stamp path carries more than {MAX_TOKEN_CERTIFICATES} certificates"
        )
    path = _tsa_path(certificate, anchors, pool, gen_time)
    if valid_at is not None:
        later = valid_at.astimezone(UTC)
        if later < gen_time:
            raise _fail("the time-stamp is dated after the time it is checked at")
        path = _tsa_path(certificate, anchors, pool, later)
    if imprint_alg != "sha256" or not isinstance(got_imprint, bytes) or len(got_imprint) != 32:
        raise _fail("the time-stamp imprint is not a SHA-256 digest")
    # ``imprint=None``: the caller compares the imprint itself (to name what differs).
    if imprint is not None and not hmac.compare_digest(got_imprint, imprint):
        raise _fail("the time-stamp is over another imprint")
    if nonce is not None and tst_nonce != nonce:
        raise _fail("the time-stamp nonce does not match the request")
    return TimestampToken(
        der=token_der,
        gen_time=gen_time,
        serial_number=int(serial),
        policy=str(policy),
        tsa_certificate=certificate,
        imprint=got_imprint,
        tsa_chain=path,
    )


class TsaClient:
    """Ask one RFC 3161 TSA over HTTP (RFC 3161 §3.4) for a token over a SHA-256 digest."""

    def __init__(
        self,
        *,
        url: str,
        anchors: Sequence[x509.Certificate],
        timeout: float = 5.0,
        policy: str | None = None,
        session: requests.Session | None = None,
        intermediates: Sequence[x509.Certificate] = (),
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the TSA URL must be http(s)")
        if not timeout > 0:
            raise ValueError("the TSA timeout must be positive")
        self.url = url
        self.anchors = tuple(anchors)
        #: CA certificates between the TSA certificate and an anchor, for TSAs whose
        #: tokens do not carry them.
        self.intermediates = tuple(intermediates)
        self.timeout = timeout
        self.policy = policy
        self._session = session or requests.Session()

    def timestamp(self, digest: bytes) -> TimestampToken:
        """A verified token over ``digest`` (32 bytes, SHA-256); raises TimestampError."""
        if len(digest) != 32:
            raise ValueError("the imprint must be a SHA-256 digest")
        nonce = secrets.randbits(63)
        fields: dict[str, Any] = {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
        if self.policy:
            fields["req_policy"] = self.policy
        body = tsp.TimeStampReq(fields).dump()
        raw = self._post(body)
        try:
            response = TimeStampResp.load(raw, strict=True)
            status = response["status"]["status"].native
        except (ValueError, TypeError, KeyError) as exc:
            raise _fail(f"the TSA answer is malformed ({type(exc).__name__})") from exc
        if status not in ("granted", "granted_with_mods"):
            raise _fail(f"the TSA refused the request ({status})")
        token = response["time_stamp_token"]
        if isinstance(token, core.Void) or token.native is None:
            raise _fail("the TSA granted no token")
        token_der = token.dump()
        return verify_token(
            token_der,
            imprint=digest,
            anchors=self.anchors,
            nonce=nonce,
            intermediates=self.intermediates,
        )

    def _post(self, body: bytes) -> bytes:
        try:
            with self._session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/timestamp-query"},
                timeout=(self.timeout, self.timeout),
                stream=True,
                allow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise _fail(f"the TSA answered HTTP {response.status_code}")
                raw = b""
                for chunk in response.iter_content(16384):
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise _fail("the TSA answer is larger than the bound")
                return raw
        except requests.RequestException as exc:
            raise _fail(f"the TSA is unreachable ({type(exc).__name__})") from exc
