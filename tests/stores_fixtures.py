"""Fixtures for tests that run against both key/value stores.

* ``store``: parametrised over a :class:`MemoryStore` on a pinned clock and a
  :class:`RedisStore` on the session's real redis-server (``redis_url``), each Redis test
  under its own prefix, cleared afterwards.
* ``ManualClock``: a monotonic clock the test advances by hand.
* ``redis_server_with``: start a dedicated redis-server with extra arguments (to stop it
  mid-test, or to simulate an old server without GETDEL).

Import the fixtures by name into a test module (pytest finds fixtures in the module
namespace): ``from tests.stores_fixtures import store_fixture, store_case_fixture``; they register
under the names ``store`` and ``store_case``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from moica_auth.stores import KeyValueStore, MemoryStore, RedisStore
from tests.redis_server import free_port


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


@contextmanager
def redis_server_with(*extra: str) -> Iterator[str]:
    """Yield the URL of a fresh redis-server started with ``extra`` arguments."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="moica-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def closed_port_url() -> str:
    """A Redis URL on a port nothing listens on (bound and released just now)."""
    return f"redis://127.0.0.1:{free_port()}/0"
