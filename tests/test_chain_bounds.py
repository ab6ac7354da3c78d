"""Bounded work for attacker-chosen tokens (moica_auth.validation.bounds), timing-free.

Every test counts what ran instead of timing it: signature verifications through the
product's :class:`SignatureBudget`, and refusals that must come before any work. The CPU
cost of the same floods is measured by ``benchmarks/chain_attack.py``.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from moica_auth.certificate import load_certificate, load_certificates
from moica_auth.exceptions import ChainTooComplex, MoicaAuthError, UnsupportedKey
from moica_auth.signature import verify_signature
from moica_auth.testing.chain_floods import (
    FLOOD_NAME,
    big_exponent_flood,
    distinct_flood,
    flood_token,
    self_issued_flood,
)
from moica_auth.testing.softcard import SoftCard, build_signed_data
from moica_auth.validation.bounds import (
    MAX_CARRIED_CERTIFICATES,
    MAX_SIGNATURE_CHECKS,
    SignatureBudget,
    require_usable_key,
)
from moica_auth.validation.chain import ValidationPolicy, validate_chain
from moica_auth.verifier import LoginVerifier, VerifierConfig
from tests.validation_fixtures import AT, card, pki, trust

CONTENT = b"moica-auth bounded work"
NONCE = b"n" * 16


@functools.cache
def shared_key() -> rsa.RSAPrivateKey:
    return pki().key("chain/ca-key")  # an existing test key: generating one is slow


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)


def carried(token: dict[str, Any], max_certificates: int = 256) -> tuple[Any, Any]:
    """The signer certificate and the other carried certificates of ``token``."""
    signed = verify_signature(
        content=CONTENT,
        signature=token["signature"],
        signature_type="PKCS7",
        certificate=token["certb64"],
        max_certificates=max_certificates,
    )
    return signed.certificate, signed.certificates


def refused(
    code: str, leaf: x509.Certificate, intermediates: Any, budget: SignatureBudget, **policy: Any
) -> MoicaAuthError:
    with pytest.raises(MoicaAuthError) as exc:
        validate_chain(
            certificate=leaf,
            trust=trust(),
            intermediates=intermediates,
            policy=ValidationPolicy(**policy),
            at=AT,
            budget=budget,
        )
    assert exc.value.code == code, exc.value
    return exc.value


def verifier(**policy: Any) -> LoginVerifier:
    return LoginVerifier(VerifierConfig(trust=trust(), policy=ValidationPolicy(**policy)))


def verify_token(token: dict[str, Any], **policy: Any) -> Any:
    return verifier(**policy).verify(
        content=CONTENT,
        signature=token["signature"],
        signature_type="PKCS7",
        certificate=token["certb64"],
        at=AT,
    )


# --- the number of carried certificates -----------------------------------------------


def test_a_64kb_self_issued_flood_is_refused_before_any_certificate_is_read() -> None:
    # The review's attack: ~170 self-issued certificates sharing one Ed25519 key (a 64 KB post).
    flood = self_issued_flood(170, signing_key=ed_key(), at=AT)
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    assert 40_000 < len(token["signature"]) < 64 * 1024
    with pytest.raises(ChainTooComplex) as exc:
        verify_token(token)
    assert exc.value.code == "chain_too_complex" and exc.value.http_status == 400
    assert exc.value.data == {"limit": MAX_CARRIED_CERTIFICATES}
    # Handed to the chain validator directly (a caller that skipped the signature
    # layer): refused on the count, before a single signature check.
    budget = SignatureBudget()
    refused("chain_too_complex", load_certificate(token["certb64"]), flood.certificates, budget)
    assert budget.spent == 0


def test_the_limit_is_exact_and_counts_every_carried_certificate() -> None:
    # Eight carried certificates (the signer and seven others) pass the count; nine do not.
    at_limit = flood_token(
        self_issued_flood(MAX_CARRIED_CERTIFICATES - 1, signing_key=shared_key(), at=AT),
        content=CONTENT,
        leaf_key=shared_key(),
        at=AT,
    )
    over = flood_token(
        self_issued_flood(MAX_CARRIED_CERTIFICATES, signing_key=shared_key(), at=AT),
        content=CONTENT,
        leaf_key=shared_key(),
        at=AT,
    )
    _, others = carried(at_limit, max_certificates=MAX_CARRIED_CERTIFICATES)
    assert len(others) == MAX_CARRIED_CERTIFICATES - 1
    with pytest.raises(ChainTooComplex):
        carried(over, max_certificates=MAX_CARRIED_CERTIFICATES)
    # Past the count, the flood under the limit is searched and refused as untrusted.
    with pytest.raises(MoicaAuthError) as exc:
        verify_token(at_limit)
    assert exc.value.code == "untrusted_issuer"


def test_a_real_token_with_its_chain_is_within_every_limit() -> None:
    c = card("G3")
    token = SoftCard(c, clock=lambda: AT).sign(CONTENT, extra_certificates=c.chain)
    budget = SignatureBudget()
    signer, others = carried(token)
    result = validate_chain(
        certificate=signer, trust=trust(), intermediates=others, at=AT, budget=budget
    )
    assert result.anchor == pki().grca_g3.certificate
    # cryptography's verifier verified the path; the issuer search reused its links.
    assert budget.spent <= 2
    assert verify_token(token).chain.leaf == c.signing.certificate


# --- unusual keys ------------------------------------------------------------------------


def test_35_big_exponent_certificates_are_refused_with_no_signature_check() -> None:
    # The review's second attack: 35 carried CAs with a 3,072-bit RSA public exponent.
    flood = big_exponent_flood(
        35,
        signing_key=shared_key(),
        modulus=pki().moica_g3.certificate.public_key().public_numbers().n,  # type: ignore[union-attr]
        at=AT,
    )
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    with pytest.raises(ChainTooComplex):
        verify_token(token)
    # With the count raised so that the keys themselves are weighed: refused before any
    # signature is verified with one of them.
    leaf, others = carried(token)
    assert len(others) == 35
    budget = SignatureBudget()
    error = refused("unsupported_key", leaf, others, budget, max_carried_certificates=64)
    assert error.http_status == 403 and error.data == {"exponent_bits": 3072}
    assert budget.spent == 0
    with pytest.raises(UnsupportedKey):
        verify_token(token, max_carried_certificates=64)


def test_a_signer_with_a_big_exponent_is_refused_before_its_signature_is_verified() -> None:
    # The signer's key is screened before the one RSA verification of the token: the
    # refusal is unsupported_key, not signature_invalid (the signature is not even valid).
    modulus = shared_key().public_key().public_numbers().n
    big = rsa.RSAPublicNumbers((1 << 1500) | 1, modulus).public_key()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(FLOOD_NAME)
        .issuer_name(FLOOD_NAME)
        .public_key(big)
        .serial_number(7)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .sign(shared_key(), hashes.SHA256())
    )
    der = build_signed_data(content=CONTENT, private_key=shared_key(), certificate=leaf)
    with pytest.raises(MoicaAuthError) as exc:
        verify_signature(content=CONTENT, signature=der, signature_type="PKCS7")
    assert exc.value.code == "unsupported_key"


@pytest.mark.parametrize(
    ("exponent", "bits", "profile", "outcome"),
    [
        (65537, 2048, "moica", None),
        (3, 2048, "moica", None),
        (2**32 - 1, 2048, "moica", None),
        (2**32 + 1, 2048, "moica", "unsupported_key"),
        (65537, 8192, "moica", "unsupported_key"),
        (65537, 8192, "generic", None),
    ],
)
def test_rsa_keys_outside_the_profile_are_unsupported(
    exponent: int, bits: int, profile: str, outcome: str | None
) -> None:
    # Only the public numbers matter: a modulus of the right size (not a real key).
    # (Even exponents and e < 3 cannot even be built: cryptography refuses them.)
    modulus = (1 << (bits - 1)) | 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(FLOOD_NAME)
        .issuer_name(FLOOD_NAME)
        .public_key(rsa.RSAPublicNumbers(exponent, modulus).public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .sign(ed_key(), None)
    )
    if outcome is None:
        require_usable_key(cert, profile=profile, role="carried certificate")
    else:
        with pytest.raises(UnsupportedKey):
            require_usable_key(cert, profile=profile, role="carried certificate")


def test_non_rsa_carried_cas_are_refused_in_the_moica_profile_only() -> None:
    flood = self_issued_flood(4, signing_key=ed_key(), at=AT)
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    leaf, others = carried(token)
    budget = SignatureBudget()
    refused("unsupported_key", leaf, others, budget)
    assert budget.spent == 0
    # The generic profile (RFC 5280 only, e.g. PKITS) still weighs them, within budget.
    generic = SignatureBudget()
    refused(
        "untrusted_issuer",
        leaf,
        others,
        generic,
        profile="generic",
        allowed_policy_oids=frozenset({"2.5.29.32.0"}),
    )
    assert 0 < generic.spent <= len(others) + 1


# --- the signature checks of the issuer search ----------------------------------------


@pytest.mark.parametrize("count", [8, 20, 40])
def test_a_shared_key_flood_costs_one_check_per_certificate(count: int) -> None:
    # Every flood certificate verifies every other, and the leaf: an unbounded quadratic
    # search would check count² links. Each certificate is expanded once and each
    # (certificate, key) pair verified once: count + 1 checks.
    flood = self_issued_flood(count, signing_key=shared_key(), at=AT)
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    leaf, others = carried(token)
    budget = SignatureBudget(4096)
    refused("untrusted_issuer", leaf, others, budget, max_carried_certificates=64)
    assert budget.spent == count + 1


def test_distinct_keys_are_each_checked_once_per_certificate() -> None:
    flood = distinct_flood(6, signing_key=ed_key(), at=AT)
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    leaf, others = carried(token)
    budget = SignatureBudget(4096)
    refused(
        "untrusted_issuer",
        leaf,
        others,
        budget,
        profile="generic",
        allowed_policy_oids=frozenset({"2.5.29.32.0"}),
    )
    # The leaf against each of the 6 keys; no flood certificate verifies under the leaf's
    # issuer key, so nothing else is expanded.
    assert budget.spent == len(others)


def test_the_budget_stops_the_search_at_its_limit() -> None:
    flood = self_issued_flood(40, signing_key=shared_key(), at=AT)
    token = flood_token(flood, content=CONTENT, leaf_key=shared_key(), at=AT)
    leaf, others = carried(token)
    budget = SignatureBudget(16)
    error = refused(
        "chain_too_complex",
        leaf,
        others,
        budget,
        max_carried_certificates=64,
        max_signature_checks=16,
    )
    assert error.http_status == 400
    assert budget.spent == 16
    # The policy's own budget does the same when none is passed.
    with pytest.raises(ChainTooComplex):
        validate_chain(
            certificate=leaf,
            trust=trust(),
            intermediates=others,
            policy=ValidationPolicy(max_carried_certificates=64, max_signature_checks=16),
            at=AT,
        )


def test_default_budget_is_enough_for_every_real_generation() -> None:
    for generation in ("G2", "G3"):
        c = card(generation)
        budget = SignatureBudget(MAX_SIGNATURE_CHECKS)
        validate_chain(certificate=c.signing.certificate, trust=trust(), at=AT, budget=budget)
        assert budget.spent <= 2


@pytest.mark.parametrize(
    "limits",
    [
        {"max_carried_certificates": -1},
        {"max_carried_certificates": 257},
        {"max_signature_checks": 0},
        {"max_signature_checks": 4097},
    ],
)
def test_policy_limits_are_validated(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ValidationPolicy(**limits)  # type: ignore[arg-type]


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        SignatureBudget(-1)


# --- the PEM marker flood (issue #8 item 5) ---------------------------------------------

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "flood",
    [
        (_BEGIN + b"\n") * (64 * 1024 // 28),
        _BEGIN * (64 * 1024 // 27),
        (_BEGIN + b"\n" + _END + b"\n") * (64 * 1024 // 54),
    ],
    ids=["begin-lines", "begin-run", "empty-blocks"],
)
def test_a_64kb_pem_marker_flood_is_a_malformed_certificate(flood: bytes) -> None:
    assert len(flood) <= 64 * 1024
    with pytest.raises(MoicaAuthError) as exc:
        load_certificate(flood)
    assert exc.value.code == "malformed_certificate"
    with pytest.raises(MoicaAuthError) as exc:
        load_certificate(flood.decode("ascii"))
    assert exc.value.code == "malformed_certificate"


def test_pem_scanning_keeps_its_rules() -> None:
    cert = card("G3").signing.certificate
    other = card("G2").signing.certificate
    # Text around one block is allowed (RFC 7468 §2); a marker flood around it is text.
    assert load_certificate(b"subject: someone\n" + _pem(cert) + b"\ntrailer\n") == cert
    # A BEGIN marker not followed by white space starts no block.
    assert load_certificate(_BEGIN + b"x\n" + _pem(cert)) == cert
    # Markers after the block with no END are trailing text, as they always were.
    assert load_certificate(_pem(cert) + (_BEGIN + b"\n") * 1000) == cert
    for refused_input in (
        _pem(cert) + _pem(other),  # two certificates
        (_BEGIN + b"\n") * 1000 + _pem(cert),  # the flood swallows the block into one
    ):
        with pytest.raises(MoicaAuthError) as exc:
            load_certificate(refused_input)
        assert exc.value.code == "malformed_certificate"
    assert load_certificates(_pem(cert) + b"comment\n" + _pem(other)) == [cert, other]
    with pytest.raises(MoicaAuthError):
        load_certificates((_BEGIN + b"\n") * 1000)


# --- through Django: the setting and the HTTP refusal -----------------------------------


@pytest.mark.django_db
def test_login_endpoint_refuses_a_flood_with_a_json_400(client: Any, settings: Any) -> None:
    from tests.django_fixtures import (
        assert_refused,
        get_challenge,
        login_body,
        nonce_bytes,
        pem_text,
        post_login,
    )

    p = pki()
    settings.ROOT_URLCONF = "tests.django_urls"
    settings.MOICA_AUTH_ORIGIN = "http://testserver"
    settings.MOICA_AUTH_TRUST_ANCHORS = pem_text(p.anchors)
    settings.MOICA_AUTH_INTERMEDIATES = pem_text(p.intermediates)
    settings.MOICA_AUTH_REVOCATION = None
    settings.MOICA_AUTH_HASH_KEY = b"test-hash-key-0123456789abcdef!!"
    settings.MOICA_AUTH_STORE_PREFIX = "moica-test:chain-bounds:"
    now = datetime.now(UTC)

    def post_flood(count: int) -> Any:
        challenge = get_challenge(client)
        token = flood_token(
            self_issued_flood(count, signing_key=ed_key(), at=now),
            content=challenge["tbs"].encode(),
            leaf_key=shared_key(),
            at=now,
            nonce=nonce_bytes(challenge["nonce"]),
        )
        body = login_body(challenge, token)
        assert len(json.dumps(body)) < 64 * 1024
        return post_login(client, body)

    assert_refused(post_flood(150), "chain_too_complex", 400)
    settings.MOICA_AUTH_MAX_CARRIED_CERTIFICATES = 200
    # Past the count, the Ed25519 keys are refused before anything is verified with them.
    assert_refused(post_flood(150), "unsupported_key", 403)


def test_token_base64_stays_within_the_signature_limit() -> None:
    # The floods above are built to fit the 64 KiB SignedData limit, as an attacker would.
    token = flood_token(
        self_issued_flood(170, signing_key=ed_key(), at=AT),
        content=CONTENT,
        leaf_key=shared_key(),
        at=AT,
    )
    assert len(base64.b64decode(token["signature"])) < 64 * 1024
