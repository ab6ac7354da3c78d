"""Small key/value stores for challenges, OCSP/CRL caches, locks and rate limits.

One protocol, :class:`KeyValueStore`, and two implementations:

* :class:`MemoryStore`: in-process and thread-safe. It is the embedded default and is
  correct only when a single process serves the site (one worker), because a challenge
  issued by one process cannot be consumed by another.
* :class:`RedisStore`: redis-py against a shared Redis (>= 6.2 preferred; older servers
  work through fall-backs). Use it whenever more than one process serves logins.

The operations are the few that security code needs to be race-free:

* ``take`` is an atomic get-and-delete, so exactly one of N concurrent callers receives a
  value. Single-use challenges depend on it.
* ``add`` sets only when the key is absent (Redis ``SET NX``): locks and tombstones.
* ``incr`` is a fixed-window counter: the TTL is set when the counter is created and never
  extended, so a client that keeps failing cannot keep its window open forever.

Both stores also offer ``add_many`` (all keys or none, in one step and, on Redis, one
round trip). It is not part of the protocol, so a store written for an older version still
works: callers use it when present (:func:`add_many`) and fall back to ``add`` per key.

Both stores fail closed. Any Redis failure (connection refused, timeout, a server
error) is raised as :class:`~moica_auth.exceptions.StoreUnavailable`, never swallowed
into a "not found" that could let a replayed challenge or an unchecked certificate through.

TTLs are seconds as ``float`` and must be positive. Programming errors (a non-positive
TTL, an empty key, a non-``bytes`` value, ``incr`` on a value that is not an integer) raise
``ValueError``/``TypeError`` in both stores, never ``StoreUnavailable``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from moica_auth.exceptions import ConfigurationError, StoreUnavailable

__all__ = [
    "DEFAULT_PREFIX",
    "KeyValueStore",
    "MemoryStore",
    "RedisStore",
    "add_many",
    "store_from_url",
]

DEFAULT_PREFIX = "moica:"


@runtime_checkable
class KeyValueStore(Protocol):
    """What the library needs from a shared store. Keys are ``str``, values ``bytes``."""

    def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when the key is absent or expired."""
        ...

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` unconditionally; ``ttl`` seconds, ``None`` for no expiry."""
        ...

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Store only if the key is absent (``SET NX``); ``True`` if this call stored it."""
        ...

    def take(self, key: str) -> bytes | None:
        """Atomically get and delete: of N concurrent callers exactly one gets the value."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key; absent keys are not an error."""
        ...

    def incr(self, key: str, *, ttl: float) -> int:
        """Add one to a counter and return it; ``ttl`` applies only when it is created."""
        ...

    def ttl(self, key: str) -> float | None:
        """Seconds left, or ``None`` when the key is absent or has no expiry."""
        ...

    def ping(self) -> None:
        """Check the store is reachable; raise ``StoreUnavailable`` otherwise."""
        ...


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError("store keys are non-empty strings")


def _check_value(value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError("store values are bytes")


# --- in-process -----------------------------------------------------------------------


class MemoryStore:
    """A thread-safe, in-process :class:`KeyValueStore`.

    Expiry is measured by ``clock`` (seconds, monotonic; :func:`time.monotonic` by
    default) so tests can pin and advance it. Expired entries are dropped when touched
    and swept every ``sweep_every`` writes, which bounds memory without a timer thread.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        sweep_every: int = 1024,
    ) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._lock = threading.Lock()
        # key -> (value, absolute deadline on ``clock`` or None for no expiry)
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._sweep_every = max(1, sweep_every)
        self._writes = 0

    def __repr__(self) -> str:
        return f"MemoryStore(entries={len(self._data)})"

    # All helpers below expect ``self._lock`` to be held.

    def _live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _deadline(self, ttl: float | None, now: float) -> float | None:
        return None if ttl is None else now + ttl

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            dead = [k for k, (_, d) in self._data.items() if d is not None and d <= now]
            for k in dead:
                del self._data[k]

    def get(self, key: str) -> bytes | None:
        _check_key(key)
        with self._lock:
            entry = self._live(key, self._clock())
            return None if entry is None else entry[0]

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        _check_key(key)
        _check_value(value)
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._data[key] = (value, self._deadline(ttl, now))
            self._wrote(now)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        _check_key(key)
        _check_value(value)
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._data[key] = (value, self._deadline(ttl, now))
            self._wrote(now)
            return True

    def add_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> bool:
        """Store every item only if none of the keys is present; ``True`` if stored."""
        for key, value in items.items():
            _check_key(key)
            _check_value(value)
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            if any(self._live(key, now) is not None for key in items):
                return False
            for key, value in items.items():
                self._data[key] = (value, self._deadline(ttl, now))
                self._wrote(now)
            return True

    def take(self, key: str) -> bytes | None:
        _check_key(key)
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return None
            del self._data[key]
            return entry[0]

    def delete(self, key: str) -> None:
        _check_key(key)
        with self._lock:
            self._data.pop(key, None)

    def incr(self, key: str, *, ttl: float) -> int:
        _check_key(key)
        _check_ttl(ttl)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None:
                self._data[key] = (b"1", self._deadline(ttl, now))
                self._wrote(now)
                return 1
            try:
                count = int(entry[0]) + 1
            except ValueError:
                raise ValueError(f"value of {key!r} is not an integer counter") from None
            # A fixed window: the deadline set at creation is kept. A counter without
            # one gets it now, as the Redis script does, so no window lasts forever.
            deadline = entry[1] if entry[1] is not None else self._deadline(ttl, now)
            self._data[key] = (str(count).encode("ascii"), deadline)
            return count

    def ttl(self, key: str) -> float | None:
        _check_key(key)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None or entry[1] is None:
                return None
            return entry[1] - now

    def ping(self) -> None:
        return None

    def clear(self) -> None:
        """Drop every entry (tests and ``flush`` commands)."""
        with self._lock:
            self._data.clear()


# --- Redis ----------------------------------------------------------------------------

# Fixed-window counter in one round trip, atomic on every Redis version that has Lua
# (2.6+). ``PEXPIRE … NX`` would need Redis 7; checking PTTL == -1 also repairs a counter
# that somehow lost its TTL instead of letting it live forever.
_INCR_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"""


# All-or-nothing SET NX of several keys in one round trip (``MSETNX`` takes no TTL).
# ARGV[1] is the TTL in ms, or "" for none; ARGV[i + 1] is the value of KEYS[i].
_ADD_MANY_SCRIPT = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
for i = 1, #KEYS do
  if ARGV[1] == '' then
    redis.call('SET', KEYS[i], ARGV[i + 1])
  else
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
  end
end
return 1
"""


def _ms(ttl: float) -> int:
    # Round up so a TTL never expires earlier than asked, and never becomes 0 (invalid).
    return max(1, math.ceil(ttl * 1000))


class RedisStore:
    """A :class:`KeyValueStore` on Redis (redis-py), every key under ``prefix``.

    * ``take`` uses ``GETDEL`` (Redis >= 6.2); on an older server it falls back, once
      detected, to a ``MULTI``/``EXEC`` transaction of ``GET`` + ``DEL``, which is equally
      atomic.
    * ``add`` is ``SET NX PX``; ``incr`` is a Lua script (``INCR`` then ``PEXPIRE`` when
      the counter has no TTL yet).
    * Every ``redis.exceptions.RedisError`` (connection refused, timeout, server errors)
      is raised as :class:`StoreUnavailable`: the caller fails closed.

    Only a short, configurable number of immediate retries is made (default 1: enough to
    survive a dropped idle connection) so an outage fails fast instead of stalling the
    login for redis-py's default exponential back-off.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("the store prefix must be a string")
        self._client = client
        self._prefix = prefix
        self._getdel_supported = True
        self._incr = client.register_script(_INCR_SCRIPT)
        self._add_many = client.register_script(_ADD_MANY_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = 1.0,
        retries: int = 1,
    ) -> RedisStore:
        """Connect lazily to ``redis://``, ``rediss://`` or ``unix://`` ``url``.

        ``socket_timeout`` bounds both connecting and each command, in seconds.
        """
        if not (socket_timeout > 0 and math.isfinite(socket_timeout)):
            raise ConfigurationError("socket_timeout must be a positive number of seconds")
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), max(0, retries)),
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL: {exc}") from exc
        return cls(client, prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._prefix!r})"

    @property
    def client(self) -> redis.Redis:
        return self._client

    @property
    def prefix(self) -> str:
        return self._prefix

    def _k(self, key: str) -> str:
        _check_key(key)
        return self._prefix + key

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            # The class name only: redis-py messages may echo the URL (with a password).
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def get(self, key: str) -> bytes | None:
        return cast("bytes | None", self._call(self._client.get, self._k(key)))

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        _check_value(value)
        _check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        self._call(self._client.set, self._k(key), value, px=px)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        _check_value(value)
        _check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        return bool(self._call(self._client.set, self._k(key), value, px=px, nx=True))

    def add_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> bool:
        """Store every item only if none of the keys is present (one Lua script, so
        atomic and one round trip); ``True`` if stored."""
        names = [self._k(key) for key in items]
        values = list(items.values())
        for value in values:
            _check_value(value)
        _check_ttl(ttl)
        if not names:
            return True
        px = "" if ttl is None else str(_ms(ttl))
        return bool(self._call(self._add_many, keys=names, args=[px, *values]))

    def take(self, key: str) -> bytes | None:
        name = self._k(key)
        if self._getdel_supported:
            try:
                return cast("bytes | None", self._client.getdel(name))
            except redis.exceptions.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
                # Redis < 6.2: remember, and use the transaction from now on.
                self._getdel_supported = False
            except redis.exceptions.RedisError as exc:
                raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        return self._take_multi(name)

    def _take_multi(self, name: str) -> bytes | None:
        def run() -> bytes | None:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.get(name)
                pipe.delete(name)
                value, _deleted = pipe.execute()
            return cast("bytes | None", value)

        return cast("bytes | None", self._call(run))

    def delete(self, key: str) -> None:
        self._call(self._client.delete, self._k(key))

    def incr(self, key: str, *, ttl: float) -> int:
        _check_ttl(ttl)
        name = self._k(key)
        try:
            return int(self._incr(keys=[name], args=[_ms(ttl)]))
        except redis.exceptions.ResponseError as exc:
            if "not an integer" in str(exc):
                # Same programming error as MemoryStore reports, not an outage.
                raise ValueError(f"value of {key!r} is not an integer counter") from None
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def ttl(self, key: str) -> float | None:
        pttl = int(self._call(self._client.pttl, self._k(key)))
        # -2: no such key; -1: no expiry.
        return None if pttl < 0 else pttl / 1000.0

    def ping(self) -> None:
        self._call(self._client.ping)

    def clear(self) -> None:
        """Delete every key under this store's prefix (tests and ``flush`` commands)."""
        if not self._prefix:
            raise ConfigurationError("refusing to clear a Redis store without a prefix")

        def run() -> None:
            batch: list[Any] = []
            for name in self._client.scan_iter(match=_glob_escape(self._prefix) + "*"):
                batch.append(name)
                if len(batch) >= 500:
                    self._client.delete(*batch)
                    batch.clear()
            if batch:
                self._client.delete(*batch)

        self._call(run)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def add_many(store: KeyValueStore, items: Mapping[str, bytes], *, ttl: float | None) -> bool:
    """``store.add_many(items, ttl=ttl)`` when the store has it; otherwise ``add`` of each
    item in order, stopping at the first key already present (the items before it stay
    stored, so order them so that a partial write is harmless)."""
    method = getattr(store, "add_many", None)
    if callable(method):
        return bool(method(items, ttl=ttl))
    return all(store.add(key, value, ttl=ttl) for key, value in items.items())


# --- construction ---------------------------------------------------------------------

_singletons: dict[tuple[str, str], KeyValueStore] = {}
_singletons_lock = threading.Lock()


def _singleton(key: tuple[str, str], factory: Callable[[], KeyValueStore]) -> KeyValueStore:
    with _singletons_lock:
        store = _singletons.get(key)
        if store is None:
            store = factory()
            _singletons[key] = store
        return store


def store_from_url(url: str | None, *, prefix: str = DEFAULT_PREFIX) -> KeyValueStore:
    """The store a setting names, shared process-wide per ``(url, prefix)``.

    * ``None``, ``""`` or ``"memory://"``: the process's :class:`MemoryStore` (one per
      prefix), correct for a single-process deployment only;
    * ``redis://``, ``rediss://``, ``unix://``: a :class:`RedisStore` (connections are
      made lazily and pooled, so reading the setting is cheap).

    Anything else raises :class:`ConfigurationError`.
    """
    if url is None or url == "" or url == "memory://":
        return _singleton(("memory://", prefix), MemoryStore)
    if not isinstance(url, str):
        raise ConfigurationError("the store URL must be a string")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        # Never echo the URL: it may carry a password.
        raise ConfigurationError(
            f"unsupported store URL scheme {scheme!r}: use redis://, rediss://, unix:// "
            "or memory://"
        )
    return _singleton((url, prefix), lambda: RedisStore.from_url(url, prefix=prefix))
