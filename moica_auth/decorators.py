"""Protect views with a card login and, when needed, freshly verified personal data.

``@moica_required(fields=["birth_date"], max_age=600)`` and :class:`MoicaRequiredMixin`
let a view through only when the session has a card login (``request.session["moica"]``)
that

* is not older than ``max_age`` seconds (a fresh card signature, like OpenID Connect's
  ``max_age`` / ``auth_time``, OIDC Core §3.1.2.1), when given; and
* has verified each of ``fields`` (``"id_number"``, ``"birth_date"``).

Otherwise a browser is redirected to the login page (``MOICA_AUTH_LOGIN_URL``, default
``moica:login-page``) with ``?fields=<only the missing ones>&next=<this URL>`` — a
*step-up*: the citizen signs again and types only what is missing. A JSON request gets
``401`` (no card login) or ``403`` (step-up needed) with ``{"ok": false, "code", "message",
"fields", "login_url"}``.

Both work on ``async def`` views (and async class-based views): the check, which reads
the session and the user from the database, then runs in a thread (``sync_to_async``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.utils.translation import gettext as _

from moica_auth.conf import app_settings
from moica_auth.session import moica_from_request

__all__ = ["MoicaRequiredMixin", "missing_requirements", "moica_required"]

_ViewFunc = TypeVar("_ViewFunc", bound=Callable[..., HttpResponse])

_KNOWN_FIELDS = frozenset({"id_number", "birth_date"})


def _check_fields(fields: Iterable[str]) -> tuple[str, ...]:
    names = tuple(fields)
    unknown = set(names) - _KNOWN_FIELDS
    if unknown:
        raise ValueError(f"unknown personal fields {sorted(unknown)}")
    return names


def missing_requirements(
    request: HttpRequest, *, fields: Iterable[str] = (), max_age: float | None = None
) -> tuple[bool, list[str]] | None:
    """``None`` when the session satisfies the requirements; else ``(logged_in, missing)``.

    A field verified before ``now - max_age`` counts as missing, as does every field when
    the card signature itself is older than ``max_age``.
    """
    wanted = _check_fields(fields)
    moica = moica_from_request(request)
    if not moica.is_authenticated:
        return False, list(wanted)
    now = app_settings.now()
    oldest = now - timedelta(seconds=max_age) if max_age is not None else None
    if oldest is not None and (moica.auth_time is None or moica.auth_time < oldest):
        return True, list(wanted)
    missing = []
    for name in wanted:
        when = moica.verified_at(name)
        if when is None or (oldest is not None and when < oldest):
            missing.append(name)
    return None if not missing else (True, missing)


def _refuse(request: HttpRequest, logged_in: bool, missing: list[str]) -> HttpResponse:
    login_url = resolve_url(app_settings.LOGIN_URL)
    query: dict[str, str] = {"fields": ",".join(missing)} if missing else {}
    query["next"] = request.get_full_path()
    target = f"{login_url}?{urlencode(query)}"
    accept = request.headers.get("Accept", "")
    if request.content_type == "application/json" or "application/json" in accept:
        if not logged_in:
            body = {
                "ok": False,
                "code": "login_required",
                "message": _("Log in with your citizen digital certificate."),
            }
        else:
            body = {
                "ok": False,
                "code": "step_up_required",
                "message": _("Confirm your identity with your card to continue."),
            }
        body.update({"fields": missing, "login_url": target})
        return JsonResponse(body, status=403 if logged_in else 401)
    return HttpResponseRedirect(target)


def _refusal(
    request: HttpRequest, fields: Iterable[str], max_age: float | None
) -> HttpResponse | None:
    """The redirect / JSON refusal for ``request``, or ``None`` when it may pass."""
    missing = missing_requirements(request, fields=fields, max_age=max_age)
    return _refuse(request, *missing) if missing is not None else None


def moica_required(
    fields: Iterable[str] = (), max_age: float | None = None
) -> Callable[[_ViewFunc], _ViewFunc]:
    """Decorator: require a card login with ``fields`` verified within ``max_age`` s.

    Works on sync and ``async def`` views."""
    wanted = _check_fields(fields)

    def decorator(view: _ViewFunc) -> _ViewFunc:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def awrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                refusal = await sync_to_async(_refusal)(request, wanted, max_age)
                if refusal is not None:
                    return refusal
                return await view(request, *args, **kwargs)  # type: ignore[no-any-return]

            return awrapped  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refusal = _refusal(request, wanted, max_age)
            if refusal is not None:
                return refusal
            return view(request, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


class MoicaRequiredMixin:
    """Class-based views: set ``moica_fields`` and ``moica_max_age`` (seconds)."""

    moica_fields: Iterable[str] = ()
    moica_max_age: float | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "view_is_async", False):
            return self._adispatch(request, *args, **kwargs)
        refusal = _refusal(request, self.moica_fields, self.moica_max_age)
        if refusal is not None:
            return refusal
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    async def _adispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # An async view (``View.view_is_async``): dispatch must return a coroutine.
        refusal = await sync_to_async(_refusal)(request, self.moica_fields, self.moica_max_age)
        if refusal is not None:
            return refusal
        return await super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]
