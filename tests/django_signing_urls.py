"""URLs for the signing tests: the moica endpoints, the admin, and a form signed with the card."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import include, path
from django.views.generic import FormView

from moica_auth.signing.views import SignFormMixin


class LandDeclarationForm(forms.Form):
    parcel = forms.CharField(label="土地標示", max_length=200)
    share = forms.CharField(label="權利範圍", max_length=20)
    kind = forms.ChoiceField(label="登記原因", choices=[("sale", "買賣"), ("gift", "贈與")])
    note = forms.CharField(label="備註", required=False, widget=forms.Textarea)


class LandDeclarationView(SignFormMixin, FormView):  # type: ignore[type-arg]
    form_class = LandDeclarationForm
    template_name = "moica_auth/login.html"
    signing_service = "土地登記線上聲明"


class RawDeclarationView(LandDeclarationView):
    signing_signature_type = "RAW"


urlpatterns = [
    path("moica/", include("moica_auth.urls")),
    path("admin/", admin.site.urls),
    path("sign/land/", LandDeclarationView.as_view()),
    path("sign/land-raw/", RawDeclarationView.as_view()),
]
