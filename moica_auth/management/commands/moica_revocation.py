"""``manage.py moica_revocation refresh [--issuer KEYID] [--url URL]`` / ``status``.

Thin: uses the process's one refresher, :attr:`moica_auth.services.Services.crl_refresher`
(the same object, and index, as the login path's CRL source), and prints what it did.
Exit status is non-zero when a refresh failed, so cron and monitoring can alert.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from moica_auth.revocation.refresh import CrlRefresher
from moica_auth.services import get_services


class Command(BaseCommand):
    help = "Refresh the MOICA CRL index or show its status."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        refresh = sub.add_parser("refresh", help="download, verify and install CRLs")
        refresh.add_argument(
            "--issuer",
            action="append",
            default=[],
            help="only CRLs of this issuer key id (upper-case hex; repeatable)",
        )
        refresh.add_argument("--url", action="append", default=[], help="only this CRL URL")
        refresh.add_argument("--if-due", action="store_true", help="skip CRLs that are not due yet")
        sub.add_parser("status", help="show the installed CRLs and the last errors")

    def handle(self, *args: Any, **options: Any) -> None:
        refresher = get_services().crl_refresher
        if refresher is None:
            raise CommandError(
                'no CRL refresher: MOICA_AUTH_REVOCATION is off or its "order" has no "crl"'
            )
        if options["action"] == "status":
            self._status(refresher)
            return
        urls = list(options["url"]) or list(refresher.urls)
        issuers = {i.upper() for i in options["issuer"]}
        if issuers:
            known = {info.url: info.issuer_key_id for info in refresher.status() if info.url}
            # A URL never installed yet has no known issuer: refresh it too.
            urls = [u for u in urls if known.get(u) is None or known[u] in issuers]
        failed = 0
        for url in urls:
            outcome = refresher.refresh(url, force=not options["if_due"])
            number = outcome.info.number if outcome.info else "-"
            line = f"{outcome.outcome:<12} {url}  CRL number {number}"
            if outcome.ok:
                self.stdout.write(line)
            else:
                failed += 1
                self.stderr.write(f"{line}  ({outcome.detail})")
        if failed:
            raise CommandError(f"{failed} CRL refresh(es) failed; the last good CRLs stay")

    def _status(self, refresher: CrlRefresher) -> None:
        infos = refresher.status()
        if not infos:
            self.stdout.write("no CRL installed")
        for info in infos:
            self.stdout.write(
                f"{info.issuer_key_id} scope={info.scope or 'complete'} number={info.number} "
                f"entries={info.entries} this_update={info.this_update.isoformat()} "
                f"next_update={info.next_update.isoformat()} "
                f"fetched_at={info.fetched_at.isoformat()} url={info.url or '-'}"
                + (f" last_error={info.last_error}" if info.last_error else "")
            )
        for url, (error, at) in refresher.failures().items():
            self.stdout.write(f"failing {url}: {error} at {at.isoformat()}")
