"""Signals sent by the login endpoint, and the receivers that keep caches fresh.

* ``moica_login_succeeded(sender, request, code, citizen)``: after
  ``django.contrib.auth.login``; ``code`` is ``"ok"``, ``citizen`` the verified
  :class:`~moica_auth.certificate.CitizenCertificate`.
* ``moica_login_failed(sender, request, code, citizen)``: after a refusal; ``code`` is the
  error code (:mod:`moica_auth.exceptions`); ``citizen`` is ``None`` unless the signature
  and certificate were verified before the refusal (e.g. a personal-data mismatch).

Receivers must not log whole signatures or ID numbers; neither is passed to them.
"""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from moica_auth.conf import PREFIX

__all__ = ["moica_login_failed", "moica_login_succeeded"]

moica_login_succeeded = Signal()
moica_login_failed = Signal()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_: Any) -> None:
    # The services cache is built from settings; any MOICA_AUTH_* change (tests,
    # override_settings) or a SECRET_KEY change (derived HASH_KEY) invalidates it.
    if setting.startswith(PREFIX) or setting == "SECRET_KEY":
        from moica_auth.services import reset_services

        reset_services()


def _anchors_changed(**_: Any) -> None:
    from moica_auth.services import reset_services

    reset_services()


def connect_model_signals() -> None:
    """Invalidate the effective trust store whenever a TrustAnchor row changes."""
    from moica_auth.models import TrustAnchor

    post_save.connect(_anchors_changed, sender=TrustAnchor, dispatch_uid="moica_anchor_saved")
    post_delete.connect(_anchors_changed, sender=TrustAnchor, dispatch_uid="moica_anchor_deleted")
