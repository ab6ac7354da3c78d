"""限制出境查詢: needs the card and the ID number."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from moica_auth.decorators import moica_required
from moica_auth.session import moica_from_request

# Demo data, keyed by the certificate's subject serialNumber: one citizen has a
# restriction (unpaid taxes), everyone else has none.
_RESTRICTIONS: dict[str, tuple[str, str, str]] = {
    "0000000000000022": ("財政部 北區國稅局", "欠稅", "Unpaid taxes"),
}


@moica_required(fields=["id_number"])
def index(request: HttpRequest) -> HttpResponse:
    moica = moica_from_request(request)
    restriction = _RESTRICTIONS.get(moica.card_serial)
    return render(request, "exit_restriction/index.html", {"restriction": restriction})
