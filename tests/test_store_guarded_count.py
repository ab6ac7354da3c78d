"""``guarded_count`` and ``release_many``: the lock check and the count of a rate limit
in one store step (one Redis round trip), on the memory store, a plain Redis store (its
Lua script), a fenced Redis store (the generic path) and a store written against the
protocol alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.connection import AbstractConnection

from moica_auth.stores import (
    KeyValueStore,
    MemoryStore,
    RedisStore,
    guarded_count,
    release_many,
)


class ProtocolOnlyStore:
    """A store with the protocol's methods only (no ``guarded_count``/``release_many``)."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name in ("guarded_count", "release_many"):
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.fixture(name="any_store", params=["memory", "protocol-only", "redis", "redis-fenced"])
def any_store_fixture(request: pytest.FixtureRequest) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "protocol-only":
        yield ProtocolOnlyStore()  # type: ignore[misc]
        return
    url = request.getfixturevalue("redis_url")
    if request.param == "redis-fenced":
        url += ("&" if "?" in url else "?") + "fence=yes"
    store = RedisStore.from_url(url, prefix=f"test:{uuid.uuid4().hex}:")
    assert store.fenced is (request.param == "redis-fenced")
    try:
        yield store
    finally:
        store.clear()
        store.client.close()


def test_with_a_limit_counts_up_to_it_then_refuses(any_store: KeyValueStore) -> None:
    for expected in (1, 2):
        found = guarded_count(any_store, "lock", "slot", limit=2, ttl=60)
        assert not found.locked and found.count == expected
    refused = guarded_count(any_store, "lock", "slot", limit=2, ttl=60)
    assert not refused.locked and refused.count is None
    assert refused.ttl is not None and 0 < refused.ttl <= 60
    # Not counted at the limit: one release makes room for exactly one more.
    any_store.release("slot")
    assert guarded_count(any_store, "lock", "slot", limit=2, ttl=60).count == 2


def test_without_a_limit_counts_past_any_value(any_store: KeyValueStore) -> None:
    counts = [guarded_count(any_store, "lock", "n", limit=None, ttl=60).count for _ in range(4)]
    assert counts == [1, 2, 3, 4]
    left = any_store.ttl("n")
    assert left is not None and 0 < left <= 60


@pytest.mark.parametrize("limit", [3, None])
def test_a_lock_refuses_without_counting(any_store: KeyValueStore, limit: int | None) -> None:
    any_store.set("lock", b"1", ttl=30)
    found = guarded_count(any_store, "lock", "slot", limit=limit, ttl=60)
    assert found.locked and found.count is None
    assert found.ttl is not None and 0 < found.ttl <= 30
    assert any_store.get("slot") is None
    any_store.delete("lock")
    assert guarded_count(any_store, "lock", "slot", limit=limit, ttl=60).count == 1


def test_release_many_gives_back_one_slot_each_and_never_goes_below_zero(
    any_store: KeyValueStore,
) -> None:
    for _ in range(2):
        any_store.reserve("a", limit=5, ttl=60)
    any_store.reserve("b", limit=5, ttl=60)
    release_many(any_store, ["a", "b", "c"])
    assert any_store.reserve("a", limit=5, ttl=60) == 2
    assert any_store.reserve("b", limit=5, ttl=60) == 1
    assert any_store.reserve("c", limit=5, ttl=60) == 1
    release_many(any_store, [])


def _round_trips(fn: Any) -> int:
    count = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        fn()
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return count[0]


def test_plain_redis_does_each_in_one_round_trip(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        store.ping()  # connect (and load nothing else) before counting
        guarded_count(store, "lock", "slot", limit=3, ttl=60)  # loads the script once
        release_many(store, ["slot"])
        assert _round_trips(lambda: guarded_count(store, "lock", "slot", limit=3, ttl=60)) == 1
        assert _round_trips(lambda: guarded_count(store, "lock", "n", limit=None, ttl=60)) == 1
        assert _round_trips(lambda: release_many(store, ["slot", "n", "x"])) == 1
    finally:
        store.clear()
        store.client.close()
