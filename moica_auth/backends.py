"""The Django authentication backend: binds a verified citizen to a user.

:class:`MoicaBackend` follows Django's backend contract (``django.contrib.auth``):
``authenticate(request, *, moica_token=None)`` returns a user or ``None``; the distinct
keyword keeps every other ``authenticate()`` call (passwords, remote users) away from it.
It does not verify signatures itself: the login view does that (challenge, signature,
chain, revocation, personal data) and hands over a :class:`MoicaToken`, sealed with an
HMAC under ``MOICA_AUTH_HASH_KEY`` so a token cannot be fabricated by code that did not
go through the verification (defence in depth).

Identity binding (:class:`~moica_auth.models.CitizenIdentity`):

* with a verified ID number: the HMAC of the number (``id_hash``) is the key, so a renewed
  card (new certificate, new card serial) of the same person reaches the same user;
* without: the signing certificate's SHA-256 fingerprint. When the ID number is verified
  later, that row is upgraded in place and keeps its user.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest

from moica_auth.certificate import CitizenCertificate
from moica_auth.conf import app_settings
from moica_auth.models import CitizenIdentity

if TYPE_CHECKING:
    # The stubs' alias for the configured AUTH_USER_MODEL (no runtime counterpart).
    from django.contrib.auth.models import _User as AbstractBaseUser

__all__ = ["MoicaBackend", "MoicaToken"]

_SEAL_CONTEXT = b"moica-auth/1 token seal\x00"


def _seal(fingerprint: str, id_hash: str | None, fields: frozenset[str]) -> str:
    message = "\x00".join([fingerprint, id_hash or "", ",".join(sorted(fields))])
    return hmac.new(
        app_settings.HASH_KEY, _SEAL_CONTEXT + message.encode(), hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class MoicaToken:
    """The outcome of a successful verification, as the backend receives it.

    ``verified`` is the :class:`moica_auth.verifier.VerifiedLogin`; ``fields`` the
    personal fields verified (``"id_number"``, ``"birth_date"``); ``id_hash`` the HMAC of
    the verified ID number, or ``None``. Build it with :meth:`create` only.
    """

    citizen: CitizenCertificate
    fields: frozenset[str]
    id_hash: str | None
    verified: Any = field(repr=False, compare=False)
    seal: str = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        citizen: CitizenCertificate,
        fields: frozenset[str],
        id_hash: str | None,
        verified: Any,
    ) -> MoicaToken:
        return cls(
            citizen=citizen,
            fields=fields,
            id_hash=id_hash,
            verified=verified,
            seal=_seal(citizen.fingerprint_sha256, id_hash, fields),
        )

    def is_sealed(self) -> bool:
        expected = _seal(self.citizen.fingerprint_sha256, self.id_hash, self.fields)
        return hmac.compare_digest(expected, self.seal)


def _find_identity(token: MoicaToken) -> CitizenIdentity | None:
    fingerprint = token.citizen.fingerprint_sha256
    # The user comes in the same query: bind() returns it, and a login needs it.
    identities = CitizenIdentity.objects.select_related("user")
    if token.id_hash is not None:
        found = identities.filter(id_hash=token.id_hash).first()
        if found is not None:
            return found
    # Prefer a row already keyed by an ID number, then the most recent one.
    return (
        identities.filter(cert_fingerprint=fingerprint)
        .filter(**({"id_hash__isnull": True} if token.id_hash is not None else {}))
        .order_by(F("id_hash").desc(nulls_last=True), F("last_login").desc(nulls_last=True))
        .first()
    )


class MoicaBackend(BaseBackend):
    """Authenticate a citizen from a :class:`MoicaToken` (Django backend contract)."""

    def authenticate(
        self, request: HttpRequest | None, *, moica_token: MoicaToken | None = None, **_: Any
    ) -> AbstractBaseUser | None:
        if not isinstance(moica_token, MoicaToken) or not moica_token.is_sealed():
            return None
        user = self.bind(moica_token)
        if user is None or not self.user_can_authenticate(user):
            return None
        return user

    def bind(self, token: MoicaToken) -> AbstractBaseUser | None:
        """Find or create the user for ``token`` and record the card (atomically)."""
        from django.utils import timezone

        citizen = token.citizen
        with transaction.atomic():
            identity = _find_identity(token)
            if identity is None:
                if not app_settings.CREATE_USERS:
                    return None
                identity = CitizenIdentity(user=self._create_user(citizen))
            if token.id_hash is not None:
                identity.id_hash = token.id_hash
            identity.cert_fingerprint = citizen.fingerprint_sha256
            identity.name = (citizen.name or "")[:200]
            identity.card_serial = (citizen.card_serial or "")[:32]
            identity.last_login = timezone.now()
            identity.save()
            return identity.user

    def _create_user(self, citizen: CitizenCertificate) -> AbstractBaseUser:
        user_model = get_user_model()
        # A random username: it must not encode the ID number or anything guessable.
        username = f"moica-{uuid.uuid4().hex}"
        user: AbstractBaseUser = user_model._default_manager.create_user(
            **{user_model.USERNAME_FIELD: username}
        )
        # create_user() without a password sets an unusable one: card login only.
        return user

    def user_can_authenticate(self, user: AbstractBaseUser | None) -> bool:
        """Reject users with ``is_active=False`` (as ``ModelBackend`` does)."""
        return getattr(user, "is_active", True) is not False

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get(pk=user_id)
        except user_model.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
