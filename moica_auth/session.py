"""What a card login leaves in the Django session, and how views read it back.

``request.session["moica"]`` holds (all JSON-serialisable, no secrets, no full ID number):

* ``fields``: ``{field name: ISO time it was verified}`` (``"id_number"``, ``"birth_date"``);
* ``auth_time``: ISO time of the last card signature;
* ``fingerprint``, ``serial`` (certificate serial, hex), ``issuer_key_id`` (the leaf's
  AuthorityKeyIdentifier, which tells MOICA G2 from G3), ``card_serial``, ``name``,
  ``form`` (``"card"``/``"mobile"``);
* ``cert``: the signing certificate (base64 DER; it is public) and ``intermediates``
  (base64 DER, the path's CA certificates below the anchor) for revocation re-checks;
* ``revocation``: ``{"status", "source", "checked_at"}`` of the last check, or ``None``
  when revocation checking is off; ``last_check``: ISO time of the last check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.http import HttpRequest

__all__ = ["PENDING_KEY", "SESSION_KEY", "AnonymousMoica", "MoicaIdentity", "moica_from_request"]

SESSION_KEY = "moica"
#: Set when a challenge is issued so the session exists (and has a key to bind to).
PENDING_KEY = "moica_pending"


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class MoicaIdentity:
    """The card login of the current session (``request.moica``)."""

    name: str
    card_serial: str
    fingerprint: str
    auth_time: datetime | None
    fields: dict[str, datetime] = field(default_factory=dict)
    form: str = "card"
    revocation: dict[str, Any] | None = None

    is_authenticated = True

    def verified_at(self, name: str) -> datetime | None:
        """When the personal field ``name`` was last verified, or ``None``."""
        return self.fields.get(name)


class AnonymousMoica:
    """``request.moica`` when the session has no card login."""

    is_authenticated = False
    name = ""
    card_serial = ""
    fingerprint = ""
    auth_time: datetime | None = None
    fields: dict[str, datetime] = {}  # noqa: RUF012 - read-only, never mutated
    form = ""
    revocation: dict[str, Any] | None = None

    def verified_at(self, name: str) -> datetime | None:
        return None

    def __bool__(self) -> bool:
        return False


def moica_from_request(request: HttpRequest) -> MoicaIdentity | AnonymousMoica:
    """The card login of an authenticated session, else :class:`AnonymousMoica`."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if user is None or session is None or not user.is_authenticated:
        return AnonymousMoica()
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return AnonymousMoica()
    fields: dict[str, datetime] = {}
    raw_fields = data.get("fields")
    if isinstance(raw_fields, dict):
        for name, when in raw_fields.items():
            parsed = parse_time(when)
            if isinstance(name, str) and parsed is not None:
                fields[name] = parsed
    revocation = data.get("revocation")
    return MoicaIdentity(
        name=str(data.get("name") or ""),
        card_serial=str(data.get("card_serial") or ""),
        fingerprint=str(data.get("fingerprint") or ""),
        auth_time=parse_time(data.get("auth_time")),
        fields=fields,
        form=str(data.get("form") or "card"),
        revocation=revocation if isinstance(revocation, dict) else None,
    )
