"""URLs of the site ``benchmarks/login.py`` drives (benchmark only).

The card login endpoints come from ``moica_auth.urls``, unchanged. Beside them, two bare
views give the baseline: Django's own ``login()`` of an existing user, on the same
middleware stack, session engine and database (``POST /bench/django-login/``), and the
page that hands a fresh client its CSRF cookie (``GET /bench/csrf/``).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from benchmarks.django_settings import BASELINE_USER


@never_cache
@ensure_csrf_cookie
@require_GET
def csrf_view(request: HttpRequest) -> JsonResponse:
    """A fresh visitor's first page: it only sets the CSRF cookie."""
    return JsonResponse({"ok": True})


@never_cache
@require_POST
def django_login_view(request: HttpRequest) -> JsonResponse:
    """Django's own ``login()`` of an existing user (no password check: hashing one is
    tuned to be slow, and the card login has no password either)."""
    user = get_user_model()._default_manager.get_by_natural_key(BASELINE_USER)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"ok": True, "redirect": "/"})


urlpatterns = [
    path("moica/", include("moica_auth.urls")),
    path("bench/csrf/", csrf_view),
    path("bench/django-login/", django_login_view),
]
