"""The HiPKI error catalogue: every code the component sends maps to its own message."""

from __future__ import annotations

from django.utils.translation import override

from moica_auth import hipki


def test_wrong_pin_with_tries_left_wins_over_ret_code() -> None:
    err = hipki.describe(0x76100006, 0x80000001)
    assert err.key == "wrong_pin"
    assert err.tries_left == 1


def test_codes_arrive_as_decimal_or_hex_strings() -> None:
    assert hipki.describe(str(0x76000006)).key == "no_card"
    assert hipki.describe("0x76000006").key == "no_card"
    assert hipki.describe(0x76000006, "0xA4").key == "card_locked"


def test_unknown_codes_are_reported_as_unknown_not_success() -> None:
    assert hipki.describe(0x12345678).key == "unknown"
    assert hipki.describe("garbage", "also garbage").key == "unknown"
    assert hipki.describe(None).key == "unknown"


def test_site_not_trusted_has_both_codes() -> None:
    assert hipki.describe(0x7600000F).key == hipki.describe(0x76000031).key == "site_not_trusted"


def test_every_message_is_translated_to_zh_hant() -> None:
    with override("en"):
        english = hipki.client_messages()
    with override("zh-hant"):
        chinese = hipki.client_messages()
    for table in ("ret_code", "last_error"):
        for code, entry in english[table].items():  # type: ignore[attr-defined]
            assert entry["message"] != chinese[table][code]["message"], code  # type: ignore[index]
    for key, message in english["client"].items():  # type: ignore[attr-defined]
        assert message != chinese["client"][key], key  # type: ignore[index]
