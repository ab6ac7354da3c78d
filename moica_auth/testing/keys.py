"""Deterministic RSA keys for tests.

.. warning::

   **THESE KEYS ARE PUBLIC TEST KEYS. NEVER USE THEM FOR ANYTHING REAL.** Anyone who knows
   the seed string (and the seeds are in this repository) can recompute the private key.

A key is a pure function of ``(seed, bits)``: the primes come from a SHA-256 counter-mode
stream seeded with the seed string, so the same seed gives the same key on every machine.
Together with a pinned clock and serials derived from the seed, that makes the test PKI's
certificates byte-identical across runs.

Generating a 4096-bit key in pure Python takes seconds, so keys are cached in memory and on
disk (PEM) under ``$MOICA_AUTH_TEST_KEY_CACHE`` or ``~/.cache/moica-auth/test-keys/``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["deterministic_rsa_key", "key_cache_dir"]

PUBLIC_EXPONENT = 65537
# Bump when the derivation changes, so stale cached keys are never picked up.
_DERIVATION_VERSION = "v2"
_SIEVE_BOUND = 1 << 16


def _small_primes(bound: int) -> tuple[int, ...]:
    flags = bytearray([1]) * bound
    flags[0:2] = b"\x00\x00"
    for i in range(2, int(bound**0.5) + 1):
        if flags[i]:
            flags[i * i :: i] = bytes(len(range(i * i, bound, i)))
    return tuple(i for i in range(3, bound) if flags[i])


_SMALL_PRIMES: tuple[int, ...] = _small_primes(_SIEVE_BOUND)


def key_cache_dir() -> Path:
    """The key cache folder: ``$MOICA_AUTH_TEST_KEY_CACHE`` or
    ``~/.cache/moica-auth/test-keys``."""
    env = os.environ.get("MOICA_AUTH_TEST_KEY_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "moica-auth" / "test-keys"


class _Drbg:
    """SHA-256 in counter mode: a reproducible byte stream (not a CSPRNG for real keys)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = hashlib.sha256(seed).digest()
        self._counter = 0

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return bytes(out[:n])

    def randbits(self, bits: int) -> int:
        nbytes = (bits + 7) // 8
        return int.from_bytes(self.read(nbytes), "big") >> (nbytes * 8 - bits)


def _miller_rabin_rounds(bits: int) -> int:
    # FIPS 186-5 Table B.1 (error < 2^-100 for random candidates of this size).
    if bits >= 1536:
        return 4
    if bits >= 1024:
        return 5
    return 7


def _is_probable_prime(n: int) -> bool:
    """Miller–Rabin (FIPS 186-5 §B.3.1) with bases derived from ``n`` itself, so the
    number of rounds never changes which primes the main stream yields."""
    if n < 2:
        return False
    for p in _SMALL_PRIMES[:50]:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    bases = _Drbg(b"mr-bases/" + n.to_bytes((n.bit_length() + 7) // 8, "big"))
    for _ in range(_miller_rabin_rounds(n.bit_length())):
        a = 2 + bases.randbits(n.bit_length() - 1) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _generate_prime(bits: int, drbg: _Drbg) -> int:
    """A ``bits``-bit prime p with the top two bits set and gcd(p-1, e) = 1.

    Searches upwards from a random start through a sieve window, so most composites are
    discarded by trial division before any modular exponentiation.
    """
    window = 4096
    while True:
        start = drbg.randbits(bits) | (3 << (bits - 2)) | 1
        alive = bytearray([1]) * window  # index i stands for start + 2*i
        for p in _SMALL_PRIMES:
            # first i with (start + 2i) % p == 0; (p + 1) // 2 is the inverse of 2 mod p
            r = (-start * ((p + 1) // 2)) % p
            alive[r::p] = bytes(len(range(r, window, p)))
        for i in range(window):
            if not alive[i]:
                continue
            candidate = start + 2 * i
            if candidate.bit_length() != bits:
                break
            if (candidate - 1) % PUBLIC_EXPONENT == 0:
                continue
            if _is_probable_prime(candidate):
                return candidate


def _derive_key(seed: str, bits: int) -> rsa.RSAPrivateKey:
    drbg = _Drbg(f"moica-auth-test-key/{_DERIVATION_VERSION}/{bits}/{seed}".encode())
    while True:
        p = _generate_prime(bits - bits // 2, drbg)
        q = _generate_prime(bits // 2, drbg)
        n = p * q
        # Top two bits set on both primes guarantee the modulus length; the distance check
        # is FIPS 186-5 §A.1.3's |p - q| > 2^(nlen/2 - 100).
        if n.bit_length() != bits or abs(p - q) <= 1 << (bits // 2 - 100):
            continue
        if p < q:
            p, q = q, p
        d = pow(PUBLIC_EXPONENT, -1, (p - 1) * (q - 1))
        numbers = rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=rsa.rsa_crt_dmp1(d, p),
            dmq1=rsa.rsa_crt_dmq1(d, q),
            iqmp=rsa.rsa_crt_iqmp(p, q),
            public_numbers=rsa.RSAPublicNumbers(PUBLIC_EXPONENT, n),
        )
        return numbers.private_key()


def _cache_path(seed: str, bits: int) -> Path:
    digest = hashlib.sha256(f"{_DERIVATION_VERSION}/{bits}/{seed}".encode()).hexdigest()
    return key_cache_dir() / f"rsa{bits}-{digest[:32]}.pem"


@functools.lru_cache(maxsize=512)
def deterministic_rsa_key(seed: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """Return the RSA private key (e = 65537) determined by ``seed`` and ``bits``.

    **TEST KEYS ONLY: anyone with the seed has the private key.**

    The result is cached in memory and as an unencrypted PEM file in :func:`key_cache_dir`
    (written atomically, so parallel test runs may share the cache). A cached file that does
    not parse or has the wrong size is ignored and rewritten.
    """
    if bits < 512 or bits % 2:
        raise ValueError("bits must be an even number >= 512")
    path = _cache_path(seed, bits)
    try:
        # Skipping the (slow) consistency check is fine: we wrote this file ourselves.
        loaded = serialization.load_pem_private_key(
            path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (OSError, ValueError):
        loaded = None
    if isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == bits:
        return loaded
    key = _derive_key(seed, bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
    except OSError:
        # A read-only home must not break the tests; the key is still cached in memory.
        pass
    return key
