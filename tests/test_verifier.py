"""moica_auth.verifier: the whole token (signature → chain → revocation) on the test PKI."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from moica_auth.exceptions import MoicaAuthError, RevocationUnavailable
from moica_auth.revocation.policy import (
    RevocationChecker,
    RevocationPolicy,
    RevocationResult,
    RevocationRule,
)
from moica_auth.revocation.types import CertStatus, SourceName
from moica_auth.testing.pki import CitizenCard
from moica_auth.testing.softcard import sign_response
from moica_auth.validation.chain import ValidatedChain, ValidationPolicy
from moica_auth.validation.trust import TrustStore
from moica_auth.verifier import LoginVerifier, VerifiedLogin, VerifierConfig
from tests.validation_fixtures import AT, card, pki, trust, with_duplicate_extension

CHALLENGE = b"moica-auth login v1\nnonce=verifier-test\norigin=https://rp.example\n"
NONCE = b"verifier-test-nonce"


def _sign(
    c: CitizenCard,
    *,
    kind: str = "PKCS7",
    encryption: bool = False,
    content: bytes = CHALLENGE,
    **kwargs: Any,
) -> dict[str, Any]:
    key = c.encryption if encryption else c.signing
    return sign_response(
        content,
        private_key=key.private_key,
        certificate=key.certificate,
        card_number=c.card_number,
        signing_time=AT,
        signature_type=kind,
        nonce=NONCE if kind == "PKCS7" else None,
        **kwargs,
    )


def _verify(
    verifier: LoginVerifier, response: dict[str, Any], kind: str, **kwargs: Any
) -> VerifiedLogin:
    kwargs.setdefault("at", AT)
    kwargs.setdefault("content", CHALLENGE)
    return verifier.verify(
        signature=response["signature"],
        signature_type=kind,
        certificate=response["certb64"],
        **kwargs,
    )


def _rejects(
    code: str, verifier: LoginVerifier, response: dict[str, Any], kind: str, **kwargs: Any
) -> MoicaAuthError:
    with pytest.raises(MoicaAuthError) as info:
        _verify(verifier, response, kind, **kwargs)
    assert info.value.code == code, info.value.detail
    return info.value


@pytest.fixture(scope="module")
def verifier() -> LoginVerifier:
    return LoginVerifier(VerifierConfig(trust=trust()))


@dataclass
class TableSource:
    """A revocation source answering from a table (serial → status): the protocol the
    real CRL/OCSP sources implement, so the real RevocationChecker can run on it."""

    name: SourceName = "crl"
    revoked: set[int] = field(default_factory=set)
    calls: list[datetime] = field(default_factory=list)
    unavailable: bool = False

    def knows_issuer(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> bool:
        return True

    def status(
        self, *, certificate: x509.Certificate, issuer: x509.Certificate, at: datetime
    ) -> CertStatus:
        self.calls.append(at)
        if self.unavailable:
            raise RevocationUnavailable("the table is down")
        if certificate.serial_number in self.revoked:
            return CertStatus(
                status="revoked",
                source="crl",
                revoked_at=AT - timedelta(days=1),
                reason="key_compromise",
            )
        return CertStatus(
            status="good", source="crl", this_update=AT, next_update=AT + timedelta(days=1)
        )


@dataclass
class ReturningChecker:
    """A checker that *returns* a result with ``status`` instead of raising: what a buggy
    custom checker (``MOICA_AUTH_REVOCATION["checker"]``) might do."""

    status: str | None
    policy: RevocationPolicy | None = None
    calls: list[datetime] = field(default_factory=list)

    def check(self, chain: ValidatedChain, *, at: datetime) -> Any:
        self.calls.append(at)
        if self.status is None:
            return None
        if self.status == "unknown":
            # A typed "unknown" claims soft-fail; this checker's policy has none.
            return RevocationResult(status="unknown", source="crl", checked_at=at, soft_failed=True)
        # Anything else cannot even be a RevocationResult: an untyped look-alike.
        return SimpleNamespace(status=self.status, source="crl", checked_at=at)


def _with_revocation(source: TableSource) -> LoginVerifier:
    checker = RevocationChecker(
        policy=RevocationPolicy(order=("crl",), intermediates=RevocationRule.NEVER),
        sources={"crl": source},
    )
    return LoginVerifier(VerifierConfig(trust=trust(), revocation=checker))


# --- accepted tokens ------------------------------------------------------------------


class TestAccepted:
    @pytest.mark.parametrize("generation", ["G2", "G3"])
    @pytest.mark.parametrize("kind", ["PKCS7", "PKCS1"])
    def test_card_token(self, verifier: LoginVerifier, generation: str, kind: str) -> None:
        c = card(generation)
        login = _verify(
            verifier,
            _sign(c, kind=kind),
            kind,
            expected_nonce=NONCE if kind == "PKCS7" else None,
            expected_card_number=c.card_number if kind == "PKCS7" else None,
        )
        assert login.chain.leaf == c.signing.certificate
        assert login.chain.chain[-1] == pki().root(generation).certificate
        assert login.chain.validated_at == AT
        assert login.signature.signature_type == kind
        assert login.citizen is login.chain.citizen
        assert login.citizen.card_serial == c.subject_serial
        assert login.revocation is None

    def test_mobile_token(self, verifier: LoginVerifier) -> None:
        login = _verify(verifier, _sign(card("G3", "mobile")), "PKCS7")
        assert login.citizen.form == "mobile"

    def test_pkcs7_carried_intermediate_is_used(self) -> None:
        # The trust store knows only the roots; the SignedData carries MOICA G3.
        store = TrustStore.from_certificates(pki().anchors)
        bare = LoginVerifier(VerifierConfig(trust=store))
        c = card("G3")
        with_ca = _sign(c, extra_certificates=[pki().moica_g3.certificate])
        assert len(_verify(bare, with_ca, "PKCS7").chain.chain) == 3
        _rejects("untrusted_issuer", bare, _sign(c), "PKCS7")

    def test_certificate_optional_for_pkcs7(self, verifier: LoginVerifier) -> None:
        response = _sign(card("G2"))
        login = verifier.verify(
            content=CHALLENGE,
            signature=base64.b64decode(response["signature"]),
            signature_type="PKCS7",
            at=AT,
        )
        assert login.citizen.usage == "signing"


# --- refused tokens: each step's error comes through unchanged ------------------------


class TestRefused:
    def test_signature_over_other_content(self, verifier: LoginVerifier) -> None:
        _rejects(
            "signature_invalid",
            verifier,
            _sign(card("G3"), kind="PKCS1"),
            "PKCS1",
            content=CHALLENGE + b"!",
        )

    def test_nonce_mismatch(self, verifier: LoginVerifier) -> None:
        _rejects("nonce_mismatch", verifier, _sign(card("G3")), "PKCS7", expected_nonce=b"another")

    @pytest.mark.parametrize("kind", ["PKCS1", "PKCS7"])
    def test_certb64_with_duplicate_extensions(self, verifier: LoginVerifier, kind: str) -> None:
        # Attacker-chosen certb64 that cryptography loads but cannot read the extensions
        # of: a typed refusal, never cryptography's DuplicateExtension.
        c = card("G3")
        bad = with_duplicate_extension(c.signing.certificate, c.issuer.private_key)
        response = _sign(c, kind=kind)
        response["certb64"] = base64.b64encode(bad.public_bytes(Encoding.DER)).decode()
        with pytest.raises(MoicaAuthError) as info:
            _verify(verifier, response, kind)
        assert info.value.code in ("malformed_certificate", "certificate_mismatch")
        with pytest.raises(MoicaAuthError) as info:
            verifier.check_certificate(certificate=bad, at=AT)
        assert info.value.code == "malformed_certificate"

    def test_encryption_certificate(self, verifier: LoginVerifier) -> None:
        response = _sign(card("G3"), kind="PKCS1", encryption=True)
        _rejects("wrong_key_usage", verifier, response, "PKCS1")

    def test_expired_certificate(self, verifier: LoginVerifier) -> None:
        leaf = card("G3").signing.certificate
        _rejects(
            "certificate_expired",
            verifier,
            _sign(card("G3")),
            "PKCS7",
            at=leaf.not_valid_after_utc + timedelta(days=1),
        )

    def test_untrusted_issuer(self) -> None:
        g2_only = LoginVerifier(
            VerifierConfig(
                trust=TrustStore.from_certificates([pki().grca_g2.certificate], pki().intermediates)
            )
        )
        _rejects("untrusted_issuer", g2_only, _sign(card("G3")), "PKCS7")

    def test_allowed_hashes_come_from_the_config(self) -> None:
        strict = LoginVerifier(VerifierConfig(trust=trust(), allowed_hashes=frozenset({"sha512"})))
        _rejects("weak_hash", strict, _sign(card("G3"), kind="PKCS1"), "PKCS1")

    def test_policy_comes_from_the_config(self) -> None:
        strict = LoginVerifier(
            VerifierConfig(trust=trust(), policy=ValidationPolicy(min_rsa_bits=4096))
        )
        _rejects("weak_key", strict, _sign(card("G3")), "PKCS7")


# --- revocation -----------------------------------------------------------------------


class TestRevocation:
    def test_good_status_is_returned(self) -> None:
        source = TableSource()
        login = _verify(_with_revocation(source), _sign(card("G2")), "PKCS7")
        assert isinstance(login.revocation, RevocationResult)
        assert login.revocation.status == "good"
        assert source.calls == [AT]  # checked once, at the pinned time

    def test_revoked_certificate_is_refused(self) -> None:
        c = card("G2")
        source = TableSource(revoked={c.signing.certificate.serial_number})
        err = _rejects("certificate_revoked", _with_revocation(source), _sign(c), "PKCS7")
        assert err.data["reason"] == "key_compromise"

    def test_revocation_not_asked_when_the_chain_fails(self) -> None:
        source = TableSource()
        _rejects(
            "wrong_key_usage", _with_revocation(source), _sign(card("G2"), encryption=True), "PKCS7"
        )
        assert source.calls == []

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            ("unknown", "revocation_unavailable"),
            # Not interpreted: only a RevocationResult is ever read, and a revoked
            # certificate is raised, never returned.
            ("revoked", "revocation_unavailable"),
            ("hold", "revocation_unavailable"),
            ("good", "revocation_unavailable"),
            (None, "revocation_unavailable"),
        ],
    )
    def test_checker_result_other_than_good_is_refused(self, status: str | None, code: str) -> None:
        # A checker that *returns* a non-good status (a custom checker breaking the
        # protocol, or soft-fail's "unknown" without soft-fail) must not let a login in.
        checker = ReturningChecker(status, policy=RevocationPolicy(order=("crl",)))
        v = LoginVerifier(VerifierConfig(trust=trust(), revocation=checker))
        _rejects(code, v, _sign(card("G3")), "PKCS7")
        assert checker.calls == [AT]
        with pytest.raises(MoicaAuthError) as info:
            v.check_certificate(certificate=card("G3").signing.certificate, at=AT)
        assert info.value.code == code

    def test_checker_result_without_policy_cannot_soft_fail(self) -> None:
        v = LoginVerifier(VerifierConfig(trust=trust(), revocation=ReturningChecker("unknown")))
        _rejects("revocation_unavailable", v, _sign(card("G3")), "PKCS7")

    @pytest.mark.parametrize(
        ("status", "soft_failed"),
        [("revoked", False), ("hold", False), ("unknown", False), ("good", True)],
    )
    def test_result_type_admits_only_good_or_soft_failed_unknown(
        self, status: str, soft_failed: bool
    ) -> None:
        with pytest.raises(ValueError):
            RevocationResult(
                status=status,  # type: ignore[arg-type]
                source="crl",
                checked_at=AT,
                soft_failed=soft_failed,
            )

    def test_unknown_passes_only_under_the_checkers_soft_fail(self) -> None:
        silent = TableSource(name="ocsp", unavailable=True)
        checker = RevocationChecker(
            policy=RevocationPolicy(
                order=("ocsp",), soft_fail=True, intermediates=RevocationRule.NEVER
            ),
            sources={"ocsp": silent},
        )
        login = _verify(
            LoginVerifier(VerifierConfig(trust=trust(), revocation=checker)),
            _sign(card("G3")),
            "PKCS7",
        )
        assert login.revocation is not None and login.revocation.status == "unknown"
        closed = RevocationChecker(
            policy=RevocationPolicy(order=("ocsp",), intermediates=RevocationRule.NEVER),
            sources={"ocsp": silent},
        )
        _rejects(
            "revocation_unavailable",
            LoginVerifier(VerifierConfig(trust=trust(), revocation=closed)),
            _sign(card("G3")),
            "PKCS7",
        )


class TestCheckCertificate:
    def test_chain_without_revocation(self, verifier: LoginVerifier) -> None:
        c = card("G3")
        chain, status = verifier.check_certificate(certificate=c.signing.cert_pem(), at=AT)
        assert isinstance(chain, ValidatedChain)
        assert chain.leaf == c.signing.certificate
        assert status is None

    def test_chain_with_revocation_and_token_intermediates(self) -> None:
        source = TableSource()
        store = TrustStore.from_certificates(pki().anchors)
        checker = RevocationChecker(
            policy=RevocationPolicy(order=("crl",)), sources={"crl": source}
        )
        v = LoginVerifier(VerifierConfig(trust=store, revocation=checker))
        chain, status = v.check_certificate(
            certificate=card("G2").signing.certificate,
            intermediates=[pki().moica_g2.certificate],
            at=AT,
        )
        assert len(chain.chain) == 3
        assert status is not None and status.status == "good"

    def test_refuses_like_verify(self, verifier: LoginVerifier) -> None:
        with pytest.raises(MoicaAuthError) as info:
            verifier.check_certificate(certificate=card("G3").encryption.certificate, at=AT)
        assert info.value.code == "wrong_key_usage"


class TestConfig:
    def test_defaults(self) -> None:
        config = VerifierConfig(trust=trust())
        assert config.policy == ValidationPolicy()
        assert config.allowed_hashes == frozenset({"sha256", "sha384", "sha512"})
        assert config.revocation is None

    def test_rejects_empty_hashes(self) -> None:
        with pytest.raises(ValueError):
            VerifierConfig(trust=trust(), allowed_hashes=frozenset())

    @pytest.mark.parametrize(
        "hashes",
        [
            "sha256",  # a bare string would be the set of its letters
            frozenset({"sha-3"}),
            frozenset({"md5"}),  # refused by the signature module whatever the config says
            frozenset({"sha256", 256}),
        ],
    )
    def test_rejects_hash_names_that_can_never_match(self, hashes: object) -> None:
        with pytest.raises(ValueError):
            VerifierConfig(trust=trust(), allowed_hashes=hashes)  # type: ignore[arg-type]

    def test_hash_names_are_normalised(self) -> None:
        # HiPKI and settings spell them "SHA256" / "SHA-256"; unnormalised they would
        # never match and every login would fail with weak_hash.
        config = VerifierConfig(trust=trust(), allowed_hashes=frozenset({"SHA-256", "SHA512"}))
        assert config.allowed_hashes == frozenset({"sha256", "sha512"})
        login = _verify(LoginVerifier(config), _sign(card("G3")), "PKCS7")
        assert login.signature.hash_algorithm == "sha256"

    def test_rejects_wrong_types(self) -> None:
        with pytest.raises(TypeError):
            VerifierConfig(trust=pki().anchors)  # type: ignore[arg-type]

    def test_naive_time_is_a_programming_error(self, verifier: LoginVerifier) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            _verify(verifier, _sign(card("G3")), "PKCS7", at=AT.replace(tzinfo=None))


class TestRepeatedLogins:
    """The per-store and per-certificate memos never turn a refusal into an acceptance."""

    def test_revocation_is_asked_on_every_login(self) -> None:
        c = card("G3")
        response = _sign(c)
        good = TableSource()
        warm = _with_revocation(good)
        for _ in range(3):
            result = _verify(warm, response, "PKCS7").revocation
            assert isinstance(result, RevocationResult) and result.status == "good"
        assert good.calls == [AT, AT, AT]
        revoked = TableSource(revoked={c.signing.certificate.serial_number})
        _rejects("certificate_revoked", _with_revocation(revoked), response, "PKCS7")

    def test_another_trust_store_decides_afresh(self, verifier: LoginVerifier) -> None:
        response = _sign(card("G3"))
        _verify(verifier, response, "PKCS7")
        p = pki()
        g2_only = LoginVerifier(
            VerifierConfig(
                trust=TrustStore.from_certificates([p.grca_g2.certificate], p.intermediates)
            )
        )
        _rejects("untrusted_issuer", g2_only, response, "PKCS7")
        _verify(verifier, response, "PKCS7")

    def test_same_token_at_a_later_time_expires(self, verifier: LoginVerifier) -> None:
        c = card("G3")
        response = _sign(c)
        _verify(verifier, response, "PKCS7")
        later = c.signing.certificate.not_valid_after_utc + timedelta(seconds=1)
        _rejects("certificate_expired", verifier, response, "PKCS7", at=later)
