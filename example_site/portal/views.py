"""Home page and the demo card control."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from example_site import runtime
from example_site.citizens import DEMO_CITIZENS

SERVICES = (
    (
        "labor_insurance:index",
        "勞保局 勞工保險投保查詢",
        "Labor insurance record",
        "憑證＋身分證字號＋出生日期",
        "Card + ID number + birth date",
    ),
    (
        "exit_restriction:index",
        "限制出境查詢",
        "Restricted from leaving the country",
        "憑證＋身分證字號",
        "Card + ID number",
    ),
    (
        "household:index",
        "電子戶籍謄本",
        "Household-registration e-transcript",
        "憑證＋身分證字號",
        "Card + ID number",
    ),
    (
        "household:verify",
        "驗證電子戶籍謄本（免登入）",
        "Verify an e-transcript (public)",
        "任何人",
        "Anyone",
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
        {"url": reverse(name), "zh": zh, "en": en, "needs_zh": nz, "needs_en": ne}
        for name, zh, en, nz, ne in SERVICES
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
