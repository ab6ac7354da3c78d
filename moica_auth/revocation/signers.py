"""Separate CRL signers (RFC 5280 §6.3.3 (f)): certificates that sign a CA's CRLs
with a key other than the CA's own.

An administrator offers them as ``--intermediate`` (CLI) or in
``MOICA_AUTH_INTERMEDIATES``: a certificate that is not a CA but whose keyUsage asserts
cRLSign is a *candidate CRL issuer*, never a path link. Before a CRL it signed is used,
the candidate is itself

1. path-validated (:func:`~moica_auth.validation.chain.validate_chain`, the deployment's
   :class:`~moica_auth.validation.chain.ValidationPolicy` with the ``generic`` profile:
   RFC 5280 only) to the anchors of the same
   :class:`~moica_auth.validation.trust.TrustStore`, and
2. revocation-checked with the same :class:`~moica_auth.revocation.policy.RevocationChecker`
   (its leaf rule, normally ``REQUIRED``).

:func:`~moica_auth.revocation.crl.parse_crl` then accepts its CRL only for the CA with
the same name issued by the same parent key. A candidate whose status depends on a CRL
it signed itself is refused (a cycle proves nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from cryptography import x509

from moica_auth._x509 import asserts_crl_sign, is_ca
from moica_auth.exceptions import ConfigurationError, MoicaAuthError
from moica_auth.validation.chain import ValidatedChain, ValidationPolicy, validate_chain
from moica_auth.validation.trust import TrustStore, fingerprint

__all__ = ["CrlSignerCandidates", "split_crl_signers"]

logger = logging.getLogger(__name__)


class _ChainChecker(Protocol):
    def check(self, chain: ValidatedChain, *, at: datetime | None = None) -> object: ...


def split_crl_signers(
    certificates: Iterable[x509.Certificate],
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Split configured "intermediates" into (CA certificates, candidate CRL signers).

    A certificate that is neither a CA nor asserts cRLSign raises ``ConfigurationError``:
    it can serve neither purpose.
    """
    cas: list[x509.Certificate] = []
    signers: list[x509.Certificate] = []
    for cert in certificates:
        try:
            ca, crl_sign = is_ca(cert), asserts_crl_sign(cert)
        except ValueError as exc:
            raise ConfigurationError("an intermediate certificate has invalid extensions") from exc
        if ca:
            cas.append(cert)
        elif crl_sign:
            signers.append(cert)
        else:
            raise ConfigurationError(
                f"intermediate {cert.subject.rfc4514_string()} is neither a CA nor a CRL "
                "signer (keyUsage cRLSign)"
            )
    return cas, signers


class CrlSignerCandidates:
    """Candidate CRL signers, validated on demand (see the module docstring)."""

    def __init__(
        self,
        *,
        candidates: Sequence[x509.Certificate],
        trust: TrustStore,
        policy: ValidationPolicy,
    ) -> None:
        self.candidates = tuple(candidates)
        self.trust = trust
        # RFC 5280 path validation only: a CRL signer is no citizen certificate, so the
        # moica profile's leaf checks (policy OID, signing key usage) do not apply.
        self.policy = dataclasses.replace(policy, profile="generic")
        # Set once the checker that uses these signers exists (it checks them in turn).
        self.checker: _ChainChecker | None = None
        self._busy: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.candidates)

    def named(self, crl: x509.CertificateRevocationList) -> list[x509.Certificate]:
        """Candidates whose subject is the CRL's issuer name (not yet validated)."""
        return [c for c in self.candidates if c.subject == crl.issuer]

    def validated_for(
        self, crl: x509.CertificateRevocationList, *, at: datetime
    ) -> list[x509.Certificate]:
        """The candidates named by ``crl`` that are valid and not revoked at ``at``."""
        return [c for c in self.named(crl) if self._usable(c, at)]

    def _usable(self, candidate: x509.Certificate, at: datetime) -> bool:
        fp = fingerprint(candidate)
        if fp in self._busy or self.checker is None:
            return False
        self._busy.add(fp)
        try:
            chain = validate_chain(
                certificate=candidate, trust=self.trust, policy=self.policy, at=at
            )
            self.checker.check(chain, at=at)
        except MoicaAuthError as exc:
            logger.info("CRL signer candidate refused: %s", exc.code)
            return False
        finally:
            self._busy.discard(fp)
        return True
