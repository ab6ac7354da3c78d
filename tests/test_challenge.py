"""Challenges: issue, single use, binding to session and origin, expiry, strict format.

Every test runs against both stores (MemoryStore and a real redis-server) through the
``store_case`` fixture, with the service's clock pinned.
"""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from moica_auth.challenge import (
    TBS_VERSION,
    Challenge,
    ChallengeService,
    normalise_origin,
    parse_tbs,
)
from moica_auth.exceptions import MoicaAuthError
from moica_auth.stores import MemoryStore, RedisStore
from tests.stores_fixtures import (
    StoreCase,
    closed_port_url,
    redis_server_with,
)

ORIGIN = "https://portal.example.gov.tw"
KEY = b"k" * 32
SESSION = "abcdefghijklmnopqrstuvwxyz012345"
T0 = datetime(2026, 11, 27, 5, 0, 0, 123456, tzinfo=UTC)


@dataclass
class DateClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> DateClock:
    return DateClock()


@pytest.fixture
def service(store_case: StoreCase, clock: DateClock) -> ChallengeService:
    return ChallengeService(store_case.store, origin=ORIGIN, binding_key=KEY, clock=clock)


def rejects(code: str, call: object, *args: object, **kwargs: object) -> MoicaAuthError:
    assert callable(call)
    with pytest.raises(MoicaAuthError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


# --- issue ----------------------------------------------------------------------------


def test_issue_builds_the_documented_tbs(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    assert ch.origin == ORIGIN
    assert ch.issued_at == datetime(2026, 11, 27, 5, 0, 0, tzinfo=UTC)
    assert ch.expires_at == ch.issued_at + timedelta(seconds=120)
    assert ch.tbs == f"moica-auth/1 origin={ORIGIN} nonce={ch.nonce} iat=2026-11-27T05:00:00Z"
    assert ch.tbs_bytes() == ch.tbs.encode("ascii")
    assert len(ch.nonce) == 43 and len(ch.nonce_bytes()) == 32
    assert parse_tbs(ch.tbs) == {
        "version": TBS_VERSION,
        "origin": ORIGIN,
        "nonce": ch.nonce,
        "iat": "2026-11-27T05:00:00Z",
    }
    assert SESSION not in ch.session_binding and len(ch.session_binding) == 64


def test_issue_gives_fresh_nonces(service: ChallengeService) -> None:
    nonces = {service.issue(session_id=SESSION).nonce for _ in range(20)}
    assert len(nonces) == 20


def test_record_is_json_without_the_session_id(store_case: StoreCase, clock: DateClock) -> None:
    service = ChallengeService(store_case.store, origin=ORIGIN, binding_key=KEY, clock=clock)
    ch = service.issue(session_id=SESSION)
    raw = store_case.store.get("challenge:" + ch.nonce)
    assert raw is not None
    record = json.loads(raw)
    assert record["tbs"] == ch.tbs and record["origin"] == ORIGIN
    assert SESSION.encode() not in raw
    # Kept past the TTL so that a late answer is reported as expired.
    left = store_case.store.ttl("challenge:" + ch.nonce)
    assert left is not None and 120 < left <= 420


def test_as_json_never_exposes_the_binding(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    body = ch.as_json()
    assert body["tbs"] == ch.tbs and body["nonce"] == ch.nonce
    assert body["expires_at"] == "2026-11-27T05:02:00Z"
    assert ch.session_binding not in json.dumps(body)


def test_issue_requires_a_session_id(service: ChallengeService) -> None:
    rejects("malformed_request", service.issue, session_id="")
    rejects("malformed_request", service.issue, session_id=None)


def test_custom_ttl(store_case: StoreCase, clock: DateClock) -> None:
    service = ChallengeService(
        store_case.store, origin=ORIGIN, binding_key=KEY, clock=clock, ttl=30
    )
    ch = service.issue(session_id=SESSION)
    assert ch.expires_at - ch.issued_at == timedelta(seconds=30)
    clock.advance(30)
    rejects("challenge_expired", service.consume, nonce=ch.nonce, session_id=SESSION)


# --- consume: success and single use -------------------------------------------------


def test_consume_returns_the_issued_challenge(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    assert service.consume(nonce=ch.nonce, session_id=SESSION, origin=ORIGIN) == ch


def test_consume_accepts_an_equivalent_origin_spelling(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    got = service.consume(
        nonce=ch.nonce, session_id=SESSION, origin="HTTPS://Portal.Example.gov.tw:443/"
    )
    assert got == ch


def test_rejects_replay_as_challenge_reused(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    service.consume(nonce=ch.nonce, session_id=SESSION)
    rejects("challenge_reused", service.consume, nonce=ch.nonce, session_id=SESSION)
    rejects("challenge_reused", service.consume, nonce=ch.nonce, session_id=SESSION)


def test_rejects_a_nonce_never_issued(service: ChallengeService) -> None:
    never = "A" * 42 + "E"  # well-formed, canonical, never issued
    rejects("challenge_unknown", service.consume, nonce=never, session_id=SESSION)


def test_concurrent_consumers_have_exactly_one_winner(service: ChallengeService) -> None:
    for _ in range(3):
        ch = service.issue(session_id=SESSION)
        barrier = threading.Barrier(8)
        outcomes: list[str] = []
        lock = threading.Lock()

        def worker(nonce: str, barrier: threading.Barrier, outcomes: list[str]) -> None:
            barrier.wait()
            try:
                service.consume(nonce=nonce, session_id=SESSION)
                outcome = "ok"
            except MoicaAuthError as exc:
                outcome = exc.code
            with lock:  # noqa: B023  (the lock outlives every round)
                outcomes.append(outcome)

        threads = [
            threading.Thread(target=worker, args=(ch.nonce, barrier, outcomes)) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("ok") == 1
        assert outcomes.count("challenge_reused") == 7


# --- consume: expiry ------------------------------------------------------------------


def test_accepts_until_just_before_expiry(service: ChallengeService, clock: DateClock) -> None:
    ch = service.issue(session_id=SESSION)
    clock.now = ch.expires_at - timedelta(microseconds=1)
    assert service.consume(nonce=ch.nonce, session_id=SESSION) == ch


def test_rejects_expired_challenge(service: ChallengeService, clock: DateClock) -> None:
    ch = service.issue(session_id=SESSION)
    clock.now = ch.expires_at
    err = rejects("challenge_expired", service.consume, nonce=ch.nonce, session_id=SESSION)
    assert err.as_dict()["expired_at"] == "2026-11-27T05:02:00+00:00"
    # Consumed by the failed attempt: a retry is a replay.
    rejects("challenge_reused", service.consume, nonce=ch.nonce, session_id=SESSION)


def test_challenge_past_retention_is_unknown(clock: DateClock) -> None:
    # Only the in-process store has a clock the test can move past the retention.
    store_clock = [0.0]
    store = MemoryStore(clock=lambda: store_clock[0])
    service = ChallengeService(store, origin=ORIGIN, binding_key=KEY, clock=clock)
    ch = service.issue(session_id=SESSION)
    clock.advance(421)
    store_clock[0] = 421.0
    rejects("challenge_unknown", service.consume, nonce=ch.nonce, session_id=SESSION)


# --- consume: binding -----------------------------------------------------------------


def test_rejects_another_session_and_burns_the_challenge(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    rejects("session_mismatch", service.consume, nonce=ch.nonce, session_id="other-session")
    rejects("challenge_reused", service.consume, nonce=ch.nonce, session_id=SESSION)


def test_rejects_empty_session_at_consume(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    rejects("session_mismatch", service.consume, nonce=ch.nonce, session_id="")


def test_binding_depends_on_the_key(store_case: StoreCase, clock: DateClock) -> None:
    a = ChallengeService(store_case.store, origin=ORIGIN, binding_key=KEY, clock=clock)
    b = ChallengeService(store_case.store, origin=ORIGIN, binding_key=b"x" * 32, clock=clock)
    ch = a.issue(session_id=SESSION)
    rejects("session_mismatch", b.consume, nonce=ch.nonce, session_id=SESSION)


def test_rejects_another_request_origin_and_burns(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    rejects(
        "origin_mismatch",
        service.consume,
        nonce=ch.nonce,
        session_id=SESSION,
        origin="https://evil.example",
    )
    rejects("challenge_reused", service.consume, nonce=ch.nonce, session_id=SESSION)


def test_rejects_a_challenge_issued_for_another_site(
    store_case: StoreCase, clock: DateClock
) -> None:
    # Two sites sharing one Redis: a challenge of one is no good at the other.
    a = ChallengeService(store_case.store, origin=ORIGIN, binding_key=KEY, clock=clock)
    b = ChallengeService(
        store_case.store, origin="https://tax.example.gov.tw", binding_key=KEY, clock=clock
    )
    ch = a.issue(session_id=SESSION)
    rejects("origin_mismatch", b.consume, nonce=ch.nonce, session_id=SESSION)


# --- consume: malformed input ---------------------------------------------------------

CANONICAL = "A" * 42 + "E"


@pytest.mark.parametrize(
    "nonce",
    [
        None,
        123,
        b"A" * 43,
        "",
        "A" * 42,
        "A" * 44,
        "A" * 42 + "+",
        "A" * 42 + "/",
        "A" * 41 + "==",
        "A" * 42 + "F",  # non-zero padding bits: a second spelling of ...E
        "A" * 42 + "é",
        " " + "A" * 42,
        "A" * 42 + "\n",
    ],
)
def test_rejects_malformed_nonce(service: ChallengeService, nonce: object) -> None:
    rejects("malformed_request", service.consume, nonce=nonce, session_id=SESSION)


def test_rejects_non_string_session_id(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    rejects("malformed_request", service.consume, nonce=ch.nonce, session_id=None)
    # Malformed input is refused before the store is touched: the challenge survives.
    assert service.consume(nonce=ch.nonce, session_id=SESSION) == ch


def test_rejects_malformed_request_origin(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    rejects("malformed_request", service.consume, nonce=ch.nonce, session_id=SESSION, origin="null")


def test_rejects_a_corrupt_record(store_case: StoreCase, service: ChallengeService) -> None:
    store_case.store.set("challenge:" + CANONICAL, b"{not json", ttl=60)
    rejects("challenge_unknown", service.consume, nonce=CANONICAL, session_id=SESSION)
    other = service.issue(session_id=SESSION)
    raw = store_case.store.get("challenge:" + other.nonce)
    assert raw is not None
    # A record whose tbs names another nonce is refused too.
    store_case.store.set("challenge:" + CANONICAL, raw, ttl=60)
    rejects("challenge_unknown", service.consume, nonce=CANONICAL, session_id=SESSION)


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, 1801, float("nan"), float("inf"), "120", True])
def test_rejects_bad_ttl(ttl: object) -> None:
    err = rejects(
        "configuration_error",
        ChallengeService,
        MemoryStore(),
        origin=ORIGIN,
        binding_key=KEY,
        ttl=ttl,
    )
    assert err.http_status == 500


@pytest.mark.parametrize("key", [b"", b"short", "a-string-key-that-is-long-enough"])
def test_rejects_weak_binding_key(key: object) -> None:
    rejects("configuration_error", ChallengeService, MemoryStore(), origin=ORIGIN, binding_key=key)


@pytest.mark.parametrize("origin", ["portal.example.gov.tw", "https://x/path", "null", ""])
def test_rejects_bad_site_origin(origin: str) -> None:
    rejects("configuration_error", ChallengeService, MemoryStore(), origin=origin, binding_key=KEY)


def test_rejects_a_naive_clock() -> None:
    service = ChallengeService(
        MemoryStore(),
        origin=ORIGIN,
        binding_key=KEY,
        clock=lambda: datetime(2026, 11, 27, 5, 0),
    )
    rejects("configuration_error", service.issue, session_id=SESSION)


def test_repr_hides_the_binding_key() -> None:
    service = ChallengeService(MemoryStore(), origin=ORIGIN, binding_key=b"secret-binding-key")
    assert "secret-binding-key" not in repr(service)


# --- store outage ---------------------------------------------------------------------


def test_fails_closed_when_redis_is_unreachable(clock: DateClock) -> None:
    store = RedisStore.from_url(closed_port_url(), socket_timeout=0.5)
    service = ChallengeService(store, origin=ORIGIN, binding_key=KEY, clock=clock)
    rejects("store_unavailable", service.issue, session_id=SESSION)
    rejects("store_unavailable", service.consume, nonce=CANONICAL, session_id=SESSION)


def test_fails_closed_when_redis_stops_mid_login(clock: DateClock) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(redis_server_with())
        store = RedisStore.from_url(url, socket_timeout=0.5)
        service = ChallengeService(store, origin=ORIGIN, binding_key=KEY, clock=clock)
        ch = service.issue(session_id=SESSION)
        stack.close()
        # Never "unknown" (which could hide a replay): the outage itself is reported.
        rejects("store_unavailable", service.consume, nonce=ch.nonce, session_id=SESSION)


# --- the tbs format -------------------------------------------------------------------

GOOD_TBS = f"moica-auth/1 origin={ORIGIN} nonce={CANONICAL} iat=2026-11-27T05:00:00Z"


def test_parse_tbs_accepts_the_format() -> None:
    assert parse_tbs(GOOD_TBS)["nonce"] == CANONICAL
    with_port = GOOD_TBS.replace(ORIGIN, "http://localhost:8000")
    assert parse_tbs(with_port)["origin"] == "http://localhost:8000"


@pytest.mark.parametrize(
    "tbs",
    [
        GOOD_TBS.replace("moica-auth/1", "moica-auth/2"),
        GOOD_TBS.replace(" nonce=", "  nonce="),
        GOOD_TBS + " ",
        GOOD_TBS + "\n",
        " " + GOOD_TBS,
        GOOD_TBS.replace("Z", "z"),
        GOOD_TBS.replace("2026-11-27", "2026-13-27"),
        GOOD_TBS.replace("T05:00:00Z", "T05:00:00+00:00"),
        GOOD_TBS.replace(ORIGIN, ORIGIN.upper()),
        GOOD_TBS.replace(ORIGIN, ORIGIN + ":443"),
        GOOD_TBS.replace(ORIGIN, ORIGIN + "/"),
        GOOD_TBS.replace(ORIGIN, "https://a nonce=x"),
        GOOD_TBS.replace(CANONICAL, "A" * 42 + "F"),
        f"moica-auth/1 nonce={CANONICAL} origin={ORIGIN} iat=2026-11-27T05:00:00Z",
        f"moica-auth/1 origin={ORIGIN} nonce={CANONICAL}",
        GOOD_TBS.replace("portal", "pörtal"),
        GOOD_TBS + " x=" + "y" * 600,
        "",
        None,
        GOOD_TBS.encode(),
    ],
)
def test_parse_tbs_rejects_everything_else(tbs: object) -> None:
    rejects("malformed_request", parse_tbs, tbs)


# --- origins --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://portal.example.gov.tw", "https://portal.example.gov.tw"),
        ("HTTPS://Portal.EXAMPLE.gov.tw/", "https://portal.example.gov.tw"),
        ("https://portal.example.gov.tw:443", "https://portal.example.gov.tw"),
        ("http://localhost:80", "http://localhost"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://xn--fiq228c.tw", "https://xn--fiq228c.tw"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[0:0:0:0:0:0:0:1]:8000", "http://[::1]:8000"),
        ("https://example.gov.tw:0443", "https://example.gov.tw"),
    ],
)
def test_normalise_origin(given: str, expected: str) -> None:
    assert normalise_origin(given) == expected


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        "portal.example.gov.tw",
        "ftp://portal.example.gov.tw",
        "https://portal.example.gov.tw/path",
        "https://portal.example.gov.tw?q=1",
        "https://portal.example.gov.tw#f",
        "https://user@portal.example.gov.tw",
        "https://portal.example.gov.tw.",
        "https://-bad.example",
        "https://bad-.example",
        "https://a..b",
        "https://portal.example.gov.tw:0",
        "https://portal.example.gov.tw:65536",
        "https://portal.example.gov.tw:",
        "https://台灣.tw",
        "https://portal example",
        "https://[::zz]",
        "http://010.0.0.1",
        "http://999.0.0.1",
        "https://" + "a" * 64 + ".tw",
        "https://" + ".".join(["a" * 60] * 5),
        None,
    ],
)
def test_normalise_origin_rejects(origin: object) -> None:
    rejects("malformed_request", normalise_origin, origin)


def test_challenge_is_frozen(service: ChallengeService) -> None:
    ch = service.issue(session_id=SESSION)
    with pytest.raises(AttributeError):
        ch.nonce = "x"  # type: ignore[misc]
    assert isinstance(ch, Challenge)
