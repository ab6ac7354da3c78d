"""``{% moica_login_box %}``: the card login box (PIN field, personal fields, status).

Usage::

    {% load moica_auth %}
    {% moica_login_box fields="id_number,birth_date" next=request.get_full_path %}

It renders ``moica_auth/login_box.html``: a ``<form data-moica-login>`` that the browser
client (``static/moica_auth/moica-auth.js``, ``autoBind``) drives through the HiPKI popup
bridge, the error catalogue of :func:`moica_auth.hipki.client_messages` in the active
language (``json_script``), the component URL (setting ``MOICA_AUTH_COMPONENT_URL``,
default ``http://localhost:61161``) and the endpoint URLs of ``moica_auth.urls``.

The PIN input has no ``name``: it can never be part of a form submission to the server.
The script sends it only to the local component. See ``docs/client.md``.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable
from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse

from moica_auth.hipki import client_messages

__all__ = ["DEFAULT_COMPONENT_URL", "LOGIN_BOX_FIELDS", "component_url", "moica_login_box"]

register = template.Library()

DEFAULT_COMPONENT_URL = "http://localhost:61161"
#: The personal fields a login box can ask for, in display order.
LOGIN_BOX_FIELDS: tuple[str, ...] = ("id_number", "birth_date")

# Ids only need to be unique within one page; a process-wide counter is enough.
_box_ids = itertools.count(1)


_ORIGIN_RE = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/?",
    re.ASCII | re.IGNORECASE,
)
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def component_url() -> str:
    """The HiPKI component's origin from ``MOICA_AUTH_COMPONENT_URL``.

    Only ``http(s)://host[:port]`` (one trailing ``/`` allowed) is accepted: the browser
    compares it with ``MessageEvent.origin`` and addresses the PIN to it, so anything else
    (another scheme, credentials, a path, a query, spaces, a malformed host or port) is a
    :class:`~django.template.TemplateSyntaxError`. The value is returned as the browser
    spells the origin: lower case, without a default port.
    """
    value = getattr(settings, "MOICA_AUTH_COMPONENT_URL", None) or DEFAULT_COMPONENT_URL
    match = _ORIGIN_RE.fullmatch(value) if isinstance(value, str) else None
    origin = _origin(match) if match else None
    if origin is None:
        raise template.TemplateSyntaxError(
            "MOICA_AUTH_COMPONENT_URL must be scheme://host[:port], e.g. http://localhost:61161"
        )
    return origin


def _origin(match: re.Match[str]) -> str | None:
    scheme = match["scheme"].lower()
    host = match["host"].lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    else:
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if len(host) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
            return None
    port = ""
    if match["port"] is not None:
        number = int(match["port"])
        if not 0 < number < 65536:
            return None
        if number != _DEFAULT_PORTS[scheme]:
            port = f":{number}"
    return f"{scheme}://{host}{port}"


def _parse_fields(fields: str | Iterable[str] | None) -> list[str]:
    if fields is None or fields == "":
        return []
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    wanted = {str(n).strip() for n in names if str(n).strip()}
    unknown = wanted - set(LOGIN_BOX_FIELDS)
    if unknown:
        raise template.TemplateSyntaxError(
            f"moica_login_box: unknown field(s) {sorted(unknown)}; "
            f"use {', '.join(LOGIN_BOX_FIELDS)}"
        )
    return [f for f in LOGIN_BOX_FIELDS if f in wanted]


@register.inclusion_tag("moica_auth/login_box.html", takes_context=True)
def moica_login_box(
    context: template.Context,
    fields: str | Iterable[str] | None = "",
    next: str | None = None,  # the template keyword people expect
    box_id: str | None = None,
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    """Render the login box; ``fields`` is a comma-separated subset of
    ``id_number,birth_date`` (what the protected view requires)."""
    ident = box_id or f"moica-login-{next_id()}"
    return {
        "box_id": ident,
        "messages_id": f"{ident}-messages",
        "fields": _parse_fields(fields),
        "next": next or "",
        "component_url": component_url(),
        "session_url": reverse("moica:session"),
        "challenge_url": reverse("moica:challenge"),
        "login_url": reverse("moica:login"),
        "hipki_messages": client_messages(),
        "timeout_ms": timeout_ms,
        # Forwarded so {% csrf_token %} works inside the inclusion template.
        "csrf_token": context.get("csrf_token"),
        "mobile": mobile_box(),
    }


def mobile_box() -> dict[str, Any] | None:
    """The 「行動自然人憑證」 part of the box: the enabled modes (push, QR code) and the
    endpoint URLs, or ``None`` when ``MOICA_AUTH_MOBILE`` is not set. A wrong setting
    also hides it (system check E020 says why; the card login stays usable)."""
    from moica_auth.exceptions import ConfigurationError
    from moica_auth.mobile.settings import mobile_settings

    try:
        parsed = mobile_settings()
    except ConfigurationError:
        return None
    if parsed is None:
        return None
    # The app link (APP-01 mobilemoica://…) hands the ticket to the app on the same
    # phone: MWEB2APP is the mode for a mobile web page; APP2APP (meant for a relying
    # party's own app) is used when it is the only one enabled.
    app_mode = next((m for m in ("mweb2app", "app2app") if m in parsed.modes), None)
    return {
        "push": "push" in parsed.modes,
        "qr": "qr" in parsed.modes,
        "app_mode": app_mode,
        "web": "web" in parsed.modes,
        "poll_seconds": parsed.poll_interval,
        "start_url": reverse("moica:mobile-start"),
        "status_url": reverse("moica:mobile-status"),
    }


def next_id() -> int:
    return next(_box_ids)
