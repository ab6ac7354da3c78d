"""The example portal's own pieces, without a browser: the demo PKI, the labor-insurance
registry verifier and the signed household transcripts (``example_site``)."""

from __future__ import annotations

import ast
import base64
import gettext
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from example_site.citizens import DEMO_CITIZENS, citizen
from example_site.demo_pki import DemoPKI, build_demo_pki, pki_epoch
from example_site.household.transcripts import (
    FORMAT,
    TranscriptRejected,
    sign_transcript,
    verify_transcript,
)
from example_site.registry import (
    INSURED,
    LaborInsuranceRegistryVerifier,
    insured_record,
    record_for_certificate,
    registry_key,
)
from moica_auth.certificate import CitizenCertificate
from moica_auth.exceptions import BirthDateMismatch, IdNumberMismatch
from moica_auth.identity.id_number import parse_id_number
from moica_auth.identity.verifiers import PersonalData

NOW = datetime(2026, 1, 15, tzinfo=UTC)
RESPONDER = "http://127.0.0.1:8765"
# The suite's seed: the CA keys are then the ones every other test already cached.
SEED = "moica-auth-test"


@pytest.fixture(scope="module")
def demo_pki() -> Iterator[DemoPKI]:
    yield build_demo_pki(responder_url=RESPONDER, now=NOW, seed=SEED)


def _citizen_cert(demo_pki: DemoPKI, slug: str) -> CitizenCertificate:
    return CitizenCertificate.from_certificate(demo_pki.cards[slug].signing.certificate)


# --- the demo data ----------------------------------------------------------------------


def test_no_pin_is_part_of_another_demo_value() -> None:
    # The browser tests look for typed PINs in every request to the site; a PIN inside an
    # ID number or a birth date would be a false alarm.
    values = [
        v
        for p in DEMO_CITIZENS
        for v in (p.id_number, p.birth_date_roc, p.subject_serial, p.user_code)
    ]
    for person in DEMO_CITIZENS:
        assert not [v for v in values if person.pin in v], person.slug


def test_demo_id_numbers_are_valid_and_match_their_certificates(demo_pki: DemoPKI) -> None:
    for person in DEMO_CITIZENS:
        number = parse_id_number(person.id_number)
        assert _citizen_cert(demo_pki, person.slug).id_last4 == number.last4


def test_demo_cards_cover_generations_forms_and_statuses(demo_pki: DemoPKI) -> None:
    certs = {p.slug: _citizen_cert(demo_pki, p.slug) for p in DEMO_CITIZENS}
    for person in DEMO_CITIZENS:
        card = demo_pki.cards[person.slug]
        assert card.generation == person.generation
        # Issued by that generation's MOICA CA (the test CAs are told apart by key id).
        assert certs[person.slug].authority_key_id == (
            demo_pki.pki.moica(person.generation).subject_key_identifier.hex().upper()
        )
    assert certs["g3-mobile"].form == "mobile"
    assert {p.status for p in DEMO_CITIZENS} == {"valid", "suspended", "revoked", "expired"}
    assert certs["expired"].not_after < pki_epoch(NOW)
    for person in DEMO_CITIZENS:
        if person.status != "expired":
            assert certs[person.slug].not_before <= NOW <= certs[person.slug].not_after


def test_crls_list_the_suspended_and_revoked_cards_with_their_reasons(
    demo_pki: DemoPKI,
) -> None:
    crls = demo_pki.crls(now=NOW)
    assert set(crls) == {
        "/crl/MOICA-G2-10-31.crl",
        "/crl/MOICA-G2-complete.crl",
        "/crl/MOICA-G3-10-31.crl",
        "/crl/MOICA-G3-complete.crl",
        "/crl/GRCA-G2.crl",
        "/crl/GRCA-G3.crl",
    }
    g3 = x509.load_der_x509_crl(crls["/crl/MOICA-G3-complete.crl"])
    g2 = x509.load_der_x509_crl(crls["/crl/MOICA-G2-10-31.crl"])
    suspended = demo_pki.cards["suspended"].signing.certificate.serial_number
    revoked = demo_pki.cards["revoked"].signing.certificate.serial_number
    hold = g3.get_revoked_certificate_by_serial_number(suspended)
    compromised = g2.get_revoked_certificate_by_serial_number(revoked)
    assert hold is not None and compromised is not None
    assert hold.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.certificate_hold
    )
    assert compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    good = demo_pki.cards["g3-card"].signing.certificate.serial_number
    assert g3.get_revoked_certificate_by_serial_number(good) is None
    assert g3.is_signature_valid(demo_pki.pki.moica_g3.private_key.public_key())


def test_card_certificates_point_at_the_demo_responder(demo_pki: DemoPKI) -> None:
    cert = demo_pki.cards["g3-card"].signing.certificate
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [str(n.value) for dp in points for n in (dp.full_name or [])]
    assert urls == [f"{RESPONDER}/crl/MOICA-G3-10-31.crl", f"{RESPONDER}/crl/MOICA-G3-complete.crl"]


# --- the labor-insurance registry -------------------------------------------------------


def test_registry_is_keyed_by_hash_and_holds_every_demo_citizen() -> None:
    for person in DEMO_CITIZENS:
        assert person.id_number not in json.dumps(list(INSURED))
        record = insured_record(person.id_number)
        assert record is not None and record.birth_date == person.birth_date
        assert record_for_certificate(person.subject_serial) == record
    assert registry_key("a123456789") == registry_key("A123456789")


def test_registry_verifier_confirms_the_birth_date(demo_pki: DemoPKI) -> None:
    person = citizen("g2-card")
    data = PersonalData(id_number=parse_id_number(person.id_number), birth_date=person.birth_date)
    verified = LaborInsuranceRegistryVerifier().verify(
        citizen=_citizen_cert(demo_pki, person.slug), data=data
    )
    assert verified == frozenset({"birth_date"})


def test_registry_verifier_rejects_a_wrong_birth_date(demo_pki: DemoPKI) -> None:
    person = citizen("g2-card")
    data = PersonalData(
        id_number=parse_id_number(person.id_number),
        birth_date=person.birth_date + timedelta(days=1),
    )
    with pytest.raises(BirthDateMismatch) as caught:
        LaborInsuranceRegistryVerifier().verify(
            citizen=_citizen_cert(demo_pki, person.slug), data=data
        )
    assert caught.value.code == "birth_date_mismatch"


def test_registry_verifier_rejects_an_id_number_of_another_card(demo_pki: DemoPKI) -> None:
    other = citizen("g3-card")
    data = PersonalData(id_number=parse_id_number(other.id_number), birth_date=other.birth_date)
    with pytest.raises(IdNumberMismatch) as caught:
        LaborInsuranceRegistryVerifier().verify(
            citizen=_citizen_cert(demo_pki, "g2-card"), data=data
        )
    assert caught.value.code == "id_number_mismatch"


def test_registry_verifier_rejects_an_unregistered_person(demo_pki: DemoPKI) -> None:
    # A checksum-valid number with the certificate's last four that is not insured: the
    # same error as a wrong date, so the form does not reveal who is insured.
    stranger = demo_pki.pki.issue_card(
        generation="G3", name="路人甲", id_number="A223456781", label="demo-test/stranger"
    )
    data = PersonalData(id_number=parse_id_number("A223456781"), birth_date=date(1980, 1, 1))
    with pytest.raises(BirthDateMismatch) as caught:
        LaborInsuranceRegistryVerifier().verify(
            citizen=CitizenCertificate.from_certificate(stranger.signing.certificate), data=data
        )
    assert caught.value.code == "birth_date_mismatch"


def test_step_up_without_id_number_finds_the_registered_certificate(
    demo_pki: DemoPKI,
) -> None:
    person = citizen("g3-mobile")
    cert = _citizen_cert(demo_pki, person.slug)
    verifier = LaborInsuranceRegistryVerifier()
    assert verifier.verify(
        citizen=cert, data=PersonalData(birth_date=person.birth_date)
    ) == frozenset({"birth_date"})
    with pytest.raises(BirthDateMismatch) as caught:
        verifier.verify(citizen=cert, data=PersonalData(birth_date=date(2000, 2, 29)))
    assert caught.value.code == "birth_date_mismatch"


def test_registry_verifier_confirms_nothing_without_a_birth_date(demo_pki: DemoPKI) -> None:
    person = citizen("g3-card")
    data = PersonalData(id_number=parse_id_number(person.id_number))
    verified = LaborInsuranceRegistryVerifier().verify(
        citizen=_citizen_cert(demo_pki, person.slug), data=data
    )
    assert verified == frozenset()


# --- household transcripts --------------------------------------------------------------

DOCUMENT = {"type": "household-registration-transcript", "members": [{"name": "測試"}]}


def _signed(demo_pki: DemoPKI) -> bytes:
    return sign_transcript(
        DOCUMENT,
        certificate=demo_pki.office.certificate,
        private_key=demo_pki.office.private_key,
        at=NOW,
    )


def test_transcript_verifies_and_names_its_issuer(demo_pki: DemoPKI) -> None:
    check = verify_transcript(_signed(demo_pki), anchors=demo_pki.pki.anchors, at=NOW)
    assert check.document["members"] == DOCUMENT["members"]
    assert "範例戶政事務所" in check.issuer_name
    assert check.signed_at == NOW


def _reason(data: bytes, demo_pki: DemoPKI, *, at: datetime = NOW) -> str:
    with pytest.raises(TranscriptRejected) as caught:
        verify_transcript(data, anchors=demo_pki.pki.anchors, at=at)
    return caught.value.reason


def test_rejects_a_tampered_transcript(demo_pki: DemoPKI) -> None:
    envelope = json.loads(_signed(demo_pki))
    envelope["document"] = envelope["document"].replace("測試", "他人")
    assert _reason(json.dumps(envelope).encode(), demo_pki) == "signature_invalid"


def test_rejects_a_broken_signature(demo_pki: DemoPKI) -> None:
    envelope = json.loads(_signed(demo_pki))
    raw = bytearray(base64.b64decode(envelope["signature"]))
    raw[-10] ^= 0x01
    envelope["signature"] = base64.b64encode(bytes(raw)).decode()
    assert _reason(json.dumps(envelope).encode(), demo_pki) == "signature_invalid"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps({"format": "other"}).encode(),
        "\udcff".encode("utf-8", "surrogatepass"),
    ],
)
def test_rejects_files_that_are_not_transcripts(data: bytes, demo_pki: DemoPKI) -> None:
    assert _reason(data, demo_pki) == "not_a_transcript"


def test_rejects_a_transcript_signed_under_an_untrusted_root(demo_pki: DemoPKI) -> None:
    data = _signed(demo_pki)
    assert _reason_with(data, anchors=(demo_pki.pki.grca_g2.certificate,)) == "untrusted_issuer"


def _reason_with(data: bytes, *, anchors: tuple[x509.Certificate, ...]) -> str:
    with pytest.raises(TranscriptRejected) as caught:
        verify_transcript(data, anchors=anchors, at=NOW)
    return caught.value.reason


def test_rejects_a_transcript_after_the_office_certificate_expired(demo_pki: DemoPKI) -> None:
    later = demo_pki.office.certificate.not_valid_after_utc + timedelta(days=1)
    assert _reason(_signed(demo_pki), demo_pki, at=later) == "issuer_not_valid"


def test_rejects_a_transcript_signed_by_a_citizen_card(demo_pki: DemoPKI) -> None:
    # A citizen signing certificate is issued by MOICA, not by a root, and has no
    # nonRepudiation: it cannot issue official transcripts.
    card = demo_pki.cards["g3-card"]
    data = sign_transcript(
        DOCUMENT, certificate=card.signing.certificate, private_key=card.signing.private_key, at=NOW
    )
    assert _reason(data, demo_pki) == "untrusted_issuer"


def test_rejects_a_signer_without_non_repudiation(demo_pki: DemoPKI) -> None:
    root = demo_pki.pki.grca_g3
    signer = demo_pki.pki.issue_leaf(
        issuer=root,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not an office")]),
        label="demo-test/no-nonrepudiation",
    )
    data = sign_transcript(
        DOCUMENT, certificate=signer.certificate, private_key=signer.private_key, at=NOW
    )
    assert _reason(data, demo_pki) == "not_a_document_signer"


def test_rejects_an_oversized_file(demo_pki: DemoPKI) -> None:
    data = json.dumps({"format": FORMAT, "document": "x" * 300_000, "signature": ""}).encode()
    assert _reason(data, demo_pki) == "too_large"


# --- the portal's zh-Hant catalogue ------------------------------------------------------

EXAMPLE_SITE = Path(__file__).resolve().parents[1] / "example_site"
CATALOGUE = EXAMPLE_SITE / "locale" / "zh_Hant" / "LC_MESSAGES"


def _po_entries() -> dict[tuple[str | None, str], str]:
    """``{(msgctxt, msgid): msgstr}`` of the committed .po (CI has no gettext tools)."""
    entries: dict[tuple[str | None, str], str] = {}
    text = (CATALOGUE / "django.po").read_text("utf-8")
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            keyword, _, rest = line.partition(" ")
            if keyword in ("msgctxt", "msgid", "msgstr"):
                current, line = keyword, rest
            fields[current] = fields.get(current, "") + ast.literal_eval(line)
        if fields.get("msgid"):
            entries[(fields.get("msgctxt"), fields["msgid"])] = fields.get("msgstr", "")
    return entries


def test_catalogue_is_complete_and_compiled() -> None:
    """Every msgid has a zh-Hant msgstr, and the committed .mo says the same as the .po."""
    entries = _po_entries()
    assert entries
    with (CATALOGUE / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for (context, msgid), msgstr in entries.items():
        assert msgstr, f"untranslated: {msgid!r}"
        assert sorted(re.findall(r"%\(\w+\)s", msgstr)) == sorted(
            re.findall(r"%\(\w+\)s", msgid)
        ), msgid
        got = compiled.pgettext(context, msgid) if context else compiled.gettext(msgid)
        assert got == msgstr, f".mo out of date for {msgid!r}: run compilemessages"


def test_every_template_string_is_in_the_catalogue() -> None:
    """Each ``{% translate "…" %}`` of the portal's templates has a catalogue entry (run
    ``makemessages`` in example_site/ after adding one); no page uses the old inline tag."""
    entries = _po_entries()
    tag = re.compile(r'{%\s*translate\s+"([^"]+)"(?:\s+context\s+"([^"]+)")?\s*%}')
    templates = sorted(EXAMPLE_SITE.glob("**/templates/**/*.html"))
    assert templates
    for template in templates:
        source = template.read_text("utf-8")
        assert "zh_en" not in source, template
        for msgid, context in tag.findall(source):
            assert (context or None, msgid) in entries, f"{template.name}: {msgid!r}"
