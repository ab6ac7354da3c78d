"""Settings of a fresh deployment (file database from ``$MOICA_TEST_DB``, no anchors).

Used by ``tests/test_django_admin.py`` to run ``manage.py`` commands in a subprocess.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["MOICA_TEST_DB"]}
}
AUTHENTICATION_BACKENDS = ["moica_auth.backends.MoicaBackend"]
MOICA_AUTH_ORIGIN = "https://portal.example.gov.tw"
MOICA_AUTH_HASH_KEY = "fresh-deployment-hash-key-0123456789abcdef"
