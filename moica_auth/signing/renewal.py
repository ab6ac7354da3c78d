"""Renew the evidence of stored :class:`~moica_auth.models.SignedApplication` rows.

:func:`renew_due` finds the applications whose *newest* time-stamp's TSA certificate
expires before a given date and adds an archive time-stamp to each
(:func:`moica_auth.signing.archive.renew`), with the TSA of ``MOICA_AUTH_SIGNING``. It
is what ``manage.py moica_retimestamp --before DATE`` runs; see docs/operations.md for
when to run it. Rows are read in primary-key order, a bounded number per run; each row
is renewed and saved on its own (one TSA request each), locked while it is renewed so
two concurrent runs never lose a token. A row that does not verify is left untouched and
reported (by primary key and the field at fault, never its content).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from django.db import transaction

from moica_auth.exceptions import ConfigurationError, EvidenceInvalid, TimestampError
from moica_auth.signing.archive import MAX_VALIDATION_CRLS, newest_tsa_expiry, renew
from moica_auth.signing.conf import signing_settings, tsa_client
from moica_auth.signing.evidence import _load as load_record
from moica_auth.signing.timestamp import TsaClient

__all__ = ["RenewalSummary", "evidence_text", "renew_due"]

logger = logging.getLogger(__name__)


@dataclass
class RenewalSummary:
    """What one run did: primary keys renewed, due (dry run), fresh, and failed."""

    renewed: list[int] = field(default_factory=list)
    due: list[int] = field(default_factory=list)
    fresh: int = 0
    unstamped: int = 0
    failed: dict[int, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "renewed": self.renewed,
            "due": self.due,
            "fresh": self.fresh,
            "unstamped": self.unstamped,
            "failed": {str(k): v for k, v in self.failed.items()},
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
) -> RenewalSummary:
    """Renew the evidence whose newest TSA certificate expires before ``before``.

    ``client`` defaults to the configured TSA (``MOICA_AUTH_SIGNING``'s ``TSA_URL``,
    ``TSA_ANCHORS``, ``TSA_INTERMEDIATES``); raises :class:`ConfigurationError` when
    none is configured. At most ``limit`` rows are renewed (or listed, ``dry_run``).
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
    rows = SignedApplication.objects.order_by("pk").values_list("pk", "evidence").iterator(100)
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
                renewed = renew(text, tsa=client, crls=crls, at=now or datetime.now(UTC))
                row.evidence = evidence_text(renewed)
                row.save(update_fields=["evidence"])
        except (EvidenceInvalid, TimestampError) as exc:
            summary.failed[pk] = _why(exc)
            logger.warning("evidence of signed application %s not renewed: %s", pk, _why(exc))
            continue
        summary.renewed.append(pk)
        logger.info("evidence of signed application %s renewed (archive time-stamp)", pk)
    return summary
