"""Archive time-stamps: evidence renewed before its TSA certificate expires keeps verifying.

Real parts: the soft card signs, a real OCSP responder and real RFC 3161 TSAs answer on
127.0.0.1 (each with its own clock, so a renewal "in 2035" is dated 2035), and the
offline verifier re-checks the renewed record at times years apart.

Timeline (the test PKI's clock is 2026-01-01): the signing TSA's certificate expires
2035-12-30; ``tsa2`` (2034-2041) renews in 2035; ``tsa3`` (2038-2050) renews in 2039.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from moica_auth.exceptions import EvidenceInvalid, TimestampError
from moica_auth.signing.archive import (
    MAX_ARCHIVE_TOKENS,
    archive_imprint,
    check_crls,
    evidence_chain_hash,
    renew,
)
from moica_auth.signing.evidence import verify_evidence
from moica_auth.signing.timestamp import TsaClient
from moica_auth.testing.pki import CertifiedKey, CitizenCard, TestPKI
from moica_auth.testing.tsa import (
    TsaIdentities,
    TsaServer,
    sign_timestamp,
    tsa_identities,
    tsa_under,
)
from moica_auth.verifier import LoginVerifier
from tests.ocsp_fixtures import CLIENT_TIMEOUT, NOW
from tests.test_signing import card_sign, decide, make_request
from tests.test_signing import verifier_fixture as verifier_fixture

Y2035 = datetime(2035, 6, 1, tzinfo=UTC)
Y2037 = datetime(2037, 6, 1, tzinfo=UTC)
Y2039 = datetime(2039, 6, 1, tzinfo=UTC)
Y2042 = datetime(2042, 6, 1, tzinfo=UTC)


def _tsa_between(
    pki: TestPKI, ids: TsaIdentities, label: str, start: datetime, end: datetime
) -> CertifiedKey:
    """A TSA certificate under the trusted root, valid from ``start`` to ``end``."""
    return tsa_under(
        pki, ids.root, label, f"moica-auth TEST {label}", not_before=start, not_after=end
    )


@pytest.fixture(scope="module", name="ids")
def ids_fixture(ocsp_pki: TestPKI) -> TsaIdentities:
    return tsa_identities(ocsp_pki)


@pytest.fixture(scope="module", name="servers")
def servers_fixture(ocsp_pki: TestPKI, ids: TsaIdentities) -> Iterator[dict[str, TsaServer]]:
    tsa2 = _tsa_between(
        ocsp_pki,
        ids,
        "renewal-2035",
        datetime(2034, 1, 1, tzinfo=UTC),
        datetime(2041, 1, 1, tzinfo=UTC),
    )
    tsa3 = _tsa_between(
        ocsp_pki,
        ids,
        "renewal-2039",
        datetime(2038, 1, 1, tzinfo=UTC),
        datetime(2050, 1, 1, tzinfo=UTC),
    )
    with (
        TsaServer(ids, clock=lambda: NOW) as first,
        TsaServer(ids, clock=lambda: Y2035, signer=tsa2) as second,
        TsaServer(ids, clock=lambda: Y2039, signer=tsa3) as third,
    ):
        yield {"first": first, "2035": second, "2039": third}


def client(server: TsaServer, ids: TsaIdentities, **kw: Any) -> TsaClient:
    return TsaClient(url=server.url, anchors=[ids.root.certificate], timeout=CLIENT_TIMEOUT, **kw)


@pytest.fixture(name="record")
def record_fixture(
    card_g3: CitizenCard, verifier: LoginVerifier, servers: dict[str, TsaServer], ids: TsaIdentities
) -> dict[str, Any]:
    request = make_request(card_g3)
    return decide(
        request, card_sign(card_g3, request), verifier, client(servers["first"], ids)
    ).evidence


@pytest.fixture(name="renewed_twice")
def renewed_twice_fixture(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities
) -> dict[str, Any]:
    once = renew(record, tsa=client(servers["2035"], ids), at=Y2035)
    return renew(once, tsa=client(servers["2039"], ids), at=Y2039)


def offline(record: Any, pki: TestPKI, ids: TsaIdentities, **kw: Any) -> Any:
    kw.setdefault("at", NOW + timedelta(days=1))  # never today's date
    return verify_evidence(
        json.dumps(record) if isinstance(record, dict) else record,
        anchors=pki.anchors,
        tsa_anchors=[ids.root.certificate],
        **kw,
    )


def refused_field(record: Any, pki: TestPKI, ids: TsaIdentities, **kw: Any) -> str:
    with pytest.raises(EvidenceInvalid) as info:
        offline(record, pki, ids, **kw)
    return str(info.value.data["field"])


# --- backward compatibility -----------------------------------------------------------


def test_record_without_archive_verifies_as_before(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    assert "archive" not in record
    report = offline(record, ocsp_pki, ids)
    out = report.as_json()
    # The same keys and statements as an unrenewed record always had: nothing new.
    assert set(out) == {
        "ok", "format", "signer", "portal", "service", "application_id", "decision_time",
        "timestamp_time", "timestamp_tsa", "revocation", "proves",
    }  # fmt: skip
    assert not any("Archive" in s or "renew" in s for s in report.statements)
    assert report.timestamp_time == NOW


def test_unrenewed_record_fails_once_its_tsa_certificate_expired(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    # At 2037 the signing TSA's certificate (until 2035-12-30) has expired and nothing
    # later covers its token: a leaked TSA key could have made it. Refused, named.
    with pytest.raises(EvidenceInvalid) as info:
        offline(record, ocsp_pki, ids, at=Y2037)
    assert info.value.data["field"] == "timestamp"
    assert "verification time" in info.value.data["reason"]
    # An auditor may still ask "was it valid in 2030?" explicitly.
    offline(record, ocsp_pki, ids, at=datetime(2030, 1, 1, tzinfo=UTC))


# --- renewal --------------------------------------------------------------------------


def test_renewed_record_verifies_after_the_first_tsa_certificate_expired(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, ocsp_pki: TestPKI
) -> None:
    renewed = renew(record, tsa=client(servers["2035"], ids), at=Y2035)
    assert {k: v for k, v in renewed.items() if k != "archive"} == record  # nothing else changed
    (entry,) = renewed["archive"]
    assert entry["previous"] == evidence_chain_hash(record, 0)
    # The validation data of the renewed token: its CA path beyond the TSA certificate.
    assert entry["validation"]["crls"] == []
    assert entry["validation"]["certificates"]
    report = offline(renewed, ocsp_pki, ids, at=Y2037)
    out = report.as_json()
    assert out["archive_timestamps"][0]["gen_time"] == Y2035.isoformat()
    assert out["archive_timestamps"][0]["valid_at"] == Y2037.isoformat()
    assert out["verified_at"] == Y2037.isoformat()
    assert any("Archive time-stamp 0" in s for s in report.statements)
    assert any("renew the record before" in s for s in report.statements)


def test_two_renewals_verify_decades_later(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    report = offline(renewed_twice, ocsp_pki, ids, at=Y2042)
    assert [a["gen_time"] for a in report.archive] == [Y2035.isoformat(), Y2039.isoformat()]
    # The citizen's chain is still judged at the decision time, not in 2042.
    assert report.decision_time == NOW + timedelta(seconds=30)


def test_renewal_that_would_exceed_the_verifier_size_cap_is_refused(
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stored record must stay one that `evidence verify` reads: a renewal that would
    # grow it past the cap is refused instead of written.
    import moica_auth.signing.evidence as evidence_module

    size = len(json.dumps(record, ensure_ascii=False, indent=1, sort_keys=True).encode())
    monkeypatch.setattr(evidence_module, "MAX_EVIDENCE_BYTES", size + 100)
    with pytest.raises(EvidenceInvalid) as info:
        renew(record, tsa=client(servers["2035"], ids), at=Y2035)
    assert info.value.data["field"] == "archive"
    assert "larger than" in info.value.data["reason"]


def test_renewal_after_the_tsa_certificate_expired_is_refused(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities
) -> None:
    with pytest.raises(EvidenceInvalid) as info:
        renew(record, tsa=client(servers["2035"], ids), at=datetime(2036, 6, 1, tzinfo=UTC))
    assert info.value.data["field"] == "timestamp"


def test_renewal_refuses_an_unstamped_or_broken_record(
    card_g3: CitizenCard,
    verifier: LoginVerifier,
    record: dict[str, Any],
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
) -> None:
    request = make_request(card_g3)
    unstamped = decide(request, card_sign(card_g3, request), verifier, None).evidence
    with pytest.raises(EvidenceInvalid) as info:
        renew(unstamped, tsa=client(servers["2035"], ids), at=Y2035)
    assert info.value.data["field"] == "timestamp"
    tampered = copy.deepcopy(record)
    tampered["signed_bytes"] = "QQ==" + tampered["signed_bytes"][4:]
    with pytest.raises(EvidenceInvalid) as info:
        renew(tampered, tsa=client(servers["2035"], ids), at=Y2035)
    assert info.value.data["field"] == "signed_bytes"


def test_renewal_refuses_a_token_dated_before_the_one_it_renews(
    record: dict[str, Any], ids: TsaIdentities
) -> None:
    with (
        TsaServer(ids, clock=lambda: NOW - timedelta(days=1)) as early,
        pytest.raises(TimestampError, match="before the one it renews"),
    ):
        renew(record, tsa=client(early, ids), at=NOW + timedelta(days=1))


def test_renewal_records_the_path_an_auditor_then_need_not_supply(
    card_g3: CitizenCard,
    verifier: LoginVerifier,
    servers: dict[str, TsaServer],
    ids: TsaIdentities,
    ocsp_pki: TestPKI,
) -> None:
    # Signed through a TSA under an intermediate CA that its tokens do not carry: the
    # portal configures the intermediate, an auditor may not have it.
    with TsaServer(ids, clock=lambda: NOW, deep=True, carry_intermediate=False) as deep:
        portal_tsa = client(deep, ids, intermediates=[ids.intermediate.certificate])
        request = make_request(card_g3)
        record = decide(request, card_sign(card_g3, request), verifier, portal_tsa).evidence
    assert refused_field(record, ocsp_pki, ids) == "timestamp"
    offline(record, ocsp_pki, ids, tsa_intermediates=[ids.intermediate.certificate])
    renewed = renew(
        record,
        tsa=client(servers["2035"], ids, intermediates=[ids.intermediate.certificate]),
        at=Y2035,
    )
    recorded = renewed["archive"][0]["validation"]["certificates"]
    assert len(recorded) == 2  # the intermediate and the root
    report = offline(renewed, ocsp_pki, ids, at=Y2037)  # no tsa_intermediates needed now
    assert report.timestamp_time == NOW


def test_renewal_with_a_tsa_that_does_not_last_longer_is_refused(
    record: dict[str, Any], ids: TsaIdentities
) -> None:
    # The record's own TSA again: its token would expire with the one it renews.
    with (
        TsaServer(ids, clock=lambda: NOW + timedelta(days=1)) as same,
        pytest.raises(TimestampError, match="does not outlive"),
    ):
        renew(record, tsa=client(same, ids), at=NOW + timedelta(days=1))


# --- tampering with the archive -------------------------------------------------------


def _flip(text: str) -> str:
    index = len(text) // 2
    return text[:index] + ("B" if text[index] != "B" else "C") + text[index + 1 :]


def test_altered_archive_token_is_named(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    for index in (0, 1):
        tampered = copy.deepcopy(renewed_twice)
        tampered["archive"][index]["token"] = _flip(tampered["archive"][index]["token"])
        assert refused_field(tampered, ocsp_pki, ids, at=Y2042) == f"archive[{index}].token"


def test_altered_validation_data_is_named(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    tampered = copy.deepcopy(renewed_twice)
    tampered["archive"][1]["validation"]["certificates"] = []
    assert refused_field(tampered, ocsp_pki, ids, at=Y2042) == "archive[1].validation"
    tampered = copy.deepcopy(renewed_twice)
    tampered["archive"][0]["validation"]["certificates"].append(
        tampered["archive"][0]["validation"]["certificates"][0]
    )
    assert refused_field(tampered, ocsp_pki, ids, at=Y2042) == "archive[0].validation"


def test_removed_or_reordered_archive_tokens_are_named(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    first, second = renewed_twice["archive"]
    removed = {**renewed_twice, "archive": [second]}
    assert refused_field(removed, ocsp_pki, ids, at=Y2042) == "archive[0].previous"
    swapped = {**renewed_twice, "archive": [second, first]}
    assert refused_field(swapped, ocsp_pki, ids, at=Y2042) == "archive[0].previous"
    duplicated = {**renewed_twice, "archive": [first, first]}
    assert refused_field(duplicated, ocsp_pki, ids, at=Y2042) == "archive[1].previous"
    altered = copy.deepcopy(renewed_twice)
    altered["archive"][1]["previous"] = "0" * 64
    assert refused_field(altered, ocsp_pki, ids, at=Y2042) == "archive[1].previous"


def test_dropping_the_newest_renewal_leaves_an_expired_token_uncovered(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    shorter = {**renewed_twice, "archive": renewed_twice["archive"][:1]}
    # tsa2's certificate (until 2041) is valid in 2040: the shorter chain still proves.
    offline(shorter, ocsp_pki, ids, at=datetime(2040, 6, 1, tzinfo=UTC))
    # In 2042 it has expired and nothing covers it any more.
    assert refused_field(shorter, ocsp_pki, ids, at=Y2042) == "archive[0].token"


def test_original_fields_are_still_named_first(
    renewed_twice: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    for field in ("signature", "decision_time", "chain"):
        tampered = copy.deepcopy(renewed_twice)
        value = tampered[field]
        tampered[field] = [_flip(value[0]), *value[1:]] if isinstance(value, list) else _flip(value)
        assert refused_field(tampered, ocsp_pki, ids, at=Y2042) == field
    tampered = copy.deepcopy(renewed_twice)
    tampered["timestamp"]["token"] = _flip(tampered["timestamp"]["token"])
    assert refused_field(tampered, ocsp_pki, ids, at=Y2042) == "timestamp"


@pytest.mark.parametrize(
    ("archive", "field"),
    [
        ({}, "archive"),
        ([], "archive"),
        (["x"], "archive[0]"),
        ([{"previous": "", "validation": {}, "token": "", "extra": 1}], "archive[0]"),
    ],
)
def test_malformed_archive_is_a_typed_refusal(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities, archive: Any, field: str
) -> None:
    assert refused_field({**record, "archive": archive}, ocsp_pki, ids) == field


def test_too_many_archive_tokens_are_refused_before_any_work(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    entry = {"previous": "0" * 64, "validation": {"certificates": [], "crls": []}, "token": ""}
    many = {**record, "archive": [entry] * (MAX_ARCHIVE_TOKENS + 1)}
    assert refused_field(many, ocsp_pki, ids) == "archive"


def test_archive_on_an_unstamped_record_is_refused(
    card_g3: CitizenCard, verifier: LoginVerifier, ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    request = make_request(card_g3)
    unstamped = decide(request, card_sign(card_g3, request), verifier, None).evidence
    entry = {"previous": "0" * 64, "validation": {"certificates": [], "crls": []}, "token": ""}
    field = refused_field({**unstamped, "archive": [entry]}, ocsp_pki, ids, require_timestamp=False)
    assert field == "archive"


def test_archive_token_dated_before_the_one_it_renews_is_named(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    # A token made directly (a TSA whose clock runs behind), over the right imprint.
    previous = evidence_chain_hash(record, 0)
    validation: dict[str, Any] = {"certificates": [], "crls": []}
    token = sign_timestamp(
        imprint=archive_imprint(previous, validation),
        signer=ids.tsa,
        gen_time=NOW - timedelta(hours=1),
        serial=99,
    )
    import base64

    entry = {
        "previous": previous,
        "validation": validation,
        "token": base64.b64encode(token).decode(),
    }
    assert refused_field({**record, "archive": [entry]}, ocsp_pki, ids) == "archive[0].token"


# --- revocation data of the TSA ------------------------------------------------------


def _crl(
    ids: TsaIdentities, issuer: CertifiedKey, at: datetime, revoked: list[int]
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(at)
        .next_update(at + timedelta(days=7))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
        )
    return builder.sign(issuer.private_key, hashes.SHA256())  # type: ignore[arg-type]


def test_renewal_records_a_crl_that_shows_the_tsa_unrevoked(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities, ocsp_pki: TestPKI
) -> None:
    crl = _crl(ids, ids.root, Y2035 - timedelta(days=1), revoked=[12345])
    renewed = renew(record, tsa=client(servers["2035"], ids), crls=[crl], at=Y2035)
    assert len(renewed["archive"][0]["validation"]["crls"]) == 1
    report = offline(renewed, ocsp_pki, ids, at=Y2037)
    assert report.archive[0]["crls"] == 1  # recorded by archive[0], for the original token
    assert report.as_json()["archive_timestamps"][0]["tsa"]


def test_renewal_refuses_a_crl_that_lists_the_tsa(
    record: dict[str, Any], servers: dict[str, TsaServer], ids: TsaIdentities
) -> None:
    crl = _crl(
        ids, ids.root, Y2035 - timedelta(days=1), revoked=[ids.tsa.certificate.serial_number]
    )
    with pytest.raises(EvidenceInvalid) as info:
        renew(record, tsa=client(servers["2035"], ids), crls=[crl], at=Y2035)
    assert info.value.data["field"] == "crls"
    assert "revoked" in info.value.data["reason"]


def test_crl_checks_refuse_foreign_or_stale_crls(ids: TsaIdentities) -> None:
    path = [ids.tsa.certificate, ids.root.certificate]
    good = _crl(ids, ids.root, Y2035, revoked=[])
    assert check_crls([good], path, after=NOW, before=Y2037) is None
    foreign = _crl(ids, ids.untrusted_root, Y2035, revoked=[])
    assert "not issued by a CA" in str(check_crls([foreign], path, after=NOW, before=Y2037))
    stale = _crl(ids, ids.root, NOW - timedelta(days=1), revoked=[])
    assert "issued before" in str(check_crls([stale], path, after=NOW, before=Y2037))
    listed = _crl(ids, ids.root, Y2035, revoked=[ids.tsa.certificate.serial_number])
    assert "revoked" in str(check_crls([listed], path, after=NOW, before=Y2037))


def test_a_recorded_crl_listing_the_tsa_is_named(
    record: dict[str, Any], ocsp_pki: TestPKI, ids: TsaIdentities
) -> None:
    import base64

    crl = _crl(ids, ids.root, NOW + timedelta(days=1), revoked=[ids.tsa.certificate.serial_number])
    previous = evidence_chain_hash(record, 0)
    validation = {
        "certificates": [],
        "crls": [base64.b64encode(crl.public_bytes(serialization.Encoding.DER)).decode()],
    }
    token = sign_timestamp(
        imprint=archive_imprint(previous, validation),
        signer=ids.tsa,
        gen_time=NOW + timedelta(days=2),
        serial=98,
    )
    entry = {
        "previous": previous,
        "validation": validation,
        "token": base64.b64encode(token).decode(),
    }
    assert refused_field({**record, "archive": [entry]}, ocsp_pki, ids) == "archive[0].validation"


# --- the command line -----------------------------------------------------------------


def _pem(tmp_path: Any, name: str, cert: x509.Certificate) -> str:
    path = tmp_path / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_cli_retimestamp_then_verify(
    tmp_path: Any,
    record: dict[str, Any],
    ocsp_pki: TestPKI,
    ids: TsaIdentities,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moica_auth import cli

    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    tsa_root = _pem(tmp_path, "tsa.pem", ids.root.certificate)
    anchors: list[str] = []
    for index, cert in enumerate(ocsp_pki.anchors):
        anchors += ["--anchor", _pem(tmp_path, f"a{index}.pem", cert)]
    # A TSA answering "now" (the real clock) whose certificate outlives the record's.
    longer = _tsa_between(
        ocsp_pki, ids, "cli-renewal", NOW - timedelta(days=1), datetime(2045, 1, 1, tzinfo=UTC)
    )
    with TsaServer(ids, signer=longer) as live:
        assert cli.main(["evidence", "retimestamp", str(evidence), "--tsa", live.url]) == 2
        capsys.readouterr()
        code = cli.main(
            ["evidence", "retimestamp", str(evidence), "--tsa", live.url, "--tsa-anchor", tsa_root]
        )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == cli.EXIT_OK, last
    assert last["ok"] is True and last["archive_timestamps"] == 1
    renewed = json.loads(evidence.read_text(encoding="utf-8"))
    assert len(renewed["archive"]) == 1

    verify = ["evidence", "verify", str(evidence), *anchors, "--tsa-anchor", tsa_root]
    assert cli.main(verify) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert '"archive_timestamps"' in out

    renewed["archive"][0]["token"] = _flip(renewed["archive"][0]["token"])
    evidence.write_text(json.dumps(renewed), encoding="utf-8")
    assert cli.main(verify) == cli.EXIT_REJECTED
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["field"] == "archive[0].token"


def test_cli_verify_at_a_later_time(
    tmp_path: Any,
    record: dict[str, Any],
    ocsp_pki: TestPKI,
    ids: TsaIdentities,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moica_auth import cli

    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(record), encoding="utf-8")
    flags = ["--tsa-anchor", _pem(tmp_path, "tsa.pem", ids.root.certificate)]
    for index, cert in enumerate(ocsp_pki.anchors):
        flags += ["--anchor", _pem(tmp_path, f"a{index}.pem", cert)]
    base = ["evidence", "verify", str(evidence), *flags]
    assert cli.main([*base, "--at", "2037-06-01T00:00:00Z"]) == cli.EXIT_REJECTED
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["field"] == "timestamp"
    assert cli.main([*base, "--at", "2030-01-01T00:00:00Z"]) == cli.EXIT_OK
    assert cli.main([*base, "--at", "2030-01-01"]) == cli.EXIT_USAGE
