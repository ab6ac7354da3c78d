"""The login channel lives inside the session record (``request.session["moica"]``):
written by the login core for every channel, read back into ``request.moica.channel``,
and read from sessions written before the record carried it (issue #11)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from moica_auth.session import LEGACY_CHANNEL_KEY, SESSION_KEY, SessionRecord
from tests.django_fixtures import get_challenge, login_body, post_login, sign_challenge

pytestmark = pytest.mark.django_db

_OLD_RECORD = {
    "fields": {"id_number": "2026-01-15T00:00:00+00:00"},
    "auth_time": "2026-01-15T00:00:00+00:00",
    "fingerprint": "ab" * 32,
    "user_pk": "7",
    "serial": "1f",
    "issuer_key_id": None,
    "card_serial": None,
    "name": "王小明",
    "form": "mobile",
    "cert": "",
    "intermediates": [],
    "revocation": None,
    "last_check": "2026-01-15T00:00:00+00:00",
}


def test_a_card_login_writes_channel_hipki_into_the_record(moica_settings: Any, cards: Any) -> None:
    client = Client()
    challenge = get_challenge(client)
    response = post_login(client, login_body(challenge, sign_challenge(cards.alice, challenge)))
    assert response.status_code == 200, response.content
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    stored = Session.objects.get(session_key=key).get_decoded()
    assert stored[SESSION_KEY]["channel"] == "hipki"
    assert LEGACY_CHANNEL_KEY not in stored
    assert client.get("/moica/session/").json()["assurance"]["channel"] == "hipki"


def test_an_old_mobile_session_keeps_its_channel_from_the_legacy_key() -> None:
    session: dict[str, Any] = {SESSION_KEY: dict(_OLD_RECORD), LEGACY_CHANNEL_KEY: "mobile-sp-api"}
    record = SessionRecord.read(session)
    assert record is not None and record.channel == "mobile-sp-api"
    assert record.identity().channel == "mobile-sp-api"
    # The next write (e.g. after a revocation re-check) moves it into the record.
    record.write(session)
    assert session[SESSION_KEY]["channel"] == "mobile-sp-api"
    assert LEGACY_CHANNEL_KEY not in session
    again = SessionRecord.read(session)
    assert again is not None and again.channel == "mobile-sp-api"


def test_an_old_card_session_without_the_legacy_key_is_hipki() -> None:
    session: dict[str, Any] = {SESSION_KEY: {**_OLD_RECORD, "form": "card"}}
    record = SessionRecord.read(session)
    assert record is not None and record.channel == "hipki"


@pytest.mark.parametrize("bad", [None, "", 5, ["mobile-sp-api"]])
def test_a_channel_that_is_not_a_string_falls_back_to_the_legacy_rules(bad: object) -> None:
    session: dict[str, Any] = {SESSION_KEY: {**_OLD_RECORD, "channel": bad}}
    record = SessionRecord.read(session)
    assert record is not None and record.channel == "hipki"


def test_the_record_channel_wins_over_a_stale_legacy_key() -> None:
    session: dict[str, Any] = {
        SESSION_KEY: {**_OLD_RECORD, "channel": "hipki"},
        LEGACY_CHANNEL_KEY: "mobile-sp-api",
    }
    record = SessionRecord.read(session)
    assert record is not None and record.channel == "hipki"
