"""Both CRL index stores, on a real Redis: atomic swap, numbering, isolation, locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from moica_auth.exceptions import StoreUnavailable
from moica_auth.revocation.crl import COMPLETE_SCOPE, ParsedCrl, decode_entry
from moica_auth.revocation.store import MemoryIndexStore, RedisIndexStore, RevocationIndexStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KID_G2 = "FA9B3467" + "0" * 32
KID_G3 = "4720A3B1" + "0" * 32


def _packed(second: int, reason: int = 1) -> bytes:
    # The index format: revocationDate content + raw crlEntryExtensions (CRLReason).
    extensions = bytes.fromhex("300c300a0603551d1504030a01") + bytes((reason,))
    return f"2601010000{second:02d}Z".encode() + extensions


def crl(
    number: int,
    entries: dict[int, bytes],
    *,
    kid: str = KID_G3,
    scope: str = COMPLETE_SCOPE,
    url: str | None = "http://crl.test/complete.crl",
) -> ParsedCrl:
    return ParsedCrl(
        issuer_key_id=kid,
        signer_key_id=kid,
        issuer_name="C=TW",
        number=number,
        this_update=T0 + timedelta(hours=number % 1000),
        next_update=T0 + timedelta(days=2),
        scope=scope,
        scope_names=tuple(scope.split("|")) if scope else (),
        only_user_certs=False,
        only_ca_certs=False,
        entries=entries,
        url=url,
    )


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request) -> RevocationIndexStore:
    if request.param == "memory":
        return MemoryIndexStore()
    client = request.getfixturevalue("redis_client")
    return RedisIndexStore(client, prefix=f"t:{request.node.name}")


def test_replace_lookup_and_info(store: RevocationIndexStore) -> None:
    assert store.info(KID_G3, COMPLETE_SCOPE) is None
    assert store.read(KID_G3, 5) == []
    assert store.replace(crl(10, {5: _packed(7, 6), -3: _packed(1)}), fetched_at=T0, etag='"e"')
    entry = store.lookup(KID_G3, COMPLETE_SCOPE, 5)
    assert entry is not None
    assert entry.is_hold
    assert entry.revoked_at == T0 + timedelta(seconds=7)
    assert store.lookup(KID_G3, COMPLETE_SCOPE, -3) is not None
    assert store.lookup(KID_G3, COMPLETE_SCOPE, 6) is None
    info = store.info(KID_G3, COMPLETE_SCOPE)
    assert info is not None
    assert (info.number, info.entries, info.fetched_at, info.etag) == (10, 2, T0, '"e"')
    assert store.info_for_url("http://crl.test/complete.crl") == info
    assert [i.number for i in store.all_info()] == [10]


def test_older_or_equal_number_never_replaces(store: RevocationIndexStore) -> None:
    assert store.replace(crl(20, {1: _packed(1)}))
    assert not store.replace(crl(19, {}))
    assert not store.replace(crl(20, {}))
    assert store.lookup(KID_G3, COMPLETE_SCOPE, 1) is not None
    info = store.info(KID_G3, COMPLETE_SCOPE)
    assert info is not None
    assert info.number == 20
    # Huge CRL numbers (20 octets, RFC 5280 §5.2.3) compare correctly.
    big = 2**159 - 1
    assert store.replace(crl(big, {}))
    assert not store.replace(crl(big - 1, {1: _packed(1)}))
    assert store.lookup(KID_G3, COMPLETE_SCOPE, 1) is None


def test_entries_are_per_issuer_key(store: RevocationIndexStore) -> None:
    assert store.replace(crl(1, {42: _packed(0)}, kid=KID_G2))
    assert store.read(KID_G3, 42) == []
    assert store.replace(crl(1, {}, kid=KID_G3))
    [(info, packed)] = store.read(KID_G3, 42)
    assert packed is None
    assert info.issuer_key_id == KID_G3
    assert store.lookup(KID_G2, COMPLETE_SCOPE, 42) is not None


def test_scopes_are_separate(store: RevocationIndexStore) -> None:
    x = "uri:http://crl.test/X.crl"
    assert store.replace(crl(3, {7: _packed(0)}, scope=x, url="http://crl.test/X.crl"))
    assert store.replace(crl(1, {}, scope=COMPLETE_SCOPE))
    answers = {info.scope: packed for info, packed in store.read(KID_G3, 7)}
    assert answers[x] is not None
    assert answers[COMPLETE_SCOPE] is None
    assert store.info_for_url("http://crl.test/X.crl").scope == x  # type: ignore[union-attr]


def test_errors_are_recorded_next_to_the_last_good_crl(store: RevocationIndexStore) -> None:
    url = "http://crl.test/complete.crl"
    assert store.replace(crl(1, {}))
    store.record_error(url, "crl_invalid: truncated", at=T0)
    info = store.info(KID_G3, COMPLETE_SCOPE)
    assert info is not None
    assert (info.last_error, info.last_error_at) == ("crl_invalid: truncated", T0)
    assert store.last_error(url) == ("crl_invalid: truncated", T0)
    store.clear_error(url)
    assert store.last_error(url) is None
    store.record_error(url, "x", at=T0)
    assert store.replace(crl(2, {}))  # a successful install clears it
    assert store.last_error(url) is None


def test_lock_is_exclusive(store: RevocationIndexStore) -> None:
    with store.lock("refresh:a", 30) as first:
        assert first
        with store.lock("refresh:a", 30) as second:
            assert not second
        with store.lock("refresh:b", 30) as other:
            assert other
        results: list[bool] = []

        def contend() -> None:
            with store.lock("refresh:a", 30) as got:
                results.append(got)

        threads = [threading.Thread(target=contend) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [False] * 4
    with store.lock("refresh:a", 30) as again:
        assert again


def test_lock_waiter_gets_it_after_release(store: RevocationIndexStore) -> None:
    release = threading.Event()
    got: list[bool] = []
    entered = threading.Event()

    def holder() -> None:
        with store.lock("w", 30) as held:
            assert held
            entered.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(10)

    def waiter() -> None:
        with store.lock("w", 30, wait=30) as acquired:
            got.append(acquired)

    w = threading.Thread(target=waiter)
    w.start()
    release.set()
    t.join()
    w.join()
    assert got == [True]


def test_redis_lock_has_a_ttl_and_checks_its_token(redis_client: redis.Redis) -> None:
    store = RedisIndexStore(redis_client, prefix="t:ttl")
    with store.lock("x", 30) as held:
        assert held
        assert 0 < redis_client.pttl("t:ttl:lock:x") <= 30_000
        # Someone else's token (after our TTL expired) must survive our release.
        redis_client.set("t:ttl:lock:x", b"someone-else")
    assert redis_client.get("t:ttl:lock:x") == b"someone-else"


def test_swap_is_atomic_for_concurrent_readers(store: RevocationIndexStore) -> None:
    # Generation n lists every serial with revocationDate second == n % 60: a reader
    # pairing one generation's info with another's entries would see a mismatch.
    serials = range(200)
    store.replace(crl(1, dict.fromkeys(serials, _packed(1))))
    stop = threading.Event()
    mismatches: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                read = store.read(KID_G3, 123)
            except StoreUnavailable:
                # Failing closed is allowed when swaps never pause (here, back to back);
                # what must never happen is a mixed answer.
                continue
            for info, packed in read:
                reads[0] += 1
                if packed is None:
                    mismatches.append(f"missing in {info.number}")
                elif decode_entry(packed).revoked_at.second != info.number % 60:
                    mismatches.append(f"mixed generation {info.number}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(2, 40):
            assert store.replace(crl(n, dict.fromkeys(serials, _packed(n % 60))))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert reads[0] > 0
    assert mismatches == []


def test_redis_swap_deletes_the_old_generation(redis_client: redis.Redis) -> None:
    store = RedisIndexStore(redis_client, prefix="t:gc")
    for n in range(1, 5):
        store.replace(crl(n, {i: _packed(n) for i in range(25_000)}))
    assert not store.replace(crl(3, {1: _packed(0)}))
    generations = list(redis_client.scan_iter("t:gc:gen:*"))
    assert len(generations) == 1
    assert redis_client.hlen(generations[0]) == 25_000
    assert redis_client.ttl(generations[0]) == -1  # persisted once current


def test_redis_outage_is_store_unavailable() -> None:
    store = RedisIndexStore.from_url("redis://127.0.0.1:9/0", timeout=0.5)
    with pytest.raises(StoreUnavailable) as exc:
        store.read(KID_G3, 1)
    assert exc.value.code == "store_unavailable"
    with pytest.raises(StoreUnavailable):
        store.replace(crl(1, {}))
    with pytest.raises(StoreUnavailable), store.lock("x", 1):
        pass


# --- adversarial review ---------------------------------------------------------------


def test_redis_missing_generation_is_store_unavailable_not_good(redis_client: redis.Redis) -> None:
    # The current generation can vanish under the pointer: an eviction policy such as
    # allkeys-lru, a FLUSH, an operator's DEL. Every lookup then found no entry and read
    # "not listed" — a revoked certificate passed. It must fail closed instead.
    store = RedisIndexStore(redis_client, prefix="t:evicted")
    assert store.replace(crl(1, {7: _packed(1), 8: _packed(1)}))
    assert store.read(KID_G3, 7)[0][1] is not None
    (generation,) = redis_client.scan_iter("t:evicted:gen:*")
    redis_client.delete(generation)
    for serial in (7, 9):
        with pytest.raises(StoreUnavailable) as exc:
            store.read(KID_G3, serial)
        assert exc.value.code == "store_unavailable"
    # A CRL with no entries has no hash at all, and that is fine.
    empty = RedisIndexStore(redis_client, prefix="t:evicted-empty")
    assert empty.replace(crl(1, {}))
    assert empty.read(KID_G3, 7)[0][1] is None


class _CrashingWriter(RedisIndexStore):
    """Loses part of the generation before the swap: a writer that died mid-write and a
    retry that reused nothing, or a build hash that expired before the swap."""

    def _write_generation(self, gen_key: str, entries) -> None:  # type: ignore[no-untyped-def]
        super()._write_generation(gen_key, entries)
        self.client.hdel(gen_key, format(next(iter(entries)), "x"))


def test_redis_swap_refuses_an_incomplete_generation(redis_client: redis.Redis) -> None:
    good = RedisIndexStore(redis_client, prefix="t:partial")
    assert good.replace(crl(1, {1: _packed(1)}))
    crashing = _CrashingWriter(redis_client, prefix="t:partial")
    with pytest.raises(StoreUnavailable):
        crashing.replace(crl(2, {i: _packed(2) for i in range(1, 100)}))
    # The last good generation stays current and answers; the partial one is gone.
    info, packed = good.read(KID_G3, 1)[0]
    assert info.number == 1
    assert packed is not None
    assert len(list(redis_client.scan_iter("t:partial:gen:*"))) == 1


def test_concurrent_replace_the_lower_number_never_wins(store: RevocationIndexStore) -> None:
    # Two refreshers (e.g. after the refresh lock expired under a slow writer) install
    # interleaved CRL numbers; readers must only ever see the number go up.
    numbers = list(range(1, 61))
    start = threading.Barrier(3)
    seen: list[int] = []
    stop = threading.Event()

    failures: list[BaseException] = []

    def writer(mine: list[int]) -> None:
        start.wait()
        try:
            for n in mine:
                store.replace(crl(n, {i: _packed(n % 60) for i in range(50)}))
        except BaseException as exc:  # a writer giving up under contention is a failure
            failures.append(exc)

    def reader() -> None:
        start.wait()
        while not stop.is_set():
            for info, _ in store.read(KID_G3, 1):
                seen.append(info.number)

    writers = [
        threading.Thread(target=writer, args=(numbers[0::2],)),
        threading.Thread(target=writer, args=(list(reversed(numbers[1::2])),)),
    ]
    watcher = threading.Thread(target=reader)
    for t in (*writers, watcher):
        t.start()
    for t in writers:
        t.join()
    stop.set()
    watcher.join()
    assert failures == []
    info = store.info(KID_G3, COMPLETE_SCOPE)
    assert info is not None
    assert info.number == 60
    assert seen == sorted(seen)
    if isinstance(store, RedisIndexStore):
        pattern = store.prefix.replace("[", "\\[").replace("]", "\\]") + ":gen:*"
        assert len(list(store.client.scan_iter(pattern))) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://crl.test/a b.crl",
        "http://crl.test:80/a.crl",
        "http://crl.test/a.crl\r\nSET x y",
        "http://crl.test/*",
        "err:http://crl.test/a.crl",
        "",
    ],
    ids=["space", "colon", "crlf", "glob", "key-like", "empty"],
)
def test_urls_are_opaque_in_key_names(store: RevocationIndexStore, url: str) -> None:
    # Keys are binary-safe and each kind has its own literal segment (url:, err:, lock:),
    # so no URL can name another URL's or another issuer's keys.
    neighbour = "http://crl.test/a.crl"
    assert store.replace(crl(1, {1: _packed(1)}, url=neighbour, scope="uri:n"))
    assert store.replace(crl(1, {2: _packed(1)}, url=url or None, scope="uri:x"))
    store.record_error(url, "crl_invalid: boom")
    assert store.last_error(neighbour) is None
    if url:
        found = store.info_for_url(url)
        assert found is not None
        assert found.scope == "uri:x"
    other = store.info_for_url(neighbour)
    assert other is not None
    assert other.scope == "uri:n"
    with store.lock(f"refresh:{url}", 5) as mine, store.lock(f"refresh:{neighbour}", 5) as theirs:
        assert mine and theirs
