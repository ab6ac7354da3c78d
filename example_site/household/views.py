"""電子戶籍謄本: issue signed transcripts (card + ID number); verify them (public).

Also the signed 「戶籍謄本申請」 (the citizen files the application with the card, signed
as RAW over the text's DigestInfo), and the public verify page checks either an
e-transcript or an exported evidence record (``moica-auth-evidence/1``), offline against
the demo's anchors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST
from django.views.generic.edit import FormView

from example_site.household.transcripts import (
    MAX_FILE_BYTES,
    TranscriptRejected,
    sign_transcript,
    verify_transcript,
)
from example_site.land.forms import TranscriptApplicationForm
from example_site.land.views import DemoSignFormMixin
from moica_auth.conf import app_settings
from moica_auth.decorators import moica_required
from moica_auth.exceptions import MoicaAuthError
from moica_auth.services import load_certificate_setting
from moica_auth.session import moica_from_request
from moica_auth.signing.conf import signing_settings
from moica_auth.signing.evidence import MAX_EVIDENCE_BYTES, verify_evidence

_DEFAULT_ADDRESS = "臺北市中正區範例里1鄰範例路1號"
_ADDRESSES: dict[str, str] = {
    "0000000000000022": "臺中市西屯區範例里5鄰大同路22號",
    "0000000000000033": "高雄市苓雅區範例里8鄰美麗街33號",
}


def _path_setting(name: str) -> Path:
    return Path(getattr(settings, name))


@lru_cache(maxsize=1)
def _office() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """The office's signing certificate and its PUBLIC TEST key (``example_site.demo``)."""
    cert = x509.load_pem_x509_certificate(_path_setting("HOUSEHOLD_OFFICE_CERT").read_bytes())
    key = serialization.load_pem_private_key(
        _path_setting("HOUSEHOLD_OFFICE_KEY").read_bytes(), password=None
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the household office key must be RSA")
    return cert, key


def _document(request: HttpRequest) -> dict[str, Any]:
    moica = moica_from_request(request)
    now = app_settings.now()
    return {
        "type": "household-registration-transcript",
        "title": "戶籍謄本（現戶部分）",
        "issued_at": now.isoformat(),
        "office": "範例戶政事務所 (TEST)",
        "address": _ADDRESSES.get(moica.card_serial, _DEFAULT_ADDRESS),
        "members": [{"name": moica.name, "relation": "戶長"}],
        "notice": "TEST DATA: signed with a public test key of the moica-auth demo.",
    }


@moica_required(fields=["id_number"])
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "household/index.html", {"document": _document(request)})


@moica_required(fields=["id_number"])
@require_POST
def transcript(request: HttpRequest) -> HttpResponse:
    cert, key = _office()
    data = sign_transcript(
        _document(request), certificate=cert, private_key=key, at=app_settings.now()
    )
    response = HttpResponse(data, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="household-transcript.json"'
    return response


class TranscriptApplicationView(DemoSignFormMixin, FormView):  # type: ignore[type-arg]
    """戶籍謄本申請, signed by the applicant with the card (RAW over the DigestInfo)."""

    template_name = "household/apply.html"
    form_class = TranscriptApplicationForm
    moica_fields = ("id_number",)
    signing_service = "戶籍謄本申請"
    signing_signature_type = "RAW"


_REASONS: dict[str, Promise] = {
    "too_large": _("The file is too large."),
    "not_a_transcript": _("This is not an e-transcript file."),
    "signature_invalid": _(
        "Signature check failed: the file was altered or its signature is broken."
    ),
    "untrusted_issuer": _("The issuer is not a trusted authority."),
    "issuer_not_valid": _(
        "The issuer's certificate was not valid when it signed, or is not valid now."
    ),
    "not_a_document_signer": _("The issuer's certificate may not sign documents."),
    "no_file": _("Choose a file."),
    "evidence_invalid": _("The evidence record does not verify."),
}


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """Public: upload a transcript file and see whether it is genuine and who issued it."""
    context: dict[str, Any] = {}
    if request.method == "POST" and "evidence" in request.FILES:
        context.update(_verify_evidence_upload(request))
    elif request.method == "POST":
        upload = request.FILES.get("transcript")
        try:
            if upload is None:
                raise TranscriptRejected("no_file")
            if upload.size is not None and upload.size > MAX_FILE_BYTES:
                raise TranscriptRejected("too_large")
            anchors = load_certificate_setting(app_settings.TRUST_ANCHORS)
            check = verify_transcript(
                upload.read(MAX_FILE_BYTES + 1), anchors=anchors, at=app_settings.now()
            )
        except TranscriptRejected as exc:
            context["error_code"] = exc.reason
            context["error_message"] = _REASONS[exc.reason]
        else:
            context["check"] = check
    status = 400 if "error_code" in context else 200
    return render(request, "household/verify.html", context, status=status)


def _verify_evidence_upload(request: HttpRequest) -> dict[str, Any]:
    """Check an uploaded evidence record offline, at its own decision time, against the
    demo's citizen-certificate anchors and its TSA root; bounded in size."""
    upload = request.FILES["evidence"]
    if upload.size is None or upload.size > MAX_EVIDENCE_BYTES:
        return {"error_code": "too_large", "error_message": _REASONS["too_large"]}
    data = upload.read(MAX_EVIDENCE_BYTES + 1)
    if len(data) > MAX_EVIDENCE_BYTES:
        return {"error_code": "too_large", "error_message": _REASONS["too_large"]}
    try:
        report = verify_evidence(
            data,
            anchors=load_certificate_setting(app_settings.TRUST_ANCHORS),
            tsa_anchors=signing_settings().tsa_anchors,
            intermediates=load_certificate_setting(app_settings.INTERMEDIATES),
            require_timestamp=True,
            tsa_intermediates=signing_settings().tsa_intermediates,
            at=app_settings.now(),  # the time-stamps are valid "now" on the demo's clock
        )
    except MoicaAuthError as exc:
        return {
            "error_code": "evidence_invalid",
            "error_message": _REASONS["evidence_invalid"],
            "error_field": exc.data.get("field"),
        }
    return {"evidence": report}
