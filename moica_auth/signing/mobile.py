"""Signing a signature request with the mobile citizen certificate (行動自然人憑證).

The same request rows, the same decision and the same evidence as the card
(:mod:`moica_auth.signing.views`); only the way the signature arrives differs:

* :func:`start_mobile_signing`: one request → ``SIGN`` (push, ATH-03, or a ticket for a
  QR code / app link, ATH-01); 2–20 requests (e.g. several attachments of one
  application) → ``BATSIGN`` (ATH-04, a ticket). More than
  :data:`MAX_BATCH` is refused (:class:`MobileBatchTooLarge`) before any upstream call.
  ``sign_data`` is what :func:`moica_auth.signing.channel.mobile_channel` decides: the
  text itself when it has ≤ 1024 characters, else its digest line.
  Before anything rings a phone: the requests are this session's, pending and within
  their lifetime; the session's login was made with the phone (the signature must come
  from the login certificate, which the request text names by a keyed hash); the typed ID
  number ends like that certificate's; and the mobile login's push limits
  (:meth:`MobileCredentialSource.admit`) apply.
* :func:`poll_mobile_signing`: :meth:`MobileCredentialSource.collect` (session binding,
  single-flight ATH-02 across workers, ``idp_checksum``, the result taken once), then
  every request is consumed (single use), each signature verified by
  :func:`moica_auth.signing.views.decide` with the mobile
  :class:`~moica_auth.signing.channel.SigningChannel` (signature over exactly the
  requested bytes, form ``mobile``, chain, revocation at signing time, signer = the
  logged-in citizen, RFC 3161 time-stamp), and all stored, or none.

The HTTP endpoints (``POST /moica/sign/mobile/start/`` and ``…/status/``) are at the end.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from moica_auth.certificate import CitizenCertificate, load_certificate
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    FieldRequired,
    LoginUnavailable,
    MalformedRequest,
    MalformedSignature,
    MoicaAuthError,
    SigningRequestExpired,
    SigningRequestReused,
    SigningRequestUnknown,
)
from moica_auth.forms import optional_text, read_body
from moica_auth.identity.id_number import check_last4, parse_id_number
from moica_auth.mobile.errors import (
    MobileBatchTooLarge,
    MobileCertificateRequired,
    MobileResultMismatch,
    MobileSigningLoginRequired,
    MobileTransactionUnknown,
)
from moica_auth.mobile.settings import MODES
from moica_auth.mobile.source import FORM, MobilePending, MobileStart
from moica_auth.mobile.views import mobile_source, started_answer
from moica_auth.models import SignatureRequest, SignedApplication
from moica_auth.services import get_services
from moica_auth.session import SessionRecord, moica_from_request
from moica_auth.signing.channel import mobile_channel
from moica_auth.signing.views import consume, decide, pending_rows, refused, store_signed
from moica_auth.views import _error_response, _json_csrf_protect, _safe_next, client_ip

__all__ = [
    "MAX_BATCH",
    "poll_mobile_signing",
    "start_mobile_signing",
    "start_view",
    "status_view",
]

logger = logging.getLogger(__name__)

#: ATH-04 takes 1–20 documents.
MAX_BATCH: Final = 20
#: Key prefix of signing transactions in the shared store (login uses another one, so a
#: signing handle can never finish a login, nor a login handle a signature).
RECORD_PREFIX: Final = "mobile:sign:"
#: Session key: per signing transaction, where the browser goes once signed.
NEXT_KEY: Final = "moica_auth_mobile_sign"
_MAX_KEPT: Final = 8
_HINT_CHARS: Final = 40


def _tokens(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise MalformedRequest("request (or requests, a list) is required")
    if len(value) > MAX_BATCH:
        raise MobileBatchTooLarge(f"{len(value)} documents; at most {MAX_BATCH} at once")
    if not all(isinstance(t, str) and 8 <= len(t) <= 64 for t in value):
        raise MalformedRequest("a request id is malformed")
    if len(set(value)) != len(value):
        raise MalformedRequest("a request is listed twice")
    return list(value)


def _login_certificate(request: HttpRequest) -> CitizenCertificate:
    """The session's login certificate; a login with the phone is required."""
    moica = moica_from_request(request)
    if not moica.is_authenticated or not moica.fingerprint:
        raise SigningRequestUnknown("no citizen-certificate login in this session")
    record = SessionRecord.read(request.session)
    if moica.form != FORM or record is None or not record.cert:
        raise MobileSigningLoginRequired("the session's login was not made with the phone")
    return CitizenCertificate.from_certificate(load_certificate(record.cert))


def start_mobile_signing(
    request: HttpRequest,
    *,
    tokens: list[str] | str,
    id_number: str,
    mode: str,
    client_ip: str | None = None,
) -> MobileStart:
    """Ask the citizen's phone to sign the requests ``tokens``; see the module docstring.

    Raises ``MoicaAuthError`` (:class:`MobileBatchTooLarge`, the signing request errors,
    :class:`MobileSigningLoginRequired`, ``IdNumberMismatch``, the push limits, MOI's
    refusals)."""
    wanted = _tokens(tokens)
    if len(wanted) > 1 and mode == "push":
        raise MalformedRequest("a batch (BATSIGN, ATH-04) is signed by QR code or app link")
    citizen = _login_certificate(request)
    source = mobile_source(get_services())
    now = app_settings.now()
    rows: list[SignatureRequest] = []
    for token in wanted:
        row = pending_rows(request, token).first()
        if row is None:
            raise SigningRequestUnknown("no such signature request for this session")
        if row.outcome != SignatureRequest.PENDING:
            raise SigningRequestReused("the signature request was already answered")
        if now >= row.expires_at:
            raise SigningRequestExpired("the signature request is past its lifetime")
        rows.append(row)
    # Before the limits count anything: a number that is not the login certificate's
    # would ring a phone whose signature is refused anyway.
    check_last4(parse_id_number(id_number), citizen.id_last4)
    session_id = request.session.session_key or ""
    number = source.admit(
        session_id=session_id, id_number=id_number, mode=mode, client_ip=client_ip
    )
    channels = [mobile_channel(row.text, sign_type=source.settings.sign_type) for row in rows]
    hint = f"簽章 {rows[0].service}"[:_HINT_CHARS]
    return source.dispatch(
        prefix=RECORD_PREFIX,
        session_id=session_id,
        number=number,
        mode=mode,
        sign_data=[
            c.sign_data(r.text.encode("utf-8")) for c, r in zip(channels, rows, strict=True)
        ],
        expires_at=min(row.expires_at for row in rows),
        extra={"requests": ",".join(wanted)},
        hint=hint,
    )


def poll_mobile_signing(
    request: HttpRequest, *, transaction: str
) -> MobilePending | list[SignedApplication]:
    """Pending, or the signed applications (in the order of the requests); refusals
    raise, and once the phone answered every request is consumed, even on a refusal."""
    source = mobile_source(get_services())
    polled = source.collect(
        prefix=RECORD_PREFIX, transaction=transaction, session_id=request.session.session_key or ""
    )
    if isinstance(polled, MobilePending):
        return polled
    record, answer = polled
    if "requests" not in record:
        raise MobileTransactionUnknown("not a signing transaction")
    tokens = record["requests"].split(",")
    if record.get("op_code") == "BATSIGN":
        signatures = list(answer.signed_response_set)
    else:
        signatures = [answer.signed_response] if answer.signed_response else []
    rows: list[SignatureRequest] = []
    try:
        for token in tokens:
            rows.append(consume(request, token))
    except MoicaAuthError as exc:
        refused(request, rows, exc, at=app_settings.now())
        raise
    now = app_settings.now()
    decided = []
    try:
        if len(signatures) != len(rows) or not all(signatures):
            raise MobileResultMismatch("the result does not sign every requested document")
        if not answer.cert:
            raise MalformedSignature("the result carries no certificate")
        # Cheap and before any revocation traffic: a card certificate has no business here.
        if CitizenCertificate.from_certificate(load_certificate(answer.cert)).form != FORM:
            raise MobileCertificateRequired("the signer certificate has no SDA form 'mobile'")
        for row, signature in zip(rows, signatures, strict=True):
            channel = mobile_channel(row.text, sign_type=record["sign_type"])
            decided.append(
                (
                    row,
                    decide(
                        row,
                        signature=signature,
                        signature_type=channel.signature_type,
                        certificate=answer.cert,
                        at=now,
                        channel=channel,
                    ),
                )
            )
    except MoicaAuthError as exc:
        refused(request, rows, exc, at=now)
        raise
    return store_signed(request, decided, at=now)


# --- HTTP ---------------------------------------------------------------------------------


def _keep_next(request: HttpRequest, transaction: str, next_url: str | None) -> None:
    kept = dict(request.session.get(NEXT_KEY) or {})
    while len(kept) >= _MAX_KEPT:
        kept.pop(next(iter(kept)))
    kept[transaction] = next_url or ""
    request.session[NEXT_KEY] = kept


def _take_next(request: HttpRequest, transaction: str | None) -> str | None:
    kept = dict(request.session.get(NEXT_KEY) or {})
    value = kept.pop(transaction, None) if transaction else None
    if transaction in (request.session.get(NEXT_KEY) or {}):
        request.session[NEXT_KEY] = kept
    return value if isinstance(value, str) and value else None


def _unexpected(exc: Exception, what: str) -> JsonResponse:
    logger.error("moica mobile signing %s failed unexpectedly: %s", what, type(exc).__name__)
    return _error_response(LoginUnavailable(type(exc).__name__))


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def start_view(request: HttpRequest) -> HttpResponse:
    """``POST sign/mobile/start/`` ``{"request": id | "requests": [ids], "id_number",
    "mode": "push"|"qr", "next"?}`` → ``{"transaction", "mode", "expires_at",
    "poll_interval", "documents", "sp_ticket"?, "qr"?, "app_link"?}``."""
    try:
        data = read_body(request)
        tokens = data.get("requests", data.get("request"))
        # Counted before anything else: a batch too large never reaches MOI or the store.
        wanted = _tokens(tokens)
        id_number = optional_text(data, "id_number")
        if id_number is None:
            raise FieldRequired("id_number is required", fields=["id_number"])
        mode = optional_text(data, "mode") or "push"
        if mode not in mobile_source(get_services()).settings.modes or mode not in MODES:
            # The client's choice, not MOI's refusal: a 400, not the source's 503. WEB-01
            # ("web") is a login mode only: MOI's page answers a login callback.
            raise MalformedRequest("mode must be one of the enabled signing modes")
        next_url = optional_text(data, "next", limit=2000)
        started = start_mobile_signing(
            request,
            tokens=wanted,
            id_number=id_number,
            mode=mode,
            client_ip=client_ip(request),
        )
        interval = mobile_source(get_services()).settings.poll_interval
    except MoicaAuthError as exc:
        return _error_response(exc)
    except Exception as exc:  # a bug or a store failure: JSON, not an HTML 500
        return _unexpected(exc, "start")
    _keep_next(request, started.transaction, next_url)
    return JsonResponse(
        {**started_answer(started, poll_interval=interval), "documents": len(wanted)}
    )


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def status_view(request: HttpRequest) -> HttpResponse:
    """``POST sign/mobile/status/`` ``{"transaction"}`` → ``{"state": "pending",
    "retry_after"}``, ``{"ok": true, "applications": [...], "redirect"?}`` or a refusal."""
    handle: str | None = None
    try:
        handle = optional_text(read_body(request), "transaction")
        if handle is None:
            raise FieldRequired("transaction is required", fields=["transaction"])
        result = poll_mobile_signing(request, transaction=handle)
    except MoicaAuthError as exc:
        if exc.http_status != 503:  # final: the browser must start again
            _take_next(request, handle)
        return _error_response(exc)
    except Exception as exc:
        return _unexpected(exc, "status")
    if isinstance(result, MobilePending):
        pending = JsonResponse({"state": "pending", "retry_after": result.retry_after})
        pending["Retry-After"] = str(max(1, round(result.retry_after)))
        return pending
    answer: dict[str, Any] = {
        "ok": True,
        "applications": [
            {
                "application": a.application_id,
                "service": a.service,
                "timestamped": a.timestamp_time is not None,
            }
            for a in result
        ],
    }
    next_url = _take_next(request, handle)
    if next_url:
        answer["redirect"] = _safe_next(request, next_url)
    return JsonResponse(answer)
