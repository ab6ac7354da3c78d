"""Home page and the demo card control."""

from __future__ import annotations

import json

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


# --- error views ------------------------------------------------------------------------
# Django's defaults are CSRF-decorated: on a POST they read request.POST again, and for a
# body Django cannot parse (a form post in charset=utf-16) that raises inside the error
# handler and escapes Django as the WSGI server's own 500 page. These read nothing from
# the request but its path and Accept header, use no template, and cannot raise.

_ERROR_TEXT = {
    400: ("malformed_request", "請求格式錯誤 / Bad request"),
    403: ("forbidden", "禁止存取 / Forbidden"),
    404: ("not_found", "找不到頁面 / Page not found"),
    500: ("server_error", "伺服器錯誤 / Server error"),
}


def _error_page(request: HttpRequest, status: int) -> HttpResponse:
    code, text = _ERROR_TEXT[status]
    try:
        wants_json = "application/json" in request.headers.get("Accept", "") or (
            request.path.startswith("/moica/")
        )
    except Exception:
        wants_json = False
    if wants_json:
        body = json.dumps({"ok": False, "code": code, "message": text}, ensure_ascii=False)
        return HttpResponse(body, status=status, content_type="application/json")
    html = (
        '<!doctype html><html lang="zh-Hant"><meta charset="utf-8">'
        f'<title>{status}</title><h1>{status}</h1><p>{text}</p><p><a href="/">首頁 / Home</a></p>'
    )
    return HttpResponse(html, status=status, content_type="text/html; charset=utf-8")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _error_page(request, 500)
