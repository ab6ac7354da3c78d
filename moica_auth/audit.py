"""Audit retention for :class:`~moica_auth.models.LoginAttempt` rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from moica_auth.conf import app_settings
from moica_auth.models import LoginAttempt

__all__ = ["prune"]


def prune(*, days: int | None = None, now: datetime | None = None) -> int:
    """Delete attempts older than ``days`` (default ``MOICA_AUTH_AUDIT_RETENTION_DAYS``).

    Returns the number of rows deleted. ``days`` of 0 or less keeps everything.
    """
    keep = app_settings.AUDIT_RETENTION_DAYS if days is None else days
    if keep <= 0:
        return 0
    cutoff = (now or app_settings.now()) - timedelta(days=keep)
    deleted, _ = LoginAttempt.objects.filter(created_at__lt=cutoff).delete()
    return deleted
