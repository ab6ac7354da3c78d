"""The demo clock (``MOICA_AUTH_CLOCK``): real time, or a pinned start that then runs.

``MOICA_DEMO_NOW`` (ISO 8601, e.g. ``2026-01-15T00:00:00+00:00``) pins the moment the
process started; time then advances normally from there, so challenge TTLs and OCSP
freshness still behave. Tests pin it so they never depend on today's date.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

__all__ = ["now", "parse_now"]

_START_MONOTONIC = time.monotonic()


def parse_now(value: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text (a naive value is taken as UTC)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def now() -> datetime:
    """The demo's current time (aware, UTC)."""
    pinned = os.environ.get("MOICA_DEMO_NOW")
    if not pinned:
        return datetime.now(UTC)
    return parse_now(pinned) + timedelta(seconds=time.monotonic() - _START_MONOTONIC)
