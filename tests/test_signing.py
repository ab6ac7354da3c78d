"""Signing what you see: requests, verification against the login verifier, evidence.

Real parts only: the soft card signs, a real OCSP responder and a real RFC 3161 TSA answer
on 127.0.0.1, and the offline verifier re-checks the exported record.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from moica_auth.exceptions import (
    CertificateRevoked,
    ContentMismatch,
    EvidenceInvalid,
    SignatureInvalid,
    SignerMismatch,
    SigningRequestExpired,
    SigningRequestInvalid,
    TimestampError,
    TimestampUntrusted,
)
from moica_auth.revocation.ocsp import OcspSource
from moica_auth.revocation.policy import RevocationChecker, RevocationPolicy, RevocationRule
from moica_auth.signing.evidence import COVERED_FIELDS, verify_evidence, verify_signing
from moica_auth.signing.request import (
    SignatureRequest,
    build_request,
    digest_info,
    parse_header,
    signer_key,
)
from moica_auth.signing.timestamp import TsaClient
from moica_auth.testing.pki import CitizenCard, TestPKI
from moica_auth.testing.softcard import SoftCard, raw_sign_response
from moica_auth.testing.tsa import TsaIdentities, TsaServer, tsa_identities
from moica_auth.validation.chain import ValidationPolicy
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig
from tests.ocsp_fixtures import (
    CLIENT_TIMEOUT,
    NOW,
)

HASH_KEY = b"signing-tests-hash-key-0123456789"
FIELDS = [
    ("申請人", "測試愛麗絲"),
    ("標的", "台北市中正區\n重慶南路一段122號"),
    ("權利範圍", "1/2"),
]


def fingerprint(card: CitizenCard) -> str:
    return card.signing.certificate.fingerprint(hashes.SHA256()).hex()


@pytest.fixture(scope="module", name="tsa_ids")
def tsa_ids_fixture(ocsp_pki: TestPKI) -> TsaIdentities:
    return tsa_identities(ocsp_pki)


@pytest.fixture(scope="module", name="tsa_server")
def tsa_server_fixture(tsa_ids: TsaIdentities) -> Iterator[TsaServer]:
    with TsaServer(tsa_ids, clock=lambda: NOW) as server:
        yield server


@pytest.fixture(name="tsa")
def tsa_fixture(tsa_server: TsaServer, tsa_ids: TsaIdentities) -> Iterator[TsaClient]:
    tsa_server.fault = None
    yield TsaClient(url=tsa_server.url, anchors=[tsa_ids.root.certificate], timeout=CLIENT_TIMEOUT)
    tsa_server.fault = None


@pytest.fixture(name="verifier")
def verifier_fixture(ocsp_pki: TestPKI, ocsp_server: Any) -> LoginVerifier:
    checker = RevocationChecker(
        policy=RevocationPolicy(order=("ocsp",), intermediates=RevocationRule.NEVER),
        sources={"ocsp": OcspSource(timeout=CLIENT_TIMEOUT)},
    )
    trust = TrustStore.from_certificates(ocsp_pki.anchors, intermediates=ocsp_pki.intermediates)
    return LoginVerifier(VerifierConfig(trust=trust, revocation=checker))


def make_request(
    card: CitizenCard, *, signature_type: str = "PKCS7", **kw: Any
) -> SignatureRequest:
    return build_request(
        portal="https://land.example.gov.tw",
        service="土地登記線上聲明",
        application_id="A-2026-0001",
        fields=kw.pop("fields", FIELDS),
        signer_name="測試愛麗絲",
        signer_key=signer_key(HASH_KEY, fingerprint(card)),
        now=kw.pop("now", NOW),
        signature_type=signature_type,
        **kw,
    )


def card_sign(card: CitizenCard, request: SignatureRequest) -> dict[str, Any]:
    """What HiPKI returns for ``request.hipki_request()``, signed by the soft card."""
    if request.signature_type == "RAW":
        # RAW: the card pads the DigestInfo it is given and signs it, without hashing.
        tbs = base64.b64decode(request.hipki_request()["tbs"])
        assert tbs == digest_info(request.signed_bytes)
        # RFC 8017 §9.2 note 1: the SHA-256 DigestInfo with NULL parameters, byte for byte.
        assert tbs[:19] == bytes.fromhex("3031300d060960864801650304020105000420")
        return raw_sign_response(
            tbs,
            private_key=card.signing.private_key,
            certificate=card.signing.certificate,
            card_number=card.card_number,
        )
    return SoftCard(card, clock=lambda: NOW).sign(request.signed_bytes, signature_type="PKCS7")


def decide(
    request: SignatureRequest,
    signed: dict[str, Any],
    verifier: LoginVerifier,
    tsa: TsaClient | None,
    *,
    at_offset: float = 30,
) -> Any:
    return verify_signing(
        request=request,
        signature=signed["signature"],
        signature_type=request.signature_type,
        certificate=signed["certb64"],
        verifier=verifier,
        hash_key=HASH_KEY,
        at=NOW + timedelta(seconds=at_offset),
        tsa=tsa,
    )


def offline(record: Any, pki: TestPKI, tsa_ids: TsaIdentities, **kw: Any) -> Any:
    # The time-stamps are checked valid "now": pin it, never today's date.
    kw.setdefault("at", NOW + timedelta(days=1))
    return verify_evidence(
        json.dumps(record) if isinstance(record, dict) else record,
        anchors=pki.anchors,
        tsa_anchors=[tsa_ids.root.certificate],
        **kw,
    )


# --- requests -------------------------------------------------------------------------


def test_request_text_is_canonical_and_names_everything(card_g3: CitizenCard) -> None:
    request = make_request(card_g3)
    lines = request.text.split("\n")
    assert lines[0] == "moica-auth-sign/1"
    header = parse_header(request.text)
    assert header["portal"] == "https://land.example.gov.tw"
    assert header["application"] == "A-2026-0001"
    assert header["signer"].startswith("測***絲 key=")
    assert "標的: 台北市中正區\\n重慶南路一段122號" in lines
    assert request.signed_bytes == request.text.encode("utf-8")
    assert request.hipki_request()["tbs"] == request.text


@pytest.mark.parametrize(
    "fields",
    [
        [("label", "value \u202e txt.exe")],
        [("label", "bell\x07")],
        [("a: b", "value")],
        [("", "value")],
        [],
        [("big", "字" * 6000)],
    ],
    ids=["bidi-override", "control", "colon-label", "empty-label", "no-fields", "too-large"],
)
def test_request_refuses_ambiguous_or_unbounded_text(card_g3: CitizenCard, fields: Any) -> None:
    with pytest.raises(SigningRequestInvalid):
        make_request(card_g3, fields=fields)


def test_document_request_signs_digest_through_raw(
    card_g3: CitizenCard, verifier: LoginVerifier, tsa: TsaClient
) -> None:
    document = b"%PDF-1.7 transcript" * 100
    request = make_request(
        card_g3,
        signature_type="RAW",
        fields=[("文件", "戶籍謄本.pdf")],
        document_sha256=hashlib.sha256(document).hexdigest(),
    )
    assert f"document-sha256: {hashlib.sha256(document).hexdigest()}" in request.text
    result = decide(request, card_sign(card_g3, request), verifier, tsa)
    assert result.evidence["signature_type"] == "RAW"


# --- verification ---------------------------------------------------------------------


def test_happy_path_with_ocsp_evidence_and_timestamp(
    card_g3: CitizenCard,
    verifier: LoginVerifier,
    tsa: TsaClient,
    ocsp_pki: TestPKI,
    tsa_ids: TsaIdentities,
) -> None:
    request = make_request(card_g3)
    result = decide(request, card_sign(card_g3, request), verifier, tsa)
    record = result.evidence
    assert record["format"] == "moica-auth-evidence/1"
    assert base64.b64decode(record["signed_bytes"]) == request.signed_bytes
    leaf_entries = [
        e
        for e in record["revocation"]["entries"]
        if e["certificate_sha256"] == fingerprint(card_g3)
    ]
    assert leaf_entries and leaf_entries[0]["ocsp_response"]
    assert result.timestamp_time == NOW
    report = offline(result.evidence_json(), ocsp_pki, tsa_ids)
    assert report.application_id == "A-2026-0001"
    assert report.timestamp_time == NOW
    assert "OCSP response re-verified" in report.revocation


def test_refuses_signature_over_other_bytes(card_g3: CitizenCard, verifier: LoginVerifier) -> None:
    request = make_request(card_g3)
    other = SoftCard(card_g3, clock=lambda: NOW).sign(b"something else", signature_type="PKCS7")
    with pytest.raises(ContentMismatch):
        decide(request, other, verifier, None)
    raw_request = make_request(card_g3, signature_type="RAW")
    raw_other = card_sign(card_g3, make_request(card_g3, signature_type="RAW"))  # new nonce
    with pytest.raises(SignatureInvalid):
        decide(raw_request, raw_other, verifier, None)


def test_refuses_another_citizens_certificate(
    card_g3: CitizenCard, card_g2: CitizenCard, verifier: LoginVerifier
) -> None:
    request = make_request(card_g3)  # the session is card_g3's
    with pytest.raises(SignerMismatch):
        decide(request, card_sign(card_g2, request), verifier, None)


def test_refuses_revoked_certificate(
    card_g3: CitizenCard, verifier: LoginVerifier, ocsp_server: Any
) -> None:
    ocsp_server.set_status(
        card_g3.signing.certificate.serial_number, "revoked", revoked_at=NOW - timedelta(days=1)
    )
    request = make_request(card_g3)
    with pytest.raises(CertificateRevoked):
        decide(request, card_sign(card_g3, request), verifier, None)


def test_refuses_request_past_its_lifetime(card_g3: CitizenCard, verifier: LoginVerifier) -> None:
    request = make_request(card_g3, lifetime=timedelta(seconds=60))
    with pytest.raises(SigningRequestExpired):
        decide(request, card_sign(card_g3, request), verifier, None, at_offset=60)


def test_refuses_other_signature_type(card_g3: CitizenCard, verifier: LoginVerifier) -> None:
    request = make_request(card_g3, signature_type="RAW")
    signed = SoftCard(card_g3, clock=lambda: NOW).sign(request.signed_bytes)
    with pytest.raises(SigningRequestInvalid):
        verify_signing(
            request=request,
            signature=signed["signature"],
            signature_type="PKCS7",
            certificate=signed["certb64"],
            verifier=verifier,
            hash_key=HASH_KEY,
            at=NOW + timedelta(seconds=5),
        )


def test_refuses_tsa_token_over_another_imprint(
    card_g3: CitizenCard, verifier: LoginVerifier, tsa: TsaClient, tsa_server: TsaServer
) -> None:
    tsa_server.fault = "wrong_imprint"
    request = make_request(card_g3)
    with pytest.raises(TimestampError, match="another imprint"):
        decide(request, card_sign(card_g3, request), verifier, tsa)


def test_refuses_tsa_not_in_configured_trust(
    card_g3: CitizenCard, verifier: LoginVerifier, tsa: TsaClient, tsa_server: TsaServer
) -> None:
    tsa_server.fault = "untrusted"
    request = make_request(card_g3)
    with pytest.raises(TimestampUntrusted):
        decide(request, card_sign(card_g3, request), verifier, tsa)


def test_tsa_down_fails_closed(
    card_g3: CitizenCard, verifier: LoginVerifier, tsa: TsaClient, tsa_server: TsaServer
) -> None:
    tsa_server.fault = "down"
    request = make_request(card_g3)
    with pytest.raises(TimestampError):
        decide(request, card_sign(card_g3, request), verifier, tsa)


# --- evidence, offline ----------------------------------------------------------------


@pytest.fixture(name="record")
def record_fixture(card_g3: CitizenCard, verifier: LoginVerifier, tsa: TsaClient) -> dict[str, Any]:
    request = make_request(card_g3)
    return decide(request, card_sign(card_g3, request), verifier, tsa).evidence


def _flip_one_character(value: Any) -> Any:
    """Change one character deep inside ``value`` (the first string found)."""
    if isinstance(value, str):
        index = len(value) // 2
        char = value[index]
        replacement = "B" if char != "B" else "C"
        return value[:index] + replacement + value[index + 1 :]
    if isinstance(value, list):
        return [_flip_one_character(value[0]), *value[1:]]
    if isinstance(value, dict):
        key = sorted(k for k, v in value.items() if v is not None and not isinstance(v, bool))[0]
        return {**value, key: _flip_one_character(value[key])}
    raise AssertionError(f"nothing to tamper in {value!r}")


@pytest.mark.parametrize("field", [*COVERED_FIELDS, "digests", "timestamp", "format"])
def test_tampered_evidence_names_the_field(
    record: dict[str, Any], field: str, ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    tampered = copy.deepcopy(record)
    tampered[field] = _flip_one_character(tampered[field])
    with pytest.raises(EvidenceInvalid) as info:
        offline(tampered, ocsp_pki, tsa_ids)
    assert info.value.data["field"] == field, info.value.detail


def test_tampered_field_with_matching_digest_is_caught_by_the_timestamp(
    record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    from moica_auth.signing.evidence import canonical_json

    tampered = copy.deepcopy(record)
    tampered["decision_time"] = (NOW + timedelta(seconds=31)).isoformat()
    tampered["digests"]["decision_time"] = hashlib.sha256(
        canonical_json(tampered["decision_time"])
    ).hexdigest()
    with pytest.raises(EvidenceInvalid) as info:
        offline(tampered, ocsp_pki, tsa_ids)
    assert info.value.data["field"] == "digests"


def test_every_byte_of_the_file_matters(
    record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    data = json.dumps(record, sort_keys=True).encode()
    offline(data, ocsp_pki, tsa_ids)  # untampered: accepted
    step = max(1, len(data) // 97)
    for index in range(0, len(data), step):
        if data[index : index + 1] in (b" ", b"\n"):
            continue
        tampered = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
        with pytest.raises(EvidenceInvalid):
            offline(tampered, ocsp_pki, tsa_ids)


def test_evidence_from_untrusted_tsa_or_other_anchors_is_refused(
    record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    with pytest.raises(EvidenceInvalid) as info:
        verify_evidence(
            json.dumps(record),
            anchors=ocsp_pki.anchors,
            tsa_anchors=[tsa_ids.untrusted_root.certificate],
        )
    assert info.value.data["field"] == "timestamp"
    other = TestPKI(seed="another-pki")
    with pytest.raises(EvidenceInvalid) as info:
        verify_evidence(
            json.dumps(record),
            anchors=[other.grca_g2.certificate],
            tsa_anchors=[tsa_ids.root.certificate],
        )
    assert info.value.data["field"] == "chain"


def test_evidence_without_timestamp_needs_explicit_waiver(
    card_g3: CitizenCard, verifier: LoginVerifier, ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    request = make_request(card_g3)
    record = decide(request, card_sign(card_g3, request), verifier, None).evidence
    with pytest.raises(EvidenceInvalid) as info:
        offline(record, ocsp_pki, tsa_ids)
    assert info.value.data["field"] == "timestamp"
    report = offline(record, ocsp_pki, tsa_ids, require_timestamp=False)
    assert any("No time-stamp" in s for s in report.statements)


def test_evidence_verifies_years_later_at_its_decision_time(
    record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    # The offline check never reads the clock: the chain is validated at decision_time.
    report = offline(record, ocsp_pki, tsa_ids, policy=ValidationPolicy())
    assert report.decision_time == NOW + timedelta(seconds=30)


# --- the auditor's command ------------------------------------------------------------


def _write_cli_inputs(
    tmp_path: Any, record: dict[str, Any], pki: TestPKI, tsa_ids: TsaIdentities
) -> tuple[Any, list[str]]:
    from cryptography.hazmat.primitives import serialization

    anchors = []
    for index, cert in enumerate(pki.anchors):
        path = tmp_path / f"anchor{index}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        anchors += ["--anchor", str(path)]
    tsa_path = tmp_path / "tsa.pem"
    tsa_path.write_bytes(tsa_ids.root.certificate.public_bytes(serialization.Encoding.PEM))
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    # Verified at the record's own time, not the wall clock: the test TSA's certificate
    # expires about ten years after the test PKI's fixed time.
    at = ["--at", record["decision_time"]]
    return evidence, [*anchors, "--tsa-anchor", str(tsa_path), *at]


def test_cli_evidence_verify_accepts_and_names_a_tampered_field(
    tmp_path: Any,
    record: dict[str, Any],
    ocsp_pki: TestPKI,
    tsa_ids: TsaIdentities,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from moica_auth import cli

    evidence, flags = _write_cli_inputs(tmp_path, record, ocsp_pki, tsa_ids)
    assert cli.main(["evidence", "verify", str(evidence), *flags]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["ok"] is True
    assert "A-2026-0001" in out

    text = evidence.read_text(encoding="utf-8")
    key = '"decision_time": "'
    at = text.index(key) + len(key) + 3  # a digit of the year
    tampered = text[:at] + ("1" if text[at] != "1" else "2") + text[at + 1 :]
    evidence.write_text(tampered, encoding="utf-8")
    assert cli.main(["evidence", "verify", str(evidence), *flags]) == cli.EXIT_REJECTED
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["ok"] is False and last["field"] == "decision_time"


def test_cli_evidence_verify_requires_anchors(
    tmp_path: Any, record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    from moica_auth import cli

    evidence, _ = _write_cli_inputs(tmp_path, record, ocsp_pki, tsa_ids)
    assert cli.main(["evidence", "verify", str(evidence)]) == cli.EXIT_USAGE


def test_python_m_moica_auth_evidence_verify(
    tmp_path: Any, record: dict[str, Any], ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    evidence, flags = _write_cli_inputs(tmp_path, record, ocsp_pki, tsa_ids)
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    environ.pop("DJANGO_SETTINGS_MODULE", None)  # an auditor has no Django project
    done = subprocess.run(
        [sys.executable, "-m", "moica_auth", "evidence", "verify", str(evidence), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is True


# --- CRL evidence ---------------------------------------------------------------------


def _crl_verifier(pki: TestPKI, crl_der: bytes) -> LoginVerifier:
    from moica_auth.revocation.crl import CrlSource, parse_crl
    from moica_auth.revocation.store import MemoryIndexStore

    store = MemoryIndexStore()
    assert store.replace(parse_crl(crl_der, issuers=pki.intermediates, at=NOW), fetched_at=NOW)
    checker = RevocationChecker(
        policy=RevocationPolicy(order=("crl",), intermediates=RevocationRule.NEVER),
        sources={"crl": CrlSource(store=store)},
    )
    trust = TrustStore.from_certificates(pki.anchors, intermediates=pki.intermediates)
    return LoginVerifier(VerifierConfig(trust=trust, revocation=checker))


def test_crl_evidence_names_the_crl_used(
    card_g3: CitizenCard, ocsp_pki: TestPKI, tsa: TsaClient, tsa_ids: TsaIdentities
) -> None:
    from cryptography.hazmat.primitives import serialization

    crl = ocsp_pki.make_crl(issuer=ocsp_pki.moica_g3, number=2026010203, this_update=NOW)
    crl_der = crl.public_bytes(serialization.Encoding.DER)
    request = make_request(card_g3)
    result = decide(request, card_sign(card_g3, request), _crl_verifier(ocsp_pki, crl_der), tsa)
    (entry,) = result.evidence["revocation"]["entries"]
    assert entry["source"] == "crl"
    assert entry["crl"]["number"] == 2026010203
    assert entry["crl"]["sha256"] == hashlib.sha256(crl_der).hexdigest()
    assert entry["crl"]["this_update"] == NOW.isoformat()
    report = offline(result.evidence, ocsp_pki, tsa_ids)
    assert "CRL 2026010203" in report.revocation


def test_refuses_certificate_revoked_on_the_crl(card_g3: CitizenCard, ocsp_pki: TestPKI) -> None:
    from cryptography.hazmat.primitives import serialization

    crl = ocsp_pki.make_crl(
        issuer=ocsp_pki.moica_g3,
        revoked=[(card_g3.signing.certificate.serial_number, NOW - timedelta(days=1), None)],
        this_update=NOW,
    )
    request = make_request(card_g3)
    verifier = _crl_verifier(ocsp_pki, crl.public_bytes(serialization.Encoding.DER))
    with pytest.raises(CertificateRevoked):
        decide(request, card_sign(card_g3, request), verifier, None)


def test_unsealed_record_with_a_forged_ocsp_response_is_refused(
    card_g3: CitizenCard, verifier: LoginVerifier, ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    from moica_auth.signing.evidence import COVERED_FIELDS, canonical_json

    request = make_request(card_g3)
    record = decide(request, card_sign(card_g3, request), verifier, None).evidence
    forged = copy.deepcopy(record)
    entry = forged["revocation"]["entries"][0]
    body = bytearray(base64.b64decode(entry["ocsp_response"]))
    body[-5] ^= 0x01  # inside the responder's signature
    entry["ocsp_response"] = base64.b64encode(bytes(body)).decode()
    # Without a time-stamp the forger can also fix the digests: the OCSP check still holds.
    forged["digests"] = {
        name: hashlib.sha256(canonical_json(forged[name])).hexdigest() for name in COVERED_FIELDS
    }
    with pytest.raises(EvidenceInvalid) as info:
        offline(forged, ocsp_pki, tsa_ids, require_timestamp=False)
    assert info.value.data["field"] == "revocation"


@pytest.mark.parametrize("junk", [None, 1, True, [], {}, "x", "é" * 64, [None], {"a": []}])
@pytest.mark.parametrize("field", [*COVERED_FIELDS, "digests", "timestamp", "format"])
def test_evidence_of_the_wrong_shape_is_a_typed_refusal(
    record: dict[str, Any], field: str, junk: Any, ocsp_pki: TestPKI, tsa_ids: TsaIdentities
) -> None:
    from moica_auth.signing.evidence import canonical_json

    for sealed in (True, False):
        tampered = copy.deepcopy(record)
        tampered[field] = junk
        if not sealed and field in COVERED_FIELDS:
            # An unsealed record whose digest was fixed up: the semantic checks must hold.
            tampered["timestamp"] = None
            tampered["digests"][field] = hashlib.sha256(canonical_json(junk)).hexdigest()
        if not sealed and junk is None and field in ("revocation", "timestamp"):
            # Both are legitimately null in an unsealed record; the report must say so.
            report = offline(tampered, ocsp_pki, tsa_ids, require_timestamp=False)
            assert report.timestamp_time is None
            if field == "revocation":
                assert report.revocation.startswith("not checked")
            continue
        with pytest.raises(EvidenceInvalid):
            offline(tampered, ocsp_pki, tsa_ids, require_timestamp=sealed)
