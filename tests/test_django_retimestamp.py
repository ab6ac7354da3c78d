"""``manage.py moica_retimestamp``: renew stored evidence before its TSA certificate expires.

The applications are signed end to end (soft card, Django test client, the real local
TSA), then the command renews them through the same TSA and the offline verifier checks
the renewed records.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from moica_auth.models import SignedApplication
from moica_auth.signing.evidence import verify_evidence
from moica_auth.testing.pki import TestPKI
from moica_auth.testing.tsa import TsaIdentities
from tests.test_django_signing import (
    answer,
    logged_in_client,
    post_signature,
    submit_form,
)
from tests.test_django_signing import signing_fixture as signing_fixture
from tests.test_django_signing import tsa_ids_fixture as tsa_ids_fixture
from tests.test_django_signing import tsa_server_fixture as tsa_server_fixture

pytestmark = pytest.mark.django_db


def sign_one(cards: Any) -> SignedApplication:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    response = post_signature(client, answer(cards.alice, row))
    assert response.status_code == 200, response.content
    return SignedApplication.objects.get(request__token=row.token)


def run(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("moica_retimestamp", *args, stdout=out)
    return json.loads(out.getvalue())


def test_renews_due_evidence_and_it_verifies(
    signing: Any, cards: Any, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    application = sign_one(cards)
    from datetime import timedelta

    # The day after the TSA certificate's notAfter: it expires "before" that date.
    after_expiry = (tsa_ids.tsa.certificate.not_valid_after_utc + timedelta(days=1)).date()
    # Not due yet: the TSA certificate outlives the date.
    assert run("--before", "2027-01-01") == {
        "renewed": [],
        "due": [],
        "fresh": 1,
        "unstamped": 0,
        "failed": {},
    }
    due = run("--before", after_expiry.isoformat(), "--dry-run")
    assert due["due"] == [application.pk]
    assert "archive" not in SignedApplication.objects.get(pk=application.pk).evidence
    done = run("--before", after_expiry.isoformat())
    assert done["renewed"] == [application.pk]
    stored = SignedApplication.objects.get(pk=application.pk).evidence
    report = verify_evidence(stored, anchors=pki.anchors, tsa_anchors=[tsa_ids.root.certificate])
    assert len(report.archive) == 1
    # The newest token is now the archive one, from the same (still valid) TSA: a second
    # run with the same date renews again, which is harmless and verifies too.
    again = run("--before", after_expiry.isoformat())
    assert again["renewed"] == [application.pk]
    report = verify_evidence(
        SignedApplication.objects.get(pk=application.pk).evidence,
        anchors=pki.anchors,
        tsa_anchors=[tsa_ids.root.certificate],
    )
    assert len(report.archive) == 2


def test_a_broken_record_is_reported_not_renewed(signing: Any, cards: Any) -> None:
    application = sign_one(cards)
    record = json.loads(application.evidence)
    record["timestamp"]["token"] = record["timestamp"]["token"][:-8] + "AAAAAAA="
    SignedApplication.objects.filter(pk=application.pk).update(evidence=json.dumps(record))
    with pytest.raises(CommandError, match="1 evidence record"):
        run("--before", "2100-01-01")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("moica_retimestamp", "--before", "2100-01-01", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["failed"][str(application.pk)].startswith("timestamp:")
    assert SignedApplication.objects.get(pk=application.pk).evidence == json.dumps(record)


def test_needs_a_configured_tsa_and_a_date(settings: Any) -> None:
    settings.MOICA_AUTH_SIGNING = None
    with pytest.raises(CommandError, match="TSA_URL"):
        run("--before", "2100-01-01")
    with pytest.raises(CommandError, match="not an ISO 8601 date"):
        run("--before", "soon")
    with pytest.raises(CommandError, match="--limit"):
        run("--before", "2100-01-01", "--limit", "0")
