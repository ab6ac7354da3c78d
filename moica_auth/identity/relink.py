"""Explicit re-link of a card to an existing account, by an administrator.

The login never moves an identity to another certificate on knowledge alone (a typed ID
number or birth date, see ``docs/security.md``): a new card reaches the old account on
its own only with pair-proving evidence (the MOICA confirmation service). Without that
service, a citizen whose card was renewed logs in to a new account, and an operator who
has checked who they are (in person, by other means) re-links the new card's identity
to the old user here. Every re-link is audited: a :class:`~moica_auth.models.LoginAttempt`
row with outcome ``admin_relink`` (who, from which user, to which user, why).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from moica_auth.models import CitizenIdentity, LoginAttempt

__all__ = ["RELINK_OUTCOME", "RelinkRefused", "relink_identity"]

logger = logging.getLogger("moica_auth")

RELINK_OUTCOME = "admin_relink"


class RelinkRefused(Exception):
    """The re-link asked for is not allowed (message says why; shown to the operator)."""


def relink_identity(identity: CitizenIdentity, user: Any, *, actor: str, reason: str) -> None:
    """Attach the card of ``identity`` to ``user`` and audit it.

    Refused (:class:`RelinkRefused`) without an actor or a reason, for an inactive target
    user, or when ``identity`` already belongs to ``user``. The ID-number key of
    ``identity`` (if any) moves with it: it was pair-proven for that card.
    """
    actor, reason = actor.strip(), reason.strip()
    if not actor or not reason:
        raise RelinkRefused("a re-link needs the operator's name and a reason")
    if getattr(user, "is_active", True) is False:
        raise RelinkRefused("the target user is inactive")
    with transaction.atomic():
        row = CitizenIdentity.objects.select_for_update().get(pk=identity.pk)
        if row.user_id == user.pk:
            raise RelinkRefused("this card already belongs to that user")
        previous = row.user_id
        row.user = user
        row.save(update_fields=["user"])
        LoginAttempt.objects.create(
            outcome=RELINK_OUTCOME,
            cert_fingerprint=row.cert_fingerprint,
            user=user,
            # No migration for this: the free-text evidence column holds the record.
            signed_content=(
                f"re-link by {actor[:100]}: identity {row.pk} from user {previous} "
                f"to user {user.pk}; reason: {reason[:500]}"
            ),
        )
    logger.warning(
        "moica identity %s re-linked from user %s to user %s by %s",
        row.pk,
        previous,
        user.pk,
        actor[:100],
    )
