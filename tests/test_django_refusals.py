"""Every refusal of the login endpoint: a 4xx JSON with the error code, and no login."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.test import Client

from moica_auth.models import LoginAttempt
from tests.django_fixtures import (
    ALICE_ID,
    BOB_ID,
    assert_refused,
    get_challenge,
    login_body,
    login_with_card,
    pem_text,
    post_login,
    sign_challenge,
)

pytestmark = pytest.mark.django_db


def not_logged_in(client: Client) -> None:
    assert AUTH_SESSION_KEY not in client.session
    assert client.get("/moica/session/").json() == {"authenticated": False}


def flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[-10] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def signed_pair(client, card, **kwargs):
    challenge = get_challenge(client)
    return challenge, sign_challenge(card, challenge, **kwargs)


@pytest.mark.parametrize("signature_type", ["PKCS7", "PKCS1"])
def test_rejects_tampered_signature(moica_settings, cards, signature_type):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice, signature_type=signature_type)
    signed["signature"] = flip(signed["signature"])
    response = post_login(client, login_body(challenge, signed, signature_type=signature_type))
    assert_refused(response, "signature_invalid")
    not_logged_in(client)
    assert LoginAttempt.objects.get().outcome == "signature_invalid"


def test_rejects_expired_certificate(moica_settings, cards):
    client = Client()
    assert_refused(login_with_card(client, cards.alice_expired), "certificate_expired", 403)
    not_logged_in(client)


def test_rejects_encryption_certificate(moica_settings, cards):
    client = Client()
    response = login_with_card(client, cards.alice, sign_kwargs={"use_encryption_key": True})
    assert_refused(response, "wrong_key_usage", 403)
    not_logged_in(client)


def test_rejects_untrusted_issuer(moica_settings, cards, pki):
    # Only the G2 root is trusted: a G3 card must not build a path.
    moica_settings.MOICA_AUTH_TRUST_ANCHORS = pem_text([pki.root("G2").certificate])
    client = Client()
    response = login_with_card(client, cards.alice)
    assert_refused(response, "untrusted_issuer", 403)
    not_logged_in(client)


def test_rejects_replay_in_same_session(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    assert post_login(client, body).status_code == 200
    client.post("/moica/logout/")
    assert_refused(post_login(client, body), "challenge_reused")
    not_logged_in(client)


def test_rejects_replay_from_another_session(moica_settings, cards):
    victim, attacker = Client(), Client()
    challenge, signed = signed_pair(victim, cards.alice)
    get_challenge(attacker)  # the attacker has a session of their own
    assert_refused(post_login(attacker, login_body(challenge, signed)), "session_mismatch")
    not_logged_in(attacker)
    # The challenge is burnt: the victim's own late post is refused too.
    assert_refused(post_login(victim, login_body(challenge, signed)), "challenge_reused")


def test_rejects_expired_challenge(moica_settings, cards, clock):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    clock.advance(121)
    assert_refused(post_login(client, login_body(challenge, signed)), "challenge_expired")
    not_logged_in(client)


def test_rejects_foreign_origin(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    response = post_login(client, login_body(challenge, signed), HTTP_ORIGIN="http://evil.example")
    assert_refused(response, "origin_mismatch")
    not_logged_in(client)


def test_rejects_challenge_issued_for_another_origin(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    moica_settings.MOICA_AUTH_ORIGIN = "https://other.example"
    assert_refused(post_login(client, login_body(challenge, signed)), "origin_mismatch")


def test_rejects_unknown_challenge(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    body["nonce"] = "A" * 43
    assert_refused(post_login(client, body), "challenge_unknown")


@pytest.mark.parametrize("nonce", [b"\x00" * 32, None, b"A" * 43])
def test_rejects_wrong_or_missing_signed_nonce(moica_settings, cards, nonce):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice, nonce=nonce)
    assert_refused(post_login(client, login_body(challenge, signed)), "nonce_mismatch")


def test_accepts_nonce_signed_as_text(moica_settings, cards):
    # The page passes the nonce to HiPKI as text; a component may sign those characters.
    client = Client()
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge, nonce=challenge["nonce"].encode())
    assert post_login(client, login_body(challenge, signed)).status_code == 200


def test_rejects_signature_over_other_content(moica_settings, cards):
    client = Client()
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge, signature_type="PKCS1", tbs="something else")
    response = post_login(client, login_body(challenge, signed, signature_type="PKCS1"))
    assert_refused(response, "signature_invalid")


def test_rejects_card_number_mismatch(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    body["card_sn"] = "TP03000000000000"
    assert_refused(post_login(client, body), "card_number_mismatch")


def test_rejects_certificate_of_another_card(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice, signature_type="PKCS1")
    bob = sign_challenge(cards.bob, challenge, signature_type="PKCS1")
    body = login_body(challenge, signed, signature_type="PKCS1")
    body["certificate"] = bob["certb64"]
    assert_refused(post_login(client, body), "signature_invalid")


# --- personal data -------------------------------------------------------------------


def test_requested_field_missing(moica_settings, cards):
    client = Client()
    data = assert_refused(
        login_with_card(client, cards.alice, fields="birth_date"), "field_required"
    )
    assert data["fields"] == ["birth_date"]
    not_logged_in(client)


def test_required_fields_setting(moica_settings, cards):
    moica_settings.MOICA_AUTH_REQUIRED_FIELDS = ["id_number"]
    assert_refused(login_with_card(Client(), cards.alice), "field_required")


def test_rejects_id_number_of_someone_else(moica_settings, cards):
    client = Client()
    assert_refused(
        login_with_card(client, cards.alice, id_number=BOB_ID), "id_number_mismatch", 403
    )
    not_logged_in(client)


def test_rejects_invalid_id_number(moica_settings, cards):
    assert_refused(login_with_card(Client(), cards.alice, id_number="A123"), "id_number_invalid")


def test_rejects_wrong_birth_date(moica_settings, cards):
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0700101")
    assert_refused(response, "birth_date_mismatch", 403)
    not_logged_in(client)


def test_rejects_invalid_birth_date(moica_settings, cards):
    response = login_with_card(Client(), cards.alice, id_number=ALICE_ID, birth_date="0601399")
    assert_refused(response, "birth_date_invalid")


def test_accepts_correct_personal_data(moica_settings, cards):
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    assert response.status_code == 200, response.content
    assert client.get("/moica/session/").json()["verified"] == ["birth_date", "id_number"]


# --- malformed input -----------------------------------------------------------------

MALFORMED = {
    "invalid json": ("{not json", "application/json", "malformed_request"),
    "json array": ("[1, 2]", "application/json", "malformed_request"),
    "not utf-8": (b"\xff\xfe{}", "application/json", "malformed_request"),
    "text/plain": ("signature=x", "text/plain", "malformed_request"),
    "no content type": ("", "application/octet-stream", "malformed_request"),
    "deep json": ("[" * 100000 + "]" * 100000, "application/json", "request_too_large"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bodies(moica_settings, case):
    body, content_type, code = MALFORMED[case]
    client = Client()
    get_challenge(client)
    response = client.post("/moica/login/", body, content_type=content_type)
    assert_refused(response, code)
    not_logged_in(client)


def test_deeply_nested_json_within_limit(moica_settings):
    client = Client()
    response = client.post(
        "/moica/login/", "[" * 30000 + "]" * 30000, content_type="application/json"
    )
    assert_refused(response, "malformed_request")


FIELD_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "signature not a string": ({"signature": 5}, "malformed_request"),
    "nonce a list": ({"nonce": ["x"]}, "malformed_request"),
    "missing signature": ({"signature": None}, "field_required"),
    "missing nonce": ({"nonce": None}, "field_required"),
    "bad base64 signature": ({"signature": "!!!not base64!!!"}, "malformed_signature"),
    "garbage signature": (
        {"signature": base64.b64encode(b"garbage").decode()},
        "malformed_signature",
    ),
    "unknown signature type": ({"signature_type": "RAW"}, "malformed_request"),
    "bad nonce": ({"nonce": "short"}, "malformed_request"),
    "garbage certificate": ({"certificate": "AAAA"}, "malformed_certificate"),
    "unknown field requested": ({"fields": ["shoe_size"]}, "malformed_request"),
    "fields of wrong type": ({"fields": 3}, "malformed_request"),
    "pkcs1 without certificate": (
        {"signature_type": "PKCS1", "certificate": None},
        "field_required",
    ),
}


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_malformed_fields(moica_settings, cards, case):
    changes, code = FIELD_CASES[case]
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    assert_refused(post_login(client, body), code)
    not_logged_in(client)


def test_form_field_sent_twice(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    body["signature"] = [body["signature"], body["signature"]]
    assert_refused(client.post("/moica/login/", body), "malformed_request")


def test_oversized_body_is_413(moica_settings, cards):
    client = Client()
    challenge, signed = signed_pair(client, cards.alice)
    body = login_body(challenge, signed)
    body["padding"] = "x" * (65 * 1024)
    assert_refused(post_login(client, body), "request_too_large", 413)
    not_logged_in(client)


def test_get_is_not_allowed(moica_settings):
    assert Client().get("/moica/login/").status_code == 405
    assert Client().get("/moica/challenge/").status_code == 405


# --- CSRF and logout -----------------------------------------------------------------


def test_csrf_is_enforced(moica_settings, cards):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/moica/challenge/").status_code == 403
    # With the cookie from GET session/ and the header, the whole flow works.
    response = login_with_card(client, cards.alice)
    assert response.status_code == 200, response.content
    bare = Client(enforce_csrf_checks=True)
    challenge, signed = signed_pair(bare, cards.alice)
    response = bare.post(
        "/moica/login/", json.dumps(login_body(challenge, signed)), content_type="application/json"
    )
    assert response.status_code == 403
    not_logged_in(bare)


def test_logout(moica_settings, cards):
    client = Client(enforce_csrf_checks=True)
    assert login_with_card(client, cards.alice).status_code == 200
    from tests.django_fixtures import csrf_header

    response = client.post(
        "/moica/logout/", HTTP_ACCEPT="application/json", headers=csrf_header(client)
    )
    assert response.status_code == 200 and response.json()["ok"] is True
    not_logged_in(client)
