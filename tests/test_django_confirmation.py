"""``MOICA_AUTH_CONFIRMATION``: the MOICA ID confirmation service wired into the Django
login, end to end against the local test service on 127.0.0.1 (real HTTP, real XML
signatures both ways), and system check E008."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.core.checks import run_checks
from django.test import Client

from moica_auth.conf import app_settings
from moica_auth.exceptions import ConfigurationError
from moica_auth.models import CitizenIdentity
from moica_auth.services import get_services
from moica_auth.testing.confirmation_server import ConfirmationServer
from tests.confirmation_fixtures import (
    AT,
    Party,
)
from tests.django_fixtures import (
    ALICE_BIRTH,
    ALICE_ID,
    assert_refused,
    login_with_card,
)

pytestmark = pytest.mark.django_db

VERIFIER = "moica_auth.identity.verifiers.MoicaConfirmationVerifier"


def pem(party: Party) -> tuple[str, str]:
    cert = party.cert.public_bytes(serialization.Encoding.PEM).decode()
    key = party.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert, key


@pytest.fixture(name="service_server", scope="module")
def service_server_fixture(rp: Party, service: Party, cards: Any) -> Iterator[ConfirmationServer]:
    # Alice is registered with her current card; her renewed card is not activated yet.
    registry = {
        (cards.alice.subject_serial, ALICE_ID): (ALICE_BIRTH, 0),
        (cards.alice_renewed.subject_serial, ALICE_ID): (ALICE_BIRTH, 3),
    }
    with ConfirmationServer(
        service_cert=service.cert,
        service_key=service.key,
        clients=[rp.cert],
        registry=registry,
        at=AT,
    ) as server:
        yield server


@pytest.fixture(name="confirmation")
def confirmation_fixture(
    moica_settings: Any, service_server: ConfirmationServer, rp: Party, service: Party
) -> Iterator[ConfirmationServer]:
    rp_cert, rp_key = pem(rp)
    moica_settings.MOICA_AUTH_VERIFIERS = [VERIFIER]
    moica_settings.MOICA_AUTH_CONFIRMATION = {
        "url": service_server.url,
        "client_cert": rp_cert,
        "client_key": rp_key,
        "service_cert": pem(service)[0],
        "timeout": 5,
    }
    service_server.faults.clear()
    service_server.received.clear()
    yield service_server
    service_server.faults.clear()


def logged_in(client: Client) -> bool:
    return AUTH_SESSION_KEY in client.session


def test_confirmed_id_number_and_birth_date_log_in(confirmation, cards):
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    assert response.status_code == 200, response.content
    assert client.get("/moica/session/").json()["verified"] == ["birth_date", "id_number"]
    # The service was asked about this card's serial and got the Gregorian birth date.
    [[record]] = confirmation.received
    assert record.card_serial == cards.alice.subject_serial
    assert record.birth_date == "19710101"
    assert CitizenIdentity.objects.get().id_hash


def test_wrong_birth_date_is_birth_date_mismatch(confirmation, cards):
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0700101")
    assert_refused(response, "birth_date_mismatch", 403)
    assert not logged_in(client)


def test_id_number_unknown_to_the_service_is_id_number_mismatch(confirmation, cards, pki):
    # Another person's card with the same last four (the local check passes): the
    # service knows the number only with Alice's card, so the pair is refused.
    other = pki.issue_card(generation="G3", name="測試路人", id_number=ALICE_ID, label="other")
    client = Client()
    response = login_with_card(client, other, id_number=ALICE_ID)
    assert_refused(response, "id_number_mismatch", 403)
    assert not logged_in(client)
    assert not CitizenIdentity.objects.exists()


def test_card_not_activated_is_personal_data_unverified(confirmation, cards):
    client = Client()
    response = login_with_card(client, cards.alice_renewed, id_number=ALICE_ID)
    assert_refused(response, "personal_data_unverified", 503)
    assert not logged_in(client)


@pytest.mark.parametrize("fault", ["server_error", "http500", "bad_signature", "wrong_nonce"])
def test_service_failure_is_personal_data_unverified(confirmation, cards, fault):
    confirmation.faults.add(fault)
    client = Client()
    response = login_with_card(client, cards.alice, id_number=ALICE_ID, birth_date="0600101")
    data = assert_refused(response, "personal_data_unverified", 503)
    # The service's own status or error code is not the citizen's business.
    assert set(data) == {"ok", "code", "message"}
    assert not logged_in(client)
    assert not CitizenIdentity.objects.exists()


def test_service_outage_does_not_lock_the_card(confirmation, moica_settings, cards):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"cert_failures": 1, "ip_failures": 1}
    confirmation.faults.add("server_error")
    for _ in range(2):
        response = login_with_card(Client(), cards.alice, id_number=ALICE_ID)
        assert_refused(response, "personal_data_unverified", 503)
    confirmation.faults.clear()
    assert login_with_card(Client(), cards.alice, id_number=ALICE_ID).status_code == 200


def test_card_only_login_does_not_call_the_service(confirmation, cards):
    assert login_with_card(Client(), cards.alice).status_code == 200
    assert confirmation.received == []


def test_key_files_with_password(confirmation, moica_settings, rp, service, cards, tmp_path):
    cert_path, key_path, service_path = (tmp_path / n for n in ("rp.crt", "rp.key", "svc.crt"))
    cert_path.write_text(pem(rp)[0])
    service_path.write_text(pem(service)[0])
    key_path.write_bytes(
        rp.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-password"),
        )
    )
    moica_settings.MOICA_AUTH_CONFIRMATION = {
        "url": confirmation.url,
        "client_cert": str(cert_path),
        "client_key": str(key_path),
        "client_key_password": "key-password",
        "service_cert": str(service_path),
    }
    response = login_with_card(Client(), cards.alice, id_number=ALICE_ID, birth_date="0600101")
    assert response.status_code == 200, response.content


def test_verifier_without_settings_fails_closed(confirmation, moica_settings, cards):
    moica_settings.MOICA_AUTH_CONFIRMATION = None
    with pytest.raises(ConfigurationError):
        get_services()
    client = Client()
    client.get("/moica/session/")
    response = client.post("/moica/challenge/")
    assert_refused(response, "configuration_error", 500)
    assert not logged_in(client)


def e008(moica_settings: Any) -> list[str]:
    return [m.msg for m in run_checks() if m.id == "moica_auth.E008"]


def test_check_e008(confirmation, moica_settings, tmp_path):
    assert e008(moica_settings) == []
    moica_settings.MOICA_AUTH_CONFIRMATION = None
    assert len(e008(moica_settings)) == 1
    complete = {
        "url": confirmation.url,
        "client_cert": "x",
        "client_key": "y",
        "service_cert": "z",
    }
    moica_settings.MOICA_AUTH_CONFIRMATION = {"url": confirmation.url, "client_cert": "x"}
    [message] = e008(moica_settings)
    assert "client_key" in message and "service_cert" in message
    moica_settings.MOICA_AUTH_CONFIRMATION = {**complete, "pasword": "typo"}
    assert "pasword" in e008(moica_settings)[0]
    moica_settings.MOICA_AUTH_CONFIRMATION = {**complete, "client_cert": str(tmp_path / "no")}
    assert "cannot be used" in e008(moica_settings)[0]
    moica_settings.MOICA_AUTH_CONFIRMATION = ["not", "a", "dict"]
    assert len(e008(moica_settings)) == 1
    with pytest.raises(ConfigurationError):
        _ = app_settings.CONFIRMATION
    # Not listed: nothing to check.
    moica_settings.MOICA_AUTH_VERIFIERS = ["moica_auth.identity.verifiers.CertificateLast4Verifier"]
    moica_settings.MOICA_AUTH_CONFIRMATION = None
    assert e008(moica_settings) == []
