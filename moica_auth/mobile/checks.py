"""System checks of ``MOICA_AUTH_MOBILE`` (ids E020–E029, W020–W029).

* E020 the setting is present but invalid (unknown key, bad mode, time limit …);
* E021 ``aes_key`` missing, not 32 bytes, not base64, or its environment variable unset;
* E022 ``api_url`` (or ``web_url``) without TLS for a host other than a loopback one:
  the checksums do not hide the ID number or the signature, TLS does;
* W020 (deploy) ``api_url`` is MOI's test host or a loopback (virtual) API.

The key is never part of a message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from moica_auth.exceptions import ConfigurationError
from moica_auth.mobile.settings import _is_loopback, mobile_settings, read_key

__all__ = ["check_mobile", "check_mobile_deploy"]


def check_mobile() -> list[CheckMessage]:
    raw = getattr(settings, "MOICA_AUTH_MOBILE", None)
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [Error("MOICA_AUTH_MOBILE must be a dict.", id="moica_auth.E020")]
    messages: list[CheckMessage] = []
    hint_key = (
        'Set "aes_key" to the 256-bit key MOI issued: {"env": "MOICA_AUTH_MOBILE_AES_KEY"} '
        "with the base64 key in that variable, or bytes."
    )
    if "aes_key" not in raw:
        messages.append(
            Error("MOICA_AUTH_MOBILE has no aes_key.", hint=hint_key, id="moica_auth.E021")
        )
    else:
        try:
            read_key(raw["aes_key"])
        except ConfigurationError as exc:
            messages.append(Error(str(exc.detail), hint=hint_key, id="moica_auth.E021"))
    for name in ("api_url", "web_url"):
        url = raw.get(name)
        if (
            isinstance(url, str)
            and urlsplit(url).scheme == "http"
            and not _is_loopback(urlsplit(url).hostname or "")
        ):
            messages.append(
                Error(
                    f"MOICA_AUTH_MOBILE {name} uses http without TLS.",
                    hint="Use https://fidoapi.moi.gov.tw (production) or "
                    "https://fidoapi-test.moi.gov.tw (test).",
                    id="moica_auth.E022",
                )
            )
    if not messages:
        try:
            mobile_settings()  # the parse the site uses (fast polling only on loopback)
        except ConfigurationError as exc:
            messages.append(Error(str(exc.detail), id="moica_auth.E020"))
    return messages


@register(Tags.security, deploy=True)
def check_mobile_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: a test or virtual SP API is not for production."""
    raw = getattr(settings, "MOICA_AUTH_MOBILE", None)
    if not isinstance(raw, dict) or not isinstance(raw.get("api_url"), str):
        return []
    host = urlsplit(raw["api_url"]).hostname or ""
    if host == "fidoapi-test.moi.gov.tw" or _is_loopback(host):
        return [
            Warning(
                "MOICA_AUTH_MOBILE api_url points at a test or virtual SP API.",
                hint="Use https://fidoapi.moi.gov.tw in production; test mobile "
                "certificates are issued by a test CA.",
                id="moica_auth.W020",
            )
        ]
    return []
