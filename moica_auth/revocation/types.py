"""Types shared by every revocation source (CRL, OCSP) and the policy that orders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cryptography import x509

Status = Literal["good", "revoked", "hold"]
SourceName = Literal["crl", "ocsp"]
#: What a check that did not refuse the chain concluded (see :class:`RevocationResult`).
ResultStatus = Literal["good", "unknown"]


@dataclass(frozen=True)
class CertStatus:
    """What one source said about one certificate (RFC 5280 §6.3, RFC 6960 §2.2).

    ``hold`` is a revocation entry with reason certificateHold: the certificate is
    suspended (停用) and may be reactivated by a later CRL that drops the entry.
    """

    status: Status
    source: SourceName
    this_update: datetime | None = None
    next_update: datetime | None = None
    revoked_at: datetime | None = None
    reason: str | None = None  # RFC 5280 CRLReason name, e.g. "key_compromise"
    detail: str = ""  # e.g. the CRL number or responder; never personal data


class RevocationSource(Protocol):
    """One way of learning a certificate's status.

    ``status`` returns a definitive answer, or raises a
    :class:`moica_auth.exceptions.RevocationError` subclass when it cannot give one
    (``RevocationUnavailable``, ``RevocationStale``, ``CrlInvalid``, ``OcspInvalid``).
    It never returns "good" for a certificate it knows nothing about.
    """

    name: SourceName

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus: ...

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        """Does this source hold status information from ``issuer`` that covers
        ``certificate`` (fresh or not), without any network access? Used by
        :attr:`~moica_auth.revocation.policy.RevocationRule.IF_AVAILABLE`."""
        ...


@dataclass(frozen=True)
class RevocationResult:
    """The outcome of a revocation check that did not refuse the chain.

    ``status`` is ``"good"``, or ``"unknown"`` only when the policy's ``soft_fail`` let
    an unanswered check through (``soft_failed`` is then ``True``). ``source``,
    ``this_update`` and ``next_update`` describe the leaf's answer (``None`` when it had
    none; a custom checker may name another source). ``per_certificate`` holds one
    answer per certificate that got one, leaf first. A revoked or suspended certificate
    is never a result: the checker raises instead.
    """

    status: ResultStatus
    source: str | None
    checked_at: datetime
    this_update: datetime | None = None
    next_update: datetime | None = None
    per_certificate: tuple[CertStatus, ...] = ()
    soft_failed: bool = False

    def __post_init__(self) -> None:
        # Held here, once: no consumer has to interpret another status.
        if self.status not in ("good", "unknown"):
            raise ValueError(f"a revocation result is 'good' or 'unknown', not {self.status!r}")
        if (self.status == "unknown") != self.soft_failed:
            raise ValueError("status 'unknown' exists only under soft-fail, and only there")
