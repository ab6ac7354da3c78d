"""Fixtures for tests that run against both key/value stores.

* ``store``: parametrised over a :class:`MemoryStore` on a pinned clock and a
  :class:`RedisStore` on the session's real redis-server (``redis_url``), each Redis test
  under its own prefix, cleared afterwards.
* ``ManualClock``: a monotonic clock the test advances by hand.
* ``redis_server_with``: start a dedicated redis-server with extra arguments (to stop it
  mid-test, or to simulate an old server without GETDEL).

``tests/conftest.py`` registers this module as a plugin: tests just name ``store`` or
``store_case``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from moica_auth.stores import KeyValueStore, MemoryStore, RedisStore
from tests.redis_server import free_port, redis_server


@dataclass
class ManualClock:
    """A monotonic clock in seconds that only moves when the test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class StoreCase:
    """A store under test; ``clock`` is set only for the in-process store."""

    kind: str
    store: KeyValueStore
    clock: ManualClock | None


@pytest.fixture(name="store_case", params=["memory", "redis"])
def store_case_fixture(request: pytest.FixtureRequest) -> Iterator[StoreCase]:
    if request.param == "memory":
        clock = ManualClock()
        yield StoreCase("memory", MemoryStore(clock=clock), clock)
        return
    url = request.getfixturevalue("redis_url")
    store = RedisStore.from_url(url, prefix=f"test:{uuid.uuid4().hex}:")
    try:
        yield StoreCase("redis", store, None)
    finally:
        store.clear()
        store.client.close()


@pytest.fixture(name="store")
def store_fixture(store_case: StoreCase) -> KeyValueStore:
    return store_case.store


#: Yield the URL of a fresh redis-server started with ``extra`` arguments.
redis_server_with = redis_server


def closed_port_url() -> str:
    """A Redis URL on a port nothing listens on (bound and released just now)."""
    return f"redis://127.0.0.1:{free_port()}/0"
