"""Types shared by every revocation source (CRL, OCSP) and the policy that orders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from cryptography import x509

Status = Literal["good", "revoked", "hold"]
SourceName = Literal["crl", "ocsp"]


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
