"""The PIN-leak detector the browser tests rely on (no browser needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.browser.traffic import SiteTraffic

ORIGIN = "http://127.0.0.1:8000"


@dataclass
class FakeRequest:
    """The parts of a Playwright ``Request`` that :class:`SiteTraffic` reads."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    post_data_buffer: bytes | None = None

    def all_headers(self) -> dict[str, str]:
        return self.headers


def _traffic(*requests: FakeRequest) -> SiteTraffic:
    traffic = SiteTraffic(origin=ORIGIN, typed_pins={"135790"})
    for request in requests:
        traffic.record(request)
    return traffic


def test_finds_a_pin_in_the_url_headers_or_body() -> None:
    traffic = _traffic(
        FakeRequest(f"{ORIGIN}/moica/login/?pin=135790", method="GET"),
        FakeRequest(f"{ORIGIN}/moica/login/", headers={"x-pin": "135790"}),
        FakeRequest(f"{ORIGIN}/moica/login/", post_data_buffer=b'{"pin":"135790"}'),
    )
    assert traffic.leaks() == [
        f"GET {ORIGIN}/moica/login/?pin=135790: PIN in URL",
        f"POST {ORIGIN}/moica/login/: PIN in headers",
        f"POST {ORIGIN}/moica/login/: PIN in body",
    ]


def test_ignores_the_component_and_clean_requests() -> None:
    traffic = _traffic(
        # The PIN belongs in the request to the local HiPKI component, and only there.
        FakeRequest("http://127.0.0.1:61161/sign", post_data_buffer=b'{"pin":"135790"}'),
        FakeRequest(f"{ORIGIN}/moica/login/", post_data_buffer=b'{"signature":"MIIB"}'),
        FakeRequest(f"{ORIGIN}:9/other", post_data_buffer=b"135790"),
    )
    assert traffic.leaks() == []
    assert len(traffic.requests) == 1
