"""Birth dates in the ROC calendar: accepted forms, the real calendar, and refusals."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from moica_auth.exceptions import BirthDateInvalid
from moica_auth.identity.roc_date import parse_birth_date, roc_year, to_roc

TODAY = date(2026, 6, 1)


def parse(value):
    return parse_birth_date(value, today=TODAY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0600101", date(1971, 1, 1)),
        ("060/01/01", date(1971, 1, 1)),
        ("060-01-01", date(1971, 1, 1)),
        ("1971-01-01", date(1971, 1, 1)),
        (" 0600101 ", date(1971, 1, 1)),
        ("０６００１０１", date(1971, 1, 1)),  # full-width input method
        ("0010101", date(1912, 1, 1)),  # ROC year 1
        ("1150601", TODAY),  # today is not the future
        ("0890229", date(2000, 2, 29)),  # 2000 is a leap year
        ("0850229", date(1996, 2, 29)),
    ],
)
def test_accepts_documented_forms(text, expected):
    assert parse(text) == expected


def test_accepts_a_date_object():
    assert parse(date(1971, 1, 1)) == date(1971, 1, 1)


@pytest.mark.parametrize(
    "value",
    [
        "0900229",  # 2001 is not a leap year
        "0890230",
        "0601301",
        "0600100",
        "0000101",  # ROC year 0 does not exist
        "1911-12-31",  # before ROC 1
        "1150602",  # tomorrow, with the clock pinned
        "2027-01-01",
        "600101",  # six digits: ROC 60-01-01 or 1960-01-01? refused, never guessed
        "60/01/01",
        "60/1/1",
        "060/01-01",  # mixed separators
        "060.01.01",
        "19710101",  # eight digits are not a documented form
        "1971/01/01",
        "71-01-01",
        "",
        "民國60年1月1日",
        "0600101" + " " * 40,
        "٠٦٠٠١٠١",  # Arabic-Indic digits
    ],
)
def test_rejects_invalid_strings(value):
    with pytest.raises(BirthDateInvalid) as info:
        parse(value)
    assert info.value.code == "birth_date_invalid"


@pytest.mark.parametrize(
    "value",
    [None, 600101, 19710101, 1.0, ["0600101"], b"0600101", datetime(1971, 1, 1)],
)
def test_rejects_wrong_types(value):
    with pytest.raises(BirthDateInvalid) as info:
        parse(value)
    assert info.value.code == "birth_date_invalid"


def test_rejects_a_future_date_object_and_one_before_roc_1():
    for value in (date(2026, 6, 2), date(1911, 12, 31)):
        with pytest.raises(BirthDateInvalid) as info:
            parse(value)
        assert info.value.code == "birth_date_invalid"


def test_today_defaults_to_the_real_clock():
    # Only the direction is asserted: a date far in the future is refused, one far in the
    # past accepted, whatever today is.
    assert parse_birth_date("0010101") == date(1912, 1, 1)
    with pytest.raises(BirthDateInvalid):
        parse_birth_date("9991231")


def test_to_roc_and_roc_year_round_trip():
    assert to_roc(date(1971, 1, 1)) == "0600101"
    assert to_roc(date(2000, 2, 29)) == "0890229"
    assert to_roc(date(2026, 12, 31)) == "1151231"
    assert roc_year(date(1912, 1, 1)) == 1
    for d in (date(1912, 1, 1), date(1999, 12, 31), date(2024, 2, 29)):
        assert parse(to_roc(d)) == d


def test_to_roc_refuses_dates_before_roc_1():
    with pytest.raises(BirthDateInvalid) as info:
        to_roc(date(1911, 12, 31))
    assert info.value.code == "birth_date_invalid"
    with pytest.raises(BirthDateInvalid):
        roc_year(date(1900, 1, 1))
