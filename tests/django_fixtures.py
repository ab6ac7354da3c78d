"""Fixtures for the Django app tests (``tests/test_django_*.py``).

* ``pki`` (session): a :class:`TestPKI`; ``alice`` / ``bob`` cards, ``alice_renewed`` (same
  person, new card), ``alice_expired``;
* ``moica_settings``: settings for the app on the test PKI (origin http://testserver,
  anchors as PEM text, revocation off unless a test turns it on, pinned clock, the
  registry verifier below), with stores cleared, on the store ``store_kind`` names
  (``tests/conftest.py``: in-process and a real Redis);
* ``clock``: the pinned clock the app reads (``MOICA_AUTH_CLOCK``); tests advance it;
* :func:`login_with_card`: session → challenge → SoftCard signature → login.

``tests/conftest.py`` registers this module as a plugin: tests just name the fixtures.
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client

from moica_auth.identity.id_number import IdNumber
from moica_auth.identity.verifiers import RegistryVerifier
from moica_auth.stores import store_from_url
from moica_auth.testing.pki import FIXED_TIME, CitizenCard, TestPKI, make_id_number
from moica_auth.testing.softcard import SoftCard

START = FIXED_TIME + timedelta(days=1)

ALICE_ID = make_id_number("alice", letter="A", sex=2)
BOB_ID = make_id_number("bob", letter="B", sex=1)
ALICE_BIRTH = date(1971, 1, 1)  # ROC 0600101
BOB_BIRTH = date(1985, 6, 15)


@dataclass
class PinnedClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


CLOCK = PinnedClock()


def app_clock() -> datetime:
    """``MOICA_AUTH_CLOCK`` for the tests."""
    return CLOCK()


class TestRegistry(RegistryVerifier):
    """A service registry confirming (ID number, birth date) of the test citizens."""

    __test__ = False
    people: ClassVar[dict[str, date]] = {ALICE_ID: ALICE_BIRTH, BOB_ID: BOB_BIRTH}

    def lookup(self, id_number: IdNumber) -> date | None:
        return self.people.get(id_number.value)


@dataclass(frozen=True)
class Cards:
    alice: CitizenCard
    alice_renewed: CitizenCard
    alice_expired: CitizenCard
    bob: CitizenCard
    pki: TestPKI


@pytest.fixture(name="pki", scope="session")
def pki_fixture() -> TestPKI:
    return TestPKI()


@pytest.fixture(name="cards", scope="session")
def cards_fixture(pki: TestPKI) -> Cards:
    return Cards(
        alice=pki.issue_card(generation="G3", name="測試愛麗絲", id_number=ALICE_ID, label="alice"),
        alice_renewed=pki.issue_card(
            generation="G3", name="測試愛麗絲", id_number=ALICE_ID, label="alice-renewed"
        ),
        alice_expired=pki.issue_card(
            generation="G3",
            name="測試愛麗絲",
            id_number=ALICE_ID,
            label="alice-expired",
            not_before=FIXED_TIME - timedelta(days=400),
            not_after=FIXED_TIME - timedelta(days=35),
        ),
        bob=pki.issue_card(generation="G2", name="測試鮑伯", id_number=BOB_ID, label="bob"),
        pki=pki,
    )


def pem_text(certs: Any) -> list[str]:
    return [c.public_bytes(serialization.Encoding.PEM).decode() for c in certs]


@pytest.fixture(name="clock")
def clock_fixture() -> Iterator[PinnedClock]:
    CLOCK.now = START
    yield CLOCK
    CLOCK.now = START


@pytest.fixture(name="moica_settings")
def moica_settings_fixture(
    settings: Any, pki: TestPKI, clock: PinnedClock, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Any]:
    settings.ROOT_URLCONF = "tests.django_urls"
    settings.AUTHENTICATION_BACKENDS = [
        "moica_auth.backends.MoicaBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "moica_auth.middleware.MoicaMiddleware"]
    settings.MOICA_AUTH_ORIGIN = "http://testserver"
    settings.MOICA_AUTH_TRUST_ANCHORS = pem_text(pki.anchors)
    settings.MOICA_AUTH_INTERMEDIATES = pem_text(pki.intermediates)
    settings.MOICA_AUTH_REVOCATION = None
    settings.MOICA_AUTH_CLOCK = "tests.django_fixtures.app_clock"
    settings.MOICA_AUTH_HASH_KEY = b"test-hash-key-0123456789abcdef!!"
    settings.MOICA_AUTH_VERIFIERS = [
        "moica_auth.identity.verifiers.CertificateLast4Verifier",
        "tests.django_fixtures.TestRegistry",
    ]
    prefix = f"moica-test:{request.node.name}:"
    settings.MOICA_AUTH_STORE_PREFIX = prefix
    if store_kind == "redis":
        settings.MOICA_AUTH_REDIS_URL = request.getfixturevalue("redis_url")
    store = store_from_url(
        settings.MOICA_AUTH_REDIS_URL if store_kind == "redis" else None, prefix=prefix
    )
    store.clear()  # type: ignore[attr-defined]
    yield settings
    store.clear()  # type: ignore[attr-defined]


def csrf_header(client: Client) -> dict[str, str]:
    token = client.cookies.get("csrftoken")
    return {"X-CSRFToken": token.value} if token is not None else {}


def get_challenge(client: Client) -> dict[str, Any]:
    client.get("/moica/session/")
    response = client.post("/moica/challenge/", headers=csrf_header(client))
    assert response.status_code == 200, response.content
    data: dict[str, Any] = response.json()
    return data


def nonce_bytes(nonce: str) -> bytes:
    return base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))


def sign_challenge(
    card: CitizenCard, challenge: dict[str, Any], *, signature_type: str = "PKCS7", **kwargs: Any
) -> dict[str, Any]:
    tbs = kwargs.pop("tbs", challenge["tbs"]).encode()
    kwargs.setdefault("nonce", nonce_bytes(challenge["nonce"]))
    return SoftCard(card).sign(tbs, signature_type=signature_type, **kwargs)


def post_login(client: Client, body: Any, *, raw: bool = False, **extra: Any) -> Any:
    payload = body if raw else jsonlib.dumps(body)
    extra.setdefault("content_type", "application/json")
    return client.post("/moica/login/", payload, headers=csrf_header(client), **extra)


def login_body(
    challenge: dict[str, Any],
    signed: dict[str, Any],
    *,
    signature_type: str = "PKCS7",
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "signature": signed["signature"],
        "signature_type": signature_type,
        "certificate": signed["certb64"],
        "nonce": challenge["nonce"],
    }
    if "cardSN" in signed:
        body["card_sn"] = signed["cardSN"]
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def login_with_card(
    client: Client,
    card: CitizenCard,
    *,
    signature_type: str = "PKCS7",
    sign_kwargs: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """Challenge → sign with ``card`` → POST login (JSON). Returns the login response."""
    challenge = get_challenge(client)
    signed = sign_challenge(card, challenge, signature_type=signature_type, **(sign_kwargs or {}))
    return post_login(
        client, login_body(challenge, signed, signature_type=signature_type, **fields)
    )


def assert_refused(response: Any, code: str, status: int | None = None) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content
    data: dict[str, Any] = response.json()
    assert data["ok"] is False
    assert data["code"] == code, data
    if status is not None:
        assert response.status_code == status
    else:
        assert 400 <= response.status_code < 500
    return data


__all__ = [
    "ALICE_BIRTH",
    "ALICE_ID",
    "BOB_ID",
    "UTC",
    "assert_refused",
    "cards_fixture",
    "clock_fixture",
    "get_challenge",
    "login_body",
    "login_with_card",
    "moica_settings_fixture",
    "pki_fixture",
    "post_login",
    "sign_challenge",
]
