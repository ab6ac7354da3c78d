"""What the phone signs (``moica_auth.signing.channel``) and how the evidence record keeps
it: the decision refuses what does not fit the channel, and the offline verifier names
the field when a record claims another channel than the one that signed."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from moica_auth.exceptions import EvidenceInvalid, SignerMismatch, SigningRequestInvalid
from moica_auth.mobile.errors import MobileCertificateRequired
from moica_auth.signing.channel import (
    DIGEST_LINE_PREFIX,
    MOBILE_SIGN_DATA_MAX,
    SigningChannel,
    digest_line,
    mobile_channel,
)
from moica_auth.signing.evidence import _covered, canonical_json, verify_evidence, verify_signing
from moica_auth.signing.request import SignatureRequest, build_request, signer_key
from moica_auth.testing.pki import FIXED_TIME, CitizenCard, default_pki, make_id_number
from moica_auth.verifier import LoginVerifier, VerifierConfig
from tests.mobile_fixtures import trust

HASH_KEY = b"channel-test-hash-key-0123456789"
NOW = FIXED_TIME + timedelta(days=1)


@functools.cache
def phone() -> CitizenCard:
    return default_pki().issue_card(
        id_number=make_id_number("channel-phone"), name="測試手機", form="mobile"
    )


@functools.cache
def card() -> CitizenCard:
    return default_pki().issue_card(id_number=make_id_number("channel-phone"), name="測試手機")


def verifier() -> LoginVerifier:
    # Revocation is the card path's, tested there and over HTTP (test_mobile_signing).
    return LoginVerifier(VerifierConfig(trust=trust(), revocation=None))


def request_for(signer: CitizenCard, note: str = "無") -> SignatureRequest:
    fp = signer.signing.certificate.fingerprint(hashes.SHA256()).hex()
    return build_request(
        portal="https://land.example.gov.tw",
        service="土地登記線上聲明",
        application_id="A-2026-0001",
        fields=[("土地標示", "重慶段 123 地號"), ("備註", note)],
        signer_name="測試手機",
        signer_key=signer_key(HASH_KEY, fp),
        now=NOW,
    )


def pkcs1(signer: CitizenCard, content: bytes) -> str:
    raw = signer.signing.private_key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def decide(request: SignatureRequest, signer: CitizenCard, **kw: Any) -> Any:
    channel = kw.pop("channel", mobile_channel(request.text))
    return verify_signing(
        request=request,
        signature=kw.pop("signature", pkcs1(signer, channel.content(request.signed_bytes))),
        signature_type=kw.pop("signature_type", "PKCS1"),
        certificate=signer.signing.cert_der(),
        verifier=verifier(),
        hash_key=HASH_KEY,
        at=NOW + timedelta(seconds=30),
        tsa=None,
        channel=channel,
    )


def offline(record: dict[str, Any]) -> Any:
    return verify_evidence(record, anchors=default_pki().anchors, require_timestamp=False)


def redigest(record: dict[str, Any]) -> dict[str, Any]:
    """What a forger without the TSA can do to an untimestamped record: fix the digests."""
    record = dict(record)
    record["digests"] = {
        n: hashlib.sha256(canonical_json(record[n])).hexdigest() for n in _covered(record)
    }
    return record


# --- the channel ----------------------------------------------------------------------------


def test_sign_data_is_the_text_up_to_1024_characters_then_its_digest_line() -> None:
    short = "字" * MOBILE_SIGN_DATA_MAX
    assert mobile_channel(short).tbs == "text"
    assert mobile_channel(short).sign_data(short.encode()) == short
    long = short + "x"
    channel = mobile_channel(long)
    assert channel.tbs == "sha256"
    line = channel.sign_data(long.encode())
    assert line == DIGEST_LINE_PREFIX + hashlib.sha256(long.encode()).hexdigest()
    assert line == digest_line(long.encode()) and len(line) == 89 and line.isascii()
    assert channel.content(long.encode()) == line.encode()


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"name": "mobile-sp-api", "tbs": "text", "sign_type": "PKCS#1"},
        {"name": "mobile-sp-api", "tbs": "text", "sign_type": "PKCS#1", "form": "mobile", "x": 1},
        {"name": "card", "tbs": "text", "sign_type": "PKCS#1", "form": "mobile"},
        {"name": "mobile-sp-api", "tbs": "md5", "sign_type": "PKCS#1", "form": "mobile"},
        {"name": "mobile-sp-api", "tbs": "text", "sign_type": "RAW", "form": "mobile"},
        {"name": "mobile-sp-api", "tbs": "text", "sign_type": "PKCS#1", "form": "card"},
        {"name": "mobile-sp-api", "tbs": 1, "sign_type": "PKCS#1", "form": "mobile"},
    ],
)
def test_a_channel_record_is_exactly_its_four_fields(value: Any) -> None:
    with pytest.raises(ValueError):
        SigningChannel.from_json(value)


# --- the decision ---------------------------------------------------------------------------


def test_a_phone_signature_yields_a_record_with_its_channel() -> None:
    request = request_for(phone())
    result = decide(request, phone())
    assert result.evidence["channel"]["tbs"] == "text"
    assert "channel" in result.evidence["digests"]
    report = offline(result.evidence)
    assert any("mobile-sp-api" in s for s in report.statements)


def test_a_long_text_signed_through_its_digest_line_verifies_offline() -> None:
    request = request_for(phone(), note="長" * 1200)
    result = decide(request, phone())
    assert result.evidence["channel"]["tbs"] == "sha256"
    offline(result.evidence)
    # The signature is over the line, not the text: a signature over the text is refused.
    with pytest.raises(Exception) as caught:
        decide(request, phone(), signature=pkcs1(phone(), request.signed_bytes))
    assert getattr(caught.value, "code", "") == "signature_invalid"


def test_the_decision_refuses_a_card_certificate_on_the_mobile_channel() -> None:
    with pytest.raises(MobileCertificateRequired):
        decide(request_for(card()), card())


def test_the_decision_refuses_another_signature_type_than_the_channels() -> None:
    with pytest.raises(SigningRequestInvalid):
        decide(request_for(phone()), phone(), signature_type="PKCS7")


def test_the_decision_refuses_another_signer_than_the_request_names() -> None:
    with pytest.raises(SignerMismatch):
        decide(request_for(card()), phone())


# --- offline --------------------------------------------------------------------------------


def test_offline_a_card_signature_relabelled_as_the_phones_is_refused() -> None:
    """A card's RAW signature is PKCS#1 over the same text; relabelling its record as a
    phone signature (digests fixed, no time-stamp) is caught by the form check."""
    request = request_for(card())
    raw_request = replace(request, signature_type="RAW")
    raw = verify_signing(
        request=raw_request,
        signature=pkcs1(card(), request.signed_bytes),
        signature_type="RAW",
        certificate=card().signing.cert_der(),
        verifier=verifier(),
        hash_key=HASH_KEY,
        at=NOW + timedelta(seconds=30),
    ).evidence
    offline(raw)
    forged = redigest(
        {**raw, "signature_type": "PKCS1", "channel": mobile_channel(request.text).as_json()}
    )
    with pytest.raises(EvidenceInvalid) as caught:
        offline(forged)
    assert caught.value.data["field"] == "channel"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signature_type": "RAW"}, "signature_type"),
        ({"signature_type": "PKCS7"}, "signature_type"),
        ({"channel": {"name": "mobile-sp-api"}}, "channel"),
        (
            {"channel": {"name": "x", "tbs": "text", "sign_type": "PKCS#1", "form": "mobile"}},
            "channel",
        ),
    ],
)
def test_offline_a_record_inconsistent_with_its_channel_names_the_field(
    change: dict[str, Any], field: str
) -> None:
    record = decide(request_for(phone()), phone()).evidence
    with pytest.raises(EvidenceInvalid) as caught:
        offline(redigest({**record, **change}))
    assert caught.value.data["field"] == field
    # Without fixing the digests, the changed field itself is named.
    with pytest.raises(EvidenceInvalid) as caught:
        offline({**record, **change})
    assert caught.value.data["field"] in (field, "digests")


def test_offline_dropping_the_channel_is_caught_by_the_digests() -> None:
    record = decide(request_for(phone()), phone()).evidence
    with pytest.raises(EvidenceInvalid) as caught:
        offline({k: v for k, v in record.items() if k != "channel"})
    assert caught.value.data["field"] == "digests"
    # Even with the digests fixed, the signature is not a card's RAW over the DigestInfo
    # unless it is PKCS#1 over the text: relabelled PKCS1 without a channel is no type.
    with pytest.raises(EvidenceInvalid) as caught:
        offline(redigest({k: v for k, v in record.items() if k != "channel"}))
    assert caught.value.data["field"] == "signature_type"
    assert json.dumps(record)  # the record is JSON as stored
