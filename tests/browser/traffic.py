"""Recording what the browser sends to the demo site, to prove no PIN is ever in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SiteTraffic"]


@dataclass
class SiteTraffic:
    """Every request the browser sent to the demo site during one test."""

    origin: str
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    typed_pins: set[str] = field(default_factory=set)

    def record(self, request: Any) -> None:
        if not request.url.startswith(self.origin + "/") and request.url != self.origin:
            return
        try:
            headers = request.all_headers()
        except Exception:  # the page may already be gone
            headers = dict(request.headers)
        body = request.post_data_buffer or b""
        self.requests.append((request.method, request.url, headers, body))

    def leaks(self) -> list[str]:
        found = []
        for method, url, headers, body in self.requests:
            for pin in self.typed_pins:
                where = []
                if pin in url:
                    where.append("URL")
                if any(pin in k or pin in v for k, v in headers.items()):
                    where.append("headers")
                if pin.encode() in body:
                    where.append("body")
                if where:
                    found.append(f"{method} {url}: PIN in {', '.join(where)}")
        return found
