"""URLs for the Django app tests: the moica endpoints plus protected demo views."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import View

from moica_auth.decorators import MoicaRequiredMixin, moica_required


@moica_required()
def card_only(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True, "name": request.moica.name})  # type: ignore[attr-defined]


@moica_required(fields=["id_number", "birth_date"])
def labor_insurance(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@moica_required(fields=["id_number"], max_age=300)
def fresh_only(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


class MixinView(MoicaRequiredMixin, View):
    moica_fields = ("birth_date",)

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


@moica_required(fields=["id_number"])
async def async_view(request: HttpRequest) -> HttpResponse:
    moica = request.moica  # type: ignore[attr-defined]
    return JsonResponse({"ok": True, "name": moica.name, "fields": sorted(moica.fields)})


class AsyncMixinView(MoicaRequiredMixin, View):
    moica_fields = ("id_number",)

    async def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


urlpatterns = [
    path("moica/", include("moica_auth.urls")),
    path("card-only/", card_only),
    path("labor/", labor_insurance),
    path("fresh/", fresh_only),
    path("mixin/", MixinView.as_view()),
    path("async/", async_view),
    path("async-mixin/", AsyncMixinView.as_view()),
]
