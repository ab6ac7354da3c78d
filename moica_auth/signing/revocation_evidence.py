"""Keep the revocation evidence a signing decision actually used.

The login checker answers "good" and forgets why. For a signature the portal must keep
the why: the raw OCSP response (which an auditor can re-verify offline), or the CRL that
was consulted (issuer, number, thisUpdate and SHA-256). :func:`recording_checker` wraps
the configured :class:`~moica_auth.revocation.policy.RevocationChecker` so that each of its
sources reports what it used into a :class:`RevocationRecorder`, through public API only:

* an :class:`~moica_auth.revocation.ocsp.OcspSource` is asked afresh (a cached answer has
  no response bytes to keep): the request is built with
  :func:`~moica_auth.revocation.ocsp.build_request`, posted with the source's own timeout
  and size bound, and verified by the source's own
  :meth:`~moica_auth.revocation.ocsp.OcspSource.verify_response`: no check is duplicated;
* any other source (the CRL source) answers as usual; its :class:`CertStatus` is recorded,
  and the CRL's SHA-256 is looked up in the source's index store (``all_info()``) when it
  has one.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from moica_auth.exceptions import RevocationUnavailable
from moica_auth.revocation.ocsp import OcspSource
from moica_auth.revocation.policy import RevocationChecker
from moica_auth.revocation.types import CertStatus, SourceName

__all__ = ["RevocationRecorder", "recording_checker"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class RevocationRecorder:
    """Collects one JSON-ready entry per certificate status a source gave."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        *,
        certificate: x509.Certificate,
        answer: CertStatus,
        extra: dict[str, Any],
    ) -> None:
        self.entries.append(
            {
                "certificate_sha256": certificate.fingerprint(hashes.SHA256()).hex(),
                "serial": format(certificate.serial_number, "x"),
                "source": answer.source,
                "status": answer.status,
                "this_update": _iso(answer.this_update),
                "next_update": _iso(answer.next_update),
                **extra,
            }
        )


class _RecordingOcsp:
    """An OCSP source that keeps the raw response (RFC 6960 §4.2.1) it verified."""

    name: SourceName = "ocsp"

    def __init__(self, inner: OcspSource, recorder: RevocationRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        url = self.inner.url_for(certificate)
        if url is None:
            raise RevocationUnavailable("certificate names no OCSP responder")
        # The source's own round trip (its bounded POST, nonce and checks), keeping the
        # raw response an auditor re-verifies.
        exchange = self.inner.exchange(certificate=certificate, issuer=issuer, at=at, url=url)
        self.recorder.add(
            certificate=certificate,
            answer=exchange.status,
            extra={
                "ocsp_response": base64.b64encode(exchange.response).decode("ascii"),
                "ocsp_nonce": (
                    base64.b64encode(exchange.nonce).decode("ascii") if exchange.nonce else None
                ),
            },
        )
        return exchange.status


class _RecordingSource:
    """Any other source: keep what it answered, and the CRL's digest when known."""

    def __init__(self, inner: Any, recorder: RevocationRecorder) -> None:
        self.inner = inner
        self.name: SourceName = inner.name
        self.recorder = recorder

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        answer: CertStatus = self.inner.status(certificate=certificate, issuer=issuer, at=at)
        extra: dict[str, Any] = {"detail": answer.detail}
        if answer.source == "crl":
            extra["crl"] = self._crl_facts(issuer, answer)
        self.recorder.add(certificate=certificate, answer=answer, extra=extra)
        return answer

    def _crl_facts(self, issuer: x509.Certificate, answer: CertStatus) -> dict[str, Any]:
        match = re.fullmatch(r"CRL (\d+)", answer.detail or "")
        facts: dict[str, Any] = {
            "issuer": issuer.subject.rfc4514_string(),
            "number": int(match.group(1)) if match else None,
            "this_update": _iso(answer.this_update),
            "sha256": None,
            "url": None,
        }
        store = getattr(self.inner, "store", None)
        all_info = getattr(store, "all_info", None)
        if facts["number"] is None or not callable(all_info):
            return facts
        # The index keys a CRL by the SHA-1 of the issuer's key (RFC 5280 §4.2.1.2 (1)).
        key_id = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest.hex()
        for info in all_info():
            if (
                getattr(info, "number", None) == facts["number"]
                and str(getattr(info, "issuer_key_id", "")).lower() == key_id
            ):
                facts["sha256"] = getattr(info, "sha256", None) or None
                facts["url"] = getattr(info, "url", None)
                break
        return facts


def recording_checker(checker: Any, recorder: RevocationRecorder) -> Any:
    """A checker with the same policy whose sources report into ``recorder``.

    ``None`` stays ``None`` (revocation off is the deployment's explicit choice). A
    checker that is not a :class:`RevocationChecker` is returned unchanged: its result is
    still recorded by the caller, just without raw evidence.
    """
    if not isinstance(checker, RevocationChecker):
        return checker
    sources: dict[str, Any] = {}
    for name, source in checker.sources.items():
        if isinstance(source, OcspSource):
            sources[name] = _RecordingOcsp(source, recorder)
        else:
            sources[name] = _RecordingSource(source, recorder)
    return RevocationChecker(policy=checker.policy, sources=sources)
