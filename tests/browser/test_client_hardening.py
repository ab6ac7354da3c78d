"""The browser client under hostile conditions, in a real Chromium against the demo.

* a refusal whose message is HTML is shown as text;
* the PIN field is emptied at once and the PIN is in no URL, storage or console line;
* without JavaScript nothing can be submitted;
* the login box works under ``Content-Security-Policy: script-src 'self'``.

The ``page`` fixture also proves that no request to the site carried a typed PIN.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from example_site.citizens import citizen
from tests.browser.conftest import Demo
from tests.browser.traffic import SiteTraffic

pytestmark = pytest.mark.browser

STATUS = "[data-moica-status]"
PIN = "[data-moica-pin]"
SUBMIT = "[data-moica-submit]"
ID_FIELD = "[data-moica-field=id_number]"
HOSTILE = '<img src="x" id="pwned" onerror="window.__pwned = 1">'


def _open_login_box(page: Any, demo: Demo, slug: str = "g3-card") -> None:
    """Open the exit-restriction login box with ``slug`` in the reader and its ID typed."""
    demo.insert(slug)
    page.goto("/exit-restriction/")
    page.wait_for_url(re.compile(r"/moica/login-page/"))
    page.wait_for_selector(f"{SUBMIT}:enabled")
    page.fill(ID_FIELD, citizen(slug).id_number)


def _wait_for_error(page: Any) -> str:
    page.wait_for_function(
        "s => document.querySelector(s).classList.contains('moica-error')", arg=STATUS
    )
    return str(page.locator(STATUS).inner_text()).strip()


def test_a_refusal_message_is_shown_as_text_never_as_html(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    def refuse(route: Any) -> None:
        route.fulfill(
            status=403,
            content_type="application/json",
            body=json.dumps({"ok": False, "code": "certificate_revoked", "message": HOSTILE}),
        )

    page.route(re.compile(r"/moica/login/$"), refuse)
    _open_login_box(page, demo)
    person = citizen("g3-card")
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    page.click(SUBMIT)
    assert _wait_for_error(page) == HOSTILE
    assert page.locator("#pwned").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.evaluate(f"() => document.querySelector('{STATUS}').children.length") == 0


def test_an_unknown_server_answer_shows_the_generic_message(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    page.route(
        re.compile(r"/moica/login/$"),
        lambda route: route.fulfill(status=500, content_type="text/html", body=HOSTILE),
    )
    _open_login_box(page, demo)
    person = citizen("g3-card")
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    page.click(SUBMIT)
    catalogue = page.evaluate(
        """() => JSON.parse(document.getElementById(
               document.querySelector('[data-moica-login]').dataset.messagesId).textContent)"""
    )
    assert _wait_for_error(page) == catalogue["client"]["server_error"]
    assert page.locator("#pwned").count() == 0


def test_the_pin_is_cleared_and_kept_out_of_urls_storage_and_console(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    wrong = "024680"
    traffic.typed_pins.add(wrong)
    console: list[str] = []
    urls: list[str] = []
    page.context.on("console", lambda message: console.append(message.text))
    page.context.on("request", lambda request: urls.append(request.url))
    _open_login_box(page, demo, "g3-mobile")
    page.fill(PIN, wrong)
    page.click(SUBMIT)
    # Emptied the moment the login starts, before the component answers.
    assert page.input_value(PIN) == ""
    _wait_for_error(page)
    assert page.input_value(PIN) == ""
    stored = page.evaluate(
        """() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),
                                 document.cookie, location.href, history.state])"""
    )
    assert wrong not in stored
    assert not [u for u in urls if wrong in u]  # the component's popup URL included
    assert not [line for line in console if wrong in line]
    # Put the card's count back (one wrong PIN made).
    person = citizen("g3-mobile")
    _open_login_box(page, demo, "g3-mobile")
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    with page.expect_navigation(url=re.compile(r"/exit-restriction/$")):
        page.click(SUBMIT)


def test_without_javascript_nothing_is_submitted(
    browser: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    context = browser.new_context(base_url=demo.url, java_script_enabled=False)
    context.on("request", traffic.record)
    try:
        page = context.new_page()
        page.goto("/exit-restriction/")
        page.wait_for_url(re.compile(r"/moica/login-page/"))
        assert page.is_disabled(SUBMIT)
        assert page.get_attribute(PIN, "name") is None
        traffic.typed_pins.add("864209")
        page.fill(PIN, "864209")
        page.press(PIN, "Enter")  # implicit submission: the default button is disabled
        page.wait_for_timeout(500)
        assert not [r for r in traffic.requests if r[0] == "POST"]
    finally:
        context.close()
    assert traffic.leaks() == []


def test_the_box_works_under_a_strict_script_policy(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)

    def strict(route: Any) -> None:
        response = route.fetch()
        headers = {
            **response.headers,
            "content-security-policy": "script-src 'self'; object-src 'none'; base-uri 'none'",
        }
        route.fulfill(response=response, headers=headers)

    page.route(re.compile(r"/moica/login-page/"), strict)
    _open_login_box(page, demo, "g2-card")
    person = citizen("g2-card")
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    with page.expect_navigation(url=re.compile(r"/exit-restriction/$")):
        page.click(SUBMIT)
    assert violations == []


def test_a_second_submission_while_signing_is_ignored(
    page: Any, demo: Demo, traffic: SiteTraffic
) -> None:
    popups: list[Any] = []
    page.context.on("page", lambda new_page: popups.append(new_page))
    _open_login_box(page, demo, "g3-card")
    page.evaluate(
        """() => {
            sessionStorage.setItem('errors', '[]');
            document.querySelector('[data-moica-login]').addEventListener('moica:error', (e) => {
                const seen = JSON.parse(sessionStorage.getItem('errors'));
                seen.push(e.detail.code || e.detail.key);
                sessionStorage.setItem('errors', JSON.stringify(seen));
            });
        }"""
    )
    person = citizen("g3-card")
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    with page.expect_navigation(url=re.compile(r"/exit-restriction/$")):
        # Enter/requestSubmit again while the first login runs: no second login, no
        # "busy" error, and the running login's button stays disabled.
        page.evaluate(
            """() => {
                const form = document.querySelector('[data-moica-login]');
                form.requestSubmit();
                form.requestSubmit();
                setTimeout(() => sessionStorage.setItem(
                    'disabled', String(document.querySelector('[data-moica-submit]').disabled)),
                    20);
            }"""
        )
    assert page.evaluate("() => sessionStorage.getItem('errors')") == "[]"
    assert page.evaluate("() => sessionStorage.getItem('disabled')") == "true"
    assert len(popups) == 1
