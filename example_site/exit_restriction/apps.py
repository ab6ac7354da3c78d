from __future__ import annotations

from django.apps import AppConfig


class ExitRestrictionConfig(AppConfig):
    name = "example_site.exit_restriction"
    label = "example_exit_restriction"
    default_auto_field = "django.db.models.BigAutoField"
