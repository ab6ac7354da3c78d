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
  (RFC 3161 §2.3), is valid at genTime, and is one of the configured TSA anchors or
  directly issued by one of them;
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
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from moica_auth.exceptions import TimestampError, TimestampUntrusted

__all__ = ["TimeStampResp", "TimestampToken", "TsaClient", "verify_token"]

MAX_RESPONSE_BYTES: Final = 64 * 1024
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


def _check_tsa_certificate(
    cert: x509.Certificate, anchors: Sequence[x509.Certificate], at: datetime
) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound as exc:
        raise TimestampUntrusted("the TSA certificate has no extendedKeyUsage") from exc
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampUntrusted(
            "the TSA certificate's extendedKeyUsage must be critical and only timeStamping"
        )
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise TimestampUntrusted("the TSA certificate was not valid at genTime")
    for anchor in anchors:
        if anchor == cert:
            return
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        if anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc:
            return
    raise TimestampUntrusted("the TSA certificate is not issued by a configured TSA anchor")


def verify_token(
    token_der: bytes,
    *,
    imprint: bytes | None,
    anchors: Sequence[x509.Certificate],
    nonce: int | None = None,
) -> TimestampToken:
    """Verify a TimeStampToken (RFC 3161 §2.4.2) over the SHA-256 digest ``imprint``
    (``None``: any SHA-256 imprint, returned for the caller to compare).

    Raises :class:`TimestampError` (malformed, wrong imprint or nonce, bad signature) or
    :class:`TimestampUntrusted` (the signer is not a configured TSA).
    """
    if not anchors:
        raise TimestampUntrusted("no TSA anchors are configured")
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
        for choice in signed["certificates"] or []:
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
            if match:
                cert_der = candidate.dump()
                certificate = x509.load_der_x509_certificate(cert_der)
                break
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
    _check_tsa_certificate(certificate, anchors, gen_time)
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
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the TSA URL must be http(s)")
        if not timeout > 0:
            raise ValueError("the TSA timeout must be positive")
        self.url = url
        self.anchors = tuple(anchors)
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
        return verify_token(token_der, imprint=digest, anchors=self.anchors, nonce=nonce)

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
