"""HTTP endpoints of the card login (mounted under ``/moica/``, namespace ``moica``).

* ``GET session/``: the card login of this session (and a CSRF cookie);
* ``POST challenge/``: a fresh challenge bound to the session and the site;
* ``POST login/``: the signed challenge → verified citizen → Django login;
* ``POST logout/``;
* ``GET login-page/``: the page shell asking for a card login or a step-up.

Every refusal is a 4xx JSON ``{"ok": false, "code", "message", …}`` built from the
:class:`~moica_auth.exceptions.MoicaAuthError` raised; malformed input of any kind is a
4xx, never a 5xx and never a login. Request and response shapes: ``docs/protocol.md``.

The login runs, in this order: parse input → abuse limits → consume the challenge
(atomic, single use) → verify the token (signature, certificate, chain, revocation) →
personal data → identity binding (:class:`~moica_auth.backends.MoicaBackend`) →
``django.contrib.auth.login`` (rotates the session key) → audit and signals.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from django.contrib.auth import authenticate, login, logout
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render, resolve_url
from django.utils.decorators import decorator_from_middleware
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from moica_auth import signals
from moica_auth.backends import MoicaToken
from moica_auth.certificate import CitizenCertificate, load_certificate
from moica_auth.challenge import Challenge
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    AccountUnavailable,
    CsrfFailed,
    FieldRequired,
    LoginUnavailable,
    MalformedRequest,
    MoicaAuthError,
    NonceMismatch,
    RequestTooLarge,
    TooManyAttempts,
)
from moica_auth.models import LoginAttempt
from moica_auth.services import Services, get_services
from moica_auth.session import PENDING_KEY, SESSION_KEY, moica_from_request

__all__ = [
    "PERSONAL_FIELDS",
    "challenge_view",
    "client_ip",
    "login_page_view",
    "login_view",
    "logout_view",
    "session_view",
]

logger = logging.getLogger("moica_auth")

#: Personal fields a login may verify besides the card itself.
PERSONAL_FIELDS = ("id_number", "birth_date")
_SIGNATURE_TYPES = ("PKCS7", "PKCS1")
_TEXT_FIELDS = (
    "signature",
    "signature_type",
    "certificate",
    "card_sn",
    "nonce",
    "id_number",
    "birth_date",
    "next",
)
_BACKEND = "moica_auth.backends.MoicaBackend"


# --- helpers ----------------------------------------------------------------------------


_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])


class _JsonCsrfMiddleware(CsrfViewMiddleware):
    """Django's CSRF check, unchanged, answering a refusal as JSON ``403 csrf_failed``
    (the login endpoints are called by script, which cannot read Django's HTML page)."""

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


def _parse_fields(value: object) -> frozenset[str]:
    """``fields`` asked for by a step-up page: a list, or comma-separated text."""
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise MalformedRequest("fields must be a list of names")
    unknown = set(names) - set(PERSONAL_FIELDS)
    if unknown:
        raise MalformedRequest("unknown personal field requested")
    return frozenset(names)


@dataclass(frozen=True)
class LoginInput:
    """The login request, checked for shape (not yet for meaning)."""

    # repr=False: a repr of the request (a log line, a debug page, an error tracker) must
    # never show the full ID number, the birth date or the whole signature.
    signature: str = field(repr=False)
    signature_type: str
    certificate: str | None = field(repr=False)
    card_sn: str | None
    nonce: str
    id_number: str | None = field(repr=False)
    birth_date: str | None = field(repr=False)
    next: str | None
    fields: frozenset[str]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a key given twice (RFC 8259 §4: names SHOULD be
    unique; parsers disagree on which one wins, so a proxy or WAF in front of the site
    could see another request than this view). Like a form field sent twice."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedRequest("a JSON member was sent more than once")
    return out


def _read_body(request: HttpRequest) -> dict[str, Any]:
    limit = app_settings.MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise MalformedRequest("invalid Content-Length") from None
    if length > limit:
        raise RequestTooLarge(f"body of {length} bytes exceeds {limit}")
    content_type = request.content_type
    try:
        if content_type == "application/json":
            body = request.body
            if len(body) > limit:
                raise RequestTooLarge(f"body exceeds {limit} bytes")
            try:
                data = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                raise MalformedRequest("body is not valid JSON") from None
            if not isinstance(data, dict):
                raise MalformedRequest("body must be a JSON object")
            return data
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            if request.FILES:
                raise MalformedRequest("files are not accepted")
            out: dict[str, Any] = {}
            for key in request.POST:
                values = request.POST.getlist(key)
                if len(values) != 1:
                    raise MalformedRequest("a field was sent more than once")
                out[key] = values[0]
            return out
    except (SuspiciousOperation, BadRequest, MultiPartParserError, OSError) as exc:
        # RequestDataTooBig, TooManyFieldsSent, broken multipart, an aborted upload.
        raise MalformedRequest(f"unreadable body: {type(exc).__name__}") from None
    raise MalformedRequest("content type must be application/json or a form")


def parse_login(request: HttpRequest) -> LoginInput:
    """Check the login request's shape; raise ``MalformedRequest``/``FieldRequired``."""
    data = _read_body(request)
    values: dict[str, str | None] = {}
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is None or value == "":
            values[name] = None
        elif isinstance(value, str):
            values[name] = value.strip()
        else:
            raise MalformedRequest(f"{name} must be a string")
    if values["signature"] is None:
        raise FieldRequired("signature is required", fields=["signature"])
    if values["nonce"] is None:
        raise FieldRequired("nonce is required", fields=["nonce"])
    signature_type = (values["signature_type"] or "PKCS7").upper()
    if signature_type not in _SIGNATURE_TYPES:
        raise MalformedRequest("signature_type must be PKCS7 or PKCS1")
    if signature_type == "PKCS1" and values["certificate"] is None:
        raise FieldRequired("a PKCS1 signature needs the certificate", fields=["certificate"])
    return LoginInput(
        signature=values["signature"],
        signature_type=signature_type,
        certificate=values["certificate"],
        card_sn=values["card_sn"],
        nonce=values["nonce"],
        id_number=values["id_number"],
        birth_date=values["birth_date"],
        next=values["next"],
        fields=_parse_fields(data.get("fields")),
    )


def _posted_fingerprint(data: LoginInput) -> str | None:
    if data.certificate is None:
        return None
    cert = load_certificate(data.certificate)
    return cert.fingerprint(hashes.SHA256()).hex()


def _verify_personal_data(
    services: Services, citizen: CitizenCertificate, data: LoginInput
) -> tuple[frozenset[str], str | None]:
    """Verify the personal fields; return (verified field names, ID-number HMAC)."""
    from moica_auth.identity.id_number import id_number_hash, parse_id_number
    from moica_auth.identity.roc_date import parse_birth_date
    from moica_auth.identity.verifiers import PersonalData, verify_personal_data

    posted = {name for name in PERSONAL_FIELDS if getattr(data, name) is not None}
    required = frozenset(app_settings.REQUIRED_FIELDS | data.fields | posted)
    missing = sorted(required - posted)
    if missing:
        raise FieldRequired("personal data required", fields=missing)
    if not required:
        return frozenset(), None
    id_number = parse_id_number(data.id_number) if data.id_number is not None else None
    today: date = services.clock().date()
    birth_date = (
        parse_birth_date(data.birth_date, today=today) if data.birth_date is not None else None
    )
    verified = verify_personal_data(
        citizen=citizen,
        data=PersonalData(id_number=id_number, birth_date=birth_date),
        required=required,
        verifiers=services.personal_verifiers,
    )
    id_hash = None
    if id_number is not None and "id_number" in verified and _binds_id_number(services):
        id_hash = id_number_hash(id_number, key=app_settings.HASH_KEY)
    return frozenset(verified), id_hash


def _binds_id_number(services: Services) -> bool:
    """Whether a verified ID number may key the account (``CitizenIdentity.id_hash``).

    Only when a verifier other than :class:`CertificateLast4Verifier` confirms the
    number (a registry, the MOICA confirmation service): every verifier providing a
    posted field runs and none may fail, so such a verifier confirmed it. The last-four
    check alone shows only that the number is *consistent* with the card; binding on it
    would hand the account of whoever owns that number to anyone whose own card ends
    in the same four characters.
    """
    from moica_auth.identity.verifiers import CertificateLast4Verifier

    return any(
        "id_number" in getattr(verifier, "provides", ())
        and not isinstance(verifier, CertificateLast4Verifier)
        for verifier in services.personal_verifiers
    )


def _check_signed_nonce(signed: bytes | None, challenge: Challenge) -> None:
    """The PKCS7 randomNonce signed attribute (PKCS #9, 1.2.840.113549.1.9.25.3) must be
    the challenge nonce.

    The page hands HiPKI the nonce as its base64url text; whether the component signs
    those characters or the 32 bytes they encode is not documented, so both encodings of
    *this* challenge's nonce are accepted (the nonce is also inside the signed tbs, so
    neither form weakens the binding). Absent or different: ``nonce_mismatch``.
    """
    if signed is None or not (
        hmac.compare_digest(signed, challenge.nonce_bytes())
        or hmac.compare_digest(signed, challenge.nonce.encode("ascii"))
    ):
        raise NonceMismatch("the signed nonce is missing or not the issued one")


def _revocation_json(result: Any, now: datetime) -> dict[str, Any] | None:
    if result is None:
        return None
    checked = getattr(result, "checked_at", None) or now
    return {
        "status": str(getattr(result, "status", "")),
        "source": str(getattr(result, "source", "") or ""),
        "checked_at": checked.isoformat(),
    }


def _record_session(
    request: HttpRequest,
    verified: Any,
    fields: frozenset[str],
    previous: dict[str, Any],
    now: datetime,
) -> None:
    citizen: CitizenCertificate = verified.citizen
    stamp = now.isoformat()
    merged: dict[str, str] = {}
    if previous.get("user_pk") == str(request.user.pk):
        old = previous.get("fields")
        if isinstance(old, dict):
            merged.update({k: v for k, v in old.items() if k in PERSONAL_FIELDS})
    merged.update({name: stamp for name in fields})
    leaf = verified.chain.leaf
    request.session[SESSION_KEY] = {
        "fields": merged,
        "auth_time": stamp,
        "fingerprint": citizen.fingerprint_sha256,
        "user_pk": str(request.user.pk),
        "serial": citizen.serial_number_hex,
        "issuer_key_id": citizen.authority_key_id,
        "card_serial": citizen.card_serial,
        "name": citizen.name,
        "form": citizen.form,
        "cert": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode(),
        # The intermediates the path went through (the SignedData may have carried them),
        # so a re-check builds the same path. Public data, like the leaf.
        "intermediates": [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in verified.chain.chain[1:-1]
        ],
        "revocation": _revocation_json(verified.revocation, now),
        "last_check": stamp,
    }
    request.session.pop(PENDING_KEY, None)


def _audit(
    *,
    outcome: str,
    ip: str | None,
    citizen: CitizenCertificate | None,
    verified: Any = None,
    user: Any = None,
    evidence: tuple[str, str, str] | None = None,
) -> None:
    revocation = getattr(verified, "revocation", None) if verified is not None else None
    row = LoginAttempt(
        outcome=outcome[:64],
        cert_fingerprint=citizen.fingerprint_sha256 if citizen else "",
        cert_serial=citizen.serial_number_hex[:64] if citizen else "",
        issuer=citizen.issuer[:500] if citizen else "",
        revocation_source=str(getattr(revocation, "source", "") or "")[:16],
        revocation_checked_at=getattr(revocation, "checked_at", None),
        client_ip=ip,
        user=user,
    )
    if evidence is not None:
        row.signed_content, row.signature, row.certificate = evidence
    row.save()


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
        services.limiter.check(ip=ip)
        services.limiter.challenge_issued(ip=ip)
        # The challenge is bound to the session key, so the session must exist now;
        # a non-empty session is also what makes SessionMiddleware send the cookie.
        request.session[PENDING_KEY] = True
        if not request.session.session_key:
            request.session.save()
        challenge = services.challenges.issue(session_id=request.session.session_key or "")
    except MoicaAuthError as exc:
        return _error_response(exc)
    except Exception as exc:  # a bug or a session-store failure: JSON, not an HTML 500
        logger.error("moica challenge failed unexpectedly: %s", type(exc).__name__)
        return _error_response(LoginUnavailable(type(exc).__name__))
    return JsonResponse(
        {
            "nonce": challenge.nonce,
            "tbs": challenge.tbs,
            "tbs_encoding": "NONE",
            "expires_at": challenge.as_json()["expires_at"],
            "hash_algorithm": "SHA256",
            "signature_type": "PKCS7",
        }
    )


@never_cache
@csrf_exempt
@_json_csrf_protect
@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    """``POST login/``: verify the signed challenge and log the citizen in.

    Every outcome is JSON (or, for a successful form post, a redirect): a refusal is the
    :class:`MoicaAuthError` raised; anything unexpected (a bug, a database error) is
    ``503 login_unavailable``, and a login already made in this request is undone.
    """
    ip = client_ip(request)
    logged_in = False
    try:
        return _login(request, ip)
    except _LoggedIn as done:
        logged_in = True
        exc: BaseException = done.__cause__ or done
    except Exception as unexpected:
        exc = unexpected
    # Only the type is logged: the message or traceback may quote the request.
    logger.error("moica login failed unexpectedly: %s", type(exc).__name__)
    if logged_in:
        try:
            logout(request)
        except Exception:
            logger.error("moica logout after a failed login failed; clearing the session")
            request.session.clear()  # saved without the login by SessionMiddleware
    error = LoginUnavailable(type(exc).__name__)
    _on_failure(request, error, ip=ip, citizen=None, fingerprint=None)  # 5xx: counts for nobody
    return _error_response(error)


class _LoggedIn(Exception):
    """An unexpected error after ``login()``: the view must log the session out again."""


def _login(request: HttpRequest, ip: str | None) -> HttpResponse:
    citizen: CitizenCertificate | None = None
    verified_fingerprint: str | None = None
    try:
        services = get_services()
    except MoicaAuthError as exc:
        logger.error("moica login unavailable: %s", exc.code)
        return _error_response(exc)
    try:
        # A locked address is refused before its body is even parsed.
        services.limiter.check(ip=ip)
        data = parse_login(request)
        redirect_to = _safe_next(request, data.next)
        services.limiter.check(ip=None, fingerprint=_posted_fingerprint(data))
        challenge = services.challenges.consume(
            nonce=data.nonce,
            session_id=request.session.session_key or "",
            origin=request.headers.get("Origin"),
        )
        now = services.clock()
        try:
            verified = services.verifier.verify(
                content=challenge.tbs_bytes(),
                signature=data.signature,
                signature_type=data.signature_type,
                certificate=data.certificate,
                expected_nonce=None,  # checked below: two encodings are accepted
                expected_card_number=data.card_sn,
                at=now,
            )
        except MoicaAuthError:
            raise
        except Exception as exc:
            # Fail closed on anything the verifier did not anticipate; never a 500 for
            # attacker-chosen bytes. Only the exception type is logged.
            logger.exception("moica verifier raised %s", type(exc).__name__)
            raise MalformedRequest("the signed token could not be processed") from exc
        if data.signature_type == "PKCS7":
            _check_signed_nonce(verified.signature.nonce, challenge)
        citizen = verified.citizen
        # Only a verified signature counts against the certificate: otherwise anyone
        # could lock a citizen out by posting their (public) certificate with garbage.
        verified_fingerprint = citizen.fingerprint_sha256
        services.limiter.check(ip=None, fingerprint=verified_fingerprint)
        fields, id_hash = _verify_personal_data(services, citizen, data)
        token = MoicaToken.create(
            citizen=citizen, fields=fields, id_hash=id_hash, verified=verified
        )
        previous = request.session.get(SESSION_KEY)
        previous = previous if isinstance(previous, dict) else {}
        if not request.user.is_authenticated:
            previous = {}
        user = authenticate(request, moica_token=token)
        if user is None:
            raise AccountUnavailable("no active user for this citizen")
    except MoicaAuthError as exc:
        _on_failure(request, exc, ip=ip, citizen=citizen, fingerprint=verified_fingerprint)
        return _error_response(exc)

    try:
        # One savepoint: a database error here rolls back the login's own writes and
        # leaves an outer transaction (ATOMIC_REQUESTS) usable for the logout and audit.
        with transaction.atomic():
            _complete_login(request, user, verified, fields, previous, now, services)
            leaf_der = verified.signature.certificate.public_bytes(serialization.Encoding.DER)
            _audit(
                outcome=LoginAttempt.OK,
                ip=ip,
                citizen=citizen,
                verified=verified,
                user=user,
                evidence=(challenge.tbs, data.signature, base64.b64encode(leaf_der).decode()),
            )
    except Exception as exc:
        raise _LoggedIn from exc
    logger.info("moica login ok fingerprint=%s", citizen.fingerprint_sha256[:16])
    _send(signals.moica_login_succeeded, request=request, code="ok", citizen=citizen)
    if _wants_json(request):
        return JsonResponse({"ok": True, "redirect": redirect_to})
    return HttpResponseRedirect(redirect_to)


def _complete_login(
    request: HttpRequest,
    user: Any,
    verified: Any,
    fields: frozenset[str],
    previous: dict[str, Any],
    now: datetime,
    services: Services,
) -> None:
    """``django.contrib.auth.login`` and what the session and the limiter keep of it."""
    # login() rotates the session key; when the session belonged to another user it
    # flushes it, so nothing of theirs (verified fields) survives.
    login(request, user, backend=_BACKEND)
    _record_session(request, verified, fields, previous, now)
    if fields >= frozenset(PERSONAL_FIELDS):
        # Only a login that proved every personal field clears the card's failures.
        services.limiter.succeeded(fingerprint=verified.citizen.fingerprint_sha256)


def _send(signal: Any, **kwargs: Any) -> None:
    """Send ``signal``; a failing receiver is logged (by type) and does not change the
    answer, which is already decided (``Signal.send_robust``)."""
    for receiver, result in signal.send_robust(sender=login_view, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "moica signal receiver %s raised %s",
                getattr(receiver, "__qualname__", receiver),
                type(result).__name__,
            )


def _on_failure(
    request: HttpRequest,
    exc: MoicaAuthError,
    *,
    ip: str | None,
    citizen: CitizenCertificate | None,
    fingerprint: str | None,
) -> None:
    # Server-side trouble (5xx: an OCSP outage, Redis down, misconfiguration) is not the
    # client's attempt and must not lock a whole office behind one NAT address. A missing
    # field is no guess at the card holder's data, so it does not count against the card.
    if exc.http_status < 500 and not isinstance(exc, TooManyAttempts):
        card = None if isinstance(exc, FieldRequired) else fingerprint
        try:
            get_services().limiter.failed(ip=ip, fingerprint=card)
        except MoicaAuthError:
            logger.warning("moica rate limit store unavailable while counting a failure")
    logger.info(
        "moica login refused code=%s fingerprint=%s",
        exc.code,
        fingerprint[:16] if fingerprint else "-",
    )
    try:
        # A refusal by a lock before any signature verified costs the sender nothing:
        # only the first per address and lock period gets a row, so a locked client
        # cannot fill the table (the log line above records every one).
        if (
            not isinstance(exc, TooManyAttempts)
            or citizen is not None
            or (get_services().limiter.first_lock_refusal(ip=ip))
        ):
            _audit(outcome=exc.code, ip=ip, citizen=citizen)
    except Exception:  # the refusal stands even if the audit row cannot be written
        logger.error("moica audit row for a refusal could not be written")
    _send(signals.moica_login_failed, request=request, code=exc.code, citizen=citizen)


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
        fields = _parse_fields(request.GET.get("fields", ""))
    except MalformedRequest:
        fields = frozenset()
    moica = moica_from_request(request)
    context = {
        "fields": [f for f in PERSONAL_FIELDS if f in fields],
        "field_labels": {"id_number": _("ID number"), "birth_date": _("Birth date")},
        "next": _safe_next(request, request.GET.get("next")),
        "step_up": moica.is_authenticated,
        "moica": moica,
    }
    response = render(request, "moica_auth/login.html", context)
    # The HiPKI bridge is a cross-origin popup that must keep ``window.opener``; Django's
    # default ``same-origin`` opener policy would sever it (SecurityMiddleware only adds
    # its default when the header is absent).
    response["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    return response
