"""The virtual SP API's phone page over real HTTP: inbox, scan a ticket, approve, cancel."""

from __future__ import annotations

import pytest
import requests

from moica_auth.mobile.client import Pending, SignInfo, SignResult, SpApiClient
from moica_auth.mobile.errors import (
    MobileChecksumInvalid,
    MobileServiceMisconfigured,
    MobileUserCancelled,
)
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.mobile_fixtures import CITIZEN, OTHER, _reset_faults, client_fixture, vsp_fixture

__all__ = ["_reset_faults", "client_fixture", "vsp_fixture"]

SIGN = SignInfo(sign_data="moica-auth/1 phone page")


def test_phone_page_lists_the_push_and_approves_it(vsp: VirtualSpApi, client: SpApiClient) -> None:
    ticket = client.push(id_num=CITIZEN, sign_info=SIGN, hint="登入勞保網站")
    page = requests.get(vsp.phone_url, params={"id": CITIZEN}, timeout=5).text
    assert ticket.sp_ticket_id in page and "登入勞保網站" in page
    assert (
        ticket.sp_ticket_id not in requests.get(vsp.phone_url, params={"id": OTHER}, timeout=5).text
    )  # one inbox per ID number
    answer = requests.post(
        f"{vsp.url}/phone/approve",
        data={"ticket": ticket.sp_ticket_id, "id": CITIZEN},
        timeout=5,
        allow_redirects=False,
    )
    assert answer.status_code == 303
    assert isinstance(client.poll(ticket), SignResult)


def test_phone_page_scans_a_ticket_and_cancels(vsp: VirtualSpApi, client: SpApiClient) -> None:
    ticket = client.get_ticket(id_num=CITIZEN, op_mode="I-SCAN", sign_info=SIGN)
    scanned = requests.post(
        f"{vsp.url}/phone/scan",
        data={"sp_ticket": ticket.sp_ticket},
        timeout=5,
        allow_redirects=False,
    )
    assert scanned.status_code == 303 and CITIZEN in scanned.headers["Location"]
    assert isinstance(client.poll(ticket), Pending)
    requests.post(f"{vsp.url}/phone/cancel", data={"ticket": ticket.sp_ticket_id}, timeout=5)
    with pytest.raises(MobileUserCancelled):
        client.poll(ticket)


def test_phone_page_refuses_unknown_tickets(vsp: VirtualSpApi) -> None:
    answer = requests.post(f"{vsp.url}/phone/approve", data={"ticket": "nope"}, timeout=5)
    assert answer.status_code == 400


def test_phone_page_escapes_what_it_shows(vsp: VirtualSpApi, client: SpApiClient) -> None:
    client.push(id_num=CITIZEN, sign_info=SIGN, hint="<script>x</script>")
    page = requests.get(vsp.phone_url, params={"id": CITIZEN}, timeout=5).text
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def _hidden_fields(page: str) -> dict[str, str]:
    import html
    import re

    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]*)" value="([^"]*)"', page)
    }


def test_web_redirect_round_trip(vsp: VirtualSpApi, client: SpApiClient) -> None:
    """WEB-01: the browser posts our fields to MOI's page, the citizen types the ID and
    approves on the phone, and MOI's page posts a checksummed result to the callback."""
    vsp.callback_url = "https://portal.example.gov.tw/moica/mobile/callback/"
    redirect = client.web_redirect(sign_info=SIGN)
    page = requests.post(redirect.url, data=dict(redirect.fields), timeout=5).text
    assert 'name="id_num"' in page
    requests.post(
        f"{vsp.url}/fidoRedirect/id",
        data={"transaction_id": redirect.transaction_id, "id_num": CITIZEN},
        timeout=5,
    )
    vsp.approve(id_number=CITIZEN)
    done = requests.post(
        f"{vsp.url}/fidoRedirect/done",
        data={"transaction_id": redirect.transaction_id},
        timeout=5,
    ).text
    assert vsp.callback_url in done
    form = _hidden_fields(done)
    result = client.verify_web_callback(form, transaction_id=redirect.transaction_id)
    assert result.signed_response and result.cert and result.id_num == CITIZEN
    with pytest.raises(MobileChecksumInvalid):
        client.verify_web_callback(
            {**form, "id_num": OTHER}, transaction_id=redirect.transaction_id
        )


def test_web_redirect_rejects_a_bad_sp_checksum(vsp: VirtualSpApi, client: SpApiClient) -> None:
    redirect = client.web_redirect(sign_info=SIGN)
    fields = {**redirect.fields, "hint": "changed after the checksum"}
    page = requests.post(redirect.url, data=fields, timeout=5).text
    form = _hidden_fields(page)
    assert form["error_code"].endswith("INV_SP_CHECKSUM")
    with pytest.raises(MobileServiceMisconfigured):
        client.verify_web_callback(form, transaction_id=redirect.transaction_id)


def test_test_control_sets_faults_and_the_clock(vsp: VirtualSpApi) -> None:
    url = f"{vsp.url}/_virtual/control"
    assert requests.post(url, json={"fault": "bad_checksum"}, timeout=5).status_code == 200
    assert vsp.fault == "bad_checksum"
    assert requests.post(url, json={"fault": None}, timeout=5).status_code == 200
    assert vsp.fault is None
    for bad in ({"fault": "no-such-fault"}, {"advance": -1}, {"advance": "x"}, [1]):
        assert requests.post(url, json=bad, timeout=5).status_code == 400
    assert vsp.fault is None
    before = vsp.clock()
    assert requests.post(url, json={"advance": 700}, timeout=5).status_code == 200
    assert vsp.clock() - before >= 699
    requests.post(url, json={"advance": 0}, timeout=5).raise_for_status()
    assert vsp.clock() - before < 60
