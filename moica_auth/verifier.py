"""The whole login token: signature, then certificate path, then revocation.

:class:`LoginVerifier` is the one place that strings the core steps together in the order
of the architecture (signed token → certificate profile → chain → revocation):

1. :func:`moica_auth.signature.verify_signature`: the card signed exactly the issued
   challenge (RFC 5652 §5.4 for PKCS#7, RFC 8017 §8.2 for PKCS#1), with an allowed hash,
   the expected nonce and card number;
2. :func:`moica_auth.validation.chain.validate_chain`: the signer certificate is a MOICA
   signing certificate that chains to a trust anchor at ``at`` (RFC 5280 §6);
3. the configured revocation checker, if any (RFC 5280 §6.3 CRL / RFC 6960 OCSP), on
   exactly the chain step 2 validated.

Each step raises a specific :class:`~moica_auth.exceptions.MoicaAuthError`. The verifier
adds one guard of its own: a revocation result that is not ``"good"`` (or ``"unknown"``
under the checker's explicit soft-fail) is refused, so a checker that returns instead of
raising cannot let a login through. It never returns a partial result.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from cryptography import x509

from moica_auth.certificate import CitizenCertificate, load_certificate
from moica_auth.exceptions import (
    NonceMismatch,
    RevocationUnavailable,
)
from moica_auth.revocation.types import RevocationResult
from moica_auth.signature import (
    DEFAULT_ALLOWED_HASHES,
    SUPPORTED_HASHES,
    VerifiedSignature,
    normalize_hash_name,
    verify_signature,
)
from moica_auth.validation.chain import ValidatedChain, ValidationPolicy, validate_chain
from moica_auth.validation.trust import TrustStore

__all__ = [
    "LoginVerifier",
    "RevocationChecker",
    "RevocationResult",
    "VerifiedLogin",
    "VerifierConfig",
]


@runtime_checkable
class RevocationChecker(Protocol):
    """Anything that can tell whether a validated chain's leaf is revoked.

    ``check`` returns a :class:`~moica_auth.revocation.types.RevocationResult` when the
    status is established as good, and raises a
    :class:`~moica_auth.exceptions.RevocationError` subclass otherwise (revoked,
    suspended, unavailable, stale). It returns status ``"unknown"`` only when its
    ``soft_fail`` is ``True``: :class:`LoginVerifier` holds every checker to this (see
    :meth:`LoginVerifier._revocation`).
    """

    @property
    def soft_fail(self) -> bool: ...

    def check(self, chain: ValidatedChain, *, at: datetime) -> RevocationResult: ...


@dataclass(frozen=True)
class VerifierConfig:
    """Immutable configuration of a :class:`LoginVerifier`.

    ``revocation=None`` means no revocation check at all: that is an explicit choice of
    the deployment (the Django system checks warn about it), not a silent default.
    """

    trust: TrustStore
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    allowed_hashes: frozenset[str] = DEFAULT_ALLOWED_HASHES
    revocation: RevocationChecker | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trust, TrustStore):
            raise TypeError("VerifierConfig.trust must be a TrustStore")
        if not isinstance(self.policy, ValidationPolicy):
            raise TypeError("VerifierConfig.policy must be a ValidationPolicy")
        if isinstance(self.allowed_hashes, str | bytes):
            # frozenset("sha256") is a set of letters: every signature would be refused.
            raise ValueError("VerifierConfig.allowed_hashes must be a collection of names")
        names = set()
        for name in self.allowed_hashes:
            if not isinstance(name, str):
                raise ValueError(f"VerifierConfig.allowed_hashes holds {name!r}, not a name")
            # "SHA-256" / "SHA256" (HiPKI's spelling) mean "sha256"; a name the signature
            # module does not know would never match and silently refuse every login.
            normalised = normalize_hash_name(name)
            if normalised not in SUPPORTED_HASHES:
                raise ValueError(
                    f"VerifierConfig.allowed_hashes: {name!r} is not one of "
                    f"{sorted(SUPPORTED_HASHES)}"
                )
            names.add(normalised)
        object.__setattr__(self, "allowed_hashes", frozenset(names))
        if not self.allowed_hashes:
            raise ValueError("VerifierConfig.allowed_hashes must not be empty")


@dataclass(frozen=True)
class VerifiedLogin:
    """A login token whose signature, certificate path and (optionally) status passed."""

    signature: VerifiedSignature
    chain: ValidatedChain
    revocation: RevocationResult | None

    @property
    def citizen(self) -> CitizenCertificate:
        """The signer's certificate profile (name, card serial, ID last-4, …)."""
        return self.chain.citizen


def _check_nonce(signed: bytes | None, expected: Sequence[bytes]) -> None:
    # Every candidate is compared (constant time each), so the answer's timing does not
    # tell which encoding matched.
    matched = False
    for candidate in expected:
        if signed is not None and hmac.compare_digest(signed, bytes(candidate)):
            matched = True
    if not matched:
        raise NonceMismatch("the signed nonce is missing or not the issued one")


def _normalise_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("verification time must be timezone-aware (UTC)")
    return at.astimezone(UTC)


class LoginVerifier:
    """Verify HiPKI login tokens against one :class:`VerifierConfig`.

    Thread-safe: it holds only the immutable configuration.
    """

    def __init__(self, config: VerifierConfig) -> None:
        self.config = config

    def verify(
        self,
        *,
        content: bytes,
        signature: bytes | str,
        signature_type: str,
        certificate: bytes | str | x509.Certificate | None = None,
        expected_nonce: bytes | None = None,
        expected_nonces: Sequence[bytes] | None = None,
        expected_card_number: str | None = None,
        at: datetime | None = None,
    ) -> VerifiedLogin:
        """Verify a whole token: signature → chain → revocation, all at one time ``at``.

        ``certificate`` is HiPKI's ``certb64``, or that certificate already parsed
        (required for PKCS1; for PKCS7 it must match the SignedData signer when given).
        The SignedData's other certificates (RFC 5652 §5.1 ``certificates``) are offered
        to the path builder as untrusted intermediates.

        ``expected_nonces`` lists the encodings of the one issued nonce the signer may have
        signed (HiPKI is handed the nonce's base64url text; whether the component signs
        those characters or the bytes they encode is not documented): a PKCS7 token's
        randomNonce signed attribute (PKCS #9, 1.2.840.113549.1.9.25.3) must equal one of
        them, else :class:`NonceMismatch`. A PKCS1 signature carries no attributes; its
        nonce is bound through ``content`` (the challenge text names it), so the list
        is not checked for it.
        """
        when = _normalise_time(at)
        if expected_nonces is not None and expected_nonce is not None:
            raise ValueError("give expected_nonce or expected_nonces, not both")
        if expected_nonces is not None and not expected_nonces:
            raise ValueError("expected_nonces must not be empty")
        signed = verify_signature(
            content=content,
            signature=signature,
            signature_type=signature_type,
            certificate=certificate,
            allowed_hashes=self.config.allowed_hashes,
            expected_nonce=expected_nonce,
            expected_card_number=expected_card_number,
            max_certificates=self.config.policy.max_carried_certificates,
        )
        if expected_nonces is not None and signed.signature_type == "PKCS7":
            _check_nonce(signed.nonce, expected_nonces)
        extra: Sequence[x509.Certificate] = tuple(getattr(signed, "certificates", ()) or ())
        chain = validate_chain(
            certificate=signed.certificate,
            trust=self.config.trust,
            intermediates=extra,
            policy=self.config.policy,
            at=when,
        )
        return VerifiedLogin(
            signature=signed, chain=chain, revocation=self._revocation(chain, when)
        )

    def check_certificate(
        self,
        *,
        certificate: bytes | str | x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        at: datetime | None = None,
    ) -> tuple[ValidatedChain, RevocationResult | None]:
        """Validate a certificate's path and status without a signature (``check`` CLI)."""
        when = _normalise_time(at)
        chain = validate_chain(
            certificate=load_certificate(certificate),
            trust=self.config.trust,
            intermediates=intermediates,
            policy=self.config.policy,
            at=when,
        )
        return chain, self._revocation(chain, when)

    def _revocation(self, chain: ValidatedChain, at: datetime) -> RevocationResult | None:
        """Run the checker and hold its result to the protocol (fail closed).

        A checker is trusted to *refuse*, never to *accept* by omission: a
        :class:`RevocationResult` whose ``status`` is ``"good"`` passes; ``"unknown"``
        passes only when the checker's own ``soft_fail`` is ``True`` (RFC 5280 §6.3
        leaves an unanswered check to the relying party, and this deployment opted in);
        anything that is not a ``RevocationResult`` raises
        :class:`RevocationUnavailable`.
        """
        checker = self.config.revocation
        if checker is None:
            return None
        result = checker.check(chain, at=at)
        if not isinstance(result, RevocationResult):
            raise RevocationUnavailable(
                f"the revocation checker returned {type(result).__name__}, not a RevocationResult"
            )
        if result.status == "good":
            return result
        try:
            allowed = checker.soft_fail is True
        except AttributeError:  # a custom checker that never declared its soft-fail
            allowed = False
        if allowed:
            return result
        raise RevocationUnavailable("the revocation checker returned 'unknown' without soft-fail")
