"""Settings of the example e-government portal (a DEMO: never deploy these settings).

Read from the environment:

* ``MOICA_AUTH_ORIGIN``: the URL the browser uses (default ``http://127.0.0.1:8000``);
  challenges are bound to it, so it must match exactly.
* ``MOICA_AUTH_REDIS_URL``: Redis for challenges, rate limits and revocation caches
  (default: in-process stores, one server process only).
* ``MOICA_AUTH_COMPONENT_URL``: the HiPKI local component the browser client talks to
  (default the real one, ``http://localhost:61161``; the demo points it at its virtual card).
* ``MOICA_DEMO_STATE``: the folder ``example_site.demo`` writes the demo PKI's anchors and
  the household office's test key to (default ``example_site/var/state``).
* ``MOICA_DEMO_DB``: the SQLite file (default ``example_site/var/db.sqlite3``).
* ``MOICA_DEMO_NOW``: pins the demo clock (see :mod:`example_site.clock`).
* ``MOICA_DEMO_TSA_URL``: the demo's local time-stamp authority (set by
  ``example_site.demo``); with it, signed applications carry an RFC 3161 time-stamp.
* ``MOICA_AUTH_MOBILE_API_URL``, ``MOICA_AUTH_MOBILE_SERVICE_ID``,
  ``MOICA_AUTH_MOBILE_AES_KEY`` (base64): MOI's SP API for the mobile citizen
  certificate; ``make demo`` sets them to its virtual SP API unless they are set.
  ``MOICA_AUTH_MOBILE_POLL_INTERVAL`` (seconds) is honoured below 4 only for a loopback
  (virtual) API. ``MOICA_AUTH_MOBILE_MODES`` (comma-separated, default
  ``push,qr,mweb2app``; the demo adds ``web``) and ``MOICA_AUTH_MOBILE_WEB_URL`` (MOI's
  WEB-01 host) as well.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = BASE_DIR / "var"
STATE_DIR = Path(os.environ.get("MOICA_DEMO_STATE", str(VAR_DIR / "state")))

# A demo secret (the demo is not a deployment); real portals read it from a secret store.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-site-demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "moica_auth",
    "example_site.portal",
    "example_site.labor_insurance",
    "example_site.exit_restriction",
    "example_site.household",
    "example_site.land",
]

MIDDLEWARE = [
    # First: an unparseable form body is a 4xx before CSRF (or anything) reads it.
    "moica_auth.request_guard.RequestBodyGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "moica_auth.middleware.MoicaMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "moica_auth.backends.MoicaBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "example_site.urls"
WSGI_APPLICATION = "example_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "example_site.portal.context.portal",
            ]
        },
    }
]

DB_PATH = Path(os.environ.get("MOICA_DEMO_DB", str(VAR_DIR / "db.sqlite3")))
# SQLite creates the file but not its folder; example_site/var/ is not in git, so a fresh
# clone's `manage.py migrate` would fail with "unable to open database file" without this.
DB_PATH.parent.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DB_PATH),
        # The threaded demo server writes sessions concurrently: wait for the lock
        # instead of failing, and take it up front (Django 5.1+ transaction_mode).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

# zh-Hant first, English second. The portal's msgids are English; its zh-Hant catalogue
# is example_site/locale (the library's own is moica_auth/locale).
LANGUAGE_CODE = "zh-hant"
LANGUAGES = [("zh-hant", "繁體中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Asia/Taipei"
USE_TZ = True

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "moica:login-page"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

SESSION_COOKIE_HTTPONLY = True
# Django's default COOP "same-origin" severs window.opener for the HiPKI popup
# (http://localhost:61161/popupForm), which then cannot post the signature back.
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin-allow-popups"
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# --- moica-auth -----------------------------------------------------------------------

MOICA_AUTH_ORIGIN = os.environ.get("MOICA_AUTH_ORIGIN", "http://127.0.0.1:8000")
MOICA_AUTH_REDIS_URL = os.environ.get("MOICA_AUTH_REDIS_URL") or None
MOICA_AUTH_COMPONENT_URL = os.environ.get("MOICA_AUTH_COMPONENT_URL", "http://localhost:61161")
# Its own secret (>= 32 bytes), so rotating SECRET_KEY does not orphan identity bindings.
MOICA_AUTH_HASH_KEY = os.environ.get(
    "MOICA_AUTH_HASH_KEY", "example-site-demo-hash-key-not-secret-0123456789"
)
MOICA_AUTH_TRUST_ANCHORS = (
    [str(STATE_DIR / "anchors.pem")] if (STATE_DIR / "anchors.pem").is_file() else []
)
if not MOICA_AUTH_TRUST_ANCHORS:
    # A fresh clone has no demo state until `make demo` (python -m example_site.demo) has
    # run once. `migrate` and `runserver` must still work: the portal then starts, refuses
    # every card login (no anchor: the verifier fails closed), and the portal's own check
    # example_site.W001 says how to get anchors. Anchors added to the database with
    # `manage.py moica_trust add-official` are still used.
    SILENCED_SYSTEM_CHECKS = ["moica_auth.E003"]
MOICA_AUTH_INTERMEDIATES = (
    [str(STATE_DIR / "intermediates.pem")] if (STATE_DIR / "intermediates.pem").is_file() else []
)
MOICA_AUTH_VERIFIERS = [
    "moica_auth.identity.verifiers.CertificateLast4Verifier",
    "example_site.registry.LaborInsuranceRegistryVerifier",
]
MOICA_AUTH_REVOCATION = {
    "order": ["ocsp", "crl"],
    "soft_fail": False,
    "timeout": 5.0,
    # The CRL index starts empty: fetch a certificate's CRL on the first miss (the MOICA
    # G2 CA names no OCSP responder, so its status comes from the GRCA CRL).
    "fetch_on_miss": True,
}
MOICA_AUTH_CLOCK = "example_site.clock.now"
# Signed applications (土地登記線上聲明, 戶籍謄本申請): time-stamped by the demo's local
# TEST TSA, which example_site.demo starts and announces in MOICA_DEMO_TSA_URL.
_TSA_URL = os.environ.get("MOICA_DEMO_TSA_URL")
_TSA_ROOT = STATE_DIR / "tsa-root.pem"
MOICA_AUTH_SIGNING = (
    {"TSA_URL": _TSA_URL, "TSA_ANCHORS": [str(_TSA_ROOT)], "REQUIRE_TIMESTAMP": True}
    if _TSA_URL and _TSA_ROOT.is_file()
    else {}
)
# The mobile citizen certificate (行動自然人憑證): on when its API is configured.
if os.environ.get("MOICA_AUTH_MOBILE_API_URL"):
    MOICA_AUTH_MOBILE = {
        "api_url": os.environ["MOICA_AUTH_MOBILE_API_URL"],
        "service_id": os.environ.get("MOICA_AUTH_MOBILE_SERVICE_ID", ""),
        "aes_key": {"env": "MOICA_AUTH_MOBILE_AES_KEY"},  # never in this file or a log
        # "web" (WEB-01) needs the callback URL registered with MOI: off unless asked for.
        "modes": (os.environ.get("MOICA_AUTH_MOBILE_MODES") or "push,qr,mweb2app").split(","),
        "poll_interval": float(os.environ.get("MOICA_AUTH_MOBILE_POLL_INTERVAL") or 4),
    }
    if os.environ.get("MOICA_AUTH_MOBILE_WEB_URL"):
        MOICA_AUTH_MOBILE["web_url"] = os.environ["MOICA_AUTH_MOBILE_WEB_URL"]
MOICA_AUTH_LOGIN_REDIRECT = "/"

# The household office's document-signing certificate and key (PUBLIC TEST KEY).
HOUSEHOLD_OFFICE_CERT = STATE_DIR / "household-office.pem"
HOUSEHOLD_OFFICE_KEY = STATE_DIR / "household-office-key.pem"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "moica_auth": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "example_site": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
