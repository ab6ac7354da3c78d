"""Fixtures for the ID confirmation service tests: keys, certificates, a running server.

The relying party's and the service's certificates are self-signed test certificates
valid 2025–2030; the clock is pinned to :data:`AT` on both sides. The registry holds
made-up people: every ID number here is synthetic (valid check digit, nobody's number).
Fixtures ``confirmation_server`` (healed for each test) and ``confirmation_client``;
``tests/conftest.py`` registers this module as a plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from moica_auth.identity.confirmation import ConfirmationClient
from moica_auth.identity.id_number import checksum_digit
from moica_auth.testing.confirmation_server import ConfirmationServer

AT = datetime(2026, 6, 1, tzinfo=UTC)
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2030, 1, 1, tzinfo=UTC)


def make_id(prefix9: str) -> str:
    return prefix9 + checksum_digit(prefix9)


ID_MATCH = make_id("A12345678")  # A123456789
ID_NOT_ACTIVATED = make_id("B20000000")
ID_EXPIRED = make_id("C10000000")
ID_REVOKED = make_id("D20000000")
ID_OTHER_CARD = make_id("E10000000")
ID_UNKNOWN = make_id("F20000000")

SERIAL_MATCH = "0000000000000001"
SERIAL_NOT_ACTIVATED = "0000000000000002"
SERIAL_EXPIRED = "0000000000000003"
SERIAL_REVOKED = "0000000000000004"
SERIAL_OTHER = "0000000000000005"
SERIAL_UNKNOWN = "00000000000000ZZ"

BIRTH_MATCH = date(1971, 1, 1)

REGISTRY = {
    (SERIAL_MATCH, ID_MATCH): (BIRTH_MATCH, 0),
    (SERIAL_NOT_ACTIVATED, ID_NOT_ACTIVATED): (date(1980, 2, 29), 3),
    (SERIAL_EXPIRED, ID_EXPIRED): (None, 4),
    (SERIAL_REVOKED, ID_REVOKED): (date(1990, 12, 31), 5),
    (SERIAL_OTHER, ID_OTHER_CARD): (date(2000, 1, 1), 0),
}


def self_signed(name: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .sign(key, hashes.SHA256())
    )


class Party:
    def __init__(self, name: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = self_signed(name, self.key)


@pytest.fixture(name="rp", scope="session")
def rp_fixture() -> Party:
    return Party("moica-auth test relying party")


@pytest.fixture(name="service", scope="session")
def service_fixture() -> Party:
    return Party("moica-auth test confirmation service")


@pytest.fixture(name="stranger", scope="session")
def stranger_fixture() -> Party:
    return Party("moica-auth unregistered party")


@pytest.fixture(name="confirmation_server_module", scope="module")
def confirmation_server_module_fixture(rp: Party, service: Party) -> Iterator[ConfirmationServer]:
    with ConfirmationServer(
        service_cert=service.cert,
        service_key=service.key,
        clients=[rp.cert],
        registry=REGISTRY,
        at=AT,
    ) as server:
        yield server


@pytest.fixture(name="confirmation_server")
def confirmation_server_fixture(
    confirmation_server_module: ConfirmationServer,
) -> Iterator[ConfirmationServer]:
    """The module's server, with faults and the request log cleared for each test."""
    server = confirmation_server_module
    server.faults.clear()
    server.received.clear()
    yield server
    server.faults.clear()


@pytest.fixture(name="confirmation_client")
def confirmation_client_fixture(
    confirmation_server: ConfirmationServer, rp: Party, service: Party
) -> ConfirmationClient:
    return ConfirmationClient(
        confirmation_server.url,
        client_cert=rp.cert,
        client_key=rp.key,
        service_cert=service.cert,
        timeout=5,
    )
