from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MoicaAuthConfig(AppConfig):
    name = "moica_auth"
    label = "moica_auth"
    verbose_name = _("Citizen certificate login")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: system-check registration and receivers
        # that invalidate the cached services when settings or trust anchors change.
        from moica_auth import checks, signals  # noqa: F401
        from moica_auth.signing import checks as signing_checks  # noqa: F401

        signals.connect_model_signals()
