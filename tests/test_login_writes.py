"""What a card login writes: ``POST /moica/challenge/`` saves a new session once and still
sends its cookie (with the project's session cookie settings); the login then rotates
the session key."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.django_fixtures import (
    csrf_header,
    get_challenge,
    login_body,
    login_with_card,
    post_login,
    sign_challenge,
)

pytestmark = pytest.mark.django_db


def _writes(log: list[dict[str, Any]], table: str) -> list[str]:
    return [
        q["sql"].split()[0].upper()
        for q in log
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        and f'"{table}"' in q["sql"]
    ]


def test_a_new_session_is_written_once_and_its_cookie_sent(moica_settings: Any) -> None:
    moica_settings.SESSION_COOKIE_SAMESITE = "Strict"
    moica_settings.SESSION_COOKIE_SECURE = True
    client = Client()
    client.get("/moica/session/")
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/moica/challenge/", headers=csrf_header(client))
    assert response.status_code == 200
    assert _writes(captured.captured_queries, "django_session") == ["INSERT"]
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    session = Session.objects.get(session_key=cookie.value)
    assert session.get_decoded() == {"moica_pending": True}
    assert cookie["samesite"] == "Strict" and cookie["secure"] and cookie["httponly"]
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE


def test_an_existing_session_is_updated_once(moica_settings: Any) -> None:
    client = Client()
    get_challenge(client)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/moica/challenge/", headers=csrf_header(client))
    assert response.status_code == 200
    assert _writes(captured.captured_queries, "django_session") == ["UPDATE"]
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == key


def test_the_login_still_rotates_the_session_key(moica_settings: Any, cards: Any) -> None:
    client = Client()
    challenge = get_challenge(client)
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    response = post_login(client, login_body(challenge, sign_challenge(cards.alice, challenge)))
    assert response.status_code == 200, response.content
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()
    assert Session.objects.get(session_key=after).get_decoded()["moica"]["fingerprint"]


def _record(client: Client) -> dict[str, Any]:
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    record: dict[str, Any] = Session.objects.get(session_key=key).get_decoded()["moica"]
    return record


def test_the_record_leaves_out_the_intermediates_the_trust_store_holds(
    moica_settings: Any, cards: Any, clock: Any
) -> None:
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 60
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    assert _record(client)["intermediates"] == []
    # The re-check still validates the whole path (the configured CA comes from the
    # trust store): past the certificate's expiry it ends the session.
    clock.advance(61)
    assert client.get("/moica/session/").json()["authenticated"] is True
    clock.now = cards.alice.signing.certificate.not_valid_after_utc + timedelta(seconds=1)
    assert client.get("/moica/session/").json() == {"authenticated": False}


def test_the_record_keeps_the_intermediates_the_signature_carried(
    moica_settings: Any, pki: Any, cards: Any
) -> None:
    moica_settings.MOICA_AUTH_INTERMEDIATES = []
    ca = pki.moica("G3").certificate
    client = Client()
    response = login_with_card(client, cards.alice, sign_kwargs={"extra_certificates": [ca]})
    assert response.status_code == 200, response.content
    carried = base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode()
    assert _record(client)["intermediates"] == [carried]


def test_a_configured_intermediate_removed_since_the_login_ends_the_session(
    moica_settings: Any, cards: Any, clock: Any
) -> None:
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 60
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    moica_settings.MOICA_AUTH_INTERMEDIATES = []
    clock.advance(61)
    assert client.get("/moica/session/").json() == {"authenticated": False}
