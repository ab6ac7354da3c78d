"""HTTP endpoints of the card login (mounted under ``/moica/``, namespace ``moica``).

* ``GET session/``: the card login of this session (and a CSRF cookie);
* ``POST challenge/``: a fresh challenge bound to the session and the site;
* ``POST login/``: the signed challenge → verified citizen → Django login;
* ``POST logout/``;
* ``GET login-page/``: the page shell asking for a card login or a step-up.

Every refusal is a 4xx JSON ``{"ok": false, "code", "message", …}`` built from the
:class:`~moica_auth.exceptions.MoicaAuthError` raised; malformed input of any kind is a
4xx, never a 5xx and never a login. Request and response shapes: ``docs/protocol.md``.

The login view only parses (:mod:`moica_auth.forms`), calls the HTTP-free login
(:func:`moica_auth.login.perform_login`: challenge, token, limits, personal data, binding,
audit, signals) and answers; the session record is :class:`moica_auth.session.SessionRecord`.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render, resolve_url
from django.utils.decorators import decorator_from_middleware
from django.utils.http import http_date, url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    CsrfFailed,
    LoginUnavailable,
    MalformedRequest,
    MoicaAuthError,
    TooManyAttempts,
)
from moica_auth.forms import LoginInput, parse_fields, parse_login
from moica_auth.login import (
    PERSONAL_FIELDS,
    ClientInfo,
    LoginRefusal,
    admit_client,
    perform_login,
    refuse,
)
from moica_auth.request_guard import body_refusal, unreadable_body
from moica_auth.services import get_services
from moica_auth.session import PENDING_KEY, SessionRecord, moica_from_request

__all__ = [
    "PERSONAL_FIELDS",
    "LoginInput",
    "challenge_view",
    "client_ip",
    "login_page_view",
    "login_view",
    "logout_view",
    "parse_login",
    "session_view",
]

logger = logging.getLogger("moica_auth")

_BACKEND = "moica_auth.backends.MoicaBackend"


# --- helpers ----------------------------------------------------------------------------


_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])


class _JsonCsrfMiddleware(CsrfViewMiddleware):
    """Django's CSRF check, unchanged, answering a refusal as JSON ``403 csrf_failed``
    (the login endpoints are called by script, which cannot read Django's HTML page)."""

    # The stubs type process_view's answer as HttpResponseForbidden; a malformed body is
    # a 400, not a 403.
    def process_view(  # type: ignore[override]
        self,
        request: HttpRequest,
        callback: Callable[..., Any],
        callback_args: Any,
        callback_kwargs: Any,
    ) -> HttpResponse | None:
        # Django's check reads request.POST (the csrfmiddlewaretoken field) and catches
        # only UnreadablePostError: a body that cannot be parsed (an unknown charset, a
        # broken multipart boundary, too many fields) must be a 4xx JSON refusal here,
        # not an exception that Django's CSRF-decorated error views raise again.
        exc = unreadable_body(request)
        if exc is not None:
            return body_refusal(request, exc)
        return super().process_view(request, callback, callback_args, callback_kwargs)

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        logger.info("moica request refused by the CSRF check: %s", reason)
        return _error_response(CsrfFailed(reason))


#: ``csrf_protect`` with a JSON refusal. The views also carry ``csrf_exempt`` so that the
#: project's ``CsrfViewMiddleware`` leaves the (same) check to this decorator.
# django-stubs types decorator_from_middleware's result loosely (it may return a decorator
# factory); this one decorates a view and returns a view of the same type.
_json_csrf_protect = cast(
    "Callable[[_View], _View]", decorator_from_middleware(_JsonCsrfMiddleware)
)


def client_ip(request: HttpRequest) -> str | None:
    """The client address: ``REMOTE_ADDR``, or ``MOICA_AUTH_CLIENT_IP_HEADER`` when set
    (only behind a proxy that sets it) and it holds an address; ``None`` only when
    neither does. An IPv4-mapped IPv6 address is given as the IPv4 address.

    For a list header (``X-Forwarded-For``) the right-most entry is used: it is the one
    the trusted proxy appended; entries to its left come from the client and could be
    forged to dodge the per-address limit.
    """
    header = app_settings.CLIENT_IP_HEADER
    raw = request.META.get(header) if header else None
    if isinstance(raw, str) and raw.strip():
        found = _parse_ip(raw.split(",")[-1])
        if found is not None:
            return found
    # No header (the request did not come through the proxy), or one that holds no
    # address: the socket peer. Never "no address", which would switch the limit off.
    return _parse_ip(request.META.get("REMOTE_ADDR", ""))


def _parse_ip(raw: object) -> str | None:
    try:
        address = ipaddress.ip_address(str(raw).strip())
    except ValueError:
        return None
    # ::ffff:a.b.c.d (a dual-stack socket) is the IPv4 client a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.content_type == "application/json" or "application/json" in accept


def _error_response(exc: MoicaAuthError) -> JsonResponse:
    body = exc.as_dict()
    if exc.http_status >= 500:
        # Server-side trouble: what an upstream said (a confirmation service's HTTP
        # status or error code, a responder's detail) is for the logs, not the client.
        body = {key: body[key] for key in ("ok", "code", "message")}
    response = JsonResponse(body, status=exc.http_status)
    if isinstance(exc, TooManyAttempts) and "retry_after" in exc.data:
        response["Retry-After"] = str(int(exc.data["retry_after"]))
    return response


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` when it stays on this site, else ``MOICA_AUTH_LOGIN_REDIRECT``.

    Django's ``url_has_allowed_host_and_scheme`` (no other host, no scheme but http(s),
    no ``//``, ``\\`` or control-character tricks), with the host and scheme of
    ``MOICA_AUTH_ORIGIN``, the one site challenges are issued for, rather than the
    request's ``Host`` header, which the client writes (and which ``ALLOWED_HOSTS = ["*"]``
    would let through).
    """
    if candidate:
        origin = urlsplit(app_settings.ORIGIN or "")
        hosts = {origin.netloc} if origin.netloc else set()
        secure = origin.scheme == "https" if origin.scheme else request.is_secure()
        if url_has_allowed_host_and_scheme(candidate, allowed_hosts=hosts, require_https=secure):
            return candidate
    return resolve_url(app_settings.LOGIN_REDIRECT)


# --- views ------------------------------------------------------------------------------


@never_cache
@ensure_csrf_cookie
@require_GET
def session_view(request: HttpRequest) -> JsonResponse:
    """``GET session/``: the card login of this session; also sets the CSRF cookie."""
    moica = moica_from_request(request)
    if not moica.is_authenticated:
        return JsonResponse({"authenticated": False})
    return JsonResponse(
        {
            "authenticated": True,
            "name": moica.name,
            "card_serial": moica.card_serial,
            "verified": sorted(moica.fields),
            "auth_time": moica.auth_time.isoformat() if moica.auth_time else None,
            "assurance": {
                "form": moica.form,
                "channel": moica.channel,
                "revocation": (moica.revocation or {}).get("source") or "unchecked",
            },
        }
    )


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def challenge_view(request: HttpRequest) -> JsonResponse:
    """``POST challenge/``: issue a challenge bound to this session (created if needed)."""
    try:
        services = get_services()
        ip = client_ip(request)
        services.limiter.admit_challenge(ip=ip)
        # The challenge is bound to the session key, so the session must exist now.
        fresh = not request.session.session_key
        request.session[PENDING_KEY] = True
        if fresh:
            request.session.save()
        challenge = services.challenges.issue(session_id=request.session.session_key or "")
    except MoicaAuthError as exc:
        return _error_response(exc)
    except Exception as exc:  # a bug or a session-store failure: JSON, not an HTML 500
        logger.error("moica challenge failed unexpectedly: %s", type(exc).__name__)
        return _error_response(LoginUnavailable(type(exc).__name__))
    response = JsonResponse(
        {
            "nonce": challenge.nonce,
            "tbs": challenge.tbs,
            "tbs_encoding": "NONE",
            "expires_at": challenge.as_json()["expires_at"],
            "hash_algorithm": "SHA256",
            "signature_type": "PKCS7",
        }
    )
    if fresh:
        _send_saved_session(request, response)
    return response


def _send_saved_session(request: HttpRequest, response: HttpResponse) -> None:
    """Send the cookie of a session this request has just saved, and tell
    SessionMiddleware it has nothing left to write.

    Left ``modified``, the session would be written twice (the INSERT that gave it its
    key, then SessionMiddleware's UPDATE of the same data). The cookie is the one
    SessionMiddleware would set, with the same settings.
    """
    from django.conf import settings

    session = request.session
    session.modified = False
    if session.get_expire_at_browser_close():
        max_age: int | None = None
        expires: str | None = None
    else:
        max_age = session.get_expiry_age()
        expires = http_date(time.time() + max_age)
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session.session_key or "",
        max_age=max_age,
        expires=expires,
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=bool(settings.SESSION_COOKIE_SECURE),
        httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    """``POST login/``: parse → :func:`~moica_auth.login.perform_login` → respond.

    Every outcome is JSON (or, for a successful form post, a redirect): a refusal is the
    :class:`MoicaAuthError` of the :class:`~moica_auth.login.LoginRefusal`.
    """
    client = ClientInfo(
        ip=client_ip(request), origin=request.headers.get("Origin"), request=request
    )
    try:
        services = get_services()
    except MoicaAuthError as exc:
        logger.error("moica login unavailable: %s", exc.code)
        return _error_response(exc)
    reservation = None
    try:
        # A locked address is refused before its body is even parsed.
        reservation = admit_client(services, client)
        data = parse_login(request)
        redirect_to = _safe_next(request, data.next)
    except MoicaAuthError as exc:
        refusal = refuse(exc, client=client, services=services, reservation=reservation)
        return _error_response(refusal.error)
    except Exception as exc:  # a bug: JSON, not an HTML 500
        logger.error("moica login failed unexpectedly: %s", type(exc).__name__)
        error = LoginUnavailable(type(exc).__name__)
        refusal = refuse(error, client=client, services=services, reservation=reservation)
        return _error_response(refusal.error)
    result = perform_login(
        data.card_source(),
        data.personal(),
        session=_DjangoLoginSession(request),
        client=client,
        services=services,
        reservation=reservation,
    )
    if isinstance(result, LoginRefusal):
        return _error_response(result.error)
    if _wants_json(request):
        return JsonResponse({"ok": True, "redirect": redirect_to})
    return HttpResponseRedirect(redirect_to)


class _DjangoLoginSession:
    """The Django session of ``request`` as a :class:`~moica_auth.login.LoginSession`."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    @property
    def session_id(self) -> str:
        return self.request.session.session_key or ""

    def previous_record(self) -> SessionRecord | None:
        if not self.request.user.is_authenticated:
            return None
        return SessionRecord.read(self.request.session)

    def establish(self, user: Any, record: SessionRecord) -> None:
        # login() rotates the session key; when the session belonged to another user it
        # flushes it, so nothing of theirs (verified fields) survives.
        login(self.request, user, backend=_BACKEND)
        record.write(self.request.session)
        self.request.session.pop(PENDING_KEY, None)

    def abandon(self) -> None:
        try:
            logout(self.request)
        except Exception:
            logger.error("moica logout after a failed login failed; clearing the session")
            self.request.session.clear()  # saved without the login by SessionMiddleware


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """``POST logout/``: end the Django session (card login included)."""
    logout(request)
    from django.conf import settings

    target = resolve_url(settings.LOGOUT_REDIRECT_URL or "/")
    if _wants_json(request):
        return JsonResponse({"ok": True, "redirect": target})
    return HttpResponseRedirect(target)


@never_cache
@ensure_csrf_cookie
@require_GET
def login_page_view(request: HttpRequest) -> HttpResponse:
    """``GET login-page/?fields=birth_date&next=/x``: the card login / step-up page."""
    try:
        fields = parse_fields(request.GET.get("fields", ""))
    except MalformedRequest:
        fields = frozenset()
    moica = moica_from_request(request)
    context = {
        "fields": [f for f in PERSONAL_FIELDS if f in fields],
        "field_labels": {"id_number": _("ID number"), "birth_date": _("Birth date")},
        "next": _safe_next(request, request.GET.get("next")),
        "step_up": moica.is_authenticated,
        "moica": moica,
        # The origin the challenge text names (what the card signs for): shown so that a
        # citizen sent to a relay site can see the mismatch with the address bar.
        "signing_origin": app_settings.ORIGIN or "",
    }
    response = render(request, "moica_auth/login.html", context)
    # The HiPKI bridge is a cross-origin popup that must keep ``window.opener``; Django's
    # default ``same-origin`` opener policy would sever it (SecurityMiddleware only adds
    # its default when the header is absent).
    response["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    return response
