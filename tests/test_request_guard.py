"""Every malformed body is a 4xx (JSON on the moica endpoints), never a 500 (issue #8
items 4 and 6): int-conversion limit, nesting depth, too many fields, unknown charsets,
broken multipart; through the test client and under a real gunicorn."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, RequestFactory

from moica_auth.models import LoginAttempt
from moica_auth.request_guard import RequestBodyGuardMiddleware
from tests.django_fixtures import (
    assert_refused,
    csrf_header,
)
from tests.redis_server import free_port

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent
ENDPOINTS = ["/moica/login/", "/moica/challenge/", "/moica/logout/"]
FORM_UTF16 = "application/x-www-form-urlencoded; charset=utf-16"
FORM_LATIN1 = "application/x-www-form-urlencoded; charset=latin-1"

# (content type, body): bodies Django's parsers raise on when request.POST is read. Text
# bodies are encoded in the declared charset (by the test client, and by _post below).
HOSTILE_FORMS: dict[str, tuple[str, str | bytes]] = {
    "utf-16": (FORM_UTF16, "a=1"),
    "latin-1": (FORM_LATIN1, "nonce=\u00e9"),
    "multipart-no-boundary": ("multipart/form-data", b"--x\r\n"),
    "multipart-empty-boundary": ("multipart/form-data; boundary=", b"--\r\n"),
    "multipart-huge-boundary": ("multipart/form-data; boundary=" + "b" * 5000, b"--b\r\n"),
    "too-many-fields": ("application/x-www-form-urlencoded", b"&".join([b"a=1"] * 1500)),
    "multipart-huge-part-header": (
        "multipart/form-data; boundary=zz",
        b'--zz\r\nContent-Disposition: form-data; name="a"\r\nX: '
        + b"h" * 20000
        + b"\r\n\r\nv\r\n--zz--\r\n",
    ),
}


def csrf_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.get("/moica/session/")
    return client


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("kind", sorted(HOSTILE_FORMS))
def test_hostile_form_bodies_are_json_4xx_on_moica_endpoints(moica_settings, endpoint, kind):
    content_type, body = HOSTILE_FORMS[kind]
    client = csrf_client()
    response = client.post(endpoint, body, content_type=content_type, headers=csrf_header(client))
    assert 400 <= response.status_code < 500, (kind, response.status_code)
    assert response["Content-Type"].startswith("application/json"), response.content
    assert response.json()["ok"] is False


def test_an_integer_over_the_conversion_limit_is_a_400_not_a_503(moica_settings, caplog):
    client = csrf_client()
    body = '{"nonce": "x", "signature": ' + "1" * 5000 + "}"
    with caplog.at_level(logging.ERROR, logger="moica_auth"):
        response = client.post(
            "/moica/login/", body, content_type="application/json", headers=csrf_header(client)
        )
    assert_refused(response, "malformed_request", 400)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not LoginAttempt.objects.filter(outcome="login_unavailable").exists()


def test_deep_nesting_is_a_400(moica_settings):
    client = csrf_client()
    body = "[" * 5000 + "]" * 5000  # past Python's recursion limit, under the body limit
    response = client.post(
        "/moica/login/", body, content_type="application/json", headers=csrf_header(client)
    )
    assert_refused(response, "malformed_request", 400)


def test_guard_middleware_refuses_site_wide_plain_text_or_json(settings):
    settings.ROOT_URLCONF = "tests.guard_urls"
    factory = RequestFactory()

    def view(request: Any) -> Any:
        request.POST  # noqa: B018 - a view that reads the form
        raise AssertionError("the guard must answer first")

    guard = RequestBodyGuardMiddleware(view)
    content_type, body = HOSTILE_FORMS["utf-16"]
    page = guard(factory.post("/i18n/setlang/", body, content_type=content_type))
    assert page.status_code == 400 and page["Content-Type"].startswith("text/plain")
    api = guard(
        factory.post("/x/", body, content_type=content_type, headers={"Accept": "application/json"})
    )
    assert api.status_code == 400 and json.loads(api.content)["code"] == "malformed_request"


def test_guard_passes_good_bodies_to_the_view():
    factory = RequestFactory()
    seen: list[str] = []

    def view(request: Any) -> Any:
        seen.append(request.POST["a"])
        from django.http import HttpResponse

        return HttpResponse("ok")

    guard = RequestBodyGuardMiddleware(view)
    response = guard(factory.post("/x/", b"a=1", content_type="application/x-www-form-urlencoded"))
    assert response.status_code == 200 and seen == ["1"]


@pytest.mark.parametrize("status", [400, 403, 404, 500])
def test_example_site_error_views_never_raise_on_an_unreadable_body(status):
    from example_site.portal import views

    handler = {
        400: views.bad_request,
        403: views.permission_denied,
        404: views.page_not_found,
        500: views.server_error,
    }[status]
    content_type, body = HOSTILE_FORMS["utf-16"]
    request = RequestFactory().post("/household/verify/", body, content_type=content_type)
    response = handler(request) if status == 500 else handler(request, Exception("x"))
    assert response.status_code == status


def test_example_site_transcript_check_refuses_a_huge_integer():
    from example_site.household.transcripts import TranscriptRejected, verify_transcript

    with pytest.raises(TranscriptRejected) as caught:
        verify_transcript(b'{"format": ' + b"9" * 5000 + b"}", anchors=[], at=None)  # type: ignore[arg-type]
    assert caught.value.reason == "not_a_transcript"


# --- under gunicorn ---------------------------------------------------------------------


def _serve(guard: bool) -> Iterator[int]:
    port = free_port()
    env = dict(
        os.environ, DJANGO_SETTINGS_MODULE="tests.guard_settings", GUARD="1" if guard else "0"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "tests.guard_wsgi:application",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/moica/session/")
                conn.getresponse().read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(
    name="gunicorn_port", scope="module", params=[True, False], ids=["guard", "noguard"]
)
def gunicorn_port_fixture(request: pytest.FixtureRequest) -> Iterator[tuple[int, bool]]:
    for port in _serve(bool(request.param)):
        yield port, bool(request.param)


def _post(port: int, path: str, content_type: str, body: str | bytes) -> tuple[int, str, bytes]:
    if isinstance(body, str):
        body = body.encode(content_type.rsplit("charset=", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/moica/session/")
    first = conn.getresponse()
    first.read()
    cookie = first.getheader("Set-Cookie", "")
    token = cookie.split("csrftoken=", 1)[1].split(";", 1)[0]
    conn.request(
        "POST",
        path,
        body=body,
        headers={
            "Content-Type": content_type,
            "Cookie": f"csrftoken={token}",
            "X-CSRFToken": token,
            "Origin": f"http://127.0.0.1:{port}",
            "Referer": f"http://127.0.0.1:{port}/",
        },
    )
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type", ""), response.read()


@pytest.mark.parametrize("charset_kind", ["utf-16", "latin-1"])
def test_charset_form_post_under_gunicorn_is_a_4xx(gunicorn_port, charset_kind):
    port, guarded = gunicorn_port
    content_type, body = HOSTILE_FORMS[charset_kind]
    for path in ENDPOINTS:
        status, kind, content = _post(port, path, content_type, body)
        assert 400 <= status < 500, (path, status, content[:200])
        assert kind.startswith("application/json"), (path, kind)
    if guarded:
        for path in ("/i18n/setlang/", "/admin/login/"):
            status, _, content = _post(port, path, content_type, body)
            assert 400 <= status < 500, (path, status, content[:200])
