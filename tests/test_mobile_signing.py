"""Signing a signature request with the phone (issue #12, mobile channel), over HTTP
against the real virtual SP API on 127.0.0.1, with a real local RFC 3161 TSA.

The citizen logs in with the phone (``/moica/mobile/``), submits a form, and signs the
request through ``POST /moica/sign/mobile/start/`` + ``…/status/``; the virtual phone
signs ``sign_data`` with the mobile certificate. Every refusal is a 4xx/503 JSON answer,
leaves nothing stored, and records the refusal on the request row.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client

from moica_auth.exceptions import EvidenceInvalid
from moica_auth.mobile.client import RequestsTransport
from moica_auth.mobile.views import mobile_source
from moica_auth.models import SignatureRequest, SignedApplication
from moica_auth.services import get_services
from moica_auth.signing.channel import DIGEST_LINE_PREFIX, digest_line
from moica_auth.signing.evidence import verify_evidence
from moica_auth.testing.pki import TestPKI
from moica_auth.testing.tsa import TsaIdentities, TsaServer
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.django_fixtures import ALICE_ID, BOB_ID, csrf_header, login_with_card
from tests.mobile_fixtures import REVOKED, phone_api_fixture
from tests.test_django_signing import tsa_ids_fixture, tsa_server_fixture

__all__ = ["phone_api_fixture", "tsa_ids_fixture", "tsa_server_fixture"]

pytestmark = pytest.mark.django_db

FORM = {"parcel": "台北市中正區重慶段一小段 123 地號", "share": "1/2", "kind": "sale", "note": "無"}
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(name="signing")
def signing_fixture(
    moica_settings: Any, tsa_server: TsaServer, tsa_ids: TsaIdentities, phone_api: VirtualSpApi
) -> Iterator[Any]:
    moica_settings.ROOT_URLCONF = "tests.django_mobile_signing_urls"
    moica_settings.MOICA_AUTH_SIGNING = {
        "LIFETIME": 120,
        "TSA_URL": tsa_server.url,
        "TSA_ANCHORS": [tsa_ids.root.certificate.public_bytes(serialization.Encoding.PEM).decode()],
        "TSA_TIMEOUT": 2.0,
        "REQUIRE_TIMESTAMP": True,
    }
    moica_settings.MOICA_AUTH_MOBILE = phone_api.settings(
        poll_interval=0.1, retries=0, modes=["push", "qr"]
    )
    yield moica_settings
    phone_api.fault = None
    REVOKED.clear()


# --- helpers ---------------------------------------------------------------------------------


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(
        url, json.dumps(body), content_type="application/json", headers=csrf_header(client)
    )


def until_done(client: Client, url: str, transaction: str) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = post(client, url, {"transaction": transaction})
        if response.json().get("state") != "pending":
            return response
        time.sleep(0.05)
    raise AssertionError("still pending")


def phone_login(phone_api: VirtualSpApi, id_number: str = ALICE_ID) -> Client:
    client = Client()
    client.get("/moica/session/")
    started = post(client, "/moica/mobile/start/", {"id_number": id_number, "mode": "push"})
    assert started.status_code == 200, started.content
    phone_api.approve(id_number=id_number)
    done = until_done(client, "/moica/mobile/status/", started.json()["transaction"])
    assert done.json()["ok"] is True, done.content
    return client


def open_request(client: Client, url: str = "/sign/land/", form: Any = None) -> SignatureRequest:
    response = client.post(url, form or FORM)
    assert response.status_code == 200, response.content
    row: SignatureRequest = response.context["signature_request"]
    return row


def start(client: Client, requests: Any, id_number: str = ALICE_ID, **extra: Any) -> Any:
    key = "requests" if isinstance(requests, list) else "request"
    body = {key: requests, "id_number": id_number, "mode": "push", **extra}
    return post(client, "/moica/sign/mobile/start/", body)


def started(client: Client, requests: Any, **extra: Any) -> str:
    response = start(client, requests, **extra)
    assert response.status_code == 200, response.content
    transaction: str = response.json()["transaction"]
    return transaction


def sign_with_phone(
    phone_api: VirtualSpApi, client: Client, requests: Any, id_number: str = ALICE_ID
) -> Any:
    transaction = started(client, requests)
    phone_api.approve(id_number=id_number)
    return until_done(client, "/moica/sign/mobile/status/", transaction)


def assert_refused(response: Any, code: str) -> None:
    assert response["Content-Type"].startswith("application/json"), response.content
    data = response.json()
    assert data["ok"] is False and data["code"] == code, data
    assert 400 <= response.status_code < 500 or response.status_code == 503
    assert not SignedApplication.objects.exists()


def verify(evidence: str | bytes, pki: TestPKI, tsa_ids: TsaIdentities) -> Any:
    return verify_evidence(evidence, anchors=pki.anchors, tsa_anchors=[tsa_ids.root.certificate])


# --- success ---------------------------------------------------------------------------------


def test_sign_with_the_phone_stores_evidence_that_verifies_offline(
    signing: Any, phone_api: VirtualSpApi, pki: TestPKI, tsa_ids: TsaIdentities, tmp_path: Path
) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    page = client.post("/sign/land/", FORM).content.decode()
    # zh-Hant first: the phone is offered beside the card.
    assert "以行動自然人憑證簽章" in page and "/moica/sign/mobile/start/" in page
    response = start(client, row.token)
    assert response.status_code == 200, response.content
    assert response.json()["documents"] == 1 and "qr" not in response.json()
    # The phone is asked to SIGN exactly the request text (it fits in 1024 characters).
    request = phone_api.pending(ALICE_ID)[-1]
    assert request.op_code == "SIGN" and request.op_mode == "PUSH"
    assert request.sign_infos[0]["sign_data"] == row.text
    assert request.sign_infos[0]["sign_type"] == "PKCS#1"
    assert request.sign_infos[0]["hash_algorithm"] == "SHA256"
    phone_api.approve(request.ticket_id)
    done = until_done(client, "/moica/sign/mobile/status/", response.json()["transaction"])
    assert done.status_code == 200, done.content
    assert done.json()["applications"] == [
        {"application": row.application_id, "service": "土地登記線上聲明", "timestamped": True}
    ]
    application = SignedApplication.objects.get()
    assert SignatureRequest.objects.get(pk=row.pk).outcome == "ok"
    record = json.loads(application.evidence)
    assert record["channel"] == {
        "name": "mobile-sp-api",
        "tbs": "text",
        "sign_type": "PKCS#1",
        "form": "mobile",
    }
    assert record["signature_type"] == "PKCS1"
    assert base64.b64decode(record["signed_bytes"]).decode() == row.text
    report = verify(application.evidence, pki, tsa_ids)
    assert report.application_id == row.application_id
    assert any("mobile citizen certificate" in s for s in report.statements)

    # The command an auditor runs, offline, in another process.
    path = tmp_path / "evidence.json"
    path.write_text(application.evidence, encoding="utf-8")
    anchors = []
    for index, cert in enumerate([*pki.anchors, tsa_ids.root.certificate]):
        anchor = tmp_path / f"anchor{index}.pem"
        anchor.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        anchors.append(anchor)
    cli = [sys.executable, "-m", "moica_auth", "evidence", "verify", str(path)]
    for anchor in anchors[:-1]:
        cli += ["--anchor", str(anchor)]
    # At the record's own time, not the wall clock (the test TSA certificate expires).
    cli += ["--tsa-anchor", str(anchors[-1]), "--at", record["decision_time"]]
    ok = subprocess.run(cli, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # One changed field, and the command names it.
    tampered = dict(record, channel={**record["channel"], "tbs": "sha256"})
    path.write_text(json.dumps(tampered), encoding="utf-8")
    bad = subprocess.run(cli, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert bad.returncode != 0 and "channel" in bad.stdout + bad.stderr


def test_qr_mode_and_the_same_request_cannot_be_signed_twice(
    signing: Any, phone_api: VirtualSpApi
) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    response = start(client, row.token, mode="qr")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["qr"].startswith("data:image/svg+xml") and body["sp_ticket"]
    phone_api.approve(phone_api.scan(body["sp_ticket"]).ticket_id)
    assert until_done(client, "/moica/sign/mobile/status/", body["transaction"]).json()["ok"]
    # Replayed signature request: refused before anything reaches the phone.
    calls = dict(phone_api.calls)
    again = start(client, row.token)
    assert again.status_code == 409 and again.json()["code"] == "signing_request_reused"
    assert phone_api.calls == calls
    # Replayed status of the finished transaction: nothing more is signed.
    replay = post(client, "/moica/sign/mobile/status/", {"transaction": body["transaction"]})
    assert replay.json()["code"] == "mobile_transaction_unknown"
    assert SignedApplication.objects.count() == 1


def test_a_text_over_1024_characters_signs_its_digest_line(
    signing: Any, phone_api: VirtualSpApi, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    client = phone_login(phone_api)
    row = open_request(client, "/sign/long/", {"parcel": "重慶段 123 地號", "note": "長" * 1500})
    assert len(row.text) > 1024
    transaction = started(client, row.token)
    request = phone_api.pending(ALICE_ID)[-1]
    line = request.sign_infos[0]["sign_data"]
    assert line == digest_line(row.text.encode("utf-8")) and line.startswith(DIGEST_LINE_PREFIX)
    phone_api.approve(request.ticket_id)
    done = until_done(client, "/moica/sign/mobile/status/", transaction)
    assert done.json()["ok"] is True, done.content
    evidence = SignedApplication.objects.get().evidence
    record = json.loads(evidence)
    assert record["channel"]["tbs"] == "sha256"
    assert base64.b64decode(record["signed_bytes"]).decode() == row.text  # the whole text
    verify(evidence, pki, tsa_ids)
    # Claiming the phone signed the text itself fails: the signature is over the line.
    with pytest.raises(EvidenceInvalid) as caught:
        forged = {**record, "channel": {**record["channel"], "tbs": "text"}}
        verify(json.dumps(forged), pki, tsa_ids)
    assert caught.value.data["field"] == "channel"


def test_batsign_signs_each_attachment_and_verifies_each(
    signing: Any, phone_api: VirtualSpApi, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    client = phone_login(phone_api)
    tokens = post(client, "/sign/attachments/", {"count": 3}).json()["requests"]
    response = start(client, tokens, mode="qr")
    assert response.status_code == 200, response.content
    assert response.json()["documents"] == 3
    request = phone_api.scan(response.json()["sp_ticket"])
    assert request.op_code == "BATSIGN" and len(request.sign_infos) == 3
    rows = {r.token: r for r in SignatureRequest.objects.filter(token__in=tokens)}
    assert [i["sign_data"] for i in request.sign_infos] == [rows[t].text for t in tokens]
    phone_api.approve(request.ticket_id)
    done = until_done(client, "/moica/sign/mobile/status/", response.json()["transaction"])
    assert done.status_code == 200, done.content
    assert len(done.json()["applications"]) == 3
    assert SignedApplication.objects.count() == 3
    for application in SignedApplication.objects.all():
        assert verify(application.evidence, pki, tsa_ids).application_id == "ATT-0001"
    assert set(SignatureRequest.objects.values_list("outcome", flat=True)) == {"ok"}


# --- refusals --------------------------------------------------------------------------------


def test_batsign_over_20_documents_is_refused_before_any_upstream_call(
    signing: Any, phone_api: VirtualSpApi
) -> None:
    client = phone_login(phone_api)
    tokens = post(client, "/sign/attachments/", {"count": 21}).json()["requests"]
    calls = dict(phone_api.calls)
    response = start(client, tokens, mode="qr")
    assert_refused(response, "mobile_batch_too_large")
    assert response.status_code == 400
    assert phone_api.calls == calls
    assert set(SignatureRequest.objects.values_list("outcome", flat=True)) == {"pending"}


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("other_data", "signature_invalid"),  # a signature over other bytes
        ("other_person", "signer_mismatch"),  # another citizen's (mobile) certificate
        ("card_cert", "mobile_certificate_required"),  # a card certificate on this path
        ("foreign_cert", "untrusted_issuer"),
        ("bad_checksum", "mobile_checksum_invalid"),  # a wrong idp_checksum
    ],
)
def test_forged_or_wrong_answers_are_refused(
    signing: Any, phone_api: VirtualSpApi, fault: str, code: str
) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    transaction = started(client, row.token)
    phone_api.fault = fault
    phone_api.approve(id_number=ALICE_ID)
    assert_refused(until_done(client, "/moica/sign/mobile/status/", transaction), code)
    if fault != "bad_checksum":  # the result was MOI's: the request is used up
        assert SignatureRequest.objects.get(pk=row.pk).outcome == code


def test_revoked_mobile_certificate(signing: Any, phone_api: VirtualSpApi) -> None:
    signing.MOICA_AUTH_REVOCATION = {"checker": "tests.mobile_fixtures.revoking_checker"}
    client = phone_login(phone_api)
    row = open_request(client)
    # Revoked after the login, before the signature.
    REVOKED.add(phone_api.phone(ALICE_ID).signing.certificate.serial_number)
    transaction = started(client, row.token)
    phone_api.approve(id_number=ALICE_ID)
    response = until_done(client, "/moica/sign/mobile/status/", transaction)
    assert_refused(response, "certificate_revoked")


def test_request_past_its_lifetime(signing: Any, phone_api: VirtualSpApi, clock: Any) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    transaction = started(client, row.token)
    clock.advance(121)
    phone_api.approve(id_number=ALICE_ID)
    response = until_done(client, "/moica/sign/mobile/status/", transaction)
    assert_refused(response, "signing_request_expired")
    assert SignatureRequest.objects.get(pk=row.pk).outcome == "signing_request_expired"
    # Nor can an expired request be started.
    row2 = open_request(client)
    clock.advance(121)
    assert_refused(start(client, row2.token), "signing_request_expired")


def test_a_card_login_cannot_sign_with_the_phone(
    signing: Any, phone_api: VirtualSpApi, cards: Any
) -> None:
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    row = open_request(client)
    calls = dict(phone_api.calls)
    assert_refused(start(client, row.token), "mobile_sign_login_required")
    assert phone_api.calls == calls


def test_another_id_number_rings_no_phone(signing: Any, phone_api: VirtualSpApi) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    calls = dict(phone_api.calls)
    assert_refused(start(client, row.token, id_number=BOB_ID), "id_number_mismatch")
    assert phone_api.calls == calls and not phone_api.pending(BOB_ID)


def test_another_session_cannot_use_the_transaction_or_the_request(
    signing: Any, phone_api: VirtualSpApi
) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    transaction = started(client, row.token)
    other = phone_login(phone_api)  # the same citizen, another browser
    assert_refused(start(other, row.token), "signing_request_unknown")
    phone_api.approve(id_number=ALICE_ID)
    response = post(other, "/moica/sign/mobile/status/", {"transaction": transaction})
    assert_refused(response, "session_mismatch")
    assert until_done(client, "/moica/sign/mobile/status/", transaction).json()["ok"] is True


def test_push_limits_of_the_login_apply(signing: Any, phone_api: VirtualSpApi) -> None:
    signing.MOICA_AUTH_MOBILE = {
        **signing.MOICA_AUTH_MOBILE,
        "push_limits": {"per_id": 2, "id_window": 600, "per_ip": 100, "ip_window": 600},
        "max_pending_per_session": 10,
    }
    client = phone_login(phone_api)  # the login's push is the first of two
    row = open_request(client)
    assert start(client, row.token).status_code == 200
    response = start(client, row.token)
    assert_refused(response, "mobile_push_limited")
    assert response.status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"request": 5, "id_number": ALICE_ID},
        {"requests": [], "id_number": ALICE_ID},
        {"requests": ["x" * 20, "x" * 20], "id_number": ALICE_ID},
        {"request": "y" * 20},
        {"request": "y" * 20, "id_number": ALICE_ID, "mode": "telepathy"},
        {"requests": ["y" * 20, "z" * 20], "id_number": ALICE_ID, "mode": "push"},
    ],
)
def test_bad_start_bodies_are_4xx_json(
    signing: Any, phone_api: VirtualSpApi, body: dict[str, Any]
) -> None:
    client = phone_login(phone_api)
    response = post(client, "/moica/sign/mobile/start/", body)
    assert response["Content-Type"].startswith("application/json")
    assert 400 <= response.status_code < 500, response.content


def test_without_a_login_nothing_starts(signing: Any, phone_api: VirtualSpApi) -> None:
    client = Client()
    client.get("/moica/session/")
    assert_refused(start(client, "z" * 32), "signing_request_unknown")
    status = post(client, "/moica/sign/mobile/status/", {"transaction": "t" * 43})
    assert status.json()["code"] == "mobile_transaction_unknown"


class Rewriting(RequestsTransport):
    """The real transport, with MOI's ATH-02 success answer rewritten by ``rewrite`` and
    its idp_checksum made again with the service key: an authentic-looking answer that
    is incomplete (what a MOI-side bug would send)."""

    def __init__(self, phone_api: VirtualSpApi, rewrite: Any) -> None:
        super().__init__()
        self.phone_api = phone_api
        self.rewrite = rewrite

    def post_json(
        self, url: str, body: Mapping[str, Any], *, timeout: tuple[float, float]
    ) -> tuple[int, bytes]:
        code, raw = super().post_json(url, body, timeout=timeout)
        answer = json.loads(raw)
        if url.endswith("getAthOrSignResult") and answer["error_code"] == "0":
            result = self.rewrite(answer["result"])
            signed = result.get("signed_response") or "".join(result.get("signed_response_set", []))
            result["idp_checksum"] = self.phone_api.idp_checksum(
                "ATH-02",
                {
                    "transaction_id": body["transaction_id"],
                    "error_code": "0",
                    "hashed_id_num": result["hashed_id_num"],
                    "signed_response": signed,
                },
            )
            raw = json.dumps({**answer, "result": result}).encode()
        return code, raw


def _one_signature_short(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "signed_response_set": result["signed_response_set"][:-1]}


@pytest.mark.parametrize(
    ("rewrite", "code"),
    [
        (
            lambda r: {**r, "signed_response_set": r["signed_response_set"][:-1]},
            "mobile_result_mismatch",
        ),
        (lambda r: {k: v for k, v in r.items() if k != "cert"}, "malformed_signature"),
    ],
)
def test_an_incomplete_batch_answer_is_refused(
    signing: Any, phone_api: VirtualSpApi, rewrite: Any, code: str
) -> None:
    client = phone_login(phone_api)
    tokens = post(client, "/sign/attachments/", {"count": 2}).json()["requests"]
    source = mobile_source(get_services())
    real = source.client.transport
    source.client.transport = Rewriting(phone_api, rewrite)
    try:
        transaction = started(client, tokens, mode="qr")
        phone_api.approve(id_number=ALICE_ID)
        response = until_done(client, "/moica/sign/mobile/status/", transaction)
    finally:
        source.client.transport = real
    assert_refused(response, code)
    # Both requests are used up and say why.
    assert set(SignatureRequest.objects.values_list("outcome", flat=True)) == {code}


def test_login_and_signing_transactions_do_not_mix(signing: Any, phone_api: VirtualSpApi) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    signing_handle = started(client, row.token)
    login = post(client, "/moica/mobile/start/", {"id_number": ALICE_ID, "mode": "push"})
    login_handle = login.json()["transaction"]
    phone_api.approve(id_number=ALICE_ID)  # the login's request
    phone_api.approve(id_number=ALICE_ID)  # the signature's
    # A login handle finishes no signature, and a signing handle no login.
    refused = post(client, "/moica/sign/mobile/status/", {"transaction": login_handle})
    assert refused.json()["code"] == "mobile_transaction_unknown"
    refused = post(client, "/moica/mobile/status/", {"transaction": signing_handle})
    assert refused.json()["code"] == "mobile_transaction_unknown"
    assert until_done(client, "/moica/sign/mobile/status/", signing_handle).json()["ok"] is True


def test_start_and_status_need_the_csrf_token(signing: Any, phone_api: VirtualSpApi) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    client.handler.enforce_csrf_checks = True
    calls = dict(phone_api.calls)
    for url, body in (
        ("/moica/sign/mobile/start/", {"request": row.token, "id_number": ALICE_ID}),
        ("/moica/sign/mobile/status/", {"transaction": "t" * 43}),
    ):
        response = client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 403, response.content
        assert response["Content-Type"].startswith("application/json")
    assert phone_api.calls == calls


def test_a_batch_cannot_be_pushed(signing: Any, phone_api: VirtualSpApi) -> None:
    """ATH-04 has no push: a batch goes by QR code or app link; nothing rings."""
    client = phone_login(phone_api)
    tokens = post(client, "/sign/attachments/", {"count": 2}).json()["requests"]
    calls = dict(phone_api.calls)
    assert_refused(start(client, tokens, mode="push"), "malformed_request")
    assert phone_api.calls == calls


def test_an_enabled_mode_is_required_before_anything_else(
    signing: Any, phone_api: VirtualSpApi
) -> None:
    client = phone_login(phone_api)
    row = open_request(client)
    response = start(client, row.token, mode="app2app")  # not among this site's modes
    assert_refused(response, "malformed_request")
    assert response.status_code == 400


def test_web01_is_not_a_signing_mode(signing: Any, phone_api: VirtualSpApi) -> None:
    signing.MOICA_AUTH_MOBILE = {**signing.MOICA_AUTH_MOBILE, "modes": ["push", "qr", "web"]}
    client = phone_login(phone_api)
    row = open_request(client)
    calls = dict(phone_api.calls)
    response = start(client, row.token, mode="web")
    assert_refused(response, "malformed_request")
    assert response.status_code == 400 and phone_api.calls == calls


def test_app_link_mode_signs_through_the_ticket(
    signing: Any, phone_api: VirtualSpApi, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    signing.MOICA_AUTH_MOBILE = {**signing.MOICA_AUTH_MOBILE, "modes": ["push", "mweb2app"]}
    client = phone_login(phone_api)
    row = open_request(client)
    response = start(client, row.token, mode="mweb2app")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["app_link"].startswith("mobilemoica://moica.moi.gov.tw/w2a/verifySign?sp_ticket=")
    phone_api.approve(phone_api.scan(body["sp_ticket"]).ticket_id)
    done = until_done(client, "/moica/sign/mobile/status/", body["transaction"])
    assert done.json()["ok"] is True, done.content
    verify(SignedApplication.objects.get().evidence, pki, tsa_ids)


def test_pkcs7_from_the_phone(
    signing: Any, phone_api: VirtualSpApi, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    signing.MOICA_AUTH_MOBILE = {**signing.MOICA_AUTH_MOBILE, "sign_type": "PKCS#7"}
    client = phone_login(phone_api)
    row = open_request(client)
    done = sign_with_phone(phone_api, client, row.token)
    assert done.json()["ok"] is True, done.content
    record = json.loads(SignedApplication.objects.get().evidence)
    assert record["signature_type"] == "PKCS7" and record["channel"]["sign_type"] == "PKCS#7"
    verify(json.dumps(record), pki, tsa_ids)
