"""``RequestBodyGuardMiddleware``: a hostile request body is a 4xx, never a 500.

Django raises from the first read of ``request.POST`` / ``request.FILES`` when the body
cannot be parsed: ``BadRequest`` for a form post with a charset other than UTF-8
(``application/x-www-form-urlencoded; charset=utf-16``), ``TooManyFieldsSent`` /
``RequestDataTooBig`` (``SuspiciousOperation``), ``MultiPartParserError`` for a multipart
body with no, an empty or an absurd boundary, oversized part headers. Whoever reads it
first gets the exception: often ``CsrfViewMiddleware`` (it only catches
``UnreadablePostError``), and then Django's default error views, which are CSRF-decorated
and read it again, so the exception escapes Django and the WSGI server answers its own
500 page.

This middleware reads the form body once, up front, for every ``POST`` with a form
content type, and answers what cannot be parsed itself: JSON ``{"ok": false, "code":
"malformed_request", …}`` (400; ``request_too_large``, 413, for ``RequestDataTooBig``) on
the ``moica`` endpoints or when the client asks for JSON, a plain-text 400 otherwise.
Put it first in ``MIDDLEWARE``, before ``CsrfViewMiddleware``::

    MIDDLEWARE = [
        "moica_auth.request_guard.RequestBodyGuardMiddleware",
        "django.middleware.security.SecurityMiddleware",
        ...
    ]
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.urls import Resolver404, resolve

from moica_auth.exceptions import MalformedRequest, MoicaAuthError, RequestTooLarge
from moica_auth.forms import BODY_ERRORS

__all__ = ["RequestBodyGuardMiddleware", "body_refusal", "unreadable_body"]

logger = logging.getLogger("moica_auth")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def unreadable_body(request: HttpRequest) -> BaseException | None:
    """Read ``request.POST`` and ``request.FILES`` once; the exception they raised on this
    body (one of :data:`moica_auth.forms.BODY_ERRORS`), or ``None`` when they parse."""
    if request.method != "POST" or request.content_type not in _FORM_TYPES:
        return None
    try:
        request.POST  # noqa: B018 - parsing is the point
        request.FILES  # noqa: B018
    except BODY_ERRORS as exc:
        return exc
    return None


def _wants_json(request: HttpRequest) -> bool:
    if "application/json" in request.headers.get("Accept", ""):
        return True
    try:
        return resolve(request.path_info).namespace == "moica"
    except Resolver404:
        return False
    except Exception:  # an answer must still be given: plain text
        return False


def body_refusal(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 4xx answer to a body that raised ``exc`` when parsed."""
    error: MoicaAuthError = (
        RequestTooLarge("body too large")
        if isinstance(exc, RequestDataTooBig)
        else MalformedRequest(f"unreadable body: {type(exc).__name__}")
    )
    logger.info("request body refused: %s (%s)", error.code, type(exc).__name__)
    if _wants_json(request):
        body = {key: error.as_dict()[key] for key in ("ok", "code", "message")}
        return JsonResponse(body, status=error.http_status)
    if error.http_status == 413:
        return HttpResponse("Request body too large.", status=413, content_type="text/plain")
    return HttpResponseBadRequest("Malformed request body.", content_type="text/plain")


class RequestBodyGuardMiddleware:
    """Refuse an unparseable form body with a 4xx before anything else reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        exc = unreadable_body(request)
        if exc is not None:
            return body_refusal(request, exc)
        return self.get_response(request)
