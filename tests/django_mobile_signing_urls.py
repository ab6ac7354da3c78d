"""URLs for the mobile signing tests: the signing tests' pages, a long form (its text is
over MOI's 1024-character sign_data) and an attachments view that opens one signature
request per attachment digest (for BATSIGN)."""

from __future__ import annotations

import hashlib
import json

from django import forms
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from moica_auth.exceptions import MoicaAuthError
from moica_auth.signing.views import start_signing
from tests.django_signing_urls import LandDeclarationView
from tests.django_signing_urls import urlpatterns as signing_urlpatterns


class LongDeclarationForm(forms.Form):
    parcel = forms.CharField(label="土地標示", max_length=200)
    note = forms.CharField(label="備註", max_length=4000)


class LongDeclarationView(LandDeclarationView):
    form_class = LongDeclarationForm  # type: ignore[assignment]


@require_POST
def attachments(request: HttpRequest) -> JsonResponse:
    """``{"count": n}`` → one request per attachment of one application."""
    count = int(json.loads(request.body)["count"])
    tokens = []
    try:
        for index in range(min(count, 30)):
            row = start_signing(
                request,
                service="戶籍謄本申請附件",
                application_id="ATT-0001",
                fields=[("附件", f"{index + 1}/{count} 附件-{index + 1}.pdf")],
                document_sha256=hashlib.sha256(f"attachment {index}".encode()).hexdigest(),
            )
            tokens.append(row.token)
    except MoicaAuthError as exc:
        return JsonResponse(exc.as_dict(), status=exc.http_status)
    return JsonResponse({"requests": tokens})


urlpatterns = [
    *signing_urlpatterns,
    path("sign/long/", LongDeclarationView.as_view()),
    path("sign/attachments/", attachments),
]
