"""What a citizen reads for HiPKI error codes, in a real Chromium.

The virtual card is told to answer the next sign request with a code
(``POST /_virtual/fault``); the demo's login box must then show the message
:func:`moica_auth.hipki.describe` gives for it, in the page's language (zh-Hant here):
server catalogue → page → browser client → status line, end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.utils.translation import override

from example_site.citizens import citizen
from moica_auth import hipki
from tests.browser.conftest import Demo
from tests.browser.traffic import SiteTraffic

pytestmark = pytest.mark.browser

STATUS = "[data-moica-status]"
PIN = "[data-moica-pin]"
SUBMIT = "[data-moica-submit]"

#: (ret_code, last_error, sent as negative ints): one of each kind a citizen meets.
REPRESENTATIVE = [
    (hipki.RET_SIGNER_TIMEOUT, 0, False),  # component crashed / timed out
    (hipki.RET_LIBRARY_LOAD_FAILED, 0, False),  # driver problem
    (hipki.RET_CERTIFICATE_NOT_ON_CARD, 0, False),
    (hipki.RET_CA_NOT_SUPPORTED, 0, False),
    (0x76300004, 0, False),  # signing failed
    (hipki.RET_PARAMETER_ERROR, 0, False),  # a page error: shows its code
    (hipki.RET_WRONG_SERVICE_MOEACA, 0, True),  # 工商憑證 card, negative-int form
    (hipki.RET_NOT_GPKI_CARD, 0, False),
    (hipki.RET_CARD_LOGIN_FAILED, hipki.LAST_TRIES_LEFT_1, True),  # −2147483647
    (0x76990001, 0, False),  # unknown: generic message with the hex value
]


@pytest.fixture
def fault(demo: Demo) -> Iterator[Any]:
    def inject(ret_code: int, last_error: int, signed: bool) -> None:
        answer = requests.post(
            f"{demo.card_url}/_virtual/fault",
            json={"ret_code": ret_code, "last_error": last_error, "signed": signed},
            timeout=5,
        )
        answer.raise_for_status()

    yield inject
    # A test that failed before signing must not leave its fault to the next one.
    requests.post(f"{demo.card_url}/_virtual/fault", json={"clear": True}, timeout=5)


@pytest.mark.parametrize(
    ("ret_code", "last_error", "signed"),
    REPRESENTATIVE,
    ids=[f"0x{ret:X}-{last:X}" for ret, last, _ in REPRESENTATIVE],
)
def test_the_citizen_reads_the_message_for_the_code(
    page: Any,
    demo: Demo,
    traffic: SiteTraffic,
    fault: Any,
    ret_code: int,
    last_error: int,
    signed: bool,
) -> None:
    person = citizen("g3-card")
    demo.insert(person.slug)
    page.goto("/exit-restriction/")
    fault(ret_code, last_error, signed)
    traffic.typed_pins.add(person.pin)
    page.fill(PIN, person.pin)
    page.wait_for_selector(f"{SUBMIT}:enabled")
    page.click(SUBMIT)
    page.wait_for_function(
        "s => document.querySelector(s).classList.contains('moica-error')", arg=STATUS
    )
    shown = str(page.locator(STATUS).inner_text()).strip()
    with override("zh-hant"):
        expected = str(hipki.describe(ret_code, last_error).message)
    assert shown == expected
    if ret_code not in hipki.RET_CODES or "%(code)s" in str(hipki.RET_CODES[ret_code].message):
        assert f"0x{ret_code:X}" in shown
    # Nothing reached the site's login endpoint: the card refused first.
    assert not [url for _, url, _, _ in traffic.requests if url.endswith("/moica/login/")]
