from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "example_site.portal"
    label = "example_portal"
    default_auto_field = "django.db.models.BigAutoField"
