"""Separate CRL signers from ``MOICA_AUTH_INTERMEDIATES`` (RFC 5280 §6.3.3 (f), issue #9
item 4): a non-CA certificate with keyUsage cRLSign, named like MOICA G3 and issued by
GRCA G3, signs MOICA G3's CRL. The server's refresher uses that CRL only after the signer
validates to the same anchors and GRCA's CRL (in the same index) says it is not revoked.
A real CRL server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.test import Client

from moica_auth.exceptions import ConfigurationError
from moica_auth.services import get_services
from moica_auth.testing.pki import CertifiedKey, TestPKI, key_usage
from moica_auth.testing.responders import ResponderServer
from tests.django_fixtures import (
    app_clock,
    assert_refused,
    login_with_card,
    pem_text,
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


def crl_signer(pki: TestPKI) -> CertifiedKey:
    root = pki.root("G3")
    key = pki.key("crl-signer-g3")
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return pki.issue_leaf(
        issuer=root,
        subject=pki.moica("G3").certificate.subject,
        label="crl-signer-g3",
        private_key=key,
        extensions=[
            (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski.value), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (key_usage(crl_sign=True), True),
        ],
    )


def _configure(
    moica_settings: Any, crl_server: ResponderServer, pki: TestPKI, clock: Any, *, revoked: bool
) -> tuple[str, str]:
    signer = crl_signer(pki)
    moica_settings.MOICA_AUTH_INTERMEDIATES = [
        *pem_text(pki.intermediates),
        *pem_text([signer.certificate]),
    ]
    tag = "revoked" if revoked else "good"
    root_crl = pki.make_crl(
        issuer=pki.root("G3"),
        this_update=clock(),
        number=11,
        revoked=[(signer.certificate.serial_number, clock(), x509.ReasonFlags.key_compromise)]
        if revoked
        else [],
    )
    root_url = crl_server.publish_crl(f"/crl/signers-{tag}-grca.crl", _der(root_crl))
    # MOICA G3's CRL, signed by the separate signer (its name, its AKI, its key).
    moica_url = crl_server.publish_crl(
        f"/crl/signers-{tag}-moica.crl",
        _der(pki.make_crl(issuer=signer, this_update=clock(), number=12)),
    )
    moica_settings.MOICA_AUTH_REVOCATION = {
        "order": ["crl"],
        "crl_urls": [root_url, moica_url],
        "crl_urls_from_issuers": False,
    }
    return root_url, moica_url


def test_crl_signed_by_a_valid_separate_signer_is_used(
    moica_settings: Any, crl_server: ResponderServer, pki: TestPKI, cards: Any, clock: Any
) -> None:
    _configure(moica_settings, crl_server, pki, clock, revoked=False)
    services = get_services()
    # The signer is no path link: the trust store holds only the CA certificates.
    assert len(services.trust.intermediates) == len(pki.intermediates)
    refresher = services.crl_refresher
    assert refresher is not None
    outcomes = refresher.refresh_all()
    assert [o.outcome for o in outcomes] == ["installed", "installed"], outcomes
    assert login_with_card(Client(), cards.alice).status_code == 200


def test_crl_signed_by_a_revoked_separate_signer_is_refused(
    moica_settings: Any, crl_server: ResponderServer, pki: TestPKI, cards: Any, clock: Any
) -> None:
    moica_settings.MOICA_AUTH_STORE_PREFIX = "moica-test:signers-revoked:"
    _configure(moica_settings, crl_server, pki, clock, revoked=True)
    refresher = get_services().crl_refresher
    assert refresher is not None
    root, moica = refresher.refresh_all()
    assert root.outcome == "installed"
    assert moica.outcome == "failed" and moica.error_code == "crl_invalid", moica
    assert_refused(login_with_card(Client(), cards.alice), "revocation_unavailable", 503)


def test_a_non_ca_intermediate_without_crl_sign_is_a_configuration_error(
    moica_settings: Any, cards: Any
) -> None:
    moica_settings.MOICA_AUTH_INTERMEDIATES = pem_text([cards.alice.signing.certificate])
    with pytest.raises(ConfigurationError):
        get_services()
