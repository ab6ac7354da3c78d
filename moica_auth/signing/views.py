"""Django side of signing: a form submission becomes a signature request, and a card's
signature becomes a :class:`~moica_auth.models.SignedApplication`.

* :func:`start_signing` renders the form as the exact text to sign and stores a
  :class:`~moica_auth.models.SignatureRequest` bound to the user and the session;
* :func:`finish_signing` consumes the request atomically (single use: a second answer,
  even a valid one, is ``signing_request_reused``), then decides with
  :func:`moica_auth.signing.evidence.verify_signing` and stores the evidence;
* :class:`SignFormMixin` does both for a ``FormView``: a valid form shows the text to sign
  (``moica_auth/sign_confirm.html``), and a JSON POST of the HiPKI answer to the same URL
  completes it.

Every attempt is an audit entry: the request row's ``outcome`` becomes ``"ok"`` or the
refusal's error code, with the time and client address. Nothing logged carries a
signature or an ID number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

from moica_auth.conf import app_settings
from moica_auth.decorators import MoicaRequiredMixin
from moica_auth.exceptions import (
    MalformedRequest,
    MoicaAuthError,
    RequestTooLarge,
    SigningRequestExpired,
    SigningRequestReused,
    SigningRequestUnknown,
)
from moica_auth.hipki import client_messages
from moica_auth.models import SignatureRequest, SignedApplication
from moica_auth.services import get_services
from moica_auth.session import moica_from_request
from moica_auth.signing.channel import SigningChannel
from moica_auth.signing.conf import signing_settings, tsa_client
from moica_auth.signing.evidence import SignedResult, verify_signing
from moica_auth.signing.request import SignatureRequest as RequestText
from moica_auth.signing.request import build_request, signer_key
from moica_auth.templatetags.moica_auth import component_url

__all__ = ["SignFormMixin", "finish_signing", "start_signing"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def _session_hash(request: HttpRequest) -> str:
    key = request.session.session_key or ""
    return hashlib.sha256(b"moica_auth.signing.session\x00" + key.encode()).hexdigest()


def _client_ip(request: HttpRequest) -> str | None:
    from moica_auth.views import client_ip

    return client_ip(request)


def start_signing(
    request: HttpRequest,
    *,
    service: str,
    application_id: str,
    fields: Sequence[tuple[str, str]],
    signature_type: str = "PKCS7",
    document_sha256: str | None = None,
) -> SignatureRequest:
    """Store a signature request for the logged-in citizen; raises ``MoicaAuthError``."""
    moica = moica_from_request(request)
    user_id = getattr(request.user, "pk", None)
    if not moica.is_authenticated or not moica.fingerprint or user_id is None:
        raise SigningRequestUnknown("no citizen-certificate login in this session")
    config = signing_settings()
    if signature_type not in config.signature_types:
        raise MalformedRequest(f"signature type {signature_type} is not enabled")
    portal = app_settings.ORIGIN or request.build_absolute_uri("/").rstrip("/")
    rendered = build_request(
        portal=portal,
        service=service,
        application_id=application_id,
        fields=fields,
        signer_name=moica.name or "?",
        signer_key=signer_key(app_settings.HASH_KEY, moica.fingerprint),
        now=app_settings.now(),
        lifetime=config.lifetime,
        signature_type=signature_type,
        document_sha256=document_sha256,
        max_bytes=config.max_text_bytes,
    )
    return SignatureRequest.objects.create(
        token=secrets.token_urlsafe(24),
        user_id=user_id,
        session_hash=_session_hash(request),
        portal=rendered.portal,
        service=rendered.service,
        application_id=rendered.application_id,
        signature_type=rendered.signature_type,
        text=rendered.text,
        nonce=rendered.nonce,
        signer_key=rendered.signer.rsplit("key=", 1)[1],
        created_at=rendered.created_at,
        expires_at=rendered.expires_at,
        client_ip=_client_ip(request),
    )


def _as_text(row: SignatureRequest) -> RequestText:
    return RequestText(
        text=row.text,
        signature_type=row.signature_type,
        portal=row.portal,
        service=row.service,
        application_id=row.application_id,
        signer=row.text.split("\nsigner: ", 1)[1].split("\n", 1)[0],
        nonce=row.nonce,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def pending_rows(request: HttpRequest, token: str) -> QuerySet[SignatureRequest]:
    """The queryset of the request ``token`` of this user and session."""
    user_id = getattr(request.user, "pk", None)
    if user_id is None:
        raise SigningRequestUnknown("no logged-in user")
    return SignatureRequest.objects.filter(
        token=token, user_id=user_id, session_hash=_session_hash(request)
    )


def consume(request: HttpRequest, token: str) -> SignatureRequest:
    """Take the request out of ``pending`` atomically: the single-use guarantee."""
    rows = pending_rows(request, token)
    row = rows.first()
    if row is None:
        raise SigningRequestUnknown("no such signature request for this session")
    now = app_settings.now()
    taken = rows.filter(outcome=SignatureRequest.PENDING).update(outcome="deciding", decided_at=now)
    if taken != 1:
        raise SigningRequestReused("the signature request was already answered")
    row.refresh_from_db()
    return row


def finish_signing(
    request: HttpRequest,
    *,
    token: str,
    signature: str,
    signature_type: str,
    certificate: str | None,
) -> SignedApplication:
    """Decide a citizen's answer to a request; raises ``MoicaAuthError`` on any refusal."""
    if not isinstance(token, str) or not 8 <= len(token) <= 64:
        raise SigningRequestUnknown("malformed request id")
    row = consume(request, token)
    now = app_settings.now()
    try:
        result = decide(
            row, signature=signature, signature_type=signature_type, certificate=certificate, at=now
        )
    except MoicaAuthError as exc:
        refused(request, [row], exc, at=now)
        raise
    return store_signed(request, [(row, result)], at=now)[0]


def decide(
    row: SignatureRequest,
    *,
    signature: str,
    signature_type: str,
    certificate: str | None,
    at: Any,
    channel: SigningChannel | None = None,
) -> SignedResult:
    """Verify one answer to a consumed request (lifetime, then :func:`verify_signing`
    with the site's verifier and TSA); raises ``MoicaAuthError``."""
    if at >= row.expires_at:
        raise SigningRequestExpired("the signature request is past its lifetime")
    config = signing_settings()
    return verify_signing(
        request=_as_text(row),
        signature=signature,
        signature_type=signature_type,
        certificate=certificate,
        verifier=get_services().verifier,
        hash_key=app_settings.HASH_KEY,
        at=at,
        tsa=tsa_client(config),
        require_timestamp=config.require_timestamp,
        channel=channel,
    )


def refused(
    request: HttpRequest, rows: Sequence[SignatureRequest], exc: MoicaAuthError, *, at: Any
) -> None:
    """Record a refusal of consumed requests (the audit entry)."""
    SignatureRequest.objects.filter(pk__in=[row.pk for row in rows]).update(
        outcome=exc.code, decided_at=at, client_ip=_client_ip(request)
    )
    logger.info("signature refused: %s (requests %s)", exc.code, [row.pk for row in rows])


def store_signed(
    request: HttpRequest, decided: Sequence[tuple[SignatureRequest, SignedResult]], *, at: Any
) -> list[SignedApplication]:
    """Store accepted signatures as :class:`SignedApplication` rows, all or none."""
    out: list[SignedApplication] = []
    with transaction.atomic():
        for row, result in decided:
            SignatureRequest.objects.filter(pk=row.pk).update(
                outcome=SignatureRequest.OK, decided_at=at, client_ip=_client_ip(request)
            )
            out.append(
                SignedApplication.objects.create(
                    request=row,
                    user=row.user,
                    service=row.service,
                    application_id=row.application_id,
                    signer_name=result.login.citizen.name or "",
                    cert_fingerprint=result.fingerprint,
                    signed_at=at,
                    timestamp_time=result.timestamp_time,
                    evidence=result.evidence_json(),
                )
            )
    for application in out:
        logger.info("signed application %s (request %s)", application.pk, application.request_id)
    return out


def _json_body(request: HttpRequest) -> dict[str, Any]:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise RequestTooLarge("signature body too large")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedRequest("the body is not a JSON object")
    for key in ("request", "signature", "signature_type"):
        if not isinstance(data.get(key), str):
            raise MalformedRequest(f"{key} is missing")
    if data.get("certificate") is not None and not isinstance(data["certificate"], str):
        raise MalformedRequest("certificate must be base64 text")
    return data


def _mobile_signing_context(request: HttpRequest) -> dict[str, Any] | None:
    """The 「以行動自然人憑證簽章」 part of the confirmation page, or ``None`` when the
    mobile certificate is not configured. ``login_form`` tells the page which certificate
    the session logged in with (the signature must come from that one)."""
    from django.urls import reverse

    from moica_auth.templatetags.moica_auth import mobile_box

    box = mobile_box()
    if box is None:
        return None
    return {
        **box,
        "start_url": reverse("moica:sign-mobile-start"),
        "status_url": reverse("moica:sign-mobile-status"),
        "login_form": moica_from_request(request).form,
    }


class SignFormMixin(MoicaRequiredMixin):
    """For a ``FormView``: a valid form is shown as the text to sign; the HiPKI answer,
    POSTed as JSON (``{"request", "signature", "signature_type", "certificate"}``) to
    the same URL, becomes a :class:`SignedApplication` handed to :meth:`signed`.
    """

    signing_service: str = ""
    signing_signature_type: str = "PKCS7"
    signing_template_name: str = "moica_auth/sign_confirm.html"

    def get_application_id(self, form: Any) -> str:
        return f"{app_settings.now():%Y%m%d}-{secrets.token_hex(4).upper()}"

    def get_signed_redirect(self, application_id: str) -> str:
        """Where the browser goes once the application is signed (the ``redirect`` of the
        card's answer and of the mobile status answer); ``""``: stay on the page."""
        return ""

    def get_signing_fields(self, form: Any) -> list[tuple[str, str]]:
        """(label, value) in the form's order, as the citizen typed or chose them."""
        out: list[tuple[str, str]] = []
        for bound in form:
            value = form.cleaned_data.get(bound.name)
            choices = dict(getattr(bound.field, "choices", ()) or ())
            shown = choices.get(value, value)
            out.append((str(bound.label), "" if shown is None else str(shown)))
        return out

    def form_valid(self, form: Any) -> HttpResponse:
        request: HttpRequest = self.request  # type: ignore[attr-defined]
        try:
            row = start_signing(
                request,
                service=self.signing_service,
                application_id=self.get_application_id(form),
                fields=self.get_signing_fields(form),
                signature_type=self.signing_signature_type,
            )
        except MoicaAuthError as exc:
            return JsonResponse(exc.as_dict(), status=exc.http_status)
        return TemplateResponse(
            request,
            self.signing_template_name,
            {
                "signature_request": row,
                "hipki_request": _as_text(row).hipki_request(),
                "hipki_messages": client_messages(),
                "component_url": component_url(),
                "form": form,
                "mobile_signing": _mobile_signing_context(request),
                "signing_next": self.get_signed_redirect(row.application_id),
            },
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.content_type != "application/json":
            return super().post(request, *args, **kwargs)  # type: ignore[misc, no-any-return]
        try:
            data = _json_body(request)
            application = finish_signing(
                request,
                token=data["request"],
                signature=data["signature"],
                signature_type=data["signature_type"],
                certificate=data.get("certificate"),
            )
        except MoicaAuthError as exc:
            return JsonResponse(exc.as_dict(), status=exc.http_status)
        return self.signed(application)

    def signed(self, application: SignedApplication) -> HttpResponse:
        """The answer once signed, with :meth:`get_signed_redirect` as ``redirect``."""
        answer: dict[str, Any] = {
            "ok": True,
            "application": application.application_id,
            "service": application.service,
            "timestamped": application.timestamp_time is not None,
        }
        redirect = self.get_signed_redirect(application.application_id)
        if redirect:
            answer["redirect"] = redirect
        return JsonResponse(answer)
