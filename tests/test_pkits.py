"""NIST PKITS sections 4.1, 4.2, 4.4, 4.6, 4.7 and 4.14 through the product's own wiring.

Each case is built exactly as ``python -m moica_auth check`` builds it (see
``benchmarks/pkits_conformance.py`` for the command line): the CLI's argument parser,
its :class:`~moica_auth.verifier.LoginVerifier` construction (trust store, separate CRL
signers, revocation checker) and :meth:`LoginVerifier.check_certificate`. Nothing here
walks a chain or validates a CRL signer itself.

The test does not write ``docs/conformance.md``; it checks that the results block there
is what ``python -m benchmarks.pkits_conformance --write`` generates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import pkits_conformance as pkits
from moica_auth import cli
from moica_auth.certificate import load_certificate
from moica_auth.exceptions import (
    CertificateRevoked,
    CertificateSuspended,
    CrlInvalid,
    MoicaAuthError,
    RevocationStale,
    RevocationUnavailable,
)

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive"),
]

# Valid paths the product refuses, each explained in docs/conformance.md: a change in
# either direction must be looked at.
REFUSED_VALID = frozenset(
    {
        "valid_dsa_signatures_test4",
        "valid_dsa_parameter_inheritance_test5",
        "valid_generalizedtime_notbefore_date_test4",
        "valid_self_issued_pathlenconstraint_test15",
        "valid_self_issued_pathlenconstraint_test17",
        "valid_onlysomereasons_test18",
        "valid_onlysomereasons_test19",
        "valid_idp_with_indirectcrl_test22",
        "valid_idp_with_indirectcrl_test24",
        "valid_idp_with_indirectcrl_test25",
        "valid_crlissuer_test28",
        "valid_crlissuer_test29",
        "valid_crlissuer_test30",
        "valid_crlissuer_test33",
    }
)


def run_verifier(case: pkits.Case) -> pkits.Outcome:
    """One case through the CLI's wiring and ``LoginVerifier.check_certificate``."""
    args = cli.build_parser().parse_args(list(case.argv))
    at = cli._parse_at(args.at)
    try:
        certificate = load_certificate(Path(args.cert).read_bytes())
    except MoicaAuthError:
        return pkits.Outcome(case, "usage", "unloadable")
    try:
        verifier = cli._build_verifier(args, at)
    except cli.UsageError:
        return pkits.Outcome(case, "usage", "unloadable")
    try:
        verifier.check_certificate(certificate=certificate, at=at)
    except MoicaAuthError as exc:
        return pkits.Outcome(case, exc.code, pkits.categorise(exc.code))
    return pkits.Outcome(case, None, "valid")


@pytest.fixture(scope="module")
def cases(shared_data: Path) -> list[pkits.Case]:
    pytest.importorskip("cryptography_vectors", reason="cryptography-vectors is not installed")
    found = pkits.load_cases(shared_data)
    assert found
    return found


@pytest.fixture(scope="module")
def outcomes(cases: list[pkits.Case]) -> list[pkits.Outcome]:
    return [run_verifier(case) for case in cases]


def test_no_section_accepts_an_invalid_path(outcomes: list[pkits.Outcome]) -> None:
    sections = pkits.tally(outcomes)
    accepted = [o.case.name for s in sections.values() for o in s.accepted_invalid]
    assert accepted == []


def test_section_4_4_passes_in_full(outcomes: list[pkits.Outcome]) -> None:
    section = pkits.tally(outcomes)["4.4"]
    assert (section.cases, section.passed) == (21, 21)
    by_name = {o.case.name: o for o in outcomes}
    # The intermediate CA revoked by its issuer's CRL; it declares no distribution point.
    assert by_name["invalid_revoked_ca_test2"].code == "certificate_revoked"
    # A CRL signed by a separate cRLSign certificate, given as --intermediate.
    assert by_name["valid_separate_certificate_and_crl_keys_test19"].accepted
    assert by_name["invalid_separate_certificate_and_crl_keys_test20"].code == (
        "certificate_revoked"
    )
    # The separate CRL signer is itself revoked: its CRL is not used.
    assert not by_name["invalid_separate_certificate_and_crl_keys_test21"].accepted


def test_refused_valid_paths_are_the_explained_ones(outcomes: list[pkits.Outcome]) -> None:
    refused = {o.case.name for o in outcomes if o.case.valid and not o.accepted}
    assert refused == REFUSED_VALID
    assert all(pkits.reason_for(name) != "not explained" for name in refused)


def test_verdicts_match_the_command_line(
    cases: list[pkits.Case], outcomes: list[pkits.Outcome]
) -> None:
    through_cli = [pkits.run_cli(case) for case in cases]
    differ = [
        (v.case.name, v.code, c.code)
        for v, c in zip(outcomes, through_cli, strict=True)
        if v.code != c.code
    ]
    assert differ == []


def test_conformance_doc_is_generated_from_these_results(
    outcomes: list[pkits.Outcome],
) -> None:
    block = pkits.render(pkits.tally(outcomes))
    assert pkits.doc_block(pkits.DOC.read_text()) == block, (
        "docs/conformance.md is out of date: run "
        "`.venv/bin/python -m benchmarks.pkits_conformance --write`"
    )


def test_revocation_outcomes_map_to_error_codes() -> None:
    # The categories above correspond to these stable codes in the login flow.
    assert pkits.categorise(CertificateRevoked.code) == "revoked"
    assert pkits.categorise(CertificateSuspended.code) == "revoked"
    assert pkits.categorise(RevocationUnavailable.code) == "insufficient"
    assert pkits.categorise(CrlInvalid.code) == "insufficient"
    assert pkits.categorise(RevocationStale.code) == "stale"
