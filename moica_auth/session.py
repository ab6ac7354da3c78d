"""What a card login leaves in the Django session, and how views read it back.

``request.session["moica"]`` holds (all JSON-serialisable, no secrets, no full ID number):

* ``fields``: ``{field name: ISO time it was verified}`` (``"id_number"``, ``"birth_date"``);
* ``auth_time``: ISO time of the last card signature;
* ``fingerprint``, ``serial`` (certificate serial, hex), ``issuer_key_id`` (the leaf's
  AuthorityKeyIdentifier, which tells MOICA G2 from G3), ``card_serial``, ``name``,
  ``form`` (``"card"``/``"mobile"``), ``channel`` (how the signature arrived:
  ``"hipki"`` for the card through the HiPKI component, ``"mobile-sp-api"`` for the
  mobile citizen certificate through MOI's SP API);
* ``cert``: the signing certificate (base64 DER; it is public) and ``intermediates``
  (base64 DER, the path's CA certificates below the anchor that the trust store does not
  hold, i.e. those the signature carried) for revocation re-checks;
* ``revocation``: ``{"status", "source", "checked_at"}`` of the last check, or ``None``
  when revocation checking is off; ``last_check``: ISO time of the last check.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.http import HttpRequest

__all__ = [
    "PENDING_KEY",
    "SESSION_KEY",
    "AnonymousMoica",
    "MoicaIdentity",
    "SessionRecord",
    "moica_from_request",
]

SESSION_KEY = "moica"
#: Where sessions written before the record carried ``channel`` kept it (beside the
#: record; only mobile logins set it). Read once for such a session, never written.
LEGACY_CHANNEL_KEY = "moica_auth_channel"
#: The channel of a record written before records carried one and without the legacy
#: key: the card through HiPKI was the only other channel then.
LEGACY_DEFAULT_CHANNEL = "hipki"
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


#: The personal fields a record may hold verification times for.
_PERSONAL_FIELDS = ("id_number", "birth_date")


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@dataclass(frozen=True)
class SessionRecord:
    """The card-login record of a session: the one type that writes, reads and rewrites
    ``request.session["moica"]`` (the login writes it, :class:`MoicaIdentity` is read from
    it, the middleware's revocation re-check rewrites it). Layout: the module docstring.
    """

    user_pk: str
    fingerprint: str
    auth_time: str
    last_check: str
    fields: Mapping[str, str] = field(default_factory=dict)
    serial: str = ""
    issuer_key_id: str | None = None
    card_serial: str | None = None
    name: str | None = None
    form: str = "card"
    cert: str = ""
    intermediates: tuple[str, ...] = ()
    revocation: Mapping[str, str] | None = None
    channel: str = LEGACY_DEFAULT_CHANNEL

    @classmethod
    def from_login(
        cls,
        verified: Any,
        *,
        user_pk: str,
        fields: Iterable[str],
        previous: SessionRecord | None,
        revocation: Mapping[str, str] | None,
        now: datetime,
        configured: Callable[[x509.Certificate], bool] | None = None,
        channel: str = LEGACY_DEFAULT_CHANNEL,
    ) -> SessionRecord:
        """The record of a login just verified (``verified``: a ``VerifiedLogin``).

        Fields verified earlier in the session of the same user (``previous``) keep their
        time; those verified now get ``now``. ``configured`` tells the path's CA
        certificates that the verifier's trust store holds (``TrustStore.holds``): the
        re-check finds those there, so the record keeps only the others (carried by the
        signature), about halving what every request of the session decodes."""
        citizen = verified.citizen
        stamp = now.isoformat()
        merged: dict[str, str] = {}
        if previous is not None and previous.user_pk == user_pk:
            merged.update({k: v for k, v in previous.fields.items() if k in _PERSONAL_FIELDS})
        merged.update({name: stamp for name in fields})
        chain = verified.chain
        return cls(
            user_pk=user_pk,
            fingerprint=citizen.fingerprint_sha256,
            auth_time=stamp,
            last_check=stamp,
            fields=merged,
            serial=citizen.serial_number_hex,
            issuer_key_id=citizen.authority_key_id,
            card_serial=citizen.card_serial,
            name=citizen.name,
            form=citizen.form,
            cert=_der_b64(chain.leaf),
            # The intermediates the path went through that the trust store does not hold
            # (the SignedData carried them), so a re-check builds the same path. Public
            # data, like the leaf. A configured intermediate since removed from the
            # store then fails the re-check, which ends the session (fail closed).
            intermediates=tuple(
                _der_b64(c) for c in chain.chain[1:-1] if configured is None or not configured(c)
            ),
            revocation=dict(revocation) if revocation is not None else None,
            channel=channel,
        )

    @classmethod
    def read(cls, session: Any) -> SessionRecord | None:
        """The record in ``session``, or ``None`` when there is none (or it is not one)."""
        data = session.get(SESSION_KEY)
        if not isinstance(data, dict):
            return None
        raw_fields = data.get("fields")
        fields = (
            {k: v for k, v in raw_fields.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(raw_fields, dict)
            else {}
        )
        revocation = data.get("revocation")
        raw_intermediates = data.get("intermediates")
        # A session written before records carried the channel (kept beside the record
        # by the mobile login then) is still read: a live login is not ended by an
        # upgrade, and the legacy key says exactly what the field now says.
        channel = data.get("channel")
        if not isinstance(channel, str) or not channel:
            legacy = session.get(LEGACY_CHANNEL_KEY)
            channel = legacy if isinstance(legacy, str) and legacy else LEGACY_DEFAULT_CHANNEL
        return cls(
            user_pk=str(data.get("user_pk") or ""),
            fingerprint=str(data.get("fingerprint") or ""),
            auth_time=str(data.get("auth_time") or ""),
            last_check=str(data.get("last_check") or ""),
            fields=fields,
            serial=str(data.get("serial") or ""),
            issuer_key_id=_str_or_none(data.get("issuer_key_id")),
            card_serial=_str_or_none(data.get("card_serial")),
            name=_str_or_none(data.get("name")),
            form=str(data.get("form") or "card"),
            cert=str(data.get("cert") or ""),
            intermediates=tuple(str(item) for item in raw_intermediates)
            if isinstance(raw_intermediates, list | tuple)
            else (),
            revocation=revocation if isinstance(revocation, dict) else None,
            channel=channel,
        )

    def write(self, session: Any) -> None:
        """Store the record in ``session``."""
        session[SESSION_KEY] = {
            "fields": dict(self.fields),
            "auth_time": self.auth_time,
            "fingerprint": self.fingerprint,
            "user_pk": self.user_pk,
            "serial": self.serial,
            "issuer_key_id": self.issuer_key_id,
            "card_serial": self.card_serial,
            "name": self.name,
            "form": self.form,
            "cert": self.cert,
            "intermediates": list(self.intermediates),
            "revocation": dict(self.revocation) if self.revocation is not None else None,
            "last_check": self.last_check,
            "channel": self.channel,
        }
        # The record now says it; the old key beside it goes (if the session had one).
        session.pop(LEGACY_CHANNEL_KEY, None)

    def rechecked(
        self, *, now: datetime, revocation: Mapping[str, str] | None = None
    ) -> SessionRecord:
        """This record after a revocation re-check at ``now`` (``revocation``: the new
        status, or ``None`` to keep the last one, e.g. after an inconclusive check)."""
        updated = replace(self, last_check=now.isoformat())
        if revocation is not None:
            updated = replace(updated, revocation=dict(revocation))
        return updated

    def last_checked(self) -> datetime | None:
        return parse_time(self.last_check) or parse_time(self.auth_time)

    def identity(self) -> MoicaIdentity:
        """The record as ``request.moica``."""
        fields: dict[str, datetime] = {}
        for name, when in self.fields.items():
            parsed = parse_time(when)
            if parsed is not None:
                fields[name] = parsed
        return MoicaIdentity(
            name=self.name or "",
            card_serial=self.card_serial or "",
            fingerprint=self.fingerprint,
            auth_time=parse_time(self.auth_time),
            fields=fields,
            form=self.form,
            revocation=dict(self.revocation) if self.revocation is not None else None,
            channel=self.channel,
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


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
    #: ``"hipki"`` (card) or ``"mobile-sp-api"`` (mobile citizen certificate).
    channel: str = LEGACY_DEFAULT_CHANNEL

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
    channel = ""
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
    record = SessionRecord.read(session)
    return record.identity() if record is not None else AnonymousMoica()
