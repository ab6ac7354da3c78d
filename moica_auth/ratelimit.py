"""Abuse limits for the login endpoint: failed attempts per certificate and per client IP.

The card itself locks after three wrong PINs; the server mirrors that for what the PIN
does not protect: a stolen, unlocked card (or a signed login replayed by an attacker)
used to guess the holder's birth date or ID number. Every failed login counts, a
personal-data mismatch included, so those values cannot be brute-forced.

* per certificate (SHA-256 fingerprint): ``cert_failures`` failures within
  ``cert_window`` seconds lock the certificate for ``cert_lock`` seconds;
* per client IP (IPv6: per /64 network): at most ``ip_challenges`` challenges per
  ``ip_challenge_window`` seconds; ``ip_failures`` failures within ``ip_window``
  lock the address for ``ip_lock`` seconds. A success does **not** reset the IP counter
  (an attacker with one valid card must not be able to launder guesses made with others).

Counters live in the shared :class:`~moica_auth.stores.KeyValueStore` (fixed windows,
``incr``), so the limits hold across processes when Redis is configured. A store outage
raises ``StoreUnavailable``: logins fail closed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from moica_auth.conf import RateLimits
from moica_auth.exceptions import TooManyAttempts
from moica_auth.stores import KeyValueStore

__all__ = ["RateLimiter"]

_LOCKED = b"1"


def _ip_key(ip: str) -> str:
    """The counter key of a client address: an IPv4 address as is, an IPv6 address by
    its /64 network (RFC 6177: one subscriber line gets a whole /64, so counting single
    IPv6 addresses would let one client rotate through 2**64 fresh counters)."""
    subject = ip
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address):
            mapped = address.ipv4_mapped
            subject = (
                str(mapped)
                if mapped is not None
                else str(ipaddress.IPv6Network((address, 64), strict=False))
            )
    # Hash the subject: keys in a shared Redis should not be a list of client IPs.
    return hashlib.sha256(subject.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class RateLimiter:
    """Counts failures and refuses locked certificates and addresses."""

    store: KeyValueStore
    limits: RateLimits

    def _keys(self, kind: str, subject: str) -> tuple[str, str]:
        return f"rl:{kind}:fail:{subject}", f"rl:{kind}:lock:{subject}"

    def _refuse_if_locked(self, kind: str, subject: str) -> None:
        _, lock = self._keys(kind, subject)
        if self.store.get(lock) is not None:
            left = self.store.ttl(lock)
            retry_after = max(1, math.ceil(left)) if left is not None else 1
            raise TooManyAttempts(f"{kind} locked", retry_after=retry_after)

    def check(self, *, ip: str | None, fingerprint: str | None = None) -> None:
        """Raise :class:`TooManyAttempts` (with ``retry_after`` seconds) when locked."""
        if ip:
            self._refuse_if_locked("ip", _ip_key(ip))
        if fingerprint:
            self._refuse_if_locked("cert", fingerprint.lower())

    def _count(self, kind: str, subject: str, limit: int, window: int, lock_for: int) -> None:
        fail, lock = self._keys(kind, subject)
        if self.store.incr(fail, ttl=window) >= limit:
            self.store.set(lock, _LOCKED, ttl=lock_for)
            self.store.delete(fail)

    def failed(self, *, ip: str | None, fingerprint: str | None = None) -> None:
        """Record one failed login for the address and (when known) the certificate."""
        lim = self.limits
        if ip:
            self._count("ip", _ip_key(ip), lim.ip_failures, lim.ip_window, lim.ip_lock)
        if fingerprint:
            self._count(
                "cert", fingerprint.lower(), lim.cert_failures, lim.cert_window, lim.cert_lock
            )

    def challenge_issued(self, *, ip: str | None) -> None:
        """Count a challenge for ``ip``; refuse past ``ip_challenges`` per
        ``ip_challenge_window`` seconds (each challenge occupies the shared store until it
        expires, so issuing must not be free). Not a lock: the window just runs out."""
        if not ip:
            return
        lim = self.limits
        key = f"rl:ip:challenges:{_ip_key(ip)}"
        if self.store.incr(key, ttl=lim.ip_challenge_window) > lim.ip_challenges:
            left = self.store.ttl(key)
            retry_after = max(1, math.ceil(left)) if left is not None else 1
            raise TooManyAttempts("too many challenges from this address", retry_after=retry_after)

    def first_lock_refusal(self, *, ip: str | None) -> bool:
        """Whether this is the first lock refusal for ``ip`` within ``ip_lock`` seconds
        (the login view audits only that one; the others are only logged)."""
        subject = _ip_key(ip) if ip else "unknown"
        return self.store.incr(f"rl:ip:refused:{subject}", ttl=self.limits.ip_lock) == 1

    def succeeded(self, *, fingerprint: str) -> None:
        """Clear the certificate's failure count (never the IP's).

        The login view calls it only for a login that verified *every* personal field:
        a card-only success proves nothing about the birth date or ID number a failure
        may have guessed, and clearing then would let a thief with an unlocked card
        interleave plain logins with guesses without ever being locked."""
        fail, _ = self._keys("cert", fingerprint.lower())
        self.store.delete(fail)
