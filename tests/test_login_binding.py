"""Identity binding on evidence (issue #8 item 1): an account is keyed by an ID number
only when a verifier proved, in this login, that the number belongs to this certificate
(the MOICA confirmation service); knowledge of a number never moves an account to another
card; an administrator can re-link a renewed card explicitly, and that is audited."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from moica_auth.models import CitizenIdentity, LoginAttempt
from moica_auth.testing.confirmation_server import ConfirmationServer
from tests.confirmation_fixtures import (
    AT,
    Party,
)
from tests.django_fixtures import (
    ALICE_BIRTH,
    ALICE_ID,
    login_with_card,
)
from tests.test_django_attacks import same_last4_id
from tests.test_django_confirmation import pem

pytestmark = pytest.mark.django_db

LAST4 = ["moica_auth.identity.verifiers.CertificateLast4Verifier"]
REGISTRY = [*LAST4, "tests.django_fixtures.TestRegistry"]


def user_of(client: Client) -> Any:
    return client.session.get(AUTH_SESSION_KEY)


@pytest.fixture(name="mallory_card")
def mallory_card_fixture(pki: Any) -> Any:
    # Mallory's own, valid card ends in the same four characters as Alice's number.
    return pki.issue_card(
        generation="G3", name="測試壞人", id_number=same_last4_id(ALICE_ID), label="mallory"
    )


@pytest.mark.parametrize("verifiers", [REGISTRY, LAST4], ids=["registry", "defaults"])
def test_victim_first_then_attacker_with_the_victims_number(
    moica_settings, cards, mallory_card, verifiers
):
    moica_settings.MOICA_AUTH_VERIFIERS = verifiers
    victim = Client()
    fields = {"birth_date": "0600101"} if verifiers is REGISTRY else {}
    assert login_with_card(victim, cards.alice, id_number=ALICE_ID, **fields).status_code == 200
    victim_identity = CitizenIdentity.objects.get()
    attacker = Client()
    # The issue's attack: the victim's number, no birth date (not required by default).
    response = login_with_card(attacker, mallory_card, id_number=ALICE_ID)
    assert response.status_code == 200, response.content
    assert user_of(attacker) != user_of(victim)
    # The victim's identity row still holds the victim's card, and nothing is keyed by
    # the number (neither verifier proved whose it is).
    victim_identity.refresh_from_db()
    assert victim_identity.cert_fingerprint == victim.session["moica"]["fingerprint"]
    assert victim_identity.name == "測試愛麗絲"
    assert not CitizenIdentity.objects.exclude(id_hash=None).exists()
    # The victim's next login still reaches the victim's own account.
    again = Client()
    assert login_with_card(again, cards.alice, id_number=ALICE_ID, **fields).status_code == 200
    assert user_of(again) == user_of(victim)


@pytest.mark.parametrize("verifiers", [REGISTRY, LAST4], ids=["registry", "defaults"])
def test_attacker_first_then_victim(moica_settings, cards, mallory_card, verifiers):
    moica_settings.MOICA_AUTH_VERIFIERS = verifiers
    attacker = Client()
    assert login_with_card(attacker, mallory_card, id_number=ALICE_ID).status_code == 200
    victim = Client()
    fields = {"birth_date": "0600101"} if verifiers is REGISTRY else {}
    assert login_with_card(victim, cards.alice, id_number=ALICE_ID, **fields).status_code == 200
    # The victim's logins never land in the account the attacker opened with the number.
    assert user_of(victim) != user_of(attacker)
    assert CitizenIdentity.objects.count() == 2
    assert get_user_model().objects.count() == 2


# --- the confirmation service: pair-proving evidence -------------------------------------


@pytest.fixture(name="pair_server", scope="module")
def pair_server_fixture(rp: Party, service: Party, cards: Any) -> Iterator[ConfirmationServer]:
    # Both of Alice's cards are activated: the service confirms the number for each.
    registry = {
        (cards.alice.subject_serial, ALICE_ID): (ALICE_BIRTH, 0),
        (cards.alice_renewed.subject_serial, ALICE_ID): (ALICE_BIRTH, 0),
    }
    with ConfirmationServer(
        service_cert=service.cert,
        service_key=service.key,
        clients=[rp.cert],
        registry=registry,
        at=AT,
    ) as server:
        yield server


@pytest.fixture(name="confirmed")
def confirmed_fixture(
    moica_settings: Any, pair_server: ConfirmationServer, rp: Party, service: Party
) -> Any:
    rp_cert, rp_key = pem(rp)
    moica_settings.MOICA_AUTH_VERIFIERS = [
        "moica_auth.identity.verifiers.MoicaConfirmationVerifier"
    ]
    moica_settings.MOICA_AUTH_CONFIRMATION = {
        "url": pair_server.url,
        "client_cert": rp_cert,
        "client_key": rp_key,
        "service_cert": pem(service)[0],
        "timeout": 5,
    }
    return moica_settings


def test_confirmation_binding_survives_card_renewal(confirmed, cards):
    first = Client()
    assert login_with_card(first, cards.alice, id_number=ALICE_ID).status_code == 200
    identity = CitizenIdentity.objects.get()
    assert identity.id_hash and len(identity.id_hash) == 64
    renewed = Client()
    assert login_with_card(renewed, cards.alice_renewed, id_number=ALICE_ID).status_code == 200
    assert user_of(renewed) == user_of(first)
    identity.refresh_from_db()
    assert identity.cert_fingerprint == renewed.session["moica"]["fingerprint"]
    assert CitizenIdentity.objects.count() == 1


def test_confirmation_upgrades_a_card_only_account_in_place(confirmed, cards):
    assert login_with_card(Client(), cards.alice).status_code == 200
    first = CitizenIdentity.objects.get()
    assert first.id_hash is None
    assert login_with_card(Client(), cards.alice, id_number=ALICE_ID).status_code == 200
    upgraded = CitizenIdentity.objects.get()
    assert upgraded.pk == first.pk and upgraded.id_hash


def test_confirmation_refuses_another_card_with_the_number(confirmed, cards, mallory_card):
    assert login_with_card(Client(), cards.alice, id_number=ALICE_ID).status_code == 200
    attacker = Client()
    response = login_with_card(attacker, mallory_card, id_number=ALICE_ID)
    assert response.status_code == 403 and response.json()["code"] == "id_number_mismatch"
    assert AUTH_SESSION_KEY not in attacker.session


# --- explicit re-link -------------------------------------------------------------------


def _renewed_in_separate_account(cards: Any) -> tuple[CitizenIdentity, CitizenIdentity]:
    assert login_with_card(Client(), cards.alice).status_code == 200
    assert login_with_card(Client(), cards.alice_renewed).status_code == 200
    old, new = CitizenIdentity.objects.order_by("created_at", "pk")
    assert old.user_id != new.user_id
    return old, new


def test_relink_command_moves_the_new_card_and_audits(moica_settings, cards):
    old, new = _renewed_in_separate_account(cards)
    out = StringIO()
    call_command(
        "moica_relink",
        fingerprint=new.cert_fingerprint,
        to_user=old.user.get_username(),
        by="clerk 7",
        reason="saw the citizen's ID card at the counter",
        stdout=out,
    )
    new.refresh_from_db()
    assert new.user_id == old.user_id
    row = LoginAttempt.objects.get(outcome="admin_relink")
    assert row.user_id == old.user_id and row.cert_fingerprint == new.cert_fingerprint
    assert "clerk 7" in row.signed_content and "counter" in row.signed_content
    client = Client()
    assert login_with_card(client, cards.alice_renewed).status_code == 200
    assert int(user_of(client)) == old.user_id


def test_relink_command_refuses_without_reason_or_twice(moica_settings, cards):
    old, new = _renewed_in_separate_account(cards)
    args = {"fingerprint": new.cert_fingerprint, "to_user": old.user.get_username(), "by": "x"}
    with pytest.raises(CommandError, match="reason"):
        call_command("moica_relink", reason="  ", **args)
    with pytest.raises(CommandError, match="no such user"):
        call_command(
            "moica_relink", fingerprint=new.cert_fingerprint, to_user="nobody", by="x", reason="r"
        )
    call_command("moica_relink", reason="checked", **args, stdout=StringIO())
    with pytest.raises(CommandError, match="already"):
        call_command("moica_relink", reason="checked", **args)
    assert LoginAttempt.objects.filter(outcome="admin_relink").count() == 1


def test_relink_admin_action_is_superuser_only_and_audited(moica_settings, cards, settings):
    settings.ROOT_URLCONF = "tests.django_admin_urls"
    old, new = _renewed_in_separate_account(cards)
    user_model = get_user_model()
    staff = user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_citizenidentity"))
    admin = user_model.objects.create_superuser("root", password="pw-root-123")
    url = "/admin/moica_auth/citizenidentity/"
    body = {"action": "relink_newer_to_older", "_selected_action": [old.pk, new.pk]}
    client = Client()
    client.force_login(staff)
    client.post(url, body)
    new.refresh_from_db()
    assert new.user_id != old.user_id  # not offered to staff
    client.force_login(admin)
    response = client.post(url, body)
    assert response.status_code == 302
    new.refresh_from_db()
    assert new.user_id == old.user_id
    row = LoginAttempt.objects.get(outcome="admin_relink")
    assert "admin:root" in row.signed_content
