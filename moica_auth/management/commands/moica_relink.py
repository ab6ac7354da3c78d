"""``manage.py moica_relink --fingerprint F --to-user U --by NAME --reason TEXT``.

Attach a card (its :class:`~moica_auth.models.CitizenIdentity`, found by certificate
fingerprint or card serial) to an existing user, after the operator has checked who the
citizen is by other means. Audited (``admin_relink``); see
:mod:`moica_auth.identity.relink`.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from moica_auth.identity.relink import RelinkRefused, relink_identity
from moica_auth.models import CitizenIdentity


class Command(BaseCommand):
    help = "Re-link a citizen card to an existing user (audited)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        card = parser.add_mutually_exclusive_group(required=True)
        card.add_argument("--fingerprint", help="SHA-256 fingerprint of the card certificate")
        card.add_argument("--card-serial", help="the card's certificate serialNumber")
        parser.add_argument("--to-user", required=True, help="username of the target user")
        parser.add_argument("--by", required=True, help="who decided the re-link")
        parser.add_argument("--reason", required=True, help="why (how the citizen was checked)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["fingerprint"]:
            rows = CitizenIdentity.objects.filter(
                cert_fingerprint=options["fingerprint"].strip().lower()
            )
        else:
            rows = CitizenIdentity.objects.filter(card_serial=options["card_serial"].strip())
        found = list(rows[:2])
        if len(found) != 1:
            raise CommandError(
                "no such card" if not found else "several identities match; use --fingerprint"
            )
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["to_user"])
        except user_model.DoesNotExist:
            raise CommandError("no such user") from None
        try:
            relink_identity(found[0], user, actor=options["by"], reason=options["reason"])
        except RelinkRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"identity {found[0].pk} now belongs to user {user.pk}")
