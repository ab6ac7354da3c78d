"""MoicaMiddleware: request.moica, ordering, async, and logging out revoked certificates
(revocation through a real OCSP responder on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory

from moica_auth.exceptions import CertificateSuspended
from moica_auth.middleware import MoicaMiddleware
from moica_auth.models import LoginAttempt
from moica_auth.revocation.types import RevocationResult
from moica_auth.services import get_services
from moica_auth.testing.responders import ResponderServer
from tests.django_fixtures import (
    ALICE_ID,
    app_clock,
    assert_refused,
    login_with_card,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def responder(pki) -> Iterator[ResponderServer]:
    with ResponderServer(clock=app_clock) as server:
        for generation in ("G2", "G3"):
            ca, root = pki.moica(generation), pki.root(generation)
            server.add_ocsp(issuer=ca.certificate, signer=ca)
            server.add_ocsp(issuer=root.certificate, signer=root)
        yield server


@pytest.fixture
def revocation(moica_settings, responder) -> Iterator[ResponderServer]:
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["ocsp"],
        "ocsp_url": responder.url_for("/ocsp"),
        "timeout": 2.0,
    }
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 600
    responder.ocsp().clear()
    yield responder
    responder.ocsp().clear()
    responder.clear_faults()


def serial(card) -> int:
    return int(card.signing.certificate.serial_number)


def test_revoked_since_login_is_logged_out(revocation, cards, clock):
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    session = client.get("/moica/session/").json()
    assert session["authenticated"] and session["assurance"]["revocation"] == "ocsp"
    attempt = LoginAttempt.objects.get(outcome="ok")
    assert attempt.revocation_source == "ocsp" and attempt.revocation_checked_at == clock()
    revocation.set_status(
        serial(cards.alice), "revoked", revoked_at=clock(), reason="key_compromise"
    )
    # Within the interval nothing is asked.
    clock.advance(60)
    assert client.get("/moica/session/").json()["authenticated"] is True
    # After it (and after the OCSP cache's max age) the status is checked again.
    clock.advance(2 * 3600)
    assert client.get("/moica/session/").json() == {"authenticated": False}
    assert client.get("/card-only/").status_code == 302


def test_suspended_since_login_is_logged_out(revocation, cards, clock):
    client = Client()
    assert login_with_card(client, cards.bob).status_code == 200
    revocation.set_status(serial(cards.bob), "hold", revoked_at=clock())
    clock.advance(2 * 3600)
    assert client.get("/moica/session/").json() == {"authenticated": False}


def test_unreachable_responder_keeps_session(revocation, cards, clock):
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    revocation.set_fault("/ocsp", "http500")
    clock.advance(2 * 3600)
    assert client.get("/moica/session/").json()["authenticated"] is True


def test_login_refused_for_revoked_and_suspended(revocation, cards, clock):
    revocation.set_status(serial(cards.alice), "revoked", revoked_at=clock() - timedelta(days=1))
    assert_refused(login_with_card(Client(), cards.alice), "certificate_revoked", 403)
    revocation.set_status(serial(cards.bob), "hold", revoked_at=clock() - timedelta(days=1))
    assert_refused(login_with_card(Client(), cards.bob), "certificate_suspended", 403)


def test_login_fails_closed_when_responder_down(revocation, moica_settings, cards):
    moica_settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 2, "cert_failures": 1}
    revocation.set_fault("/ocsp", "http500")
    for _ in range(3):
        assert_refused(login_with_card(Client(), cards.alice), "revocation_unavailable", 503)
    # An outage is not the citizen's failure: nothing was locked meanwhile.
    revocation.clear_faults()
    assert login_with_card(Client(), cards.alice).status_code == 200


def test_request_moica_is_lazy_identity(moica_settings, cards):
    client = Client()
    assert client.get("/card-only/").status_code == 302
    assert login_with_card(client, cards.alice).status_code == 200
    assert client.get("/card-only/").json() == {"ok": True, "name": cards.alice.name}


def test_requires_authentication_middleware():
    middleware = MoicaMiddleware(lambda request: HttpResponse())
    with pytest.raises(ImproperlyConfigured):
        middleware(RequestFactory().get("/"))


def test_wrong_order_in_settings_is_refused(settings):
    settings.MIDDLEWARE = [
        "moica_auth.middleware.MoicaMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    with pytest.raises(ImproperlyConfigured):
        MoicaMiddleware(lambda request: HttpResponse())


def test_async_capable(moica_settings, cards):
    async def get_response(request):
        return HttpResponse()

    assert iscoroutinefunction(MoicaMiddleware(get_response))
    assert not iscoroutinefunction(MoicaMiddleware(lambda request: HttpResponse()))
    response = async_to_sync(AsyncClient().get)("/moica/session/")
    assert response.status_code == 200 and response.json() == {"authenticated": False}


def test_crl_revocation_through_default_checker(moica_settings, responder, pki, cards, clock):
    ca = pki.moica("G3")
    url = responder.publish_crl(
        "/crl/django-g3.crl",
        pki.make_crl(issuer=ca, this_update=clock(), number=2026010200).public_bytes(
            serialization.Encoding.DER
        ),
    )
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["crl"],
        "crl_urls": [url],
        "crl_urls_from_issuers": False,
        "intermediates": "never",
    }
    refresher = get_services().revocation.sources["crl"].refresher
    assert refresher.refresh(url).ok
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    assert client.get("/moica/session/").json()["assurance"]["revocation"] == "crl"
    revoked = pki.make_crl(
        issuer=ca,
        this_update=clock(),
        number=2026010201,
        revoked=[(serial(cards.alice), clock(), x509.ReasonFlags.key_compromise)],
    )
    responder.publish_crl("/crl/django-g3.crl", revoked.public_bytes(serialization.Encoding.DER))
    assert refresher.refresh(url).ok
    assert_refused(login_with_card(Client(), cards.alice), "certificate_revoked", 403)
    clock.advance(3601)
    assert client.get("/moica/session/").json() == {"authenticated": False}


def test_recheck_uses_intermediates_carried_by_the_signature(moica_settings, pki, cards, clock):
    moica_settings.MOICA_AUTH_INTERMEDIATES = []
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 60
    client = Client()
    response = login_with_card(
        client, cards.alice, sign_kwargs={"extra_certificates": [pki.moica("G3").certificate]}
    )
    assert response.status_code == 200, response.content
    clock.advance(61)
    assert client.get("/moica/session/").json()["authenticated"] is True
    # The certificate expires while the session lives on: the re-check ends it.
    clock.now = cards.alice.signing.certificate.not_valid_after_utc + timedelta(seconds=1)
    assert client.get("/moica/session/").json() == {"authenticated": False}


class RefuseEverything:
    """A custom checker (``MOICA_AUTH_REVOCATION["checker"]``): every leaf is on hold."""

    def check(self, chain, *, at):
        raise CertificateSuspended("custom checker", reason="certificate_hold")


def refuse_everything(*, store, trust, settings):
    assert settings.order == ("ocsp", "crl")
    return RefuseEverything()


def test_custom_checker_from_settings(moica_settings, cards):
    moica_settings.MOICA_AUTH_REVOCATION = {
        "checker": "tests.test_django_middleware.refuse_everything"
    }
    data = assert_refused(login_with_card(Client(), cards.alice), "certificate_suspended", 403)
    assert data["reason"] == "certificate_hold"


class FailsOnRecheck:
    """A checker that trusts every certificate until ``broken``, then crashes (a bug)."""

    broken = False

    def check(self, chain, *, at):
        if FailsOnRecheck.broken:
            raise RuntimeError("bug in a revocation checker")
        return RevocationResult(status="good", source="custom", checked_at=at)


def fails_on_recheck(*, store, trust, settings):
    return FailsOnRecheck()


def test_unexpected_recheck_error_logs_out(moica_settings, cards, clock):
    moica_settings.MOICA_AUTH_REVOCATION = {
        "checker": "tests.test_django_middleware.fails_on_recheck"
    }
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 60
    FailsOnRecheck.broken = False
    client = Client()
    response = login_with_card(client, cards.alice)
    assert response.status_code == 200, response.content
    FailsOnRecheck.broken = True
    try:
        clock.advance(61)
        response = client.get("/moica/session/")
    finally:
        FailsOnRecheck.broken = False
    assert response.status_code == 200
    assert response.json() == {"authenticated": False}


@pytest.mark.parametrize("path", ["/async/", "/async-mixin/"])
def test_revoked_since_login_async_view(revocation, cards, clock, path):
    client = Client()
    assert login_with_card(client, cards.alice, id_number=ALICE_ID).status_code == 200
    async_client = AsyncClient()
    async_client.cookies = client.cookies
    assert async_to_sync(async_client.get)(path).json()["ok"] is True
    revocation.set_status(serial(cards.alice), "revoked", revoked_at=clock())
    clock.advance(2 * 3600)
    response = async_to_sync(async_client.get)(path, headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json()["code"] == "login_required"


def test_policy_tightened_since_login_ends_the_session(moica_settings, cards, clock):
    # Only "status unknown right now" keeps a session; any other refusal ends it.
    moica_settings.MOICA_AUTH_RECHECK_INTERVAL = 60
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    moica_settings.MOICA_AUTH_POLICY_OIDS = ["1.3.6.1.4.1.99999.1"]
    clock.advance(61)
    assert client.get("/moica/session/").json() == {"authenticated": False}
