"""Renew the evidence of stored :class:`~moica_auth.models.SignedApplication` rows.

:func:`renew_due` finds the applications whose *newest* time-stamp's TSA certificate
expires before a given date and adds an archive time-stamp to each
(:func:`moica_auth.signing.archive.renew`), with the TSA of ``MOICA_AUTH_SIGNING``. It
is what ``manage.py moica_retimestamp --before DATE`` runs (and, on the rows an operator
selected, ``pks``, the admin action "Renew the evidence time-stamps"); see
docs/operations.md for when to run it. With ``fetch_crls`` (a
:class:`~moica_auth.signing.validation_crls.ValidationCrlFetcher`, one per run so each
CRL URL is downloaded once) the CRLs of each newest token's TSA path are fetched,
checked and recorded; a row whose CRL cannot be had is reported failed and left as it
was, to be retried on the next run. Rows are read in primary-key order, a bounded
number per run; each row is renewed and saved on its own (one TSA request each), locked
while it is renewed so two concurrent runs never lose a token. A row that does not
verify is left untouched and reported (by primary key and the field at fault, never its
content).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from django.db import transaction

from moica_auth.exceptions import (
    ConfigurationError,
    EvidenceInvalid,
    RevocationError,
    TimestampError,
)
from moica_auth.signing.archive import MAX_VALIDATION_CRLS, newest_tsa_expiry, renew
from moica_auth.signing.conf import signing_settings, tsa_client
from moica_auth.signing.evidence import _load as load_record
from moica_auth.signing.timestamp import TsaClient
from moica_auth.signing.validation_crls import ValidationCrlFetcher

__all__ = [
    "ADMIN_RENEWAL_HORIZON",
    "ADMIN_RENEWAL_MAX_ROWS",
    "RENEWAL_AUDIT_OUTCOME",
    "RenewalSummary",
    "evidence_text",
    "renew_due",
]

#: The admin action renews the selected rows whose newest TSA certificate expires
#: within this horizon (the same rule as ``moica_retimestamp --before <today + 1 year>``):
#: a row further from expiry is "not yet due", so repeated clicks add no tokens.
ADMIN_RENEWAL_HORIZON = timedelta(days=365)
#: Rows one admin action renews (one TSA request each, inside one HTTP request).
ADMIN_RENEWAL_MAX_ROWS = 100
#: ``LoginAttempt.outcome`` of the audit entry an admin renewal writes.
RENEWAL_AUDIT_OUTCOME = "admin_evidence_renewal"

logger = logging.getLogger(__name__)


@dataclass
class RenewalSummary:
    """What one run did: primary keys renewed, due (dry run), fresh, and failed.

    ``validation_crls`` (``None`` when CRLs were not fetched) says how many CRL
    downloads the run made, which TSA path certificates had no http CRL distribution
    point (nothing to fetch: those renewals record no CRL for them), and which URLs
    were skipped as unreachable under ``allow_unreachable``.
    """

    renewed: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    fresh: int = 0
    unstamped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    validation_crls: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "renewed": self.renewed,
            "due": self.due,
            "fresh": self.fresh,
            "unstamped": self.unstamped,
            "failed": {str(k): v for k, v in self.failed.items()},
            "validation_crls": self.validation_crls,
        }


def evidence_text(record: dict[str, Any]) -> str:
    """The stored form of a record (as :meth:`SignedResult.evidence_json` writes it)."""
    return json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True)


def _why(exc: Exception) -> str:
    if isinstance(exc, EvidenceInvalid):
        return f"{exc.data.get('field')}: {exc.data.get('reason')}"
    return f"{getattr(exc, 'code', type(exc).__name__)}: {getattr(exc, 'detail', '')}"


def renew_due(
    before: datetime,
    *,
    dry_run: bool = False,
    limit: int = 1000,
    crls: Sequence[x509.CertificateRevocationList] = (),
    client: TsaClient | None = None,
    now: datetime | None = None,
    pks: Collection[int] | None = None,
    fetch_crls: ValidationCrlFetcher | None = None,
) -> RenewalSummary:
    """Renew the evidence whose newest TSA certificate expires before ``before``.

    ``client`` defaults to the configured TSA (``MOICA_AUTH_SIGNING``'s ``TSA_URL``,
    ``TSA_ANCHORS``, ``TSA_INTERMEDIATES``); raises :class:`ConfigurationError` when
    none is configured. At most ``limit`` rows are renewed (or listed, ``dry_run``).
    ``pks`` limits the run to those rows (the admin action's selection); ``fetch_crls``
    fetches and records the CRLs of each newest TSA path (see the module doc).
    """
    from moica_auth.models import SignedApplication

    if before.tzinfo is None or before.utcoffset() is None:
        raise ValueError("before must be timezone-aware")
    if len(crls) > MAX_VALIDATION_CRLS:
        raise ValueError(f"at most {MAX_VALIDATION_CRLS} CRLs")
    if client is None:
        client = tsa_client(signing_settings())
        if client is None:
            raise ConfigurationError("MOICA_AUTH_SIGNING has no TSA_URL to renew evidence with")
    summary = RenewalSummary()
    selection = SignedApplication.objects.order_by("pk")
    if pks is not None:
        selection = selection.filter(pk__in=list(pks))
    rows = selection.values_list("pk", "evidence").iterator(100)
    for pk, text in rows:
        if len(summary.renewed) + len(summary.due) >= limit:
            break
        try:
            expiry = newest_tsa_expiry(
                load_record(text),
                tsa_anchors=client.anchors,
                tsa_intermediates=client.intermediates,
            )
        except EvidenceInvalid as exc:
            summary.failed[pk] = _why(exc)
            continue
        if expiry is None:
            summary.unstamped += 1
            continue
        if expiry >= before:
            summary.fresh += 1
            continue
        if dry_run:
            summary.due.append(pk)
            continue
        try:
            with transaction.atomic():
                row = SignedApplication.objects.select_for_update().get(pk=pk)
                if row.evidence != text:
                    # Renewed by a concurrent run meanwhile: judge it afresh next time.
                    continue
                renewed = renew(
                    text,
                    tsa=client,
                    crls=crls,
                    at=now or datetime.now(UTC),
                    fetch_crls=fetch_crls,
                )
                row.evidence = evidence_text(renewed)
                row.save(update_fields=["evidence"])
        except (EvidenceInvalid, TimestampError, RevocationError) as exc:
            summary.failed[pk] = _why(exc)
            logger.warning("evidence of signed application %s not renewed: %s", pk, _why(exc))
            continue
        summary.renewed.append(pk)
        logger.info("evidence of signed application %s renewed (archive time-stamp)", pk)
    if fetch_crls is not None:
        summary.validation_crls = {
            "fetched": fetch_crls.fetched,
            "without_cdp": sorted(fetch_crls.without_cdp),
            "unreachable": sorted(fetch_crls.unreachable),
        }
    return summary
