"""TSA certificates under intermediate CAs: TSA certificate → CA(s) → configured anchor.

Real parts: the local RFC 3161 TSA on 127.0.0.1 signs under an intermediate CA of the
test TSA root; tokens for the refusals are made by the same signer code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from moica_auth.exceptions import TimestampUntrusted
from moica_auth.signing.timestamp import MAX_TOKEN_CERTIFICATES, TsaClient, verify_token
from moica_auth.testing.pki import CertifiedKey, TestPKI
from moica_auth.testing.tsa import (
    TsaIdentities,
    TsaServer,
    sign_timestamp,
    tsa_ca,
    tsa_identities,
    tsa_under,
)

IMPRINT = hashlib.sha256(b"an evidence manifest").digest()


@pytest.fixture(scope="module", name="pki")
def pki_fixture() -> TestPKI:
    return TestPKI(seed="tsa-chain-tests")


@pytest.fixture(scope="module", name="ids")
def ids_fixture(pki: TestPKI) -> TsaIdentities:
    return tsa_identities(pki)


@pytest.fixture(scope="module", name="deep_server")
def deep_server_fixture(ids: TsaIdentities, pki: TestPKI) -> Iterator[TsaServer]:
    with TsaServer(ids, clock=lambda: pki.now, deep=True) as server:
        yield server


def token(signer: CertifiedKey, pki: TestPKI, *extra: CertifiedKey) -> bytes:
    return sign_timestamp(
        imprint=IMPRINT,
        signer=signer,
        gen_time=pki.now,
        serial=7,
        extra_certificates=[c.certificate for c in extra],
    )


def test_deep_chain_is_accepted_through_the_client(
    deep_server: TsaServer, ids: TsaIdentities
) -> None:
    client = TsaClient(url=deep_server.url, anchors=[ids.root.certificate], timeout=5)
    stamped = client.timestamp(IMPRINT)
    assert stamped.tsa_certificate == ids.deep_tsa.certificate
    assert stamped.tsa_chain == (
        ids.deep_tsa.certificate,
        ids.intermediate.certificate,
        ids.root.certificate,
    )


def test_configured_intermediate_completes_a_token_that_omits_it(
    ids: TsaIdentities, pki: TestPKI
) -> None:
    bare = token(ids.deep_tsa, pki)
    stamped = verify_token(
        bare,
        imprint=IMPRINT,
        anchors=[ids.root.certificate],
        intermediates=[ids.intermediate.certificate],
    )
    assert stamped.tsa_chain[1] == ids.intermediate.certificate
    # The client takes the same configured intermediates.
    with TsaServer(ids, clock=lambda: pki.now, deep=True, carry_intermediate=False) as server:
        client = TsaClient(
            url=server.url,
            anchors=[ids.root.certificate],
            intermediates=[ids.intermediate.certificate],
            timeout=5,
        )
        assert client.timestamp(IMPRINT).tsa_certificate == ids.deep_tsa.certificate


def test_missing_intermediate_is_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    with pytest.raises(TimestampUntrusted, match="not issued by a configured TSA anchor"):
        verify_token(token(ids.deep_tsa, pki), imprint=IMPRINT, anchors=[ids.root.certificate])
    with (
        TsaServer(ids, clock=lambda: pki.now, deep=True, carry_intermediate=False) as server,
        pytest.raises(TimestampUntrusted),
    ):
        TsaClient(url=server.url, anchors=[ids.root.certificate], timeout=5).timestamp(IMPRINT)


def test_intermediate_not_issued_by_the_anchor_is_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    # Same name as the real intermediate, but certified by the untrusted root.
    rogue = tsa_ca(pki, "rogue-intermediate", "moica-auth TEST TSA CA", issuer=ids.untrusted_root)
    rogue_tsa = tsa_under(pki, rogue, "rogue-deep-tsa", "moica-auth TEST Deep TSA")
    with pytest.raises(TimestampUntrusted, match="not issued by a configured TSA anchor"):
        verify_token(token(rogue_tsa, pki, rogue), imprint=IMPRINT, anchors=[ids.root.certificate])
    # A self-made CA key under the *same* name as the trusted root: the signature decides.
    fake_root = tsa_ca(pki, "fake-root", "moica-auth TEST TSA Root")
    fake_int = tsa_ca(pki, "fake-int", "moica-auth TEST TSA CA", issuer=fake_root)
    fake_tsa = tsa_under(pki, fake_int, "fake-tsa")
    with pytest.raises(TimestampUntrusted):
        verify_token(
            token(fake_tsa, pki, fake_int, fake_root),
            imprint=IMPRINT,
            anchors=[ids.root.certificate],
        )


def test_intermediate_that_is_no_ca_is_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    # The TSA certificate itself (no basicConstraints cA) used as an "intermediate".
    under_tsa = tsa_under(pki, ids.tsa, "under-a-tsa")
    with pytest.raises(TimestampUntrusted):
        verify_token(
            token(under_tsa, pki, ids.tsa), imprint=IMPRINT, anchors=[ids.root.certificate]
        )


_BAD_EKUS: list[tuple[list[x509.ObjectIdentifier] | None, bool, str]] = [
    (None, True, "no extendedKeyUsage"),
    ([ExtendedKeyUsageOID.TIME_STAMPING], False, "critical and only timeStamping"),
    ([ExtendedKeyUsageOID.SERVER_AUTH], True, "critical and only timeStamping"),
    (
        [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING],
        True,
        "critical and only timeStamping",
    ),
]


@pytest.mark.parametrize("case", range(len(_BAD_EKUS)))
def test_tsa_certificate_without_the_timestamping_eku_is_refused(
    ids: TsaIdentities, pki: TestPKI, case: int
) -> None:
    eku, critical, message = _BAD_EKUS[case]
    bad = tsa_under(pki, ids.intermediate, f"bad-eku-{case}", eku=eku, eku_critical=critical)
    with pytest.raises(TimestampUntrusted, match=message):
        verify_token(
            token(bad, pki, ids.intermediate), imprint=IMPRINT, anchors=[ids.root.certificate]
        )


def test_too_many_certificates_are_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    fillers = [
        tsa_ca(pki, f"filler-{n}", f"moica-auth TEST filler {n}", issuer=ids.untrusted_root)
        for n in range(MAX_TOKEN_CERTIFICATES)
    ]
    # The signer plus MAX fillers: more than the cap, refused before any is parsed.
    with pytest.raises(TimestampUntrusted, match="carries 9 certificates"):
        verify_token(
            token(ids.deep_tsa, pki, *fillers), imprint=IMPRINT, anchors=[ids.root.certificate]
        )
    # The token within the cap, but with the configured ones the pool is too large.
    with pytest.raises(TimestampUntrusted, match="more than"):
        verify_token(
            token(ids.deep_tsa, pki, ids.intermediate, *fillers[:4]),
            imprint=IMPRINT,
            anchors=[ids.root.certificate],
            intermediates=[f.certificate for f in fillers[4:]],
        )


def test_tsa_not_in_configured_trust_is_still_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    with pytest.raises(TimestampUntrusted, match="not issued by a configured TSA anchor"):
        verify_token(token(ids.untrusted_tsa, pki), imprint=IMPRINT, anchors=[ids.root.certificate])
    # A deep chain to the wrong anchor: the intermediate is fine, the anchor is not ours.
    with pytest.raises(TimestampUntrusted):
        verify_token(
            token(ids.deep_tsa, pki, ids.intermediate),
            imprint=IMPRINT,
            anchors=[ids.untrusted_root.certificate],
        )


def test_intermediate_expired_at_gentime_is_refused(ids: TsaIdentities, pki: TestPKI) -> None:
    old_int = tsa_ca(
        pki,
        "expired-intermediate",
        "moica-auth TEST TSA CA (old)",
        issuer=ids.root,
        not_after=pki.now - timedelta(days=1),
    )
    tsa = tsa_under(pki, old_int, "under-expired-intermediate")
    with pytest.raises(TimestampUntrusted, match="does not validate"):
        verify_token(token(tsa, pki, old_int), imprint=IMPRINT, anchors=[ids.root.certificate])


def test_path_is_checked_again_at_a_later_time(ids: TsaIdentities, pki: TestPKI) -> None:
    deep = token(ids.deep_tsa, pki, ids.intermediate)
    anchors = [ids.root.certificate]
    verify_token(deep, imprint=IMPRINT, anchors=anchors, valid_at=pki.now + timedelta(days=365))
    after_expiry = ids.deep_tsa.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(TimestampUntrusted, match="not valid at"):
        verify_token(deep, imprint=IMPRINT, anchors=anchors, valid_at=after_expiry)
    with pytest.raises(Exception, match="dated after"):
        verify_token(deep, imprint=IMPRINT, anchors=anchors, valid_at=pki.now - timedelta(days=1))


def test_tsa_certificate_pinned_as_anchor_still_works(ids: TsaIdentities, pki: TestPKI) -> None:
    stamped = verify_token(token(ids.tsa, pki), imprint=IMPRINT, anchors=[ids.tsa.certificate])
    assert stamped.tsa_chain == (ids.tsa.certificate,)


# --- Django settings: TSA_INTERMEDIATES -----------------------------------------------


def _pem(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_tsa_intermediates_setting_reaches_the_client(
    settings: Any, ids: TsaIdentities, pki: TestPKI
) -> None:
    from moica_auth.signing.conf import signing_settings, tsa_client

    with TsaServer(ids, clock=lambda: pki.now, deep=True, carry_intermediate=False) as server:
        settings.MOICA_AUTH_SIGNING = {
            "TSA_URL": server.url,
            "TSA_ANCHORS": [_pem(ids.root.certificate)],
            "TSA_INTERMEDIATES": [_pem(ids.intermediate.certificate)],
        }
        client = tsa_client(signing_settings())
        assert client is not None
        assert client.intermediates == (ids.intermediate.certificate,)
        assert client.timestamp(IMPRINT).tsa_chain[-1] == ids.root.certificate


@pytest.mark.parametrize("value", ["not a list", ["not a pem"], [42]])
def test_bad_tsa_intermediates_is_e105(settings: Any, value: Any) -> None:
    from moica_auth.signing.checks import check_signing_settings

    settings.MOICA_AUTH_SIGNING = {"TSA_INTERMEDIATES": value}
    errors = check_signing_settings()
    assert [e.id for e in errors] == ["moica_auth.E105"]
    assert "TSA_INTERMEDIATES" in errors[0].msg


def test_path_length_constraint_of_the_anchor_is_enforced(ids: TsaIdentities, pki: TestPKI) -> None:
    # An anchor with pathLenConstraint 0 may certify TSAs, not CAs that certify TSAs.
    strict_root = tsa_ca(pki, "strict-root", "moica-auth TEST strict TSA root", path_length=0)
    below = tsa_ca(pki, "below-strict", "moica-auth TEST below strict", issuer=strict_root)
    tsa = tsa_under(pki, below, "under-below-strict")
    with pytest.raises(TimestampUntrusted, match="does not validate"):
        verify_token(token(tsa, pki, below), imprint=IMPRINT, anchors=[strict_root.certificate])
    direct = tsa_under(pki, strict_root, "direct-under-strict")
    assert verify_token(
        token(direct, pki), imprint=IMPRINT, anchors=[strict_root.certificate]
    ).tsa_chain == (direct.certificate, strict_root.certificate)
