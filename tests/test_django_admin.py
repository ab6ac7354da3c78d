"""Trust anchors (moica_trust, admin upload, effective trust store), audit, system checks."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils.datastructures import MultiValueDict
from django.utils.translation import override

from moica_auth.admin import TrustAnchorForm
from moica_auth.anchors import add_official
from moica_auth.audit import prune
from moica_auth.models import LoginAttempt, TrustAnchor
from moica_auth.testing.pki import FIXED_TIME
from moica_auth.validation.trust import OFFICIAL_CA_FINGERPRINTS, OFFICIAL_CA_URLS
from tests.django_fixtures import (
    assert_refused,
    login_with_card,
)

pytestmark = pytest.mark.django_db


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def run(*args: str) -> str:
    out = StringIO()
    with override("en"):  # messages are matched in English below
        call_command("moica_trust", *args, stdout=out)
    return out.getvalue()


def test_db_anchors_are_the_trust_store_and_changes_apply(moica_settings, cards, pki, tmp_path):
    moica_settings.MOICA_AUTH_TRUST_ANCHORS = []
    moica_settings.MOICA_AUTH_INTERMEDIATES = []
    (tmp_path / "root.pem").write_bytes(pem(pki.root("G3").certificate))
    (tmp_path / "moica.der").write_bytes(der(pki.moica("G3").certificate))
    assert "added" in run("add", str(tmp_path / "root.pem"))
    assert "added" in run("add", str(tmp_path / "moica.der"))
    assert "already present" in run("add", str(tmp_path / "root.pem"))
    listing = run("list")
    assert "root, enabled" in listing and "intermediate, enabled" in listing
    assert login_with_card(Client(), cards.alice).status_code == 200
    # Disabling the root (as the admin would) takes effect at once.
    root = TrustAnchor.objects.get(is_root=True)
    root.enabled = False
    root.save()
    # No anchor left: the app fails closed as misconfigured.
    assert_refused(Client().post("/moica/challenge/"), "configuration_error", 500)
    run("remove", str(root.pk))
    assert TrustAnchor.objects.count() == 1
    with pytest.raises(CommandError, match="no trust anchor"):
        run("remove", str(root.pk))


def test_anchor_disabled_by_another_process_is_distrusted_here(moica_settings, cards, pki, clock):
    # Another worker's admin, or `manage.py moica_trust` (another process), changes the
    # table: no post_save signal reaches this process. QuerySet.update() sends none.
    moica_settings.MOICA_AUTH_TRUST_ANCHORS = [pem(pki.root("G2").certificate).decode()]
    for generation in ("G2", "G3"):
        TrustAnchor.objects.create(
            **TrustAnchor.fields_from_certificate(pki.root(generation).certificate)
        )
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 600
    session = Client()
    assert login_with_card(session, cards.alice).status_code == 200  # G3, from the DB
    TrustAnchor.objects.filter(
        sha256=TrustAnchor.fields_from_certificate(pki.root("G3").certificate)["sha256"]
    ).update(enabled=False)
    assert_refused(login_with_card(Client(), cards.alice), "untrusted_issuer", 403)
    # The session that logged in through it ends at its next re-check.
    clock.advance(601)
    assert session.get("/moica/session/").json() == {"authenticated": False}
    assert login_with_card(Client(), cards.bob).status_code == 200  # G2, from settings
    TrustAnchor.objects.update(enabled=True)
    assert login_with_card(Client(), cards.alice).status_code == 200


def test_add_refuses_leaf_certificate(moica_settings, cards, tmp_path):
    path = tmp_path / "leaf.pem"
    path.write_bytes(pem(cards.alice.signing.certificate))
    with pytest.raises(CommandError, match="not a CA certificate"):
        run("add", str(path))
    assert not TrustAnchor.objects.exists()


def test_add_refuses_expired_ca(moica_settings, pki, tmp_path):
    ca = pki.issue_leaf(
        issuer=pki.root("G3"),
        subject=x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Old CA")]),
        label="expired-ca",
        extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)],
        not_before=FIXED_TIME - timedelta(days=800),
        not_after=FIXED_TIME - timedelta(days=1),
    )
    path = tmp_path / "old.pem"
    path.write_bytes(pem(ca.certificate))
    with pytest.raises(CommandError, match="expired on"):
        run("add", str(path))


def test_add_refuses_garbage_and_missing_files(moica_settings, tmp_path):
    path = tmp_path / "junk.pem"
    path.write_bytes(b"not a certificate")
    with pytest.raises(CommandError, match="not a PEM or DER"):
        run("add", str(path))
    with pytest.raises(CommandError, match="cannot read"):
        run("add", str(tmp_path / "absent.pem"))


@pytest.mark.realdata
def test_add_official_from_folder_matches_by_fingerprint(moica_settings, shared_data, tmp_path):
    # Files renamed and re-encoded to DER: matching is by fingerprint, not by name.
    for i, name in enumerate(("GRCA-G2.pem", "GRCA-G3.pem", "MOICA-G2.pem", "MOICA-G3.pem")):
        cert = x509.load_pem_x509_certificate((shared_data / "anchors" / name).read_bytes())
        (tmp_path / f"file{i}.bin").write_bytes(der(cert))
    (tmp_path / "notes.txt").write_text("hello")
    out = run("add-official", "--from", str(tmp_path))
    for name in ("GRCA-G2", "GRCA-G3", "MOICA-G2", "MOICA-G3"):
        assert f"{name}: added" in out
    stored = set(TrustAnchor.objects.values_list("sha256", flat=True))
    assert stored == {
        OFFICIAL_CA_FINGERPRINTS[n] for n in ("GRCA-G2", "GRCA-G3", "MOICA-G2", "MOICA-G3")
    }
    assert TrustAnchor.objects.filter(is_root=True).count() == 2
    assert "present" in run("add-official", "--from", str(shared_data / "anchors"))


def test_add_official_refuses_lookalikes(moica_settings, pki, tmp_path):
    (tmp_path / "GRCA-G3.pem").write_bytes(pem(pki.root("G3").certificate))
    with pytest.raises(CommandError, match="could not be added"):
        run("add-official", "--from", str(tmp_path))
    assert not TrustAnchor.objects.exists()


def test_admin_upload_form(moica_settings, pki, cards):
    upload = SimpleUploadedFile("root.cer", der(pki.root("G2").certificate))
    form = TrustAnchorForm(data={"enabled": True}, files=MultiValueDict({"upload": [upload]}))
    assert form.is_valid(), form.errors
    row = form.save()
    assert row.is_root and row.source == "upload" and len(row.sha256) == 64
    leaf = SimpleUploadedFile("leaf.pem", pem(cards.alice.signing.certificate))
    form = TrustAnchorForm(data={"enabled": True}, files=MultiValueDict({"upload": [leaf]}))
    with override("en"):
        assert not form.is_valid() and "not a CA" in str(form.errors)
    form = TrustAnchorForm(data={"enabled": True}, files=MultiValueDict())
    assert not form.is_valid()


def test_admin_pages_render(moica_settings, cards, pki):
    moica_settings.ROOT_URLCONF = "tests.django_admin_urls"
    admin = get_user_model().objects.create_superuser("admin", "a@example.org", "pw")
    client = Client()
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    TrustAnchor.objects.create(**TrustAnchor.fields_from_certificate(pki.root("G3").certificate))
    for url in (
        "/admin/moica_auth/trustanchor/",
        "/admin/moica_auth/trustanchor/add/",
        "/admin/moica_auth/loginattempt/",
        "/admin/moica_auth/citizenidentity/",
    ):
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/moica_auth/loginattempt/add/").status_code == 403


# --- audit -----------------------------------------------------------------------------


def test_audit_prune(moica_settings, cards, clock):
    login_with_card(Client(), cards.alice)
    login_with_card(Client(), cards.alice, id_number="A123")
    assert LoginAttempt.objects.count() == 2
    old = LoginAttempt.objects.order_by("pk")[0]
    LoginAttempt.objects.filter(pk=old.pk).update(created_at=clock() - timedelta(days=400))
    assert prune() == 1
    out = StringIO()
    call_command("moica_audit", "prune", "--days", "0", stdout=out)
    assert "deleted 0" in out.getvalue()
    assert LoginAttempt.objects.count() == 1


# --- system checks ---------------------------------------------------------------------


def ids(**_: object) -> set[str]:
    return {m.id for m in run_checks() if m.id and m.id.startswith("moica_auth.")}


def test_checks_pass_when_configured(moica_settings):
    moica_settings.MOICA_AUTH_ORIGIN = "https://portal.example.gov.tw"
    assert ids() == {"moica_auth.W001"}  # revocation is off in the test settings


def test_check_origin(moica_settings):
    moica_settings.MOICA_AUTH_ORIGIN = None
    assert "moica_auth.E001" in ids()
    moica_settings.MOICA_AUTH_ORIGIN = "https://portal.example/path"
    assert "moica_auth.E001" in ids()
    moica_settings.MOICA_AUTH_ORIGIN = "http://portal.example"
    assert "moica_auth.E002" in ids()
    moica_settings.MOICA_AUTH_ORIGIN = "http://localhost:8000"
    assert not {"moica_auth.E001", "moica_auth.E002"} & ids()


def test_check_anchors(moica_settings, pki):
    moica_settings.MOICA_AUTH_TRUST_ANCHORS = []
    assert "moica_auth.E003" in ids()
    TrustAnchor.objects.create(**TrustAnchor.fields_from_certificate(pki.root("G3").certificate))
    assert "moica_auth.E003" not in ids()
    moica_settings.MOICA_AUTH_TRUST_ANCHORS = ["/nonexistent/root.pem"]
    assert "moica_auth.E004" in ids()


def test_check_revocation_soft_fail(moica_settings):
    moica_settings.MOICA_AUTH_REVOCATION = {"soft_fail": True}
    assert "moica_auth.W002" in ids()


def test_check_redis_unreachable(moica_settings):
    moica_settings.MOICA_AUTH_REDIS_URL = "redis://127.0.0.1:1/0"
    assert "moica_auth.E005" in ids()


def test_check_middleware_order_and_backend(moica_settings):
    moica_settings.MIDDLEWARE = [
        "moica_auth.middleware.MoicaMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    assert "moica_auth.E006" in ids()
    moica_settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    assert "moica_auth.E007" in ids()


def test_check_derived_hash_key(moica_settings):
    moica_settings.MOICA_AUTH_HASH_KEY = None
    assert "moica_auth.W003" in ids()


def test_check_opener_policy_that_severs_the_hipki_popup(moica_settings):
    moica_settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        *moica_settings.MIDDLEWARE,
    ]
    moica_settings.SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
    assert "moica_auth.W005" in ids()
    moica_settings.SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin-allow-popups"
    assert "moica_auth.W005" not in ids()


@pytest.fixture
def file_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def local_get(base: str):
    """``requests.get`` with the official URLs redirected to the local server."""

    def get(url: str, *, timeout: float) -> requests.Response:
        return requests.get(f"{base}/{url.rsplit('/', 1)[1]}", timeout=timeout)

    return get


def test_add_official_download_refuses_wrong_fingerprints(moica_settings, pki, file_server):
    base, folder = file_server
    for url in OFFICIAL_CA_URLS.values():
        (folder / url.rsplit("/", 1)[1]).write_bytes(der(pki.root("G3").certificate))
    results = add_official(get=local_get(base))
    assert {r.status for r in results} == {"missing"}
    assert all("fingerprint does not match" in r.detail for r in results)
    assert not TrustAnchor.objects.exists()


def test_add_official_download_reports_http_errors(moica_settings, file_server):
    base, _ = file_server
    results = add_official(get=local_get(base), names=["GRCA-G3"])
    assert [(r.name, r.status) for r in results] == [("GRCA-G3", "missing")]
    assert "HTTPError" in results[0].detail


@pytest.mark.realdata
def test_add_official_download(moica_settings, shared_data, file_server):
    base, folder = file_server
    for name, url in OFFICIAL_CA_URLS.items():
        cert = x509.load_pem_x509_certificate(
            (shared_data / "anchors" / f"{name}.pem").read_bytes()
        )
        (folder / url.rsplit("/", 1)[1]).write_bytes(der(cert))
    results = add_official(get=local_get(base), include_legacy=True)
    assert {r.name: r.status for r in results} == dict.fromkeys(OFFICIAL_CA_URLS, "added")
    assert TrustAnchor.objects.filter(source="official").count() == 5


def test_fresh_deployment_can_migrate_then_add_anchors(pki, tmp_path):
    """`migrate` must not be blocked by "no trust anchor", nor `moica_trust` that fixes it."""
    env = {
        **os.environ,
        "MOICA_TEST_DB": str(tmp_path / "db.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "tests.django_fresh_settings",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    migrate = manage("migrate", "--no-input")
    assert migrate.returncode == 0, migrate.stderr
    assert "moica_auth.W004" in migrate.stderr + migrate.stdout
    check = manage("check")
    assert check.returncode != 0 and "moica_auth.E003" in check.stderr
    root = tmp_path / "root.pem"
    root.write_bytes(pem(pki.root("G3").certificate))
    added = manage("moica_trust", "add", str(root))
    assert added.returncode == 0, added.stderr
    check = manage("check")
    assert check.returncode == 0, check.stderr
