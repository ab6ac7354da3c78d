"""``manage.py moica_trust add FILE | list | remove ID | add-official [--from DIR]``.

Thin: parses arguments and calls :mod:`moica_auth.anchors`.
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from moica_auth.anchors import AnchorRefused, add_anchor, add_official, read_certificates
from moica_auth.models import TrustAnchor


class Command(BaseCommand):
    help = "Manage the citizen-certificate trust anchors stored in the database."
    # This command is how E003 ("no trust anchor") gets fixed: it must not be blocked by it.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a CA certificate (PEM or DER file)")
        add.add_argument("file", type=Path)
        sub.add_parser("list", help="list the stored anchors")
        remove = sub.add_parser("remove", help="remove an anchor by id")
        remove.add_argument("id", type=int)
        official = sub.add_parser(
            "add-official", help="add the official GRCA/MOICA CAs (fingerprints pinned)"
        )
        official.add_argument(
            "--from",
            dest="from_dir",
            type=Path,
            default=None,
            help="read the certificates from this folder instead of downloading them",
        )
        official.add_argument(
            "--include-legacy", action="store_true", help="also add the SHA-1 GRCA G1 root"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "add":
            self._add(options["file"])
        elif action == "list":
            self._list()
        elif action == "remove":
            self._remove(options["id"])
        else:
            self._official(options["from_dir"], options["include_legacy"])

    def _add(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            for cert in read_certificates(data):
                row, created = add_anchor(cert, source=TrustAnchor.SOURCE_COMMAND)
                verb = "added" if created else "already present"
                self.stdout.write(f"{verb}: #{row.pk} {row.subject} sha256={row.sha256}")
        except AnchorRefused as exc:
            raise CommandError(exc.detail) from exc

    def _list(self) -> None:
        rows = TrustAnchor.objects.order_by("pk")
        if not rows:
            self.stdout.write("no trust anchors in the database")
        for row in rows:
            kind = "root" if row.is_root else "intermediate"
            state = "enabled" if row.enabled else "disabled"
            self.stdout.write(
                f"#{row.pk} [{kind}, {state}, {row.source}] {row.subject} "
                f"ski={row.subject_key_id or '-'} valid {row.not_before:%Y-%m-%d}.."
                f"{row.not_after:%Y-%m-%d} sha256={row.sha256}"
            )

    def _remove(self, pk: int) -> None:
        deleted, _ = TrustAnchor.objects.filter(pk=pk).delete()
        if not deleted:
            raise CommandError(f"no trust anchor #{pk}")
        self.stdout.write(f"removed #{pk}")

    def _official(self, from_dir: Path | None, include_legacy: bool) -> None:
        if from_dir is not None and not from_dir.is_dir():
            raise CommandError(f"{from_dir} is not a folder")
        results = add_official(from_dir=from_dir, include_legacy=include_legacy)
        failed = False
        for result in results:
            line = f"{result.name}: {result.status}"
            if result.detail:
                line += f" ({result.detail})"
            self.stdout.write(line)
            failed = failed or result.status in ("missing", "refused")
        if failed:
            raise CommandError("some official CA certificates could not be added")
