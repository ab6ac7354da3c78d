"""Fixtures for the OCSP, responder and revocation-policy tests.

One real :class:`ResponderServer` on 127.0.0.1 per session, and a :class:`TestPKI` whose
certificates point at it (the PKI's keys are deterministic and cached on disk, so a PKI
built per session costs only certificate signing). The responder clock is pinned to
``NOW``; each test gets the server (fixture ``ocsp_server``) back healed (no faults, no
statuses, no hits). ``tests/conftest.py`` registers this module as a plugin.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from moica_auth.stores import KeyValueStore
from moica_auth.testing.pki import FIXED_TIME, CitizenCard, TestPKI
from moica_auth.testing.responders import ResponderServer

NOW: datetime = FIXED_TIME + timedelta(days=1)
# Longer than any client timeout used in these tests; stop() wakes sleepers early.
SLOW_SECONDS = 5.0
CLIENT_TIMEOUT = 1.0  # generous for loaded CI machines; "slow" sleeps far longer


class Clock:
    """A settable clock for the responder (thisUpdate / producedAt)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="session", name="responder_clock")
def responder_clock_fixture() -> Clock:
    return Clock(NOW)


@pytest.fixture(scope="session", name="_session_server")
def session_server_fixture(responder_clock: Clock) -> Iterator[ResponderServer]:
    with ResponderServer(clock=responder_clock, slow_seconds=SLOW_SECONDS) as server:
        yield server


@pytest.fixture(scope="session", name="ocsp_pki")
def ocsp_pki_fixture(_session_server: ResponderServer) -> TestPKI:
    pki = TestPKI(
        crl_base_url=_session_server.url_for("/crl"),
        ocsp_url=_session_server.url_for("/ocsp"),
    )
    # The MOICA G3 CA names the same responder in its AIA (as the real one does), so the
    # responder answers for the GRCA roots too: intermediates are checked against them.
    for ca in (pki.moica_g2, pki.moica_g3, pki.grca_g2, pki.grca_g3):
        _session_server.add_ocsp(issuer=ca.certificate, signer=ca, path="/ocsp")
    return pki


@pytest.fixture(name="ocsp_server")
def ocsp_server_fixture(
    _session_server: ResponderServer, ocsp_pki: TestPKI, responder_clock: Clock
) -> Iterator[ResponderServer]:
    yield _session_server
    _session_server.clear_faults()
    _session_server.reset_hits()
    _session_server.ocsp("/ocsp").clear()
    _session_server.clear_crls()
    responder_clock.now = NOW


@pytest.fixture(scope="session", name="card_g2")
def card_g2_fixture(ocsp_pki: TestPKI) -> CitizenCard:
    return ocsp_pki.issue_card(generation="G2", label="ocsp-tests/g2")


@pytest.fixture(scope="session", name="card_g3")
def card_g3_fixture(ocsp_pki: TestPKI) -> CitizenCard:
    return ocsp_pki.issue_card(generation="G3", label="ocsp-tests/g3")


class CountingStore:
    """A real store that also counts lost lock races (``add`` returning False).

    Not a mock: every call goes to the wrapped store; the count lets a test wait until
    the other threads are provably waiting on the single-flight lock.
    """

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.lost_races = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.inner.set(key, value, ttl=ttl)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        won = self.inner.add(key, value, ttl=ttl)
        if not won:
            with self._lock:
                self.lost_races += 1
        return won

    def take(self, key: str) -> bytes | None:
        return self.inner.take(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def incr(self, key: str, *, ttl: float) -> int:
        return self.inner.incr(key, ttl=ttl)

    def ttl(self, key: str) -> float | None:
        return self.inner.ttl(key)

    def ping(self) -> None:
        self.inner.ping()
