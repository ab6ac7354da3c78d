"""RevocationPolicy / RevocationChecker: source order, fallback, fail-closed, soft-fail.

The ordering rules are unit-tested with a scripted in-test source; the fallback from OCSP
to CRL is tested end to end with the real OcspSource, the real CrlSource and CrlRefresher,
and the real responders on 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from moica_auth.certificate import CitizenCertificate
from moica_auth.exceptions import (
    CertificateRevoked,
    CertificateSuspended,
    ConfigurationError,
    CrlInvalid,
    MoicaAuthError,
    OcspInvalid,
    RevocationStale,
    RevocationUnavailable,
)
from moica_auth.revocation.crl import CrlSource, HttpCrlFetcher, certificate_crl_urls
from moica_auth.revocation.ocsp import OcspSource
from moica_auth.revocation.policy import (
    RevocationChecker,
    RevocationPolicy,
    RevocationResult,
    RevocationRule,
    declares_status,
)
from moica_auth.revocation.refresh import CrlRefresher
from moica_auth.revocation.store import MemoryIndexStore
from moica_auth.revocation.types import CertStatus, SourceName
from moica_auth.testing.pki import CertifiedKey, CitizenCard, TestPKI
from moica_auth.testing.responders import ResponderServer
from moica_auth.validation.chain import ValidatedChain
from tests.ocsp_fixtures import (
    CLIENT_TIMEOUT,
    NOW,
    Clock,
)


def chain_of(*certs: x509.Certificate) -> ValidatedChain:
    return ValidatedChain(
        leaf=certs[0],
        chain=tuple(certs),
        citizen=CitizenCertificate.from_certificate(certs[0]),
        validated_at=NOW,
    )


def card_chain(card: CitizenCard) -> ValidatedChain:
    assert card.root is not None
    return chain_of(card.signing.certificate, card.issuer.certificate, card.root.certificate)


# --- an in-test source, ONLY for the ordering rules ----------------------------------------


@dataclass
class ScriptedSource:
    """Answers from a script: a CertStatus or an exception, per serial or for all."""

    name: SourceName
    default: CertStatus | MoicaAuthError
    per_serial: dict[int, CertStatus | MoicaAuthError] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)
    # Serials this source holds information about (IF_AVAILABLE); None: none at all.
    knows: frozenset[int] = frozenset()

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        return certificate.serial_number in self.knows

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        self.asked.append(certificate.serial_number)
        outcome = self.per_serial.get(certificate.serial_number, self.default)
        if isinstance(outcome, MoicaAuthError):
            raise outcome
        return outcome


def good(name: SourceName) -> CertStatus:
    return CertStatus(status="good", source=name, this_update=NOW, next_update=NOW)


def checker(*sources: ScriptedSource, **policy: object) -> RevocationChecker:
    order = policy.pop("order", tuple(s.name for s in sources))
    return RevocationChecker(
        policy=RevocationPolicy(order=order, **policy),  # type: ignore[arg-type]
        sources={s.name: s for s in sources},
    )


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order", [(), ("ldap",), ("ocsp", "ocsp"), ("crl", "ocsp", "crl"), ("OCSP",)]
)
def test_rejects_bad_order(order: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as info:
        RevocationPolicy(order=order)
    assert info.value.code == "configuration_error"


@pytest.mark.parametrize("order", [("ocsp", "crl"), ("crl", "ocsp"), ("crl",), ("ocsp",)])
def test_accepts_valid_orders(order: tuple[str, ...]) -> None:
    assert RevocationPolicy(order=order).order == order


def test_rejects_bad_timeout_and_grace() -> None:
    with pytest.raises(ConfigurationError):
        RevocationPolicy(timeout=0)
    with pytest.raises(ConfigurationError):
        RevocationPolicy(crl_grace=timedelta(hours=-1))


def test_checker_rejects_order_naming_a_missing_source() -> None:
    with pytest.raises(ConfigurationError) as info:
        RevocationChecker(
            policy=RevocationPolicy(order=("ocsp", "crl")),
            sources={"ocsp": ScriptedSource("ocsp", good("ocsp"))},
        )
    assert info.value.code == "configuration_error"


def test_checker_rejects_source_under_the_wrong_name() -> None:
    with pytest.raises(ConfigurationError):
        RevocationChecker(
            policy=RevocationPolicy(order=("ocsp",)),
            sources={"ocsp": ScriptedSource("crl", good("crl"))},
        )


def test_soft_fail_is_logged_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="moica_auth.revocation.policy"):
        RevocationPolicy(soft_fail=True)
    assert any("soft-fail" in r.getMessage().lower() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="moica_auth.revocation.policy"):
        RevocationPolicy()
    assert not caplog.records


# --- ordering rules (scripted sources) ----------------------------------------------------


def test_first_definitive_answer_wins(card_g3: CitizenCard) -> None:
    ocsp = ScriptedSource("ocsp", good("ocsp"))
    crl = ScriptedSource("crl", good("crl"))
    result = checker(ocsp, crl).check(card_chain(card_g3), at=NOW)
    assert result.status == "good"
    assert result.source == "ocsp"
    assert crl.asked == []


def test_naive_time_is_a_programming_error(card_g3: CitizenCard) -> None:
    # A naive datetime would be read in the server's local zone (astimezone) and the
    # sources would judge freshness at the wrong instant; refuse it like validate_chain.
    ocsp = ScriptedSource("ocsp", good("ocsp"))
    with pytest.raises(ValueError, match="timezone-aware"):
        checker(ocsp).check(card_chain(card_g3), at=NOW.replace(tzinfo=None))
    assert ocsp.asked == []


def test_falls_back_in_order(card_g3: CitizenCard) -> None:
    ocsp = ScriptedSource("ocsp", RevocationUnavailable("down"))
    crl = ScriptedSource("crl", good("crl"))
    result = checker(ocsp, crl).check(card_chain(card_g3), at=NOW)
    assert result.source == "crl"
    result = checker(crl, ocsp, order=("crl", "ocsp")).check(card_chain(card_g3), at=NOW)
    assert result.source == "crl"


def test_invalid_answer_falls_back(card_g3: CitizenCard) -> None:
    ocsp = ScriptedSource("ocsp", OcspInvalid("bad signature"))
    crl = ScriptedSource("crl", good("crl"))
    assert checker(ocsp, crl).check(card_chain(card_g3), at=NOW).source == "crl"


def test_revoked_stops_and_carries_data(card_g3: CitizenCard) -> None:
    when = NOW - timedelta(days=2)
    revoked = CertStatus(status="revoked", source="ocsp", revoked_at=when, reason="key_compromise")
    crl = ScriptedSource("crl", good("crl"))
    with pytest.raises(CertificateRevoked) as info:
        checker(ScriptedSource("ocsp", revoked), crl).check(card_chain(card_g3), at=NOW)
    err = info.value
    assert err.code == "certificate_revoked"
    assert err.data["reason"] == "key_compromise"
    assert err.data["revoked_at"] == when
    assert err.as_dict()["revoked_at"] == when.isoformat()
    assert crl.asked == []


def test_hold_is_suspended(card_g3: CitizenCard) -> None:
    hold = CertStatus(status="hold", source="crl", revoked_at=NOW, reason="certificate_hold")
    with pytest.raises(CertificateSuspended) as info:
        checker(ScriptedSource("crl", hold)).check(card_chain(card_g3), at=NOW)
    assert info.value.code == "certificate_suspended"
    assert info.value.data["reason"] == "certificate_hold"


def test_no_answer_fails_closed_with_each_sources_code(card_g3: CitizenCard) -> None:
    ocsp = ScriptedSource("ocsp", OcspInvalid("wrong nonce"))
    crl = ScriptedSource("crl", RevocationUnavailable("crl server down"))
    with pytest.raises(RevocationUnavailable) as info:
        checker(ocsp, crl).check(card_chain(card_g3), at=NOW)
    err = info.value
    assert err.code == "revocation_unavailable"
    assert err.data["sources"] == {"ocsp": "ocsp_invalid", "crl": "revocation_unavailable"}
    assert "crl server down" in err.detail  # the last source's detail is kept


def test_stale_crl_falls_back_then_says_stale(card_g3: CitizenCard) -> None:
    crl = ScriptedSource("crl", RevocationStale("past nextUpdate"))
    assert (
        checker(crl, ScriptedSource("ocsp", good("ocsp")), order=("crl", "ocsp"))
        .check(card_chain(card_g3), at=NOW)
        .source
        == "ocsp"
    )
    with pytest.raises(RevocationStale) as info:
        checker(ScriptedSource("ocsp", RevocationUnavailable("down")), crl).check(
            card_chain(card_g3), at=NOW
        )
    assert info.value.code == "revocation_stale"


def test_store_outage_behind_a_source_is_no_answer(card_g3: CitizenCard) -> None:
    from moica_auth.exceptions import StoreUnavailable

    crl = ScriptedSource("crl", StoreUnavailable("redis down"))
    result = checker(crl, ScriptedSource("ocsp", good("ocsp")), order=("crl", "ocsp")).check(
        card_chain(card_g3), at=NOW
    )
    assert result.source == "ocsp"


def test_soft_fail_returns_unknown_and_warns(
    card_g3: CitizenCard, caplog: pytest.LogCaptureFixture
) -> None:
    ocsp = ScriptedSource("ocsp", RevocationUnavailable("down"))
    crl = ScriptedSource("crl", CrlInvalid("bad"))
    with caplog.at_level(logging.WARNING, logger="moica_auth.revocation.policy"):
        result = checker(ocsp, crl, soft_fail=True).check(card_chain(card_g3), at=NOW)
    assert result.status == "unknown"
    assert result.source is None
    assert result.per_certificate == ()
    assert any("SOFT-FAIL" in r.getMessage() for r in caplog.records)


def test_soft_fail_still_refuses_revoked(card_g3: CitizenCard) -> None:
    revoked = CertStatus(status="revoked", source="crl", revoked_at=NOW, reason=None)
    ocsp = ScriptedSource("ocsp", RevocationUnavailable("down"))
    with pytest.raises(CertificateRevoked):
        checker(ocsp, ScriptedSource("crl", revoked), soft_fail=True).check(
            card_chain(card_g3), at=NOW
        )


# --- which certificates are checked --------------------------------------------------------


@pytest.fixture(scope="module")
def bare_intermediate(ocsp_pki: TestPKI) -> CertifiedKey:
    """A CA under GRCA G3 that publishes no status (no CRLDP, no AIA)."""
    root = ocsp_pki.grca_g3
    key = ocsp_pki.key("policy-tests/bare-ca")
    return ocsp_pki.issue_leaf(
        issuer=root,
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Bare test CA")]),
        label="policy-tests/bare-ca",
        private_key=key,
        extensions=[
            (
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root.private_key.public_key()),
                False,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (x509.BasicConstraints(ca=True, path_length=0), True),
        ],
    )


def test_leaf_and_publishing_intermediate_are_checked(card_g3: CitizenCard) -> None:
    assert declares_status(card_g3.issuer.certificate)
    ocsp = ScriptedSource("ocsp", good("ocsp"))
    result = checker(ocsp).check(card_chain(card_g3), at=NOW)
    assert ocsp.asked == [
        card_g3.signing.certificate.serial_number,
        card_g3.issuer.certificate.serial_number,
    ]
    assert len(result.per_certificate) == 2


def test_intermediate_without_crldp_or_aia_is_skipped(
    card_g3: CitizenCard, bare_intermediate: CertifiedKey, ocsp_pki: TestPKI
) -> None:
    assert not declares_status(bare_intermediate.certificate)
    ocsp = ScriptedSource("ocsp", good("ocsp"))
    chain = chain_of(
        card_g3.signing.certificate, bare_intermediate.certificate, ocsp_pki.grca_g3.certificate
    )
    checker(ocsp).check(chain, at=NOW)
    assert ocsp.asked == [card_g3.signing.certificate.serial_number]


def test_intermediates_never_checks_only_the_leaf(card_g3: CitizenCard) -> None:
    ocsp = ScriptedSource("ocsp", good("ocsp"))
    checker(ocsp, intermediates=RevocationRule.NEVER).check(card_chain(card_g3), at=NOW)
    assert ocsp.asked == [card_g3.signing.certificate.serial_number]


def test_undeclared_intermediate_is_checked_when_its_issuer_status_is_known(
    card_g3: CitizenCard, bare_intermediate: CertifiedKey, ocsp_pki: TestPKI
) -> None:
    # PKITS 4.4.2: the CA declares nothing, but a CRL of its issuer is in hand.
    serial = bare_intermediate.certificate.serial_number
    revoked = CertStatus(status="revoked", source="crl", revoked_at=NOW, reason="ca_compromise")
    crl = ScriptedSource(
        "crl", good("crl"), per_serial={serial: revoked}, knows=frozenset({serial})
    )
    chain = chain_of(
        card_g3.signing.certificate, bare_intermediate.certificate, ocsp_pki.grca_g3.certificate
    )
    with pytest.raises(CertificateRevoked) as info:
        checker(crl).check(chain, at=NOW)
    assert info.value.data["certificate"] == "intermediate"
    # IF_DECLARED does not look at what is known: the same chain passes.
    checker(crl, intermediates=RevocationRule.IF_DECLARED).check(chain, at=NOW)


def test_required_intermediate_without_any_status_fails_closed(
    card_g3: CitizenCard, bare_intermediate: CertifiedKey, ocsp_pki: TestPKI
) -> None:
    crl = ScriptedSource(
        "crl",
        good("crl"),
        per_serial={bare_intermediate.certificate.serial_number: RevocationUnavailable("none")},
    )
    chain = chain_of(
        card_g3.signing.certificate, bare_intermediate.certificate, ocsp_pki.grca_g3.certificate
    )
    checker(crl).check(chain, at=NOW)  # IF_AVAILABLE: nothing known, skipped
    with pytest.raises(RevocationUnavailable):
        checker(crl, intermediates=RevocationRule.REQUIRED).check(chain, at=NOW)


def test_known_but_unanswerable_intermediate_fails_closed(
    card_g3: CitizenCard, bare_intermediate: CertifiedKey, ocsp_pki: TestPKI
) -> None:
    serial = bare_intermediate.certificate.serial_number
    crl = ScriptedSource(
        "crl",
        good("crl"),
        per_serial={serial: RevocationStale("old CRL")},
        knows=frozenset({serial}),
    )
    chain = chain_of(
        card_g3.signing.certificate, bare_intermediate.certificate, ocsp_pki.grca_g3.certificate
    )
    with pytest.raises(RevocationStale):
        checker(crl).check(chain, at=NOW)


@pytest.mark.parametrize("bad", ["sometimes", "REQUIRED", 1])
def test_rejects_unknown_rules(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        RevocationPolicy(intermediates=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        RevocationPolicy(leaf=bad)  # type: ignore[arg-type]


def test_leaf_rule_cannot_be_never() -> None:
    with pytest.raises(ConfigurationError):
        RevocationPolicy(leaf=RevocationRule.NEVER)


def test_rules_accept_their_string_values() -> None:
    policy = RevocationPolicy(leaf="required", intermediates="if_declared")  # type: ignore[arg-type]
    assert policy.intermediates is RevocationRule.IF_DECLARED


def test_revoked_intermediate_is_refused(card_g3: CitizenCard) -> None:
    revoked = CertStatus(status="revoked", source="ocsp", revoked_at=NOW, reason="ca_compromise")
    ocsp = ScriptedSource(
        "ocsp", good("ocsp"), per_serial={card_g3.issuer.certificate.serial_number: revoked}
    )
    with pytest.raises(CertificateRevoked) as info:
        checker(ocsp).check(card_chain(card_g3), at=NOW)
    assert info.value.data["certificate"] == "intermediate"
    assert info.value.data["reason"] == "ca_compromise"


# --- end to end: real OCSP responder, real CRL source ---------------------------------------


@dataclass
class RealSources:
    ocsp: OcspSource
    crl: CrlSource
    refresher: CrlRefresher
    clock: Clock

    def checker(self, **policy: object) -> RevocationChecker:
        return RevocationChecker(
            policy=RevocationPolicy(**policy),  # type: ignore[arg-type]
            sources={"ocsp": self.ocsp, "crl": self.crl},
        )


@pytest.fixture
def real(ocsp_server: ResponderServer, ocsp_pki: TestPKI) -> Iterator[RealSources]:
    clock = Clock(NOW)
    index = MemoryIndexStore()
    refresher = CrlRefresher(
        fetcher=HttpCrlFetcher(connect_timeout=CLIENT_TIMEOUT, read_timeout=CLIENT_TIMEOUT),
        store=index,
        issuers=[*ocsp_pki.intermediates, *ocsp_pki.anchors],
        clock=clock,
    )
    yield RealSources(
        ocsp=OcspSource(timeout=CLIENT_TIMEOUT),
        crl=CrlSource(store=index, refresher=refresher, fetch_on_miss=True),
        refresher=refresher,
        clock=clock,
    )


def publish_crls(
    ocsp_server: ResponderServer,
    pki: TestPKI,
    card: CitizenCard,
    *,
    revoked: list[tuple[int, datetime, x509.ReasonFlags | None]] | None = None,
    this_update: datetime = NOW - timedelta(hours=1),
    next_update: datetime = NOW + timedelta(days=1),
) -> None:
    """The card's complete CRL and the GRCA CRL covering its MOICA CA."""
    assert card.root is not None
    complete = certificate_crl_urls(card.signing.certificate)[-1]
    crl = pki.make_crl(
        issuer=card.issuer, revoked=revoked or [], this_update=this_update, next_update=next_update
    )
    ocsp_server.publish_crl(complete.removeprefix(ocsp_server.url), crl.public_bytes(Encoding.DER))
    (grca_url,) = certificate_crl_urls(card.issuer.certificate)
    grca = pki.make_crl(issuer=card.root, this_update=this_update, next_update=next_update)
    ocsp_server.publish_crl(grca_url.removeprefix(ocsp_server.url), grca.public_bytes(Encoding.DER))


def test_good_by_ocsp_end_to_end(real: RealSources, card_g3: CitizenCard) -> None:
    result = real.checker().check(card_chain(card_g3), at=NOW)
    assert isinstance(result, RevocationResult)
    assert (result.status, result.source) == ("good", "ocsp")
    assert result.checked_at == NOW
    assert result.next_update == NOW + timedelta(hours=12)
    assert [a.source for a in result.per_certificate] == ["ocsp", "ocsp"]


def test_revoked_by_ocsp_end_to_end(
    real: RealSources, ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    when = NOW - timedelta(days=5)
    ocsp_server.set_status(
        card_g3.signing.certificate.serial_number,
        "revoked",
        revoked_at=when,
        reason="key_compromise",
    )
    with pytest.raises(CertificateRevoked) as info:
        real.checker().check(card_chain(card_g3), at=NOW)
    assert info.value.code == "certificate_revoked"
    assert info.value.data["reason"] == "key_compromise"
    assert info.value.data["revoked_at"] == when
    assert info.value.data["source"] == "ocsp"


def test_hold_by_ocsp_is_suspended_end_to_end(
    real: RealSources, ocsp_server: ResponderServer, card_g3: CitizenCard
) -> None:
    ocsp_server.set_status(card_g3.signing.certificate.serial_number, "hold", revoked_at=NOW)
    with pytest.raises(CertificateSuspended) as info:
        real.checker().check(card_chain(card_g3), at=NOW)
    assert info.value.code == "certificate_suspended"


def test_good_by_crl_after_ocsp_outage(
    real: RealSources, ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    publish_crls(ocsp_server, ocsp_pki, card_g3)
    ocsp_server.set_fault("/ocsp", "down")
    result = real.checker().check(card_chain(card_g3), at=NOW)
    assert (result.status, result.source) == ("good", "crl")
    assert ocsp_server.hits("/ocsp") == 2  # leaf and MOICA G3, both refused


def test_revoked_by_crl_after_ocsp_outage(
    real: RealSources, ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g2: CitizenCard
) -> None:
    when = NOW - timedelta(days=1)
    serial = card_g2.signing.certificate.serial_number
    publish_crls(
        ocsp_server, ocsp_pki, card_g2, revoked=[(serial, when, x509.ReasonFlags.key_compromise)]
    )
    ocsp_server.set_fault("/ocsp", "slow")
    with pytest.raises(CertificateRevoked) as info:
        real.checker().check(card_chain(card_g2), at=NOW)
    assert info.value.data["source"] == "crl"
    assert info.value.data["reason"] == "key_compromise"
    assert info.value.data["revoked_at"] == when


def test_unavailable_when_ocsp_and_crl_are_both_down(
    real: RealSources, ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    publish_crls(ocsp_server, ocsp_pki, card_g3)
    ocsp_server.set_fault("/ocsp", "http500")
    for url in certificate_crl_urls(card_g3.signing.certificate):
        ocsp_server.set_fault(url.removeprefix(ocsp_server.url), "down")
    with pytest.raises(RevocationUnavailable) as info:
        real.checker().check(card_chain(card_g3), at=NOW)
    err = info.value
    assert err.code == "revocation_unavailable"
    assert err.data["sources"] == {
        "ocsp": "revocation_unavailable",
        "crl": "revocation_unavailable",
    }
    assert err.data["certificate"] == "leaf"


def test_stale_crl_and_ocsp_down_is_stale(
    real: RealSources, ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    publish_crls(
        ocsp_server,
        ocsp_pki,
        card_g3,
        this_update=NOW - timedelta(days=3),
        next_update=NOW - timedelta(days=2),
    )
    # The CRLs were installed while they were current ...
    real.clock.now = NOW - timedelta(days=2, hours=12)
    for url in (
        *certificate_crl_urls(card_g3.signing.certificate),
        *certificate_crl_urls(card_g3.issuer.certificate),
    ):
        real.refresher.refresh(url)
    # ... and nothing newer can be fetched now.
    ocsp_server.clear_crls()
    ocsp_server.set_fault("/ocsp", "down")
    real.clock.now = NOW
    with pytest.raises(RevocationStale) as info:
        real.checker().check(card_chain(card_g3), at=NOW)
    assert info.value.code == "revocation_stale"


def test_crl_first_order_does_not_ask_ocsp(
    real: RealSources, ocsp_server: ResponderServer, ocsp_pki: TestPKI, card_g3: CitizenCard
) -> None:
    publish_crls(ocsp_server, ocsp_pki, card_g3)
    result = real.checker(order=("crl", "ocsp")).check(card_chain(card_g3), at=NOW)
    assert result.source == "crl"
    assert ocsp_server.hits("/ocsp") == 0


def test_soft_fail_end_to_end(
    real: RealSources,
    ocsp_server: ResponderServer,
    card_g3: CitizenCard,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ocsp_server.set_fault("/ocsp", "down")  # and no CRL published
    with caplog.at_level(logging.WARNING, logger="moica_auth.revocation.policy"):
        result = real.checker(soft_fail=True).check(card_chain(card_g3), at=NOW)
    assert result.status == "unknown"
    assert result.source is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("SOFT-FAIL" in r.getMessage() for r in warnings)


# --- the real CRL index answers IF_AVAILABLE ---------------------------------------------


def test_crl_index_knows_an_issuer_only_with_a_covering_crl(
    card_g3: CitizenCard, ocsp_pki: TestPKI
) -> None:
    from moica_auth.revocation.crl import parse_crl

    store = MemoryIndexStore()
    source = CrlSource(store=store)
    ca = card_g3.issuer.certificate
    root = ocsp_pki.grca_g3
    assert not source.knows_issuer(certificate=ca, issuer=root.certificate, at=NOW)
    der = ocsp_pki.make_crl(issuer=root, this_update=NOW, number=7).public_bytes(Encoding.DER)
    store.replace(parse_crl(der, issuers=[root.certificate], at=NOW), fetched_at=NOW)
    assert source.knows_issuer(certificate=ca, issuer=root.certificate, at=NOW)
    # The index holds nothing from the CA's own key about the citizen certificate.
    assert not source.knows_issuer(certificate=card_g3.signing.certificate, issuer=ca, at=NOW)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["MOICA-G2", "MOICA-G3"])
def test_real_moica_cas_are_checked_under_every_rule_but_never(
    shared_data: Path, name: str
) -> None:
    # The real MOICA CA certificates declare GRCA's CRL: even IF_DECLARED checks them,
    # so the default IF_AVAILABLE stays strict for real chains.
    cert = x509.load_pem_x509_certificate((shared_data / "anchors" / f"{name}.pem").read_bytes())
    assert declares_status(cert)
