"""Fixtures of the mobile tests: a started virtual SP API, settings pointing at it, and a
mobile credential source wired to the real challenge service and login verifier.

Import the fixtures by name: ``from tests.mobile_fixtures import vsp_fixture, …``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from moica_auth.challenge import ChallengeService
from moica_auth.exceptions import RevocationUnavailable
from moica_auth.mobile.client import RequestsTransport, SpApiClient
from moica_auth.mobile.settings import MobileSettings, parse_mobile_settings
from moica_auth.mobile.source import MobileCredentialSource
from moica_auth.revocation.policy import RevocationChecker, RevocationPolicy, RevocationRule
from moica_auth.revocation.types import CertStatus, SourceName
from moica_auth.stores import KeyValueStore, MemoryStore
from moica_auth.testing.pki import FIXED_TIME, TestPKI, default_pki, make_id_number
from moica_auth.testing.virtual_sp import VirtualSpApi
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig

AT = FIXED_TIME
ORIGIN = "https://portal.example.gov.tw"
CITIZEN = make_id_number("mobile-citizen")
OTHER = make_id_number("mobile-other", letter="B")
NO_PHONE = make_id_number("mobile-no-phone", letter="C")
HASH_KEY = b"mobile-test-hash-key-0123456789ab"


@functools.cache
def trust() -> TrustStore:
    p = default_pki()
    return TrustStore.from_certificates(p.anchors, p.intermediates)


@dataclass
class TableSource:
    """A revocation source answering from a table of revoked serials (the source protocol
    the CRL and OCSP sources implement), so the real RevocationChecker runs on it."""

    name: SourceName = "crl"
    revoked: set[int] = field(default_factory=set)
    down: bool = False

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        if self.down:
            raise RevocationUnavailable("table down")
        if certificate.serial_number in self.revoked:
            return CertStatus(
                status="revoked",
                source="crl",
                revoked_at=AT - timedelta(days=1),
                reason="key_compromise",
            )
        return CertStatus(
            status="good", source="crl", this_update=AT, next_update=AT + timedelta(days=1)
        )


#: Serials :func:`revoking_checker` reports as revoked (tests add and clear them).
REVOKED: set[int] = set()


def revoking_checker(**_: Any) -> RevocationChecker:
    """For ``MOICA_AUTH_REVOCATION = {"checker": "tests.mobile_fixtures.revoking_checker"}``:
    the real checker over :data:`REVOKED`."""
    return RevocationChecker(
        policy=RevocationPolicy(order=("crl",), intermediates=RevocationRule.NEVER),
        sources={"crl": TableSource(revoked=REVOKED)},
    )


class ReplayingTransport(RequestsTransport):
    """The real transport that records MOI's first successful ATH-02 answer and, once
    ``replay`` is set, answers every ATH-02 with it: an attacker on the path replaying an
    earlier login's result."""

    def __init__(self) -> None:
        super().__init__()
        self.replay = False
        self.recorded: list[bytes] = []

    def post_json(
        self, url: str, body: Mapping[str, Any], *, timeout: tuple[float, float]
    ) -> tuple[int, bytes]:
        status, raw = super().post_json(url, body, timeout=timeout)
        if url.endswith("getAthOrSignResult"):
            if self.replay and self.recorded:
                return 200, self.recorded[0]
            if json.loads(raw)["error_code"] == "0":
                self.recorded.append(raw)
        return status, raw


@pytest.fixture(name="phone_api", scope="module")
def phone_api_fixture(pki: TestPKI) -> Iterator[VirtualSpApi]:
    """The virtual SP API with phones for the Django tests' ALICE and BOB."""
    from tests.django_fixtures import ALICE_ID, BOB_ID

    with VirtualSpApi(pki=pki) as server:
        server.register_phone(ALICE_ID, name="測試愛麗絲")
        server.register_phone(BOB_ID, name="測試鮑伯")
        yield server


@pytest.fixture(name="vsp", scope="module")
def vsp_fixture() -> Iterator[VirtualSpApi]:
    with VirtualSpApi() as server:
        server.register_phone(CITIZEN)
        server.register_phone(OTHER, name="李小華")
        yield server


@pytest.fixture(autouse=True)
def _reset_faults(vsp: VirtualSpApi) -> Iterator[None]:
    yield
    vsp.fault = None


def mobile_settings(vsp: VirtualSpApi, **extra: Any) -> MobileSettings:
    raw = vsp.settings(
        **{
            "poll_interval": 0.2,
            "retries": 1,
            "read_timeout": 3.0,
            "modes": ["push", "qr", "app2app"],
            **extra,
        }
    )
    return parse_mobile_settings(raw, allow_fast_polling=True)


@pytest.fixture(name="client")
def client_fixture(vsp: VirtualSpApi) -> SpApiClient:
    return SpApiClient(mobile_settings(vsp))


@pytest.fixture(name="revoked")
def revoked_fixture() -> TableSource:
    return TableSource()


def make_source(
    vsp: VirtualSpApi,
    *,
    store: KeyValueStore | None = None,
    revocation: TableSource | None = None,
    **extra: Any,
) -> MobileCredentialSource:
    settings = mobile_settings(vsp, **extra)
    shared = store if store is not None else MemoryStore()
    checker = RevocationChecker(
        policy=RevocationPolicy(order=("crl",), intermediates=RevocationRule.NEVER),
        sources={"crl": revocation or TableSource()},
    )
    return MobileCredentialSource(
        client=SpApiClient(settings),
        challenges=ChallengeService(
            shared, origin=ORIGIN, ttl=settings.time_limit + 30, binding_key=HASH_KEY
        ),
        verifier=LoginVerifier(VerifierConfig(trust=trust(), revocation=checker)),
        store=shared,
        hash_key=HASH_KEY,
    )
