"""An attacker's view of the Django endpoints: redirects, sessions, step-up, input shapes,
abuse limits, account binding, async views and unexpected failures. Each test names the
attack; every refusal asserts its code and that nobody got logged in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import AsyncClient, Client

from moica_auth.identity.id_number import checksum_digit
from moica_auth.models import CitizenIdentity, LoginAttempt
from moica_auth.signals import moica_login_failed, moica_login_succeeded
from tests.django_fixtures import (
    ALICE_ID,
    BOB_ID,
    assert_refused,
    csrf_header,
    get_challenge,
    login_body,
    login_with_card,
    post_login,
    sign_challenge,
)

pytestmark = pytest.mark.django_db

DEFAULT_REDIRECT = "/accounts/profile/"


def logged_in(client: Client) -> bool:
    return AUTH_SESSION_KEY in client.session


def signed_body(client: Client, card: Any, **fields: Any) -> dict[str, Any]:
    challenge = get_challenge(client)
    return login_body(challenge, sign_challenge(card, challenge), **fields)


# --- open redirects ----------------------------------------------------------------------

EVIL_NEXT = [
    "//evil.example/",
    "///evil.example/",
    "\\\\evil.example/",
    "/\\evil.example/",
    "\\/evil.example/",
    "https:evil.example",
    "https:/evil.example",
    "http://evil.example/",
    "HTTPS://evil.example/",
    "https://testserver@evil.example/",
    "https://testserver.evil.example/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    " //evil.example/",
    "/\t/evil.example/",
    "\x00//evil.example/",
    "//evil.example%2F@testserver/",
    "https://%65vil.example/",
]


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_next_cannot_leave_the_site(moica_settings, cards, target):
    # JSON client: the redirect it is told to follow.
    client = Client()
    response = post_login(client, signed_body(client, cards.alice, next=target))
    assert response.status_code == 200, response.content
    assert response.json()["redirect"] == DEFAULT_REDIRECT
    # Form post: the Location header.
    client = Client()
    response = client.post("/moica/login/", signed_body(client, cards.alice, next=target))
    assert response.status_code == 302
    assert response["Location"] == DEFAULT_REDIRECT
    # The login page does not carry it either.
    page = Client().get("/moica/login-page/", {"next": target})
    assert b"evil.example" not in page.content and b"javascript:" not in page.content


def test_local_next_is_escaped_in_the_login_page(moica_settings):
    target = '/labor/?q="><script>alert(1)</script>'
    page = Client().get("/moica/login-page/", {"next": target, "fields": "id_number"})
    assert b"<script>alert(1)" not in page.content
    assert b"&lt;script&gt;alert(1)" in page.content


@pytest.mark.parametrize("target", ["/labor/", "/labor/?a=1&b=2", "/%2F%2Fevil.example/"])
def test_local_next_is_kept(moica_settings, cards, target):
    client = Client()
    response = post_login(client, signed_body(client, cards.alice, next=target))
    assert response.json()["redirect"] == target


def test_next_is_judged_by_the_configured_origin_not_the_host_header(moica_settings, cards):
    # With ALLOWED_HOSTS = ["*"] the Host header is whatever the client writes.
    moica_settings.ALLOWED_HOSTS = ["*"]
    client = Client()
    body = signed_body(client, cards.alice, next="https://evil.example/")
    response = post_login(client, body, HTTP_HOST="evil.example")
    assert response.json()["redirect"] == DEFAULT_REDIRECT
    client = Client(HTTP_HOST="evil.example")
    page = client.get("/moica/login-page/", {"next": "http://evil.example/x"})
    assert b"evil.example/x" not in page.content
    client = Client()
    body = signed_body(client, cards.alice, next="http://testserver/labor/")
    assert post_login(client, body).json()["redirect"] == "http://testserver/labor/"


# --- sessions ----------------------------------------------------------------------------


def test_fixed_session_key_is_dead_after_login(moica_settings, cards):
    victim = Client()
    get_challenge(victim)
    planted = victim.cookies["sessionid"].value  # the key an attacker planted or read
    assert post_login(victim, signed_body(victim, cards.alice)).status_code == 200
    assert victim.cookies["sessionid"].value != planted
    attacker = Client()
    attacker.cookies["sessionid"] = planted
    assert attacker.get("/moica/session/").json() == {"authenticated": False}
    assert attacker.get("/card-only/").status_code == 302


def test_login_as_another_citizen_replaces_the_session(moica_settings, cards):
    client = Client()
    response = login_with_card(client, cards.bob, id_number=BOB_ID, birth_date="0740615")
    assert response.status_code == 200, response.content
    bob_user = client.session[AUTH_SESSION_KEY]
    bob_key = client.cookies["sessionid"].value
    assert client.get("/labor/").json() == {"ok": True}
    # Alice signs in the same browser with her card only.
    assert login_with_card(client, cards.alice).status_code == 200
    assert client.session[AUTH_SESSION_KEY] != bob_user
    session = client.get("/moica/session/").json()
    assert session["card_serial"] == cards.alice.subject_serial
    assert session["verified"] == []  # Bob's verified fields did not carry over
    assert client.get("/labor/").status_code == 302
    ghost = Client()
    ghost.cookies["sessionid"] = bob_key
    assert ghost.get("/moica/session/").json() == {"authenticated": False}


def test_challenge_from_before_a_login_in_another_tab(moica_settings, cards):
    client = Client()
    first = get_challenge(client)  # tab 1, anonymous
    assert login_with_card(client, cards.alice).status_code == 200  # tab 2
    # Tab 1 comes back with Bob's signature over its old challenge.
    body = login_body(first, sign_challenge(cards.bob, first))
    assert_refused(post_login(client, body), "session_mismatch")
    session = client.get("/moica/session/").json()
    assert session["card_serial"] == cards.alice.subject_serial


def test_logout_by_get_does_not_log_out(moica_settings, cards):
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    assert client.get("/moica/logout/").status_code == 405
    assert logged_in(client)
    assert client.get("/moica/session/").json()["authenticated"] is True


def test_logout_without_csrf_token_does_not_log_out(moica_settings, cards):
    client = Client(enforce_csrf_checks=True)
    assert login_with_card(client, cards.alice).status_code == 200
    assert_refused(client.post("/moica/logout/"), "csrf_failed", 403)
    assert logged_in(client)


@pytest.mark.parametrize("path", ["/moica/challenge/", "/moica/login/", "/moica/logout/"])
def test_csrf_refusals_are_json(moica_settings, path):
    client = Client(enforce_csrf_checks=True)
    assert_refused(client.post(path), "csrf_failed", 403)
    client.get("/moica/session/")
    # A valid token from a page of another site (its Origin) is refused too.
    response = client.post(path, headers={**csrf_header(client), "Origin": "https://evil.example"})
    assert_refused(response, "csrf_failed", 403)
    assert client.post(path, headers=csrf_header(client)).status_code != 403


def test_login_csrf_cannot_plant_the_attackers_login(moica_settings, cards):
    # The attacker signs a challenge in their own session and makes the victim's
    # browser post it (with a CSRF token the victim's browser would send).
    attacker, victim = Client(), Client(enforce_csrf_checks=True)
    body = signed_body(attacker, cards.bob)
    victim.get("/moica/session/")
    response = victim.post(
        "/moica/login/", json.dumps(body), content_type="application/json",
        headers=csrf_header(victim),
    )  # fmt: skip
    assert_refused(response, "session_mismatch")
    assert not logged_in(victim)
    # Without the token the post does not even reach the login.
    response = Client(enforce_csrf_checks=True).post(
        "/moica/login/", json.dumps(body), content_type="application/json"
    )
    assert_refused(response, "csrf_failed", 403)


# --- step-up escalation ------------------------------------------------------------------


def test_client_cannot_claim_verified_fields(moica_settings, cards):
    client = Client()
    body = signed_body(
        client,
        cards.alice,
        verified=["id_number", "birth_date"],
        fields=[],
        id_number_verified=True,
    )
    body["moica"] = {"fields": {"birth_date": "2030-01-01T00:00:00+00:00"}}
    assert post_login(client, body).status_code == 200
    assert client.get("/moica/session/").json()["verified"] == []
    assert client.get("/labor/").status_code == 302


def test_step_up_with_fields_removed_from_the_url_verifies_nothing(moica_settings, cards):
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    redirect = client.get("/labor/")["Location"]
    assert "fields=id_number%2Cbirth_date" in redirect
    # The citizen (or a script) drops "fields" and signs again with the card alone.
    assert login_with_card(client, cards.alice, fields="").status_code == 200
    assert client.get("/labor/").status_code == 302


def test_step_up_birth_date_alone_is_not_confirmed(moica_settings, cards):
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    response = login_with_card(client, cards.alice, birth_date="0600101")
    assert_refused(response, "personal_data_unverified", 503)
    assert client.get("/moica/session/").json()["verified"] == []


# --- input shapes ------------------------------------------------------------------------

WRONG_TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "signature object": ({"signature": {"$ne": ""}}, "malformed_request"),
    "signature list": ({"signature": ["a", "b"]}, "malformed_request"),
    "signature true": ({"signature": True}, "malformed_request"),
    "signature float": ({"signature": 1.5}, "malformed_request"),
    "certificate number": ({"certificate": 12345}, "malformed_request"),
    "nonce object": ({"nonce": {"a": 1}}, "malformed_request"),
    "nonce huge": ({"nonce": "A" * 60000}, "malformed_request"),
    "signature huge": ({"signature": "A" * 60000}, "malformed_signature"),
    "signature_type list": ({"signature_type": ["PKCS7"]}, "malformed_request"),
    "signature_type lower": ({"signature_type": "pkcs7 "}, None),
    "card_sn number": ({"card_sn": 1}, "malformed_request"),
    "id_number object": ({"id_number": {"$gt": ""}}, "malformed_request"),
    "id_number huge": ({"id_number": "A" * 60000}, "id_number_invalid"),
    "birth_date number": ({"birth_date": 19710101, "id_number": ALICE_ID}, "malformed_request"),
    "next list": ({"next": ["/a"]}, "malformed_request"),
    "fields object": ({"fields": {"id_number": True}}, "malformed_request"),
    "fields nested list": ({"fields": [["id_number"]]}, "malformed_request"),
    "fields null member": ({"fields": [None]}, "malformed_request"),
    "fields true": ({"fields": True}, "malformed_request"),
    "nul in id_number": ({"id_number": "A12\x003456789"}, "id_number_invalid"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_json_wrong_types(moica_settings, cards, case):
    changes, code = WRONG_TYPES[case]
    client = Client()
    body = signed_body(client, cards.alice)
    body.update(changes)
    response = post_login(client, body)
    if code is None:
        assert response.status_code == 200, response.content
        return
    assert_refused(response, code)
    assert not logged_in(client)


def test_json_null_values_count_as_absent(moica_settings, cards):
    client = Client()
    body = signed_body(client, cards.alice, id_number=None, birth_date=None)
    body.update({"id_number": None, "birth_date": None, "fields": None, "next": None})
    assert post_login(client, body).status_code == 200


def test_json_duplicate_keys_are_refused(moica_settings, cards):
    # Parsers disagree on which duplicate wins; a WAF and this view must not see
    # different requests.
    client = Client()
    body = signed_body(client, cards.alice)
    text = json.dumps(body)[:-1] + ', "nonce": "' + "B" * 43 + '"}'
    assert_refused(post_login(client, text, raw=True), "malformed_request")
    body["next"] = "/card-only/"
    text = json.dumps(body)[:-1] + ', "next": "/labor/"}'
    assert_refused(post_login(client, text, raw=True), "malformed_request")
    assert not logged_in(client)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("json-as-form", "application/x-www-form-urlencoded"),
        ("json-as-multipart-nobound", "multipart/form-data"),
        ("form-as-json", "application/json"),
        ("json-utf16", "application/json; charset=utf-16"),
        ("json-as-text", "text/plain"),
        ("json-as-json-variant", "application/json-patch+json"),
    ],
)
def test_content_type_lies(moica_settings, cards, body, content_type):
    client = Client()
    data = signed_body(client, cards.alice)
    if body.startswith("json"):  # the test client encodes it in the declared charset
        payload = json.dumps(data)
    else:
        payload = "&".join(f"{k}={v}" for k, v in data.items())
    response = client.post(
        "/moica/login/", payload, content_type=content_type, headers=csrf_header(client)
    )
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] in {"malformed_request", "field_required"}
    assert not logged_in(client)


def test_form_repeated_keys(moica_settings, cards):
    for key in ("nonce", "fields", "id_number", "next"):
        client = Client()
        body = signed_body(client, cards.alice)
        body[key] = [body.get(key) or "id_number", "birth_date"]
        assert_refused(client.post("/moica/login/", body), "malformed_request")
        assert not logged_in(client)


def test_multipart_with_a_file_is_refused(moica_settings, cards, tmp_path):
    client = Client()
    body = signed_body(client, cards.alice)
    upload = tmp_path / "x.bin"
    upload.write_bytes(b"x" * 10)
    with upload.open("rb") as handle:
        body["certificate_file"] = handle
        assert_refused(client.post("/moica/login/", body), "malformed_request")
    assert not logged_in(client)


def test_body_without_content_length_is_not_read(moica_settings, cards):
    # WSGI: a chunked body without Content-Length reaches the view as an empty stream.
    client = Client()
    body = json.dumps(signed_body(client, cards.alice))
    response = client.post(
        "/moica/login/",
        body,
        content_type="application/json",
        headers=csrf_header(client),
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert_refused(response, "malformed_request")
    assert not logged_in(client)


def asgi_post(path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> Any:
    """POST ``chunks`` through Django's ASGI handler without a Content-Length."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # The client stays connected until the response is sent (Django listens for a
        # disconnect while the view runs and would cancel it).
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async_to_sync(ASGIHandler())(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.mark.django_db(transaction=True)
def test_asgi_chunked_oversized_body(moica_settings, cards):
    moica_settings.CSRF_TRUSTED_ORIGINS = ["http://testserver"]
    client = Client()
    data = signed_body(client, cards.alice)
    data["padding"] = "x" * 70000
    payload = json.dumps(data).encode()
    chunks = [payload[i : i + 8192] for i in range(0, len(payload), 8192)]
    cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
    status, _headers, body = asgi_post(
        "/moica/login/",
        chunks,
        [
            (b"content-type", b"application/json"),
            (b"cookie", cookie.encode()),
            (b"x-csrftoken", client.cookies["csrftoken"].value.encode()),
        ],
    )
    assert status == 413, body
    assert json.loads(body)["code"] == "request_too_large"
    assert not LoginAttempt.objects.filter(outcome="ok").exists()


# --- abuse limits ------------------------------------------------------------------------


def test_challenge_flood_from_one_address_is_capped(moica_settings, cards):
    # Each challenge is a record in the shared store (and a new session for a
    # cookie-less client): issuing them must not be free.
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_challenges": 3}
    for _ in range(3):
        assert Client().post("/moica/challenge/").status_code == 200
    response = Client().post("/moica/challenge/")
    data = assert_refused(response, "too_many_attempts", 429)
    assert int(response["Retry-After"]) > 0 and data["retry_after"] > 0
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.post("/moica/challenge/").status_code == 200


def test_locked_client_cannot_fill_the_audit_table(moica_settings):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 2}
    for _ in range(2):
        assert_refused(post_login(Client(), {}), "field_required")
    for _ in range(5):
        assert_refused(post_login(Client(), {}), "too_many_attempts", 429)
    # The first refusal by the lock is audited, the rest only logged.
    assert LoginAttempt.objects.filter(outcome="field_required").count() == 2
    assert LoginAttempt.objects.filter(outcome="too_many_attempts").count() == 1


def test_forwarded_for_is_ignored_without_a_trusted_header(moica_settings):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 2}
    for forged in ("198.51.100.1", "198.51.100.2"):
        assert_refused(post_login(Client(), {}, HTTP_X_FORWARDED_FOR=forged), "field_required")
    response = post_login(Client(), {}, HTTP_X_FORWARDED_FOR="198.51.100.3")
    assert_refused(response, "too_many_attempts", 429)
    assert set(LoginAttempt.objects.values_list("client_ip", flat=True)) == {"127.0.0.1"}


def test_ipv6_clients_are_limited_per_64_prefix(moica_settings):
    # One customer line gets a whole /64: rotating addresses in it must not reset the count.
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 2}
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"):
        assert_refused(post_login(Client(), {}, REMOTE_ADDR=address), "field_required")
    response = post_login(Client(), {}, REMOTE_ADDR="2001:db8:1:2:dead:beef::1")
    assert_refused(response, "too_many_attempts", 429)
    # Another /64 is not locked.
    assert_refused(post_login(Client(), {}, REMOTE_ADDR="2001:db8:1:3::1"), "field_required")


def test_ipv4_mapped_address_is_the_ipv4_address(moica_settings):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 1}
    assert_refused(post_login(Client(), {}, REMOTE_ADDR="203.0.113.9"), "field_required")
    response = post_login(Client(), {}, REMOTE_ADDR="::ffff:203.0.113.9")
    assert_refused(response, "too_many_attempts", 429)


def test_unreadable_proxy_header_falls_back_to_the_peer(moica_settings):
    # A trusted header that does not hold an address must not switch the limit off.
    moica_settings.MOICA_AUTH_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 1}
    assert_refused(post_login(Client(), {}, HTTP_X_REAL_IP="garbage-1"), "field_required")
    response = post_login(Client(), {}, HTTP_X_REAL_IP="garbage-2")
    assert_refused(response, "too_many_attempts", 429)


def test_card_only_successes_do_not_reset_birth_date_guesses(moica_settings, cards):
    # A thief with an unlocked card interleaves plain card logins with guesses.
    client = Client()
    for guess in ("0700101", "0700102"):
        response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date=guess)
        assert_refused(response, "birth_date_mismatch")
    assert login_with_card(client, cards.alice).status_code == 200
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0700103")
    assert_refused(response, "birth_date_mismatch")
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    assert_refused(response, "too_many_attempts", 429)


def test_full_personal_data_success_clears_the_card_count(moica_settings, cards):
    client = Client()
    for guess in ("0700101", "0700102"):
        login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date=guess)
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    assert response.status_code == 200, response.content
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0700104")
    assert_refused(response, "birth_date_mismatch")
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200


# --- account binding and oracles -----------------------------------------------------------


def same_last4_id(id_number: str) -> str:
    """Another valid number of the same sex ending in the same four characters."""
    for middle in range(10000):
        prefix = f"{id_number[0]}{id_number[1]}{middle:04d}{id_number[6:9]}"
        candidate = prefix + checksum_digit(prefix)
        if candidate != id_number and candidate[-4:] == id_number[-4:]:
            return candidate
    raise AssertionError("no number with the same last four")


def test_last_four_alone_never_reaches_another_citizens_account(moica_settings, pki, cards):
    # Default verifiers: only the last-four check. Mallory's own card happens to end in
    # the same four characters as Alice's number, which Mallory knows.
    moica_settings.MOICA_AUTH_VERIFIERS = ["moica_auth.identity.verifiers.CertificateLast4Verifier"]
    alice = Client()
    assert login_with_card(alice, cards.alice, id_number=ALICE_ID).status_code == 200
    alice_user = alice.session[AUTH_SESSION_KEY]
    mallory_card = pki.issue_card(
        generation="G3", name="測試壞人", id_number=same_last4_id(ALICE_ID), label="mallory"
    )
    mallory = Client()
    assert login_with_card(mallory, mallory_card, id_number=ALICE_ID).status_code == 200
    assert mallory.session[AUTH_SESSION_KEY] != alice_user
    # The weak check binds nothing by ID number.
    assert not CitizenIdentity.objects.exclude(id_hash=None).exists()
    assert get_user_model().objects.count() == 2


def test_registry_answers_do_not_tell_whether_a_number_is_registered(moica_settings, pki):
    unregistered = same_last4_id(ALICE_ID)
    card = pki.issue_card(generation="G3", name="測試愛麗絲", id_number=unregistered, label="u")
    answers = []
    for id_number in (ALICE_ID, unregistered):
        response = login_with_card(Client(), card, id_number=id_number, birth_date="0700101")
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][1]["code"] == "birth_date_mismatch"


def test_audit_rows_are_bounded(moica_settings, cards):
    client = Client()
    body = signed_body(client, cards.alice)
    body["certificate"] = "A" * 60000
    assert_refused(post_login(client, body), "malformed_certificate")
    assert login_with_card(Client(), cards.alice).status_code == 200
    limit = 64 * 1024  # MOICA_AUTH_MAX_BODY_BYTES
    for row in LoginAttempt.objects.values():
        for name in ("signed_content", "signature", "certificate"):
            assert len(row[name]) <= limit
        for name in ("outcome", "cert_fingerprint", "cert_serial", "issuer"):
            assert len(row[name]) <= 500
    refused = LoginAttempt.objects.get(outcome="malformed_certificate")
    assert refused.certificate == refused.signature == ""


# --- async views -------------------------------------------------------------------------


def test_async_views_behind_the_decorator_and_mixin(moica_settings, cards):
    async_client = AsyncClient()
    for path in ("/async/", "/async-mixin/"):
        response = async_to_sync(async_client.get)(path)
        assert response.status_code == 302 and "fields=id_number" in response["Location"]
        response = async_to_sync(async_client.get)(path, headers={"Accept": "application/json"})
        assert response.status_code == 401
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    async_client.cookies = client.cookies
    response = async_to_sync(async_client.get)("/async/", headers={"Accept": "application/json"})
    assert response.status_code == 403 and response.json()["code"] == "step_up_required"
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200
    async_client.cookies = client.cookies
    response = async_to_sync(async_client.get)("/async/")
    assert response.json() == {"ok": True, "name": cards.alice.name, "fields": ["id_number"]}
    assert async_to_sync(async_client.get)("/async-mixin/").json() == {"ok": True}


def test_async_view_with_a_password_session(moica_settings):
    # Logged in by password (no card login in the session): refused, not a crash.
    user = get_user_model().objects.create_user(username="staff", password="pw-0123456789")
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    async_client = AsyncClient()
    async_client.cookies = client.cookies
    response = async_to_sync(async_client.get)("/async/", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json()["code"] == "login_required"


# --- unexpected failures -------------------------------------------------------------------


class CrashingVerifier:
    provides = frozenset({"id_number"})

    def verify(self, *, citizen: Any, data: Any) -> frozenset[str]:
        raise RuntimeError("bug in a personal-data verifier")


CRASHING_VERIFIER = CrashingVerifier()


class CrashingChecker:
    def check(self, chain: Any, *, at: Any) -> Any:
        raise RuntimeError("bug in a revocation checker")


def crashing_checker(*, store: Any, trust: Any, settings: Any) -> CrashingChecker:
    return CrashingChecker()


def test_crashing_personal_data_verifier(moica_settings, cards):
    moica_settings.MOICA_AUTH_VERIFIERS = ["tests.test_django_attacks.CRASHING_VERIFIER"]
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID)
    assert_refused(response, "personal_data_unverified", 503)
    assert not logged_in(client)


def test_crashing_revocation_checker(moica_settings, cards):
    moica_settings.MOICA_AUTH_REVOCATION = {"checker": "tests.test_django_attacks.crashing_checker"}
    client = Client()
    response = login_with_card(client, cards.alice)
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["ok"] is False and response.status_code in (400, 503)
    assert not logged_in(client)


@contextmanager
def failing_insert(table: str, when: str = "1") -> Iterator[None]:
    """A real database failure: a SQLite trigger aborting inserts into ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TRIGGER moica_test_fail BEFORE INSERT ON {table} "
            f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER moica_test_fail")


def test_database_error_while_binding_is_a_json_503(moica_settings, cards):
    client = Client()
    with failing_insert("moica_auth_citizenidentity"):
        response = login_with_card(client, cards.alice)
    assert_refused(response, "login_unavailable", 503)
    assert not logged_in(client)
    assert not CitizenIdentity.objects.exists()


def test_database_error_after_login_undoes_the_login(moica_settings, cards):
    # The session is already logged in when the audit row of the success fails.
    client = Client()
    with failing_insert("moica_auth_loginattempt", "NEW.outcome = 'ok'"):
        response = login_with_card(client, cards.alice)
    assert_refused(response, "login_unavailable", 503)
    assert not logged_in(client)
    assert client.get("/moica/session/").json() == {"authenticated": False}
    assert LoginAttempt.objects.get().outcome == "login_unavailable"


def test_failing_signal_receivers_do_not_break_the_answer(moica_settings, cards):
    def explode(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    moica_login_failed.connect(explode)
    moica_login_succeeded.connect(explode)
    try:
        assert_refused(post_login(Client(), {"nonce": "x"}), "field_required")
        client = Client()
        assert login_with_card(client, cards.alice).status_code == 200
        assert logged_in(client)
    finally:
        moica_login_failed.disconnect(explode)
        moica_login_succeeded.disconnect(explode)


def test_broken_rate_limit_setting_is_json(moica_settings):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failurez": 3}
    client = Client()
    client.get("/moica/session/")
    response = client.post("/moica/challenge/")
    assert_refused(response, "configuration_error", 500)
    assert_refused(post_login(client, {"nonce": "x"}), "configuration_error", 500)


def test_login_input_repr_hides_personal_data_and_signature():
    from moica_auth.views import LoginInput

    data = LoginInput(
        signature="SIGNATUREBASE64",
        signature_type="PKCS7",
        certificate="CERTBASE64",
        card_sn="TP0300000001",
        nonce="n",
        id_number="A123456789",
        birth_date="0600101",
        next=None,
        fields=frozenset(),
    )
    shown = repr(data)
    for secret in ("A123456789", "0600101", "SIGNATUREBASE64", "CERTBASE64"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [("MOICA_AUTH_MIN_RSA_BITS", 0), ("MOICA_AUTH_ALLOWED_HASHES", ["sha3"])],
)
def test_unusable_validation_settings_are_a_configuration_error_not_a_crash(
    moica_settings, cards, name, value
):
    setattr(moica_settings, name, value)
    client = Client()
    client.get("/moica/session/")
    response = client.post("/moica/challenge/", headers=csrf_header(client))
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "configuration_error"
    assert client.get("/moica/session/").json() == {"authenticated": False}


def test_single_policy_oid_string_is_one_oid(moica_settings):
    from moica_auth.conf import app_settings

    moica_settings.MOICA_AUTH_POLICY_OIDS = "2.16.886.101.0.3.3"
    oids = app_settings.POLICY_OIDS
    assert oids == frozenset({"2.16.886.101.0.3.3"})
