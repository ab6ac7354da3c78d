"""The mobile login over HTTP (issue #11 phase 2): ``POST /moica/mobile/start/`` and
``POST /moica/mobile/status/`` against the virtual SP API on 127.0.0.1, through the
login core (personal-data verifiers, binding, limits, audit, Django session).

Every refusal must be a 4xx/503 JSON answer and leave the browser without a login.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from moica_auth.mobile.views import mobile_source
from moica_auth.models import LoginAttempt
from moica_auth.services import get_services
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.django_fixtures import (
    ALICE_ID,
    BOB_ID,
    csrf_header,
)
from tests.mobile_fixtures import REVOKED, ReplayingTransport, phone_api_fixture

__all__ = ["phone_api_fixture"]

pytestmark = pytest.mark.django_db


@pytest.fixture(name="mobile")
def mobile_fixture(moica_settings: Any, phone_api: VirtualSpApi) -> Iterator[Any]:
    moica_settings.MOICA_AUTH_MOBILE = phone_api.settings(poll_interval=0.1, retries=0)
    yield moica_settings
    phone_api.fault = None
    REVOKED.clear()


def start(client: Client, id_number: str = ALICE_ID, **body: Any) -> Any:
    client.get("/moica/session/")
    return client.post(
        "/moica/mobile/start/",
        json.dumps({"id_number": id_number, "mode": "push", **body}),
        content_type="application/json",
        headers=csrf_header(client),
    )


def status(client: Client, transaction: str) -> Any:
    return client.post(
        "/moica/mobile/status/",
        json.dumps({"transaction": transaction}),
        content_type="application/json",
        headers=csrf_header(client),
    )


def finish(client: Client, transaction: str) -> Any:
    """Poll until the answer is no longer pending."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = status(client, transaction)
        if response.json().get("state") != "pending":
            return response
        time.sleep(0.12)
    raise AssertionError("still pending")


def approve_and_finish(
    phone_api: VirtualSpApi, client: Client, transaction: str, id_number: str = ALICE_ID
) -> Any:
    phone_api.approve(id_number=id_number)
    return finish(client, transaction)


def logged_in(client: Client) -> bool:
    return bool(client.get("/moica/session/").json()["authenticated"])


def assert_refused_without_login(response: Any, code: str, client: Client) -> None:
    assert response["Content-Type"].startswith("application/json"), response.content
    data = response.json()
    assert data["ok"] is False and data["code"] == code, data
    assert 400 <= response.status_code < 500 or response.status_code == 503
    assert not logged_in(client)


def started(client: Client, **body: Any) -> str:
    response = start(client, **body)
    assert response.status_code == 200, response.content
    transaction: str = response.json()["transaction"]
    return transaction


# --- success -----------------------------------------------------------------------------


def test_mobile_login_creates_a_session_with_form_mobile(
    mobile: Any, phone_api: VirtualSpApi
) -> None:
    client = Client()
    response = start(client, birth_date="0600101", next="/labor/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"transaction", "expires_at"} and "qr" not in body
    # The phone is asked to sign our origin-bound challenge, never ATH-only.
    request = phone_api.pending(ALICE_ID)[-1]
    assert request.op_code == "SIGN"
    assert request.sign_infos[0]["sign_data"].startswith("moica-auth/1 origin=http://testserver ")
    assert status(client, body["transaction"]).json()["state"] == "pending"
    assert not logged_in(client)

    answer = approve_and_finish(phone_api, client, body["transaction"])
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"ok": True, "redirect": "/labor/"}
    session = client.get("/moica/session/").json()
    assert session["authenticated"] is True
    assert session["assurance"]["form"] == "mobile"
    assert set(session["verified"]) == {"id_number", "birth_date"}
    assert session["assurance"]["channel"] == "mobile-sp-api"
    assert client.session["moica"]["channel"] == "mobile-sp-api"
    assert "moica_auth_channel" not in client.session  # the old layout is not written
    # The labor-insurance page (ID number + birth date) opens.
    assert client.get("/labor/").status_code == 200
    row = LoginAttempt.objects.filter(outcome=LoginAttempt.OK).latest("pk")
    assert row.signed_content.startswith("moica-auth/1 ") and row.signature


def test_qr_mode_returns_a_server_rendered_qr_code(mobile: Any, phone_api: VirtualSpApi) -> None:
    client = Client()
    response = start(client, mode="qr")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["qr"].startswith("data:image/svg+xml") and "script" not in body["qr"]
    request = phone_api.scan(body["sp_ticket"])
    phone_api.approve(request.ticket_id)
    answer = finish(client, body["transaction"])
    assert answer.json()["ok"] is True and logged_in(client)


def test_the_personal_data_verifiers_run_on_the_mobile_path(
    mobile: Any, phone_api: VirtualSpApi
) -> None:
    """A wrong birth date is refused by the same registry verifier as for a card."""
    client = Client()
    transaction = started(client, birth_date="0700101")
    answer = approve_and_finish(phone_api, client, transaction)
    assert_refused_without_login(answer, "birth_date_mismatch", client)


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("bad_checksum", "mobile_checksum_invalid"),
        ("other_data", "signature_invalid"),
        ("foreign_cert", "untrusted_issuer"),
        ("card_cert", "mobile_certificate_required"),
        ("other_person", "id_number_mismatch"),
    ],
)
def test_forged_or_wrong_answers_are_refused(
    mobile: Any, phone_api: VirtualSpApi, fault: str, code: str
) -> None:
    client = Client()
    transaction = started(client)
    phone_api.fault = fault
    answer = approve_and_finish(phone_api, client, transaction)
    assert_refused_without_login(answer, code, client)
    assert LoginAttempt.objects.filter(outcome=code).exists()


def test_revoked_phone_certificate(mobile: Any, phone_api: VirtualSpApi) -> None:
    mobile.MOICA_AUTH_REVOCATION = {"checker": "tests.mobile_fixtures.revoking_checker"}
    REVOKED.add(phone_api.phone(ALICE_ID).signing.certificate.serial_number)
    client = Client()
    transaction = started(client)
    answer = approve_and_finish(phone_api, client, transaction)
    assert_refused_without_login(answer, "certificate_revoked", client)


def test_expired_ticket(mobile: Any, phone_api: VirtualSpApi) -> None:
    mobile.MOICA_AUTH_MOBILE = {**mobile.MOICA_AUTH_MOBILE, "time_limit": 30}
    client = Client()
    transaction = started(client, mode="qr")
    real = phone_api.clock
    phone_api.clock = lambda: real() + 31
    try:
        answer = finish(client, transaction)
    finally:
        phone_api.clock = real
    assert_refused_without_login(answer, "mobile_ticket_expired", client)


def test_reused_ticket(mobile: Any, phone_api: VirtualSpApi) -> None:
    client = Client()
    transaction = started(client)
    assert approve_and_finish(phone_api, client, transaction).json()["ok"] is True
    time.sleep(0.15)
    again = status(client, transaction)
    assert again.json()["code"] == "mobile_transaction_unknown"
    assert 400 <= again.status_code < 500
    # Another browser with the same handle gets nothing either.
    other = Client()
    other.get("/moica/session/")
    assert_refused_without_login(status(other, transaction), "mobile_transaction_unknown", other)


def test_replayed_result(mobile: Any, phone_api: VirtualSpApi) -> None:
    """MOI's answer of an earlier login, replayed on the path: the idp_checksum covers
    the transaction_id, so it does not verify for the new transaction."""
    transport = ReplayingTransport()
    mobile_source(get_services()).client.transport = transport
    first = Client()
    assert approve_and_finish(phone_api, first, started(first)).json()["ok"] is True
    transport.replay = True
    client = Client()
    transaction = started(client)
    assert_refused_without_login(finish(client, transaction), "mobile_checksum_invalid", client)


def test_result_for_another_session(mobile: Any, phone_api: VirtualSpApi) -> None:
    citizen = Client()
    transaction = started(citizen)
    phone_api.approve(id_number=ALICE_ID)
    attacker = Client()
    attacker.get("/moica/session/")
    calls = phone_api.calls["ATH-02"]
    assert_refused_without_login(status(attacker, transaction), "session_mismatch", attacker)
    assert phone_api.calls["ATH-02"] == calls  # refused before any upstream call
    # The citizen's own browser still completes.
    assert finish(citizen, transaction).json()["ok"] is True


def test_push_flood_beyond_the_limit(mobile: Any, phone_api: VirtualSpApi) -> None:
    mobile.MOICA_AUTH_MOBILE = {
        **mobile.MOICA_AUTH_MOBILE,
        "push_limits": {"per_id": 2, "id_window": 60},
    }
    for _ in range(2):
        started(Client(), id_number=BOB_ID)
    pushes = phone_api.calls["ATH-03"]
    client = Client()
    response = start(client, id_number=BOB_ID)
    assert response.status_code == 429 and "Retry-After" in response
    assert_refused_without_login(response, "mobile_push_limited", client)
    assert phone_api.calls["ATH-03"] == pushes  # the phone did not ring


def test_cancelled_on_the_phone(mobile: Any, phone_api: VirtualSpApi) -> None:
    client = Client()
    transaction = started(client)
    phone_api.cancel(id_number=ALICE_ID)
    answer = finish(client, transaction)
    assert_refused_without_login(answer, "mobile_cancelled", client)
    assert "取消" in answer.json()["message"] or answer.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "push"},
        {"id_number": 12, "mode": "push"},
        {"id_number": "A12345678X", "mode": "push"},
        {"id_number": ALICE_ID, "mode": "ath"},
        {"id_number": ALICE_ID, "mode": "push", "fields": ["card_pin"]},
    ],
)
def test_malformed_start_is_a_4xx(mobile: Any, body: dict[str, Any]) -> None:
    client = Client()
    client.get("/moica/session/")
    response = client.post(
        "/moica/mobile/start/",
        json.dumps(body),
        content_type="application/json",
        headers=csrf_header(client),
    )
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["ok"] is False


def test_unknown_transaction_and_csrf(mobile: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/moica/session/")
    no_csrf = client.post(
        "/moica/mobile/start/",
        json.dumps({"id_number": ALICE_ID, "mode": "push"}),
        content_type="application/json",
    )
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "csrf_failed"
    assert_refused_without_login(status(client, "x" * 43), "mobile_transaction_unknown", client)


def test_not_configured_is_a_503(moica_settings: Any) -> None:
    client = Client()
    response = start(client)
    assert response.status_code == 503
    assert response.json()["code"] == "mobile_not_configured"


def test_login_box_offers_the_mobile_certificate_beside_the_card(mobile: Any) -> None:
    page = Client().get("/moica/login-page/?fields=id_number,birth_date").content.decode()
    assert "data-moica-login" in page and "data-moica-mobile" in page
    assert "行動自然人憑證" in page
    assert 'data-moica-mobile-mode="push"' in page and 'data-moica-mobile-mode="qr"' in page
    assert "/moica/mobile/status/" in page and "moica-auth-mobile.js" in page


def test_login_box_without_the_setting_shows_only_the_card(moica_settings: Any) -> None:
    page = Client().get("/moica/login-page/").content.decode()
    assert "data-moica-login" in page and "data-moica-mobile" not in page
