"""勞保局 labor-insurance lookup: needs the card, the ID number and the birth date."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from example_site.registry import record_for_certificate
from moica_auth.decorators import moica_required
from moica_auth.session import moica_from_request


@moica_required(fields=["id_number", "birth_date"])
def index(request: HttpRequest) -> HttpResponse:
    moica = moica_from_request(request)
    # The ID number and the birth date were verified against the registry at login; the
    # record is found by the registered certificate, so no ID number is kept anywhere.
    record = record_for_certificate(moica.card_serial)
    return render(request, "labor_insurance/index.html", {"record": record})
