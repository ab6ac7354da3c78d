"""One settings path for revocation (issue #9 item 3): ``MOICA_AUTH_REVOCATION`` is parsed
once, and in one process the ``moica_revocation`` command's refresher and the login
path's CRL source are one object over one index. A real CRL server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management import CommandError, call_command
from django.test import Client

from moica_auth.revocation.crl import key_id
from moica_auth.services import get_services
from moica_auth.testing.responders import ResponderServer
from tests.django_fixtures import (
    app_clock,
    assert_refused,
    login_with_card,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def store_kind() -> str:
    return "memory"


@pytest.fixture(scope="module")
def crl_server() -> Iterator[ResponderServer]:
    with ResponderServer(clock=app_clock) as server:
        yield server


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def test_command_and_login_path_share_one_refresher_and_index(
    moica_settings: Any, crl_server: ResponderServer, pki: Any, cards: Any, clock: Any
) -> None:
    ca = pki.moica("G3")
    url = crl_server.publish_crl(
        "/crl/one-index-g3.crl", _der(pki.make_crl(issuer=ca, this_update=clock(), number=41))
    )
    # MOICA G3 declares its issuer's CRL: the intermediate is checked as well.
    root_url = crl_server.publish_crl(
        "/crl/one-index-grca-g3.crl",
        _der(pki.make_crl(issuer=pki.root("G3"), this_update=clock(), number=7)),
    )
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["crl"],
        "crl_urls": [url, root_url],
        "crl_urls_from_issuers": False,
    }
    services = get_services()
    refresher = services.crl_refresher
    assert refresher is not None
    # The login path's CRL source reads the refresher's own index.
    source = services.revocation.sources["crl"]
    assert source.refresher is refresher and source.store is refresher.store
    # Nothing installed yet: the login fails closed (no download on the login path).
    assert_refused(login_with_card(Client(), cards.alice), "revocation_unavailable", 503)

    out = StringIO()
    call_command("moica_revocation", "refresh", stdout=out)
    assert "installed" in out.getvalue()
    # The command used the same object: what it installed, the next login reads.
    assert get_services().crl_refresher is refresher
    client = Client()
    assert login_with_card(client, cards.alice).status_code == 200
    out = StringIO()
    call_command("moica_revocation", "status", stdout=out)
    assert "number=41" in out.getvalue()
    assert key_id(ca.certificate) in out.getvalue()

    crl_server.publish_crl(
        "/crl/one-index-g3.crl",
        _der(
            pki.make_crl(
                issuer=ca,
                this_update=clock(),
                number=42,
                revoked=[
                    (
                        cards.alice.signing.certificate.serial_number,
                        clock(),
                        x509.ReasonFlags.key_compromise,
                    )
                ],
            )
        ),
    )
    call_command("moica_revocation", "refresh", stdout=StringIO())
    assert_refused(login_with_card(Client(), cards.alice), "certificate_revoked", 403)


def test_command_reports_failures_and_needs_a_crl_source(
    moica_settings: Any, crl_server: ResponderServer
) -> None:
    bad = crl_server.publish_crl("/crl/garbage.crl", b"garbage")
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["crl"],
        "crl_urls": [bad],
        "crl_urls_from_issuers": False,
    }
    with pytest.raises(CommandError):
        call_command("moica_revocation", "refresh", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("moica_revocation", "status", stdout=out)
    assert "failing" in out.getvalue() and "crl_invalid" in out.getvalue()
    moica_settings.MOICA_AUTH_REVOCATION = {"order": ["ocsp"]}
    with pytest.raises(CommandError):
        call_command("moica_revocation", "refresh", stdout=StringIO())
