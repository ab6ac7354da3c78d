"""moica_auth.certificate: loading certificates from the wire and reading the MOICA profile."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from moica_auth.certificate import (
    MAX_CERTIFICATE_BYTES,
    MOICA_G2_SKI,
    MOICA_G3_SKI,
    OID_ID_LAST4,
    OID_NATURAL_PERSON,
    CitizenCertificate,
    load_certificate,
    load_certificates,
)
from moica_auth.exceptions import MalformedCertificate
from moica_auth.testing.pki import MOICA_POLICY_OID, citizen_subject, key_usage
from tests.validation_fixtures import (
    card,
    pki,
    with_duplicate_extension,
    with_unknown_key_algorithm,
)


@pytest.fixture(scope="module")
def signing() -> x509.Certificate:
    return card("G3").signing.certificate


def _sda(*attributes: tuple[str, asn1.Asn1Value]) -> x509.UnrecognizedExtension:
    """A SubjectDirectoryAttributes (RFC 5280 §4.2.1.8) with one value per attribute."""

    class Values(asn1.SetOf):  # type: ignore[misc]
        _child_spec = asn1.Any

    class Attribute(asn1.Sequence):  # type: ignore[misc]
        _fields = [("type", asn1.ObjectIdentifier), ("values", Values)]  # noqa: RUF012

    class Attributes(asn1.SequenceOf):  # type: ignore[misc]
        _child_spec = Attribute

    der = Attributes(
        [{"type": oid, "values": [asn1.Any.load(v.dump())]} for oid, v in attributes]
    ).dump()
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.9"), der)


def _leaf(label: str, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    p = pki()
    return p.issue_leaf(
        issuer=p.moica_g3,
        subject=citizen_subject("測試二", "0000000000000001"),
        extensions=extensions,
        # One key for all variants: generating a deterministic key per label is slow.
        private_key=p.key("certificate/leaf"),
        label=f"certificate/{label}",
    ).certificate


# --- load_certificate -----------------------------------------------------------------


class TestLoadCertificate:
    def test_accepts_pem_text_and_bytes(self, signing: x509.Certificate) -> None:
        pem = signing.public_bytes(serialization.Encoding.PEM)
        assert load_certificate(pem) == signing
        assert load_certificate(pem.decode()) == signing
        assert load_certificate(b"\n  " + pem + b"\n") == signing
        assert load_certificate(b"subject=C=TW\r\n" + pem.replace(b"\n", b"\r\n")) == signing

    def test_accepts_der(self, signing: x509.Certificate) -> None:
        assert load_certificate(signing.public_bytes(serialization.Encoding.DER)) == signing

    def test_accepts_base64_der_with_and_without_whitespace(
        self, signing: x509.Certificate
    ) -> None:
        b64 = base64.b64encode(signing.public_bytes(serialization.Encoding.DER)).decode()
        assert load_certificate(b64) == signing
        wrapped = "\r\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        assert load_certificate(wrapped) == signing
        assert load_certificate(" " + wrapped.replace("\r\n", " \n\t") + " ") == signing

    def test_accepts_urlsafe_base64(self, signing: x509.Certificate) -> None:
        b64 = base64.urlsafe_b64encode(signing.public_bytes(serialization.Encoding.DER))
        assert load_certificate(b64.rstrip(b"=")) == signing

    def test_passes_certificate_objects_through(self, signing: x509.Certificate) -> None:
        assert load_certificate(signing) is signing

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            "",
            "   ",
            "not a certificate",
            "!!!!",
            "QUJD",  # base64 of "ABC"
            b"\x30\x03\x02\x01\x01",  # DER, but not a certificate
            "證書",  # not ASCII
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ],
    )
    def test_rejects_garbage(self, data: bytes | str) -> None:
        with pytest.raises(MalformedCertificate) as info:
            load_certificate(data)
        assert info.value.code == "malformed_certificate"

    def test_rejects_wrong_types(self) -> None:
        with pytest.raises(MalformedCertificate):
            load_certificate(12345)  # type: ignore[arg-type]

    def test_rejects_der_with_trailing_data(self, signing: x509.Certificate) -> None:
        der = signing.public_bytes(serialization.Encoding.DER)
        with pytest.raises(MalformedCertificate):
            load_certificate(der + b"\x00")

    def test_rejects_oversized_input(self, signing: x509.Certificate) -> None:
        pem = signing.public_bytes(serialization.Encoding.PEM)
        padded = pem + b"\n" * (MAX_CERTIFICATE_BYTES + 1 - len(pem))
        with pytest.raises(MalformedCertificate, match="larger than"):
            load_certificate(padded)

    def test_rejects_two_pem_certificates(self, signing: x509.Certificate) -> None:
        pem = signing.public_bytes(serialization.Encoding.PEM)
        with pytest.raises(MalformedCertificate, match="exactly one"):
            load_certificate(pem + pem)


def _with_version(cert: x509.Certificate, version: int) -> bytes:
    """The DER of ``cert`` with its [0] EXPLICIT version INTEGER replaced (not re-signed)."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    at = der.find(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))  # [0] { INTEGER 2 } (v3)
    assert at > 0
    der[at + 4] = version
    return bytes(der)


@pytest.mark.parametrize("form", ["der", "base64", "pem"])
def test_rejects_certificate_with_invalid_version(signing: x509.Certificate, form: str) -> None:
    # cryptography raises x509.InvalidVersion, which is not a ValueError: it must still
    # come out as malformed_certificate (certb64 is attacker-chosen; never a 500).
    der = _with_version(signing, 7)
    data: bytes | str = der
    if form == "base64":
        data = base64.b64encode(der).decode()
    elif form == "pem":
        body = base64.encodebytes(der).decode()
        data = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
    for load in (load_certificate, load_certificates, CitizenCertificate.from_certificate):
        with pytest.raises(MalformedCertificate) as info:
            load(data)
        assert info.value.code == "malformed_certificate"


class TestLoadCertificates:
    def test_reads_a_pem_bundle_in_order_ignoring_comments(self) -> None:
        p = pki()
        certs = [*p.anchors, *p.intermediates]
        bundle = b"# GRCA and MOICA\n" + b"".join(
            c.public_bytes(serialization.Encoding.PEM) + b"comment\n" for c in certs
        )
        assert load_certificates(bundle) == certs
        assert load_certificates(bundle.decode()) == certs

    def test_reads_a_single_der_certificate(self, signing: x509.Certificate) -> None:
        assert load_certificates(signing.public_bytes(serialization.Encoding.DER)) == [signing]

    def test_rejects_pem_without_certificates(self) -> None:
        with pytest.raises(MalformedCertificate):
            load_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")

    def test_rejects_a_broken_block(self, signing: x509.Certificate) -> None:
        pem = signing.public_bytes(serialization.Encoding.PEM)
        broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        with pytest.raises(MalformedCertificate):
            load_certificates(pem + broken)


# --- the profile ----------------------------------------------------------------------


class TestCitizenProfile:
    def test_signing_certificate_of_a_card(self) -> None:
        c = card("G3")
        citizen = CitizenCertificate.from_certificate(c.signing.certificate)
        assert citizen.name == "測試一"
        assert citizen.card_serial == c.subject_serial
        assert len(citizen.card_serial or "") == 16
        assert citizen.id_last4 == c.id_number[-4:]
        assert citizen.subject_type == OID_NATURAL_PERSON
        assert citizen.form == "card"
        assert citizen.email is None
        assert citizen.policy_oids == (MOICA_POLICY_OID,)
        assert citizen.usage == "signing"
        assert citizen.key_usage == ("digital_signature",)
        assert citizen.key_type == "rsa"
        assert citizen.key_size == 2048
        assert citizen.is_ca is False
        assert citizen.issuer == c.issuer.certificate.subject.rfc4514_string()
        assert citizen.subject == c.signing.certificate.subject.rfc4514_string()

    def test_encryption_certificate_is_classified_as_encryption(self) -> None:
        citizen = CitizenCertificate.from_certificate(card("G3").encryption.certificate)
        assert citizen.usage == "encryption"
        assert citizen.key_usage == ("key_encipherment", "data_encipherment")

    def test_mobile_form(self) -> None:
        citizen = CitizenCertificate.from_certificate(card("G3", "mobile").signing.certificate)
        assert citizen.form == "mobile"
        assert citizen.not_after - citizen.not_before == timedelta(days=365)

    def test_email_from_san(self) -> None:
        c = card("G2", email="citizen@example.tw")
        citizen = CitizenCertificate.from_certificate(c.signing.certificate)
        assert citizen.email == "citizen@example.tw"

    def test_identifiers_and_fingerprint(self) -> None:
        cert = card("G2").signing.certificate
        citizen = CitizenCertificate.from_certificate(cert)
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        issuer_ski = pki().moica_g2.subject_key_identifier
        assert citizen.subject_key_id == ski.hex().upper()
        assert citizen.authority_key_id == issuer_ski.hex().upper()
        assert citizen.serial_number_hex == format(cert.serial_number, "X")
        assert citizen.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
        assert citizen.not_before == cert.not_valid_before_utc

    def test_test_pki_cards_have_no_official_generation(self) -> None:
        # Generation is recognised by the *official* MOICA key identifiers only.
        assert (
            CitizenCertificate.from_certificate(card("G2").signing.certificate).generation is None
        )

    def test_generation_by_the_official_authority_key_identifier(self) -> None:
        for ski, generation in ((MOICA_G2_SKI, "G2"), (MOICA_G3_SKI, "G3")):
            cert = _leaf(
                f"aki-{generation}",
                [
                    (x509.AuthorityKeyIdentifier(bytes.fromhex(ski), None, None), False),
                    (
                        x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                        True,
                    ),
                ],
            )
            assert CitizenCertificate.from_certificate(cert).generation == generation

    def test_ca_certificates(self) -> None:
        p = pki()
        moica = CitizenCertificate.from_certificate(p.moica_g3.certificate)
        assert moica.usage == "ca"
        assert moica.is_ca is True
        assert moica.name is None and moica.card_serial is None and moica.id_last4 is None
        assert moica.policy_oids == (MOICA_POLICY_OID,)
        root = CitizenCertificate.from_certificate(p.grca_g2.certificate)
        assert root.usage == "ca"
        assert root.authority_key_id is None
        assert root.key_size == 4096

    def test_accepts_bytes(self) -> None:
        cert = card("G3").signing.certificate
        citizen = CitizenCertificate.from_certificate(cert.public_bytes(serialization.Encoding.PEM))
        assert citizen == CitizenCertificate.from_certificate(cert)

    def test_as_json_is_json_safe(self) -> None:
        citizen = CitizenCertificate.from_certificate(card("G3").signing.certificate)
        data = citizen.as_json()
        assert json.loads(json.dumps(data)) == data
        assert data["not_before"] == citizen.not_before.isoformat()
        assert data["policy_oids"] == [MOICA_POLICY_OID]
        assert data["form"] == "card"


class TestKeyUsageClassification:
    @pytest.mark.parametrize(
        ("flags", "usage"),
        [
            ({"digital_signature": True}, "signing"),
            ({"digital_signature": True, "content_commitment": True}, "signing"),
            ({"digital_signature": True, "key_encipherment": True}, "encryption"),
            ({"data_encipherment": True}, "encryption"),
            ({"content_commitment": True}, "other"),
            ({"key_cert_sign": True}, "other"),
            ({"digital_signature": True, "key_agreement": True}, "other"),
        ],
    )
    def test_usage(self, flags: dict[str, bool], usage: str) -> None:
        ku = key_usage(**flags)
        cert = _leaf("ku-" + "-".join(sorted(flags)), [(ku, True)])
        assert CitizenCertificate.from_certificate(cert).usage == usage

    def test_no_key_usage_is_other(self) -> None:
        assert CitizenCertificate.from_certificate(_leaf("no-ku", [])).usage == "other"


class TestSubjectDirectoryAttributes:
    def test_printable_string_last4_is_accepted(self) -> None:
        cert = _leaf("sda-printable", [(_sda((OID_ID_LAST4, asn1.PrintableString("6789"))), False)])
        citizen = CitizenCertificate.from_certificate(cert)
        assert citizen.id_last4 == "6789"
        assert citizen.subject_type is None
        assert citizen.form == "card"

    def test_unknown_attributes_are_ignored(self) -> None:
        cert = _leaf(
            "sda-unknown",
            [
                (
                    _sda(
                        ("1.2.3.4", asn1.Integer(7)),
                        (OID_ID_LAST4, asn1.UTF8String("1234")),
                    ),
                    False,
                )
            ],
        )
        assert CitizenCertificate.from_certificate(cert).id_last4 == "1234"

    def test_form_other_than_mobile_is_card(self) -> None:
        cert = _leaf(
            "sda-form", [(_sda(("2.16.886.1.100.2.2", asn1.PrintableString("MOBILE"))), False)]
        )
        assert CitizenCertificate.from_certificate(cert).form == "card"

    def test_absent_sda_gives_no_citizen_fields(self) -> None:
        citizen = CitizenCertificate.from_certificate(_leaf("sda-absent", []))
        assert citizen.id_last4 is None and citizen.subject_type is None

    def test_rejects_sda_that_is_not_der(self) -> None:
        bad = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.9"), b"\x30\x05\x01")
        with pytest.raises(MalformedCertificate) as info:
            CitizenCertificate.from_certificate(_leaf("sda-garbage", [(bad, False)]))
        assert info.value.code == "malformed_certificate"

    def test_rejects_last4_of_the_wrong_type(self) -> None:
        cert = _leaf("sda-int", [(_sda((OID_ID_LAST4, asn1.Integer(1234))), False)])
        with pytest.raises(MalformedCertificate, match="unexpected type"):
            CitizenCertificate.from_certificate(cert)

    def test_rejects_subject_type_that_is_not_an_oid(self) -> None:
        cert = _leaf("sda-type", [(_sda(("2.16.886.1.100.2.1", asn1.UTF8String("x"))), False)])
        with pytest.raises(MalformedCertificate):
            CitizenCertificate.from_certificate(cert)


def test_rejects_duplicate_extensions() -> None:
    # RFC 5280 §4.2: one instance per extension. cryptography raises DuplicateExtension
    # (not a ValueError) on first access; certb64 is attacker-chosen, so it must come out
    # as malformed_certificate, never as a library exception (a 500 or a CLI traceback).
    c = card("G3")
    bad = with_duplicate_extension(c.signing.certificate, c.issuer.private_key)
    for data in (bad, bad.public_bytes(serialization.Encoding.DER)):
        with pytest.raises(MalformedCertificate) as info:
            CitizenCertificate.from_certificate(data)
        assert info.value.code == "malformed_certificate"


def test_rejects_unknown_public_key_algorithm() -> None:
    # public_key() raises UnsupportedAlgorithm (not a ValueError) for a key type
    # cryptography does not know: certb64 is attacker-chosen, so a typed refusal.
    c = card("G3")
    bad = with_unknown_key_algorithm(c.signing.certificate, c.issuer.private_key)
    with pytest.raises(MalformedCertificate) as info:
        CitizenCertificate.from_certificate(bad)
    assert info.value.code == "malformed_certificate"


def test_common_name_is_read_from_the_subject() -> None:
    cert = _leaf("cn", [])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "測試二"
    assert CitizenCertificate.from_certificate(cert).name == "測試二"


class TestProfileCache:
    """The profile is kept per DER (LRU), so a repeated login does not re-read it."""

    def test_same_der_gives_the_same_immutable_profile(self, signing: x509.Certificate) -> None:
        first = CitizenCertificate.from_certificate(signing)
        again = CitizenCertificate.from_certificate(
            signing.public_bytes(serialization.Encoding.DER)
        )
        assert again is first
        with pytest.raises(AttributeError):
            first.name = "someone else"  # type: ignore[misc]
        assert isinstance(first.policy_oids, tuple) and isinstance(first.key_usage, tuple)

    def test_any_other_der_is_read_afresh(self, signing: x509.Certificate) -> None:
        # The same TBSCertificate with another signature is another certificate: its own
        # profile (fingerprint), never the cached one of the genuine certificate.
        genuine = CitizenCertificate.from_certificate(signing)
        der = bytearray(signing.public_bytes(serialization.Encoding.DER))
        der[-1] ^= 0x01
        copy = CitizenCertificate.from_certificate(bytes(der))
        assert copy is not genuine
        assert copy.fingerprint_sha256 != genuine.fingerprint_sha256
        other = CitizenCertificate.from_certificate(card("G2").signing.certificate)
        assert other.card_serial != genuine.card_serial or other.generation != genuine.generation
        assert other.fingerprint_sha256 != genuine.fingerprint_sha256

    def test_failures_are_not_cached(self) -> None:
        c = card("G3")
        bad = with_duplicate_extension(c.signing.certificate, c.issuer.private_key)
        for _ in range(2):
            with pytest.raises(MalformedCertificate):
                CitizenCertificate.from_certificate(bad)

    def test_cache_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # With room for two profiles, the oldest of three new certificates is read again
        # (an equal, new profile) while the newest is still the remembered one.
        from moica_auth import certificate as module

        monkeypatch.setattr(module, "PROFILE_CACHE_SIZE", 2)
        signing = card("G3").signing.certificate
        certs = []
        for flip in (0x40, 0x41, 0x42):  # distinct DER no other test reads
            der = bytearray(signing.public_bytes(serialization.Encoding.DER))
            der[-1] ^= flip
            certs.append(x509.load_der_x509_certificate(bytes(der)))
        profiles = [CitizenCertificate.from_certificate(c) for c in certs]
        assert CitizenCertificate.from_certificate(certs[2]) is profiles[2]
        again = CitizenCertificate.from_certificate(certs[0])
        assert again == profiles[0] and again is not profiles[0]

    def test_large_certificates_are_not_kept(self, signing: x509.Certificate) -> None:
        # The leaf is read before any chain check, so anyone can make a certificate enter
        # the cache; one of the maximum input size must not be kept (1024 of them: ~100 MB).
        from moica_auth import certificate as module

        key = pki().key("chain/ca-key")  # an existing test key: generating one is slow
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 20000)])
        large = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(signing.not_valid_before_utc)
            .not_valid_after(signing.not_valid_after_utc)
            .sign(key, hashes.SHA256())
        )
        assert len(large.public_bytes(serialization.Encoding.DER)) > module.PROFILE_CACHE_MAX_DER
        profile = CitizenCertificate.from_certificate(large)
        again = CitizenCertificate.from_certificate(large)
        assert again == profile and again is not profile
        assert CitizenCertificate.from_certificate(signing) is CitizenCertificate.from_certificate(
            signing
        )

    def test_a_subclass_gets_its_own_class(self, signing: x509.Certificate) -> None:
        class Profile(CitizenCertificate):
            pass

        base = CitizenCertificate.from_certificate(signing)
        derived = Profile.from_certificate(signing)
        assert type(derived) is Profile
        assert derived.fingerprint_sha256 == base.fingerprint_sha256
        assert type(CitizenCertificate.from_certificate(signing)) is CitizenCertificate


def test_a_released_buffer_is_a_malformed_certificate() -> None:
    der = card("G3").signing.certificate.public_bytes(serialization.Encoding.DER)
    view = memoryview(der)
    assert load_certificate(view).public_bytes(serialization.Encoding.DER) == der
    view.release()
    with pytest.raises(MalformedCertificate) as exc:
        load_certificate(view)
    assert exc.value.code == "malformed_certificate"
