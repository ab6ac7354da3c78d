"""WEB-01 redirect mode of the mobile login over HTTP (issue #11): the start endpoint
gives the form for MOI's page, the virtual SP API's WEB-01 pages (real HTTP on 127.0.0.1)
run the flow and hand back the result form, which is POSTed to the callback as MOI's page
would; the callback verifies ``idp_checksum`` and redirects to the finish step, which
verifies the signature in the session that started the login, through the login core.

Every refusal is an HTML page with a 4xx/503 status and leaves the browser without a login.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from django.test import Client

from moica_auth.models import LoginAttempt
from moica_auth.testing.pki import TestPKI
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.django_fixtures import ALICE_ID, BOB_ID, csrf_header

pytestmark = pytest.mark.django_db

CALLBACK = "/moica/mobile/web/callback/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(name="web_api", scope="module")
def web_api_fixture(pki: TestPKI) -> Iterator[VirtualSpApi]:
    with VirtualSpApi(pki=pki, callback_url=f"http://testserver{CALLBACK}") as server:
        server.register_phone(ALICE_ID, name="測試愛麗絲")
        server.register_phone(BOB_ID, name="測試鮑伯")
        yield server


@pytest.fixture(name="web")
def web_fixture(moica_settings: Any, web_api: VirtualSpApi) -> Iterator[Any]:
    moica_settings.MOICA_AUTH_MOBILE = web_api.settings(
        poll_interval=0.1, retries=0, modes=["push", "web"], time_limit=60
    )
    yield moica_settings
    web_api.fault = None


def start_web(client: Client, **body: Any) -> Any:
    client.get("/moica/session/")
    return client.post(
        "/moica/mobile/start/",
        json.dumps({"mode": "web", **body}),
        content_type="application/json",
        headers=csrf_header(client),
    )


def _fields(page: str) -> dict[str, str]:
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page)
    }


def moi_flow(
    api: VirtualSpApi,
    web_form: dict[str, Any],
    *,
    id_number: str = ALICE_ID,
    approve: bool = True,
) -> dict[str, str]:
    """What the citizen does on MOI's pages and phone; returns the result form MOI's page
    POSTs to the callback."""
    first = requests.post(web_form["url"], data=web_form["fields"], timeout=5)
    first.raise_for_status()
    assert 'action="/fidoRedirect/id"' in first.text, first.text  # sp_checksum accepted
    tid = web_form["fields"]["transaction_id"]
    requests.post(
        f"{api.url}/fidoRedirect/id", data={"transaction_id": tid, "id_num": id_number}, timeout=5
    ).raise_for_status()
    if approve:
        api.approve(id_number=id_number)
    else:
        api.cancel(id_number=id_number)
    done = requests.post(f"{api.url}/fidoRedirect/done", data={"transaction_id": tid}, timeout=5)
    assert f'action="http://testserver{CALLBACK}"' in done.text
    return _fields(done.text)


def callback(client: Client, form: dict[str, str] | str, content_type: str = FORM) -> Any:
    body = form if isinstance(form, str) else urlencode(form)
    return client.post(CALLBACK, body, content_type=content_type)


def logged_in(client: Client) -> bool:
    return bool(client.get("/moica/session/").json()["authenticated"])


def assert_refused_page(response: Any, code: str, client: Client) -> None:
    assert response["Content-Type"].startswith("text/html"), response.content
    assert 400 <= response.status_code < 500 or response.status_code == 503, response.status_code
    page = response.content.decode()
    assert f'data-moica-error-code="{code}"' in page, page
    assert not logged_in(client)


def begin(client: Client, api: VirtualSpApi, **body: Any) -> tuple[str, dict[str, Any]]:
    response = start_web(client, **body)
    assert response.status_code == 200, response.content
    data = response.json()
    return data["transaction"], data["web_form"]


def test_web01_login_succeeds_and_redirects_to_next(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    response = start_web(client, birth_date="0600101", next="/labor/")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["mode"] == "web" and data["web_form"]["url"] == f"{web_api.url}/fidoRedirect/web"
    fields = data["web_form"]["fields"]
    # The phone is asked to sign our origin-bound challenge.
    assert json.loads(fields["sign_info"])["sign_data"].startswith(
        "moica-auth/1 origin=http://testserver "
    )
    assert fields["op_code"] == "SIGN"
    form = moi_flow(web_api, data["web_form"])
    answer = callback(client, form)
    assert answer.status_code == 303
    finish_url = answer["Location"]
    assert finish_url.startswith("/moica/mobile/web/finish/?transaction=")
    assert not logged_in(client)  # the callback leg alone logs nobody in
    done = client.get(finish_url)
    assert done.status_code == 302 and done["Location"] == "/labor/", done.content
    session = client.get("/moica/session/").json()
    assert session["authenticated"] is True
    assert session["assurance"]["form"] == "mobile"
    assert session["assurance"]["channel"] == "mobile-sp-api"
    assert set(session["verified"]) == {"id_number", "birth_date"}
    assert client.get("/labor/").status_code == 200


def test_wrong_idp_checksum_is_refused(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    web_api.fault = "bad_checksum"
    form = moi_flow(web_api, web_form)
    assert_refused_page(callback(client, form), "mobile_checksum_invalid", client)
    assert LoginAttempt.objects.filter(outcome="mobile_checksum_invalid").exists()


def test_a_tampered_field_breaks_the_checksum(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    form = moi_flow(web_api, web_form)
    forged = {**form, "id_num": BOB_ID}
    assert_refused_page(callback(client, forged), "mobile_checksum_invalid", client)
    # A forged form did not use up the transaction: MOI's real answer still logs in.
    answer = callback(client, form)
    assert answer.status_code == 303
    assert client.get(answer["Location"]).status_code == 302 and logged_in(client)


def test_replayed_callback_is_refused(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    form = moi_flow(web_api, web_form)
    answer = callback(client, form)
    assert client.get(answer["Location"]).status_code == 302 and logged_in(client)
    # The same form again, in the same browser and in another one.
    assert 400 <= callback(client, form).status_code < 500
    other = Client()
    assert_refused_page(callback(other, form), "mobile_transaction_unknown", other)
    # And the finish step cannot be repeated either.
    assert_refused_page(other.get(answer["Location"]), "mobile_transaction_unknown", other)


def test_callback_for_another_session_is_refused(web: Any, web_api: VirtualSpApi) -> None:
    citizen = Client()
    _, web_form = begin(citizen, web_api)
    form = moi_flow(web_api, web_form)
    attacker = Client()
    attacker.get("/moica/session/")
    answer = callback(attacker, form)  # the checksum is MOI's: the callback leg accepts it
    assert answer.status_code == 303
    assert_refused_page(attacker.get(answer["Location"]), "session_mismatch", attacker)
    # The refusal in the other session neither used up nor ended the transaction.
    done = citizen.get(answer["Location"])
    assert done.status_code == 302 and logged_in(citizen)


def test_expired_transaction_is_refused(web: Any, web_api: VirtualSpApi, clock: Any) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    form = moi_flow(web_api, web_form)
    answer = callback(client, form)
    clock.advance(61)  # past time_limit
    assert_refused_page(client.get(answer["Location"]), "mobile_ticket_expired", client)


def test_signature_over_other_data_is_refused(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    web_api.fault = "other_data"
    form = moi_flow(web_api, web_form)
    answer = callback(client, form)
    assert answer.status_code == 303  # MOI vouches for the answer, not for what was signed
    assert_refused_page(client.get(answer["Location"]), "signature_invalid", client)
    assert LoginAttempt.objects.filter(outcome="signature_invalid").exists()


def test_card_certificate_on_the_web01_path_is_refused(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    web_api.fault = "card_cert"
    answer = callback(client, moi_flow(web_api, web_form))
    assert_refused_page(client.get(answer["Location"]), "mobile_certificate_required", client)


def test_typed_id_number_must_be_the_one_given_to_moi(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api, id_number=BOB_ID)
    answer = callback(client, moi_flow(web_api, web_form, id_number=ALICE_ID))
    assert_refused_page(client.get(answer["Location"]), "mobile_result_mismatch", client)


def test_cancel_on_the_phone_shows_the_reason(web: Any, web_api: VirtualSpApi) -> None:
    client = Client()
    _, web_form = begin(client, web_api)
    form = moi_flow(web_api, web_form, approve=False)
    response = callback(client, form)
    assert_refused_page(response, "mobile_cancelled", client)
    page = response.content.decode()
    assert "取消" in page or "cancelled" in page


def test_finish_before_the_callback_and_polling_a_web_transaction(
    web: Any, web_api: VirtualSpApi
) -> None:
    client = Client()
    transaction, _ = begin(client, web_api)
    finish = f"/moica/mobile/web/finish/?{urlencode({'transaction': transaction})}"
    assert_refused_page(client.get(finish), "mobile_transaction_unknown", client)
    polled = client.post(
        "/moica/mobile/status/",
        json.dumps({"transaction": transaction}),
        content_type="application/json",
        headers=csrf_header(client),
    )
    assert polled.status_code in (400, 404, 409, 410) or 400 <= polled.status_code < 500
    assert polled.json()["code"] in ("mobile_transaction_unknown",)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("", FORM),
        ("transaction_id=x&&&==%zz", FORM),
        (json.dumps({"transaction_id": "x"}), "application/json"),
        ("transaction_id=a&transaction_id=b&error_code=0", FORM),
        (urlencode({"transaction_id": "t" * 101, "error_code": "0"}), FORM),
        (urlencode({"transaction_id": "not-ours", "error_code": "0"}), FORM),
        (urlencode({"error_code": "0", "idp_checksum": "00"}), FORM),
        ("a=" + "x" * 70_000, FORM),
        ("&".join(f"f{i}=1" for i in range(40)), FORM),
    ],
)
def test_garbage_callback_forms_are_a_4xx_page(web: Any, body: str, content_type: str) -> None:
    client = Client()
    client.get("/moica/session/")
    response = callback(client, body, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    assert not logged_in(client)


def test_garbage_finish_requests_are_a_4xx_page(web: Any) -> None:
    client = Client()
    for query in ("", "?transaction=short", "?transaction=" + "x" * 43, "?transaction=" + "y" * 90):
        response = client.get(f"/moica/mobile/web/finish/{query}")
        assert 400 <= response.status_code < 500, (query, response.status_code)
    assert client.post("/moica/mobile/web/finish/").status_code == 405
    assert client.get(CALLBACK).status_code == 405


def test_web_mode_must_be_enabled(moica_settings: Any, web_api: VirtualSpApi) -> None:
    moica_settings.MOICA_AUTH_MOBILE = web_api.settings(poll_interval=0.1, retries=0)
    client = Client()
    response = start_web(client, id_number=ALICE_ID)
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


@pytest.mark.parametrize(
    ("language", "title"),
    [("zh-hant", "行動自然人憑證登入失敗"), ("en", "Mobile citizen certificate login failed")],
)
def test_the_error_page_in_zh_hant_and_english(web: Any, language: str, title: str) -> None:
    client = Client(headers={"Accept-Language": language})
    response = client.get("/moica/mobile/web/finish/?transaction=" + "x" * 43)
    assert response.status_code == 409 or 400 <= response.status_code < 500
    page = response.content.decode()
    assert title in page and "/moica/login-page/" in page


def test_login_box_offers_the_app_link_and_web01_when_enabled(
    moica_settings: Any, web_api: VirtualSpApi
) -> None:
    moica_settings.MOICA_AUTH_MOBILE = web_api.settings(modes=["push", "qr", "mweb2app", "web"])
    page = Client().get("/moica/login-page/").content.decode()
    assert 'data-moica-mobile-mode="mweb2app"' in page
    assert 'data-moica-mobile-mode="web"' in page and "data-moica-mobile-app-link" in page
    moica_settings.MOICA_AUTH_MOBILE = web_api.settings(modes=["push", "app2app"])
    page = Client().get("/moica/login-page/").content.decode()
    assert 'data-moica-mobile-mode="app2app"' in page
    assert 'data-moica-mobile-mode="web"' not in page
    moica_settings.MOICA_AUTH_MOBILE = web_api.settings(modes=["push", "qr"])
    page = Client().get("/moica/login-page/").content.decode()
    assert "app2app" not in page and "mweb2app" not in page
    assert 'data-moica-mobile-mode="web"' not in page


def test_app_link_mode_answers_a_mobilemoica_link(web: Any, web_api: VirtualSpApi) -> None:
    web.MOICA_AUTH_MOBILE = web_api.settings(poll_interval=0.1, retries=0, modes=["mweb2app"])
    client = Client()
    client.get("/moica/session/")
    response = client.post(
        "/moica/mobile/start/",
        json.dumps({"mode": "mweb2app", "id_number": ALICE_ID}),
        content_type="application/json",
        headers=csrf_header(client),
    )
    assert response.status_code == 200, response.content
    link = response.json()["app_link"]
    assert link.startswith("mobilemoica://moica.moi.gov.tw/w2a/verifySign?sp_ticket=")
