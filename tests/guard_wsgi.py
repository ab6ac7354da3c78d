"""WSGI application of :mod:`tests.guard_settings`, served by gunicorn in the tests."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.guard_settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
