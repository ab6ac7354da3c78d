"""The CRL index: the last good CRL per (issuer key, scope), shared by the fleet.

Contract (RFC 5280 §6.3.3 keeps one CRL per issuer and scope):

* ``replace`` installs a newer CRL atomically and refuses an older or equal CRL number
  (returns ``False`` and keeps the last good one), so a replayed or rolled-back CRL
  can never hide a revocation;
* readers see the old or the new generation, never a mix — in Redis the new
  generation is written to a fresh hash, the pointer is switched by a Lua script that
  compares CRL numbers, and lookups read pointer and entry in one script;
* entries are kept per issuer key, so a serial revoked under MOICA G2 never rejects a
  G3 certificate with the same serial;
* ``lock`` gives one refresh at a time across the fleet (Redis ``SET NX PX`` with a
  token-checked release).

Redis failures raise :class:`~moica_auth.exceptions.StoreUnavailable`: logins fail
closed rather than pass unchecked.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import redis

from moica_auth.exceptions import StoreUnavailable
from moica_auth.revocation.crl_index import ParsedCrl, RevokedEntry, decode_entry
from moica_auth.stores import REDIS_ERRORS, RedisClient, is_cluster, redis_client_from_url

__all__ = [
    "CrlInfo",
    "MemoryIndexStore",
    "RedisIndexStore",
    "RevocationIndexStore",
]


@dataclass(frozen=True)
class CrlInfo:
    """What is installed for one (issuer key, scope): the CRL's metadata, no entries."""

    issuer_key_id: str
    scope: str
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    fetched_at: datetime
    url: str | None = None
    issuer_name: str = ""
    signer_key_id: str = ""
    scope_names: tuple[str, ...] = ()
    only_user_certs: bool = False
    only_ca_certs: bool = False
    sha256: str = ""
    size: int = 0
    etag: str | None = None
    last_modified: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedCrl,
        *,
        fetched_at: datetime,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> CrlInfo:
        return cls(
            issuer_key_id=parsed.issuer_key_id,
            scope=parsed.scope,
            number=parsed.number,
            this_update=parsed.this_update,
            next_update=parsed.next_update,
            entries=len(parsed.entries),
            fetched_at=fetched_at,
            url=parsed.url,
            issuer_name=parsed.issuer_name,
            signer_key_id=parsed.signer_key_id,
            scope_names=parsed.scope_names,
            only_user_certs=parsed.only_user_certs,
            only_ca_certs=parsed.only_ca_certs,
            sha256=parsed.sha256,
            size=parsed.size,
            etag=etag,
            last_modified=last_modified,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        out["scope_names"] = list(self.scope_names)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CrlInfo:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("this_update", "next_update", "fetched_at", "last_error_at"):
            if fields.get(key):
                fields[key] = datetime.fromisoformat(fields[key])
        fields["scope_names"] = tuple(fields.get("scope_names") or ())
        return cls(**fields)


class RevocationIndexStore(Protocol):
    """Where verified CRLs live between refreshes (see the module docstring)."""

    def replace(
        self,
        parsed: ParsedCrl,
        *,
        fetched_at: datetime | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> bool:
        """Install ``parsed`` if its CRL number is higher than the installed one."""
        ...

    def lookup(self, issuer_key_id: str, scope: str, serial: int) -> RevokedEntry | None:
        """The entry for ``serial`` in the installed CRL, or None (not listed / no CRL)."""
        ...

    def info(self, issuer_key_id: str, scope: str) -> CrlInfo | None: ...

    def read(self, issuer_key_id: str, serial: int) -> list[tuple[CrlInfo, bytes | None]]:
        """Every installed scope of an issuer key with the packed entry for ``serial``.

        One consistent read per scope: the info and the entry come from the same
        generation. This is the login-path call.
        """
        ...

    def all_info(self) -> list[CrlInfo]: ...

    def info_for_url(self, url: str) -> CrlInfo | None: ...

    def record_error(self, url: str, error: str, *, at: datetime | None = None) -> None: ...

    def clear_error(self, url: str) -> None: ...

    def last_error(self, url: str) -> tuple[str, datetime] | None: ...

    def lock(self, name: str, ttl: float, *, wait: float = 0.0) -> AbstractContextManager[bool]:
        """Hold ``name`` for at most ``ttl`` seconds; yields whether it was acquired."""
        ...


def _with_error(info: CrlInfo, error: tuple[str, datetime] | None) -> CrlInfo:
    if error is None:
        return info
    return replace(info, last_error=error[0], last_error_at=error[1])


# --- in-process -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Generation:
    info: CrlInfo
    entries: Mapping[int, bytes]


class MemoryIndexStore:
    """One process's index: generations swapped by reference under a lock.

    Readers take a reference to one immutable generation (info + entries together), so
    they never see a mix. For a single server; a fleet uses :class:`RedisIndexStore`.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._by_issuer: dict[str, dict[str, _Generation]] = {}
        self._urls: dict[str, tuple[str, str]] = {}
        self._errors: dict[str, tuple[str, datetime]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def replace(
        self,
        parsed: ParsedCrl,
        *,
        fetched_at: datetime | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> bool:
        info = CrlInfo.from_parsed(
            parsed,
            fetched_at=fetched_at or datetime.now(UTC),
            etag=etag,
            last_modified=last_modified,
        )
        with self._mutex:
            scopes = dict(self._by_issuer.get(parsed.issuer_key_id, {}))
            current = scopes.get(parsed.scope)
            if current is not None and current.info.number >= parsed.number:
                return False
            scopes[parsed.scope] = _Generation(info=info, entries=parsed.entries)
            # Publish a new dict: readers holding the old one keep a consistent view.
            self._by_issuer[parsed.issuer_key_id] = scopes
            if parsed.url:
                self._urls[parsed.url] = (parsed.issuer_key_id, parsed.scope)
                self._errors.pop(parsed.url, None)
            return True

    def lookup(self, issuer_key_id: str, scope: str, serial: int) -> RevokedEntry | None:
        generation = self._by_issuer.get(issuer_key_id, {}).get(scope)
        if generation is None:
            return None
        packed = generation.entries.get(serial)
        return None if packed is None else decode_entry(packed)

    def info(self, issuer_key_id: str, scope: str) -> CrlInfo | None:
        generation = self._by_issuer.get(issuer_key_id, {}).get(scope)
        if generation is None:
            return None
        url = generation.info.url
        return _with_error(generation.info, self._errors.get(url) if url else None)

    def read(self, issuer_key_id: str, serial: int) -> list[tuple[CrlInfo, bytes | None]]:
        scopes = self._by_issuer.get(issuer_key_id, {})
        return [(g.info, g.entries.get(serial)) for g in scopes.values()]

    def all_info(self) -> list[CrlInfo]:
        out: list[CrlInfo] = []
        for kid, scopes in list(self._by_issuer.items()):
            for scope in scopes:
                info = self.info(kid, scope)
                if info is not None:
                    out.append(info)
        return out

    def info_for_url(self, url: str) -> CrlInfo | None:
        where = self._urls.get(url)
        return None if where is None else self.info(*where)

    def record_error(self, url: str, error: str, *, at: datetime | None = None) -> None:
        self._errors[url] = (error, at or datetime.now(UTC))

    def clear_error(self, url: str) -> None:
        self._errors.pop(url, None)

    def last_error(self, url: str) -> tuple[str, datetime] | None:
        return self._errors.get(url)

    def _try_lock(self, name: str, ttl: float) -> str | None:
        with self._mutex:
            now = time.monotonic()
            held = self._locks.get(name)
            if held is not None and held[1] > now:
                return None
            token = secrets.token_hex(8)
            self._locks[name] = (token, now + ttl)
            return token

    @contextmanager
    def _lock(self, name: str, ttl: float, wait: float) -> Iterator[bool]:
        deadline = time.monotonic() + wait
        token = self._try_lock(name, ttl)
        while token is None and time.monotonic() < deadline:
            time.sleep(0.05)
            token = self._try_lock(name, ttl)
        try:
            yield token is not None
        finally:
            if token is not None:
                with self._mutex:
                    if self._locks.get(name, ("", 0.0))[0] == token:
                        del self._locks[name]

    def lock(self, name: str, ttl: float, *, wait: float = 0.0) -> AbstractContextManager[bool]:
        return self._lock(name, ttl, wait)


# --- Redis ----------------------------------------------------------------------------

# Switch the pointer only if the new CRL number is higher. Numbers are compared as
# zero-padded decimal strings: CRL numbers reach 20 octets (RFC 5280 §5.2.3), beyond
# Lua's doubles. The new hash was written with an expiry (so a crashed writer leaves
# no garbage); PERSIST makes it permanent as it becomes current. A generation that is
# not complete (HLEN differs from the entry count: lost writes, or the build expiry hit
# before the swap) is never made current: readers would take its gaps for "not listed".
# The old generation is unlinked in the same script, so a writer that dies right after
# the swap leaves no permanent garbage (readers use scripts too, so none still reads it).
# The scripts touch only keys passed in KEYS (Redis Cluster routes by them): the writer
# names the generation it expects to replace (KEYS[7], ARGV[7]) and retries when another
# writer moved the pointer in between.
_SWAP = """
local cur = redis.call('GET', KEYS[1])
local curgen = ''
if cur then
  local d = cjson.decode(cur)
  if d['n'] >= ARGV[1] then return false end
  curgen = d['gen']
end
if curgen ~= ARGV[7] then
  return redis.error_reply('moica: the CRL pointer moved, retry')
end
local count = tonumber(ARGV[6])
if count > 0 and redis.call('HLEN', KEYS[2]) ~= count then
  return redis.error_reply('moica: incomplete CRL generation, not installed')
end
redis.call('PERSIST', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[5], ARGV[5])
  redis.call('DEL', KEYS[6])
end
if cur then redis.call('UNLINK', KEYS[7]) end
return 1
"""

# Pointer and entry read together, so a reader never pairs one generation's info with
# another's entries, and never reads a hash that was just deleted. A pointer whose hash
# is gone (evicted under allkeys-lru, flushed, deleted by hand) is an error, never
# "not listed": without the hash every revoked certificate would read as good.
# The caller passes the layout it expects (KEYS[1] the issuer's scope set, then one
# pointer and one generation key per scope; ARGV[3..] the generation ids); the script
# answers 'moved' when the index no longer has that layout, so it names only its KEYS.
_READ = """
local n = tonumber(ARGV[2])
if redis.call('SCARD', KEYS[1]) ~= n then return {'moved'} end
local out = {'ok'}
for i = 1, n do
  local p = redis.call('GET', KEYS[2 * i])
  if not p then return {'moved'} end
  local d = cjson.decode(p)
  if d['gen'] ~= ARGV[2 + i] then return {'moved'} end
  local g = KEYS[2 * i + 1]
  local e = redis.call('HGET', g, ARGV[1])
  if not e and d['entries'] > 0 and redis.call('EXISTS', g) == 0 then
    return redis.error_reply('moica: the current CRL generation is missing')
  end
  out[#out + 1] = p
  out[#out + 1] = e or ''
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_CHUNK = 10_000
_LAYOUTS_MAX = 256
_ATTEMPTS = 4
# A swap retries while another refresher keeps moving the pointer to lower numbers; it
# stops as soon as the pointer holds our number or a higher one. Each retry is one GET
# and one script, and two refreshers of one CRL are the most a fleet runs at once.
_SWAP_ATTEMPTS = 32
_BUILD_TTL_MS = 3_600_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _has_hash_tag(prefix: str) -> bool:
    # Redis hashes only what is between the first "{" and the next "}", if non-empty.
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    return start >= 0 and end > start + 1


def _field(serial: int) -> str:
    return format(serial, "x")


@contextmanager
def _unavailable_on_redis_error() -> Iterator[None]:
    """A Redis failure inside the block raises StoreUnavailable (see the module docstring)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StoreUnavailable("the CRL index (Redis) is unavailable") from exc


class RedisIndexStore:
    """The fleet's index in Redis (see the module docstring for the key layout).

    Keys: ``{prefix}:ptr:{kid}:{scope}`` (JSON info + generation + padded number),
    ``{prefix}:gen:{id}`` (hash serial-hex -> packed entry), ``{prefix}:scopes:{kid}``,
    ``{prefix}:kids``, ``{prefix}:url:{url}``, ``{prefix}:err:{url}``,
    ``{prefix}:lock:{name}``. The scripts touch only the keys passed to them. On a
    Redis Cluster the prefix is wrapped in a hash tag (``{moica:crl}``) unless it has one,
    so every key of the index shares one hash slot and the swap stays one atomic script.
    """

    def __init__(self, client: RedisClient, *, prefix: str = "moica:crl") -> None:
        if is_cluster(client) and not _has_hash_tag(prefix):
            prefix = "{" + prefix + "}"
        self.client = client
        self.prefix = prefix
        self._swap = client.register_script(_SWAP)
        self._read = client.register_script(_READ)
        self._release = client.register_script(_RELEASE)
        # issuer key id -> [(scope, generation id)] last seen; the read script checks it.
        self._layouts: dict[str, list[tuple[str, str]]] = {}

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "moica:crl", timeout: float = 2.0
    ) -> RedisIndexStore:
        """Any URL :func:`moica_auth.stores.redis_client_from_url` takes (Sentinel, Cluster)."""
        return cls(redis_client_from_url(url, socket_timeout=timeout), prefix=prefix)

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def replace(
        self,
        parsed: ParsedCrl,
        *,
        fetched_at: datetime | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> bool:
        info = CrlInfo.from_parsed(
            parsed,
            fetched_at=fetched_at or datetime.now(UTC),
            etag=etag,
            last_modified=last_modified,
        )
        generation = secrets.token_hex(12)
        gen_key = self._k("gen", generation)
        number = f"{parsed.number:050d}"
        pointer = json.dumps({**info.to_json(), "gen": generation, "n": number})
        with _unavailable_on_redis_error():
            current = self.client.get(self._k("ptr", parsed.issuer_key_id, parsed.scope))
            if current is not None and json.loads(current)["n"] >= number:
                return False  # cheap early refusal; the script re-checks atomically
            try:
                self._write_generation(gen_key, parsed.entries)
                old = self._swap_checked(parsed, gen_key, number, pointer, current)
            except redis.RedisError:
                # Best effort: the build expiry removes it otherwise.
                with contextlib.suppress(redis.RedisError):
                    self.client.unlink(gen_key)
                raise
            if old is None:
                self.client.unlink(gen_key)
                return False
            return True

    def _swap_checked(
        self,
        parsed: ParsedCrl,
        gen_key: str,
        number: str,
        pointer: str,
        current: Any,
    ) -> Any:
        ptr_key = self._k("ptr", parsed.issuer_key_id, parsed.scope)
        for attempt in range(_SWAP_ATTEMPTS):
            if current is not None and json.loads(current)["n"] >= number:
                return None  # a refresher installed this number or a higher one meanwhile
            old_gen = "" if current is None else str(json.loads(current)["gen"])
            try:
                return self._swap(
                    keys=[
                        self._k("ptr", parsed.issuer_key_id, parsed.scope),
                        gen_key,
                        self._k("scopes", parsed.issuer_key_id),
                        self._k("kids"),
                        self._k("url", parsed.url or ""),
                        self._k("err", parsed.url or ""),
                        self._k("gen", old_gen) if old_gen else gen_key,
                    ],
                    args=[
                        number,
                        pointer,
                        parsed.scope,
                        parsed.issuer_key_id,
                        json.dumps([parsed.issuer_key_id, parsed.scope]) if parsed.url else "",
                        str(len(parsed.entries)),
                        old_gen,
                    ],
                )
            except redis.ResponseError as exc:
                if "pointer moved" not in str(exc) or attempt == _SWAP_ATTEMPTS - 1:
                    raise
                current = self.client.get(ptr_key)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_generation(self, gen_key: str, entries: Mapping[int, bytes]) -> None:
        items = iter(entries.items())
        pipe = self.client.pipeline(transaction=False)
        first = True
        while True:
            chunk: dict[bytes | bytearray | memoryview[int] | str | int | float, bytes] = {}
            for serial, packed in items:
                chunk[_field(serial)] = packed
                if len(chunk) >= _CHUNK:
                    break
            if not chunk:
                break
            pipe.hset(gen_key, mapping=chunk)
            if first:
                # The expiry only sticks once the hash exists.
                pipe.pexpire(gen_key, _BUILD_TTL_MS)
                first = False
            if len(pipe) >= 8:
                pipe.execute()
        if len(pipe):
            pipe.execute()

    def _pointer(self, issuer_key_id: str, scope: str) -> dict[str, Any] | None:
        raw = self.client.get(self._k("ptr", issuer_key_id, scope))
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def lookup(self, issuer_key_id: str, scope: str, serial: int) -> RevokedEntry | None:
        for info, packed in self.read(issuer_key_id, serial):
            if info.scope == scope:
                return None if packed is None else decode_entry(packed)
        return None

    def info(self, issuer_key_id: str, scope: str) -> CrlInfo | None:
        with _unavailable_on_redis_error():
            pointer = self._pointer(issuer_key_id, scope)
            if pointer is None:
                return None
            info = CrlInfo.from_json(pointer)
            return _with_error(info, self.last_error(info.url) if info.url else None)

    def _layout(self, issuer_key_id: str) -> list[tuple[str, str]]:
        """The issuer's scopes and current generations, read without a script.

        Not atomic by itself: the read script re-checks it and answers 'moved'.
        """
        scopes = sorted(_text(s) for s in self.client.smembers(self._k("scopes", issuer_key_id)))
        layout: list[tuple[str, str]] = []
        for scope in scopes:
            raw = self.client.get(self._k("ptr", issuer_key_id, scope))
            if raw is not None:
                layout.append((scope, str(json.loads(raw)["gen"])))
        if len(self._layouts) >= _LAYOUTS_MAX:
            self._layouts.clear()  # bounded: issuer key ids come from certificates
        self._layouts[issuer_key_id] = layout
        return layout

    def read(self, issuer_key_id: str, serial: int) -> list[tuple[CrlInfo, bytes | None]]:
        with _unavailable_on_redis_error():
            for _ in range(_ATTEMPTS):
                layout = self._layouts.get(issuer_key_id)
                if layout is None:
                    layout = self._layout(issuer_key_id)
                keys = [self._k("scopes", issuer_key_id)]
                for scope, generation in layout:
                    keys += [self._k("ptr", issuer_key_id, scope), self._k("gen", generation)]
                args = [_field(serial), str(len(layout)), *(g for _, g in layout)]
                flat = self._read(keys=keys, args=args)
                if _text(flat[0]) == "ok":
                    break
                self._layouts.pop(issuer_key_id, None)
            else:
                raise StoreUnavailable("the CRL index kept changing during a read")
        out: list[tuple[CrlInfo, bytes | None]] = []
        for i in range(1, len(flat), 2):
            info = CrlInfo.from_json(json.loads(flat[i]))
            out.append((info, flat[i + 1] or None))
        return out

    def all_info(self) -> list[CrlInfo]:
        with _unavailable_on_redis_error():
            out: list[CrlInfo] = []
            for kid in sorted(_text(k) for k in self.client.smembers(self._k("kids"))):
                scopes = self.client.smembers(self._k("scopes", kid))
                for scope in sorted(_text(s) for s in scopes):
                    info = self.info(kid, scope)
                    if info is not None:
                        out.append(info)
            return out

    def info_for_url(self, url: str) -> CrlInfo | None:
        with _unavailable_on_redis_error():
            raw = self.client.get(self._k("url", url))
        if raw is None:
            return None
        kid, scope = json.loads(raw)
        return self.info(kid, scope)

    def record_error(self, url: str, error: str, *, at: datetime | None = None) -> None:
        stamp = (at or datetime.now(UTC)).isoformat()
        with _unavailable_on_redis_error():
            self.client.set(self._k("err", url), json.dumps([error, stamp]))

    def clear_error(self, url: str) -> None:
        with _unavailable_on_redis_error():
            self.client.delete(self._k("err", url))

    def last_error(self, url: str) -> tuple[str, datetime] | None:
        with _unavailable_on_redis_error():
            raw = self.client.get(self._k("err", url))
        if raw is None:
            return None
        error, stamp = json.loads(raw)
        return str(error), datetime.fromisoformat(stamp)

    @contextmanager
    def _lock(self, name: str, ttl: float, wait: float) -> Iterator[bool]:
        key = self._k("lock", name)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + wait
        with _unavailable_on_redis_error():
            acquired = bool(self.client.set(key, token, nx=True, px=max(1, int(ttl * 1000))))
            while not acquired and time.monotonic() < deadline:
                time.sleep(0.05)
                acquired = bool(self.client.set(key, token, nx=True, px=max(1, int(ttl * 1000))))
        try:
            yield acquired
        finally:
            if acquired:
                # Release only our own token: after a TTL expiry another holder owns it.
                with contextlib.suppress(redis.RedisError):  # else the TTL frees it
                    self._release(keys=[key], args=[token])

    def lock(self, name: str, ttl: float, *, wait: float = 0.0) -> AbstractContextManager[bool]:
        return self._lock(name, ttl, wait)
