"""OCSP client: ask the CA's responder whether a certificate is revoked (RFC 6960).

:class:`OcspSource` implements :class:`moica_auth.revocation.types.RevocationSource` under
the name ``"ocsp"``. One call to :meth:`OcspSource.status`:

1. finds the responder URL in the certificate's AuthorityInformationAccess (RFC 5280
   §4.2.2.1), unless ``responder_url`` or ``responder_urls`` overrides it;
2. answers from the cache when a verified answer for (issuer key hash, serial) is still
   fresh; otherwise takes a single-flight lock so that at most one upstream request per
   certificate is in flight across every process sharing the store;
3. builds a request with a SHA-1 CertID (RFC 6960 §4.1.1; SHA-1 is what deployed
   responders index by, and it is only a lookup key here) and a 32-byte nonce (RFC 8954),
   POSTs it (RFC 6960 App. A.1) with connect/read timeouts and a size limit;
4. verifies the response (RFC 6960 §3.2, §4.2.2.2) and returns ``good``/``revoked``/``hold``.

Errors, so that the revocation policy can fall back to the CRL:

* :class:`~moica_auth.exceptions.RevocationUnavailable` — no answer: no responder URL,
  connection refused, timeout, HTTP status other than 200, truncated body,
  ``tryLater``/``internalError``, the status ``unknown`` (fail closed: the responder does not
  vouch for the certificate), or another worker's in-flight lookup that produced nothing.
* :class:`~moica_auth.exceptions.OcspInvalid` — an answer that must not be trusted: body
  larger than the limit or not DER, another non-successful responseStatus, an unknown
  critical extension (RFC 6960 §4.4), no SingleResponse for our CertID, bad signature, a
  signer that is neither the CA nor a delegated responder it issued with
  id-kp-OCSPSigning, an out-of-date or future-dated response, a missing or wrong nonce.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    OCSPExtensionOID,
    SignatureAlgorithmOID,
)

from moica_auth._x509 import verify_with_key
from moica_auth.certificate import EXTENSION_ERRORS
from moica_auth.exceptions import (
    ConfigurationError,
    MoicaAuthError,
    OcspInvalid,
    RevocationUnavailable,
)
from moica_auth.revocation.http_fetch import post_bounded
from moica_auth.revocation.types import CertStatus, SourceName
from moica_auth.stores import KeyValueStore

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "OcspExchange",
    "OcspSource",
    "PreparedRequest",
    "build_request",
    "responder_url_of",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
NONCE_LENGTH = 32  # RFC 8954 §2.1: 1..32 octets; use the maximum
_ALLOWED_SIGNATURE_HASHES = frozenset({"sha256", "sha384", "sha512"})
_CACHE_VERSION = "v1"
# Extensions this client understands, so that they may be marked critical (RFC 6960 §4.4).
_UNDERSTOOD_EXTENSIONS = frozenset({OCSPExtensionOID.NONCE.dotted_string})


@dataclass(frozen=True)
class PreparedRequest:
    """A request as sent: its DER, nonce and CertID fields (RFC 6960 §4.1.1)."""

    der: bytes
    nonce: bytes | None
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


def responder_url_of(certificate: x509.Certificate) -> str | None:
    """The first http(s) OCSP accessLocation in the AIA extension (RFC 5280 §4.2.2.1)."""
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        if desc.access_method != AuthorityInformationAccessOID.OCSP:
            continue
        location = desc.access_location
        if isinstance(
            location, x509.UniformResourceIdentifier
        ) and location.value.lower().startswith(("http://", "https://")):
            return location.value
    return None


def build_request(
    *, certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None
) -> ocsp.OCSPRequest:
    """An OCSPRequest for one certificate (RFC 6960 §4.1.1) with an optional nonce (RFC 8954).

    The CertID uses SHA-1, as RFC 5019 §2.1.1 profiles it and responders index it.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate,
        issuer,
        hashes.SHA1(),  # noqa: S303 - CertID lookup key, not a signature
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build()


def _key_hash(public_key: CertificatePublicKeyTypes) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING (RFC 6960 §4.1.1 issuerKeyHash, §4.2.1 byKey)."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def _verify_signature(public_key: CertificatePublicKeyTypes, response: ocsp.OCSPResponse) -> None:
    """Verify the BasicOCSPResponse signature over tbsResponseData (RFC 6960 §4.2.1)."""
    try:
        hash_algorithm = response.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise OcspInvalid("unsupported OCSP signature algorithm") from exc
    data, signature = response.tbs_response_bytes, response.signature
    eddsa = isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    if not eddsa and (
        hash_algorithm is None or hash_algorithm.name not in _ALLOWED_SIGNATURE_HASHES
    ):
        name = hash_algorithm.name if hash_algorithm else "none"
        raise OcspInvalid(f"OCSP response signed with a weak or missing hash ({name})")
    if not eddsa and not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise OcspInvalid("unsupported OCSP signer key type")
    params: object = None
    if isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm is not None:
        params = (
            padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.AUTO)
            if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
            else padding.PKCS1v15()
        )
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
        params = ec.ECDSA(hash_algorithm)
    if not verify_with_key(
        public_key, signature, data, params=params, hash_algorithm=hash_algorithm
    ):
        raise InvalidSignature("the OCSP response signature does not verify")


def _refuse_unknown_critical_extensions(body: bytes) -> None:
    """RFC 6960 §4.4: an unrecognised extension is ignored *unless* it is critical; a
    critical one we do not understand makes the response unusable (RFC 5280 §4.2 rule).

    Checks responseExtensions and every SingleResponse's singleExtensions; cryptography
    exposes the latter only for one-response messages, so this reads the DER with
    asn1crypto. The only extension we process is the nonce (RFC 8954).
    """
    try:
        basic = asn1_ocsp.OCSPResponse.load(body)["response_bytes"]["response"].parsed
        tbs = basic["tbs_response_data"]
        lists = [tbs["response_extensions"]]
        lists.extend(single["single_extensions"] for single in tbs["responses"])
        critical = [
            extension["extn_id"].dotted
            for extensions in lists
            if not isinstance(extensions, asn1_core.Void)
            for extension in extensions
            if extension["critical"].native
            and extension["extn_id"].dotted not in _UNDERSTOOD_EXTENSIONS
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise OcspInvalid("OCSP response extensions are malformed") from exc
    if critical:
        raise OcspInvalid(f"OCSP response has unknown critical extension(s) {critical}")


def _responder_matches(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    """Does the ResponderID (RFC 6960 §4.2.2.3) name this certificate?

    A certificate carried in the response whose key cryptography cannot read
    (``UnsupportedAlgorithm``, not a ValueError) names nobody: it came off the network.
    """
    if response.responder_key_hash is not None:
        try:
            key = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm):
            return False
        return response.responder_key_hash == _key_hash(key)
    return response.responder_name == certificate.subject


@dataclass(frozen=True)
class OcspExchange:
    """A verified OCSP answer with the raw response it came in and the nonce sent."""

    status: CertStatus
    response: bytes
    nonce: bytes | None


class OcspSource:
    """Certificate status by OCSP (RFC 6960), verified, cached and single-flighted.

    :param store: a :class:`moica_auth.stores.KeyValueStore` used as cache and lock; ``None``
        disables both.
    :param timeout: seconds for connecting and for reading (each).
    :param responder_url: when set, every request goes there (a local proxy or test
        responder), ignoring the AIA.
    :param responder_urls: rewrites an AIA URL to another URL (exact match).
    :param nonce_optout: responder URLs (after rewriting) to which no nonce is sent, for
        responders that serve pre-produced responses (RFC 5019). For every other URL the
        nonce is sent and must be echoed (RFC 8954).
    :param clock_skew: tolerance when comparing thisUpdate/nextUpdate/producedAt to ``at``.
    :param max_age: the longest a response is cached, and the oldest thisUpdate accepted
        from a response that has no nextUpdate (RFC 6960 §4.2.2.1), fresh or cached.
    :param max_response_bytes: larger bodies are refused (``ocsp_invalid``).
    :param lock_wait: how long a caller waits for another caller's in-flight lookup of the
        same certificate before failing closed with ``revocation_unavailable``.
    """

    name: SourceName = "ocsp"

    def __init__(
        self,
        *,
        store: KeyValueStore | None = None,
        timeout: float = 3.0,
        responder_url: str | None = None,
        responder_urls: Mapping[str, str] | None = None,
        nonce_optout: frozenset[str] = frozenset(),
        clock_skew: timedelta = timedelta(minutes=5),
        max_age: timedelta = timedelta(hours=1),
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        lock_wait: float | None = None,
        poll_interval: float = 0.05,
        cache_prefix: str = "ocsp",
        session: requests.Session | None = None,
    ) -> None:
        if timeout <= 0 or max_response_bytes <= 0 or max_age <= timedelta(0):
            raise ConfigurationError(
                "OCSP timeout, max_age and max_response_bytes must be positive"
            )
        self.store = store
        self.timeout = timeout
        self.responder_url = responder_url
        self.responder_urls = dict(responder_urls or {})
        self.nonce_optout = frozenset(nonce_optout)
        self.clock_skew = clock_skew
        self.max_age = max_age
        self.max_response_bytes = max_response_bytes
        # A waiter must outlast one full upstream exchange (connect + read) of the leader.
        self.lock_wait = lock_wait if lock_wait is not None else 2 * timeout + 1.0
        self.poll_interval = poll_interval
        self.cache_prefix = cache_prefix
        self._session = session

    # --- public ---------------------------------------------------------------------

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        """Whether a responder is known for ``certificate`` (declared or configured)."""
        return self.url_for(certificate) is not None

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        """The certificate's status at ``at`` according to its OCSP responder.

        Raises ``RevocationUnavailable`` or ``OcspInvalid`` (see the module docstring);
        never returns "good" without a verified, current response.
        """
        url = self.url_for(certificate)
        if url is None:
            raise RevocationUnavailable("certificate names no OCSP responder")
        key = self._cache_key(certificate, issuer)
        cached = self._cache_get(key, at)
        if cached is not None:
            return cached
        lock_key = f"{key}:lock"
        if not self._lock(lock_key):
            return self._wait_for_other(key, lock_key, at)
        try:
            result = self.fetch(certificate=certificate, issuer=issuer, at=at, url=url)
            self._cache_put(key, result, at)
            return result
        finally:
            self._unlock(lock_key)

    def url_for(self, certificate: x509.Certificate) -> str | None:
        """The responder URL used for this certificate, after overrides."""
        if self.responder_url:
            return self.responder_url
        aia = responder_url_of(certificate)
        if aia is None:
            return None
        return self.responder_urls.get(aia, aia)

    def fetch(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime, url: str
    ) -> CertStatus:
        """One uncached request/verify round trip (RFC 6960 §4.1, §4.2, App. A.1)."""
        return self.exchange(certificate=certificate, issuer=issuer, at=at, url=url).status

    def exchange(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime, url: str
    ) -> OcspExchange:
        """:meth:`fetch`, keeping the raw response and the nonce sent: what signing
        evidence records so that an auditor can verify the answer again offline."""
        nonce = None if url in self.nonce_optout else secrets.token_bytes(NONCE_LENGTH)
        request = build_request(certificate=certificate, issuer=issuer, nonce=nonce)
        prepared = PreparedRequest(
            der=request.public_bytes(serialization.Encoding.DER),
            nonce=nonce,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
        )
        body = self._post(url, prepared.der)
        status = self.verify_response(body, request=prepared, issuer=issuer, at=at, url=url)
        return OcspExchange(status=status, response=body, nonce=nonce)

    # --- verification ---------------------------------------------------------------

    def verify_response(
        self,
        body: bytes,
        *,
        request: PreparedRequest,
        issuer: x509.Certificate,
        at: datetime,
        url: str = "",
    ) -> CertStatus:
        """Check an OCSPResponse against the request it answers (RFC 6960 §3.2).

        Raises only :class:`~moica_auth.exceptions.MoicaAuthError` subclasses: whatever
        cryptography raises while reading the (lazily parsed, attacker-reachable) response
        is :class:`OcspInvalid`, i.e. "no answer", so the policy can fall back to the CRL.
        """
        try:
            return self._verify_response(body, request=request, issuer=issuer, at=at, url=url)
        except MoicaAuthError:
            raise
        except Exception as exc:
            # ValueError (bad DER deep inside), UnsupportedAlgorithm (an unknown CertID
            # hash or signature OID), DuplicateExtension, … : all "not an answer".
            raise OcspInvalid(f"OCSP response is malformed ({type(exc).__name__})") from exc

    def _verify_response(
        self,
        body: bytes,
        *,
        request: PreparedRequest,
        issuer: x509.Certificate,
        at: datetime,
        url: str,
    ) -> CertStatus:
        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError as exc:
            raise OcspInvalid("OCSP response is not DER") from exc
        rs = response.response_status
        if rs in (ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.INTERNAL_ERROR):
            raise RevocationUnavailable(f"OCSP responder answered {rs.name}")
        if rs != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise OcspInvalid(f"OCSP responseStatus is {rs.name}")

        _refuse_unknown_critical_extensions(body)
        single = self._matching_single(response, request)
        self._verify_signer(response, issuer=issuer, at=at)
        self._verify_times(response, single, at=at)
        self._verify_nonce(response, request.nonce)

        detail = f"responder {url}" if url else "ocsp"
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.GOOD:
            return CertStatus(
                status="good",
                source="ocsp",
                this_update=single.this_update_utc,
                next_update=single.next_update_utc,
                detail=detail,
            )
        if status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            return CertStatus(
                status="hold" if reason == x509.ReasonFlags.certificate_hold else "revoked",
                source="ocsp",
                this_update=single.this_update_utc,
                next_update=single.next_update_utc,
                revoked_at=single.revocation_time_utc,
                reason=reason.name if reason is not None else None,
                detail=detail,
            )
        # RFC 6960 §2.2: "unknown" means the responder does not know the certificate; it
        # is no evidence of good standing, so there is no answer from this source.
        raise RevocationUnavailable("OCSP responder answered unknown")

    def _matching_single(
        self, response: ocsp.OCSPResponse, request: PreparedRequest
    ) -> ocsp.OCSPSingleResponse:
        """The SingleResponse whose CertID equals the request's (RFC 6960 §3.2 item 1)."""
        for single in response.responses:
            if (
                isinstance(single.hash_algorithm, hashes.SHA1)
                and single.issuer_name_hash == request.issuer_name_hash
                and single.issuer_key_hash == request.issuer_key_hash
                and single.serial_number == request.serial_number
            ):
                return single
        raise OcspInvalid("OCSP response does not answer for the requested CertID")

    def _verify_signer(
        self, response: ocsp.OCSPResponse, *, issuer: x509.Certificate, at: datetime
    ) -> None:
        """RFC 6960 §4.2.2.2: signed by the CA itself, or by a delegated responder that the
        CA issued directly and that carries id-kp-OCSPSigning, valid at ``at``.
        """
        # MOICA G2 and G3 share a subject DN, so a byName ResponderID can name either;
        # the signature check below is what decides.
        if _responder_matches(response, issuer):
            try:
                _verify_signature(issuer.public_key(), response)
                return
            except InvalidSignature:
                pass  # maybe a delegated responder with the CA's name; try those
        for candidate in response.certificates:
            if not _responder_matches(response, candidate):
                continue
            try:
                _verify_signature(candidate.public_key(), response)
            except (InvalidSignature, ValueError, UnsupportedAlgorithm):
                continue
            self._check_delegate(candidate, issuer=issuer, at=at)
            return
        raise OcspInvalid("OCSP response is not signed by the CA or an authorised responder")

    def _check_delegate(
        self, responder: x509.Certificate, *, issuer: x509.Certificate, at: datetime
    ) -> None:
        try:
            responder.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise OcspInvalid("delegated OCSP responder is not issued by the CA") from exc
        try:
            # The certificate comes off the network: its extensions may not parse
            # (DuplicateExtension is not a ValueError), which is no answer, not a crash.
            _ = responder.extensions
        except EXTENSION_ERRORS as exc:
            raise OcspInvalid("delegated OCSP responder has invalid extensions") from exc
        try:
            eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise OcspInvalid("delegated OCSP responder lacks id-kp-OCSPSigning") from exc
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise OcspInvalid("delegated OCSP responder lacks id-kp-OCSPSigning")
        try:
            ku = responder.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            ku = None
        if ku is not None and not ku.digital_signature:
            raise OcspInvalid("delegated OCSP responder key may not sign")
        if not (responder.not_valid_before_utc <= at <= responder.not_valid_after_utc):
            raise OcspInvalid("delegated OCSP responder certificate is not valid now")

    def _verify_times(
        self, response: ocsp.OCSPResponse, single: ocsp.OCSPSingleResponse, *, at: datetime
    ) -> None:
        """RFC 6960 §3.2 items 4–5 and §4.2.2.1, with ``clock_skew`` tolerance."""
        skew = self.clock_skew
        this_update = single.this_update_utc
        next_update = single.next_update_utc
        produced_at = response.produced_at_utc
        if this_update > at + skew:
            raise OcspInvalid("OCSP thisUpdate is in the future")
        if next_update is not None:
            if next_update < at - skew:
                raise OcspInvalid("OCSP response is stale (nextUpdate has passed)")
            if next_update < this_update:
                raise OcspInvalid("OCSP nextUpdate precedes thisUpdate")
        elif this_update < at - self.max_age:
            raise OcspInvalid("OCSP response without nextUpdate is older than max_age")
        if produced_at > at + skew:
            raise OcspInvalid("OCSP producedAt is in the future")
        if produced_at < this_update - skew:
            raise OcspInvalid("OCSP producedAt precedes thisUpdate")

    @staticmethod
    def _verify_nonce(response: ocsp.OCSPResponse, sent: bytes | None) -> None:
        """RFC 8954 §2.1: the response must echo the request's nonce exactly."""
        if sent is None:
            return
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound as exc:
            raise OcspInvalid("OCSP response does not echo the nonce") from exc
        if not secrets.compare_digest(echoed, sent):
            raise OcspInvalid("OCSP response nonce does not match the request")

    # --- transport ------------------------------------------------------------------

    def _post(self, url: str, der: bytes) -> bytes:
        """POST the request (RFC 6960 App. A.1) and read at most ``max_response_bytes``.

        ``timeout`` bounds the connect and each read; the whole exchange, slow headers
        included, is cut off at 2 × ``timeout`` (:func:`post_bounded`), so a lock holder
        never outlives its lock.
        """
        return post_bounded(
            url,
            data=der,
            headers={
                "Content-Type": "application/ocsp-request",
                "Accept": "application/ocsp-response",
            },
            timeout=self.timeout,
            total_timeout=2 * self.timeout,
            max_bytes=self.max_response_bytes,
            too_large=OcspInvalid,
            session=self._session,
        )

    # --- cache and single flight ----------------------------------------------------

    def _cache_key(self, certificate: x509.Certificate, issuer: x509.Certificate) -> str:
        key_hash = _key_hash(issuer.public_key()).hex()
        return f"{self.cache_prefix}:{_CACHE_VERSION}:{key_hash}:{certificate.serial_number:x}"

    def _cache_get(self, key: str, at: datetime) -> CertStatus | None:
        if self.store is None:
            return None
        try:
            raw = self.store.get(key)
        except MoicaAuthError as exc:
            # The cache only saves work: without it we ask the responder.
            logger.warning("OCSP cache unavailable, querying the responder: %s", exc.code)
            return None
        if raw is None:
            return None
        try:
            return _decode(raw, at=at, skew=self.clock_skew, max_age=self.max_age)
        except (ValueError, KeyError, TypeError):
            return None

    def _cache_put(self, key: str, result: CertStatus, at: datetime) -> None:
        if self.store is None:
            return
        until = at + self.max_age
        if result.next_update is not None:
            until = min(until, result.next_update)
        elif result.this_update is not None:
            # Without nextUpdate, max_age bounds the age of the information itself
            # (_verify_times): a cached copy must not outlive what a fetch would accept.
            until = min(until, result.this_update + self.max_age)
        ttl = (until - at).total_seconds()
        if ttl < 1.0:
            return
        try:
            self.store.set(key, _encode(result, fetched_at=at), ttl=ttl)
        except MoicaAuthError as exc:
            logger.warning("OCSP cache unavailable, answer not cached: %s", exc.code)

    def _lock(self, lock_key: str) -> bool:
        if self.store is None:
            return True
        # The lock outlives a stuck leader by at most one exchange, then expires.
        ttl = self.lock_wait + 1.0
        try:
            return self.store.add(lock_key, b"1", ttl=ttl)
        except MoicaAuthError as exc:
            logger.warning("OCSP lock unavailable, querying the responder: %s", exc.code)
            return True

    def _unlock(self, lock_key: str) -> None:
        if self.store is None:
            return
        try:
            self.store.delete(lock_key)
        except MoicaAuthError as exc:
            logger.warning("OCSP lock could not be released: %s", exc.code)

    def _wait_for_other(self, key: str, lock_key: str, at: datetime) -> CertStatus:
        """Another caller is asking the responder for this certificate: wait for its answer.

        The leader writes the cache before releasing the lock, so a released lock with no
        cached answer means the leader got no answer; fail closed at once.
        """
        assert self.store is not None  # noqa: S101 - only called when a store exists
        deadline = time.monotonic() + self.lock_wait
        while time.monotonic() < deadline:
            time.sleep(self.poll_interval)
            try:
                still_locked = self.store.get(lock_key) is not None
            except MoicaAuthError:
                still_locked = True
            cached = self._cache_get(key, at)
            if cached is not None:
                return cached
            if not still_locked:
                raise RevocationUnavailable("a concurrent OCSP lookup got no answer")
        raise RevocationUnavailable("timed out waiting for a concurrent OCSP lookup")


def _encode(result: CertStatus, *, fetched_at: datetime) -> bytes:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return json.dumps(
        {
            "status": result.status,
            "this_update": iso(result.this_update),
            "next_update": iso(result.next_update),
            "revoked_at": iso(result.revoked_at),
            "reason": result.reason,
            "detail": result.detail,
            "fetched_at": fetched_at.isoformat(),
        }
    ).encode()


def _decode(raw: bytes, *, at: datetime, skew: timedelta, max_age: timedelta) -> CertStatus | None:
    """A cached answer, or ``None`` when it is no longer current for ``at``."""
    data = json.loads(raw)

    def dt(name: str) -> datetime | None:
        value = data.get(name)
        return datetime.fromisoformat(value).astimezone(UTC) if value else None

    fetched_at = dt("fetched_at")
    next_update = dt("next_update")
    this_update = dt("this_update")
    # The store's TTL runs on the wall clock; ``at`` may differ, so check against it too.
    if fetched_at is None or not (fetched_at - skew <= at <= fetched_at + max_age):
        return None
    if next_update is not None and next_update < at - skew:
        return None
    if next_update is None and (this_update is None or this_update < at - max_age):
        # The same bound a fresh response without nextUpdate must meet (_verify_times).
        return None
    if this_update is not None and this_update > at + skew:
        return None
    status = data["status"]
    if status not in ("good", "revoked", "hold"):
        return None
    return CertStatus(
        status=status,
        source="ocsp",
        this_update=this_update,
        next_update=next_update,
        revoked_at=dt("revoked_at"),
        reason=data.get("reason"),
        detail=f"{data.get('detail', '')} (cached)".strip(),
    )
