"""Renewal fetches, checks and records the CRLs of the TSA path it covers.

Real parts: the soft card signs, a real OCSP responder checks it, real RFC 3161 TSAs
answer on 127.0.0.1, and a real CRL responder (:class:`ResponderServer`) serves the CRLs
the TSA certificates' cRLDistributionPoints name. The renewed record is re-verified
offline by ``python -m moica_auth evidence verify``.

The signing TSA ``cdp-tsa`` sits under the CA ``cdp-ca`` (under the test TSA root); both
carry an http CRL distribution point on the local responder. The renewal TSA answers
"in 2035" with a certificate that outlives ``cdp-tsa``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from moica_auth.exceptions import (
    CrlInvalid,
    EvidenceInvalid,
    RevocationUnavailable,
    TimestampError,
)
from moica_auth.signing.archive import renew
from moica_auth.signing.evidence import verify_evidence
from moica_auth.signing.timestamp import TsaClient
from moica_auth.signing.validation_crls import ValidationCrlFetcher
from moica_auth.testing.pki import CertifiedKey, CitizenCard, TestPKI
from moica_auth.testing.responders import ResponderServer
from moica_auth.testing.tsa import TsaIdentities, TsaServer, tsa_identities
from moica_auth.verifier import LoginVerifier
from tests.ocsp_fixtures import CLIENT_TIMEOUT, NOW
from tests.test_signing import card_sign, decide, make_request
from tests.test_signing import verifier_fixture as verifier_fixture

Y2035 = datetime(2035, 6, 1, tzinfo=UTC)
LEAF_CRL = "/crl/cdp-ca.crl"
CA_CRL = "/crl/tsa-root.crl"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cdp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _issue(
    pki: TestPKI,
    issuer: CertifiedKey,
    label: str,
    *,
    ca: bool,
    start: datetime,
    end: datetime,
    cdp: str | None,
) -> CertifiedKey:
    key = pki.key(f"tsa/{label}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"moica-auth TEST {label}"))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(pki.serial(f"tsa/{label}"))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            False,
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True
        )
    if cdp is not None:
        builder = builder.add_extension(_cdp(cdp), False)
    return CertifiedKey(builder.sign(issuer.private_key, hashes.SHA256()), key)


class Setup:
    def __init__(self, pki: TestPKI, ids: TsaIdentities, crl_server: ResponderServer) -> None:
        self.pki, self.ids, self.server = pki, ids, crl_server
        self.ca = _issue(
            pki,
            ids.root,
            "cdp-ca",
            ca=True,
            start=NOW - timedelta(days=30),
            end=datetime(2045, 1, 1, tzinfo=UTC),
            cdp=crl_server.url_for(CA_CRL),
        )
        self.tsa = _issue(
            pki,
            self.ca,
            "cdp-tsa",
            ca=False,
            start=NOW - timedelta(days=30),
            end=datetime(2036, 1, 1, tzinfo=UTC),
            cdp=crl_server.url_for(LEAF_CRL),
        )
        self.renewal = _issue(
            pki,
            ids.root,
            "cdp-renewal-2035",
            ca=False,
            start=datetime(2034, 1, 1, tzinfo=UTC),
            end=datetime(2041, 1, 1, tzinfo=UTC),
            cdp=None,
        )

    def crl(self, issuer: CertifiedKey, at: datetime, **kw: Any) -> bytes:
        kw.setdefault("this_update", at - timedelta(hours=1))
        kw.setdefault("next_update", at + timedelta(days=7))
        return self.pki.make_crl(issuer=issuer, **kw).public_bytes(serialization.Encoding.DER)

    def publish(self, at: datetime, *, leaf: bytes | None = None, ca: bytes | None = None) -> None:
        self.server.publish_crl(LEAF_CRL, leaf or self.crl(self.ca, at))
        self.server.publish_crl(CA_CRL, ca or self.crl(self.ids.root, at))
        self.server.clear_faults()
        self.server.reset_hits()


@pytest.fixture(scope="module", name="ids")
def ids_fixture(ocsp_pki: TestPKI) -> TsaIdentities:
    return tsa_identities(ocsp_pki)


@pytest.fixture(scope="module", name="crl_server")
def crl_server_fixture() -> Iterator[ResponderServer]:
    with ResponderServer() as server:
        yield server


@pytest.fixture(scope="module", name="setup")
def setup_fixture(ocsp_pki: TestPKI, ids: TsaIdentities, crl_server: ResponderServer) -> Setup:
    return Setup(ocsp_pki, ids, crl_server)


@pytest.fixture(scope="module", name="servers")
def servers_fixture(ids: TsaIdentities, setup: Setup) -> Iterator[dict[str, TsaServer]]:
    with (
        TsaServer(
            ids, clock=lambda: NOW, signer=setup.tsa, extra_certificates=[setup.ca.certificate]
        ) as first,
        TsaServer(ids, clock=lambda: Y2035, signer=setup.renewal) as later,
    ):
        yield {"first": first, "2035": later}


def client(server: TsaServer, ids: TsaIdentities) -> TsaClient:
    return TsaClient(url=server.url, anchors=[ids.root.certificate], timeout=CLIENT_TIMEOUT)


@pytest.fixture(name="record")
def record_fixture(
    card_g3: CitizenCard,
    verifier: LoginVerifier,
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
) -> dict[str, Any]:
    setup.publish(Y2035)
    request = make_request(card_g3)
    return decide(
        request, card_sign(card_g3, request), verifier, client(servers["first"], ids)
    ).evidence


def renew_2035(record: dict[str, Any], servers: Any, ids: TsaIdentities, **kw: Any) -> Any:
    return renew(record, tsa=client(servers["2035"], ids), at=Y2035, **kw)


def _pem(tmp_path: Any, name: str, cert: x509.Certificate) -> str:
    path = tmp_path / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_fetched_crls_are_recorded_and_verify_offline(
    tmp_path: Any,
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
    ocsp_pki: TestPKI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moica_auth import cli

    fetcher = ValidationCrlFetcher()
    renewed = renew_2035(record, servers, ids, fetch_crls=fetcher)
    recorded = renewed["archive"][0]["validation"]["crls"]
    assert len(recorded) == 2  # the TSA's CA's CRL and the root's CRL of that CA
    assert fetcher.fetched == 2 and not fetcher.without_cdp and not fetcher.unreachable
    issuers = {x509.load_der_x509_crl(base64.b64decode(c)).issuer for c in recorded}
    assert issuers == {setup.ca.certificate.subject, ids.root.certificate.subject}

    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(renewed, ensure_ascii=False), encoding="utf-8")
    verify = ["evidence", "verify", str(evidence), "--at", (Y2035 + timedelta(days=1)).isoformat()]
    for index, cert in enumerate(ocsp_pki.anchors):
        verify += ["--anchor", _pem(tmp_path, f"a{index}.pem", cert)]
    verify += ["--tsa-anchor", _pem(tmp_path, "tsa.pem", ids.root.certificate)]
    assert cli.main(verify) == cli.EXIT_OK
    assert '"crls": 2' in capsys.readouterr().out

    # The recorded CRLs are covered by the archive token: one byte changed is refused.
    tampered = json.loads(json.dumps(renewed))
    crl = tampered["archive"][0]["validation"]["crls"][0]
    tampered["archive"][0]["validation"]["crls"][0] = crl[:-6] + ("A" if crl[-6] != "A" else "B")
    tampered["archive"][0]["validation"]["crls"][0] += crl[-5:]
    with pytest.raises(EvidenceInvalid) as info:
        verify_evidence(
            json.dumps(tampered),
            anchors=ocsp_pki.anchors,
            tsa_anchors=[ids.root.certificate],
            at=Y2035 + timedelta(days=1),
        )
    assert str(info.value.data["field"]).startswith("archive[0].validation")


def test_a_crl_listing_the_tsa_certificate_refuses(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, setup: Setup
) -> None:
    revoked = setup.crl(
        setup.ca,
        Y2035,
        revoked=[(setup.tsa.certificate.serial_number, Y2035 - timedelta(days=2), None)],
    )
    setup.publish(Y2035, leaf=revoked)
    hits = servers["2035"].hits
    with pytest.raises(EvidenceInvalid) as info:
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    assert info.value.data["field"] == "crls"
    assert "revoked" in str(info.value.data["reason"])
    assert servers["2035"].hits == hits  # refused before the TSA was asked


def test_a_crl_listing_the_tsa_ca_refuses(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, setup: Setup
) -> None:
    revoked = setup.crl(
        ids.root,
        Y2035,
        revoked=[(setup.ca.certificate.serial_number, Y2035 - timedelta(days=2), None)],
    )
    setup.publish(Y2035, ca=revoked)
    with pytest.raises(EvidenceInvalid) as info:
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    assert info.value.data["field"] == "crls"


def test_unreachable_distribution_point_refuses_unless_allowed(
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
    crl_server: ResponderServer,
) -> None:
    setup.publish(Y2035)
    crl_server.set_fault(LEAF_CRL, "down")
    with pytest.raises(RevocationUnavailable):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    crl_server.set_fault(LEAF_CRL, "http500")
    with pytest.raises(RevocationUnavailable):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())

    fetcher = ValidationCrlFetcher(allow_unreachable=True)
    renewed = renew_2035(record, servers, ids, fetch_crls=fetcher)
    assert fetcher.unreachable == {crl_server.url_for(LEAF_CRL)}
    crls = renewed["archive"][0]["validation"]["crls"]
    assert len(crls) == 1  # only the CA's CRL, from the point that answered


def test_slow_distribution_point_is_cut_off(
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
    crl_server: ResponderServer,
) -> None:
    setup.publish(Y2035)
    crl_server.set_fault(LEAF_CRL, "slow")
    fetcher = ValidationCrlFetcher(timeout=0.3, total_timeout=0.6)
    with pytest.raises(RevocationUnavailable):
        renew_2035(record, servers, ids, fetch_crls=fetcher)


def test_oversize_crl_refuses(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, setup: Setup
) -> None:
    big = setup.crl(
        setup.ca,
        Y2035,
        revoked=[(10_000 + n, Y2035 - timedelta(days=3), None) for n in range(300)],
    )
    assert len(big) > 4096
    setup.publish(Y2035, leaf=big)
    with pytest.raises(CrlInvalid, match="limit"):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher(max_bytes=4096))
    # The same CRL within the bound is accepted: the size, not the content, refused it.
    assert renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())["archive"]


def test_crl_signed_by_another_key_refuses(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, setup: Setup
) -> None:
    forged = setup.crl(
        setup.ca, Y2035, signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    setup.publish(Y2035, leaf=forged)
    with pytest.raises(CrlInvalid):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    # Signed by the root (a CA of the path, but not the TSA certificate's issuer).
    setup.publish(Y2035, leaf=setup.crl(ids.root, Y2035))
    with pytest.raises(CrlInvalid):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())


def test_stale_crl_refuses(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, setup: Setup
) -> None:
    stale = setup.crl(
        setup.ca,
        Y2035,
        this_update=Y2035 - timedelta(days=3),
        next_update=Y2035 - timedelta(days=1),
    )
    setup.publish(Y2035, leaf=stale)
    with pytest.raises(CrlInvalid, match="nextUpdate"):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    future = setup.crl(setup.ca, Y2035, this_update=Y2035 + timedelta(days=1))
    setup.publish(Y2035, leaf=future)
    with pytest.raises(CrlInvalid, match="future"):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())


def test_crl_of_another_partition_refuses(
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
    crl_server: ResponderServer,
) -> None:
    other = setup.crl(setup.ca, Y2035, scope_url=crl_server.url_for("/crl/other-partition.crl"))
    setup.publish(Y2035, leaf=other)
    with pytest.raises(CrlInvalid, match="scope"):
        renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())
    own = setup.crl(setup.ca, Y2035, scope_url=crl_server.url_for(LEAF_CRL))
    setup.publish(Y2035, leaf=own)
    assert renew_2035(record, servers, ids, fetch_crls=ValidationCrlFetcher())["archive"]


def test_one_download_per_url_across_many_records(
    card_g3: CitizenCard,
    verifier: LoginVerifier,
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    setup: Setup,
    crl_server: ResponderServer,
) -> None:
    records = [record]
    for _ in range(2):
        request = make_request(card_g3)
        records.append(
            decide(
                request, card_sign(card_g3, request), verifier, client(servers["first"], ids)
            ).evidence
        )
    setup.publish(Y2035)
    fetcher = ValidationCrlFetcher()
    for one in records:
        renewed = renew_2035(one, servers, ids, fetch_crls=fetcher)
        assert len(renewed["archive"][0]["validation"]["crls"]) == 2
    assert crl_server.hits(LEAF_CRL) == 1 and crl_server.hits(CA_CRL) == 1
    assert fetcher.fetched == 2

    # A failure is kept too: a dead point costs one attempt per run, not one per row.
    crl_server.set_fault(LEAF_CRL, "down")
    crl_server.reset_hits()
    fetcher = ValidationCrlFetcher()
    for one in records:
        with pytest.raises(RevocationUnavailable):
            renew_2035(one, servers, ids, fetch_crls=fetcher)
    assert crl_server.hits(LEAF_CRL) <= 1
    assert fetcher.fetched == 1


def test_cli_fetches_by_default_and_the_flags(
    tmp_path: Any,
    record: dict[str, Any],
    ids: TsaIdentities,
    setup: Setup,
    crl_server: ResponderServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moica_auth import cli

    # The CLI renews "now" (the real clock): CRLs and the renewal TSA answer now.
    now = datetime.now(UTC)
    live_cert = _issue(
        setup.pki,
        ids.root,
        "cdp-cli-renewal",
        ca=False,
        start=NOW - timedelta(days=1),
        end=datetime(2045, 1, 1, tzinfo=UTC),
        cdp=None,
    )
    tsa_root = _pem(tmp_path, "tsa.pem", ids.root.certificate)
    evidence = tmp_path / "evidence.json"

    def run(*extra: str) -> tuple[int, dict[str, Any]]:
        evidence.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        args = ["evidence", "retimestamp", str(evidence), "--tsa", live.url]
        code = cli.main([*args, "--tsa-anchor", tsa_root, *extra])
        return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    with TsaServer(ids, signer=live_cert) as live:
        setup.publish(now)
        code, last = run()
        assert code == cli.EXIT_OK, last
        assert last["crls"] == 2 and last["crls_without_distribution_point"] == []

        crl_server.set_fault(CA_CRL, "down")
        code, last = run()
        assert code == cli.EXIT_REJECTED
        assert last["code"] == "revocation_unavailable"
        assert "archive" not in json.loads(evidence.read_text(encoding="utf-8"))

        code, last = run("--allow-unreachable-crl")
        assert code == cli.EXIT_OK, last
        assert last["crls"] == 1 and last["crls_unreachable"] == [crl_server.url_for(CA_CRL)]

        code, last = run("--no-fetch-crls")
        assert code == cli.EXIT_OK, last
        assert last["crls"] == 0 and last["crls_without_distribution_point"] is None


def test_a_tsa_clock_behind_the_crls_refuses(
    record: dict[str, Any], ids: TsaIdentities, setup: Setup
) -> None:
    # The CRLs were issued an hour before "now"; this TSA dates its token two hours
    # before: the record would not verify (a CRL after the token covering it).
    setup.publish(Y2035)
    behind = Y2035 - timedelta(hours=2)
    with TsaServer(ids, clock=lambda: behind, signer=setup.renewal) as late:
        with pytest.raises(TimestampError, match="before the CRLs"):
            renew(record, tsa=client(late, ids), at=Y2035, fetch_crls=ValidationCrlFetcher())
        # Without CRLs there is nothing it could predate: the same TSA renews.
        assert renew(record, tsa=client(late, ids), at=Y2035)["archive"]
