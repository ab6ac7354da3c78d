"""Abuse limits of the mobile login: a push rings a real person's phone.

* per target ID number: at most ``per_id`` pushes per ``id_window`` seconds, counted
  under an HMAC of the number (:func:`moica_auth.identity.id_number.id_number_hash`), so
  the shared store never holds ID numbers;
* per client address (IPv6: its /64, as the login limits do): ``per_ip`` starts (push or
  ticket) per ``ip_window`` seconds;
* per browser session: at most ``max_pending`` transactions started within one
  ``time_limit`` (a transaction cannot be pending longer than that, so this bounds the
  concurrent ones).

The counters live in the same :class:`~moica_auth.stores.KeyValueStore` as the login
limits (fixed windows with ``incr``); a store outage raises ``StoreUnavailable``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moica_auth.identity.id_number import IdNumber, id_number_hash
from moica_auth.mobile.errors import MobileTooManyPending, MobileTooManyPushes
from moica_auth.mobile.settings import PushLimits
from moica_auth.ratelimit import _ip_key
from moica_auth.stores import KeyValueStore

__all__ = ["MobileLimiter"]


@dataclass(frozen=True)
class MobileLimiter:
    store: KeyValueStore
    limits: PushLimits
    hash_key: bytes
    max_pending: int
    pending_window: int

    def _bump(
        self,
        key: str,
        limit: int,
        window: int,
        error: type[MobileTooManyPushes] | type[MobileTooManyPending],
        what: str,
    ) -> None:
        if self.store.incr(key, ttl=window) > limit:
            left = self.store.ttl(key)
            retry_after = max(1, math.ceil(left)) if left is not None else 1
            raise error(what, retry_after=retry_after)

    def start(
        self, *, id_number: IdNumber | None, ip: str | None, session_binding: str, push: bool
    ) -> None:
        """Count one start; raise :class:`MobileTooManyPushes` /
        :class:`MobileTooManyPending` (429, with ``retry_after``) past a limit.

        The session cap is checked first, then the address, then (for a push) the
        target: a refused start does not use up the target's budget for others.
        """
        self._bump(
            f"mobile:pending:{session_binding}",
            self.max_pending,
            self.pending_window,
            MobileTooManyPending,
            "too many pending in session",
        )
        if ip:
            self._bump(
                f"mobile:ip:{_ip_key(ip)}",
                self.limits.per_ip,
                self.limits.ip_window,
                MobileTooManyPushes,
                "too many mobile starts from this address",
            )
        if push:
            if id_number is None:
                raise ValueError("a push needs the target ID number")
            target = id_number_hash(id_number, key=self.hash_key)[:32]
            self._bump(
                f"mobile:push:{target}",
                self.limits.per_id,
                self.limits.id_window,
                MobileTooManyPushes,
                "too many pushes to this ID number",
            )
