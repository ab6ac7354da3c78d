"""Template context for every portal page: the card login and the demo reader."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from example_site import runtime
from moica_auth.session import moica_from_request


def portal(request: HttpRequest) -> dict[str, Any]:
    server = runtime.card_server
    return {
        "moica": moica_from_request(request),
        "demo_reader": server is not None,
        "inserted_card": server.inserted if server is not None else None,
        "demo_phone_url": runtime.sp_server.phone_url if runtime.sp_server is not None else None,
    }
