"""``manage.py moica_audit prune [--days N]``: delete login attempts past retention."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from moica_auth.audit import prune


class Command(BaseCommand):
    help = "Delete login-attempt audit rows older than MOICA_AUTH_AUDIT_RETENTION_DAYS."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("prune", help="delete old login attempts")
        run.add_argument("--days", type=int, default=None, help="override the retention")

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = prune(days=options["days"])
        self.stdout.write(f"deleted {deleted} login attempts")
