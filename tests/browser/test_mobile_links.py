"""The mobile citizen certificate in a real Chromium, continued (issue #11): the app-link
button (MWEB2APP ``mobilemoica://``), WEB-01 redirect mode through MOI's (virtual) page on
another site, and a revoked mobile certificate refused against the demo's real CRL/OCSP
responders.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from example_site.citizens import citizen
from tests.browser.conftest import Demo
from tests.browser.test_mobile_portal import (
    MOBILE_BIRTH,
    MOBILE_ID,
    MOBILE_STATUS,
    TIMEOUT_MS,
    _open_labor_insurance_login,
    _phone,
    _phone_url,
    _wait_for_error,
    _wait_for_request,
)

pytestmark = pytest.mark.browser

APP = "[data-moica-mobile-mode=mweb2app]"
WEB = "[data-moica-mobile-mode=web]"
APP_LINK = "[data-moica-mobile-app-link]"


def _status_detail(page: Any) -> str:
    page.goto("/")
    return str(page.locator("#status-detail").inner_text())


def test_app_link_button_carries_the_link_and_the_login_completes(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(APP)
    page.wait_for_selector(f"{APP_LINK}:visible")
    href = str(page.locator(APP_LINK).get_attribute("href"))
    assert href.startswith("mobilemoica://moica.moi.gov.tw/w2a/verifySign?"), href
    ticket = parse_qs(urlsplit(href).query)["sp_ticket"][0]
    # The app on the phone opens the link: it reads the ticket, the citizen approves.
    phone = _phone(page, phone_url, person.id_number)
    phone.fill("input[name=sp_ticket]", ticket)
    phone.locator("button", has_text="讀取").click()
    _wait_for_request(phone, demo).locator("button", has_text="同意").click()
    page.wait_for_url(re.compile(r"/labor-insurance/$"), timeout=TIMEOUT_MS)
    page.wait_for_selector("#insured-record")
    assert person.name in page.content()


def test_web01_redirect_through_moi_page_on_another_site(page: Any, demo: Demo) -> None:
    """The portal POSTs the WEB-01 form to MOI's page (here ``localhost``, another site
    than the portal's ``127.0.0.1``); MOI's page POSTs the result back cross-site, where
    the ``SameSite=Lax`` session cookie is not sent; the callback's redirect to the
    finish step (a GET navigation) carries it, and the login completes."""
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(WEB)
    page.wait_for_url(re.compile(r"^http://localhost:\d+/fidoRedirect/web$"), timeout=TIMEOUT_MS)
    page.fill("input[name=id_num]", person.id_number)
    page.locator("button", has_text="下一步").click()
    page.wait_for_selector("text=請在手機上確認")
    phone = _phone(page, phone_url, person.id_number)
    _wait_for_request(phone, demo).locator("button", has_text="同意").click()
    page.locator("button", has_text="完成").click()
    page.wait_for_url(re.compile(r"/labor-insurance/$"), timeout=TIMEOUT_MS)
    page.wait_for_selector("#insured-record")
    assert person.name in page.content()
    status = _status_detail(page)
    assert person.name in status and "mobile" in status


def test_web01_cancel_shows_the_error_page(page: Any, demo: Demo) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    _open_labor_insurance_login(page)
    page.click(WEB)
    page.wait_for_url(re.compile(r"/fidoRedirect/web$"), timeout=TIMEOUT_MS)
    page.fill("input[name=id_num]", person.id_number)
    page.locator("button", has_text="下一步").click()
    phone = _phone(page, phone_url, person.id_number)
    _wait_for_request(phone, demo).locator("button", has_text="拒絕").click()
    page.locator("button", has_text="完成").click()
    page.wait_for_selector("#moica-mobile-web-error")
    assert page.locator("#moica-mobile-web-error").get_attribute("data-moica-error-code") == (
        "mobile_cancelled"
    )
    text = str(page.locator(".moica-error").inner_text())
    assert "取消" in text or "cancelled" in text
    assert person.name not in _status_detail(page)


def test_revoked_mobile_certificate_is_refused(page: Any, demo: Demo) -> None:
    """The phone signs with a mobile certificate that the demo's CRL and OCSP responders
    (real HTTP, the same ones the card logins use) report revoked."""
    person = citizen("revoked-mobile")
    phone_url = _phone_url(page)
    page.goto("/labor-insurance/")
    page.wait_for_selector("[data-moica-mobile-mode=qr]:enabled")
    page.fill(MOBILE_ID, person.id_number)
    page.fill(MOBILE_BIRTH, person.birth_date_roc)
    page.click("[data-moica-mobile-mode=qr]")
    page.wait_for_selector("[data-moica-mobile-qr-image]:visible")
    ticket = str(page.locator("[data-moica-mobile-ticket]").inner_text()).strip()
    phone = _phone(page, phone_url, person.id_number)
    phone.fill("input[name=sp_ticket]", ticket)
    phone.locator("button", has_text="讀取").click()
    _wait_for_request(phone, demo).locator("button", has_text="同意").click()
    message = _wait_for_error(page)
    assert message in ("憑證已廢止。", "The certificate has been revoked."), message
    assert page.locator(MOBILE_STATUS).is_visible()
    assert (
        "/labor-insurance/" not in page.url.split("?")[0] or "#insured-record" not in page.content()
    )
    assert person.name not in _status_detail(page)
