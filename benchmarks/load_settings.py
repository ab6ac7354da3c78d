"""Settings of ``benchmarks/load.py``: the example portal on PostgreSQL, as deployed.

Everything of :mod:`example_site.settings`, plus: PostgreSQL from ``MOICA_BENCH_PG_*``
(persistent connections, as a gunicorn deployment keeps them), sessions in Redis when
``MOICA_BENCH_SESSIONS=cache``, abuse limits raised so one load generator on 127.0.0.1 is
not treated as an attacker, and quiet logs.
"""

from __future__ import annotations

import os

from example_site.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("MOICA_BENCH_PG_DB", "moica"),
        "USER": os.environ.get("MOICA_BENCH_PG_USER", "postgres"),
        "HOST": os.environ.get("MOICA_BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("MOICA_BENCH_PG_PORT", "5432"),
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }
}

# ``--sessions cache`` keeps Django's sessions in the same Redis (Django's RedisCache):
# the sessions table is the largest share of a login's database round trips.
if os.environ.get("MOICA_BENCH_SESSIONS") == "cache":
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["MOICA_AUTH_REDIS_URL"],
            "KEY_PREFIX": "bench-sessions",
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cache"

# One client address sends every request of the run.
MOICA_AUTH_RATE_LIMIT = {"ip_challenges": 10**9, "ip_failures": 10**9}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
