"""``manage.py moica_retimestamp --before DATE [--dry-run] [--limit N] [--tsa-crl FILE]
[--no-fetch-crls] [--allow-unreachable-crl]``.

Adds an archive time-stamp to the evidence of every signed application whose newest
time-stamp's TSA certificate expires before ``DATE`` (see
:mod:`moica_auth.signing.renewal`). By default the CRLs of each newest TSA path are
downloaded from their distribution points, checked and recorded; a row whose CRL
cannot be downloaded fails (and is retried on the next run) unless
``--allow-unreachable-crl``. Prints one JSON summary; exits non-zero when any
row failed. Run it from cron well before TSA certificates expire (docs/operations.md).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from django.core.management.base import BaseCommand, CommandError

from moica_auth.exceptions import ConfigurationError
from moica_auth.signing.archive import MAX_VALIDATION_CRLS
from moica_auth.signing.renewal import renew_due
from moica_auth.signing.validation_crls import ValidationCrlFetcher


def _date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--before: not an ISO 8601 date: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # a date names UTC midnight
    return parsed.astimezone(UTC)


def _crl(path: str) -> x509.CertificateRevocationList:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"--tsa-crl {path}: cannot read it") from exc
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_crl(raw)
        return x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise CommandError(f"--tsa-crl {path}: not a CRL") from exc


class Command(BaseCommand):
    help = "Renew signing evidence (archive time-stamp) before its TSA certificate expires."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--before",
            required=True,
            help="renew evidence whose newest TSA certificate expires before this date (UTC)",
        )
        parser.add_argument("--dry-run", action="store_true", help="only list what is due")
        parser.add_argument("--limit", type=int, default=1000, help="rows per run (1-100000)")
        parser.add_argument(
            "--tsa-crl",
            action="append",
            default=[],
            help="CRL of the newest time-stamps' TSA CA, recorded as validation data",
        )
        parser.add_argument(
            "--no-fetch-crls",
            action="store_true",
            help="do not download the TSA path's CRLs from their distribution points",
        )
        parser.add_argument(
            "--allow-unreachable-crl",
            action="store_true",
            help="renew even when a CRL distribution point is unreachable (records less)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["limit"] <= 100_000:
            raise CommandError("--limit must be 1 to 100000")
        if len(options["tsa_crl"]) > MAX_VALIDATION_CRLS:
            raise CommandError(f"--tsa-crl: at most {MAX_VALIDATION_CRLS} CRLs")
        crls = [_crl(path) for path in options["tsa_crl"]]
        try:
            summary = renew_due(
                _date(options["before"]),
                dry_run=options["dry_run"],
                limit=options["limit"],
                crls=crls,
                fetch_crls=(
                    None
                    if options["no_fetch_crls"] or options["dry_run"]
                    else ValidationCrlFetcher(allow_unreachable=options["allow_unreachable_crl"])
                ),
            )
        except ConfigurationError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(json.dumps(summary.as_json(), ensure_ascii=False))
        if summary.failed:
            raise CommandError(f"{len(summary.failed)} evidence record(s) not renewed")
