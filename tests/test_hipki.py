"""The HiPKI error catalogue: every code the component sends maps to its own message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.utils.translation import override

from moica_auth import hipki

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Every ret_code ../shared/DOMAIN.md lists ("HiPKI local component", error codes),
#: written out from its ranges rather than read from hipki.py.
DOMAIN_RET_CODES = [
    *range(0x76000001, 0x7600000F + 1),
    0x76000031,
    0x76000998,
    0x76000999,
    *range(0x76100001, 0x7610000D + 1),
    *range(0x76200001, 0x76200008 + 1),
    0x76210001,
    0x76210002,
    *range(0x76300001, 0x76300009 + 1),
    *range(0x76400001, 0x76400003 + 1),
    0x76500001,
    0x76500002,
    0x76600001,
    0x76600002,
    *range(0x83000100, 0x83000106 + 1),
]


def test_wrong_pin_with_tries_left_wins_over_ret_code() -> None:
    err = hipki.describe(0x76100006, 0x80000001)
    assert err.key == "wrong_pin"
    assert err.tries_left == 1


def test_codes_arrive_as_decimal_or_hex_strings() -> None:
    assert hipki.describe(str(0x76000006)).key == "no_card"
    assert hipki.describe("0x76000006").key == "no_card"
    assert hipki.describe(0x76000006, "0xA4").key == "card_locked"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-2147483646, 0x80000002),
        ("-2147483647", 0x80000001),
        (0x83000102 - (1 << 32), 0x83000102),
        (" 0x7600000d ", 0x7600000D),
        (1 << 32, None),
        (-(1 << 31) - 1, None),
        ("0x123456789", None),
        ("1_000", None),
        ("0x-1", None),
        ("9" * 5000, None),
        (True, None),
        (1.0, None),
    ],
)
def test_normalise_code_folds_negative_ints_and_refuses_the_rest(
    value: object, expected: int | None
) -> None:
    assert hipki.normalise_code(value) == expected


def test_negative_int_forms_map_like_unsigned() -> None:
    err = hipki.describe(0x76100006 - (1 << 32), -2147483646)
    assert (err.key, err.tries_left) == ("wrong_pin", 2)
    assert hipki.describe(str(0x83000102 - (1 << 32))).key == "wrong_card_moeaca"


def test_unknown_codes_are_reported_as_unknown_not_success() -> None:
    assert hipki.describe(0x12345678).key == "unknown"
    assert hipki.describe("garbage", "also garbage").key == "unknown"
    assert hipki.describe(None).key == "unknown"


def test_unknown_code_message_names_its_hex_value() -> None:
    with override("en"):
        assert "0x76990001" in str(hipki.describe(0x76990001).message)
        assert "0x86990001" in str(hipki.describe(0x86990001 - (1 << 32)).message)
    with override("zh-hant"):
        message = str(hipki.describe(0x76990001).message)
    assert "0x76990001" in message and "讀卡元件" in message


def test_site_not_trusted_has_both_codes() -> None:
    assert hipki.describe(0x7600000F).key == hipki.describe(0x76000031).key == "site_not_trusted"


@pytest.mark.parametrize("code", DOMAIN_RET_CODES, ids=lambda c: f"0x{c:X}")
def test_every_documented_ret_code_has_its_own_message(code: int) -> None:
    err = hipki.describe(code)
    assert err.key not in ("unknown", "")
    with override("en"):
        english = str(err.message)
    assert "%(code)s" not in english
    assert len(english) > 20


def test_wrong_service_codes_name_the_card_that_was_inserted() -> None:
    with override("zh-hant"):
        assert "工商憑證" in str(hipki.describe(0x83000102).message)
        assert "政府憑證" in str(hipki.describe(0x83000103).message)
        assert "組織及團體憑證" in str(hipki.describe(0x83000104).message)
    with override("en"):
        assert "company certificate" in str(hipki.describe(0x83000102).message)


def test_page_errors_show_the_code_to_report() -> None:
    with override("en"):
        assert "0x7600000C" in str(hipki.describe(0x7600000C).message)


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


def test_the_virtual_card_answers_with_hipkis_codes() -> None:
    from moica_auth.testing import virtual_card

    for name in ("RET_NO_CARD", "RET_NO_PIN", "RET_CANCELLED", "RET_CARD_LOGIN_FAILED"):
        assert getattr(virtual_card, name) is getattr(hipki, name)
    assert virtual_card.RET_BAD_REQUEST in hipki.RET_CODES


# --- the generated browser table --------------------------------------------------------


def test_the_committed_client_table_is_generated_from_this_module() -> None:
    """``python -m moica_auth.hipki --check`` passes on the committed moica-auth.js."""
    done = subprocess.run(
        [sys.executable, "-m", "moica_auth.hipki", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_table_and_write_js_repairs_it(tmp_path: Path) -> None:
    stale = tmp_path / "moica-auth.js"
    source = hipki.CLIENT_JS.read_text("utf-8")
    stale.write_text(source.replace('"76000006": {"key": "no_card"', '"76000006": {"key": "x"'))
    assert stale.read_text("utf-8") != source
    args = [sys.executable, "-m", "moica_auth.hipki", f"--js={stale}"]
    run = {"cwd": REPO_ROOT, "capture_output": True, "text": True, "timeout": 60}
    checked = subprocess.run([*args, "--check"], check=False, **run)  # type: ignore[call-overload]
    assert checked.returncode == 1
    assert "out of date" in checked.stderr
    subprocess.run([*args, "--write-js"], check=True, **run)  # type: ignore[call-overload]
    assert stale.read_text("utf-8") == source


def test_a_client_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="no generated block"):
        hipki.render_client_js("export const x = 1;\n")
