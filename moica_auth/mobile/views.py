"""HTTP endpoints of the mobile citizen certificate login (under ``/moica/mobile/``).

* ``POST mobile/start/`` ``{"id_number", "mode": "push"|"qr", "birth_date"?, "fields"?,
  "next"?}`` → ``{"transaction", "expires_at", "qr"?, "app_link"?, "sp_ticket"?}``;
* ``POST mobile/status/`` ``{"transaction"}`` → ``{"state": "pending", "retry_after"}``
  or the answer of ``POST login/`` (``{"ok": true, "redirect"}`` / refusal JSON);
* WEB-01 (redirect mode): ``POST mobile/start/`` with ``"mode": "web"`` (``id_number``
  optional) → ``{"transaction", "expires_at", "web_form": {"url", "fields"}}``; the
  browser form-POSTs ``fields`` to ``url`` (MOI's page). MOI's page form-POSTs the result
  to ``mobile/web/callback/`` (the URL registered with MOI), which verifies
  ``idp_checksum`` and redirects (303) to ``GET mobile/web/finish/?transaction=…``; that
  step, in the session that started the transaction, verifies and logs in, then
  redirects to ``next``. Failures of both are an HTML page (zh-Hant/English), 4xx/503.
  Why two steps and no CSRF token: docs/mobile.md, "WEB-01 redirect mode".

The views only parse and answer. :class:`~moica_auth.mobile.source.MobileCredentialSource`
starts the transaction and, on a result, verifies the phone's signature (checksum,
challenge, form ``mobile``, chain, revocation); the verified credential then goes
through the one login core, :func:`moica_auth.login.perform_login` (address and
certificate limits, the personal-data verifiers on the typed ID number, identity binding,
audit, signals, the Django session), exactly as a card token does.
"""

from __future__ import annotations

import base64
import logging
import threading
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from cryptography.hazmat.primitives import serialization
from django.conf import settings as django_settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from moica_auth.challenge import ChallengeService
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    FieldRequired,
    LoginUnavailable,
    MalformedRequest,
    MoicaAuthError,
    SessionMismatch,
    TooManyAttempts,
)
from moica_auth.forms import optional_text, parse_fields, read_body
from moica_auth.login import (
    ClientInfo,
    Credential,
    LoginRefusal,
    PersonalInput,
    perform_login,
    refuse,
)
from moica_auth.mobile.client import SpApiClient
from moica_auth.mobile.errors import MobileNotConfigured
from moica_auth.mobile.settings import WEB_MODE, mobile_settings
from moica_auth.mobile.source import (
    CHANNEL,
    MobileCredential,
    MobileCredentialSource,
    MobileStart,
    MobileWebStart,
)
from moica_auth.services import Services, get_services
from moica_auth.session import PENDING_KEY
from moica_auth.views import (
    _DjangoLoginSession,
    _error_response,
    _json_csrf_protect,
    _safe_next,
    client_ip,
)

__all__ = [
    "VerifiedMobileSource",
    "mobile_source",
    "qr_svg",
    "start_view",
    "started_answer",
    "status_view",
    "web_callback_view",
    "web_finish_view",
]

logger = logging.getLogger("moica_auth")

#: Session key: per transaction handle, what the start request asked for (birth date,
#: step-up fields, next) until the status request finishes the login.
TRANSACTIONS_KEY = "moica_auth_mobile"
_MAX_KEPT = 8

_lock = threading.Lock()
_cached: tuple[Services, Any, MobileCredentialSource] | None = None


def mobile_source(services: Services) -> MobileCredentialSource:
    """The site's :class:`MobileCredentialSource`, built from ``MOICA_AUTH_MOBILE`` over
    the services' shared store, verifier and clock (rebuilt when either changes).

    Its challenge service is the card login's, with a TTL of at least MOI's
    ``time_limit`` (the citizen has that long to answer on the phone).
    """
    global _cached
    raw = getattr(django_settings, "MOICA_AUTH_MOBILE", None)
    with _lock:
        if _cached is not None and _cached[0] is services and _cached[1] == raw:
            return _cached[2]
        parsed = mobile_settings()
        if parsed is None:
            raise MobileNotConfigured("MOICA_AUTH_MOBILE is not set")
        origin = app_settings.ORIGIN or ""
        challenges = ChallengeService(
            services.store,
            origin=origin,
            ttl=max(app_settings.CHALLENGE_TTL, parsed.time_limit + 30),
            binding_key=app_settings.HASH_KEY,
            clock=services.clock,
        )
        source = MobileCredentialSource(
            client=SpApiClient(parsed),
            challenges=challenges,
            verifier=services.verifier,
            store=services.store,
            hash_key=app_settings.HASH_KEY,
            clock=services.clock,
        )
        _cached = (services, raw, source)
        return source


class VerifiedMobileSource:
    """A :class:`~moica_auth.login.CredentialSource` for a mobile credential that the
    status view has already obtained from MOI and verified: polling is not a login step
    (most polls are "pending"), so it happens before the login core runs."""

    channel = CHANNEL

    def __init__(self, credential: MobileCredential) -> None:
        self.credential = credential

    def __repr__(self) -> str:
        return "VerifiedMobileSource()"

    def claimed_fingerprint(self) -> str | None:
        return None

    def obtain(
        self, services: Services, *, session_id: str, client: ClientInfo, at: datetime
    ) -> Credential:
        verified = self.credential.verified
        leaf_der = verified.signature.certificate.public_bytes(serialization.Encoding.DER)
        challenge = self.credential.challenge
        return Credential(
            channel=self.channel,
            verified=verified,
            challenge=challenge,
            evidence=(
                challenge.tbs,
                self.credential.signed_response,
                base64.b64encode(leaf_der).decode(),
            ),
        )


def _client(request: HttpRequest) -> ClientInfo:
    return ClientInfo(ip=client_ip(request), origin=request.headers.get("Origin"), request=request)


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def start_view(request: HttpRequest) -> JsonResponse:
    """``POST mobile/start/``: have MOI ask the phone to sign a fresh challenge."""
    client = _client(request)
    try:
        services = get_services()
        source = mobile_source(services)
        # A locked address starts nothing (and rings no phone).
        services.limiter.check(ip=client.ip)
        data = read_body(request)
        id_number = optional_text(data, "id_number")
        mode = optional_text(data, "mode") or "push"
        if id_number is None and mode != WEB_MODE:  # MOI's WEB-01 page asks for it
            raise FieldRequired("id_number is required", fields=["id_number"])
        if mode not in source.settings.modes:
            # The client's choice, not MOI's refusal: a 400, not the source's 503.
            raise MalformedRequest("mode must be one of the enabled modes")
        birth_date = optional_text(data, "birth_date")
        fields = parse_fields(data.get("fields"))
        next_url = optional_text(data, "next", limit=2000)
        # The challenge is bound to the session key, so the session must exist now.
        request.session[PENDING_KEY] = True
        if not request.session.session_key:
            request.session.save()
        started: MobileStart | MobileWebStart
        if mode == WEB_MODE:
            started = source.start_web(
                session_id=request.session.session_key or "",
                id_number=id_number,
                client_ip=client.ip,
            )
        else:
            started = source.start(
                session_id=request.session.session_key or "",
                id_number=id_number or "",
                mode=mode,
                client_ip=client.ip,
            )
    except MoicaAuthError as exc:
        return _error_response(exc)
    except Exception as exc:  # a bug or a store failure: JSON, not an HTML 500
        logger.error("moica mobile start failed unexpectedly: %s", type(exc).__name__)
        return _error_response(LoginUnavailable(type(exc).__name__))
    kept = dict(request.session.get(TRANSACTIONS_KEY) or {})
    while len(kept) >= _MAX_KEPT:
        kept.pop(next(iter(kept)))
    kept[started.transaction] = {
        "birth_date": birth_date,
        "fields": sorted(fields),
        "next": next_url,
    }
    request.session[TRANSACTIONS_KEY] = kept
    if isinstance(started, MobileWebStart):
        return JsonResponse(
            {
                "transaction": started.transaction,
                "mode": WEB_MODE,
                "expires_at": started.expires_at.isoformat(),
                "web_form": {"url": started.url, "fields": started.fields},
            }
        )
    return JsonResponse(started_answer(started, poll_interval=source.settings.poll_interval))


def started_answer(started: MobileStart, *, poll_interval: float) -> dict[str, Any]:
    """The JSON answer of a started phone transaction (login or signing): the handle, its
    expiry and polling interval, and the QR code / app link when it is a ticket."""
    answer: dict[str, Any] = {
        "transaction": started.transaction,
        "mode": started.mode,
        "expires_at": started.expires_at.isoformat(),
        "poll_interval": poll_interval,
    }
    if started.sp_ticket is not None:
        answer["sp_ticket"] = started.sp_ticket
        answer["qr"] = qr_svg(started.sp_ticket)
    if started.app_link is not None:
        answer["app_link"] = started.app_link
    return answer


def qr_svg(text: str) -> str | None:
    """The QR code of ``text`` as an SVG ``data:`` URI for an ``<img>`` (rendered here;
    an image cannot run script), or ``None`` when ``segno`` is not installed (the page
    then shows the ticket text only)."""
    try:
        import segno
    except ImportError:
        return None
    uri: str = segno.make(text, error="m").svg_data_uri(scale=4)
    return uri


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def status_view(request: HttpRequest) -> HttpResponse:
    """``POST mobile/status/``: pending, or the login answer once the phone answered."""
    client = _client(request)
    try:
        services = get_services()
    except MoicaAuthError as exc:
        logger.error("moica login unavailable: %s", exc.code)
        return _error_response(exc)
    handle: str | None = None
    try:
        source = mobile_source(services)
        services.limiter.check(ip=client.ip)
        handle = optional_text(read_body(request), "transaction")
        if handle is None:
            raise FieldRequired("transaction is required", fields=["transaction"])
        result = source.poll(
            transaction=handle,
            session_id=request.session.session_key or "",
            origin=client.origin,
            at=services.clock(),
        )
    except MoicaAuthError as exc:
        # A refusal of the mobile path is a refused login: counted, audited, signalled.
        if exc.http_status != 503:  # final (a 503 is an outage: the browser asks again)
            _forget(request, handle)
        return _error_response(refuse(exc, client=client, services=services).error)
    except Exception as exc:
        logger.error("moica mobile status failed unexpectedly: %s", type(exc).__name__)
        error = LoginUnavailable(type(exc).__name__)
        return _error_response(refuse(error, client=client, services=services).error)
    if not isinstance(result, MobileCredential):
        response = JsonResponse({"state": "pending", "retry_after": result.retry_after})
        response["Retry-After"] = str(max(1, round(result.retry_after)))
        return response
    done = _log_in(request, handle, result, client=client, services=services)
    if isinstance(done, LoginRefusal):
        return _error_response(done.error)
    return JsonResponse({"ok": True, "redirect": done})


def _log_in(
    request: HttpRequest,
    handle: str | None,
    result: MobileCredential,
    *,
    client: ClientInfo,
    services: Services,
) -> LoginRefusal | str:
    """The verified phone's login, with what the start request asked for (fields, birth
    date, ``next``): the refusal, or where to send the citizen."""
    asked = _forget(request, handle) or {}
    personal = PersonalInput(
        id_number=result.id_number.value,
        birth_date=asked.get("birth_date"),
        requested=frozenset(asked.get("fields") or ()),
    )
    redirect_to = _safe_next(request, asked.get("next"))
    outcome = perform_login(
        VerifiedMobileSource(result),
        personal,
        session=_DjangoLoginSession(request),
        client=client,
        services=services,
    )
    return outcome if isinstance(outcome, LoginRefusal) else redirect_to


def _forget(request: HttpRequest, handle: str | None) -> dict[str, Any] | None:
    """Remove and return what the start request kept for ``handle``."""
    if handle is None:
        return None
    kept = dict(request.session.get(TRANSACTIONS_KEY) or {})
    asked = kept.pop(handle, None)
    if asked is not None:
        request.session[TRANSACTIONS_KEY] = kept
    return asked if isinstance(asked, dict) else None


# --- WEB-01 redirect mode ---------------------------------------------------------------

#: The callback form is a handful of short fields plus a signature and a certificate.
_MAX_CALLBACK_BYTES = 64 * 1024
_CALLBACK_FIELDS = (
    "transaction_id",
    "error_code",
    "error_message",
    "id_num",
    "signed_response",
    "cert",
    "idp_checksum",
)


def _web_error(request: HttpRequest, exc: MoicaAuthError) -> HttpResponse:
    """The refusal as a page (the browser arrived by a navigation, not by fetch)."""
    status = exc.http_status if 400 <= exc.http_status < 600 else 400
    response = render(
        request,
        "moica_auth/mobile_web_error.html",
        {
            "code": exc.code,
            "message": exc.message,
            "retry_url": reverse("moica:login-page"),
        },
        status=status,
    )
    if isinstance(exc, TooManyAttempts) and "retry_after" in exc.data:
        response["Retry-After"] = str(int(exc.data["retry_after"]))
    return response


def _callback_form(request: HttpRequest) -> dict[str, str]:
    """The callback's form fields (bounded; unknown fields ignored; repeats refused)."""
    kind = (request.content_type or "").lower()
    if kind != "application/x-www-form-urlencoded":
        raise MalformedRequest("the callback must be a form POST")
    length = request.headers.get("Content-Length") or "0"
    if not length.isdigit() or int(length) > _MAX_CALLBACK_BYTES:
        raise MalformedRequest("the callback form is too large")
    try:
        body = request.body.decode("utf-8")
    except (UnicodeDecodeError, RequestDataTooBig) as exc:
        raise MalformedRequest("the callback form is not readable") from exc
    if len(body) > _MAX_CALLBACK_BYTES:
        raise MalformedRequest("the callback form is too large")
    try:
        parsed = parse_qs(
            body, keep_blank_values=True, strict_parsing=bool(body), max_num_fields=32
        )
    except ValueError as exc:
        raise MalformedRequest("the callback form is malformed") from exc
    form: dict[str, str] = {}
    for name in _CALLBACK_FIELDS:
        values = parsed.get(name)
        if values is None:
            continue
        if len(values) != 1:
            raise MalformedRequest(f"the callback repeats {name}")
        form[name] = values[0]
    return form


@never_cache
@csrf_exempt  # MOI's page POSTs here cross-site: it cannot carry our token (docs/mobile.md)
@require_POST
def web_callback_view(request: HttpRequest) -> HttpResponse:
    """``POST mobile/web/callback/``: the WEB-01 result form from MOI's page.

    No session is used here: under ``SameSite=Lax`` (Django's default) a cross-site form
    POST carries no session cookie. The form proves itself by ``idp_checksum`` (AES-GCM
    under the key only MOI and this site hold, over MOI's transaction id, the error code,
    the ID number and the signature); the transaction's callback slot is taken once. The
    answer is then parked and the browser sent (303, a GET navigation that carries the
    ``Lax`` session cookie) to the finish step, where the session binding is checked.
    """
    client = _client(request)
    services: Services | None = None
    try:
        services = get_services()
        source = mobile_source(services)
        services.limiter.check(ip=client.ip)
        handle = source.web_callback(_callback_form(request))
    except MoicaAuthError as exc:
        # Counted, audited and signalled as a refused login (``services`` is ``None``
        # only when they are the failure).
        return _web_error(request, refuse(exc, client=client, services=services).error)
    except Exception as exc:
        logger.error("moica mobile callback failed unexpectedly: %s", type(exc).__name__)
        return _web_error(request, LoginUnavailable(type(exc).__name__))
    target = f"{reverse('moica:mobile-web-finish')}?{urlencode({'transaction': handle})}"
    response = HttpResponseRedirect(target)
    response.status_code = 303  # "See Other": the browser follows with a GET
    return response


@never_cache
@require_GET
def web_finish_view(request: HttpRequest) -> HttpResponse:
    """``GET mobile/web/finish/?transaction=…``: the session that started the WEB-01
    transaction verifies MOI's parked answer (challenge, signature, certificate form,
    chain, revocation, ID last-4) and logs in through the login core; then ``next``."""
    client = ClientInfo(ip=client_ip(request), origin=None, request=request)
    handle: str | None = None
    services: Services | None = None
    try:
        services = get_services()
        source = mobile_source(services)
        services.limiter.check(ip=client.ip)
        handle = request.GET.get("transaction") or None
        if handle is None:
            raise FieldRequired("transaction is required", fields=["transaction"])
        result = source.finish_web(
            transaction=handle,
            session_id=request.session.session_key or "",
            at=services.clock(),
        )
    except MoicaAuthError as exc:
        # Another session's refusal leaves this session's kept request alone.
        if not isinstance(exc, SessionMismatch) and exc.http_status != 503:
            _forget(request, handle)
        return _web_error(request, refuse(exc, client=client, services=services).error)
    except Exception as exc:
        logger.error("moica mobile finish failed unexpectedly: %s", type(exc).__name__)
        return _web_error(request, LoginUnavailable(type(exc).__name__))
    done = _log_in(request, handle, result, client=client, services=services)
    if isinstance(done, LoginRefusal):
        return _web_error(request, done.error)
    return HttpResponseRedirect(done)
