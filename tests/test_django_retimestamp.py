"""``manage.py moica_retimestamp``: renew stored evidence before its TSA certificate expires.

The applications are signed end to end (soft card, Django test client, the real local
TSA), then the command renews them through the same TSA and the offline verifier checks
the renewed records.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from moica_auth.models import SignedApplication
from moica_auth.signing.evidence import verify_evidence
from moica_auth.testing.pki import TestPKI
from moica_auth.testing.tsa import TsaIdentities, TsaServer, tsa_under
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


@pytest.fixture(name="longer_tsa")
def longer_tsa_fixture(signing: Any, pki: TestPKI, tsa_ids: TsaIdentities) -> Iterator[TsaServer]:
    """A second TSA whose certificate outlives the signing TSA's, configured for renewal."""
    longer = tsa_under(
        pki, tsa_ids.intermediate, "django-renewal", not_after=pki.now + timedelta(days=15 * 365)
    )
    with TsaServer(
        tsa_ids, signer=longer, extra_certificates=[tsa_ids.intermediate.certificate]
    ) as server:
        yield server


def test_renews_due_evidence_and_it_verifies(
    signing: Any, cards: Any, pki: TestPKI, tsa_ids: TsaIdentities, longer_tsa: TsaServer
) -> None:
    application = sign_one(cards)
    # The day after the TSA certificate's notAfter: it expires "before" that date.
    after_expiry = (tsa_ids.tsa.certificate.not_valid_after_utc + timedelta(days=1)).date()
    # Not due yet: the TSA certificate outlives the date.
    assert run("--before", "2027-01-01") == {
        "renewed": [],
        "due": [],
        "fresh": 1,
        "unstamped": 0,
        "failed": {},
        # CRLs are fetched by default; no row was due, so nothing was downloaded.
        "validation_crls": {"fetched": 0, "without_cdp": [], "unreachable": []},
    }
    due = run("--before", after_expiry.isoformat(), "--dry-run")
    assert due["due"] == [application.pk]
    assert "archive" not in SignedApplication.objects.get(pk=application.pk).evidence

    # The configured TSA is still the one that signed: renewing with it is refused.
    with pytest.raises(CommandError, match="1 evidence record"):
        run("--before", after_expiry.isoformat())
    assert "archive" not in SignedApplication.objects.get(pk=application.pk).evidence

    signing.MOICA_AUTH_SIGNING = {**signing.MOICA_AUTH_SIGNING, "TSA_URL": longer_tsa.url}
    done = run("--before", after_expiry.isoformat())
    assert done["renewed"] == [application.pk]
    stored = SignedApplication.objects.get(pk=application.pk).evidence
    report = verify_evidence(stored, anchors=pki.anchors, tsa_anchors=[tsa_ids.root.certificate])
    assert len(report.archive) == 1
    # The newest token is now the longer one's: the same date finds nothing due any more.
    assert run("--before", after_expiry.isoformat())["fresh"] == 1
    # Years later, after the first TSA certificate expired, the record still verifies.
    report = verify_evidence(
        stored,
        anchors=pki.anchors,
        tsa_anchors=[tsa_ids.root.certificate],
        at=datetime.combine(after_expiry, datetime.min.time(), tzinfo=UTC),
    )
    assert report.archive[0]["tsa"] == "moica-auth TEST TSA"


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
    for garbage in ("[]", "not json", json.dumps({**record, "archive": {"x": 1}})):
        SignedApplication.objects.filter(pk=application.pk).update(evidence=garbage)
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("moica_retimestamp", "--before", "2100-01-01", stdout=out)
        assert str(application.pk) in json.loads(out.getvalue())["failed"]
    SignedApplication.objects.filter(pk=application.pk).update(evidence=json.dumps(record))
    assert SignedApplication.objects.get(pk=application.pk).evidence == json.dumps(record)


def test_needs_a_configured_tsa_and_a_date(settings: Any) -> None:
    settings.MOICA_AUTH_SIGNING = None
    with pytest.raises(CommandError, match="TSA_URL"):
        run("--before", "2100-01-01")
    with pytest.raises(CommandError, match="not an ISO 8601 date"):
        run("--before", "soon")
    with pytest.raises(CommandError, match="--limit"):
        run("--before", "2100-01-01", "--limit", "0")
