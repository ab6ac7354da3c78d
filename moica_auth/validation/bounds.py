"""Bounds on the work one token may cost: carried certificates, signature checks, keys.

A login token is attacker-chosen input that arrives before anyone is authenticated, and
every certificate a CMS SignedData carries (RFC 5652 §5.1) becomes an untrusted candidate
for path building. Without bounds, a 64 KB post of self-issued certificates sharing one
key, or of RSA keys with a 3,072-bit public exponent, costs seconds of CPU to refuse.
Three limits make that cost a small constant, each checked *before* the work it bounds:

* :func:`require_carried_count`: at most ``limit`` carried certificates
  (:data:`MAX_CARRIED_CERTIFICATES` by default) → :class:`ChainTooComplex`, before any
  certificate is parsed or any path is searched;
* :func:`require_usable_key`: RSA keys only with an exponent and modulus a MOICA
  certificate can have, and (moica profile) no other key type for a carried CA →
  :class:`UnsupportedKey`, before anything is verified with the key;
* :class:`SignatureBudget`: the issuer search verifies at most ``limit`` signatures
  (:data:`MAX_SIGNATURE_CHECKS` by default) → :class:`ChainTooComplex` when a search
  would need more.
"""

from __future__ import annotations

import threading
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from moica_auth.exceptions import ChainTooComplex, UnsupportedKey
from moica_auth.validation.trust import signature_verifies

__all__ = [
    "MAX_CARRIED_CERTIFICATES",
    "MAX_RSA_EXPONENT",
    "MAX_RSA_MODULUS_BITS",
    "MAX_SIGNATURE_CHECKS",
    "MOICA_MAX_RSA_MODULUS_BITS",
    "SignatureBudget",
    "require_carried_count",
    "require_usable_key",
]

#: A HiPKI token carries the signer certificate, sometimes with its issuing CA.
MAX_CARRIED_CERTIFICATES: Final = 8
#: A real path costs two verifications (card → MOICA → GRCA); 32 leaves ample room for
#: the cross-certified generations while bounding a search to a few milliseconds.
MAX_SIGNATURE_CHECKS: Final = 32
#: The public exponent bounds the cost of one RSA verification (one squaring per bit).
#: MOICA and GRCA use 65537; NIST SP 800-89 §5.3.3 caps e below 2^256; we cap it at 32
#: bits, which every real CA respects.
MAX_RSA_EXPONENT: Final = 2**32 - 1
#: MOICA cards are RSA-2048, MOICA/GRCA CAs RSA-2048 or RSA-4096.
MOICA_MAX_RSA_MODULUS_BITS: Final = 4096
#: The ``generic`` profile (RFC 5280 only): still a bounded modulus.
MAX_RSA_MODULUS_BITS: Final = 16384


def require_carried_count(count: int, limit: int) -> None:
    """Refuse a token carrying more than ``limit`` certificates, before any is parsed."""
    if count > limit:
        raise ChainTooComplex(
            f"the token carries {count} certificates, more than the {limit} accepted",
            limit=limit,
        )


def require_usable_key(
    cert: x509.Certificate, *, profile: str = "moica", role: str = "certificate"
) -> None:
    """Refuse ``cert``'s public key before anything is verified with it.

    * RSA: the exponent must be odd, at least 3 and at most :data:`MAX_RSA_EXPONENT`;
      the modulus at most :data:`MOICA_MAX_RSA_MODULUS_BITS` (``moica``) or
      :data:`MAX_RSA_MODULUS_BITS` (any other profile). Too *small* a modulus is
      ``WeakKey``, decided by the chain validator's ordered checks.
    * Other key types: refused in the ``moica`` profile only when ``role`` is a CA
      (``"carried certificate"``): the leaf's key type is reported as ``WeakKey`` at its
      place in the chain validator's order.

    Raises :class:`UnsupportedKey`, also for a key that cannot be read (callers that
    want ``MalformedCertificate`` for that call ``require_parsable`` first).
    """
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKey(f"the {role}'s public key cannot be read") from exc
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        exponent = numbers.e
        if exponent < 3 or exponent % 2 == 0 or exponent > MAX_RSA_EXPONENT:
            raise UnsupportedKey(
                f"the {role}'s RSA public exponent ({exponent.bit_length()} bits) is not "
                "one a MOICA certificate uses",
                exponent_bits=exponent.bit_length(),
            )
        most = MOICA_MAX_RSA_MODULUS_BITS if profile == "moica" else MAX_RSA_MODULUS_BITS
        if key.key_size > most:
            raise UnsupportedKey(
                f"the {role}'s RSA modulus of {key.key_size} bits is above {most}",
                key_size=key.key_size,
            )
        return
    if profile == "moica" and role != "leaf":
        raise UnsupportedKey(
            f"the {role}'s {type(key).__name__} key is not a type MOICA uses (RSA only)"
        )


class SignatureBudget:
    """How many signatures one validation may still verify (a counting wrapper around
    :func:`~moica_auth.validation.trust.signature_verifies`).

    :meth:`verify` spends one check per call and raises :class:`ChainTooComplex`
    *before* the check that would exceed ``limit``; :attr:`spent` tells how many ran.
    Thread-safe, though one budget belongs to one validation.
    """

    def __init__(self, limit: int = MAX_SIGNATURE_CHECKS) -> None:
        if limit < 0:
            raise ValueError("a signature budget cannot be negative")
        self.limit = limit
        self._spent = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        """Signature verifications performed through this budget so far."""
        return self._spent

    def verify(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        """``signature_verifies(cert, issuer)``, counted against the budget."""
        with self._lock:
            if self._spent >= self.limit:
                raise ChainTooComplex(
                    f"finding the issuer needs more than {self.limit} signature checks",
                    limit=self.limit,
                )
            self._spent += 1
        return signature_verifies(cert, issuer)
