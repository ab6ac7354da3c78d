"""Signed applications of the demo portal: 土地登記線上聲明 and the citizen's own records.

The declaration is a ``FormView`` with :class:`~moica_auth.signing.views.SignFormMixin`:
a valid form is shown as the exact text the card signs; the browser client
(``moica-sign.js``) POSTs the card's answer back to the same URL; a verified signature
becomes a :class:`~moica_auth.models.SignedApplication` with its evidence record, which
the citizen can open and download (``/land/applications/<id>/``).
"""

from __future__ import annotations

from typing import Any

from django.forms import BooleanField
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from django.views.generic.edit import FormView

from example_site.land.forms import LandDeclarationForm
from moica_auth.decorators import moica_required
from moica_auth.models import SignedApplication
from moica_auth.signing.views import SignFormMixin

LAND_SERVICE = "土地登記線上聲明"


class DemoSignFormMixin(SignFormMixin):
    """Signs a demo form; once signed, the page goes to the application's record."""

    def get_signing_fields(self, form: Any) -> list[tuple[str, str]]:
        fields = super().get_signing_fields(form)
        # A ticked box is signed as a word the citizen reads, not Python's "True".
        return [
            (label, _("Yes") if isinstance(bound.field, BooleanField) else value)
            for (label, value), bound in zip(fields, form, strict=True)
        ]

    def get_signed_redirect(self, application_id: str) -> str:
        # Signed with the card or the phone: the answer sends the browser here.
        return reverse("land:application", args=[application_id])


class DeclarationView(DemoSignFormMixin, FormView):  # type: ignore[type-arg]
    """土地登記線上聲明: signed as PKCS#7 over the text with the card, or with the phone
    (PKCS#1 over the same text, /moica/sign/mobile/) after a login with the phone."""

    template_name = "land/declaration.html"
    form_class = LandDeclarationForm
    signing_service = LAND_SERVICE
    signing_signature_type = "PKCS7"


def _own_application(request: HttpRequest, application_id: str) -> SignedApplication:
    """The logged-in user's application, or 404 (never someone else's)."""
    if len(application_id) > 200:
        raise Http404
    application = (
        SignedApplication.objects.select_related("request")
        .filter(user_id=request.user.pk, application_id=application_id)
        .first()
    )
    if application is None:
        raise Http404
    return application


@moica_required()
@require_GET
def application(request: HttpRequest, application_id: str) -> HttpResponse:
    record = _own_application(request, application_id)
    return render(
        request,
        "land/application.html",
        {"application": record, "signed_text": record.request.text},
    )


@moica_required()
@require_GET
def evidence(request: HttpRequest, application_id: str) -> HttpResponse:
    """The evidence record (``moica-auth-evidence/1``) for the citizen's own archive."""
    record = _own_application(request, application_id)
    response = HttpResponse(record.evidence, content_type="application/json; charset=utf-8")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in record.application_id)
    response["Content-Disposition"] = f'attachment; filename="evidence-{safe[:80]}.json"'
    return response


@moica_required()
@require_GET
def applications(request: HttpRequest) -> HttpResponse:
    rows = SignedApplication.objects.filter(user_id=request.user.pk).order_by("-signed_at")[:50]
    return render(request, "land/applications.html", {"applications": rows})
