"""``MoicaMiddleware``: ``request.moica`` and periodic revocation re-checks of sessions.

* ``request.moica`` is the card login of the session (a lazily built
  :class:`~moica_auth.session.MoicaIdentity`, or :class:`~moica_auth.session.AnonymousMoica`).
* Every ``MOICA_AUTH_RECHECK_INTERVAL`` seconds the session's signing certificate (kept in
  the session: it is public) is validated again (RFC 5280 §6) with revocation (RFC 6960 /
  RFC 5280 §6.3). A certificate revoked, suspended (certificateHold) or expired since the
  login logs the user out. When no status can be obtained the session continues and the
  next check is due after another interval (the login itself failed closed already); an
  unexpected exception (a bug) logs the user out.

The middleware is sync and async capable (Django "Asynchronous support" for middleware)
and must come after ``SessionMiddleware`` and ``AuthenticationMiddleware``; it raises
``ImproperlyConfigured`` otherwise, as ``RemoteUserMiddleware`` does.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from cryptography import x509
from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from moica_auth.checks import AUTH_MW, MIDDLEWARE_PATH, SESSION_MW
from moica_auth.conf import app_settings
from moica_auth.exceptions import (
    CrlInvalid,
    MoicaAuthError,
    OcspInvalid,
    RevocationStale,
    RevocationUnavailable,
    StoreUnavailable,
)
from moica_auth.session import SessionRecord, moica_from_request

__all__ = ["MoicaMiddleware", "recheck_session"]

logger = logging.getLogger("moica_auth")

#: Errors after which a session must end: the certificate is no longer acceptable.
# Only "the status cannot be established right now" keeps a session through a failed
# re-check; every other refusal (revoked, suspended, expired, a policy or profile the
# admin has since tightened, an anchor since removed, …) ends it.
_INCONCLUSIVE = (
    RevocationUnavailable,
    RevocationStale,
    CrlInvalid,
    OcspInvalid,
    StoreUnavailable,
)


def recheck_session(request: HttpRequest) -> bool:
    """Re-check the session certificate when due; return ``False`` if it logged out."""
    interval = app_settings.RECHECK_INTERVAL
    record = SessionRecord.read(request.session) if interval > 0 else None
    # The session is checked first so anonymous requests never load the user.
    if record is None or not request.user.is_authenticated:
        return True
    now = app_settings.now()
    last = record.last_checked()
    if last is not None and now - last < timedelta(seconds=interval):
        return True
    from moica_auth.login import revocation_of
    from moica_auth.services import get_services

    try:
        der = base64.b64decode(record.cert, validate=True)
        intermediates = [
            x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
            for item in record.intermediates
        ]
        _, result = get_services().verifier.check_certificate(
            certificate=der, intermediates=intermediates, at=now
        )
    except (binascii.Error, ValueError):
        logger.warning("moica session certificate unreadable; logging out")
        logout(request)
        return False
    except _INCONCLUSIVE as exc:
        # Status unknown (responder down, stale CRL): keep the session, try again later.
        logger.warning("moica session re-check inconclusive: %s", exc.code)
        record.rechecked(now=now).write(request.session)
        return True
    except MoicaAuthError as exc:
        logger.info("moica session ended by re-check: %s", exc.code)
        logout(request)
        return False
    except Exception as exc:
        # A bug, not an outage: it may be this very certificate that triggers it, so
        # fail closed (log out) rather than keep a session nobody could re-check, and
        # rather than answer every request of the session with a 500.
        logger.error("moica session re-check failed unexpectedly: %s", type(exc).__name__)
        logout(request)
        return False
    summary = revocation_of(result, now=now)
    record.rechecked(now=now, revocation=summary.as_json() if summary else None).write(
        request.session
    )
    return True


class MoicaMiddleware:
    """Attach ``request.moica`` and re-check the session certificate's status."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]],
    ) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._check_order()

    @staticmethod
    def _check_order() -> None:
        middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
        if MIDDLEWARE_PATH not in middleware:
            return  # instantiated directly (tests, custom stacks): checked per request
        ours = middleware.index(MIDDLEWARE_PATH)
        for needed in (SESSION_MW, AUTH_MW):
            if needed not in middleware or middleware.index(needed) > ours:
                raise ImproperlyConfigured(
                    f"{MIDDLEWARE_PATH} requires {needed} before it in MIDDLEWARE."
                )

    def _process(self, request: HttpRequest, *, eager: bool = False) -> None:
        if not hasattr(request, "user") or not hasattr(request, "session"):
            raise ImproperlyConfigured(
                f"{MIDDLEWARE_PATH} requires {SESSION_MW} and {AUTH_MW} before it in MIDDLEWARE."
            )
        recheck_session(request)
        if eager:
            # Async stack: build it here, in a thread, because reading the session and
            # the user queries the database, which an async view must not do directly.
            moica = moica_from_request(request)
            request.moica = moica  # type: ignore[attr-defined]
        else:
            request.moica = SimpleLazyObject(lambda: moica_from_request(request))  # type: ignore[attr-defined]

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        self._process(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        await sync_to_async(self._process)(request, eager=True)
        response = self.get_response(request)
        assert not isinstance(response, HttpResponse)  # noqa: S101 - async chain
        return await response
