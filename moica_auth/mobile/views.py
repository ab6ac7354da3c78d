"""HTTP endpoints of the mobile citizen certificate login (under ``/moica/mobile/``).

* ``POST mobile/start/`` ``{"id_number", "mode": "push"|"qr", "birth_date"?, "fields"?,
  "next"?}`` → ``{"transaction", "expires_at", "qr"?, "app_link"?, "sp_ticket"?}``;
* ``POST mobile/status/`` ``{"transaction"}`` → ``{"state": "pending", "retry_after"}``
  or the answer of ``POST login/`` (``{"ok": true, "redirect"}`` / refusal JSON).

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
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from moica_auth.challenge import ChallengeService
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    FieldRequired,
    LoginUnavailable,
    MalformedRequest,
    MoicaAuthError,
)
from moica_auth.forms import parse_fields, read_body
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
from moica_auth.mobile.settings import mobile_settings
from moica_auth.mobile.source import CHANNEL, MobileCredential, MobileCredentialSource
from moica_auth.services import Services, get_services
from moica_auth.session import LEGACY_CHANNEL_KEY, PENDING_KEY
from moica_auth.views import (
    _DjangoLoginSession,
    _error_response,
    _json_csrf_protect,
    _safe_next,
    client_ip,
)

__all__ = ["VerifiedMobileSource", "mobile_source", "start_view", "status_view"]

logger = logging.getLogger("moica_auth")

#: Session key: per transaction handle, what the start request asked for (birth date,
#: step-up fields, next) until the status request finishes the login.
TRANSACTIONS_KEY = "moica_auth_mobile"
_MAX_KEPT = 8
#: Where the channel was kept before :class:`~moica_auth.session.SessionRecord` carried
#: it (read for old sessions by ``SessionRecord.read``; no longer written).
CHANNEL_KEY = LEGACY_CHANNEL_KEY

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


def _text(data: Mapping[str, Any], name: str, *, limit: int = 64) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise MalformedRequest(f"{name} must be a short string")
    return value.strip()


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
        id_number = _text(data, "id_number")
        if id_number is None:
            raise FieldRequired("id_number is required", fields=["id_number"])
        mode = _text(data, "mode") or "push"
        if mode not in source.settings.modes:
            # The client's choice, not MOI's refusal: a 400, not the source's 503.
            raise MalformedRequest("mode must be one of the enabled modes")
        birth_date = _text(data, "birth_date")
        fields = parse_fields(data.get("fields"))
        next_url = _text(data, "next", limit=2000)
        # The challenge is bound to the session key, so the session must exist now.
        request.session[PENDING_KEY] = True
        if not request.session.session_key:
            request.session.save()
        started = source.start(
            session_id=request.session.session_key or "",
            id_number=id_number,
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
    answer: dict[str, Any] = {
        "transaction": started.transaction,
        "mode": started.mode,
        "expires_at": started.expires_at.isoformat(),
        "poll_interval": source.settings.poll_interval,
    }
    if started.sp_ticket is not None:
        answer["sp_ticket"] = started.sp_ticket
        answer["qr"] = qr_svg(started.sp_ticket)
    if started.app_link is not None:
        answer["app_link"] = started.app_link
    return JsonResponse(answer)


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
        handle = _text(read_body(request), "transaction")
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
    if isinstance(outcome, LoginRefusal):
        return _error_response(outcome.error)
    return JsonResponse({"ok": True, "redirect": redirect_to})


def _forget(request: HttpRequest, handle: str | None) -> dict[str, Any] | None:
    """Remove and return what the start request kept for ``handle``."""
    if handle is None:
        return None
    kept = dict(request.session.get(TRANSACTIONS_KEY) or {})
    asked = kept.pop(handle, None)
    if asked is not None:
        request.session[TRANSACTIONS_KEY] = kept
    return asked if isinstance(asked, dict) else None
