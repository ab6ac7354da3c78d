from __future__ import annotations

from django.apps import AppConfig


class HouseholdConfig(AppConfig):
    name = "example_site.household"
    label = "example_household"
    default_auto_field = "django.db.models.BigAutoField"
