"""限制出境查詢: needs the card and the ID number."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from moica_auth.decorators import moica_required
from moica_auth.session import moica_from_request

# Demo data, keyed by the certificate's subject serialNumber: one citizen has a
# restriction (unpaid taxes), everyone else has none.
_RESTRICTIONS: dict[str, dict[str, Promise]] = {
    "0000000000000022": {
        "authority": _("National Taxation Bureau of the Northern Area, Ministry of Finance"),
        "reason": _("Unpaid taxes"),
    },
}


@moica_required(fields=["id_number"])
def index(request: HttpRequest) -> HttpResponse:
    moica = moica_from_request(request)
    restriction = _RESTRICTIONS.get(moica.card_serial)
    return render(request, "exit_restriction/index.html", {"restriction": restriction})
