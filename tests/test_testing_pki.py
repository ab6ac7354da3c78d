"""The test PKI (moica_auth.testing.pki / keys / CLI) mirrors the real MOICA hierarchy.

Real reference certificates are read from ../shared/data at test time (``shared_data``);
nothing personal from them is printed: comparisons of personal fields go through hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from moica_auth.testing import keys as keys_module
from moica_auth.testing.__main__ import main as cli_main
from moica_auth.testing.pki import (
    FIXED_TIME,
    MOICA_DN,
    MOICA_POLICY_OID,
    OID_SDA_FORM,
    OID_SDA_ID_LAST4,
    OID_SDA_SUBJECT_TYPE,
    SUBJECT_TYPE_NATURAL_PERSON,
    CertifiedKey,
    CitizenCard,
    TestPKI,
    default_pki,
    make_id_number,
    subject_directory_attributes,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SDA_OID = "2.5.29.9"
EE_EXTENSION_ORDER = [
    "2.5.29.35",  # AKI
    "2.5.29.14",  # SKI
    "2.5.29.15",  # keyUsage
    "2.5.29.32",  # certificatePolicies
    SDA_OID,
    "2.5.29.31",  # cRLDistributionPoints
    "1.3.6.1.5.5.7.1.1",  # AIA
]


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return default_pki()


@pytest.fixture(scope="module")
def card_g3(pki: TestPKI) -> CitizenCard:
    return pki.issue_card(generation="G3")


@pytest.fixture(scope="module")
def card_g2(pki: TestPKI) -> CitizenCard:
    return pki.issue_card(generation="G2", name="林大同", id_number=make_id_number("g2"))


def rsa_pub(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def ext_layout(cert: x509.Certificate) -> list[tuple[str, bool]]:
    return [(e.oid.dotted_string, e.critical) for e in cert.extensions]


def raw_extensions(cert: x509.Certificate) -> list[tuple[str, bool, bytes]]:
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return [
        (e["extn_id"].dotted, bool(e["critical"].native), e["extn_value"].contents)
        for e in parsed["tbs_certificate"]["extensions"]
    ]


def name_layout(name: x509.Name) -> list[tuple[str, int]]:
    """(OID, ASN.1 string tag) per RDN, in DER order; asserts one attribute per RDN."""
    out = []
    for rdn in name.rdns:
        attrs = list(rdn)
        assert len(attrs) == 1
        out.append((attrs[0].oid.dotted_string, attrs[0]._type.value))
    return out


class _Values(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_core.Any


class _Attr(asn1_core.Sequence):  # type: ignore[misc]
    _fields = [("type", asn1_core.ObjectIdentifier), ("values", _Values)]  # noqa: RUF012


class _Attrs(asn1_core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Attr


def sda_attributes_raw(cert: x509.Certificate) -> dict[str, bytes]:
    """SubjectDirectoryAttributes as {type OID: DER of the single value}, in order."""
    raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SDA_OID)).value
    assert isinstance(raw, x509.UnrecognizedExtension)
    out: dict[str, bytes] = {}
    for attr in _Attrs.load(raw.value):
        values = list(attr["values"])
        assert len(values) == 1
        out[attr["type"].dotted] = values[0].dump()
    return out


def verifier(pki: TestPKI, at=None):
    return (
        PolicyBuilder()
        .store(Store(list(pki.anchors)))
        .time(at or pki.now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )


# --------------------------------------------------------------------------- keys


def _fresh_key(monkeypatch, cache: Path, seed: str, bits: int = 1024) -> rsa.RSAPrivateKey:
    """``deterministic_rsa_key`` with the in-memory cache emptied and ``cache`` as the
    disk cache: what a new test process would get."""
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("MOICA_AUTH_TEST_KEY_CACHE", str(cache))
    keys_module.deterministic_rsa_key.cache_clear()
    return keys_module.deterministic_rsa_key(seed, bits)


def test_deterministic_key_depends_only_on_seed_and_bits(tmp_path, monkeypatch):
    # Two empty caches: each key is derived afresh, so equality is the derivation's.
    seed = "unit-test-deterministic-key"
    first = _fresh_key(monkeypatch, tmp_path / "a", seed)
    again = _fresh_key(monkeypatch, tmp_path / "b", seed)
    other = _fresh_key(monkeypatch, tmp_path / "c", seed + "-other")
    assert first.private_numbers() == again.private_numbers()
    assert first.private_numbers() != other.private_numbers()
    assert first.key_size == 1024
    assert first.public_key().public_numbers().e == 65537


def test_deterministic_key_is_cached_on_disk(tmp_path, monkeypatch):
    seed = "unit-test-disk-cache"
    key = _fresh_key(monkeypatch, tmp_path, seed)
    files = list(tmp_path.glob("rsa1024-*.pem"))
    assert len(files) == 1
    loaded = serialization.load_pem_private_key(files[0].read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == key.private_numbers()
    # A new process reads that file: replace it with another valid key, and that is what
    # comes back (proof that the file, not a new derivation, is used).
    stand_in = _fresh_key(monkeypatch, tmp_path / "other", seed + "-stand-in")
    files[0].write_bytes(
        stand_in.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert _fresh_key(monkeypatch, tmp_path, seed).private_numbers() == stand_in.private_numbers()


def test_corrupt_cache_file_is_replaced(tmp_path, monkeypatch):
    seed = "unit-test-corrupt-cache"
    expected = _fresh_key(monkeypatch, tmp_path / "clean", seed)
    cache = tmp_path / "corrupt"
    _fresh_key(monkeypatch, cache, seed)
    (path,) = cache.glob("rsa1024-*.pem")
    path.write_bytes(b"not a key")
    key = _fresh_key(monkeypatch, cache, seed)
    assert key.private_numbers() == expected.private_numbers()
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_key_signs_and_verifies():
    key = keys_module.deterministic_rsa_key("unit-test-sign", 1024)
    sig = key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(sig, b"m", padding.PKCS1v15(), hashes.SHA256())


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_certificates(pki, card_g3):
    again = TestPKI()
    assert [c.public_bytes(serialization.Encoding.DER) for c in again.anchors] == [
        c.public_bytes(serialization.Encoding.DER) for c in pki.anchors
    ]
    assert [c.public_bytes(serialization.Encoding.DER) for c in again.intermediates] == [
        c.public_bytes(serialization.Encoding.DER) for c in pki.intermediates
    ]
    card = again.issue_card(generation="G3")
    assert card.signing.cert_der() == card_g3.signing.cert_der()
    assert card.encryption.cert_der() == card_g3.encryption.cert_der()
    assert card.subject_serial == card_g3.subject_serial
    assert card.card_number == card_g3.card_number
    crl = again.make_crl(issuer=again.moica_g3, revoked=[(5, FIXED_TIME, None)])
    ref = pki.make_crl(issuer=pki.moica_g3, revoked=[(5, FIXED_TIME, None)])
    assert crl.public_bytes(serialization.Encoding.DER) == ref.public_bytes(
        serialization.Encoding.DER
    )


def test_label_fixes_the_keys_and_other_labels_differ(pki):
    a = pki.issue_card(label="same", name="甲")
    b = pki.issue_card(label="same", name="乙")
    c = pki.issue_card(label="other")
    assert a.signing.private_key.private_numbers() == b.signing.private_key.private_numbers()
    assert a.signing.private_key.private_numbers() != c.signing.private_key.private_numbers()
    assert a.signing.certificate.public_key() != a.encryption.certificate.public_key()


def test_different_seed_gives_different_serials(pki):
    # Serials only: comparing keys here would cost extra RSA-4096 generations.
    other = TestPKI(seed="another-seed")
    assert other.serial("grca-g2") != pki.serial("grca-g2")


# --------------------------------------------------------------------------- CA profiles


def test_grca_g2_profile(pki):
    cert = pki.grca_g2.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "O=Government Root Certification Authority,C=TW"
    assert name_layout(cert.subject) == [("2.5.4.6", 19), ("2.5.4.10", 12)]
    assert cert.public_key().key_size == 4096
    assert ext_layout(cert) == [("2.5.29.19", True), ("2.5.29.14", False), ("2.5.29.15", True)]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    cert.verify_directly_issued_by(cert)


def test_grca_g3_profile(pki):
    cert = pki.grca_g3.certificate
    assert name_layout(cert.subject) == [("2.5.4.6", 19), ("2.5.4.10", 12), ("2.5.4.3", 12)]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "行政院"
    assert ext_layout(cert) == [("2.5.29.19", True), ("2.5.29.14", False), ("2.5.29.15", True)]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
    cert.verify_directly_issued_by(cert)


def test_moica_generations_share_subject_bytes_but_not_keys(pki):
    g2, g3 = pki.moica_g2.certificate, pki.moica_g3.certificate
    assert g2.subject.public_bytes() == g3.subject.public_bytes() == MOICA_DN.public_bytes()
    assert name_layout(g2.subject) == [("2.5.4.6", 19), ("2.5.4.10", 12), ("2.5.4.11", 12)]
    assert pki.moica_g2.subject_key_identifier != pki.moica_g3.subject_key_identifier
    assert g2.public_key().key_size == 2048
    assert g3.public_key().key_size == 4096
    g2.verify_directly_issued_by(pki.grca_g2.certificate)
    g3.verify_directly_issued_by(pki.grca_g3.certificate)
    # Same issuer-name shape is irrelevant: the G3 signature does not verify under G2's key.
    with pytest.raises(InvalidSignature):
        pki.grca_g2.certificate.public_key().verify(
            g3.signature, g3.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256()
        )


@pytest.mark.parametrize("generation", ["G2", "G3"])
def test_moica_intermediate_extensions(pki, generation):
    ca = pki.moica(generation)
    cert = ca.certificate
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.root(generation).subject_key_identifier
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in pol] == [MOICA_POLICY_OID]
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [dp.full_name[0].value for dp in dps] == [
        f"http://127.0.0.1:8765/crl/GRCA-{generation}.crl"
    ]
    expected = {
        "G2": [
            ("2.5.29.35", False),
            ("2.5.29.14", False),
            ("2.5.29.15", True),
            ("2.5.29.32", False),
            ("2.5.29.19", True),
            ("2.5.29.31", False),
            ("1.3.6.1.5.5.7.1.1", False),
        ],
        "G3": [
            ("2.5.29.35", False),
            ("2.5.29.14", False),
            ("2.5.29.15", True),
            ("2.5.29.31", False),
            ("1.3.6.1.5.5.7.1.1", False),
            ("2.5.29.19", True),
            ("2.5.29.32", False),
        ],
    }
    assert ext_layout(cert) == expected[generation]


def test_moica_and_root_reject_unknown_generation(pki):
    with pytest.raises(ValueError):
        pki.moica("G1")
    with pytest.raises(ValueError):
        pki.root("G4")


def test_grca_crl_base_url_is_separate(pki):
    other = TestPKI(grca_crl_base_url="http://127.0.0.1:9999/grca")
    dps = other.moica_g2.certificate.extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    ).value
    assert dps[0].full_name[0].value == "http://127.0.0.1:9999/grca/GRCA-G2.crl"


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("real_file", "attr"),
    [
        ("GRCA-G2.pem", "grca_g2"),
        ("GRCA-G3.pem", "grca_g3"),
        ("MOICA-G2.pem", "moica_g2"),
        ("MOICA-G3.pem", "moica_g3"),
    ],
)
def test_ca_layout_matches_the_real_certificate(pki, shared_data, real_file, attr):
    real = x509.load_pem_x509_certificate((shared_data / "anchors" / real_file).read_bytes())
    ours = getattr(pki, attr).certificate
    assert ext_layout(ours) == ext_layout(real)
    assert ours.subject.public_bytes() == real.subject.public_bytes()
    assert ours.issuer.public_bytes() == real.issuer.public_bytes()
    assert rsa_pub(ours).key_size == rsa_pub(real).key_size
    # Key usage, basicConstraints and policies carry the same values as the real ones.
    for cls in (x509.KeyUsage, x509.BasicConstraints):
        assert ours.extensions.get_extension_for_class(cls).value == (
            real.extensions.get_extension_for_class(cls).value
        )


# --------------------------------------------------------------------------- citizen cards


@pytest.mark.parametrize("generation", ["G2", "G3"])
def test_citizen_certificate_profile(pki, generation):
    card = pki.issue_card(generation=generation, id_number="A123456789")
    for ck, usage in ((card.signing, "signing"), (card.encryption, "encryption")):
        cert = ck.certificate
        assert cert.version == x509.Version.v3
        assert cert.public_key().key_size == 2048
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        assert [oid for oid, _ in ext_layout(cert)] == EE_EXTENSION_ORDER
        assert [crit for _, crit in ext_layout(cert)] == [
            False, False, True, False, False, False, False,
        ]  # fmt: skip
        for absent in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.BasicConstraints):
            with pytest.raises(x509.ExtensionNotFound):
                cert.extensions.get_extension_for_class(absent)
        assert name_layout(cert.subject) == [("2.5.4.6", 19), ("2.5.4.3", 12), ("2.5.4.5", 19)]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "王小明"
        serial_attr = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
        assert serial_attr == card.subject_serial
        assert len(card.subject_serial) == 16 and card.subject_serial.isdigit()
        assert cert.issuer.public_bytes() == MOICA_DN.public_bytes()
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == pki.moica(generation).subject_key_identifier
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if usage == "signing":
            assert ku == x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        else:
            assert ku == x509.KeyUsage(False, False, True, True, False, False, False, False, False)
        pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier.dotted_string for p in pol] == [MOICA_POLICY_OID]
        assert [p.policy_qualifiers for p in pol] == [None]
        cert.verify_directly_issued_by(pki.moica(generation).certificate)
        # UTCTime validity: the DER of each Time starts with tag 0x17.
        validity = asn1_x509.Certificate.load(ck.cert_der())["tbs_certificate"]["validity"]
        assert validity["not_before"].name == "utc_time"
        assert validity["not_after"].name == "utc_time"
    assert card.card_number.startswith("TP03") and len(card.card_number) == 16
    assert card.signing.certificate.serial_number != card.encryption.certificate.serial_number


def test_citizen_sda_contents(card_g3):
    raw = sda_attributes_raw(card_g3.signing.certificate)
    assert list(raw) == [OID_SDA_SUBJECT_TYPE, OID_SDA_ID_LAST4]
    assert asn1_core.ObjectIdentifier.load(raw[OID_SDA_SUBJECT_TYPE]).dotted == (
        SUBJECT_TYPE_NATURAL_PERSON
    )
    last4 = asn1_core.UTF8String.load(raw[OID_SDA_ID_LAST4])
    assert last4.native == "6789"


def test_mobile_form_adds_sda_and_one_year_validity(pki):
    card = pki.issue_card(form="mobile", id_number=make_id_number("mobile"))
    cert = card.signing.certificate
    raw = sda_attributes_raw(cert)
    assert list(raw) == [OID_SDA_SUBJECT_TYPE, OID_SDA_FORM, OID_SDA_ID_LAST4]
    assert asn1_core.PrintableString.load(raw[OID_SDA_FORM]).native == "mobile"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)
    assert cert.not_valid_before_utc == FIXED_TIME - timedelta(days=30)


def test_card_validity_defaults_to_five_years(card_g3):
    cert = card_g3.signing.certificate
    assert cert.not_valid_before_utc == FIXED_TIME - timedelta(days=30)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=5 * 365)


@pytest.mark.realdata
@pytest.mark.parametrize("real_file", ["EE-MOICA-G2-639ACA88.pem", "EE-MOICA-G3-DA4C5E37.pem"])
def test_citizen_profile_matches_real_certificate(pki, shared_data, real_file):
    real = x509.load_pem_x509_certificate(
        (shared_data / "vectors" / "certs" / real_file).read_bytes()
    )
    real_raw = sda_attributes_raw(real)
    real_last4 = asn1_core.load(real_raw[OID_SDA_ID_LAST4]).native
    form = "mobile" if OID_SDA_FORM in real_raw else "card"
    ours = pki.issue_card(
        generation="G3" if "G3" in real_file else "G2",
        id_number="A12345" + real_last4,
        form=form,
        label=f"compare/{real_file}",
    ).signing.certificate
    assert ext_layout(ours) == ext_layout(real)
    assert name_layout(ours.subject) == name_layout(real.subject)
    assert ours.issuer.public_bytes() == real.issuer.public_bytes()
    ours_raw = {oid: (crit, val) for oid, crit, val in raw_extensions(ours)}
    real_ext = {oid: (crit, val) for oid, crit, val in raw_extensions(real)}
    # Same bytes for the SDA (compared by hash: it holds a real person's ID last 4),
    # keyUsage and certificatePolicies.
    for oid in (SDA_OID, "2.5.29.15", "2.5.29.32"):
        assert (
            hashlib.sha256(ours_raw[oid][1]).digest() == hashlib.sha256(real_ext[oid][1]).digest()
        ), oid
    real_aia = real.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    our_aia = ours.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_method for d in our_aia] == [d.access_method for d in real_aia]
    real_dps = real.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    our_dps = ours.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert len(our_dps) == len(real_dps) == 2
    for dp in our_dps:
        assert dp.reasons is None and dp.crl_issuer is None and len(dp.full_name) == 1


def test_sda_builder_encodes_like_the_documented_real_extension():
    # The layout documented in ../shared/data/vectors/README.md, with a made-up last 4.
    expected = (
        bytes.fromhex(
            "303f3015060760867601640201310a060860867601640301013013060760867601640202"
            "310813066d6f62696c65301106076086760164023331060c04"
        )
        + b"1234"
    )
    assert subject_directory_attributes(id_last4="1234", form="mobile").value == expected


def test_crl_and_aia_defaults(pki, card_g3):
    cert = card_g3.signing.certificate
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [dp.full_name[0].value for dp in dps] == [
        "http://127.0.0.1:8765/crl/MOICA-G3-10-31.crl",
        "http://127.0.0.1:8765/crl/MOICA-G3-complete.crl",
    ]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(d.access_method.dotted_string, d.access_location.value) for d in aia] == [
        ("1.3.6.1.5.5.7.48.2", "http://127.0.0.1:8765/certs/IssuedToThisCA.p7b"),
        ("1.3.6.1.5.5.7.48.1", "http://127.0.0.1:8765/ocsp"),
    ]


def test_ocsp_none_drops_the_ocsp_access_description(pki):
    card = pki.issue_card(ocsp_url=None, label="no-ocsp")
    aia = card.signing.certificate.extensions.get_extension_for_class(
        x509.AuthorityInformationAccess
    ).value
    assert [d.access_method.dotted_string for d in aia] == ["1.3.6.1.5.5.7.48.2"]


def test_overrides_are_written(pki):
    card = pki.issue_card(
        subject_serial="0000003111415257",
        card_number="TP03000000000042",
        crl_urls=["http://127.0.0.1:1/x.crl"],
        ocsp_url="http://127.0.0.1:1/ocsp",
        policy_oids=["1.2.3.4"],
        email="citizen@example.test",
        not_before=FIXED_TIME,
        not_after=FIXED_TIME + timedelta(days=10),
        label="overrides",
    )
    cert = card.signing.certificate
    assert card.card_number == "TP03000000000042"
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == (
        "0000003111415257"
    )
    pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in pol] == ["1.2.3.4"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["citizen@example.test"]
    assert cert.not_valid_after_utc == FIXED_TIME + timedelta(days=10)
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [dp.full_name[0].value for dp in dps] == ["http://127.0.0.1:1/x.crl"]


def test_citizen_extensions_is_the_profile_list(pki, card_g3):
    exts = pki.citizen_extensions(
        issuer=pki.moica_g3,
        public_key=card_g3.signing.private_key.public_key(),
        usage="signing",
        id_last4="6789",
        form="card",
        crl_urls=pki.default_crl_urls("G3"),
        ocsp_url=pki.ocsp_url,
        policy_oids=[MOICA_POLICY_OID],
        email=None,
    )
    assert [e.oid.dotted_string for e, _ in exts] == EE_EXTENSION_ORDER
    with pytest.raises(ValueError):
        pki.citizen_extensions(
            issuer=pki.moica_g3,
            public_key=card_g3.signing.private_key.public_key(),
            usage="ca",
            id_last4="6789",
            form="card",
            crl_urls=[],
            ocsp_url=None,
            policy_oids=[],
            email=None,
        )


@pytest.mark.parametrize("generation", ["G2", "G3"])
def test_chain_builds_with_cryptography_verifier(pki, generation):
    card = pki.issue_card(generation=generation)
    chain = verifier(pki).verify(card.signing.certificate, list(pki.intermediates)).chain
    assert [c.public_bytes(serialization.Encoding.DER) for c in chain] == [
        card.signing.cert_der(),
        pki.moica(generation).cert_der(),
        pki.root(generation).cert_der(),
    ]
    assert card.chain == (pki.moica(generation).certificate, pki.root(generation).certificate)


def test_leaf_of_one_generation_does_not_verify_under_the_other(pki, card_g3):
    with pytest.raises(InvalidSignature):
        card_g3.signing.certificate.verify_directly_issued_by(pki.moica_g2.certificate)


def test_pkcs12_round_trip(card_g3):
    data = card_g3.to_pkcs12(b"pw")
    loaded = pkcs12.load_pkcs12(data, b"pw")
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.cert.certificate == card_g3.signing.certificate
    assert loaded.key.public_key() == card_g3.signing.certificate.public_key()
    others = [c.certificate for c in loaded.additional_certs]
    assert card_g3.encryption.certificate in others
    assert card_g3.issuer.certificate in others


def test_make_id_number_is_checksum_valid():
    values = dict(zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36), strict=True))
    for seed in ("a", "b", "c", "d"):
        idn = make_id_number(seed)
        v = values[idn[0]]
        total = v // 10 + (v % 10) * 9
        total += sum(int(d) * w for d, w in zip(idn[1:9], range(8, 0, -1), strict=True))
        total += int(idn[9])
        assert total % 10 == 0, idn
    assert make_id_number("x", letter="B", sex=2)[:2] == "B2"


# --------------------------------------------------------------------------- broken variants


def test_issue_leaf_variants(pki):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken")])
    sha1 = pki.issue_leaf(
        issuer=pki.moica_g3,
        subject=subject,
        label="sha1",
        hash_algorithm=hashes.SHA1(),  # noqa: S303
    )
    assert isinstance(sha1.certificate.signature_hash_algorithm, hashes.SHA1)
    pki.moica_g3.certificate.public_key().verify(
        sha1.certificate.signature,
        sha1.certificate.tbs_certificate_bytes,
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303
    )
    weak = pki.issue_leaf(issuer=pki.moica_g3, subject=subject, label="weak", key_bits=1024)
    assert weak.certificate.public_key().key_size == 1024
    eku = pki.issue_leaf(
        issuer=pki.moica_g3,
        subject=subject,
        label="eku",
        extensions=[
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.KeyUsage(True, False, False, False, False, True, False, False, False), True),
        ],
        serial=42,
        not_after=FIXED_TIME - timedelta(days=1),
    )
    assert ext_layout(eku.certificate) == [("2.5.29.37", False), ("2.5.29.15", True)]
    assert eku.certificate.serial_number == 42
    assert eku.certificate.not_valid_after_utc < FIXED_TIME
    default = pki.issue_leaf(issuer=pki.moica_g2, subject=subject, label="plain")
    assert ext_layout(default.certificate) == [("2.5.29.35", False), ("2.5.29.14", False)]
    default.certificate.verify_directly_issued_by(pki.moica_g2.certificate)


def test_issue_leaf_with_foreign_public_key(pki):
    other = pki.key("foreign", 1024)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foreign")])
    leaf = pki.issue_leaf(
        issuer=pki.moica_g3, subject=subject, label="foreign", public_key=other.public_key()
    )
    assert leaf.certificate.public_key() == other.public_key()


@pytest.mark.parametrize("with_eku", [True, False])
def test_ocsp_responder_certificate(pki, with_eku):
    responder = pki.issue_ocsp_responder(
        issuer=pki.moica_g3, with_ocsp_signing_eku=with_eku, label=f"eku-{with_eku}"
    )
    cert = responder.certificate
    cert.verify_directly_issued_by(pki.moica_g3.certificate)
    assert cert.public_key() == responder.private_key.public_key()
    cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    if with_eku:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    else:
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


# --------------------------------------------------------------------------- CRLs


def test_crl_with_reasons_and_scope(pki, card_g3):
    serial = card_g3.signing.certificate.serial_number
    crl = pki.make_crl(
        issuer=pki.moica_g3,
        revoked=[
            (serial, FIXED_TIME - timedelta(days=1), x509.ReasonFlags.key_compromise),
            (7, FIXED_TIME - timedelta(days=2), x509.ReasonFlags.certificate_hold),
            (8, FIXED_TIME - timedelta(days=3), None),
        ],
        number=2026010112,
        scope_url="http://127.0.0.1:8765/crl/MOICA-G3-10-31.crl",
    )
    assert crl.is_signature_valid(pki.moica_g3.certificate.public_key())
    assert not crl.is_signature_valid(pki.moica_g2.certificate.public_key())
    assert crl.issuer.public_bytes() == MOICA_DN.public_bytes()
    assert crl.last_update_utc == FIXED_TIME
    assert crl.next_update_utc == FIXED_TIME + timedelta(days=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2026010112
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.moica_g3.subject_key_identifier
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert [n.value for n in idp.value.full_name] == [
        "http://127.0.0.1:8765/crl/MOICA-G3-10-31.crl"
    ]
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    hold = crl.get_revoked_certificate_by_serial_number(7)
    assert hold is not None
    assert hold.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.certificate_hold
    )
    bare = crl.get_revoked_certificate_by_serial_number(8)
    assert bare is not None and len(bare.extensions) == 0


def test_complete_crl_has_no_idp(pki):
    crl = pki.make_crl(issuer=pki.moica_g2)
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert len(crl) == 0


def test_crl_broken_variants(pki):
    wrong_key = pki.make_crl(issuer=pki.moica_g3, signing_key=pki.moica_g2.private_key)
    assert not wrong_key.is_signature_valid(pki.moica_g3.certificate.public_key())
    sha1 = pki.make_crl(issuer=pki.moica_g2, hash_algorithm=hashes.SHA1())  # noqa: S303
    assert isinstance(sha1.signature_hash_algorithm, hashes.SHA1)
    pki.moica_g2.certificate.public_key().verify(
        sha1.signature,
        sha1.tbs_certlist_bytes,
        padding.PKCS1v15(),
        hashes.SHA1(),  # noqa: S303
    )
    extra = pki.make_crl(
        issuer=pki.moica_g2,
        extra_extensions=[(x509.DeltaCRLIndicator(2026010100), True)],
        this_update=FIXED_TIME - timedelta(days=3),
        next_update=FIXED_TIME - timedelta(days=2),
    )
    assert extra.extensions.get_extension_for_class(x509.DeltaCRLIndicator).critical
    assert extra.next_update_utc < FIXED_TIME


# --------------------------------------------------------------------------- re-keyed clones


@pytest.mark.realdata
def test_rekey_clone_of_real_anchors_keeps_everything_but_the_key(pki, shared_data):
    anchors = shared_data / "anchors"

    def real(name):
        return x509.load_pem_x509_certificate((anchors / name).read_bytes())

    clones: dict[str, CertifiedKey] = {}
    # Existing test-PKI keys of the right size stand in, so no RSA-4096 key is generated
    # just for this test; MOICA-G2 gets its own, label-seeded key.
    for name, parent, key in (
        ("GRCA-G2.pem", None, pki.grca_g2.private_key),
        ("GRCA-G3.pem", None, pki.grca_g3.private_key),
        ("MOICA-G2.pem", "GRCA-G2.pem", None),
        ("MOICA-G3.pem", "GRCA-G3.pem", pki.moica_g3.private_key),
    ):
        original = real(name)
        clone = pki.rekey_clone(
            original,
            issuer=clones.get(parent) if parent else None,
            label=f"real/{name}",
            private_key=key,
        )
        clones[name] = clone
        c = clone.certificate
        assert raw_extensions(c) == raw_extensions(original)
        assert c.subject.public_bytes() == original.subject.public_bytes()
        assert c.issuer.public_bytes() == original.issuer.public_bytes()
        assert c.serial_number == original.serial_number
        assert c.not_valid_before_utc == original.not_valid_before_utc
        assert c.not_valid_after_utc == original.not_valid_after_utc
        assert c.public_key() != original.public_key()
        assert c.public_key().key_size == original.public_key().key_size
        issuer_cert = clones[parent].certificate if parent else c
        c.verify_directly_issued_by(issuer_cert)
    # The kept AKI/SKI still link the clones, as they link the real certificates.
    assert (
        clones["MOICA-G3.pem"]
        .certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        .value.key_identifier
        == clones["GRCA-G3.pem"].subject_key_identifier
    )


@pytest.mark.realdata
def test_rekey_clone_of_sha1_root(pki, shared_data):
    real = x509.load_pem_x509_certificate((shared_data / "anchors" / "GRCA-G1.pem").read_bytes())
    clone = pki.rekey_clone(
        real, label="real/GRCA-G1.pem", private_key=pki.grca_g2.private_key
    ).certificate
    assert isinstance(clone.signature_hash_algorithm, hashes.SHA1)
    assert raw_extensions(clone) == raw_extensions(real)


# --------------------------------------------------------------------------- CLI


def test_cli_pki_and_sign(tmp_path, pki):
    out = tmp_path / "pki"
    assert cli_main(["pki", "--out", str(out), "--seed", "moica-auth-test"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["cards"]) == 3
    assert {c["generation"] for c in manifest["cards"]} == {"G2", "G3"}
    root = x509.load_pem_x509_certificate((out / "roots" / "GRCA-G3.pem").read_bytes())
    assert root == pki.grca_g3.certificate
    moica = x509.load_pem_x509_certificate((out / "intermediates" / "MOICA-G2.pem").read_bytes())
    assert moica == pki.moica_g2.certificate
    first = manifest["cards"][0]
    tbs = tmp_path / "tbs.bin"
    tbs.write_bytes(b"challenge-0001")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moica_auth.testing",
            "sign",
            "--card",
            str(out / first["file"]),
            "--password",
            first["p12_password"],
            "--tbs-file",
            str(tbs),
            "--type",
            "PKCS1",
        ],
        capture_output=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    response = json.loads(result.stdout)
    assert response["ret_code"] == 0 and response["func"] == "sign"
    assert response["cardSN"] == first["card_number"]
    cert = x509.load_der_x509_certificate(base64.b64decode(response["certb64"]))
    rsa_pub(cert).verify(
        base64.b64decode(response["signature"]),
        b"challenge-0001",
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_empty_crl_urls_omit_the_extension(pki):
    card = pki.issue_card(crl_urls=[], label="no-crldp")
    with pytest.raises(x509.ExtensionNotFound):
        card.signing.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_cards_that_differ_never_share_a_serial(pki):
    a = pki.issue_card(label="serials")
    b = pki.issue_card(label="serials", not_after=FIXED_TIME + timedelta(days=1))
    c = pki.issue_card(name="李四")
    d = pki.issue_card()
    assert a.signing.private_key.private_numbers() == b.signing.private_key.private_numbers()
    serials = {x.signing.certificate.serial_number for x in (a, b, c, d)}
    assert len(serials) == 4
    assert pki.issue_card(label="serials").signing.cert_der() == a.signing.cert_der()
