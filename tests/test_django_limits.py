"""Abuse limits, step-up, concurrency and the no-plaintext-ID guarantee, on both stores."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from moica_auth.models import CitizenIdentity, LoginAttempt
from tests.django_fixtures import (
    ALICE_ID,
    assert_refused,
    get_challenge,
    login_body,
    login_with_card,
    post_login,
    sign_challenge,
)

pytestmark = pytest.mark.django_db


def test_birth_date_guesses_lock_the_certificate(moica_settings, cards, clock):
    client = Client()
    for guess in ("0700101", "0700102", "0700103"):
        response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date=guess)
        assert_refused(response, "birth_date_mismatch")
    # The fourth try, even with the right birth date, is refused before anything else.
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    data = assert_refused(response, "too_many_attempts", 429)
    assert int(response["Retry-After"]) > 0 and data["retry_after"] > 0
    # Another card from the same address is not locked.
    assert login_with_card(Client(), cards.bob).status_code == 200


def test_posted_certificate_alone_cannot_lock_a_card(moica_settings, cards):
    client = Client()
    for _ in range(5):
        challenge = get_challenge(client)
        signed = sign_challenge(cards.alice, challenge)
        body = login_body(challenge, signed)
        body["signature"] = signed["signature"][:-8] + "AAAAAAA="
        assert post_login(client, body).status_code in (400, 403)
    assert login_with_card(Client(), cards.alice).status_code == 200


def test_ip_limit_and_success_does_not_reset_it(moica_settings, cards):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 4}
    client = Client()
    for _ in range(3):
        assert_refused(post_login(client, {"nonce": "x"}), "field_required")
    assert login_with_card(client, cards.alice).status_code == 200
    assert_refused(post_login(client, {"nonce": "x"}), "field_required")
    # Four failures from this address: locked, even for another card.
    response = post_login(Client(), {"nonce": "x"})
    assert_refused(response, "too_many_attempts", 429)
    assert int(response["Retry-After"]) > 0
    assert_refused(Client().post("/moica/challenge/"), "too_many_attempts", 429)


def test_challenge_refused_while_ip_locked(moica_settings):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 1}
    client = Client()
    assert_refused(post_login(client, {}), "field_required")
    response = client.post("/moica/challenge/")
    assert_refused(response, "too_many_attempts", 429)


# --- step-up ---------------------------------------------------------------------------


def test_protected_view_redirects_anonymous_to_login_page(moica_settings):
    response = Client().get("/labor/")
    assert response.status_code == 302
    assert response["Location"].startswith("/moica/login-page/?")
    assert "fields=id_number%2Cbirth_date" in response["Location"]
    assert "next=%2Flabor%2F" in response["Location"]
    json_response = Client().get("/labor/", HTTP_ACCEPT="application/json")
    assert json_response.status_code == 401
    assert json_response.json()["code"] == "login_required"


def test_step_up_asks_only_for_missing_fields(moica_settings, cards, clock):
    client = Client()
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200
    assert client.get("/card-only/").json()["ok"] is True
    response = client.get("/labor/")
    assert response.status_code == 302
    assert "fields=birth_date&" in response["Location"]
    assert client.get("/mixin/").status_code == 302
    json_response = client.get("/labor/", HTTP_ACCEPT="application/json")
    assert json_response.status_code == 403
    assert json_response.json()["fields"] == ["birth_date"]
    page = client.get(response["Location"])
    assert page.status_code == 200 and b'data-moica-field="birth_date"' in page.content
    assert b'data-moica-field="id_number"' not in page.content
    # Step up: sign again with the birth date only; id_number stays verified.
    stepped = login_with_card(
        client, cards.alice, fields="birth_date", birth_date="0600101", id_number=ALICE_ID
    )
    assert stepped.status_code == 200, stepped.content
    assert client.get("/labor/").json() == {"ok": True}
    assert client.get("/mixin/").json() == {"ok": True}


def test_max_age_requires_fresh_signature(moica_settings, cards, clock):
    client = Client()
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200
    assert client.get("/fresh/").status_code == 200
    clock.advance(301)
    response = client.get("/fresh/")
    assert response.status_code == 302 and "fields=id_number" in response["Location"]


# --- concurrency -----------------------------------------------------------------------


_db_lock = threading.Lock()


@contextmanager
def serialized_database() -> Iterator[None]:
    """Let one request thread at a time use SQLite, from its first query to its end.

    SQLite's shared in-memory database has table-level locks and no busy wait, so
    concurrent writers fail with "database table is locked". Everything before a
    request's first query (parsing, rate limits, the challenge ``take`` in Redis) still
    runs concurrently, which is what this test is about; only the database part is
    serialised.
    """
    held = False

    def wrapper(execute: Any, sql: Any, params: Any, many: Any, context: Any) -> Any:
        nonlocal held
        if not held:
            _db_lock.acquire()
            held = True
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(wrapper):
            yield
    finally:
        if held:
            _db_lock.release()


@pytest.mark.django_db(transaction=True)
def test_one_signed_challenge_posted_eight_times_logs_in_once(moica_settings, cards):
    # Parametrised by store_kind: the in-process store and the real Redis.
    moica_settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    origin = Client()
    challenge = get_challenge(origin)
    body = login_body(challenge, sign_challenge(cards.alice, challenge))
    cookies = origin.cookies
    barrier = threading.Barrier(8)
    results: list[Any] = []
    lock = threading.Lock()

    def attempt() -> None:
        client = Client()
        client.cookies = cookies  # the same browser session, eight tabs
        barrier.wait()
        try:
            with serialized_database():
                response = post_login(client, body)
            with lock:
                results.append((response.status_code, response.json().get("code")))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sorted(r[0] for r in results).count(200) == 1, results
    assert {code for status, code in results if status != 200} == {"challenge_reused"}
    assert CitizenIdentity.objects.count() == 1


# --- no plaintext ID number ------------------------------------------------------------


def test_full_id_number_is_never_stored_or_logged(moica_settings, cards, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    assert (
        login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101").status_code
        == 200
    )
    assert_refused(
        login_with_card(Client(), cards.alice, id_number=ALICE_ID, birth_date="0700101"),
        "birth_date_mismatch",
    )
    haystack = []
    for model in (CitizenIdentity, LoginAttempt, get_user_model()):
        haystack += [repr(row) for row in model.objects.values()]
    haystack += [repr(s.get_decoded()) for s in Session.objects.all()]
    haystack.append(caplog.text)
    text = "\n".join(haystack)
    assert LoginAttempt.objects.count() == 2 and Session.objects.exists()
    assert ALICE_ID not in text
    assert ALICE_ID.lower() not in text


def test_missing_fields_and_outages_do_not_lock_the_card(moica_settings, cards):
    client = Client()
    for _ in range(4):
        assert_refused(login_with_card(client, cards.alice, fields="birth_date"), "field_required")
    assert login_with_card(client, cards.alice).status_code == 200


def test_client_ip_from_proxy_header_uses_rightmost_entry(moica_settings):
    moica_settings.MOICA_AUTH_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 1}
    forged = "10.0.0.1, 203.0.113.9"
    assert_refused(post_login(Client(), {}, HTTP_X_FORWARDED_FOR=forged), "field_required")
    # A different forged left-hand entry does not escape the lock on 203.0.113.9.
    other = "10.9.9.9, 203.0.113.9"
    response = post_login(Client(), {}, HTTP_X_FORWARDED_FOR=other)
    assert_refused(response, "too_many_attempts", 429)
    # Without the header the socket peer (127.0.0.1) is used, which is not locked.
    assert_refused(post_login(Client(), {}), "field_required")
    assert LoginAttempt.objects.filter(client_ip="127.0.0.1").count() == 1
    assert LoginAttempt.objects.filter(client_ip="203.0.113.9").count() == 2
