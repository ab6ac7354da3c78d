"""Settings of the site ``benchmarks/login.py`` drives (benchmark only; its URLs and
the baseline views are in :mod:`benchmarks.django_urls`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from moica_auth.testing.pki import FIXED_TIME

ORIGIN = "http://testserver"
#: The username of the existing user the baseline logs in.
BASELINE_USER = "bench-baseline"

_START = FIXED_TIME + timedelta(days=1)
_T0 = monotonic()


def clock() -> datetime:
    """``MOICA_AUTH_CLOCK``: real elapsed time from a moment the test PKI's cards cover."""
    return _START + timedelta(seconds=monotonic() - _T0)


def settings(*, anchors: list[str], intermediates: list[str]) -> dict[str, Any]:
    """Keyword arguments for ``settings.configure()``: the test suite's stack (SQLite in
    memory, database sessions) plus the card login on the test PKI."""
    return {
        "SECRET_KEY": "benchmark-only-not-secret",
        "DEBUG": False,
        "USE_TZ": True,
        "TIME_ZONE": "Asia/Taipei",
        "LANGUAGE_CODE": "zh-hant",
        "LANGUAGES": [("zh-hant", "繁體中文"), ("en", "English")],
        "ALLOWED_HOSTS": ["testserver"],
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "moica_auth",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.locale.LocaleMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "moica_auth.middleware.MoicaMiddleware",
        ],
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "ROOT_URLCONF": "benchmarks.django_urls",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "AUTHENTICATION_BACKENDS": [
            "moica_auth.backends.MoicaBackend",
            "django.contrib.auth.backends.ModelBackend",
        ],
        "LOGGING_CONFIG": None,
        "MOICA_AUTH_ORIGIN": ORIGIN,
        "MOICA_AUTH_TRUST_ANCHORS": anchors,
        "MOICA_AUTH_INTERMEDIATES": intermediates,
        "MOICA_AUTH_REVOCATION": None,
        "MOICA_AUTH_CLOCK": "benchmarks.django_settings.clock",
        "MOICA_AUTH_HASH_KEY": b"benchmark-hash-key-0123456789abc!",
        "MOICA_AUTH_VERIFIERS": ["moica_auth.identity.verifiers.CertificateLast4Verifier"],
        # One client address makes every login: the per-address challenge budget must
        # not be what the benchmark measures.
        "MOICA_AUTH_RATE_LIMIT": {"ip_challenges": 10**9, "ip_failures": 10**9},
        "MOICA_AUTH_STORE_PREFIX": "moica-bench:",
    }
