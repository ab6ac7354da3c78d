from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MoicaAuthConfig(AppConfig):
    name = "moica_auth"
    label = "moica_auth"
    verbose_name = _("Citizen certificate login")
    default_auto_field = "django.db.models.BigAutoField"
