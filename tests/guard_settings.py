"""Settings for the malformed-body tests under gunicorn: the test settings, the moica
endpoints, ``/i18n/`` and the admin. ``GUARD=0`` in the environment leaves the
site-wide :class:`~moica_auth.request_guard.RequestBodyGuardMiddleware` out, so the
moica endpoints are shown to refuse on their own."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import MIDDLEWARE as _BASE_MIDDLEWARE

ROOT_URLCONF = "tests.guard_urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
MIDDLEWARE = (
    ["moica_auth.request_guard.RequestBodyGuardMiddleware", *_BASE_MIDDLEWARE]
    if os.environ.get("GUARD", "1") == "1"
    else list(_BASE_MIDDLEWARE)
)
MOICA_AUTH_ORIGIN = "http://127.0.0.1"
