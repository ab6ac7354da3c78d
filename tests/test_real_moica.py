"""The validator against REAL MOICA/GRCA certificates and signatures (../shared/data).

Skipped when the reference data folder is absent. The real end-entity certificates carry
a person's name and ID last-4: assertions never put those values in their output (they
compare inside a boolean or check shapes only).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from moica_auth.certificate import CitizenCertificate
from moica_auth.exceptions import ConfigurationError, MoicaAuthError
from moica_auth.testing.pki import CertifiedKey, TestPKI, citizen_subject
from moica_auth.validation.chain import ValidationPolicy, validate_chain
from moica_auth.validation.trust import (
    OFFICIAL_CA_FINGERPRINTS,
    TrustStore,
    fingerprint,
    official_name,
    require_official,
)
from moica_auth.verifier import LoginVerifier, VerifierConfig
from tests.conftest import REAL_VECTORS_AT
from tests.validation_fixtures import AT, load_pem, pki, real_vectors

pytestmark = pytest.mark.realdata

GENERIC = ValidationPolicy(profile="generic")
CA_NAMES = ("GRCA-G1", "GRCA-G2", "GRCA-G3", "MOICA-G2", "MOICA-G3")
PAIRS = (("GRCA-G2", "MOICA-G2", "G2"), ("GRCA-G3", "MOICA-G3", "G3"))


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, x509.Certificate]:
    return {name: load_pem(shared_data / "anchors" / f"{name}.pem") for name in CA_NAMES}


@pytest.fixture(scope="module")
def real_trust(real: dict[str, x509.Certificate]) -> TrustStore:
    # GRCA-G1 is in the store on purpose: it shares GRCA-G2's DN, and must not confuse
    # issuer selection.
    return TrustStore.from_certificates(
        [real["GRCA-G1"], real["GRCA-G2"], real["GRCA-G3"]], [real["MOICA-G2"], real["MOICA-G3"]]
    )


@pytest.fixture(scope="module")
def end_entities(shared_data: Path) -> dict[str, x509.Certificate]:
    certs = sorted((shared_data / "vectors" / "certs").glob("EE-MOICA-*.pem"))
    return {"G2" if "-G2-" in p.name else "G3": load_pem(p) for p in certs}


@pytest.fixture(scope="module")
def clones(real: dict[str, x509.Certificate]) -> dict[str, CertifiedKey]:
    """Re-keyed clones of the real CAs (same DER but for the key); the labels match the
    test-PKI tests so the deterministic keys come from the shared on-disk cache."""
    p: TestPKI = pki()
    out: dict[str, CertifiedKey] = {}
    for root, moica, _ in PAIRS:
        out[root] = p.rekey_clone(real[root], label=f"real/{root}.pem")
        out[moica] = p.rekey_clone(real[moica], issuer=out[root], label=f"real/{moica}.pem")
    return out


# --- anchors --------------------------------------------------------------------------


def test_pinned_fingerprints_match_the_reference_copies(
    real: dict[str, x509.Certificate], shared_data: Path
) -> None:
    listed = {
        entry["name"]: entry["sha256_der"]
        for entry in json.loads((shared_data / "anchors" / "anchors.json").read_text())
    }
    for name, cert in real.items():
        assert fingerprint(cert) == OFFICIAL_CA_FINGERPRINTS[name] == listed[name]
        assert official_name(cert) == name
    assert require_official(real["MOICA-G3"]) == "MOICA-G3"
    with pytest.raises(ConfigurationError):
        require_official(real["GRCA-G1"])
    assert require_official(real["GRCA-G1"], allow_legacy=True) == "GRCA-G1"


def test_real_cas_are_accepted_as_anchors(real: dict[str, x509.Certificate]) -> None:
    # Including GRCA-G1 with its non-critical basicConstraints.
    store = TrustStore.from_certificates(real.values())
    assert len(store.anchors) == 5


@pytest.mark.parametrize(("root", "moica", "generation"), PAIRS)
def test_real_ca_pairs_validate(
    real: dict[str, x509.Certificate],
    real_trust: TrustStore,
    root: str,
    moica: str,
    generation: str,
) -> None:
    result = validate_chain(
        certificate=real[moica], trust=real_trust, policy=GENERIC, at=REAL_VECTORS_AT
    )
    assert result.chain == (real[moica], real[root])
    assert result.citizen.generation == generation
    assert result.citizen.usage == "ca"
    # A CA certificate is never a login certificate.
    with pytest.raises(MoicaAuthError) as info:
        validate_chain(certificate=real[moica], trust=real_trust, at=REAL_VECTORS_AT)
    assert info.value.code == "wrong_key_usage"


def test_identical_grca_dns_pick_g2_by_key(
    real: dict[str, x509.Certificate], real_trust: TrustStore
) -> None:
    assert real["GRCA-G1"].subject == real["GRCA-G2"].subject
    assert real_trust.find_issuers(real["MOICA-G2"]) == (real["GRCA-G2"],)


def test_moica_g3_is_untrusted_under_g2_anchors_only(real: dict[str, x509.Certificate]) -> None:
    store = TrustStore.from_certificates([real["GRCA-G1"], real["GRCA-G2"]])
    with pytest.raises(MoicaAuthError) as info:
        validate_chain(
            certificate=real["MOICA-G3"], trust=store, policy=GENERIC, at=REAL_VECTORS_AT
        )
    assert info.value.code == "untrusted_issuer"


# --- re-keyed clones of the real CAs --------------------------------------------------


def _leaf_under(issuer: CertifiedKey, label: str) -> x509.Certificate:
    p = pki()
    key = p.key("real-clone/leaf")
    exts = p.citizen_extensions(
        issuer=issuer,
        public_key=key.public_key(),
        usage="signing",
        id_last4="0000",
        crl_urls=p.default_crl_urls("G3"),
        ocsp_url=None,
    )
    return p.issue_leaf(
        issuer=issuer,
        subject=citizen_subject("測試四", "0000000000000004"),
        private_key=key,
        extensions=exts,
        label=f"real-clone/{label}",
    ).certificate


@pytest.mark.parametrize(("root", "moica", "generation"), PAIRS)
def test_leaf_under_rekeyed_clone_validates(
    clones: dict[str, CertifiedKey],
    real_trust: TrustStore,
    root: str,
    moica: str,
    generation: str,
) -> None:
    leaf = _leaf_under(clones[moica], generation)
    store = TrustStore.from_certificates([clones[root].certificate], [clones[moica].certificate])
    result = validate_chain(certificate=leaf, trust=store, at=AT)
    assert result.chain == (leaf, clones[moica].certificate, clones[root].certificate)
    # The clones keep the real SKI/AKI, so generation detection works on them.
    assert result.citizen.generation == generation
    assert result.citizen.usage == "signing"
    # Same DNs and the same key identifiers as the real CAs, but another key: the real
    # trust store must not accept it.
    with pytest.raises(MoicaAuthError) as info:
        validate_chain(
            certificate=leaf,
            trust=real_trust,
            intermediates=[clones[moica].certificate],
            at=AT,
        )
    assert info.value.code == "untrusted_issuer"


# --- the real end-entity certificates and signatures ----------------------------------


@pytest.mark.parametrize(("generation", "form"), [("G2", "card"), ("G3", "mobile")])
def test_real_end_entity_validates(
    end_entities: dict[str, x509.Certificate],
    real: dict[str, x509.Certificate],
    real_trust: TrustStore,
    generation: str,
    form: str,
) -> None:
    leaf = end_entities[generation]
    result = validate_chain(certificate=leaf, trust=real_trust, at=REAL_VECTORS_AT)
    assert result.chain[1] == real[f"MOICA-{generation}"]
    assert result.chain[2] == real[f"GRCA-{generation}"]
    citizen = result.citizen
    assert citizen.generation == generation
    assert citizen.usage == "signing"
    assert citizen.form == form
    assert citizen.key_size == 2048
    assert citizen.subject_type == "2.16.886.1.100.3.1.1"
    # Personal fields: shapes only, never the values in the assertion output.
    has_name = bool(citizen.name)
    last4_ok = citizen.id_last4 is not None and len(citizen.id_last4) == 4
    serial_ok = citizen.card_serial is not None and len(citizen.card_serial) == 16
    assert has_name, "no name"
    assert last4_ok, "id_last4 is not 4 characters"
    assert serial_ok, "card serial is not 16 characters"
    with pytest.raises(MoicaAuthError) as info:
        validate_chain(
            certificate=leaf,
            trust=real_trust,
            at=leaf.not_valid_after_utc + timedelta(seconds=1),
        )
    assert info.value.code == "certificate_expired"


def test_real_signatures_verify_end_to_end(
    shared_data: Path, real: dict[str, x509.Certificate], real_trust: TrustStore
) -> None:
    verifier = LoginVerifier(VerifierConfig(trust=real_trust))
    vectors = real_vectors(shared_data)
    assert len(vectors) == 2
    generations = set()
    for vector in vectors:
        tbs = bytes.fromhex(vector["tbs_hex"])
        login = verifier.verify(
            content=tbs,
            signature=vector["signature_b64"],
            signature_type="PKCS1",
            certificate=vector["certb64"],
            at=REAL_VECTORS_AT,
        )
        generations.add(login.citizen.generation)
        assert login.signature.hash_algorithm == "sha256"
        assert login.revocation is None
        assert format(login.chain.leaf.serial_number, "X") == vector["signer_serial_hex"]
        assert login.chain.chain[-1] == real[vector["root_anchor_file"].split("/")[-1][:-4]]
        with pytest.raises(MoicaAuthError) as info:
            verifier.verify(
                content=tbs + b"x",
                signature=vector["signature_b64"],
                signature_type="PKCS1",
                certificate=vector["certb64"],
                at=REAL_VECTORS_AT,
            )
        assert info.value.code == "signature_invalid"
    assert generations == {"G2", "G3"}


def test_real_profile_without_chain(end_entities: dict[str, x509.Certificate]) -> None:
    # The profile parser alone, on both generations (used by the `inspect` CLI).
    for generation, cert in end_entities.items():
        citizen = CitizenCertificate.from_certificate(cert)
        assert citizen.generation == generation
        assert citizen.policy_oids == ("2.16.886.101.0.3.3",)
        assert citizen.email is None
