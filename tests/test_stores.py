"""The key/value stores: one suite, run against MemoryStore and a real redis-server."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack

import pytest

from moica_auth.exceptions import ConfigurationError, StoreUnavailable
from moica_auth.stores import (
    KeyValueStore,
    MemoryStore,
    RedisStore,
    store_from_url,
)
from tests.stores_fixtures import (
    ManualClock,
    closed_port_url,
    redis_server_with,
)

# --- semantics shared by both stores --------------------------------------------------


def test_get_set_delete(store: KeyValueStore) -> None:
    assert store.get("a") is None
    store.set("a", b"\x00\xffvalue")
    assert store.get("a") == b"\x00\xffvalue"
    store.set("a", b"other")
    assert store.get("a") == b"other"
    store.delete("a")
    assert store.get("a") is None
    store.delete("a")  # absent: no error


def test_add_sets_only_when_absent(store: KeyValueStore) -> None:
    assert store.add("lock", b"first", ttl=30) is True
    assert store.add("lock", b"second", ttl=30) is False
    assert store.get("lock") == b"first"
    store.delete("lock")
    assert store.add("lock", b"third") is True
    assert store.get("lock") == b"third"


def test_take_returns_the_value_once(store: KeyValueStore) -> None:
    store.set("k", b"v", ttl=30)
    assert store.take("k") == b"v"
    assert store.take("k") is None
    assert store.get("k") is None
    assert store.take("never") is None


def test_take_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    lock = threading.Lock()
    for round_ in range(5):
        key = f"race{round_}"
        store.set(key, b"prize", ttl=30)
        barrier = threading.Barrier(8)
        results: list[bytes | None] = []

        def worker(key: str, barrier: threading.Barrier, results: list[bytes | None]) -> None:
            barrier.wait()
            got = store.take(key)
            with lock:
                results.append(got)

        threads = [threading.Thread(target=worker, args=(key, barrier, results)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results, key=lambda r: r is None) == [b"prize"] + [None] * 7


def test_add_is_exclusive_under_concurrency(store: KeyValueStore) -> None:
    barrier = threading.Barrier(8)
    wins: list[bool] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait()
        won = store.add("mutex", str(n).encode(), ttl=30)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_incr_counts_and_sets_ttl_at_creation(store: KeyValueStore) -> None:
    assert store.incr("hits", ttl=60) == 1
    first_ttl = store.ttl("hits")
    assert first_ttl is not None and 0 < first_ttl <= 60
    assert store.incr("hits", ttl=3600) == 2
    assert store.incr("hits", ttl=3600) == 3
    later_ttl = store.ttl("hits")
    # Fixed window: later calls do not extend the TTL set at creation.
    assert later_ttl is not None and later_ttl <= 60
    assert store.get("hits") == b"3"


def test_incr_gives_a_persistent_counter_a_window(store: KeyValueStore) -> None:
    store.set("legacy", b"5")
    assert store.incr("legacy", ttl=60) == 6
    left = store.ttl("legacy")
    assert left is not None and 0 < left <= 60


def test_incr_rejects_a_non_integer_value(store: KeyValueStore) -> None:
    store.set("text", b"abc")
    with pytest.raises(ValueError):
        store.incr("text", ttl=60)
    assert store.get("text") == b"abc"


def test_incr_is_atomic_under_concurrency(store: KeyValueStore) -> None:
    def worker() -> None:
        for _ in range(25):
            store.incr("counter", ttl=60)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter") == b"200"


def test_ttl_values(store: KeyValueStore) -> None:
    assert store.ttl("absent") is None
    store.set("forever", b"x")
    assert store.ttl("forever") is None
    store.set("short", b"x", ttl=30)
    left = store.ttl("short")
    assert left is not None and 29 < left <= 30
    store.set("fractional", b"x", ttl=1.5)
    left = store.ttl("fractional")
    assert left is not None and 1 < left <= 1.5
    # set without ttl makes the key persistent again (SET semantics)
    store.set("short", b"y")
    assert store.ttl("short") is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_rejects_non_positive_ttl(store: KeyValueStore, bad: float) -> None:
    with pytest.raises(ValueError):
        store.set("k", b"v", ttl=bad)
    with pytest.raises(ValueError):
        store.add("k", b"v", ttl=bad)
    with pytest.raises(ValueError):
        store.incr("k", ttl=bad)
    assert store.get("k") is None


def test_rejects_non_bytes_values_and_empty_keys(store: KeyValueStore) -> None:
    with pytest.raises(TypeError):
        store.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.get("")


# --- expiry ---------------------------------------------------------------------------


def test_memory_store_expires_on_the_injected_clock() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    store.set("a", b"1", ttl=10)
    store.add("b", b"1", ttl=10)
    store.incr("c", ttl=10)
    clock.advance(9.999)
    assert store.get("a") == b"1"
    assert store.ttl("a") == pytest.approx(0.001)
    clock.advance(0.001)
    assert store.get("a") is None
    assert store.take("b") is None
    assert store.ttl("c") is None
    # An expired key is absent for add and incr: a new window starts.
    assert store.add("b", b"2", ttl=10) is True
    assert store.incr("c", ttl=10) == 1


def test_memory_store_sweeps_expired_entries() -> None:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0], sweep_every=4)
    for n in range(3):
        store.set(f"old{n}", b"x", ttl=1)
    now[0] = 5.0
    store.set("new", b"x")  # the fourth write sweeps
    assert "entries=1" in repr(store)


def test_redis_key_expires_in_real_time(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    store.set("brief", b"x", ttl=0.05)
    # Poll rather than assert on elapsed time: Redis expires the key on its own clock.
    for _ in range(200):
        if store.get("brief") is None:
            break
        time.sleep(0.01)
    assert store.get("brief") is None
    assert store.ttl("brief") is None


# --- Redis specifics ------------------------------------------------------------------


def test_redis_namespaces_keys_with_the_prefix(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisStore.from_url(redis_url, prefix=prefix)
    b = RedisStore.from_url(redis_url, prefix=prefix + "other:")
    a.set("k", b"a")
    assert b.get("k") is None
    assert a.client.get(prefix + "k") == b"a"
    a.clear()
    b.clear()
    assert a.client.keys(prefix + "*") == []


def test_redis_take_falls_back_without_getdel() -> None:
    # A server with GETDEL disabled behaves like Redis < 6.2.
    with redis_server_with("--rename-command", "GETDEL", "") as url:
        store = RedisStore.from_url(url)
        store.set("k", b"v")
        assert store.take("k") == b"v"
        assert store.take("k") is None
        store.set("k2", b"v2")
        assert store.take("k2") == b"v2"
        store.client.close()


def test_redis_take_fallback_is_atomic_under_concurrency() -> None:
    with redis_server_with("--rename-command", "GETDEL", "") as url:
        store = RedisStore.from_url(url)
        store.take("warm-up")  # detect the missing command once
        store.set("race", b"prize")
        barrier = threading.Barrier(8)
        results: list[bytes | None] = []
        lock = threading.Lock()

        def worker() -> None:
            barrier.wait()
            got = store.take("race")
            with lock:
                results.append(got)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(b"prize") == 1 and results.count(None) == 7
        store.client.close()


def _every_operation_raises_store_unavailable(store: RedisStore) -> None:
    calls = [
        lambda: store.get("k"),
        lambda: store.set("k", b"v", ttl=5),
        lambda: store.add("k", b"v", ttl=5),
        lambda: store.take("k"),
        lambda: store.delete("k"),
        lambda: store.incr("k", ttl=5),
        lambda: store.ttl("k"),
        store.ping,
        store.clear,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.code == "store_unavailable"
        assert caught.value.http_status == 503


def test_redis_on_a_closed_port_fails_closed() -> None:
    store = RedisStore.from_url(closed_port_url(), socket_timeout=0.5)
    _every_operation_raises_store_unavailable(store)


def test_redis_stopped_mid_test_fails_closed() -> None:
    with ExitStack() as stack:
        url = stack.enter_context(redis_server_with())
        store = RedisStore.from_url(url, socket_timeout=0.5)
        store.set("k", b"v")
        assert store.take("k") == b"v"
        stack.close()  # stops the server; the pooled connection is now dead
        _every_operation_raises_store_unavailable(store)


def test_store_unavailable_does_not_leak_the_url() -> None:
    store = RedisStore.from_url(
        closed_port_url().replace("redis://", "redis://user:s3cret-pw@"), socket_timeout=0.5
    )
    with pytest.raises(StoreUnavailable) as caught:
        store.get("k")
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in repr(store)


def test_redis_rejects_bad_socket_timeout(redis_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisStore.from_url(redis_url, socket_timeout=0)
    assert caught.value.code == "configuration_error"


# --- store_from_url -------------------------------------------------------------------


def test_store_from_url_memory_is_a_process_wide_singleton() -> None:
    a = store_from_url(None)
    assert isinstance(a, MemoryStore)
    assert store_from_url("") is a
    assert store_from_url("memory://") is a
    assert store_from_url(None, prefix="other:") is not a


def test_store_from_url_redis(redis_url: str) -> None:
    store = store_from_url(redis_url, prefix="test-from-url:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "test-from-url:"
    store.ping()
    # Shared per (url, prefix) so the connection pool is reused.
    assert store_from_url(redis_url, prefix="test-from-url:") is store


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "memcached://x", "redis-ish", "file:///tmp/x"]
)
def test_store_from_url_rejects_other_schemes(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url(url)
    assert caught.value.code == "configuration_error"
