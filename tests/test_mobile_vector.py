"""The real mobile-certificate signature ``openac-g3-2026`` (../shared/data/vectors)
through the mobile source's signature + profile path, without revocation, at a time
inside its validity. Nothing from the vector (name, ID last-4) is ever printed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from moica_auth.challenge import ChallengeService
from moica_auth.exceptions import SignatureInvalid
from moica_auth.mobile.client import SpApiClient
from moica_auth.mobile.errors import MobileCertificateRequired
from moica_auth.mobile.settings import parse_mobile_settings
from moica_auth.mobile.source import MobileCredentialSource
from moica_auth.stores import MemoryStore
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifierConfig

AT = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture(scope="module")
def vectors(shared_data: Path) -> dict[str, dict[str, Any]]:
    path = shared_data / "vectors" / "sign-vectors.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (real MOICA signature vectors)")
    return {v["id"]: v for v in json.loads(path.read_text("utf-8"))["vectors"]}


@pytest.fixture(scope="module")
def source(shared_data: Path) -> MobileCredentialSource:
    def pem(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((shared_data / "anchors" / name).read_bytes())

    trust = TrustStore.from_certificates([pem("GRCA-G3.pem")], [pem("MOICA-G3.pem")])
    # No revocation (an explicit choice here: the vector is offline); the SP API client
    # is never called by this path.
    settings = parse_mobile_settings(
        {"api_url": "https://fidoapi-test.moi.gov.tw", "service_id": "S", "aes_key": bytes(32)}
    )
    store = MemoryStore()
    return MobileCredentialSource(
        client=SpApiClient(settings),
        challenges=ChallengeService(store, origin="https://portal.example", binding_key=b"k" * 16),
        verifier=LoginVerifier(VerifierConfig(trust=trust)),
        store=store,
        hash_key=b"k" * 16,
    )


def _parts(vector: dict[str, Any]) -> tuple[bytes, str, str]:
    return bytes.fromhex(vector["tbs_hex"]), vector["signature_b64"], vector["certb64"]


def test_real_mobile_signature_verifies_on_the_mobile_path(
    vectors: dict[str, dict[str, Any]], source: MobileCredentialSource
) -> None:
    content, signature, cert = _parts(vectors["openac-g3-2026"])
    verified = source.verify_mobile_signature(
        content=content, signed_response=signature, cert=cert, sign_type="PKCS#1", at=AT
    )
    assert verified.citizen.form == "mobile"
    assert verified.revocation is None
    assert len(verified.chain.chain) == 3


def test_real_mobile_signature_over_other_text_is_refused(
    vectors: dict[str, dict[str, Any]], source: MobileCredentialSource
) -> None:
    content, signature, cert = _parts(vectors["openac-g3-2026"])
    with pytest.raises(SignatureInvalid):
        source.verify_mobile_signature(
            content=content + b"!", signed_response=signature, cert=cert, at=AT
        )


def test_real_card_certificate_is_refused_on_the_mobile_path(
    vectors: dict[str, dict[str, Any]], source: MobileCredentialSource
) -> None:
    content, signature, cert = _parts(vectors["openac-g2-2022cert"])
    with pytest.raises(MobileCertificateRequired):
        source.verify_mobile_signature(content=content, signed_response=signature, cert=cert, at=AT)
