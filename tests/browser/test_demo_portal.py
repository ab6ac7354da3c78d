"""The demo portal in a real Chromium: card logins through the HiPKI popup bridge.

Runs ``python -m example_site.demo`` (virtual card, CRL/OCSP responders, Django) in a
subprocess and drives it with Playwright. Every test also proves, through the ``page``
fixture, that no request to the site carried a typed PIN.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from example_site.citizens import DemoCitizen, citizen
from tests.browser.conftest import Demo
from tests.browser.traffic import SiteTraffic

pytestmark = pytest.mark.browser

STATUS = "[data-moica-status]"
PIN = "[data-moica-pin]"
SUBMIT = "[data-moica-submit]"
ID_FIELD = "[data-moica-field=id_number]"
BIRTH_FIELD = "[data-moica-field=birth_date]"

SERVICES = {
    "labor-insurance": ("/labor-insurance/", "#insured-record"),
    "exit-restriction": ("/exit-restriction/", "#restriction-result"),
    "household": ("/household/", "#household"),
}


def _sign_in(
    page: Any,
    traffic: SiteTraffic,
    person: DemoCitizen,
    *,
    pin: str | None = None,
    expect_login: bool = True,
) -> Any:
    """Fill the login box the page shows (only the fields it asks for) and press it.

    Returns the JSON answer of ``POST /moica/login/``, or ``None`` when the card refused
    before anything reached the site.
    """
    typed = pin if pin is not None else person.pin
    traffic.typed_pins.add(typed)
    if page.locator(ID_FIELD).count():
        page.fill(ID_FIELD, person.id_number)
    if page.locator(BIRTH_FIELD).count():
        page.fill(BIRTH_FIELD, person.birth_date_roc)
    page.fill(PIN, typed)
    page.wait_for_selector(f"{SUBMIT}:enabled")
    if not expect_login:
        page.click(SUBMIT)
        page.wait_for_function(
            "s => document.querySelector(s).textContent.trim().length > 0 "
            "&& document.querySelector(s).classList.contains('moica-error')",
            arg=STATUS,
        )
        return None
    answers = _login_answers(page)
    before = len(answers)
    with page.expect_request_finished(
        lambda r: r.method == "POST" and r.url.endswith("/moica/login/")
    ):
        page.click(SUBMIT)
    assert len(answers) > before, "no answer from POST /moica/login/"
    answer = answers[-1]
    if answer.get("ok") is True:
        # The client navigates to the redirect; wait for it so the next step does not race.
        page.wait_for_url(re.compile(re.escape(str(answer["redirect"])) + "$"))
    return answer


def _login_answers(page: Any) -> list[Any]:
    """The JSON answers of ``POST /moica/login/`` on this page, captured by routing the
    request through Playwright (a body is gone once the page navigates away)."""
    answers: list[Any] | None = getattr(page, "_moica_login_answers", None)
    if answers is not None:
        return answers
    collected: list[Any] = []

    def handle(route: Any) -> None:
        response = route.fetch()
        try:
            collected.append(response.json())
        except Exception:
            collected.append({"ok": None, "status": response.status})
        route.fulfill(response=response)

    page.route(re.compile(r"/moica/login/$"), handle)
    page._moica_login_answers = collected
    return collected


def _status(page: Any) -> str:
    return str(page.locator(STATUS).inner_text()).strip()


def _messages(page: Any) -> dict[str, Any]:
    """The HiPKI error catalogue the login box embeds (``moica_auth.hipki.client_messages``,
    in the page's language), so assertions name the exact message for a code."""
    catalogue: dict[str, Any] = page.evaluate(
        """() => {
            const form = document.querySelector('[data-moica-login]');
            return JSON.parse(document.getElementById(form.dataset.messagesId).textContent);
        }"""
    )
    return catalogue


def _tries_left_on_home(page: Any, slug: str) -> str:
    page.goto("/")
    return str(page.locator(f"tr[data-card='{slug}'] td").last.inner_text()).strip()


# --- logins that work -------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("slug", ["g3-card", "g2-card", "g3-mobile", "g3-spare"])
def test_logs_in_to_each_service_with_each_working_card(
    page: Any, demo: Demo, traffic: SiteTraffic, slug: str, service: str
) -> None:
    person = citizen(slug)
    path, marker = SERVICES[service]
    demo.insert(slug)
    page.goto(path)
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    answer = _sign_in(page, traffic, person)
    assert answer["ok"] is True, answer
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    page.wait_for_selector(marker)
    assert page.locator("#login-name").inner_text() == person.name


def test_labor_insurance_asks_for_id_number_and_birth_date(page: Any, demo: Demo) -> None:
    demo.insert("g3-card")
    page.goto("/labor-insurance/")
    page.wait_for_selector(PIN)
    assert page.locator(ID_FIELD).count() == 1
    assert page.locator(BIRTH_FIELD).count() == 1
    # The PIN input has no name: no form submission can ever carry it.
    assert page.get_attribute(PIN, "name") is None


# --- PIN handling -----------------------------------------------------------------------


def test_wrong_pin_shows_tries_left(page: Any, demo: Demo, traffic: SiteTraffic) -> None:
    person = citizen("g3-card")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    _sign_in(page, traffic, person, pin="000000", expect_login=False)
    # last_error 0x80000002: wrong PIN, 2 tries left.
    assert _status(page) == _messages(page)["last_error"]["80000002"]["message"]
    assert "2" in _status(page)
    assert _tries_left_on_home(page, person.slug) == "2"
    # The right PIN still works and resets the count, as on a real card.
    page.goto("/exit-restriction/")
    answer = _sign_in(page, traffic, person)
    assert answer["ok"] is True, answer
    assert _tries_left_on_home(page, person.slug) == "3"


def test_three_wrong_pins_lock_the_card(page: Any, demo: Demo, traffic: SiteTraffic) -> None:
    person = citizen("g3-spare")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    messages = []
    for wrong in ("111111", "222222", "333333"):
        _sign_in(page, traffic, person, pin=wrong, expect_login=False)
        messages.append(_status(page))
        page.reload()
    catalogue = _messages(page)["last_error"]
    assert messages == [
        catalogue["80000002"]["message"],  # 2 tries left
        catalogue["80000001"]["message"],  # 1 try left
        catalogue["A4"]["message"],  # locked
    ]
    # Locked: even the right PIN is refused by the card, and nothing reaches the site.
    logins_before = sum(1 for _, url, _, _ in traffic.requests if url.endswith("/moica/login/"))
    _sign_in(page, traffic, person, expect_login=False)
    assert _status(page) == messages[2]
    logins_after = sum(1 for _, url, _, _ in traffic.requests if url.endswith("/moica/login/"))
    assert logins_after == logins_before
    assert _tries_left_on_home(page, person.slug) in ("已鎖卡", "locked")
    demo.unlock(person.slug, person.user_code, person.pin)


# --- refusals ---------------------------------------------------------------------------


def test_suspended_and_revoked_cards_are_refused_with_their_own_message(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    seen: dict[str, str] = {}
    for slug, code in (("suspended", "certificate_suspended"), ("revoked", "certificate_revoked")):
        person = citizen(slug)
        demo.insert(slug)
        page.goto("/exit-restriction/")
        answer = _sign_in(page, traffic, person)
        assert answer["ok"] is False
        assert answer["code"] == code
        page.wait_for_function(
            "s => document.querySelector(s).classList.contains('moica-error')", arg=STATUS
        )
        seen[code] = _status(page)
        assert answer["message"] in seen[code]
        assert page.locator("#login-name").count() == 0
    assert seen["certificate_suspended"] != seen["certificate_revoked"]


def test_expired_card_is_refused_by_the_component(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    person = citizen("expired")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    _sign_in(page, traffic, person, expect_login=False)
    # ret_code 0x76500002: the component itself refuses an expired certificate.
    assert _status(page) == _messages(page)["ret_code"]["76500002"]["message"]
    assert not any(url.endswith("/moica/login/") for _, url, _, _ in traffic.requests)


# --- step-up, logout, language ----------------------------------------------------------


def test_step_up_from_exit_restriction_to_labor_insurance_asks_only_birth_date(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    person = citizen("g3-card")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    assert _sign_in(page, traffic, person)["ok"] is True
    page.wait_for_selector("#restriction-result")
    page.click("#to-labor")
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    page.wait_for_selector(PIN)
    assert page.locator(BIRTH_FIELD).count() == 1
    assert page.locator(ID_FIELD).count() == 0
    assert _sign_in(page, traffic, person)["ok"] is True
    page.wait_for_url(re.compile(r"/labor-insurance/$"))
    page.wait_for_selector("#insured-record")


def test_logout_ends_the_card_login(page: Any, demo: Demo, traffic: SiteTraffic) -> None:
    person = citizen("g2-card")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    assert _sign_in(page, traffic, person)["ok"] is True
    page.wait_for_selector("#logout")
    page.click("#logout")
    page.wait_for_selector("#login-link")
    page.goto("/exit-restriction/")
    page.wait_for_url(re.compile(r"/moica/login-page/"))


def test_language_switch_to_english(page: Any) -> None:
    page.goto("/")
    assert "範例電子化政府入口網" in page.locator("h1").inner_text()
    page.click("#lang-switch")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert "Example e-Government Portal" in page.locator("h1").inner_text()


# --- household e-transcripts ------------------------------------------------------------


def test_household_transcript_verifies_and_tampering_is_detected(
    page: Any, demo: Demo, traffic: SiteTraffic, tmp_path: Any
) -> None:
    person = citizen("g3-mobile")
    demo.insert(person.slug)
    page.goto("/household/")
    assert _sign_in(page, traffic, person)["ok"] is True
    page.wait_for_selector("#download-transcript")
    with page.expect_download() as download:
        page.click("#download-transcript")
    genuine = tmp_path / "transcript.json"
    download.value.save_as(genuine)

    page.goto("/household/verify/")
    page.set_input_files("#transcript-file", str(genuine))
    page.click("#verify-transcript")
    result = page.locator("#verify-result")
    assert result.get_attribute("data-result") == "valid"
    assert "範例戶政事務所" in page.locator("#issuer").inner_text()

    envelope = json.loads(genuine.read_text("utf-8"))
    envelope["document"] = envelope["document"].replace(person.name, "某某某")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(envelope, ensure_ascii=False), "utf-8")
    page.set_input_files("#transcript-file", str(tampered))
    page.click("#verify-transcript")
    assert page.locator("#verify-result").get_attribute("data-result") == "signature_invalid"


def test_no_request_to_the_site_carries_the_pin(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    person = citizen("g3-card")
    demo.insert(person.slug)
    page.goto("/labor-insurance/")
    assert _sign_in(page, traffic, person)["ok"] is True
    page.wait_for_selector("#insured-record")
    posted = [body for method, _, _, body in traffic.requests if method == "POST"]
    assert posted, "the login posted nothing to the site"
    assert traffic.leaks() == []


def test_home_page_lists_services_and_cards_and_switches_the_card(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    demo.insert("g3-card")
    page.goto("/")
    assert page.locator("#services a").count() == 7
    for path in ("/land/", "/household/apply/", "/land/applications/"):
        assert page.locator(f"#services a[href='{path}']").count() == 1
    for slug, card in demo.cards.items():
        row = page.locator(f"tr[data-card='{slug}']")
        assert card["pin"] in row.inner_text()
    page.select_option("#card-select", "g3-mobile")
    page.click("#card-switch button")
    page.wait_for_selector("tr[data-card='g3-mobile'].inserted")
    person = citizen("g3-mobile")
    page.goto("/exit-restriction/")
    assert _sign_in(page, traffic, person)["ok"] is True
    assert page.locator("#login-name").inner_text() == person.name
