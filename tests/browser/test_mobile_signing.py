"""Signing the 土地登記線上聲明 with the phone (行動自然人憑證) in a real Chromium: the demo
portal and the virtual phone page side by side.

The g3-mobile citizen logs in with the phone (push → 同意 on the phone page), fills the
declaration, sees the exact text, presses 「以我的手機簽章」, approves on the phone (which
shows exactly that text as sign_data), and lands on the signed application; the
evidence the citizen downloads passes ``python -m moica_auth evidence verify`` in a
subprocess and records the mobile channel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from example_site.citizens import citizen
from tests.browser.conftest import Demo, run_demo
from tests.browser.test_mobile_portal import (
    MOBILE_BIRTH,
    MOBILE_ID,
    PUSH,
    QR,
    TIMEOUT_MS,
    _phone_url,
)
from tests.browser.test_signing import SIGN_TEXT, _fill_declaration, _verify_cli

pytestmark = pytest.mark.browser

SIGN_MOBILE = "form[data-moica-sign-mobile]"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A demo of its own: the demo keeps MOI-like push limits (3 per ID number per 10
    minutes), which the login tests of the shared demo use up for the one mobile
    citizen."""
    with run_demo(tmp_path_factory.mktemp("demo-mobile-signing")) as running:
        yield running


def _scan_on_phone(page: Any, phone: Any, scope: Any) -> None:
    """The phone reads the ticket the portal shows (as if it scanned the QR code)."""
    page.wait_for_selector("[data-moica-mobile-qr-image]:visible")
    src = str(scope.locator("[data-moica-mobile-qr-image]").get_attribute("src"))
    assert src.startswith("data:image/svg+xml")  # rendered by the server
    ticket = str(scope.locator("[data-moica-mobile-ticket]").inner_text()).strip()
    assert ticket
    phone.fill("input[name=sp_ticket]", ticket)
    phone.locator("button", has_text="讀取").click()


def _approve_on_phone(phone: Any, expected_start: str) -> str:
    """Reload the phone's inbox until a request whose sign_data starts with
    ``expected_start`` arrives; approve it; return the sign_data the phone showed."""
    for _ in range(40):
        for item in phone.locator("#requests li[data-ticket]").all():
            text = str(item.locator("pre").inner_text())
            if text.startswith(expected_start):
                item.locator("button", has_text="同意").click()
                return text
        phone.wait_for_timeout(250)
        phone.reload()
    raise AssertionError("no request reached the phone")


def test_land_declaration_signed_with_the_phone(page: Any, demo: Demo, tmp_path: Path) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    phone = page.context.new_page()
    phone.goto(f"{phone_url}?id={person.id_number}")

    # Log in with the phone.
    page.goto("/land/")
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    page.wait_for_selector(f"{PUSH}:enabled")
    page.fill(MOBILE_ID, person.id_number)
    if page.locator(MOBILE_BIRTH).count():
        page.fill(MOBILE_BIRTH, person.birth_date_roc)
    page.click(PUSH)
    _approve_on_phone(phone, "moica-auth/1 origin=")
    page.wait_for_url(re.compile(r"/land/$"), timeout=TIMEOUT_MS)

    # The declaration, and the exact text to sign; the phone is offered beside the card.
    _fill_declaration(page)
    shown = str(page.locator(SIGN_TEXT).inner_text())
    application_id = re.search(r"^application: (\S+)$", shown, re.M)
    assert application_id is not None
    form = page.locator(SIGN_MOBILE)
    assert "以行動自然人憑證簽章" in str(form.inner_text())
    form.locator("[data-moica-mobile-field=id_number]").fill(person.id_number)
    form.locator("[data-moica-mobile-mode=push]:enabled").click()
    signed = _approve_on_phone(phone, "moica-auth-sign/1")
    # What you see is what you sign: the phone signed the page's text.
    assert signed.strip() == shown.strip()

    page.wait_for_url(re.compile(r"/land/applications/[^/]+/$"), timeout=TIMEOUT_MS)
    assert page.locator("#application-id").inner_text() == application_id.group(1)
    assert page.locator("#timestamp-time").inner_text().strip() != "—"
    with page.expect_download() as download_info:
        page.click("#download-evidence")
    evidence_path = tmp_path / "evidence.json"
    download_info.value.save_as(str(evidence_path))
    record = json.loads(evidence_path.read_text(encoding="utf-8"))
    assert record["channel"]["name"] == "mobile-sp-api" and record["signature_type"] == "PKCS1"
    done = _verify_cli(demo, evidence_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ok": true' in done.stdout
    # The channel is covered: claiming a card signature (no channel) fails, named.
    tampered = {k: v for k, v in record.items() if k != "channel"}
    bad_path = tmp_path / "tampered.json"
    bad_path.write_text(json.dumps(tampered), encoding="utf-8")
    refused = _verify_cli(demo, bad_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert json.loads(refused.stdout.strip().splitlines()[-1])["field"] == "digests"


def test_household_application_signed_with_the_phone_by_qr_code(
    page: Any, demo: Demo, tmp_path: Path
) -> None:
    person = citizen("g3-mobile")
    phone_url = _phone_url(page)
    phone = page.context.new_page()
    phone.goto(f"{phone_url}?id={person.id_number}")
    page.goto("/household/apply/")
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    page.wait_for_selector(f"{QR}:enabled")
    page.fill(MOBILE_ID, person.id_number)
    if page.locator(MOBILE_BIRTH).count():
        page.fill(MOBILE_BIRTH, person.birth_date_roc)
    page.click(QR)
    _scan_on_phone(page, phone, page)
    _approve_on_phone(phone, "moica-auth/1 origin=")
    page.wait_for_url(re.compile(r"/household/apply/$"), timeout=TIMEOUT_MS)
    page.select_option("#id_scope", "current")
    page.select_option("#id_purpose", "bank")
    page.fill("#id_copies", "2")
    page.click("#application-review")
    page.wait_for_selector(SIGN_TEXT)
    shown = str(page.locator(SIGN_TEXT).inner_text())
    form = page.locator(SIGN_MOBILE)
    form.locator("[data-moica-mobile-field=id_number]").fill(person.id_number)
    form.locator("[data-moica-mobile-mode=qr]:enabled").click()
    _scan_on_phone(page, phone, form)
    assert _approve_on_phone(phone, "moica-auth-sign/1").strip() == shown.strip()
    page.wait_for_url(re.compile(r"/land/applications/[^/]+/$"), timeout=TIMEOUT_MS)
    with page.expect_download() as download_info:
        page.click("#download-evidence")
    path = tmp_path / "evidence.json"
    download_info.value.save_as(str(path))
    record = json.loads(path.read_text(encoding="utf-8"))
    # The page asks the card for RAW; the phone's signature is PKCS#1 over the text.
    assert record["signature_type"] == "PKCS1" and record["channel"]["tbs"] == "text"
    done = _verify_cli(demo, path)
    assert done.returncode == 0, done.stdout + done.stderr
