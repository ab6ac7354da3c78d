"""``MOICA_AUTH_MOBILE``: parsed once into a typed, immutable :class:`MobileSettings`.

::

    MOICA_AUTH_MOBILE = {
        "api_url": "https://fidoapi.moi.gov.tw",      # requests go to {api_url}/moise/sp/…
        "service_id": "…",                           # sp_service_id from MOI
        "aes_key": {"env": "MOICA_AUTH_MOBILE_AES_KEY"},  # or bytes, or a base64 str
        "modes": ["push", "qr"],                     # push, qr, app2app, mweb2app, web
        "time_limit": 120,                           # seconds the citizen has (30–600)
    }

The key is never logged: :class:`MobileSettings` hides it from ``repr``. Errors raised
here are :class:`~moica_auth.exceptions.ConfigurationError`; the system checks in
:mod:`moica_auth.mobile.checks` report them at start-up.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from moica_auth.exceptions import ConfigurationError

__all__ = [
    "MODES",
    "PRODUCTION_API_HOST",
    "TEST_API_HOST",
    "WEB_MODE",
    "MobileSettings",
    "PushLimits",
    "mobile_settings",
    "parse_mobile_settings",
    "read_key",
]

#: Login modes: ``push`` is ATH-03; the others are ATH-01 op_modes.
MODES = {"push": None, "qr": "I-SCAN", "app2app": "APP2APP", "mweb2app": "MWEB2APP"}
#: WEB-01 redirect mode: MOI's page runs the flow and form-POSTs the result to the
#: site's registered callback (``/moica/mobile/web/callback/``). Not an ATH-01 op_mode,
#: so it is kept out of :data:`MODES` (whose ``None`` means push).
WEB_MODE = "web"
PRODUCTION_API_HOST = "fidoapi.moi.gov.tw"
TEST_API_HOST = "fidoapi-test.moi.gov.tw"
PRODUCTION_WEB_URL = "https://fido.moi.gov.tw"
TEST_WEB_URL = "https://fido-test.moi.gov.tw"
#: MOI asks for at most one ATH-02 call per transaction every 4 seconds.
MIN_POLL_INTERVAL = 4.0
KEY_BYTES = 32
_KNOWN = {
    "api_url",
    "service_id",
    "aes_key",
    "modes",
    "time_limit",
    "web_url",
    "hint",
    "sign_type",
    "connect_timeout",
    "read_timeout",
    "retries",
    "poll_interval",
    "push_limits",
    "max_pending_per_session",
    "check_device",
}


@dataclass(frozen=True)
class PushLimits:
    """Pushes land on a real person's phone: at most ``per_id`` per ``id_window`` seconds
    per target ID number, ``per_ip`` per ``ip_window`` per client address (IPv6 /64)."""

    per_id: int = 3
    id_window: int = 600
    per_ip: int = 20
    ip_window: int = 600

    def __post_init__(self) -> None:
        for name in ("per_id", "id_window", "per_ip", "ip_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"MOICA_AUTH_MOBILE push_limits.{name} must be >= 1")


@dataclass(frozen=True)
class MobileSettings:
    api_url: str
    service_id: str
    aes_key: bytes = field(repr=False)
    modes: tuple[str, ...] = ("push", "qr")
    time_limit: int = 120
    web_url: str = PRODUCTION_WEB_URL
    hint: str = "登入"
    sign_type: str = "PKCS#1"
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    retries: int = 2
    poll_interval: float = MIN_POLL_INTERVAL
    push_limits: PushLimits = field(default_factory=PushLimits)
    max_pending_per_session: int = 3
    check_device: bool = False

    def endpoint(self, name: str) -> str:
        """``{api_url}/moise/sp/{name}``, exactly as MOI's hosts serve it."""
        return f"{self.api_url}/moise/sp/{name}"

    @property
    def is_test_api(self) -> bool:
        """Whether ``api_url`` is MOI's test host or a loopback (virtual) API."""
        host = urlsplit(self.api_url).hostname or ""
        return host == TEST_API_HOST or _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_key(value: object) -> bytes:
    """The AES key from ``bytes``, a base64 string, ``{"env": NAME}`` or ``"env:NAME"``
    (the variable holds base64). Raises :class:`ConfigurationError` (never quoting it)."""
    if isinstance(value, Mapping) and set(value) == {"env"}:
        value = f"env:{value['env']}"
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        env = os.environ.get(name)
        if not env:
            raise ConfigurationError(
                f"MOICA_AUTH_MOBILE aes_key: environment variable {name} is not set"
            )
        value = env
    if isinstance(value, str):
        try:
            value = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("MOICA_AUTH_MOBILE aes_key is not valid base64") from None
    if not isinstance(value, bytes):
        raise ConfigurationError(
            "MOICA_AUTH_MOBILE aes_key must be bytes, base64 or an env reference"
        )
    if len(value) != KEY_BYTES:
        raise ConfigurationError(
            f"MOICA_AUTH_MOBILE aes_key must be {KEY_BYTES} bytes (AES-256), got {len(value)}"
        )
    return value


def _number(raw: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigurationError(f"MOICA_AUTH_MOBILE {name} must be a number in [{low}, {high}]")
    return float(value)


def _url(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"MOICA_AUTH_MOBILE {name} is required")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ConfigurationError(f"MOICA_AUTH_MOBILE {name} must be an http(s) base URL")
    return value.rstrip("/")


def parse_mobile_settings(
    raw: Mapping[str, Any], *, allow_fast_polling: bool = False
) -> MobileSettings:
    """Validate ``raw`` and return :class:`MobileSettings`.

    ``allow_fast_polling`` lets tests poll the virtual API faster than MOI's 4 s; the
    Django setting never sets it.
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError("MOICA_AUTH_MOBILE must be a dict")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ConfigurationError(f"MOICA_AUTH_MOBILE has unknown keys {sorted(unknown)}")
    api_url = _url(raw.get("api_url"), "api_url")
    service_id = raw.get("service_id")
    if not isinstance(service_id, str) or not service_id or len(service_id) > 100:
        raise ConfigurationError("MOICA_AUTH_MOBILE service_id is required")
    if "aes_key" not in raw:
        raise ConfigurationError("MOICA_AUTH_MOBILE aes_key is required")
    key = read_key(raw["aes_key"])
    modes_raw = raw.get("modes", ("push", "qr"))
    if isinstance(modes_raw, str):
        modes_raw = (modes_raw,)
    modes = tuple(str(m) for m in modes_raw)
    if not modes or any(m not in MODES and m != WEB_MODE for m in modes):
        raise ConfigurationError(
            f"MOICA_AUTH_MOBILE modes must be a non-empty subset of "
            f"{sorted([*MODES, WEB_MODE])} (ATH-only is never offered for login)"
        )
    time_limit = _number(raw, "time_limit", 120, 30, 600)
    if time_limit != int(time_limit):
        raise ConfigurationError("MOICA_AUTH_MOBILE time_limit must be whole seconds")
    is_test = (urlsplit(api_url).hostname or "") == TEST_API_HOST
    web_url = _url(raw.get("web_url", TEST_WEB_URL if is_test else PRODUCTION_WEB_URL), "web_url")
    hint = raw.get("hint", "登入")
    if not isinstance(hint, str) or len(hint) > 100:
        raise ConfigurationError("MOICA_AUTH_MOBILE hint must be a short string")
    sign_type = raw.get("sign_type", "PKCS#1")
    if sign_type not in ("PKCS#1", "PKCS#7"):
        raise ConfigurationError("MOICA_AUTH_MOBILE sign_type must be PKCS#1 or PKCS#7")
    retries = raw.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 3:
        raise ConfigurationError("MOICA_AUTH_MOBILE retries must be 0–3")
    floor = 0.05 if allow_fast_polling else MIN_POLL_INTERVAL
    poll_interval = _number(raw, "poll_interval", MIN_POLL_INTERVAL, floor, 60)
    limits_raw = raw.get("push_limits", {})
    if not isinstance(limits_raw, Mapping):
        raise ConfigurationError("MOICA_AUTH_MOBILE push_limits must be a dict")
    try:
        limits = PushLimits(**dict(limits_raw))
    except TypeError as exc:
        raise ConfigurationError("MOICA_AUTH_MOBILE push_limits has unknown keys") from exc
    pending = raw.get("max_pending_per_session", 3)
    if isinstance(pending, bool) or not isinstance(pending, int) or not 1 <= pending <= 20:
        raise ConfigurationError("MOICA_AUTH_MOBILE max_pending_per_session must be 1–20")
    return MobileSettings(
        api_url=api_url,
        service_id=service_id,
        aes_key=key,
        modes=modes,
        time_limit=int(time_limit),
        web_url=web_url,
        hint=hint,
        sign_type=sign_type,
        connect_timeout=_number(raw, "connect_timeout", 3.05, 0.1, 30),
        read_timeout=_number(raw, "read_timeout", 10.0, 0.1, 60),
        retries=retries,
        poll_interval=poll_interval,
        push_limits=limits,
        max_pending_per_session=pending,
        check_device=bool(raw.get("check_device", False)),
    )


def mobile_settings() -> MobileSettings | None:
    """``MOICA_AUTH_MOBILE`` parsed, or ``None`` when the setting is absent (the mobile
    login is off). Raises :class:`ConfigurationError` when it is present but wrong."""
    from django.conf import settings

    raw = getattr(settings, "MOICA_AUTH_MOBILE", None)
    if raw is None:
        return None
    # Only a loopback API (the virtual SP API of tests and the demo) may be polled faster
    # than MOI's 4 s; MOI's own hosts never are.
    api_url = raw.get("api_url") if isinstance(raw, Mapping) else None
    host = urlsplit(api_url).hostname if isinstance(api_url, str) else None
    return parse_mobile_settings(raw, allow_fast_polling=_is_loopback(host or ""))
