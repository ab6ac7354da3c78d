"""The virtual card's own pages in a real Chromium: trusting a site takes the user's click
on the component's page; another site's form cannot do it for them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from moica_auth.testing.pki import FIXED_TIME, default_pki
from moica_auth.testing.virtual_card import VirtualCard, VirtualCardServer
from tests.browser.conftest import Demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def strict_card() -> Iterator[VirtualCardServer]:
    card = VirtualCard.from_citizen_card(default_pki().issue_card(), card_id="main")
    with VirtualCardServer(
        [card], port=0, clock=lambda: FIXED_TIME, require_trusted_domains=True
    ) as server:
        server.insert("main")
        yield server


@pytest.fixture
def plain_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_user_trusts_a_site_on_the_component_page(
    plain_page: Any, strict_card: VirtualCardServer
) -> None:
    plain_page.goto(f"{strict_card.url}/addDomain?domain=portal.example")
    assert "portal.example" not in strict_card.trusted_domains
    with plain_page.expect_navigation():
        plain_page.click("#confirm")
    assert plain_page.locator("#result").count() == 1
    assert "portal.example" in strict_card.trusted_domains


def test_another_sites_form_cannot_trust_itself(
    plain_page: Any, demo: Demo, strict_card: VirtualCardServer
) -> None:
    plain_page.goto(demo.url + "/")
    with plain_page.expect_navigation():
        plain_page.evaluate(
            """(action) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const input = document.createElement("input");
                input.name = "domain";
                input.value = "evil.example";
                form.append(input);
                document.body.append(form);
                form.submit();
            }""",
            f"{strict_card.url}/addDomain",
        )
    assert "evil.example" not in strict_card.trusted_domains


def test_another_site_cannot_frame_the_confirmation(
    plain_page: Any, demo: Demo, strict_card: VirtualCardServer
) -> None:
    plain_page.goto(demo.url + "/")
    plain_page.evaluate(
        """(src) => new Promise((resolve) => {
            const frame = document.createElement("iframe");
            frame.src = src;
            frame.onload = resolve;
            document.body.append(frame);
            setTimeout(resolve, 3000);
        })""",
        f"{strict_card.url}/addDomain?domain=framed.example",
    )
    frames = [f for f in plain_page.frames if f.url.startswith(strict_card.url)]
    for frame in frames:
        assert frame.locator("#confirm").count() == 0
    assert "framed.example" not in strict_card.trusted_domains
