"""Home page and the demo card control."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from example_site import runtime
from example_site.citizens import DEMO_CITIZENS

SERVICES = (
    # (URL name, service, what its login asks for)
    (
        "labor_insurance:index",
        _("Labor insurance record"),
        _("Card + ID number + birth date"),
    ),
    (
        "exit_restriction:index",
        _("Restricted from leaving the country"),
        _("Card + ID number"),
    ),
    (
        "household:index",
        _("Household-registration e-transcript"),
        _("Card + ID number"),
    ),
    (
        "land:declaration",
        _("Online land-registration declaration (signed with the card)"),
        _("Card"),
    ),
    (
        "household:apply",
        _("Apply for a household-registration transcript (signed with the card)"),
        _("Card + ID number"),
    ),
    (
        "land:applications",
        _("My signed applications"),
        _("Card"),
    ),
    (
        "household:verify",
        _("Verify an e-transcript (public)"),
        _("Anyone"),
    ),
)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    server = runtime.card_server
    cards = []
    for person in DEMO_CITIZENS:
        state = None
        if server is not None and person.slug in server.cards:
            if server.is_locked(person.slug):
                state = "locked"
            else:
                state = f"{server.pin_tries_left(person.slug)}"
        cards.append({"person": person, "tries": state})
    services = [
        {"url": reverse(name), "name": label, "needs": needs} for name, label, needs in SERVICES
    ]
    return render(request, "portal/home.html", {"cards": cards, "services": services})


@require_POST
def insert_card(request: HttpRequest) -> HttpResponse:
    """Put another demo card into the virtual reader (demo control, same process)."""
    server = runtime.card_server
    slug = request.POST.get("card", "")
    if server is not None:
        if slug == "":
            server.remove()
        elif slug in server.cards:
            server.insert(slug)
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return HttpResponseRedirect(target)
