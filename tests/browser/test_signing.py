"""Signing applications in a real Chromium: sign what you see, with the virtual card.

Runs the demo (virtual card, CRL/OCSP responders, local TSA, Django) in a subprocess. A
citizen logs in, fills the 土地登記線上聲明, sees the exact text on the confirmation page,
signs it with the card (PKCS#7), and the stored evidence record, downloaded as the citizen
would, passes ``python -m moica_auth evidence verify`` in a subprocess, and the public
verify page. The 戶籍謄本申請 is signed as RAW. Refusals: another citizen's card (the
server refuses, nothing is stored) and a wrong PIN (nothing reaches the server).
The ``page`` fixture also proves that no typed PIN reached the site.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from example_site.citizens import citizen
from tests.browser.conftest import REPO_ROOT, Demo
from tests.browser.test_demo_portal import _sign_in
from tests.browser.traffic import SiteTraffic

pytestmark = pytest.mark.browser

SIGN_PIN = "[data-moica-sign] [data-moica-pin]"
SIGN_BUTTON = "[data-moica-sign-button]"
SIGN_STATUS = "[data-moica-sign] [data-moica-status]"
SIGN_TEXT = "[data-moica-sign-text]"


def _login(page: Any, demo: Demo, traffic: SiteTraffic, path: str, slug: str) -> None:
    demo.insert(slug)
    page.goto(path)
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    answer = _sign_in(page, traffic, citizen(slug))
    assert answer["ok"] is True, answer
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def _fill_declaration(page: Any) -> None:
    page.fill("#id_parcel", "臺北市中正區重慶段一小段 123 地號")
    page.fill("#id_share", "1/2")
    page.select_option("#id_cause", "sale")
    page.fill("#id_counterparty", "林小華")
    page.fill("#id_price", "9870001")
    page.check("#id_declaration")
    page.click("#declaration-review")
    page.wait_for_selector(SIGN_TEXT)


def _sign_posts(traffic: SiteTraffic, path: str) -> list[bytes]:
    """The JSON answers the page POSTed to the signing URL."""
    return [
        body
        for method, url, headers, body in traffic.requests
        if method == "POST"
        and url.endswith(path)
        and headers.get("content-type", "").startswith("application/json")
    ]


def _sign(page: Any, traffic: SiteTraffic, pin: str) -> None:
    traffic.typed_pins.add(pin)
    page.fill(SIGN_PIN, pin)
    page.wait_for_selector(f"{SIGN_BUTTON}:enabled")
    page.click(SIGN_BUTTON)


def _error_text(page: Any) -> str:
    page.wait_for_function(
        "s => document.querySelector(s).classList.contains('moica-error')", arg=SIGN_STATUS
    )
    return str(page.locator(SIGN_STATUS).inner_text()).strip()


def _verify_cli(demo: Demo, path: Path) -> subprocess.CompletedProcess[str]:
    assert demo.state_dir is not None
    state = demo.state_dir
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "moica_auth",
            "evidence",
            "verify",
            str(path),
            "--anchor",
            str(state / "anchors.pem"),
            "--intermediate",
            str(state / "intermediates.pem"),
            "--tsa-anchor",
            str(state / "tsa-root.pem"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _upload_evidence(demo: Demo, data: bytes) -> requests.Response:
    """POST a file to the public verify page, as a browser form would (CSRF included)."""
    with requests.Session() as session:
        page = session.get(f"{demo.url}/household/verify/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None
        return session.post(
            f"{demo.url}/household/verify/",
            data={"csrfmiddlewaretoken": token.group(1)},
            files={"evidence": ("evidence.json", data, "application/json")},
            headers={"Referer": f"{demo.url}/household/verify/"},
            timeout=30,
        )


def test_land_declaration_signed_with_the_card_keeps_evidence_that_verifies(
    page: Any, demo: Demo, traffic: SiteTraffic, tmp_path: Path
) -> None:
    person = citizen("g3-card")
    _login(page, demo, traffic, "/land/", person.slug)
    _fill_declaration(page)

    # What you see is what you sign: the page shows the server's text, and the HiPKI
    # request the script sends carries exactly that text.
    shown = page.locator(SIGN_TEXT).inner_text()
    request = json.loads(page.locator("#moica-sign-request").text_content())
    assert request["signatureType"] == "PKCS7"
    assert request["tbs"].strip() == shown.strip()
    assert "service: 土地登記線上聲明" in shown
    for value in ("臺北市中正區重慶段一小段 123 地號", "1/2", "林小華", "9870001"):
        assert value in shown
    assert "買賣" in shown or "Sale" in shown  # the choice's label, not "sale"
    application_id = re.search(r"^application: (\S+)$", shown, re.M)
    assert application_id is not None

    _sign(page, traffic, person.pin)
    page.wait_for_url(re.compile(r"/land/applications/[^/]+/$"))
    assert page.locator("#application-id").inner_text() == application_id.group(1)
    assert page.locator("#signed-text").inner_text().strip() == shown.strip()
    assert page.locator("#timestamp-time").inner_text().strip() != "—"

    with page.expect_download() as download_info:
        page.click("#download-evidence")
    evidence_path = tmp_path / "evidence.json"
    download_info.value.save_as(str(evidence_path))
    # The evidence is the citizen's own: without their session the URL gives nothing.
    evidence_url = page.locator("#download-evidence").get_attribute("href")
    stranger = requests.get(f"{demo.url}{evidence_url}", timeout=10, allow_redirects=False)
    assert stranger.status_code != 200 and b"moica-auth-evidence" not in stranger.content
    record = json.loads(evidence_path.read_text(encoding="utf-8"))
    assert record["format"] == "moica-auth-evidence/1"
    assert record["signature_type"] == "PKCS7"
    assert record["timestamp"] is not None

    done = _verify_cli(demo, evidence_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ok": true' in done.stdout

    # One changed byte of the signed text: the command names the field.
    tampered = dict(record)
    signed = bytearray(base64.b64decode(record["signed_bytes"]))
    signed[-1] ^= 0x01
    tampered["signed_bytes"] = base64.b64encode(bytes(signed)).decode()
    bad_path = tmp_path / "tampered.json"
    bad_path.write_text(json.dumps(tampered), encoding="utf-8")
    refused = _verify_cli(demo, bad_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert json.loads(refused.stdout.strip().splitlines()[-1])["field"] == "signed_bytes"

    # The public verify page: the genuine record verifies; bad ones are 4xx, never 500.
    good = _upload_evidence(demo, evidence_path.read_bytes())
    assert good.status_code == 200, good.text[-500:]
    assert 'data-result="evidence-valid"' in good.text
    assert application_id.group(1) in good.text
    bad = _upload_evidence(demo, bad_path.read_bytes())
    assert bad.status_code == 400
    assert 'data-result="evidence_invalid"' in bad.text
    assert "signed_bytes" in bad.text
    for junk in (b"", b"\xff\xfe not json", b"[" * 100_000, b"{}", b'{"format": 1}'):
        answer = _upload_evidence(demo, junk)
        assert answer.status_code == 400, (junk[:20], answer.status_code)


def test_transcript_application_is_signed_raw(
    page: Any, demo: Demo, traffic: SiteTraffic, tmp_path: Path
) -> None:
    person = citizen("g3-card")
    _login(page, demo, traffic, "/household/apply/", person.slug)
    page.select_option("#id_scope", "current")
    page.select_option("#id_purpose", "bank")
    page.fill("#id_copies", "2")
    page.click("#application-review")
    page.wait_for_selector(SIGN_TEXT)
    assert "service: 戶籍謄本申請" in page.locator(SIGN_TEXT).inner_text()
    request = json.loads(page.locator("#moica-sign-request").text_content())
    assert request["signatureType"] == "RAW"
    assert request["tbsEncoding"] == "base64"

    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/household/apply/")
    ) as response_info:
        _sign(page, traffic, person.pin)
    assert response_info.value.status == 200, response_info.value.text()
    page.wait_for_url(re.compile(r"/land/applications/[^/]+/$"))
    with page.expect_download() as download_info:
        page.click("#download-evidence")
    path = tmp_path / "evidence.json"
    download_info.value.save_as(str(path))
    assert json.loads(path.read_text(encoding="utf-8"))["signature_type"] == "RAW"
    done = _verify_cli(demo, path)
    assert done.returncode == 0, done.stdout + done.stderr


def _applications_shown(page: Any) -> int:
    page.goto("/land/applications/")
    return int(page.locator("#my-applications a").count())


def test_another_citizens_card_is_refused_and_nothing_is_stored(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    person, other = citizen("g3-card"), citizen("g2-card")
    _login(page, demo, traffic, "/land/", person.slug)
    before = _applications_shown(page)
    page.goto("/land/")
    _fill_declaration(page)
    # The citizen swaps cards between login and signing: another person's key signs.
    demo.insert(other.slug)
    try:
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/land/")
        ) as response_info:
            _sign(page, traffic, other.pin)
        message = _error_text(page)
    finally:
        demo.insert(person.slug)
    refusal = response_info.value.json()
    assert response_info.value.status == 403
    assert refusal["code"] == "signer_mismatch"
    assert message == refusal["message"]
    posts = _sign_posts(traffic, "/land/")
    assert len(posts) == 1 and b'"signature"' in posts[0]
    # The server refused it (signer_mismatch) and the button stays off: the request is spent.
    assert page.locator(SIGN_BUTTON).is_disabled()
    assert page.locator("[data-moica-sign]").get_attribute("data-moica-done") == "true"
    assert _applications_shown(page) == before


def test_wrong_pin_is_shown_and_nothing_reaches_the_server(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    person = citizen("g3-card")
    _login(page, demo, traffic, "/land/", person.slug)
    before = _applications_shown(page)
    page.goto("/land/")
    _fill_declaration(page)
    wrong = "000000" if person.pin != "000000" else "111111"
    _sign(page, traffic, wrong)
    message = _error_text(page)
    catalogue = json.loads(page.locator("#moica-sign-messages").text_content())
    assert message == catalogue["last_error"]["80000002"]["message"]
    assert _sign_posts(traffic, "/land/") == []
    # The request is still pending: the right PIN then signs it.
    _sign(page, traffic, person.pin)
    page.wait_for_url(re.compile(r"/land/applications/[^/]+/$"))
    assert _applications_shown(page) == before + 1
