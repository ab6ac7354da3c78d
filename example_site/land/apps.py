from __future__ import annotations

from django.apps import AppConfig


class LandConfig(AppConfig):
    name = "example_site.land"
    label = "example_land"
    default_auto_field = "django.db.models.BigAutoField"
