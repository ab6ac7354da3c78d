"""Small key/value stores for challenges, OCSP/CRL caches, locks and rate limits.

One protocol, :class:`KeyValueStore`, and two implementations:

* :class:`MemoryStore`: in-process and thread-safe. It is the embedded default and is
  correct only when a single process serves the site (one worker), because a challenge
  issued by one process cannot be consumed by another.
* :class:`RedisStore`: redis-py against a shared Redis (>= 6.2 preferred; older servers
  work through fall-backs), a Redis Sentinel deployment or a Redis Cluster. Use it
  whenever more than one process serves logins.

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

Replicated deployments (Sentinel, Cluster) replicate asynchronously: a write the old
master acknowledged may be missing on the replica promoted in its place. A challenge
taken on the old master could then still exist on the new one and be accepted twice.
:class:`RedisStore` with ``fence=True`` (the default for Sentinel and Cluster URLs)
therefore stamps every value it writes with the master's replication id
(``master_replid``, which a promotion always changes) and reads a value stamped by
another master as absent: after a failover, challenges issued before it are
``challenge_unknown``, never reusable.

TTLs are seconds as ``float`` and must be positive. Programming errors (a non-positive
TTL, an empty key, a non-``bytes`` value, ``incr`` on a value that is not an integer) raise
``ValueError``/``TypeError`` in both stores, never ``StoreUnavailable``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import (
    SplitResult,
    parse_qs,
    parse_qsl,
    quote,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from moica_auth.exceptions import ConfigurationError, StoreUnavailable

__all__ = [
    "DEFAULT_PREFIX",
    "REDIS_ERRORS",
    "GuardedCount",
    "KeyValueStore",
    "LazyCluster",
    "MemoryStore",
    "RedisClient",
    "RedisStore",
    "add_many",
    "guarded_count",
    "is_cluster",
    "redis_client_from_url",
    "redis_url_from_mapping",
    "release_many",
    "store_from_url",
]

#: What redis-py raises for an unreachable or failing store. ``RedisClusterException``
#: (no slots map, no reachable node) is not a ``RedisError`` subclass.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.RedisError, RedisClusterException)


class LazyCluster:
    """A :class:`~redis.cluster.RedisCluster` made on first use.

    redis-py's cluster client asks the nodes for the slot map in its constructor; made
    lazily, a cluster that is down at start-up refuses logins (``store_unavailable``)
    instead of breaking the process, and is found once it answers.
    """

    PRIMARIES = RedisCluster.PRIMARIES

    def __init__(self, factory: Callable[[], RedisCluster]) -> None:
        self._factory = factory
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def cluster(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._factory()
                except RedisClusterException as exc:
                    raise redis.exceptions.ConnectionError(type(exc).__name__) from exc
            return self._client

    def register_script(self, script: str) -> Script:
        return Script(self, script)  # type: ignore[arg-type]

    def get_encoder(self) -> Any:
        # Only used by Script to encode its source text: redis-py's default encoding.
        from redis._parsers.encoders import Encoder

        return Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)


#: A client for one Redis (possibly found through Sentinel) or for a Redis Cluster.
RedisClient = redis.Redis | RedisCluster | LazyCluster


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster | LazyCluster)


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

    def reserve(self, key: str, *, limit: int, ttl: float) -> int | None:
        """Atomically: when the counter is below ``limit``, add one and return it (``ttl``
        applies when it is created); else change nothing and return ``None``."""
        ...

    def release(self, key: str) -> None:
        """Atomically subtract one from a counter that is above zero (its TTL is kept);
        an absent counter is left absent."""
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

    def reserve(self, key: str, *, limit: int, ttl: float) -> int | None:
        _check_key(key)
        _check_ttl(ttl)
        # One lock around read, compare and write: the check and the count cannot be
        # interleaved by another thread.
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            count = int(entry[0]) if entry is not None else 0
            if count >= limit:
                return None
            deadline = entry[1] if entry is not None and entry[1] is not None else None
            self._data[key] = (
                str(count + 1).encode("ascii"),
                deadline if deadline is not None else self._deadline(ttl, now),
            )
            self._wrote(now)
            return count + 1

    def release(self, key: str) -> None:
        _check_key(key)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None:
                return
            count = int(entry[0])
            if count > 0:
                self._data[key] = (str(count - 1).encode("ascii"), entry[1])

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

# Fenced values (see the module docstring): ``replid .. "|" .. value``. INFO is read in
# the script so the stamp and the write are one atomic step on the master that does it.
_REPLID = """
local info = redis.call('INFO', 'replication')
local id = string.match(info, 'master_replid:(%x+)') or ''
"""

_FENCED_SET = (
    _REPLID
    + """
if ARGV[3] == '1' then
  local old = redis.call('GET', KEYS[1])
  if old and string.sub(old, 1, #id + 1) == id .. '|' then return 0 end
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], id .. '|' .. ARGV[1])
else
  redis.call('SET', KEYS[1], id .. '|' .. ARGV[1], 'PX', ARGV[2])
end
return 1
"""
)

_FENCED_GET = (
    _REPLID
    + """
local v = redis.call('GET', KEYS[1])
if not v then return false end
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
if string.sub(v, 1, #id + 1) ~= id .. '|' then return false end
return string.sub(v, #id + 2)
"""
)


# Check and count in one script: Redis runs a script atomically, so concurrent callers
# cannot all see "below the limit" before any of them counts.
_RESERVE_SCRIPT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  return -1
end
n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
"""

_RELEASE_SCRIPT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
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

# A counter guarded by a lock, in one round trip: nothing is counted while KEYS[1] (the
# lock) exists. ARGV[1] is the limit (the counter is not incremented at it, as in
# _RESERVE_SCRIPT) or "" (always increment, as _INCR_SCRIPT); ARGV[2] the window in ms.
# Answers {-1, lock PTTL} when locked, {-2, counter PTTL} at the limit, else {n, PTTL}.
_GUARDED_COUNT_SCRIPT = """
local left = redis.call('PTTL', KEYS[1])
if left ~= -2 then
  return {-1, left}
end
if ARGV[1] ~= '' then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0')
  if n >= tonumber(ARGV[1]) then
    return {-2, redis.call('PTTL', KEYS[2])}
  end
end
local n = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) == -1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {n, redis.call('PTTL', KEYS[2])}
"""

# _RELEASE_SCRIPT over several counters, in one round trip.
_RELEASE_MANY_SCRIPT = """
for i = 1, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
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

    ``fence=True`` stamps values with the master's replication id (see the module
    docstring); ``get``/``set``/``add``/``take`` then run as Lua scripts. Counters
    (``incr``) are not stamped: a failover may reset a rate-limit window, never a
    single-use value.
    """

    def __init__(
        self, client: RedisClient, *, prefix: str = DEFAULT_PREFIX, fence: bool = False
    ) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("the store prefix must be a string")
        self._client = client
        self._prefix = prefix
        self._fence = fence
        self._getdel_supported = True
        self._incr = client.register_script(_INCR_SCRIPT)
        self._fenced_set = client.register_script(_FENCED_SET)
        self._fenced_get = client.register_script(_FENCED_GET)
        self._reserve = client.register_script(_RESERVE_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._add_many = client.register_script(_ADD_MANY_SCRIPT)
        self._guarded_count = client.register_script(_GUARDED_COUNT_SCRIPT)
        self._release_many = client.register_script(_RELEASE_MANY_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = 1.0,
        retries: int = 1,
    ) -> RedisStore:
        """Connect lazily to ``url`` (any scheme :func:`redis_client_from_url` takes).

        ``socket_timeout`` bounds both connecting and each command, in seconds. Fencing
        is on for Sentinel and Cluster URLs unless the URL says ``?fence=no``; a plain
        URL may ask for it with ``?fence=yes`` (a primary promoted by hand or by DNS).
        """
        client, replicated = _client_and_kind(url, socket_timeout=socket_timeout, retries=retries)
        fence = _flag(_query(url).get("fence"), default=replicated)
        return cls(client, prefix=prefix, fence=fence)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._prefix!r})"

    @property
    def client(self) -> RedisClient:
        return self._client

    @property
    def fenced(self) -> bool:
        return self._fence

    @property
    def prefix(self) -> str:
        return self._prefix

    def _k(self, key: str) -> str:
        _check_key(key)
        return self._prefix + key

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except REDIS_ERRORS as exc:
            # The class name only: redis-py messages may echo the URL (with a password).
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def get(self, key: str) -> bytes | None:
        if self._fence:
            return cast(
                "bytes | None", self._call(self._fenced_get, keys=[self._k(key)], args=["0"])
            )
        return cast("bytes | None", self._call(self._client.get, self._k(key)))

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        _check_value(value)
        _check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        if self._fence:
            self._call(self._fenced_set, keys=[self._k(key)], args=[value, px or "", "0"])
            return
        self._call(self._client.set, self._k(key), value, px=px)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        _check_value(value)
        _check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        if self._fence:
            # A value stamped by a former master counts as absent, so it is overwritten.
            args = [value, px or "", "1"]
            return bool(self._call(self._fenced_set, keys=[self._k(key)], args=args))
        return bool(self._call(self._client.set, self._k(key), value, px=px, nx=True))

    def add_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> bool:
        """Store every item only if none of the keys is present (one Lua script, so
        atomic and one round trip); ``True`` if stored.

        A fenced store stamps every value inside its own script, and a Cluster refuses
        a script whose keys lie in different slots: both write the items one by one, in
        order, stopping at the first key already present (what :func:`add_many` does for
        a store without this method).
        """
        if self._fence or is_cluster(self._client):
            return all(self.add(key, value, ttl=ttl) for key, value in items.items())
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
        if self._fence:
            return cast("bytes | None", self._call(self._fenced_get, keys=[name], args=["1"]))
        if self._getdel_supported:
            try:
                return cast("bytes | None", self._client.getdel(name))
            except redis.exceptions.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
                # Redis < 6.2: remember, and use the transaction from now on.
                self._getdel_supported = False
            except REDIS_ERRORS as exc:
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
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def reserve(self, key: str, *, limit: int, ttl: float) -> int | None:
        _check_ttl(ttl)
        name = self._k(key)
        n = int(self._call(self._reserve, keys=[name], args=[int(limit), _ms(ttl)]))
        return None if n < 0 else n

    def release(self, key: str) -> None:
        self._call(self._release, keys=[self._k(key)])

    def guarded_count(
        self, lock: str, counter: str, *, limit: int | None, ttl: float
    ) -> GuardedCount:
        """:func:`guarded_count` in one round trip (one Lua script, so also atomic).

        A fenced store reads its locks through its own stamp check, and a Cluster refuses
        a script whose two keys lie in different slots: both take the generic path."""
        if self._fence or is_cluster(self._client):
            return _guarded_count_generic(self, lock, counter, limit=limit, ttl=ttl)
        _check_ttl(ttl)
        args = ["" if limit is None else int(limit), _ms(ttl)]
        answer = self._call(self._guarded_count, keys=[self._k(lock), self._k(counter)], args=args)
        code, pttl = int(answer[0]), int(answer[1])
        left = None if pttl < 0 else pttl / 1000.0
        if code == -1:
            return GuardedCount(locked=True, count=None, ttl=left)
        return GuardedCount(locked=False, count=None if code < 0 else code, ttl=left)

    def release_many(self, keys: list[str]) -> None:
        """:meth:`release` of each key, in one round trip (one by one on a Cluster, whose
        scripts take keys of one slot only)."""
        if is_cluster(self._client):
            for key in keys:
                self.release(key)
            return
        if keys:
            self._call(self._release_many, keys=[self._k(key) for key in keys])

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
            # One key per DELETE: on a Cluster the keys of a batch span slots.
            for name in _scan_all(self._client, _glob_escape(self._prefix) + "*"):
                self._client.delete(name)

        self._call(run)


def _scan_all(client: RedisClient, pattern: str) -> Iterator[Any]:
    if is_cluster(client):
        # Every primary holds part of the keys.
        yield from client.scan_iter(match=pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        yield from client.scan_iter(match=pattern)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# --- connecting -----------------------------------------------------------------------

_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_PLAIN_SCHEMES = ("redis", "rediss", "unix")
SCHEMES = _PLAIN_SCHEMES + _SENTINEL_SCHEMES + _CLUSTER_SCHEMES


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def _without_fence(parts: SplitResult) -> str:
    # ``fence`` is ours; redis-py would hand an unknown query argument to the connection.
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "fence"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "yes", "true", "on"):
        return True
    if value.lower() in ("0", "no", "false", "off"):
        return False
    raise ConfigurationError("a Redis URL flag must be yes or no")


def _nodes(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``[user:password@]host:port[,host:port…]`` → (user, password, nodes)."""
    creds, at, hosts = netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = creds.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    out: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigurationError("a Redis node's port must be a number") from None
        if not host or not 0 < port < 65536:
            raise ConfigurationError("a Redis URL names an empty host or a bad port")
        out.append((host, port))
    return user, password, out


def _client_and_kind(url: str, *, socket_timeout: float, retries: int) -> tuple[RedisClient, bool]:
    if not (socket_timeout > 0 and math.isfinite(socket_timeout)):
        raise ConfigurationError("socket_timeout must be a positive number of seconds")
    if not isinstance(url, str):
        raise ConfigurationError("the Redis URL must be a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), max(0, retries)),
    }
    if scheme in _PLAIN_SCHEMES:
        try:
            plain = redis.Redis.from_url(_without_fence(parts), **timeouts)
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis URL: {exc}") from exc
        return plain, False
    query = _query(url)
    ssl = scheme.startswith("rediss")
    if scheme in _SENTINEL_SCHEMES:
        return _sentinel_client(parts.netloc, parts.path, query, ssl, timeouts), True
    if scheme in _CLUSTER_SCHEMES:
        user, password, nodes = _nodes(parts.netloc, 6379)
        startup = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]

        def connect() -> RedisCluster:
            return RedisCluster(
                startup_nodes=startup, username=user, password=password, ssl=ssl, **timeouts
            )

        return LazyCluster(connect), True
    # Never echo the URL: it may carry a password.
    raise ConfigurationError(
        f"unsupported Redis URL scheme {scheme!r}: use one of {', '.join(SCHEMES)}"
    )


def _sentinel_client(
    netloc: str, path: str, query: dict[str, str], ssl: bool, timeouts: dict[str, Any]
) -> redis.Redis:
    """``redis+sentinel://[:password@]host:port[,…]/master_name[/db]``.

    The password is the master's; sentinels that have their own take
    ``?sentinel_password=…``. TLS (``rediss+sentinel``) applies to both.
    """
    user, password, nodes = _nodes(netloc, 26379)
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ConfigurationError("a Sentinel URL ends in /master_name or /master_name/db")
    service = segments[0]
    try:
        db = int(segments[1]) if len(segments) == 2 else 0
    except ValueError:
        raise ConfigurationError("the Sentinel URL's database must be a number") from None
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeouts["socket_timeout"],
        "socket_connect_timeout": timeouts["socket_connect_timeout"],
        "ssl": ssl,
    }
    if query.get("sentinel_password"):
        sentinel_kwargs["password"] = query["sentinel_password"]
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **timeouts)  # type: ignore[no-untyped-call]
    # The pool asks the sentinels for the master on every new connection and drops
    # connections to a former master, so a failover needs no restart.
    master = sentinel.master_for(  # type: ignore[no-untyped-call]
        service, db=db, username=user, password=password, ssl=ssl, check_connection=True
    )
    return cast(redis.Redis, master)


def redis_url_from_mapping(config: Mapping[str, Any]) -> str:
    """The URL of a structured ``MOICA_AUTH_REDIS_URL``.

    ``{"sentinels": [("10.0.0.11", 26379), …], "master": "moica", "db": 0}`` or
    ``{"cluster": [("10.0.0.21", 6379), …]}``, with optional ``"username"``,
    ``"password"``, ``"sentinel_password"`` (Sentinel only), ``"tls"`` (bool) and
    ``"fence"`` (bool). Unknown keys are refused, so a typo cannot silently drop an option.
    """
    known = {"sentinels", "cluster", "master", "db", "username", "password"}
    known |= {"sentinel_password", "tls", "fence"}
    unknown = set(config) - known
    if unknown:
        raise ConfigurationError(f"unknown MOICA_AUTH_REDIS_URL keys: {sorted(unknown)}")
    if ("sentinels" in config) == ("cluster" in config):
        raise ConfigurationError('MOICA_AUTH_REDIS_URL takes either "sentinels" or "cluster"')
    kind = "sentinel" if "sentinels" in config else "cluster"
    nodes: list[str] = []
    for node in config["sentinels" if kind == "sentinel" else "cluster"]:
        if not isinstance(node, list | tuple) or len(node) != 2:
            raise ConfigurationError("each Redis node is a (host, port) pair")
        host, port = str(node[0]), node[1]
        if not isinstance(port, int) or isinstance(port, bool):
            raise ConfigurationError("a Redis node's port must be an integer")
        nodes.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not nodes:
        raise ConfigurationError("name at least one Redis node")
    creds = ""
    if config.get("username") or config.get("password"):
        creds = quote(str(config.get("username") or ""), safe="")
        if config.get("password"):
            creds += ":" + quote(str(config["password"]), safe="")
        creds += "@"
    scheme = ("rediss+" if config.get("tls") else "redis+") + kind
    path = ""
    if kind == "sentinel":
        master = config.get("master")
        if not isinstance(master, str) or not master:
            raise ConfigurationError('a Sentinel MOICA_AUTH_REDIS_URL needs "master"')
        db = config.get("db", 0)
        if not isinstance(db, int) or isinstance(db, bool) or db < 0:
            raise ConfigurationError("the Redis database is a non-negative integer")
        path = "/" + quote(master, safe="") + f"/{db}"
    query: dict[str, str] = {}
    if kind == "sentinel" and config.get("sentinel_password"):
        query["sentinel_password"] = str(config["sentinel_password"])
    if "fence" in config:
        query["fence"] = "yes" if config["fence"] else "no"
    tail = "?" + urlencode(query) if query else ""
    return f"{scheme}://{creds}{','.join(nodes)}{path}{tail}"


def redis_client_from_url(
    url: str, *, socket_timeout: float = 1.0, retries: int = 1
) -> RedisClient:
    """A lazily connecting client for ``url``.

    * ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL syntax);
    * ``redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]``
      (``rediss+sentinel://`` for TLS; ``?sentinel_password=`` when the sentinels
      require one): the master that the sentinels name, followed across failovers;
    * ``redis+cluster://[user:password@]host:port[,host:port…]`` (``rediss+cluster://``):
      a Redis Cluster, found from any of the nodes named.
    """
    return _client_and_kind(url, socket_timeout=socket_timeout, retries=retries)[0]


def add_many(store: KeyValueStore, items: Mapping[str, bytes], *, ttl: float | None) -> bool:
    """``store.add_many(items, ttl=ttl)`` when the store has it; otherwise ``add`` of each
    item in order, stopping at the first key already present (the items before it stay
    stored, so order them so that a partial write is harmless)."""
    method = getattr(store, "add_many", None)
    if callable(method):
        return bool(method(items, ttl=ttl))
    return all(store.add(key, value, ttl=ttl) for key, value in items.items())


@dataclass(frozen=True)
class GuardedCount:
    """The answer of :func:`guarded_count`: whether the lock was set (then nothing was
    counted), the counter's new value (``None`` when locked or at the limit) and the TTL
    in seconds left on the lock when locked, else on the counter (``None``: none, or not
    read: an unlimited count past which the caller refuses reads it with ``ttl``)."""

    locked: bool
    count: int | None
    ttl: float | None


def guarded_count(
    store: KeyValueStore, lock: str, counter: str, *, limit: int | None, ttl: float
) -> GuardedCount:
    """Count one more on ``counter`` (a fixed window of ``ttl`` seconds) unless ``lock``
    is set: with ``limit``, as :meth:`~KeyValueStore.reserve` (not counted at the limit);
    without, as :meth:`~KeyValueStore.incr`.

    A store may do it in one step (``RedisStore`` in one round trip); otherwise it is
    ``get`` of the lock, then ``reserve`` or ``incr``, as callers did before."""
    method = getattr(store, "guarded_count", None)
    if callable(method):
        return cast(GuardedCount, method(lock, counter, limit=limit, ttl=ttl))
    return _guarded_count_generic(store, lock, counter, limit=limit, ttl=ttl)


def _guarded_count_generic(
    store: KeyValueStore, lock: str, counter: str, *, limit: int | None, ttl: float
) -> GuardedCount:
    if store.get(lock) is not None:
        return GuardedCount(locked=True, count=None, ttl=store.ttl(lock))
    count = (
        store.incr(counter, ttl=ttl)
        if limit is None
        else store.reserve(counter, limit=limit, ttl=ttl)
    )
    # The counter's TTL only matters to a refusal at the limit; past an unlimited count
    # the caller asks for it (``None`` here) when it needs it.
    left = store.ttl(counter) if count is None else None
    return GuardedCount(locked=False, count=count, ttl=left)


def release_many(store: KeyValueStore, keys: list[str]) -> None:
    """``store.release`` of each key; in one step when the store can (``release_many``)."""
    method = getattr(store, "release_many", None)
    if callable(method):
        method(keys)
        return
    for key in keys:
        store.release(key)


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
    * ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
      ``redis+cluster://`` (and their TLS forms): a :class:`RedisStore` (connections
      are made lazily and pooled, so reading the setting is cheap).

    Anything else raises :class:`ConfigurationError`.
    """
    if url is None or url == "" or url == "memory://":
        return _singleton(("memory://", prefix), MemoryStore)
    if not isinstance(url, str):
        raise ConfigurationError("the store URL must be a string")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        # Never echo the URL: it may carry a password.
        raise ConfigurationError(
            f"unsupported store URL scheme {scheme!r}: use one of {', '.join(SCHEMES)} or memory://"
        )
    return _singleton((url, prefix), lambda: RedisStore.from_url(url, prefix=prefix))
