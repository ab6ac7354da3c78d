from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class PortalConfig(AppConfig):
    name = "example_site.portal"
    label = "example_portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(demo_state_check)


def demo_state_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when the demo PKI has not been written yet (a fresh clone): the portal runs,
    but no card login can succeed until it has trust anchors."""
    from django.conf import settings
    from django.db import DatabaseError

    from moica_auth.models import TrustAnchor

    if settings.MOICA_AUTH_TRUST_ANCHORS:
        return []
    try:
        if TrustAnchor.objects.exists():
            return []
    except DatabaseError:  # not migrated yet: migrate itself runs the checks
        pass
    return [
        checks.Warning(
            "No trust anchor: the example portal will refuse every card login.",
            hint="Run `make demo` (python -m example_site.demo) once to write the demo PKI "
            f"to {settings.STATE_DIR}, or `python example_site/manage.py moica_trust "
            "add-official` for the real MOICA roots.",
            id="example_site.W001",
        )
    ]
