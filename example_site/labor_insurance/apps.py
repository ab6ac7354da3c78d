from __future__ import annotations

from django.apps import AppConfig


class LaborInsuranceConfig(AppConfig):
    name = "example_site.labor_insurance"
    label = "example_labor_insurance"
    default_auto_field = "django.db.models.BigAutoField"
