"""Renewing stored evidence through Django: the cron command and the admin action fetch
the CRLs of the TSA path from a real local CRL responder and record them.

The applications are signed end to end (soft card, Django test client, a real local
TSA whose certificate names a CRL distribution point on the responder); renewal goes
through a second TSA whose certificate outlives the first.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from moica_auth.models import LoginAttempt, SignedApplication
from moica_auth.signing.evidence import verify_evidence
from moica_auth.signing.renewal import RENEWAL_AUDIT_OUTCOME
from moica_auth.testing.pki import CertifiedKey, TestPKI
from moica_auth.testing.responders import ResponderServer
from moica_auth.testing.tsa import TsaIdentities, TsaServer, tsa_under
from tests.django_fixtures import CLOCK
from tests.test_django_retimestamp import sign_one
from tests.test_django_signing import signing_fixture as signing_fixture
from tests.test_django_signing import tsa_ids_fixture as tsa_ids_fixture
from tests.test_django_signing import tsa_server_fixture as tsa_server_fixture

pytestmark = pytest.mark.django_db

CRL_PATH = "/crl/tsa-ca.crl"
ACTION_URL = "/admin/moica_auth/signedapplication/"


def _tsa_with_cdp(
    pki: TestPKI, ids: TsaIdentities, label: str, url: str, not_after: datetime
) -> CertifiedKey:
    """A TSA certificate under the test TSA CA that names ``url`` as its CRL."""
    return tsa_under(
        pki, ids.intermediate, label, f"moica-auth TEST {label}", not_after=not_after, crl_url=url
    )


@pytest.fixture(scope="module", name="crl_server")
def crl_server_fixture() -> Iterator[ResponderServer]:
    with ResponderServer() as server:
        yield server


@pytest.fixture(scope="module", name="renewal_tsa")
def renewal_tsa_fixture(pki: TestPKI, tsa_ids: TsaIdentities) -> Iterator[TsaServer]:
    longer = tsa_under(
        pki, tsa_ids.intermediate, "crl-renewal", not_after=pki.now + timedelta(days=15 * 365)
    )
    with TsaServer(
        tsa_ids, clock=CLOCK, signer=longer, extra_certificates=[tsa_ids.intermediate.certificate]
    ) as server:
        yield server


@pytest.fixture(scope="module", name="live_renewal_tsa")
def live_renewal_tsa_fixture(pki: TestPKI, tsa_ids: TsaIdentities) -> Iterator[TsaServer]:
    """The same, answering at the real clock (the management command renews "now")."""
    longer = tsa_under(
        pki, tsa_ids.intermediate, "crl-renewal-live", not_after=pki.now + timedelta(days=15 * 365)
    )
    with TsaServer(
        tsa_ids, signer=longer, extra_certificates=[tsa_ids.intermediate.certificate]
    ) as server:
        yield server


def _signing_tsa(
    pki: TestPKI, ids: TsaIdentities, server: ResponderServer, label: str, not_after: datetime
) -> TsaServer:
    signer = _tsa_with_cdp(pki, ids, label, server.url_for(CRL_PATH), not_after)
    return TsaServer(
        ids, clock=CLOCK, signer=signer, extra_certificates=[ids.intermediate.certificate]
    )


def _publish(
    pki: TestPKI, ids: TsaIdentities, server: ResponderServer, at: datetime, **kw: Any
) -> None:
    crl = pki.make_crl(
        issuer=ids.intermediate,
        this_update=at - timedelta(seconds=10),
        next_update=at + timedelta(days=1),
        **kw,
    )
    server.publish_crl(CRL_PATH, crl.public_bytes(serialization.Encoding.DER))
    server.clear_faults()
    server.reset_hits()


def _use_tsa(signing: Any, server: TsaServer) -> None:
    signing.MOICA_AUTH_SIGNING = {**signing.MOICA_AUTH_SIGNING, "TSA_URL": server.url}


def _crls(pk: int) -> list[str] | None:
    record = json.loads(SignedApplication.objects.get(pk=pk).evidence)
    archive = record.get("archive")
    return None if archive is None else archive[-1]["validation"]["crls"]


def _command(*args: str) -> tuple[dict[str, Any], bool]:
    out = io.StringIO()
    try:
        call_command("moica_retimestamp", *args, stdout=out)
    except CommandError:
        return json.loads(out.getvalue()), False
    return json.loads(out.getvalue()), True


def test_command_fetches_crls_once_per_url_and_fails_closed(
    signing: Any,
    cards: Any,
    pki: TestPKI,
    tsa_ids: TsaIdentities,
    crl_server: ResponderServer,
    live_renewal_tsa: TsaServer,
) -> None:
    # The command renews at the real clock: the signing TSA's certificate must still be
    # valid then, and the CRLs issued since the signing.
    with _signing_tsa(
        pki, tsa_ids, crl_server, "crl-cmd", pki.now + timedelta(days=3 * 365)
    ) as first:
        _use_tsa(signing, first)
        pks = [sign_one(cards).pk for _ in range(3)]
    _use_tsa(signing, live_renewal_tsa)
    now = datetime.now(UTC)
    _publish(pki, tsa_ids, crl_server, now)

    crl_server.set_fault(CRL_PATH, "down")
    summary, ok = _command("--before", "2035-01-01")
    assert not ok
    assert set(summary["failed"]) == {str(pk) for pk in pks}
    assert all("revocation_unavailable" in why for why in summary["failed"].values())
    assert crl_server.hits(CRL_PATH) <= 1  # one attempt for the three rows
    assert all(_crls(pk) is None for pk in pks)  # nothing written

    summary, ok = _command("--before", "2035-01-01", "--allow-unreachable-crl", "--limit", "1")
    assert ok and summary["renewed"] == [pks[0]]
    assert summary["validation_crls"]["unreachable"] == [crl_server.url_for(CRL_PATH)]
    assert _crls(pks[0]) == []

    crl_server.reset_hits()
    summary, ok = _command("--before", "2035-01-01", "--no-fetch-crls", "--limit", "1")
    assert ok and summary["renewed"] == [pks[1]] and summary["validation_crls"] is None
    assert crl_server.hits(CRL_PATH) == 0

    _publish(pki, tsa_ids, crl_server, now)
    summary, ok = _command("--before", "2035-01-01")
    assert ok and summary["renewed"] == [pks[2]], summary
    assert summary["validation_crls"] == {
        "fetched": 1,
        "without_cdp": ["moica-auth TEST TSA CA"],  # the intermediate names no CRL
        "unreachable": [],
    }
    assert len(_crls(pks[2]) or []) == 1
    report = verify_evidence(
        SignedApplication.objects.get(pk=pks[2]).evidence,
        anchors=pki.anchors,
        tsa_anchors=[tsa_ids.root.certificate],
    )
    assert [stamp["crls"] for stamp in report.archive] == [1]


@pytest.fixture(name="due_rows")
def due_rows_fixture(
    signing: Any,
    cards: Any,
    pki: TestPKI,
    tsa_ids: TsaIdentities,
    crl_server: ResponderServer,
    renewal_tsa: TsaServer,
    clock: Any,
) -> list[int]:
    """Three applications whose TSA certificate expires within the admin's horizon."""
    with _signing_tsa(
        pki, tsa_ids, crl_server, "crl-admin", pki.now + timedelta(days=200)
    ) as first:
        _use_tsa(signing, first)
        pks = [sign_one(cards).pk for _ in range(3)]
    _use_tsa(signing, renewal_tsa)
    clock.advance(60)
    _publish(pki, tsa_ids, crl_server, clock.now)
    return pks


def _act(client: Client, pks: list[int], **headers: str) -> Any:
    return client.post(
        ACTION_URL,
        {"action": "renew_evidence_timestamps", "_selected_action": [str(pk) for pk in pks]},
        follow=True,
        headers=headers,
    )


def test_admin_action_renews_the_selected_rows(
    due_rows: list[int], crl_server: ResponderServer, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    admin = get_user_model().objects.create_superuser("keeper", "k@example.test", "pw-123456")
    client = Client()
    client.force_login(admin)
    page = _act(client, due_rows[:2]).content.decode()
    assert "已更新證據時戳：2" in page, page[:3000]
    assert "moica-auth TEST TSA CA" in page  # said: no CRL to fetch for the intermediate
    assert [len(_crls(pk) or []) for pk in due_rows] == [1, 1, 0]
    assert _crls(due_rows[2]) is None
    assert crl_server.hits(CRL_PATH) == 1  # one download for both rows
    audit = LoginAttempt.objects.get(outcome=RENEWAL_AUDIT_OUTCOME)
    assert audit.user == admin
    assert f"renewed {due_rows[:2]}" in audit.signed_content
    verify_evidence(
        SignedApplication.objects.get(pk=due_rows[0]).evidence,
        anchors=pki.anchors,
        tsa_anchors=[tsa_ids.root.certificate],
        at=CLOCK.now,
    )

    # Again: the renewed rows now outlive the horizon ("not yet due"), in English too.
    page = _act(client, due_rows[:2], **{"Accept-Language": "en"}).content.decode()
    assert "Evidence time-stamps renewed: 0; not yet due: 2; failed: 0." in page


def test_admin_action_reports_a_revoked_tsa_as_failed(
    due_rows: list[int], crl_server: ResponderServer, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    # The signing TSA's certificate (serials are derived from the label).
    signer_serial = pki.serial("tsa/crl-admin")
    _publish(
        pki,
        tsa_ids,
        crl_server,
        CLOCK.now,
        revoked=[(signer_serial, CLOCK.now - timedelta(days=1), None)],
    )
    admin = get_user_model().objects.create_superuser("keeper", "k@example.test", "pw-123456")
    client = Client()
    client.force_login(admin)
    page = _act(client, due_rows).content.decode()
    assert "失敗：3" in page
    assert "revoked" in page
    assert all(_crls(pk) is None for pk in due_rows)


def test_admin_action_needs_the_change_permission(due_rows: list[int]) -> None:
    staff = get_user_model().objects.create_user("viewer", "v@example.test", "pw-123456")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_signedapplication"))
    client = Client()
    client.force_login(staff)
    listing = client.get(ACTION_URL).content.decode()
    assert "renew_evidence_timestamps" not in listing
    _act(client, due_rows)
    assert all(_crls(pk) is None for pk in due_rows)
    assert not LoginAttempt.objects.filter(outcome=RENEWAL_AUDIT_OUTCOME).exists()

    # With Django's change permission of the model (no migration), the action runs.
    staff.user_permissions.add(Permission.objects.get(codename="change_signedapplication"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    assert "renew_evidence_timestamps" in client.get(ACTION_URL).content.decode()
    _act(client, due_rows[:1])
    assert _crls(due_rows[0]) is not None
    assert LoginAttempt.objects.filter(outcome=RENEWAL_AUDIT_OUTCOME).count() == 1


def test_admin_action_refuses_too_many_rows_and_a_missing_tsa(
    due_rows: list[int], signing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = get_user_model().objects.create_superuser("keeper", "k@example.test", "pw-123456")
    client = Client()
    client.force_login(admin)
    monkeypatch.setattr("moica_auth.admin.ADMIN_RENEWAL_MAX_ROWS", 2)
    page = _act(client, due_rows).content.decode()
    assert "一次最多選擇 2 件申請" in page
    assert all(_crls(pk) is None for pk in due_rows)
    monkeypatch.undo()

    signing.MOICA_AUTH_SIGNING = {**signing.MOICA_AUTH_SIGNING, "TSA_URL": None}
    signing.MOICA_AUTH_SIGNING.pop("REQUIRE_TIMESTAMP")
    page = _act(client, due_rows).content.decode()
    assert "尚未設定時戳服務" in page
    assert all(_crls(pk) is None for pk in due_rows)
    assert not LoginAttempt.objects.filter(outcome=RENEWAL_AUDIT_OUTCOME).exists()
