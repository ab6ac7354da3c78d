"""Revocation policy: which certificates of a chain are checked, and in which source order.

:class:`RevocationChecker` asks the configured sources (``"ocsp"``, ``"crl"``) in the order
the :class:`RevocationPolicy` names. Which certificates must have a status is a named
:class:`RevocationRule`, one for the leaf and one for the intermediates (``chain[1:-1]``):

* :attr:`~RevocationRule.REQUIRED`: always checked; no answer fails closed;
* :attr:`~RevocationRule.IF_DECLARED`: checked when the certificate declares where its
  status is published — a cRLDistributionPoints extension (RFC 5280 §4.2.1.13) or an OCSP
  accessLocation in its AuthorityInformationAccess (RFC 5280 §4.2.2.1);
* :attr:`~RevocationRule.IF_AVAILABLE`: checked when it declares one, *or* when a source
  already holds status information from its issuer that covers it (a CRL of the issuer's
  key in the index, or given on the command line). Only a certificate about which nothing
  at all is known is skipped: its CA chose to publish nothing, and requiring a status would
  lock every citizen out;
* :attr:`~RevocationRule.NEVER` (intermediates only): never checked. Logged as a WARNING
  when the policy is built; for test PKIs without a CRL for their CAs.

The defaults are ``leaf=REQUIRED``, ``intermediates=IF_AVAILABLE``. A checked certificate is
refused when revoked or on hold, and fails closed when no source answers, whichever rule
selected it. The trust anchor is never checked: it is trusted by configuration (RFC 5280
§6.1.1 (d)). The real MOICA G2/G3 CA certificates declare GRCA's CRL, so they are always
checked.

For each certificate the first definitive answer wins (RFC 5280 §6.3 leaves the source
to the relying party): ``revoked`` raises :class:`~moica_auth.exceptions.CertificateRevoked`,
``hold`` raises :class:`~moica_auth.exceptions.CertificateSuspended`. A source that cannot
answer (any :class:`~moica_auth.exceptions.RevocationError`, or the store being down) is
no answer and the next source is tried. When no source answers the check fails closed —
:class:`~moica_auth.exceptions.RevocationStale` if a source had only out-of-date data,
:class:`~moica_auth.exceptions.RevocationUnavailable` otherwise — unless the policy opts in
to ``soft_fail``, which is logged as a WARNING when the policy is built and on every login
that it lets through with status ``"unknown"``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509

from moica_auth.exceptions import (
    CertificateRevoked,
    CertificateSuspended,
    ConfigurationError,
    MoicaAuthError,
    RevocationError,
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.ocsp import responder_url_of
from moica_auth.revocation.types import CertStatus, RevocationResult, RevocationSource
from moica_auth.validation.chain import ValidatedChain

__all__ = [
    "KNOWN_SOURCES",
    "RevocationChecker",
    "RevocationPolicy",
    "RevocationResult",
    "RevocationRule",
    "declares_status",
]

logger = logging.getLogger(__name__)

KNOWN_SOURCES: frozenset[str] = frozenset({"ocsp", "crl"})


class RevocationRule(enum.StrEnum):
    """When a certificate of the chain must have an established revocation status."""

    REQUIRED = "required"
    IF_DECLARED = "if_declared"
    IF_AVAILABLE = "if_available"
    NEVER = "never"


@dataclass(frozen=True)
class RevocationPolicy:
    """How revocation is checked; validated when built.

    :param order: the sources to ask, first to last: ``("ocsp", "crl")``, ``("crl", "ocsp")``,
        ``("ocsp",)`` or ``("crl",)``.
    :param soft_fail: when no source answers, let the login through with status
        ``"unknown"`` instead of refusing it. Off by default; turning it on is logged as a
        WARNING here and on every login it lets through.
    :param timeout: the OCSP request timeout, in seconds, that :mod:`moica_auth.services`
        builds the OCSP source with (``OcspSource(timeout=policy.timeout)``). CRL
        downloads have their own settings: ``login_fetch_deadline`` on the login path,
        ``connect_timeout`` / ``read_timeout`` / ``total_timeout`` for the refresher.
    :param crl_grace: how long past its nextUpdate a CRL may still be used (RFC 5280 §5.1.2.5
        leaves this to the relying party); applied by the CRL source built for this policy.
    :param leaf: the :class:`RevocationRule` for the end-entity certificate.
    :param intermediates: the :class:`RevocationRule` for every certificate between the
        leaf and the anchor (see the module docstring).
    """

    order: tuple[str, ...] = ("ocsp", "crl")
    soft_fail: bool = False
    timeout: float = 3.0
    crl_grace: timedelta = field(default_factory=lambda: timedelta(hours=0))
    leaf: RevocationRule = RevocationRule.REQUIRED
    intermediates: RevocationRule = RevocationRule.IF_AVAILABLE

    def __post_init__(self) -> None:
        order = tuple(self.order)
        if not order:
            raise ConfigurationError("revocation order is empty; use ('ocsp', 'crl')")
        unknown = [name for name in order if name not in KNOWN_SOURCES]
        if unknown:
            raise ConfigurationError(
                f"unknown revocation source(s) {unknown}; expected a subset of "
                f"{sorted(KNOWN_SOURCES)}"
            )
        if len(set(order)) != len(order):
            raise ConfigurationError(f"revocation order {order} names a source twice")
        if not self.timeout > 0:
            raise ConfigurationError("revocation timeout must be a positive number of seconds")
        if self.crl_grace < timedelta(0):
            raise ConfigurationError("crl_grace must not be negative")
        object.__setattr__(self, "order", order)
        for role in ("leaf", "intermediates"):
            value = getattr(self, role)
            try:
                object.__setattr__(self, role, RevocationRule(value))
            except ValueError as exc:
                raise ConfigurationError(
                    f"revocation rule for {role} must be one of "
                    f"{[r.value for r in RevocationRule]}, not {value!r}"
                ) from exc
        if self.leaf is RevocationRule.NEVER:
            raise ConfigurationError(
                "the leaf's revocation rule cannot be 'never'; to check no revocation at "
                "all, configure no revocation checker (MOICA_AUTH_REVOCATION = None)"
            )
        if self.intermediates is RevocationRule.NEVER:
            logger.warning(
                "Revocation of intermediate CA certificates is NOT checked "
                "(intermediates='never'): a revoked CA would still be accepted."
            )
        if self.soft_fail:
            logger.warning(
                "Revocation soft-fail is ENABLED: logins will be accepted when no revocation "
                "source answers. Revoked certificates may then log in."
            )


def declares_status(certificate: x509.Certificate) -> bool:
    """Does this certificate declare where its status is published: a CRLDP
    (RFC 5280 §4.2.1.13) or an OCSP responder in its AIA (RFC 5280 §4.2.2.1)?"""
    try:
        certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        return True
    except x509.ExtensionNotFound:
        pass
    return responder_url_of(certificate) is not None


class RevocationChecker:
    """Applies a :class:`RevocationPolicy` with named :class:`RevocationSource` objects."""

    def __init__(
        self, *, policy: RevocationPolicy, sources: Mapping[str, RevocationSource]
    ) -> None:
        missing = [name for name in policy.order if name not in sources]
        if missing:
            raise ConfigurationError(
                f"revocation order {policy.order} names source(s) {missing} that are not configured"
            )
        for key in policy.order:
            if sources[key].name != key:
                raise ConfigurationError(
                    f"revocation source registered as {key!r} calls itself {sources[key].name!r}"
                )
        self.policy = policy
        self.sources = {name: sources[name] for name in policy.order}

    @property
    def soft_fail(self) -> bool:
        """Whether this checker may return status ``"unknown"`` (the policy's opt-in)."""
        return self.policy.soft_fail

    def check(self, chain: ValidatedChain, *, at: datetime | None = None) -> RevocationResult:
        """Check the chain's revocation status at ``at`` (aware; default now; a naive
        datetime raises ``ValueError``).

        Raises ``CertificateRevoked`` (``data``: ``reason``, ``revoked_at``, ``source``,
        ``certificate``), ``CertificateSuspended`` (same data), ``RevocationStale`` or
        ``RevocationUnavailable`` (``data["sources"]``: each source's error code).
        """
        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            # astimezone() would read a naive time in the server's local zone.
            raise ValueError("revocation check time must be timezone-aware (UTC)")
        when = (at or datetime.now(UTC)).astimezone(UTC)
        certs = chain.chain
        if len(certs) < 2:
            raise RevocationUnavailable("the chain has no issuer to check the leaf against")
        pairs: list[tuple[str, x509.Certificate, x509.Certificate]] = []
        for index in range(len(certs) - 1):
            role = "leaf" if index == 0 else "intermediate"
            rule = self.policy.leaf if index == 0 else self.policy.intermediates
            if self._selected(rule, certs[index], certs[index + 1], when):
                pairs.append((role, certs[index], certs[index + 1]))

        answers: list[CertStatus] = []
        leaf_answer: CertStatus | None = None
        unanswered = False
        for role, certificate, issuer in pairs:
            answer = self._one(role, certificate, issuer, when)
            if answer is None:
                unanswered = True
                continue
            answers.append(answer)
            if role == "leaf":
                leaf_answer = answer

        return RevocationResult(
            status="unknown" if unanswered else "good",
            soft_failed=unanswered,
            source=leaf_answer.source if leaf_answer else None,
            checked_at=when,
            this_update=leaf_answer.this_update if leaf_answer else None,
            next_update=leaf_answer.next_update if leaf_answer else None,
            per_certificate=tuple(answers),
        )

    def _selected(
        self,
        rule: RevocationRule,
        certificate: x509.Certificate,
        issuer: x509.Certificate,
        at: datetime,
    ) -> bool:
        """Does ``rule`` require a status for ``certificate``?"""
        if rule is RevocationRule.NEVER:
            return False
        if rule is RevocationRule.REQUIRED or declares_status(certificate):
            return True
        if rule is RevocationRule.IF_DECLARED:
            return False
        for name, source in self.sources.items():
            try:
                if source.knows_issuer(certificate=certificate, issuer=issuer, at=at):
                    return True
            except MoicaAuthError as exc:
                # Cannot tell whether something is known (the store is down): check it,
                # which then fails closed unless another source answers.
                logger.info("revocation source %s cannot tell what it knows: %s", name, exc.code)
                return True
        return False

    def _one(
        self, role: str, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus | None:
        """The first definitive answer for one certificate; ``None`` only under soft-fail."""
        failures: dict[str, MoicaAuthError] = {}
        for name, source in self.sources.items():
            try:
                answer = source.status(certificate=certificate, issuer=issuer, at=at)
            except (CertificateRevoked, CertificateSuspended, ConfigurationError):
                # A source that refuses outright has answered; a misconfigured one must
                # be fixed, not silently skipped.
                raise
            except MoicaAuthError as exc:
                # RevocationError, or the store behind a source being down: no answer
                # from this source, so try the next one.
                failures[name] = exc
                logger.info("revocation source %s gave no answer: %s", name, exc.code)
                continue
            if answer.status == "revoked":
                raise CertificateRevoked(
                    f"{role} certificate revoked ({name})",
                    reason=answer.reason,
                    revoked_at=answer.revoked_at,
                    source=name,
                    certificate=role,
                )
            if answer.status == "hold":
                raise CertificateSuspended(
                    f"{role} certificate on hold ({name})",
                    reason=answer.reason or "certificate_hold",
                    revoked_at=answer.revoked_at,
                    source=name,
                    certificate=role,
                )
            if answer.status == "good":
                return answer
            # A source breaking its contract is no answer, never "good".
            failures[name] = RevocationUnavailable(f"unexpected status {answer.status!r}")

        codes = {name: exc.code for name, exc in failures.items()}
        if self.policy.soft_fail:
            logger.warning(
                "Revocation SOFT-FAIL: no source answered for the %s certificate (%s); "
                "accepting the login with status 'unknown'",
                role,
                ", ".join(f"{k}={v}" for k, v in codes.items()),
            )
            return None
        last = next(reversed(failures.values()), None)
        detail = f"no revocation source answered for the {role} certificate"
        if last is not None and last.detail:
            detail = f"{detail}; last: {last.detail}"
        error: RevocationError
        if any(isinstance(exc, RevocationStale) for exc in failures.values()):
            error = RevocationStale(detail, sources=codes, certificate=role)
        else:
            error = RevocationUnavailable(detail, sources=codes, certificate=role)
        raise error from last
