"""ID numbers: form, check digit, normalisation, masking, last-4 and keyed hashing."""

from __future__ import annotations

import pytest

from moica_auth.exceptions import ConfigurationError, IdNumberInvalid, IdNumberMismatch
from moica_auth.identity.id_number import (
    LETTER_VALUES,
    IdNumber,
    check_last4,
    checksum_digit,
    id_number_hash,
    parse_id_number,
)

KEY = b"k" * 32


def valid(prefix9: str) -> str:
    return prefix9 + checksum_digit(prefix9)


# --- check digit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "A123456789",  # the textbook example
        "F131104093",
        "A800000014",  # new resident form, published example
        "AA00000009",  # old resident form: A -> 10 mod 10 = 0
    ],
)
def test_accepts_known_valid_numbers(number):
    assert parse_id_number(number).value == number


def test_checksum_follows_the_domain_rule_by_hand():
    # A=10: 1*1 + 0*9; 1..8 weighted 8..1 = 120; total 121 -> check digit 9.
    assert checksum_digit("A12345678") == "9"


@pytest.mark.parametrize("letter", sorted(LETTER_VALUES))
def test_every_leading_letter_has_exactly_one_check_digit(letter):
    prefix = f"{letter}12345678"
    good = checksum_digit(prefix)
    assert parse_id_number(prefix + good).kind == "national"
    for digit in "0123456789":
        if digit != good:
            with pytest.raises(IdNumberInvalid) as info:
                parse_id_number(prefix + digit)
            assert info.value.code == "id_number_invalid"


def test_letter_values_follow_the_published_table():
    assert (LETTER_VALUES["I"], LETTER_VALUES["O"], LETTER_VALUES["W"]) == (34, 35, 32)
    assert (LETTER_VALUES["X"], LETTER_VALUES["Y"], LETTER_VALUES["Z"]) == (30, 31, 33)
    assert sorted(LETTER_VALUES.values()) == list(range(10, 36))


def test_rejects_a_transposition():
    with pytest.raises(IdNumberInvalid) as info:
        parse_id_number("A132456789")
    assert info.value.code == "id_number_invalid"


# --- the three forms ---------------------------------------------------------------------


@pytest.mark.parametrize("second", "12")
def test_national_form(second):
    number = parse_id_number(valid(f"B{second}0000000"))
    assert number.kind == "national"
    assert number.resident_category is None


@pytest.mark.parametrize("second", "ABCD")
def test_old_resident_form_uses_letter_value_mod_10(second):
    number = parse_id_number(valid(f"C{second}1234567"))
    assert number.kind == "resident_old"
    # The second letter counts as its letter value mod 10, weighted 8.
    rest = sum(d * w for d, w in zip(range(1, 8), range(7, 0, -1), strict=True))
    expected = 1 + 2 * 9 + (LETTER_VALUES[second] % 10) * 8 + rest
    assert (expected + int(number.value[-1])) % 10 == 0


@pytest.mark.parametrize(
    ("third", "category"),
    [
        ("0", "foreign"),
        ("6", "foreign"),
        ("7", "no_household_registration"),
        ("8", "hong_kong_macao"),
        ("9", "mainland"),
    ],
)
@pytest.mark.parametrize("second", "89")
def test_new_resident_form(second, third, category):
    number = parse_id_number(valid(f"D{second}{third}0000000"[:9]))
    assert number.kind == "resident_new"
    assert number.resident_category == category


@pytest.mark.parametrize("second", ["0", "3", "5", "7", "E", "Z"])
def test_rejects_other_second_characters(second):
    for check in "0123456789":  # whatever the check digit, the form is wrong
        with pytest.raises(IdNumberInvalid) as info:
            parse_id_number(f"A{second}1234567{check}")
        assert info.value.code == "id_number_invalid"


# --- normalisation and input types -------------------------------------------------------


def test_lowercase_and_whitespace_are_normalised():
    number = parse_id_number("  a123456789\n")
    assert number.value == "A123456789"
    assert number == parse_id_number("A123456789")


def test_full_width_input_is_normalised():
    assert parse_id_number("Ａ１２３４５６７８９").value == "A123456789"


@pytest.mark.parametrize(
    "value",
    [
        # str.upper() maps these non-ASCII letters onto ASCII: dotless i (U+0131) -> "I",
        # long s (U+017F) -> "S". Only the full-width block is a typing mode to undo;
        # anything else that merely upper-cases to a valid number is not one.
        "\u0131" + "12345678" + "1",  # would read as I123456781
        "\u017f" + "12345678" + "4",  # would read as S123456784
    ],
)
def test_rejects_letters_that_only_upper_case_to_ascii(value):
    with pytest.raises(IdNumberInvalid) as info:
        parse_id_number(value)
    assert info.value.code == "id_number_invalid"
    with pytest.raises(IdNumberInvalid):
        checksum_digit(value[:9])


@pytest.mark.parametrize(
    "value",
    [
        None,
        123456789,
        1.5,
        True,
        ["A123456789"],
        b"A123456789",
        "",
        "A12345678",
        "A1234567890",
        "A 123456789",
        "1123456789",
        "A12345678９" + "0" * 100,
        "A١٢٣٤٥٦٧٨٩",  # Arabic-Indic digits are digits to \d, not to us
        "A123456789\x00",
    ],
)
def test_rejects_wrong_types_and_shapes(value):
    with pytest.raises(IdNumberInvalid) as info:
        parse_id_number(value)
    assert info.value.code == "id_number_invalid"
    assert "A123456789" not in str(info.value)


def test_direct_construction_is_checked_too():
    with pytest.raises(IdNumberInvalid):
        IdNumber(value="A123456780", kind="national")
    with pytest.raises(IdNumberInvalid):
        IdNumber(value="A123456789", kind="resident_new")


# --- privacy -----------------------------------------------------------------------------


def test_masked_shows_only_first_letter_and_last_four():
    number = parse_id_number("A123456789")
    assert number.masked() == "A*****6789"
    assert "12345" not in number.masked()
    assert number.last4 == "6789"


def test_repr_and_str_never_reveal_the_number():
    number = parse_id_number("A123456789")
    for text in (repr(number), str(number), f"{number}", repr([number])):
        assert "A123456789" not in text
        assert "12345" not in text


def test_hash_is_stable_keyed_and_domain_separated():
    number = parse_id_number("A123456789")
    first = id_number_hash(number, key=KEY)
    assert first == id_number_hash(parse_id_number("a123456789 "), key=KEY)
    assert len(first) == 64
    assert int(first, 16) >= 0
    assert first != id_number_hash(number, key=b"j" * 32)
    assert first != id_number_hash(parse_id_number("F131104093"), key=KEY)
    assert "A123456789" not in first


def test_hash_pins_its_construction():
    import hashlib
    import hmac

    number = parse_id_number("A123456789")
    expected = hmac.new(KEY, b"moica-auth/id-number/v1\x00A123456789", hashlib.sha256)
    assert id_number_hash(number, key=KEY) == expected.hexdigest()


@pytest.mark.parametrize("key", [b"", b"short", "a string key of enough length"])
def test_hash_refuses_weak_or_wrong_keys(key):
    with pytest.raises(ConfigurationError) as info:
        id_number_hash(parse_id_number("A123456789"), key=key)
    assert info.value.code == "configuration_error"


# --- last four ---------------------------------------------------------------------------


def test_last4_match_passes():
    check_last4(parse_id_number("A123456789"), "6789")
    check_last4(parse_id_number("AA00000009"), "0009")


def test_last4_mismatch_is_refused():
    with pytest.raises(IdNumberMismatch) as info:
        check_last4(parse_id_number("A123456789"), "6788")
    assert info.value.code == "id_number_mismatch"


@pytest.mark.parametrize("last4", [None, "", "789", "56789", "６７８９"])
def test_last4_missing_or_malformed_fails_closed(last4):
    with pytest.raises(IdNumberMismatch) as info:
        check_last4(parse_id_number("A123456789"), last4)
    assert info.value.code == "id_number_mismatch"
