"""``add_many``: several keys stored all or none, on both stores, and the challenge
service using it (or, for a store without it, ``add`` per key)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moica_auth.challenge import ChallengeService
from moica_auth.exceptions import ChallengeReused, ChallengeUnknown, StoreUnavailable
from moica_auth.stores import KeyValueStore, MemoryStore, add_many
from tests.stores_fixtures import StoreCase

NOW = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


def test_stores_every_item_when_none_exists(store: KeyValueStore) -> None:
    assert add_many(store, {"a": b"1", "b": b"2"}, ttl=60)
    assert store.get("a") == b"1" and store.get("b") == b"2"
    left = store.ttl("b")
    assert left is not None and 0 < left <= 60


def test_stores_nothing_when_any_key_exists(store: KeyValueStore) -> None:
    store.set("b", b"old")
    assert not add_many(store, {"a": b"1", "b": b"2"}, ttl=60)
    assert store.get("a") is None
    assert store.get("b") == b"old"


def test_without_ttl_the_keys_do_not_expire(store: KeyValueStore) -> None:
    assert add_many(store, {"a": b"1"}, ttl=None)
    assert store.get("a") == b"1" and store.ttl("a") is None


def test_expired_keys_count_as_absent(store_case: StoreCase) -> None:
    if store_case.clock is None:
        pytest.skip("Redis expires keys on its own clock; the memory store's is pinned")
    store = store_case.store
    store.set("a", b"old", ttl=1)
    store_case.clock.advance(2)
    assert add_many(store, {"a": b"1", "b": b"2"}, ttl=60)
    assert store.get("a") == b"1"


@pytest.mark.parametrize(
    ("items", "ttl"), [({"a": "text"}, 60), ({"a": b"1"}, 0), ({"": b"1"}, 60)]
)
def test_refuses_what_add_refuses(store: KeyValueStore, items: dict, ttl: float) -> None:
    with pytest.raises((TypeError, ValueError)):
        add_many(store, items, ttl=ttl)


class AddOnlyStore:
    """A store written against the protocol alone (no ``add_many``), counting ``add``."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.adds: list[str] = []

    def __getattr__(self, name: str) -> object:
        if name == "add_many":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        self.adds.append(key)
        return self.inner.add(key, value, ttl=ttl)


def _service(store: object) -> ChallengeService:
    return ChallengeService(
        store,  # type: ignore[arg-type]
        origin="https://portal.example.gov.tw",
        binding_key=b"k" * 32,
        clock=lambda: NOW,
    )


def test_a_store_without_add_many_gets_the_marker_before_the_record() -> None:
    store = AddOnlyStore()
    issued = _service(store).issue(session_id="s")
    assert [key.split(":")[0] for key in store.adds] == ["challenge-issued", "challenge"]
    _service(store).consume(nonce=issued.nonce, session_id="s")
    with pytest.raises(ChallengeReused):
        _service(store).consume(nonce=issued.nonce, session_id="s")


def test_issue_stores_marker_and_record_together(store: KeyValueStore) -> None:
    service = _service(store)
    issued = service.issue(session_id="s")
    assert store.get("challenge-issued:" + issued.nonce) == b"1"
    assert store.get("challenge:" + issued.nonce) is not None
    assert service.consume(nonce=issued.nonce, session_id="s") == issued
    with pytest.raises(ChallengeReused):
        service.consume(nonce=issued.nonce, session_id="s")


class FullStore(MemoryStore):
    """Every ``add_many`` finds a key present (as a nonce collision would)."""

    def add_many(self, items: object, *, ttl: float | None = None) -> bool:
        return False


def test_issue_fails_closed_when_nothing_can_be_stored() -> None:
    store = FullStore()
    with pytest.raises(StoreUnavailable):
        _service(store).issue(session_id="s")
    with pytest.raises(ChallengeUnknown):
        _service(store).consume(nonce="A" * 43, session_id="s")
