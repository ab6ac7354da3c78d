"""The mobile citizen certificate (行動自然人憑證) in a real Chromium: the demo portal and
the virtual phone page side by side.

``make demo`` runs the virtual SP API (MOI's relying-party API) and its phone page; the
g3-mobile citizen's phone holds the demo's mobile certificate. The portal page asks MOI
to have the phone sign the challenge (push or QR code/ticket), the phone page approves
or cancels, and the portal page polls until the login answer. The ``page`` fixture also
proves that no request to the site carried a typed PIN (there is none on this path: the
phone's app asks for it).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from example_site.citizens import citizen
from tests.browser.conftest import Demo

pytestmark = pytest.mark.browser

MOBILE_ID = "[data-moica-mobile-field=id_number]"
MOBILE_BIRTH = "[data-moica-mobile-field=birth_date]"
MOBILE_STATUS = "[data-moica-mobile-status]"
PUSH = "[data-moica-mobile-mode=push]"
QR = "[data-moica-mobile-mode=qr]"
TIMEOUT_MS = 30_000  # the demo polls every 4 s, as MOI asks


def _phone_url(page: Any) -> str:
    page.goto("/")
    href = page.locator("#demo-phone-link").get_attribute("href")
    assert href, "the demo home page names no virtual phone"
    return str(href)


def _open_labor_insurance_login(page: Any, slug: str = "g3-mobile") -> None:
    person = citizen(slug)
    page.goto("/labor-insurance/")
    page.wait_for_selector(f"{PUSH}:enabled")
    page.fill(MOBILE_ID, person.id_number)
    page.fill(MOBILE_BIRTH, person.birth_date_roc)


def _phone(page: Any, phone_url: str, id_number: str) -> Any:
    phone = page.context.new_page()
    phone.goto(f"{phone_url}?id={id_number}")
    return phone


def _wait_for_request(phone: Any, demo: Demo) -> Any:
    """Reload the phone's inbox until the request arrives; it shows our challenge."""
    for _ in range(20):
        item = phone.locator("#requests li[data-ticket]")
        if item.count():
            text = str(item.first.locator("pre").inner_text())
            assert text.startswith(f"moica-auth/1 origin={demo.url} nonce="), text
            return item.first
        phone.wait_for_timeout(250)
        phone.reload()
    raise AssertionError("no request reached the phone")


def _wait_for_error(page: Any) -> str:
    page.wait_for_function(
        "s => document.querySelector(s).classList.contains('moica-error')",
        arg=MOBILE_STATUS,
        timeout=TIMEOUT_MS,
    )
    return str(page.locator(MOBILE_STATUS).inner_text()).strip()


def test_push_approve_on_the_phone_opens_the_labor_insurance_record(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(PUSH)
    phone = _phone(page, phone_url, person.id_number)
    _wait_for_request(phone, demo).locator("button", has_text="同意").click()
    page.wait_for_url(re.compile(r"/labor-insurance/$"), timeout=TIMEOUT_MS)
    page.wait_for_selector("#insured-record")
    assert person.name in page.content()
    page.goto("/")
    status = str(page.locator("#status-detail").inner_text())
    assert person.name in status and "mobile" in status


def test_qr_code_ticket_scanned_by_the_phone(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(QR)
    page.wait_for_selector("[data-moica-mobile-qr-image]:visible")
    src = str(page.locator("[data-moica-mobile-qr-image]").get_attribute("src"))
    assert src.startswith("data:image/svg+xml")  # rendered by the server, no script
    ticket = str(page.locator("[data-moica-mobile-ticket]").inner_text()).strip()
    assert ticket
    phone = _phone(page, phone_url, person.id_number)
    phone.fill("input[name=sp_ticket]", ticket)
    phone.locator("button", has_text="讀取").click()
    _wait_for_request(phone, demo).locator("button", has_text="同意").click()
    page.wait_for_url(re.compile(r"/labor-insurance/$"), timeout=TIMEOUT_MS)
    page.wait_for_selector("#insured-record")


def test_cancel_on_the_phone_shows_a_clear_message(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(PUSH)
    phone = _phone(page, phone_url, person.id_number)
    _wait_for_request(phone, demo).locator("button", has_text="拒絕").click()
    message = _wait_for_error(page)
    assert message in (
        "您已在行動自然人憑證 App 中取消此請求。",
        "You cancelled the request in the mobile citizen certificate app.",
    ), message
    assert "/labor-insurance/" not in page.url.split("?")[0]  # still on the login page
    page.goto("/")
    assert person.name not in str(page.locator("#status-detail").inner_text())


def test_no_bound_phone_is_refused_before_anything_rings(page: Any, demo: Demo) -> None:
    _open_labor_insurance_login(page, slug="g3-card")  # a card holder without a phone
    page.click(PUSH)
    message = _wait_for_error(page)
    # "register at https://fido.moi.gov.tw", in the page's language.
    assert "https://fido.moi.gov.tw" in message and ("綁定" in message or "registered" in message)


def _control(phone_url: str, **body: Any) -> None:
    """The virtual SP API's test control (it runs in the demo's process)."""
    api = phone_url.removesuffix("/phone/")
    requests.post(f"{api}/_virtual/control", json=body, timeout=5).raise_for_status()


def _show_qr(page: Any) -> str:
    """Press 「顯示 QR Code」 and return the ticket text shown under the code."""
    page.click(QR)
    page.wait_for_selector("[data-moica-mobile-qr-image]:visible")
    return str(page.locator("[data-moica-mobile-ticket]").inner_text()).strip()


# The demo keeps MOI-like push limits (3 pushes per ID number per 10 minutes): the
# tests below use the QR code/ticket, so they never meet the limit the push tests use.


def test_tampered_idp_checksum_is_refused(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    ticket = _show_qr(page)
    phone = _phone(page, phone_url, person.id_number)
    phone.fill("input[name=sp_ticket]", ticket)
    phone.locator("button", has_text="讀取").click()
    request = _wait_for_request(phone, demo)
    _control(phone_url, fault="bad_checksum")
    try:
        request.locator("button", has_text="同意").click()
        message = _wait_for_error(page)
    finally:
        _control(phone_url, fault=None)
    assert message in (
        "無法確認行動自然人憑證服務回覆的真實性。",
        "The answer of the mobile certificate service could not be authenticated.",
    ), message
    page.goto("/")
    assert person.name not in str(page.locator("#status-detail").inner_text())


def test_expired_qr_code_is_refused(page: Any, demo: Demo) -> None:
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    assert _show_qr(page)
    _control(phone_url, advance=700)  # past any time_limit (≤ 600 s)
    try:
        message = _wait_for_error(page)
    finally:
        _control(phone_url, advance=0)
    assert message in (
        "送到手機的請求已逾時，請重新開始。",
        "The request to your phone has expired. Please start again.",
    ), message
