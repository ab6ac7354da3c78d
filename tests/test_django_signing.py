"""Signing an application end to end through :class:`SignFormMixin` and Django's test client.

The citizen logs in with the soft card, submits the form, sees the exact text, the soft
card signs it, a real local RFC 3161 TSA time-stamps the evidence, and the admin exports
evidence that the offline verifier accepts. Every refusal is a JSON 4xx.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.checks import Error
from django.test import Client

from moica_auth.models import SignatureRequest, SignedApplication
from moica_auth.signing.checks import check_signing_settings
from moica_auth.signing.evidence import verify_evidence
from moica_auth.testing.pki import CitizenCard, TestPKI
from moica_auth.testing.softcard import SoftCard
from moica_auth.testing.tsa import TsaIdentities, TsaServer, tsa_identities
from tests.django_fixtures import (
    CLOCK,
    assert_refused,
    login_with_card,
)

pytestmark = pytest.mark.django_db

FORM = {"parcel": "台北市中正區重慶段一小段 123 地號", "share": "1/2", "kind": "sale", "note": "無"}


@pytest.fixture(scope="module", name="tsa_ids")
def tsa_ids_fixture(pki: TestPKI) -> TsaIdentities:
    return tsa_identities(pki)


@pytest.fixture(scope="module", name="tsa_server")
def tsa_server_fixture(tsa_ids: TsaIdentities) -> Iterator[TsaServer]:
    with TsaServer(tsa_ids, clock=CLOCK) as server:
        yield server


@pytest.fixture(name="signing")
def signing_fixture(
    moica_settings: Any, tsa_server: TsaServer, tsa_ids: TsaIdentities
) -> Iterator[Any]:
    tsa_server.fault = None
    moica_settings.ROOT_URLCONF = "tests.django_signing_urls"
    moica_settings.MOICA_AUTH_SIGNING = {
        "LIFETIME": 120,
        "TSA_URL": tsa_server.url,
        "TSA_ANCHORS": [tsa_ids.root.certificate.public_bytes(serialization.Encoding.PEM).decode()],
        "TSA_TIMEOUT": 2.0,
        "REQUIRE_TIMESTAMP": True,
    }
    yield moica_settings
    tsa_server.fault = None


def logged_in_client(card: CitizenCard) -> Client:
    client = Client()
    response = login_with_card(client, card)
    assert response.status_code == 200, response.content
    return client


def submit_form(client: Client, url: str = "/sign/land/") -> Any:
    response = client.post(url, FORM)
    assert response.status_code == 200, response.content
    return response.context["signature_request"], response


def answer(card: CitizenCard, row: SignatureRequest) -> dict[str, Any]:
    if row.signature_type == "RAW":
        from moica_auth.testing.softcard import sign_response

        signed = sign_response(
            row.text.encode("utf-8"),
            private_key=card.signing.private_key,
            certificate=card.signing.certificate,
            card_number=card.card_number,
            signing_time=CLOCK(),
            signature_type="PKCS1",
        )
    else:
        signed = SoftCard(card, clock=CLOCK).sign(row.text.encode("utf-8"))
    return {
        "request": row.token,
        "signature": signed["signature"],
        "signature_type": row.signature_type,
        "certificate": signed["certb64"],
    }


def post_signature(client: Client, body: dict[str, Any], url: str = "/sign/land/") -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def test_sign_application_end_to_end_and_export_evidence(
    signing: Any, cards: Any, pki: TestPKI, tsa_ids: TsaIdentities, clock: Any
) -> None:
    client = logged_in_client(cards.alice)
    row, page = submit_form(client)
    html = page.content.decode()
    # What you see is what you sign: the page shows exactly the stored text.
    assert "土地標示: 台北市中正區重慶段一小段 123 地號" in row.text
    assert "登記原因: 買賣" in row.text
    assert cards.alice.id_number not in row.text
    assert "moica-auth-sign/1" in html and "土地標示" in html
    assert "簽署您的申請" in html  # zh-Hant first
    english = Client()
    english.cookies = client.cookies
    assert (
        "Sign your application"
        in english.post("/sign/land/", FORM, headers={"Accept-Language": "en"}).content.decode()
    )
    SignatureRequest.objects.exclude(pk=row.pk).delete()
    clock.advance(20)
    response = post_signature(client, answer(cards.alice, row))
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True and response.json()["timestamped"] is True
    application = SignedApplication.objects.get()
    assert application.application_id == row.application_id
    assert SignatureRequest.objects.get().outcome == "ok"

    admin = get_user_model().objects.create_superuser("auditor", "a@example.test", "pw-123456")
    admin_client = Client()
    admin_client.force_login(admin)
    exported = admin_client.get(f"/admin/moica_auth/signedapplication/{application.pk}/evidence/")
    assert exported.status_code == 200
    assert exported["Content-Disposition"].startswith("attachment;")
    report = verify_evidence(
        exported.content, anchors=pki.anchors, tsa_anchors=[tsa_ids.root.certificate]
    )
    assert report.application_id == row.application_id
    assert report.service == "土地登記線上聲明"
    page = admin_client.get(f"/admin/moica_auth/signedapplication/{application.pk}/change/")
    assert page.status_code == 200 and "土地標示" in page.content.decode()
    listing = admin_client.get("/admin/moica_auth/signaturerequest/")
    assert listing.status_code == 200

    # A second application, then export both as one zip.
    row2, _ = submit_form(client)
    assert post_signature(client, answer(cards.alice, row2)).status_code == 200
    action = admin_client.post(
        "/admin/moica_auth/signedapplication/",
        {
            "action": "export_evidence",
            "_selected_action": [str(a.pk) for a in SignedApplication.objects.all()],
        },
    )
    assert action["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(action.content)) as archive:
        assert len(archive.namelist()) == 2


def test_raw_signature_of_the_text_digest(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    row, page = submit_form(client, "/sign/land-raw/")
    tbs = page.context["hipki_request"]["tbs"]
    assert base64.b64decode(tbs)[-32:] != b""  # a DigestInfo, sent base64
    response = post_signature(client, answer(cards.alice, row), "/sign/land-raw/")
    assert response.status_code == 200, response.content


def test_refuses_replayed_signature_request(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    body = answer(cards.alice, row)
    assert post_signature(client, body).status_code == 200
    assert_refused(post_signature(client, body), "signing_request_reused", 409)
    assert SignedApplication.objects.count() == 1


def test_refuses_request_past_its_lifetime(signing: Any, cards: Any, clock: Any) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    clock.advance(121)
    assert_refused(post_signature(client, answer(cards.alice, row)), "signing_request_expired")
    assert SignatureRequest.objects.get().outcome == "signing_request_expired"


def test_refuses_another_citizens_certificate(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    assert_refused(post_signature(client, answer(cards.bob, row)), "signer_mismatch", 403)
    assert not SignedApplication.objects.exists()


def test_refuses_signature_over_other_bytes(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    body = answer(cards.alice, row)
    other = SoftCard(cards.alice, clock=CLOCK).sign(row.text.replace("1/2", "1/1").encode())
    body["signature"] = other["signature"]
    assert_refused(post_signature(client, body), "content_mismatch")


def test_refuses_a_request_of_another_session(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    thief = logged_in_client(cards.alice)  # same citizen, another session
    assert_refused(post_signature(thief, answer(cards.alice, row)), "signing_request_unknown", 404)
    assert SignatureRequest.objects.get().outcome == "pending"


def test_refuses_when_the_tsa_is_down_and_a_timestamp_is_required(
    signing: Any, cards: Any, tsa_server: TsaServer
) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    tsa_server.fault = "down"
    assert_refused(post_signature(client, answer(cards.alice, row)), "timestamp_error", 503)
    assert not SignedApplication.objects.exists()


def test_refuses_untrusted_tsa(signing: Any, cards: Any, tsa_server: TsaServer) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    tsa_server.fault = "untrusted"
    assert_refused(post_signature(client, answer(cards.alice, row)), "timestamp_untrusted", 503)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", json.dumps({"request": "x" * 20}).encode(), b"{" * 70000],
    ids=["not-json", "not-object", "missing-fields", "too-large"],
)
def test_bad_bodies_are_4xx(signing: Any, cards: Any, body: bytes) -> None:
    client = logged_in_client(cards.alice)
    response = client.post("/sign/land/", body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.json()["ok"] is False


def test_form_needs_a_card_login(signing: Any) -> None:
    response = Client().post("/sign/land/", FORM)
    assert response.status_code in (302, 401, 403)
    assert not SignatureRequest.objects.exists()


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ("not a dict", "E101"),
        ({"UNKNOWN": 1}, "E101"),
        ({"LIFETIME": 5}, "E102"),
        ({"MAX_TEXT_BYTES": 10}, "E103"),
        ({"SIGNATURE_TYPES": ["PKCS1"]}, "E104"),
        ({"TSA_URL": "http://tsa.test/", "TSA_ANCHORS": ["not a pem"]}, "E105"),
        ({"TSA_URL": "ftp://tsa.test/"}, "E106"),
        ({"TSA_URL": "http://tsa.test/"}, "E107"),
        ({"TSA_TIMEOUT": 0}, "E108"),
        ({"REQUIRE_TIMESTAMP": True}, "E109"),
    ],
)
def test_system_checks(settings: Any, value: Any, check: str) -> None:
    settings.MOICA_AUTH_SIGNING = value
    errors = check_signing_settings()
    assert [e.id for e in errors] == [f"moica_auth.{check}"]
    assert all(isinstance(e, Error) for e in errors)


def test_system_checks_pass_on_defaults(settings: Any) -> None:
    settings.MOICA_AUTH_SIGNING = None
    assert check_signing_settings() == []


def test_form_with_a_bidi_override_is_refused_before_signing(signing: Any, cards: Any) -> None:
    client = logged_in_client(cards.alice)
    response = client.post("/sign/land/", {**FORM, "note": "1/2\u202e2/1"})
    assert_refused(response, "signing_request_invalid", 400)
    assert not SignatureRequest.objects.exists()


# --- revocation at signing time, through the app's own revocation settings --------------


@pytest.fixture(scope="module", name="ocsp_server")
def ocsp_server_fixture(pki: TestPKI) -> Iterator[Any]:
    from moica_auth.testing.responders import ResponderServer

    with ResponderServer(clock=CLOCK) as server:
        for ca in (pki.moica_g2, pki.moica_g3):
            server.add_ocsp(issuer=ca.certificate, signer=ca, path="/ocsp")
        yield server


@pytest.fixture(name="signing_with_ocsp")
def signing_with_ocsp_fixture(signing: Any, ocsp_server: Any) -> Iterator[Any]:
    signing.MOICA_AUTH_REVOCATION = {
        "order": ["ocsp"],
        "ocsp_url": ocsp_server.url_for("/ocsp"),
        "intermediates": "never",
        "timeout": 2.0,
    }
    yield signing
    ocsp_server.ocsp("/ocsp").clear()


def test_signing_keeps_the_ocsp_response_it_used(
    signing_with_ocsp: Any, cards: Any, pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    assert post_signature(client, answer(cards.alice, row)).status_code == 200
    evidence = json.loads(SignedApplication.objects.get().evidence)
    (entry,) = evidence["revocation"]["entries"]
    assert entry["source"] == "ocsp" and entry["ocsp_response"]
    report = verify_evidence(
        json.dumps(evidence), anchors=pki.anchors, tsa_anchors=[tsa_ids.root.certificate]
    )
    assert "OCSP response re-verified" in report.revocation


def test_refuses_a_certificate_revoked_after_login(
    signing_with_ocsp: Any, cards: Any, ocsp_server: Any, clock: Any
) -> None:
    client = logged_in_client(cards.alice)
    row, _ = submit_form(client)
    ocsp_server.set_status(cards.alice.signing.certificate.serial_number, "revoked")
    clock.advance(5)
    assert_refused(post_signature(client, answer(cards.alice, row)), "certificate_revoked")
    assert SignatureRequest.objects.get().outcome == "certificate_revoked"
    assert not SignedApplication.objects.exists()
