"""moica_auth.validation: trust store and path validation with the MOICA and generic profiles.

Every rejection asserts its error code, and each would pass if its check were removed.
All times are pinned to the test PKI clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import VerificationError

from moica_auth.exceptions import ConfigurationError, MoicaAuthError
from moica_auth.testing.pki import (
    MOICA_DN,
    MOICA_POLICY_OID,
    CertifiedKey,
    TestPKI,
    citizen_subject,
    key_usage,
    subject_directory_attributes,
)
from moica_auth.validation.chain import ValidatedChain, ValidationPolicy, validate_chain
from moica_auth.validation.trust import (
    OFFICIAL_CA_FINGERPRINTS,
    OFFICIAL_CA_URLS,
    TrustStore,
    official_name,
    require_official,
)
from tests.validation_fixtures import (
    AT,
    card,
    pki,
    trust,
    with_duplicate_extension,
    with_unknown_key_algorithm,
)

GENERIC = ValidationPolicy(profile="generic")


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _root(
    label: str, subject: x509.Name | None = None, *, bc_critical: bool = True
) -> CertifiedKey:
    """A self-signed RSA-2048 root (not part of the default trust store)."""
    key = pki().key(f"chain/root/{label}")
    name = subject if subject is not None else _ca_name(f"Other Root {label}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(pki().serial(f"chain/root/{label}"))
        .not_valid_before(AT - timedelta(days=365))
        .not_valid_after(AT + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=bc_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(cert, key)


def _sub_ca(
    label: str,
    issuer: CertifiedKey,
    *,
    subject: x509.Name | None = None,
    ku: x509.KeyUsage | None = None,
    basic_constraints: x509.BasicConstraints | None = None,
    policies: Sequence[str] = (MOICA_POLICY_OID,),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> CertifiedKey:
    p = pki()
    key = p.key("chain/ca-key")  # one key for all test CAs: key generation is slow
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (_aki(issuer.certificate), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (ku if ku is not None else key_usage(key_cert_sign=True, crl_sign=True), True),
    ]
    if basic_constraints is not None:
        exts.append((basic_constraints, True))
    if policies:
        exts.append(
            (
                x509.CertificatePolicies(
                    [x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in policies]
                ),
                False,
            )
        )
    return p.issue_leaf(
        issuer=issuer,
        subject=subject if subject is not None else _ca_name(f"Sub CA {label}"),
        private_key=key,
        extensions=exts,
        not_before=not_before,
        not_after=not_after,
        hash_algorithm=hash_algorithm,
        label=f"chain/ca/{label}",
    )


def _citizen_leaf(
    label: str,
    issuer: CertifiedKey,
    *,
    key_bits: int = 2048,
    public_key: object = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    edit: object = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A signing certificate with the real citizen profile under ``issuer``."""
    p = pki()
    key = p.key("chain/leaf-key") if key_bits == 2048 else p.key(f"chain/leaf-{key_bits}", key_bits)
    exts = p.citizen_extensions(
        issuer=issuer,
        public_key=key.public_key(),
        usage="signing",
        id_last4="6789",
        crl_urls=p.default_crl_urls("G3"),
        ocsp_url=None,
    )
    if callable(edit):
        exts = edit(exts)
    return p.issue_leaf(
        issuer=issuer,
        subject=citizen_subject("測試三", "0000000000000003"),
        private_key=key,
        public_key=public_key,
        extensions=exts,
        hash_algorithm=hash_algorithm,
        not_before=not_before,
        not_after=not_after,
        label=f"chain/leaf/{label}",
    ).certificate


def _rejects(code: str, **kwargs: object) -> MoicaAuthError:
    kwargs.setdefault("trust", trust())
    kwargs.setdefault("at", AT)
    with pytest.raises(MoicaAuthError) as info:
        validate_chain(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == code, info.value.detail
    return info.value


# --- positive paths -------------------------------------------------------------------


class TestValidCards:
    @pytest.mark.parametrize("generation", ["G2", "G3"])
    def test_card_validates_to_its_root(self, generation: str) -> None:
        p = pki()
        c = card(generation)
        result = validate_chain(certificate=c.signing.certificate, trust=trust(), at=AT)
        assert isinstance(result, ValidatedChain)
        assert result.leaf == c.signing.certificate
        assert result.chain == (
            c.signing.certificate,
            p.moica(generation).certificate,
            p.root(generation).certificate,
        )
        assert result.issuer == p.moica(generation).certificate
        assert result.anchor == p.root(generation).certificate
        assert result.validated_at == AT
        assert result.citizen.usage == "signing"
        assert result.citizen.id_last4 == c.id_number[-4:]

    def test_mobile_certificate_validates(self) -> None:
        c = card("G3", "mobile")
        result = validate_chain(certificate=c.signing.certificate, trust=trust(), at=AT)
        assert result.citizen.form == "mobile"

    def test_certificate_with_email_san_validates(self) -> None:
        c = card("G2", email="citizen@example.tw")
        result = validate_chain(certificate=c.signing.certificate, trust=trust(), at=AT)
        assert result.citizen.email == "citizen@example.tw"

    def test_several_anchor_generations_at_once(self) -> None:
        p = pki()
        other = _root("extra")
        store = TrustStore.from_certificates([other.certificate, *p.anchors], p.intermediates)
        for generation in ("G2", "G3"):
            chain = validate_chain(
                certificate=card(generation).signing.certificate, trust=store, at=AT
            ).chain
            assert chain[-1] == p.root(generation).certificate

    def test_issuer_is_picked_by_key_id_when_dns_collide(self) -> None:
        p = pki()
        assert p.moica_g2.certificate.subject == p.moica_g3.certificate.subject
        # G2 first, so a name-only lookup would try the wrong CA first.
        store = TrustStore.from_certificates(
            p.anchors, [p.moica_g2.certificate, p.moica_g3.certificate]
        )
        leaf = card("G3").signing.certificate
        assert store.find_issuers(leaf) == (p.moica_g3.certificate,)
        assert (
            validate_chain(certificate=leaf, trust=store, at=AT).chain[1] == p.moica_g3.certificate
        )

    def test_intermediates_from_the_token(self) -> None:
        p = pki()
        store = TrustStore.from_certificates(p.anchors)
        leaf = card("G2").signing.certificate
        result = validate_chain(
            certificate=leaf, trust=store, intermediates=[p.moica_g2.certificate, leaf], at=AT
        )
        assert len(result.chain) == 3

    def test_root_with_non_critical_basic_constraints_and_no_key_usage(self) -> None:
        # GRCA G1's quirks: basicConstraints not critical, no keyUsage.
        legacy = _root("legacy", bc_critical=False)
        sub = _sub_ca("under-legacy", legacy, basic_constraints=x509.BasicConstraints(True, 0))
        leaf = _citizen_leaf("under-legacy", sub)
        store = TrustStore.from_certificates([legacy.certificate], [sub.certificate])
        assert validate_chain(certificate=leaf, trust=store, at=AT).anchor == legacy.certificate

    def test_moica_ca_as_the_anchor(self) -> None:
        p = pki()
        store = TrustStore.from_certificates([p.moica_g3.certificate])
        chain = validate_chain(certificate=card("G3").signing.certificate, trust=store, at=AT).chain
        assert chain == (card("G3").signing.certificate, p.moica_g3.certificate)

    def test_validity_bounds_are_inclusive(self) -> None:
        leaf = card("G3").signing.certificate
        for when in (leaf.not_valid_before_utc, leaf.not_valid_after_utc):
            assert validate_chain(certificate=leaf, trust=trust(), at=when).validated_at == when

    def test_other_allowed_policy(self) -> None:
        p = pki()
        c = p.issue_card(generation="G3", policy_oids=("1.2.3.4",), label="validation/policy-ok")
        policy = ValidationPolicy(allowed_policy_oids=frozenset({"1.2.3.4", MOICA_POLICY_OID}))
        validate_chain(certificate=c.signing.certificate, trust=trust(), policy=policy, at=AT)

    def test_naive_time_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            validate_chain(
                certificate=card("G3").signing.certificate,
                trust=trust(),
                at=AT.replace(tzinfo=None),
            )


class TestGenericProfile:
    def test_plain_rfc5280_leaf_without_san_validates(self) -> None:
        p = pki()
        # No SAN, no EKU, no keyUsage, no policies: only AKI and SKI.
        leaf = p.issue_leaf(
            issuer=p.moica_g3,
            subject=_ca_name("plain end entity"),
            private_key=p.key("chain/leaf-key"),
            label="chain/generic-plain",
        ).certificate
        result = validate_chain(certificate=leaf, trust=trust(), policy=GENERIC, at=AT)
        assert len(result.chain) == 3
        # …while the MOICA profile insists on a signing certificate.
        _rejects("wrong_key_usage", certificate=leaf)

    def test_generic_accepts_other_keys_and_policies(self) -> None:
        p = pki()
        ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        leaf = _citizen_leaf("generic-ec", p.moica_g3, public_key=ec_key)
        validate_chain(certificate=leaf, trust=trust(), policy=GENERIC, at=AT)
        _rejects("weak_key", certificate=leaf)

    def test_generic_still_checks_the_chain(self) -> None:
        leaf = card("G3").signing.certificate
        _rejects(
            "certificate_expired", certificate=leaf, policy=GENERIC, at=AT + timedelta(days=3650)
        )
        _rejects(
            "untrusted_issuer",
            certificate=leaf,
            policy=GENERIC,
            trust=TrustStore.from_certificates([pki().grca_g2.certificate]),
        )

    def test_generic_enforces_path_length(self) -> None:
        p = pki()
        sub = _sub_ca(
            "pathlen-generic", p.moica_g3, basic_constraints=x509.BasicConstraints(True, None)
        )
        leaf = _citizen_leaf("pathlen-generic", sub)
        _rejects("chain_invalid", certificate=leaf, intermediates=[sub.certificate], policy=GENERIC)


# --- rejections -----------------------------------------------------------------------


class TestValidity:
    def test_expired(self) -> None:
        leaf = card("G3").signing.certificate
        err = _rejects(
            "certificate_expired",
            certificate=leaf,
            at=leaf.not_valid_after_utc + timedelta(seconds=1),
        )
        assert err.data["not_after"] == leaf.not_valid_after_utc

    def test_not_yet_valid(self) -> None:
        leaf = card("G3").signing.certificate
        _rejects(
            "certificate_not_yet_valid",
            certificate=leaf,
            at=leaf.not_valid_before_utc - timedelta(seconds=1),
        )

    def test_expired_intermediate(self) -> None:
        p = pki()
        sub = _sub_ca(
            "expired",
            p.grca_g3,
            basic_constraints=x509.BasicConstraints(True, 0),
            not_before=AT - timedelta(days=400),
            not_after=AT - timedelta(days=1),
        )
        leaf = _citizen_leaf("under-expired", sub, not_before=AT - timedelta(days=10))
        _rejects("chain_invalid", certificate=leaf, intermediates=[sub.certificate])

    def test_expired_anchor(self) -> None:
        # RFC 5280 §6.1.1 (d) leaves an anchor's validity to the relying party; we refuse a
        # path through an expired anchor (cryptography checks it), as docs/validation.md says.
        key = pki().key("chain/root/expired-anchor")
        name = _ca_name("Expired Root")
        root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(pki().serial("chain/root/expired-anchor"))
            .not_valid_before(AT - timedelta(days=3650))
            .not_valid_after(AT - timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        sub = _sub_ca(
            "under-expired-anchor",
            CertifiedKey(root, key),
            basic_constraints=x509.BasicConstraints(True, 0),
        )
        leaf = _citizen_leaf("under-expired-anchor", sub)
        store = TrustStore.from_certificates([root], [sub.certificate])
        err = _rejects("chain_invalid", certificate=leaf, trust=store)
        assert "not valid at the validation time" in err.detail


class TestUntrustedIssuer:
    def test_other_root(self) -> None:
        other = _root("attacker")
        sub = _sub_ca("attacker", other, basic_constraints=x509.BasicConstraints(True, 0))
        leaf = _citizen_leaf("attacker", sub)
        _rejects("untrusted_issuer", certificate=leaf, intermediates=[sub.certificate])
        store = TrustStore.from_certificates([other.certificate])
        validate_chain(certificate=leaf, trust=store, intermediates=[sub.certificate], at=AT)

    def test_g3_leaf_with_only_g2_anchors(self) -> None:
        p = pki()
        store = TrustStore.from_certificates([p.grca_g2.certificate], p.intermediates)
        _rejects("untrusted_issuer", certificate=card("G3").signing.certificate, trust=store)

    def test_g3_leaf_without_its_intermediate(self) -> None:
        store = TrustStore.from_certificates(pki().anchors)
        _rejects("untrusted_issuer", certificate=card("G3").signing.certificate, trust=store)

    def test_issuer_with_the_same_dn_but_another_key(self) -> None:
        p = pki()
        impostor = _sub_ca(
            "impostor",
            _root("impostor"),
            subject=MOICA_DN,
            basic_constraints=x509.BasicConstraints(True, 0),
        )
        assert impostor.certificate.subject == p.moica_g3.certificate.subject

        def forge_aki(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            # Claim to be issued by the real MOICA G3 key.
            return [(_aki(p.moica_g3.certificate), False), *exts[1:]]

        leaf = _citizen_leaf("impostor", impostor, edit=forge_aki)
        assert leaf.issuer == p.moica_g3.certificate.subject
        assert trust().find_issuers(leaf, extra=[impostor.certificate]) == ()
        _rejects("untrusted_issuer", certificate=leaf, intermediates=[impostor.certificate])

    def test_detail_names_no_personal_data(self) -> None:
        store = TrustStore.from_certificates([pki().grca_g2.certificate])
        err = _rejects("untrusted_issuer", certificate=card("G3").signing.certificate, trust=store)
        assert "測試一" not in str(err) and "測試一" not in repr(err.data)


class TestKeyUsage:
    def test_rejects_encryption_certificate(self) -> None:
        _rejects("wrong_key_usage", certificate=card("G3").encryption.certificate)

    def test_rejects_ca_certificate_as_leaf(self) -> None:
        _rejects("wrong_key_usage", certificate=pki().moica_g3.certificate)
        _rejects("wrong_key_usage", certificate=pki().grca_g3.certificate)

    def test_rejects_missing_key_usage(self) -> None:
        def drop_ku(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            return [e for e in exts if not isinstance(e[0], x509.KeyUsage)]

        _rejects(
            "wrong_key_usage", certificate=_citizen_leaf("no-ku", pki().moica_g3, edit=drop_ku)
        )

    def test_rejects_non_critical_key_usage(self) -> None:
        def soften(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            return [(e, False if isinstance(e, x509.KeyUsage) else c) for e, c in exts]

        _rejects(
            "wrong_key_usage", certificate=_citizen_leaf("soft-ku", pki().moica_g3, edit=soften)
        )

    def test_rejects_signing_plus_cert_sign(self) -> None:
        def widen(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            ku = key_usage(digital_signature=True, key_cert_sign=True)
            return [(ku, True) if isinstance(e, x509.KeyUsage) else (e, c) for e, c in exts]

        _rejects(
            "wrong_key_usage", certificate=_citizen_leaf("wide-ku", pki().moica_g3, edit=widen)
        )

    @pytest.mark.parametrize(
        "flags",
        [
            # A dual-use key (sign + decrypt): the real signing certificate is
            # digitalSignature only, and the card's encryption key must never log in.
            {"key_encipherment": True},
            {"data_encipherment": True},
            {"key_agreement": True},
            {"crl_sign": True},
        ],
    )
    def test_rejects_signing_plus_any_other_usage(self, flags: dict[str, bool]) -> None:
        def widen(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            ku = key_usage(digital_signature=True, **flags)
            return [(ku, True) if isinstance(e, x509.KeyUsage) else (e, c) for e, c in exts]

        label = "dual-ku-" + "-".join(sorted(flags))
        _rejects("wrong_key_usage", certificate=_citizen_leaf(label, pki().moica_g3, edit=widen))

    def test_non_repudiation_is_tolerated(self) -> None:
        def widen(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            ku = key_usage(digital_signature=True, content_commitment=True)
            return [(ku, True) if isinstance(e, x509.KeyUsage) else (e, c) for e, c in exts]

        leaf = _citizen_leaf("ku-nr", pki().moica_g3, edit=widen)
        assert validate_chain(certificate=leaf, trust=trust(), at=AT).citizen.usage == "signing"

    def test_rejects_signing_leaf_that_claims_to_be_a_ca(self) -> None:
        def make_ca(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            return [*exts, (x509.BasicConstraints(ca=True, path_length=None), True)]

        _rejects(
            "wrong_key_usage", certificate=_citizen_leaf("bc-ca", pki().moica_g3, edit=make_ca)
        )


class TestCitizenSubject:
    """The moica profile logs in natural persons only: SDA 2.16.886.1.100.2.1 must be
    2.16.886.1.100.3.1.1. GRCA also certifies other CAs (organisations, agencies) whose
    leaves can share the GPKI policy OID 2.16.886.101.0.3.3 and a signing keyUsage."""

    @staticmethod
    def _with_sda(sda: x509.ExtensionType | None) -> Callable[..., object]:
        def edit(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            kept = [
                (e, c)
                for e, c in exts
                if e.oid.dotted_string != "2.5.29.9"  # SubjectDirectoryAttributes
            ]
            return kept if sda is None else [*kept, (sda, False)]

        return edit

    def test_rejects_other_subject_type(self) -> None:
        sda = subject_directory_attributes(id_last4="6789", subject_type="2.16.886.1.100.3.1.2")
        leaf = _citizen_leaf("subject-type-other", pki().moica_g3, edit=self._with_sda(sda))
        _rejects("not_citizen_certificate", certificate=leaf)

    def test_rejects_missing_subject_directory_attributes(self) -> None:
        leaf = _citizen_leaf("no-sda", pki().moica_g3, edit=self._with_sda(None))
        _rejects("not_citizen_certificate", certificate=leaf)

    def test_generic_profile_does_not_ask(self) -> None:
        leaf = _citizen_leaf("no-sda-generic", pki().moica_g3, edit=self._with_sda(None))
        validate_chain(certificate=leaf, trust=trust(), policy=GENERIC, at=AT)


class TestPolicy:
    def test_rejects_other_policy(self) -> None:
        c = pki().issue_card(
            generation="G3", policy_oids=("1.2.3.4",), label="validation/policy-other"
        )
        err = _rejects("policy_not_allowed", certificate=c.signing.certificate)
        assert err.data["policies"] == ["1.2.3.4"]

    def test_rejects_missing_policies(self) -> None:
        def drop(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            return [e for e in exts if not isinstance(e[0], x509.CertificatePolicies)]

        _rejects(
            "policy_not_allowed", certificate=_citizen_leaf("no-policy", pki().moica_g3, edit=drop)
        )

    def test_rejects_intermediate_that_excludes_the_policy(self) -> None:
        p = pki()
        sub = _sub_ca(
            "policy-ca",
            p.grca_g3,
            basic_constraints=x509.BasicConstraints(True, 0),
            policies=("1.2.3.4",),
        )
        leaf = _citizen_leaf("policy-ca", sub)
        _rejects("policy_not_allowed", certificate=leaf, intermediates=[sub.certificate])
        ok = _sub_ca(
            "anypolicy-ca",
            p.grca_g3,
            basic_constraints=x509.BasicConstraints(True, 0),
            policies=("2.5.29.32.0",),
        )
        leaf_ok = _citizen_leaf("anypolicy-ca", ok)
        validate_chain(certificate=leaf_ok, trust=trust(), intermediates=[ok.certificate], at=AT)


class TestKeysAndHashes:
    def test_rejects_rsa_1024(self) -> None:
        leaf = _citizen_leaf("rsa1024", pki().moica_g3, key_bits=1024)
        err = _rejects("weak_key", certificate=leaf)
        assert err.data["key_size"] == 1024

    def test_min_rsa_bits_is_configurable(self) -> None:
        _rejects(
            "weak_key",
            certificate=card("G3").signing.certificate,
            policy=ValidationPolicy(min_rsa_bits=3072),
        )

    def test_rejects_ec_key_in_moica_profile(self) -> None:
        ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        _rejects("weak_key", certificate=_citizen_leaf("ec", pki().moica_g3, public_key=ec_key))

    @pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.MD5()])  # noqa: S303
    def test_rejects_weak_hash_on_the_leaf(self, algorithm: hashes.HashAlgorithm) -> None:
        leaf = _citizen_leaf(f"hash-{algorithm.name}", pki().moica_g3, hash_algorithm=algorithm)
        _rejects("weak_hash", certificate=leaf)

    def test_rejects_sha1_signed_intermediate(self) -> None:
        p = pki()
        sub = _sub_ca(
            "sha1-ca",
            p.grca_g3,
            basic_constraints=x509.BasicConstraints(True, 0),
            hash_algorithm=hashes.SHA1(),  # noqa: S303 - the weak hash under test
        )
        leaf = _citizen_leaf("under-sha1-ca", sub)
        _rejects("weak_hash", certificate=leaf, intermediates=[sub.certificate])

    def test_sha384_is_fine(self) -> None:
        leaf = _citizen_leaf("hash-sha384", pki().moica_g3, hash_algorithm=hashes.SHA384())
        validate_chain(certificate=leaf, trust=trust(), at=AT)


class TestPathRules:
    def test_max_chain_depth(self) -> None:
        err = _rejects(
            "chain_invalid",
            certificate=card("G3").signing.certificate,
            policy=ValidationPolicy(max_chain_depth=0),
        )
        assert "max_chain_depth" in err.detail
        # One intermediate is allowed by depth 1.
        policy = ValidationPolicy(max_chain_depth=1)
        validate_chain(
            certificate=card("G3").signing.certificate, trust=trust(), policy=policy, at=AT
        )

    def test_path_length_constraint(self) -> None:
        # MOICA G3 has pathLenConstraint 0: it cannot certify another CA.
        sub = _sub_ca(
            "pathlen", pki().moica_g3, basic_constraints=x509.BasicConstraints(True, None)
        )
        leaf = _citizen_leaf("pathlen", sub)
        err = _rejects("chain_invalid", certificate=leaf, intermediates=[sub.certificate])
        assert isinstance(err.__cause__, VerificationError)

    def test_intermediate_without_basic_constraints(self) -> None:
        sub = _sub_ca("no-bc", pki().grca_g3, basic_constraints=None)
        leaf = _citizen_leaf("no-bc", sub)
        err = _rejects("chain_invalid", certificate=leaf, intermediates=[sub.certificate])
        assert "encountered processing" not in err.detail

    def test_intermediate_without_key_cert_sign(self) -> None:
        sub = _sub_ca(
            "no-kcs",
            pki().grca_g3,
            ku=key_usage(digital_signature=True, crl_sign=True),
            basic_constraints=x509.BasicConstraints(True, 0),
        )
        leaf = _citizen_leaf("no-kcs", sub)
        _rejects("chain_invalid", certificate=leaf, intermediates=[sub.certificate])

    def test_directory_name_constraint_is_refused_not_ignored(self) -> None:
        # A CA constrained to C=US must not certify a C=TW citizen. cryptography cannot
        # evaluate directoryName subtrees; the path must then fail, never pass unchecked.
        root = _root("name-constrained")
        constraint = x509.NameConstraints(
            permitted_subtrees=[
                x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]))
            ],
            excluded_subtrees=None,
        )
        p = pki()
        key = p.key("chain/ca-key")
        sub = p.issue_leaf(
            issuer=root,
            subject=_ca_name("Name-constrained CA"),
            private_key=key,
            extensions=[
                (_aki(root.certificate), False),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
                (key_usage(key_cert_sign=True, crl_sign=True), True),
                (x509.BasicConstraints(True, 0), True),
                (constraint, True),
                (
                    x509.CertificatePolicies(
                        [x509.PolicyInformation(x509.ObjectIdentifier(MOICA_POLICY_OID), None)]
                    ),
                    False,
                ),
            ],
            label="chain/ca/name-constrained",
        )
        leaf = _citizen_leaf("name-constrained", sub)
        store = TrustStore.from_certificates([root.certificate], [sub.certificate])
        _rejects("chain_invalid", certificate=leaf, trust=store)

    def test_unknown_critical_extension(self) -> None:
        def add(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            unknown = x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
            )
            return [*exts, (unknown, True)]

        _rejects("chain_invalid", certificate=_citizen_leaf("crit-ext", pki().moica_g3, edit=add))


# --- configuration --------------------------------------------------------------------


class TestValidationPolicy:
    def test_policy_oids_from_any_collection(self) -> None:
        policy = ValidationPolicy(allowed_policy_oids=[MOICA_POLICY_OID, "1.2.3"])  # type: ignore[arg-type]
        assert policy.allowed_policy_oids == frozenset({MOICA_POLICY_OID, "1.2.3"})

    def test_defaults(self) -> None:
        policy = ValidationPolicy()
        assert policy.profile == "moica"
        assert policy.allowed_policy_oids == frozenset({MOICA_POLICY_OID})
        assert policy.min_rsa_bits == 2048
        assert policy.max_chain_depth == 4

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"profile": "webpki"},
            {"allowed_policy_oids": frozenset()},
            # A bare string would become a set of characters that matches nothing.
            {"allowed_policy_oids": MOICA_POLICY_OID},
            {"allowed_policy_oids": frozenset({f" {MOICA_POLICY_OID} "})},
            {"allowed_policy_oids": frozenset({"2.16.886.101.0.3.3.", "moica"})},
            {"allowed_policy_oids": frozenset({MOICA_POLICY_OID, 3})},
            {"min_rsa_bits": 0},
            {"max_chain_depth": -1},
        ],
    )
    def test_rejects_bad_values(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            ValidationPolicy(**kwargs)  # type: ignore[arg-type]


class TestTrustStore:
    def test_rejects_non_ca_anchor(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            TrustStore.from_certificates([card("G3").signing.certificate])
        assert info.value.code == "configuration_error"

    def test_rejects_non_ca_intermediate(self) -> None:
        with pytest.raises(ConfigurationError):
            TrustStore(anchors=pki().anchors, intermediates=(card("G3").signing.certificate,))

    def test_rejects_empty_anchors(self) -> None:
        with pytest.raises(ConfigurationError):
            TrustStore(anchors=())

    def test_from_pem_files(self, tmp_path: Path) -> None:
        p = pki()
        roots = tmp_path / "roots.pem"
        roots.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in p.anchors))
        moica = tmp_path / "moica.der"
        moica.write_bytes(p.moica_g2.cert_der())
        store = TrustStore.from_pem_files([roots, roots], [str(moica)])
        assert store.anchors == p.anchors  # duplicates dropped
        assert store.intermediates == (p.moica_g2.certificate,)
        with pytest.raises(ConfigurationError):
            TrustStore.from_pem_files([tmp_path / "missing.pem"])

    def test_find_issuers_verifies_signatures(self) -> None:
        p = pki()
        assert trust().find_issuers(p.moica_g3.certificate) == (p.grca_g3.certificate,)
        assert trust().find_issuers(p.grca_g2.certificate) == (p.grca_g2.certificate,)
        assert trust().is_anchor(p.grca_g2.certificate)
        assert not trust().is_anchor(p.moica_g2.certificate)

    def test_pinned_official_fingerprints(self) -> None:
        assert set(OFFICIAL_CA_FINGERPRINTS) == set(OFFICIAL_CA_URLS)
        assert all(len(fp) == 64 for fp in OFFICIAL_CA_FINGERPRINTS.values())
        assert all(url.startswith("https://") for url in OFFICIAL_CA_URLS.values())
        assert official_name(pki().grca_g2.certificate) is None
        with pytest.raises(ConfigurationError):
            require_official(pki().grca_g2.certificate)


def test_every_failure_is_a_moica_error() -> None:
    # A sweep over the rejections above: nothing from cryptography escapes.
    p: TestPKI = pki()
    for cert in (card("G2").encryption.certificate, p.moica_g2.certificate):
        with pytest.raises(MoicaAuthError):
            validate_chain(certificate=cert, trust=trust(), at=AT)


def test_leaf_with_duplicate_extensions_is_malformed() -> None:
    c = card("G3")
    bad = with_duplicate_extension(c.signing.certificate, c.issuer.private_key)
    _rejects("malformed_certificate", certificate=bad)


def test_token_intermediate_with_duplicate_extensions_is_malformed() -> None:
    # An intermediate carried in the SignedData is attacker-chosen too: cryptography's
    # DuplicateExtension from the issuer search must not escape as a library exception.
    p = pki()
    bad_ca = with_duplicate_extension(p.moica_g3.certificate, p.grca_g3.private_key)
    store = TrustStore.from_certificates(p.anchors)
    _rejects(
        "malformed_certificate",
        certificate=card("G3").signing.certificate,
        trust=store,
        intermediates=[bad_ca],
    )


def test_unknown_key_algorithm_is_malformed_not_a_crash() -> None:
    # cryptography raises UnsupportedAlgorithm from public_key(); the issuer search calls
    # it on every candidate, including attacker-chosen token intermediates.
    p = pki()
    c = card("G3")
    _rejects(
        "malformed_certificate",
        certificate=with_unknown_key_algorithm(c.signing.certificate, c.issuer.private_key),
    )
    bad_ca = with_unknown_key_algorithm(p.moica_g3.certificate, p.grca_g3.private_key)
    _rejects(
        "malformed_certificate",
        certificate=c.signing.certificate,
        trust=TrustStore.from_certificates(p.anchors),
        intermediates=[bad_ca],
    )
    # The trust store's own issuer search answers "does not verify" for such a key.
    assert (
        TrustStore.from_certificates(p.anchors).find_issuers(c.signing.certificate, [bad_ca]) == ()
    )


@pytest.mark.parametrize(
    "leaf",
    [
        pytest.param(lambda: card("G3").encryption.certificate, id="encryption"),
        pytest.param(lambda: pki().moica_g3.certificate, id="ca"),
    ],
)
def test_extension_policy_is_a_second_line_of_defence(leaf: Callable[[], x509.Certificate]) -> None:
    # The MOICA extension policy handed to cryptography refuses a non-signing leaf even
    # if the explicit checks before it were skipped.
    from moica_auth.validation.chain import _run_verifier

    cert = leaf()
    with pytest.raises(MoicaAuthError) as info:
        _run_verifier(cert, trust(), pki().intermediates, ValidationPolicy(), AT)
    assert info.value.code == "chain_invalid"
    assert _run_verifier(cert, trust(), pki().intermediates, GENERIC, AT)[0] == cert


# --- the per-store memos and the single verification of each link --------------------


def _reference_find_issuers(
    store: TrustStore, cert: x509.Certificate, extra: Sequence[x509.Certificate] = ()
) -> tuple[x509.Certificate, ...]:
    """TrustStore.find_issuers as it was before its memos: the specification."""
    from moica_auth.validation.trust import signature_verifies

    def key_id(c: x509.Certificate, cls: type[x509.ExtensionType]) -> bytes | None:
        try:
            value = c.extensions.get_extension_for_class(cls).value
        except x509.ExtensionNotFound:
            return None
        if isinstance(value, x509.SubjectKeyIdentifier):
            return value.digest
        return value.key_identifier  # type: ignore[no-any-return,attr-defined]

    aki = key_id(cert, x509.AuthorityKeyIdentifier)
    found: list[x509.Certificate] = []
    for candidate in (*store.anchors, *store.intermediates, *extra):
        if candidate.subject != cert.issuer or any(candidate == f for f in found):
            continue
        if aki is not None:
            ski = key_id(candidate, x509.SubjectKeyIdentifier)
            if ski is not None and ski != aki:
                continue
        if signature_verifies(cert, candidate):
            found.append(candidate)
    return tuple(found)


def _with_broken_signature(cert: x509.Certificate) -> x509.Certificate:
    """The same TBSCertificate with the last signature octet flipped."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def _impostor_leaf() -> tuple[x509.Certificate, x509.Certificate]:
    """A leaf naming the real MOICA G3 (DN and AKI) as issuer, signed by another key."""
    p = pki()
    impostor = _sub_ca(
        "impostor",
        _root("impostor"),
        subject=MOICA_DN,
        basic_constraints=x509.BasicConstraints(True, 0),
    )

    def forge_aki(
        exts: list[tuple[x509.ExtensionType, bool]],
    ) -> list[tuple[x509.ExtensionType, bool]]:
        return [(_aki(p.moica_g3.certificate), False), *exts[1:]]

    return _citizen_leaf("impostor", impostor, edit=forge_aki), impostor.certificate


class TestMemos:
    def test_find_issuers_equals_the_unmemoised_search(self) -> None:
        # Cold and warm, own and foreign certificates, with token extras that repeat the
        # store's own intermediates (as validate_chain's pool does) or add impostors.
        p = pki()
        leaf, impostor = _impostor_leaf()
        store = TrustStore.from_certificates(p.anchors, p.intermediates)
        certs = [
            *p.anchors,
            *p.intermediates,
            card("G2").signing.certificate,
            card("G3").signing.certificate,
            card("G3").encryption.certificate,
            _with_broken_signature(card("G3").signing.certificate),
            _with_broken_signature(p.moica_g3.certificate),
            leaf,
            impostor,
        ]
        extras: list[tuple[x509.Certificate, ...]] = [
            (),
            tuple(p.intermediates),
            (impostor, *p.intermediates),
            (_with_broken_signature(p.moica_g3.certificate),),
        ]
        for _ in range(2):
            for cert in certs:
                for extra in extras:
                    assert store.find_issuers(cert, extra) == _reference_find_issuers(
                        store, cert, extra
                    )

    def test_memos_belong_to_one_store(self) -> None:
        import dataclasses

        p = pki()
        leaf = card("G3").signing.certificate
        full = TrustStore.from_certificates(p.anchors, p.intermediates)
        assert validate_chain(certificate=leaf, trust=full, at=AT).anchor == p.grca_g3.certificate
        # Same intermediates, other anchors: nothing validated in ``full`` carries over.
        for other in (
            TrustStore.from_certificates([p.grca_g2.certificate], p.intermediates),
            dataclasses.replace(full, anchors=(p.grca_g2.certificate,)),
        ):
            _rejects("untrusted_issuer", certificate=leaf, trust=other)
        assert validate_chain(certificate=leaf, trust=full, at=AT).anchor == p.grca_g3.certificate

    def test_warm_memos_never_let_a_forged_certificate_through(self) -> None:
        p = pki()
        good = card("G3").signing.certificate
        store = trust()
        for _ in range(2):
            validate_chain(certificate=good, trust=store, at=AT)
            # Same TBSCertificate (so the same name, keys, profile fields), broken signature.
            _rejects("untrusted_issuer", certificate=_with_broken_signature(good), trust=store)
            leaf, impostor = _impostor_leaf()
            _rejects("untrusted_issuer", certificate=leaf, trust=store, intermediates=[impostor])
            # A carried copy of MOICA G3 with a broken signature is no path either.
            _rejects(
                "untrusted_issuer",
                certificate=good,
                trust=TrustStore.from_certificates(p.anchors),
                intermediates=[_with_broken_signature(p.moica_g3.certificate)],
            )

    def test_store_link_that_does_not_verify_stays_refused(self) -> None:
        # The store holds a MOICA G3 lookalike that GRCA G3 did not sign: its (negative)
        # memo entry is reused, and the leaf it would issue is never trusted.
        p = pki()
        fake_moica = _with_broken_signature(p.moica_g3.certificate)
        store = TrustStore.from_certificates(p.anchors, [fake_moica])
        for _ in range(2):
            assert store.find_issuers(fake_moica) == ()
            _rejects("untrusted_issuer", certificate=card("G3").signing.certificate, trust=store)

    def test_forged_leaf_with_a_profile_fault_is_still_untrusted(self) -> None:
        # cryptography's verifier now runs before the profile checks; its verdict and the
        # issuer search's must still be reported in the documented order.
        p = pki()
        impostor = _sub_ca(
            "impostor",
            _root("impostor"),
            subject=MOICA_DN,
            basic_constraints=x509.BasicConstraints(True, 0),
        )

        def forge(
            exts: list[tuple[x509.ExtensionType, bool]],
        ) -> list[tuple[x509.ExtensionType, bool]]:
            edited = [(_aki(p.moica_g3.certificate), False), *exts[1:]]
            return [
                (key_usage(key_encipherment=True), True) if isinstance(e, x509.KeyUsage) else (e, c)
                for e, c in edited
            ]

        leaf = _citizen_leaf("impostor-encryption", impostor, edit=forge)
        _rejects("untrusted_issuer", certificate=leaf, intermediates=[impostor.certificate])

    def test_the_verifier_verdict_is_final(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # cryptography's verifier runs on every login, once, and its refusal stands even
        # when the issuer search (which reuses its links only after it succeeded) finds a
        # path: e.g. a signature algorithm or rule it refuses.
        from moica_auth.exceptions import ChainInvalid
        from moica_auth.validation import chain as chain_module

        calls: list[x509.Certificate] = []

        def refusing(leaf: x509.Certificate, *args: object) -> tuple[x509.Certificate, ...]:
            calls.append(leaf)
            raise ChainInvalid("refused by the verifier")

        good = card("G3").signing.certificate
        validate_chain(certificate=good, trust=trust(), at=AT)  # warm every memo
        monkeypatch.setattr(chain_module, "_run_verifier", refusing)
        _rejects("chain_invalid", certificate=good)
        assert calls == [good]

    def test_issuer_names_from_tokens_do_not_accumulate_in_the_store(self) -> None:
        # Issuer Names come from attacker-chosen certificates: a store that has answered
        # for hundreds of distinct ones, some of tens of kB, keeps little of them (it
        # remembers a bounded number of short Names only), and still answers correctly.
        import gc
        import tracemalloc

        p = pki()
        store = TrustStore.from_certificates(p.anchors, p.intermediates)
        key = pki().key("chain/ca-key")  # an existing test key: generating one is slow
        leaf = card("G3").signing.certificate

        def naming(issuer: x509.Name, serial: int) -> x509.Certificate:
            return (
                x509.CertificateBuilder()
                .subject_name(_ca_name("subject"))
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(leaf.not_valid_before_utc)
                .not_valid_after(leaf.not_valid_after_utc)
                .sign(key, hashes.SHA256())
            )

        certs = [naming(_ca_name(f"issuer {i}"), 1000 + i) for i in range(300)]
        certs += [
            naming(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{i:05}" * 4000)]),
                i + 1,
            )
            for i in range(60)
        ]
        for cert in certs:
            # Another store first: whatever the certificates cache about themselves is
            # in place before the measured store sees them.
            assert TrustStore.from_certificates(p.anchors).find_issuers(cert) == ()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(2):
                for cert in certs:
                    assert store.find_issuers(cert) == ()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        # 60 Names of 20 kB alone would be 1.2 MB; 300 short ones ~60 kB.
        assert grown < 400_000, grown
        assert store.find_issuers(leaf) == (p.moica_g3.certificate,)

    def test_a_token_ca_is_not_remembered(self) -> None:
        # A CA carried in one token and validated with it is not trusted without it.
        p = pki()
        store = TrustStore.from_certificates(p.anchors)
        leaf = card("G3").signing.certificate
        moica = p.moica_g3.certificate
        validate_chain(certificate=leaf, trust=store, intermediates=[moica], at=AT)
        for _ in range(2):
            _rejects("untrusted_issuer", certificate=leaf, trust=store)
            _rejects(
                "untrusted_issuer",
                certificate=leaf,
                trust=store,
                intermediates=[_with_broken_signature(moica)],
            )

    def test_threads_share_one_store(self) -> None:
        # Many logins at once on one cold store give exactly the one-at-a-time outcomes.
        from concurrent.futures import ThreadPoolExecutor

        p = pki()
        forged, impostor = _impostor_leaf()
        cases: list[tuple[x509.Certificate, tuple[x509.Certificate, ...]]] = [
            (card("G3").signing.certificate, ()),
            (card("G2").signing.certificate, ()),
            (_with_broken_signature(card("G3").signing.certificate), ()),
            (forged, (impostor,)),
            (card("G3").encryption.certificate, ()),
        ]

        def outcome(store: TrustStore, index: int) -> object:
            leaf, extra = cases[index]
            try:
                return validate_chain(
                    certificate=leaf, trust=store, intermediates=extra, at=AT
                ).chain
            except MoicaAuthError as exc:
                return exc.code

        expected = [
            outcome(TrustStore.from_certificates(p.anchors, p.intermediates), i)
            for i in range(len(cases))
        ]
        assert expected[2:] == ["untrusted_issuer", "untrusted_issuer", "wrong_key_usage"]
        store = TrustStore.from_certificates(p.anchors, p.intermediates)
        jobs = [i % len(cases) for i in range(40)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: outcome(store, i), jobs))
        assert results == [expected[i] for i in jobs]


def test_a_copied_store_is_equal_and_validates_alike() -> None:
    import copy

    store = TrustStore.from_certificates(pki().anchors, pki().intermediates)
    validate_chain(certificate=card("G3").signing.certificate, trust=store, at=AT)
    forged = _with_broken_signature(card("G3").signing.certificate)
    for duplicate in (copy.copy(store), copy.deepcopy(store)):
        assert duplicate == store and duplicate is not store
        validate_chain(certificate=card("G3").signing.certificate, trust=duplicate, at=AT)
        _rejects("untrusted_issuer", certificate=forged, trust=duplicate)
