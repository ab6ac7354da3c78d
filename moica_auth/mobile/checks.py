"""System checks of ``MOICA_AUTH_MOBILE`` (ids E020–E029, W020–W029).

* E020 the setting is present but invalid (unknown key, bad mode, time limit …);
* E021 ``aes_key`` missing, not 32 bytes, not base64, or its environment variable unset;
* E022 ``api_url`` (or ``web_url``) without TLS for a host other than a loopback one:
  the checksums do not hide the ID number or the signature, TLS does;
* W020 (deploy) ``api_url`` is MOI's test host or a loopback (virtual) API;
* E023 ``modes`` has ``"web"`` (WEB-01) while ``SESSION_COOKIE_SAMESITE = "Strict"``: the
  finish step is reached by a redirect from MOI's cross-site form POST, which carries no
  ``Strict`` cookie, so every WEB-01 login would fail (``"Lax"``, Django's default, works);
* E024 ``modes`` has ``"web"`` but the callback route ``moica:mobile-web-callback`` does
  not resolve (``moica_auth.urls`` not included under the ``moica`` namespace): MOI's
  page would POST the result to a 404;
* W021 (deploy) ``modes`` has ``"web"`` and ``MOICA_AUTH_ORIGIN`` is not ``https``: the
  callback URL registered with MOI is ``{MOICA_AUTH_ORIGIN}/…/mobile/web/callback/``.

The key is never part of a message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse

from moica_auth.exceptions import ConfigurationError
from moica_auth.mobile.settings import WEB_MODE, _is_loopback, mobile_settings, read_key

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
    if not messages and _web_mode(raw):
        messages += _check_web_mode()
    return messages


def _web_mode(raw: Any) -> bool:
    modes = raw.get("modes", ()) if isinstance(raw, dict) else ()
    return WEB_MODE in ((modes,) if isinstance(modes, str) else tuple(modes))


def _check_web_mode() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if str(getattr(settings, "SESSION_COOKIE_SAMESITE", "Lax")).lower() == "strict":
        messages.append(
            Error(
                'MOICA_AUTH_MOBILE mode "web" (WEB-01) cannot work with '
                'SESSION_COOKIE_SAMESITE = "Strict".',
                hint="MOI's page returns the citizen by a cross-site form POST; the "
                'finish step after it needs the session cookie. Use "Lax" (the default), '
                'or drop "web" from modes.',
                id="moica_auth.E023",
            )
        )
    try:
        has_urlconf = bool(getattr(settings, "ROOT_URLCONF", None))
        if has_urlconf:  # without one Django's own checks speak
            reverse("moica:mobile-web-callback")
    except NoReverseMatch:
        messages.append(
            Error(
                'MOICA_AUTH_MOBILE mode "web" needs the callback route moica:mobile-web-callback.',
                hint='Include moica_auth.urls: path("moica/", include("moica_auth.urls")).',
                id="moica_auth.E024",
            )
        )
    return messages


@register(Tags.security, deploy=True)
def check_mobile_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: a test or virtual SP API is not for production."""
    raw = getattr(settings, "MOICA_AUTH_MOBILE", None)
    if not isinstance(raw, dict) or not isinstance(raw.get("api_url"), str):
        return []
    host = urlsplit(raw["api_url"]).hostname or ""
    messages: list[CheckMessage] = []
    if host == "fidoapi-test.moi.gov.tw" or _is_loopback(host):
        messages.append(
            Warning(
                "MOICA_AUTH_MOBILE api_url points at a test or virtual SP API.",
                hint="Use https://fidoapi.moi.gov.tw in production; test mobile "
                "certificates are issued by a test CA.",
                id="moica_auth.W020",
            )
        )
    origin = getattr(settings, "MOICA_AUTH_ORIGIN", None)
    if _web_mode(raw) and not (isinstance(origin, str) and origin.startswith("https://")):
        messages.append(
            Warning(
                'MOICA_AUTH_MOBILE mode "web" with a MOICA_AUTH_ORIGIN that is not https.',
                hint="Register https://<your site>/moica/mobile/web/callback/ with MOI as "
                "the WEB-01 callback; the result form carries the ID number and the "
                "signature.",
                id="moica_auth.W021",
            )
        )
    return messages
