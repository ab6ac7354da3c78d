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

**Reservations** make the limits atomic. Counting a failure only after the attempt ended
lets N concurrent guesses all be evaluated against a limit of 3 (each saw "2 failures so
far"). So the login first reserves (:meth:`RateLimiter.reserve`) an attempt per address, per
certificate and per ID-number hash, *before* the expensive or oracle-like checks: a slot
counter (failures + attempts in flight) is compared and incremented in one atomic store
operation (a Lua script in Redis, a lock in the memory store), and an attempt beyond the
limit is refused ``429`` without reaching any verifier. :meth:`RateLimiter.settle` then
keeps the slot of a counted failure and releases the others.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field

from moica_auth.conf import RateLimits
from moica_auth.exceptions import TooManyAttempts
from moica_auth.stores import KeyValueStore, guarded_count, release_many

__all__ = ["RateLimiter", "Reservation"]

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


def _retry_after(left: float | None) -> int:
    return max(1, math.ceil(left)) if left is not None else 1


@dataclass
class Reservation:
    """The attempt slots one login holds: ``(kind, subject)`` pairs (kind ``"ip"``,
    ``"cert"`` or ``"id"``). Settle it exactly once (:meth:`RateLimiter.settle`)."""

    held: list[tuple[str, str]] = field(default_factory=list)


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

    def _limit(self, kind: str) -> tuple[int, int, int]:
        lim = self.limits
        if kind == "ip":
            return lim.ip_failures, lim.ip_window, lim.ip_lock
        # "cert" and "id" (a typed ID number, across cards): the card's limits.
        return lim.cert_failures, lim.cert_window, lim.cert_lock

    def reserve(
        self,
        reservation: Reservation,
        *,
        ip: str | None = None,
        fingerprint: str | None = None,
        id_key: str | None = None,
    ) -> None:
        """Reserve one attempt for each subject given, atomically; raise
        :class:`TooManyAttempts` when a subject is locked or all its attempts are taken
        (by failures and attempts in flight). A refused reservation holds nothing for
        that subject; slots reserved before stay in ``reservation``."""
        subjects = []
        if ip:
            subjects.append(("ip", _ip_key(ip)))
        if fingerprint:
            subjects.append(("cert", fingerprint.lower()))
        if id_key:
            subjects.append(("id", id_key.lower()))
        for kind, subject in subjects:
            if (kind, subject) in reservation.held:
                continue
            limit, window, _ = self._limit(kind)
            slot = f"rl:{kind}:slot:{subject}"
            # The lock check and the reservation are one store step (one Redis round
            # trip): a lock set by a concurrent failure is seen by the reservation itself.
            found = guarded_count(
                self.store, self._keys(kind, subject)[1], slot, limit=limit, ttl=window
            )
            if found.locked:
                raise TooManyAttempts(f"{kind} locked", retry_after=_retry_after(found.ttl))
            if found.count is None:
                raise TooManyAttempts(
                    f"{kind} attempts exhausted", retry_after=_retry_after(found.ttl)
                )
            reservation.held.append((kind, subject))

    def settle(self, reservation: Reservation, *, counted: frozenset[str]) -> None:
        """End the attempt: for each held subject whose kind is in ``counted`` (a failure
        that counts), count the failure (locking at the limit) and keep its slot; release
        every other slot. Clears ``reservation``."""
        held, reservation.held = reservation.held, []
        released: list[str] = []
        for kind, subject in held:
            slot = f"rl:{kind}:slot:{subject}"
            if kind in counted:
                limit, window, lock_for = self._limit(kind)
                fail, lock = self._keys(kind, subject)
                if self.store.incr(fail, ttl=window) >= limit:
                    self.store.set(lock, _LOCKED, ttl=lock_for)
                    self.store.delete(fail)
                    self.store.delete(slot)
            else:
                released.append(slot)
        # Every slot a success (or an uncounted refusal) gives back, in one step.
        release_many(self.store, released)

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

    def admit_challenge(self, *, ip: str | None) -> None:
        """:meth:`check` of the address's lock and :meth:`challenge_issued`, as one store
        step (one Redis round trip): a locked address is refused without counting."""
        if not ip:
            return
        lim = self.limits
        subject = _ip_key(ip)
        key = f"rl:ip:challenges:{subject}"
        found = guarded_count(
            self.store,
            self._keys("ip", subject)[1],
            key,
            limit=None,
            ttl=lim.ip_challenge_window,
        )
        if found.locked:
            raise TooManyAttempts("ip locked", retry_after=_retry_after(found.ttl))
        if found.count is not None and found.count > lim.ip_challenges:
            left = found.ttl if found.ttl is not None else self.store.ttl(key)
            raise TooManyAttempts(
                "too many challenges from this address", retry_after=_retry_after(left)
            )

    def first_lock_refusal(self, *, ip: str | None) -> bool:
        """Whether this is the first lock refusal for ``ip`` within ``ip_lock`` seconds
        (the login view audits only that one; the others are only logged)."""
        subject = _ip_key(ip) if ip else "unknown"
        return self.store.incr(f"rl:ip:refused:{subject}", ttl=self.limits.ip_lock) == 1

    def succeeded(self, *, fingerprint: str, reservation: Reservation | None = None) -> None:
        """Clear the certificate's failure count (never the IP's), and that of the ID
        number the login typed (the ``"id"`` subject of ``reservation``).

        The login calls it only for a login that verified *every* personal field:
        a card-only success proves nothing about the birth date or ID number a failure
        may have guessed, and clearing then would let a thief with an unlocked card
        interleave plain logins with guesses without ever being locked."""
        subjects = [("cert", fingerprint.lower())]
        if reservation is not None:
            subjects += [(kind, subject) for kind, subject in reservation.held if kind == "id"]
        for kind, subject in subjects:
            fail, _ = self._keys(kind, subject)
            self.store.delete(fail)
            self.store.delete(f"rl:{kind}:slot:{subject}")
