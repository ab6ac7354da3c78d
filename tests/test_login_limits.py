"""Atomic abuse limits (issue #8 item 3): an attempt is reserved in the shared store
before the personal-data verifiers run, so concurrent guesses beyond the limit never
reach a verifier. Run against a real Redis and the in-process store."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any, ClassVar

import pytest
from django.db import connection

from moica_auth.exceptions import BirthDateMismatch, TooManyAttempts
from moica_auth.identity.id_number import IdNumber
from moica_auth.login import ClientInfo, LoginRefusal, PersonalInput, perform_login
from moica_auth.ratelimit import RateLimiter, Reservation
from moica_auth.services import get_services
from moica_auth.stores import MemoryStore
from tests.django_fixtures import (
    ALICE_ID,
    TestRegistry,
)
from tests.test_django_limits import serialized_database
from tests.test_login import MemorySession, card_source

pytestmark = pytest.mark.django_db(transaction=True)

GUESSES = 12


class CountingRegistry(TestRegistry):
    """The test registry, counting the lookups that reach it and slow enough that every
    concurrent guess is in flight at once."""

    calls: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()

    def lookup(self, id_number: IdNumber) -> date | None:
        with CountingRegistry.lock:
            CountingRegistry.calls += 1
        time.sleep(0.3)
        return super().lookup(id_number)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_concurrent_wrong_guesses_with_one_card_meet_the_limit(moica_settings, cards):
    moica_settings.MOICA_AUTH_VERIFIERS = ["tests.test_login_limits.CountingRegistry"]
    CountingRegistry.calls = 0
    services = get_services()
    limit = services.limiter.limits.cert_failures
    sessions = [MemorySession(session_id=f"tab-{i}") for i in range(GUESSES)]
    sources = [
        card_source(cards.alice, services.challenges.issue(session_id=s.session_id))
        for s in sessions
    ]
    barrier = threading.Barrier(GUESSES)
    results: list[Any] = []
    results_lock = threading.Lock()

    def guess(index: int) -> None:
        # One address per guess: only the card (and the typed number) can hold them back.
        client = ClientInfo(ip=f"198.51.100.{index + 1}", origin="http://testserver")
        personal = PersonalInput(id_number=ALICE_ID, birth_date="0700101")
        barrier.wait()
        try:
            with serialized_database():
                result = perform_login(
                    sources[index],
                    personal,
                    session=sessions[index],
                    client=client,
                    services=services,
                )
            with results_lock:
                results.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(GUESSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == GUESSES
    assert all(isinstance(r, LoginRefusal) for r in results)
    errors = [type(r.error) for r in results]
    assert CountingRegistry.calls <= limit, CountingRegistry.calls
    assert errors.count(BirthDateMismatch) == CountingRegistry.calls
    assert errors.count(TooManyAttempts) == GUESSES - CountingRegistry.calls
    # And the card is locked now, for a correct guess too.
    session = MemorySession(session_id="after")
    source = card_source(cards.alice, services.challenges.issue(session_id="after"))
    late = perform_login(
        source,
        PersonalInput(id_number=ALICE_ID, birth_date="0600101"),
        session=session,
        client=ClientInfo(ip="198.51.100.200", origin="http://testserver"),
        services=services,
    )
    assert isinstance(late, LoginRefusal) and isinstance(late.error, TooManyAttempts)
    assert CountingRegistry.calls <= limit


def test_reservation_is_released_by_a_success_and_kept_by_a_failure() -> None:
    from moica_auth.conf import RateLimits

    limits = RateLimits(
        cert_failures=2, cert_window=60, cert_lock=60, ip_failures=5, ip_window=60, ip_lock=60
    )
    limiter = RateLimiter(store=MemoryStore(), limits=limits)
    for _ in range(5):  # released every time: never exhausted
        held = Reservation()
        limiter.reserve(held, fingerprint="ab")
        limiter.settle(held, counted=frozenset())
    first, second = Reservation(), Reservation()
    limiter.reserve(first, fingerprint="ab")
    limiter.reserve(second, fingerprint="ab")
    with pytest.raises(TooManyAttempts):  # both slots in flight
        limiter.reserve(Reservation(), fingerprint="ab")
    limiter.settle(first, counted=frozenset({"cert"}))
    with pytest.raises(TooManyAttempts):  # one failure kept, one in flight
        limiter.reserve(Reservation(), fingerprint="ab")
    limiter.settle(second, counted=frozenset({"cert"}))
    with pytest.raises(TooManyAttempts):  # two failures: locked
        limiter.check(ip=None, fingerprint="ab")
