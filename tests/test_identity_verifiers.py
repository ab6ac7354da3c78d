"""Personal-data verifiers: each one's refusals, loading by path, and the orchestration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from moica_auth.exceptions import (
    BirthDateMismatch,
    CertificateExpired,
    CertificateRevoked,
    ConfigurationError,
    FieldRequired,
    IdNumberMismatch,
    PersonalDataUnverified,
)
from moica_auth.identity.id_number import IdNumber, parse_id_number
from moica_auth.identity.verifiers import (
    CertificateLast4Verifier,
    MoicaConfirmationVerifier,
    PersonalData,
    RegistryVerifier,
    load_verifiers,
    verify_personal_data,
)
from tests.confirmation_fixtures import (
    AT,
    BIRTH_MATCH,
    ID_EXPIRED,
    ID_MATCH,
    ID_NOT_ACTIVATED,
    ID_OTHER_CARD,
    ID_REVOKED,
    ID_UNKNOWN,
    SERIAL_EXPIRED,
    SERIAL_MATCH,
    SERIAL_NOT_ACTIVATED,
    SERIAL_OTHER,
    SERIAL_REVOKED,
    SERIAL_UNKNOWN,
)

THIS = "tests.test_identity_verifiers"


@dataclass(frozen=True)
class Citizen:
    """The two certificate fields the verifiers read (CitizenCertificate has them too)."""

    id_last4: str | None
    card_serial: str | None = SERIAL_MATCH


CITIZEN = Citizen(id_last4=ID_MATCH[-4:])
NUMBER = parse_id_number(ID_MATCH)


class LaborInsuranceRegistry(RegistryVerifier):
    """A service's own registry (the demo's labor-insurance roll, in miniature)."""

    def __init__(self, table: dict[str, date] | None = None) -> None:
        self.table = {ID_MATCH: BIRTH_MATCH} if table is None else table
        self.lookups = 0

    def lookup(self, id_number: IdNumber) -> date | None:
        self.lookups += 1
        return self.table.get(id_number.value)


class BrokenRegistry(RegistryVerifier):
    def lookup(self, id_number: IdNumber) -> date | None:
        # Exceptions from registries may quote the number; it must not leak onward.
        raise KeyError(id_number.value)


class NeedsArgument:
    provides = frozenset({"id_number"})

    def __init__(self, *, required_thing: object) -> None:
        self.thing = required_thing

    def verify(self, *, citizen, data):
        return frozenset()


class NotAVerifier:
    pass


class ProvidesUnknownField:
    provides = frozenset({"shoe_size"})

    def verify(self, *, citizen, data):
        return frozenset()


class Overclaiming:
    """Claims fields it does not provide; only what it provides may count."""

    provides = frozenset({"id_number"})

    def verify(self, *, citizen, data):
        return frozenset({"id_number", "birth_date"})


READY_INSTANCE = CertificateLast4Verifier()


def unverified(call, **kwargs):
    with pytest.raises(PersonalDataUnverified) as info:
        call(**kwargs)
    assert info.value.code == "personal_data_unverified"
    return info.value


# --- CertificateLast4Verifier ------------------------------------------------------------


def test_last4_verifier_confirms_a_consistent_number():
    verifier = CertificateLast4Verifier()
    assert verifier.verify(citizen=CITIZEN, data=PersonalData(id_number=NUMBER)) == {"id_number"}


def test_last4_verifier_refuses_a_mismatch():
    other = parse_id_number(ID_OTHER_CARD)
    with pytest.raises(IdNumberMismatch) as info:
        CertificateLast4Verifier().verify(citizen=CITIZEN, data=PersonalData(id_number=other))
    assert info.value.code == "id_number_mismatch"


def test_last4_verifier_fails_closed_without_certificate_last4():
    with pytest.raises(IdNumberMismatch) as info:
        CertificateLast4Verifier().verify(
            citizen=Citizen(id_last4=None), data=PersonalData(id_number=NUMBER)
        )
    assert info.value.code == "id_number_mismatch"


def test_last4_verifier_confirms_nothing_without_a_number():
    assert CertificateLast4Verifier().verify(citizen=CITIZEN, data=PersonalData()) == frozenset()


# --- RegistryVerifier --------------------------------------------------------------------


def test_registry_confirms_number_and_birth_date():
    data = PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH)
    assert LaborInsuranceRegistry().verify(citizen=CITIZEN, data=data) == {
        "id_number",
        "birth_date",
    }


def test_registry_without_typed_birth_date_confirms_the_number_only():
    data = PersonalData(id_number=NUMBER)
    assert LaborInsuranceRegistry().verify(citizen=CITIZEN, data=data) == {"id_number"}


def test_registry_birth_date_mismatch():
    data = PersonalData(id_number=NUMBER, birth_date=date(1971, 1, 2))
    with pytest.raises(BirthDateMismatch) as info:
        LaborInsuranceRegistry().verify(citizen=CITIZEN, data=data)
    assert info.value.code == "birth_date_mismatch"


def test_registry_unknown_number_looks_like_a_birth_date_mismatch():
    data = PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH)
    with pytest.raises(BirthDateMismatch) as wrong_date:
        LaborInsuranceRegistry().verify(
            citizen=CITIZEN, data=PersonalData(id_number=NUMBER, birth_date=date(1980, 1, 1))
        )
    with pytest.raises(BirthDateMismatch) as unknown:
        LaborInsuranceRegistry(table={}).verify(citizen=CITIZEN, data=data)
    # Same code and message: the form is no oracle for who is registered.
    assert unknown.value.code == wrong_date.value.code == "birth_date_mismatch"
    assert unknown.value.message == wrong_date.value.message


def test_registry_checks_the_certificate_before_looking_up():
    registry = LaborInsuranceRegistry()
    data = PersonalData(id_number=parse_id_number(ID_OTHER_CARD), birth_date=BIRTH_MATCH)
    with pytest.raises(IdNumberMismatch):
        registry.verify(citizen=CITIZEN, data=data)
    assert registry.lookups == 0


def test_registry_base_class_must_be_subclassed():
    with pytest.raises(NotImplementedError):
        RegistryVerifier().verify(citizen=CITIZEN, data=PersonalData(id_number=NUMBER))


# --- MoicaConfirmationVerifier (against the local confirmation service) -------------------


class PinnedClock:
    """Wraps the client so the service certificate is checked at the pinned time."""

    def __init__(self, client):
        self.client = client

    def confirm_one(self, record, *, at=None):
        return self.client.confirm_one(record, at=AT)


def moica(confirmation_client):
    return MoicaConfirmationVerifier(confirmation_client=PinnedClock(confirmation_client))


def test_confirmation_verifier_confirms_both_fields(confirmation_client, confirmation_server):
    data = PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH)
    assert moica(confirmation_client).verify(citizen=CITIZEN, data=data) == {
        "id_number",
        "birth_date",
    }
    (sent,) = confirmation_server.received[-1]
    assert (sent.card_serial, sent.id_number, sent.birth_date) == (
        SERIAL_MATCH,
        ID_MATCH,
        "19710101",
    )


def test_confirmation_verifier_number_only(confirmation_client, confirmation_server):
    assert moica(confirmation_client).verify(
        citizen=CITIZEN, data=PersonalData(id_number=NUMBER)
    ) == {"id_number"}


@pytest.mark.parametrize(
    ("serial", "number", "birth", "error", "code"),
    [
        (SERIAL_MATCH, ID_MATCH, date(1971, 1, 2), BirthDateMismatch, "birth_date_mismatch"),
        (SERIAL_OTHER, ID_MATCH, None, IdNumberMismatch, "id_number_mismatch"),
        (SERIAL_UNKNOWN, ID_UNKNOWN, None, IdNumberMismatch, "id_number_mismatch"),
        (SERIAL_NOT_ACTIVATED, ID_NOT_ACTIVATED, None, PersonalDataUnverified, None),
        (SERIAL_EXPIRED, ID_EXPIRED, None, CertificateExpired, "certificate_expired"),
        (SERIAL_REVOKED, ID_REVOKED, None, CertificateRevoked, "certificate_revoked"),
    ],
)
def test_confirmation_verifier_maps_each_refusal(
    confirmation_client, confirmation_server, serial, number, birth, error, code
):
    citizen = Citizen(id_last4=number[-4:], card_serial=serial)
    data = PersonalData(id_number=parse_id_number(number), birth_date=birth)
    with pytest.raises(error) as info:
        moica(confirmation_client).verify(citizen=citizen, data=data)
    assert info.value.code == (code or "personal_data_unverified")


def test_confirmation_verifier_fails_closed_on_service_fault(
    confirmation_client, confirmation_server
):
    confirmation_server.faults.add("bad_signature")
    unverified(
        moica(confirmation_client).verify, citizen=CITIZEN, data=PersonalData(id_number=NUMBER)
    )


def test_confirmation_verifier_needs_the_card_serial(confirmation_client, confirmation_server):
    unverified(
        moica(confirmation_client).verify,
        citizen=Citizen(id_last4=ID_MATCH[-4:], card_serial=None),
        data=PersonalData(id_number=NUMBER),
    )
    assert confirmation_server.received == []


def test_confirmation_verifier_refuses_an_unsendable_card_serial(
    confirmation_client, confirmation_server
):
    unverified(
        moica(confirmation_client).verify,
        citizen=Citizen(id_last4=ID_MATCH[-4:], card_serial="0000-0000-0000-0"),
        data=PersonalData(id_number=NUMBER),
    )
    assert confirmation_server.received == []


def test_confirmation_verifier_checks_last4_locally_first(confirmation_client, confirmation_server):
    with pytest.raises(IdNumberMismatch):
        moica(confirmation_client).verify(
            citizen=CITIZEN, data=PersonalData(id_number=parse_id_number(ID_OTHER_CARD))
        )
    assert confirmation_server.received == []


# --- load_verifiers ------------------------------------------------------------------------


def test_load_verifiers_instantiates_classes_and_accepts_instances(confirmation_client):
    loaded = load_verifiers(
        [
            "moica_auth.identity.verifiers.CertificateLast4Verifier",
            "moica_auth.identity.verifiers.MoicaConfirmationVerifier",
            f"{THIS}.READY_INSTANCE",
            f"{THIS}.LaborInsuranceRegistry",
        ],
        confirmation_client=confirmation_client,
    )
    assert [type(v).__name__ for v in loaded] == [
        "CertificateLast4Verifier",
        "MoicaConfirmationVerifier",
        "CertificateLast4Verifier",
        "LaborInsuranceRegistry",
    ]
    assert loaded[1].client is confirmation_client
    assert loaded[2] is READY_INSTANCE


@pytest.mark.parametrize(
    ("paths", "kwargs"),
    [
        (["moica_auth.identity.verifiers.NoSuchVerifier"], {}),
        (["no_such_module.Verifier"], {}),
        (["CertificateLast4Verifier"], {}),
        ([42], {}),
        ("moica_auth.identity.verifiers.CertificateLast4Verifier", {}),
        ([f"{THIS}.NotAVerifier"], {}),
        ([f"{THIS}.ProvidesUnknownField"], {}),
        ([f"{THIS}.NeedsArgument"], {}),
        (["moica_auth.identity.verifiers.MoicaConfirmationVerifier"], {}),
        ([f"{THIS}.NUMBER"], {}),
    ],
)
def test_load_verifiers_refuses_bad_configuration(paths, kwargs):
    with pytest.raises(ConfigurationError) as info:
        load_verifiers(paths, **kwargs)
    assert info.value.code == "configuration_error"


def test_load_verifiers_passes_only_accepted_kwargs():
    (loaded,) = load_verifiers([f"{THIS}.NeedsArgument"], required_thing=1, unrelated=2)
    assert loaded.thing == 1


# --- verify_personal_data ----------------------------------------------------------------


def test_returns_the_union_of_confirmed_fields():
    verified = verify_personal_data(
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH),
        required={"id_number", "birth_date"},
        verifiers=[CertificateLast4Verifier(), LaborInsuranceRegistry()],
    )
    assert verified == {"id_number", "birth_date"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (PersonalData(birth_date=BIRTH_MATCH), "id_number"),
        (PersonalData(id_number=NUMBER), "birth_date"),
        (PersonalData(), "birth_date"),
    ],
)
def test_missing_required_field(data, field):
    with pytest.raises(FieldRequired) as info:
        verify_personal_data(
            citizen=CITIZEN,
            data=data,
            required=["id_number", "birth_date"],
            verifiers=[LaborInsuranceRegistry()],
        )
    assert info.value.code == "field_required"
    assert info.value.data["field"] == field


def test_required_field_no_verifier_can_confirm():
    unverified(
        verify_personal_data,
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH),
        required={"birth_date"},
        verifiers=[CertificateLast4Verifier()],
    )


def test_no_verifiers_at_all_confirms_nothing():
    unverified(
        verify_personal_data,
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER),
        required={"id_number"},
        verifiers=[],
    )


def test_unknown_required_field_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as info:
        verify_personal_data(
            citizen=CITIZEN,
            data=PersonalData(id_number=NUMBER),
            required={"shoe_size"},
            verifiers=[CertificateLast4Verifier()],
        )
    assert info.value.code == "configuration_error"


def test_any_mismatch_stops_the_login_even_if_another_verifier_passed():
    with pytest.raises(BirthDateMismatch) as info:
        verify_personal_data(
            citizen=CITIZEN,
            data=PersonalData(id_number=NUMBER, birth_date=date(1999, 9, 9)),
            required={"id_number"},  # the birth date is optional, but typed and wrong
            verifiers=[CertificateLast4Verifier(), LaborInsuranceRegistry()],
        )
    assert info.value.code == "birth_date_mismatch"


def test_last4_mismatch_through_the_orchestrator():
    with pytest.raises(IdNumberMismatch) as info:
        verify_personal_data(
            citizen=Citizen(id_last4="0000"),
            data=PersonalData(id_number=NUMBER),
            required={"id_number"},
            verifiers=[CertificateLast4Verifier()],
        )
    assert info.value.code == "id_number_mismatch"


def test_a_crashing_verifier_fails_closed_without_leaking_the_number(caplog):
    error = unverified(
        verify_personal_data,
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER),
        required={"id_number"},
        verifiers=[CertificateLast4Verifier(), BrokenRegistry()],
    )
    assert error.__cause__ is None
    assert ID_MATCH not in str(error)
    assert ID_MATCH not in caplog.text
    assert "BrokenRegistry" in caplog.text


def test_a_verifier_cannot_vouch_for_fields_it_does_not_provide():
    unverified(
        verify_personal_data,
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH),
        required={"id_number", "birth_date"},
        verifiers=[
            Overclaiming(),
            CertificateLast4Verifier(),
            ProvidesBirthDateButConfirmsNothing(),
        ],
    )


class ProvidesBirthDateButConfirmsNothing:
    provides = frozenset({"birth_date"})

    def verify(self, *, citizen, data):
        return frozenset()


def test_end_to_end_with_the_confirmation_service(confirmation_client, confirmation_server):
    verified = verify_personal_data(
        citizen=CITIZEN,
        data=PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH),
        required={"id_number", "birth_date"},
        verifiers=[CertificateLast4Verifier(), moica(confirmation_client)],
    )
    assert verified == {"id_number", "birth_date"}


def test_personal_data_repr_masks_both_fields():
    data = PersonalData(id_number=NUMBER, birth_date=BIRTH_MATCH)
    assert ID_MATCH not in repr(data)
    assert "1971" not in repr(data)


def test_works_with_a_real_citizen_certificate():
    from moica_auth.certificate import CitizenCertificate
    from moica_auth.testing.pki import TestPKI

    card = TestPKI(now=datetime(2026, 1, 1, tzinfo=UTC)).issue_card(
        generation="G2", id_number=ID_MATCH
    )
    citizen = CitizenCertificate.from_certificate(card.signing.certificate)
    assert citizen.id_last4 == ID_MATCH[-4:]
    verified = verify_personal_data(
        citizen=citizen,
        data=PersonalData(id_number=NUMBER),
        required={"id_number"},
        verifiers=[CertificateLast4Verifier()],
    )
    assert verified == {"id_number"}
    with pytest.raises(IdNumberMismatch):
        verify_personal_data(
            citizen=citizen,
            data=PersonalData(id_number=parse_id_number(ID_OTHER_CARD)),
            required={"id_number"},
            verifiers=[CertificateLast4Verifier()],
        )
