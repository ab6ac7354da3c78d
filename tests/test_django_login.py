"""End-to-end card login through Django's test client, and every way it refuses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth import authenticate
from django.test import Client

from moica_auth.backends import MoicaBackend, MoicaToken
from moica_auth.certificate import CitizenCertificate
from moica_auth.exceptions import FieldRequired
from moica_auth.models import CitizenIdentity, LoginAttempt
from moica_auth.signals import moica_login_failed, moica_login_succeeded
from tests.django_fixtures import (
    ALICE_ID,
    BOB_ID,
    assert_refused,
    get_challenge,
    login_body,
    login_with_card,
    post_login,
    sign_challenge,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("signature_type", ["PKCS7", "PKCS1"])
def test_login_end_to_end(moica_settings, cards, signature_type):
    client = Client()
    response = login_with_card(client, cards.alice, signature_type=signature_type)
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "redirect": "/accounts/profile/"}
    session = client.get("/moica/session/").json()
    assert session["authenticated"] is True
    assert session["card_serial"] == cards.alice.subject_serial
    assert session["verified"] == []
    assert client.session[AUTH_SESSION_KEY]
    identity = CitizenIdentity.objects.get()
    assert identity.id_hash is None
    assert identity.cert_fingerprint
    attempt = LoginAttempt.objects.get()
    assert attempt.outcome == "ok" and attempt.user_id == identity.user_id
    assert attempt.signed_content.startswith("moica-auth/1 origin=http://testserver ")


def test_form_login_redirects_to_safe_next_only(moica_settings, cards):
    client = Client()
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge)
    body = login_body(challenge, signed, next="https://evil.example/")
    response = client.post("/moica/login/", body)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"

    client = Client()
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge)
    response = client.post("/moica/login/", login_body(challenge, signed, next="/labor/"))
    assert response.status_code == 302
    assert response["Location"] == "/labor/"


def test_session_key_rotates_on_login(moica_settings, cards):
    client = Client()
    get_challenge(client)
    before = client.cookies["sessionid"].value
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge)
    assert post_login(client, login_body(challenge, signed)).status_code == 200
    assert client.cookies["sessionid"].value != before


def test_registry_confirmed_id_number_does_not_bind_a_renewed_card(moica_settings, cards):
    # A registry proves that the number exists, not that it is this card holder's: the
    # account stays keyed by the certificate (binding on pair-proving evidence only:
    # tests/test_login_binding.py). Before issue #8 this bound both cards to one user.
    first = login_with_card(Client(), cards.alice, id_number=ALICE_ID)
    assert first.status_code == 200, first.content
    second = login_with_card(Client(), cards.alice_renewed, id_number=ALICE_ID)
    assert second.status_code == 200, second.content
    assert CitizenIdentity.objects.count() == 2
    assert not CitizenIdentity.objects.exclude(id_hash=None).exists()
    users = set(LoginAttempt.objects.values_list("user_id", flat=True))
    assert len(users) == 2


def test_renewed_card_without_id_number_is_a_new_user(moica_settings, cards):
    login_with_card(Client(), cards.alice)
    login_with_card(Client(), cards.alice_renewed)
    assert CitizenIdentity.objects.count() == 2


def test_evidence_is_kept_for_successful_logins(moica_settings, cards):
    client = Client()
    challenge = get_challenge(client)
    signed = sign_challenge(cards.alice, challenge)
    assert post_login(client, login_body(challenge, signed)).status_code == 200
    attempt = LoginAttempt.objects.get()
    assert attempt.signed_content == challenge["tbs"]
    assert attempt.signature == signed["signature"]
    assert attempt.certificate == signed["certb64"]
    assert attempt.cert_fingerprint == CitizenIdentity.objects.get().cert_fingerprint
    assert attempt.client_ip == "127.0.0.1"


def test_refusals_keep_no_evidence(moica_settings, cards):
    login_with_card(Client(), cards.alice, id_number="A123")
    attempt = LoginAttempt.objects.get()
    assert attempt.outcome == "id_number_invalid"
    assert attempt.signature == attempt.certificate == attempt.signed_content == ""
    assert attempt.user is None


def test_signals(moica_settings, cards):
    seen: list[tuple[str, str, Any]] = []

    def ok(sender, request, code, citizen, **kwargs):
        seen.append(("ok", code, citizen))

    def failed(sender, request, code, citizen, **kwargs):
        seen.append(("failed", code, citizen))

    moica_login_succeeded.connect(ok)
    moica_login_failed.connect(failed)
    try:
        login_with_card(Client(), cards.alice)
        login_with_card(Client(), cards.alice, id_number=BOB_ID)
        post_login(Client(), {"nonce": "x"})
    finally:
        moica_login_succeeded.disconnect(ok)
        moica_login_failed.disconnect(failed)
    assert [(kind, code) for kind, code, _ in seen] == [
        ("ok", "ok"),
        ("failed", "id_number_mismatch"),
        ("failed", "field_required"),
    ]
    assert seen[0][2].card_serial == cards.alice.subject_serial
    assert seen[1][2] is not None and seen[2][2] is None


def test_messages_follow_the_active_language(moica_settings):
    english = post_login(Client(), {"nonce": "x"}, HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["message"] == FieldRequired().message_in("en")
    chinese = post_login(Client(), {"nonce": "x"}, HTTP_ACCEPT_LANGUAGE="zh-hant").json()
    assert chinese["message"] == FieldRequired().message_in("zh-hant")


def test_inactive_user_cannot_log_in(moica_settings, cards):
    assert login_with_card(Client(), cards.alice).status_code == 200
    user = CitizenIdentity.objects.get().user
    user.is_active = False
    user.save()
    client = Client()
    assert_refused(login_with_card(client, cards.alice), "account_unavailable", 403)
    assert AUTH_SESSION_KEY not in client.session


def test_unknown_citizen_refused_when_user_creation_is_off(moica_settings, cards):
    moica_settings.MOICA_AUTH_CREATE_USERS = False
    assert_refused(login_with_card(Client(), cards.alice), "account_unavailable", 403)
    assert not CitizenIdentity.objects.exists()


def test_registry_confirmed_id_number_does_not_rekey_the_account(moica_settings, cards):
    assert login_with_card(Client(), cards.alice).status_code == 200
    first = CitizenIdentity.objects.get()
    assert login_with_card(Client(), cards.alice, id_number=ALICE_ID).status_code == 200
    same = CitizenIdentity.objects.get()
    assert same.pk == first.pk and same.id_hash is None
    assert login_with_card(Client(), cards.alice_renewed, id_number=ALICE_ID).status_code == 200
    assert CitizenIdentity.objects.filter(user_id=first.user_id).count() == 1
    assert CitizenIdentity.objects.count() == 2


def test_backend_contract(moica_settings, cards):
    backend = MoicaBackend()
    assert backend.authenticate(None) is None
    assert authenticate(None, username="x", password="y") is None
    citizen = CitizenCertificate.from_certificate(cards.alice.signing.certificate)
    token = MoicaToken.create(citizen=citizen, fields=frozenset(), id_hash=None, verified=None)
    forged = dataclasses.replace(token, id_hash="0" * 64)
    assert backend.authenticate(None, moica_token=forged) is None
    assert not CitizenIdentity.objects.exists()
    user = backend.authenticate(None, moica_token=token)
    assert user is not None and not user.has_usable_password()
    assert backend.get_user(user.pk) == user
    assert backend.get_user(10**9) is None


def test_login_page_lists_requested_fields(moica_settings):
    page = Client().get("/moica/login-page/?fields=id_number,birth_date&next=https://evil.example/")
    assert page.status_code == 200
    assert b'data-moica-field="id_number"' in page.content
    assert b'data-moica-field="birth_date"' in page.content
    assert b"evil.example" not in page.content
    assert "csrftoken" in page.cookies
    # The HiPKI popup must keep window.opener, whatever SecurityMiddleware's default.
    assert page["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
