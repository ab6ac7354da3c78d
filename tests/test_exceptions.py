"""The error hierarchy: stable codes, and a zh-Hant and an English message for each."""

from __future__ import annotations

import pytest

from moica_auth.exceptions import CertificateRevoked, MoicaAuthError, error_codes

CODES = sorted(error_codes().items())


@pytest.mark.parametrize(("code", "cls"), CODES, ids=[code for code, _ in CODES])
def test_every_error_has_its_own_zh_hant_message(code: str, cls: type[MoicaAuthError]) -> None:
    error = cls()
    assert error.code == code
    english, chinese = error.message_in("en"), error.message_in("zh-hant")
    assert english and chinese
    assert chinese != english, f"{code} has no zh-Hant translation"
    assert 400 <= error.http_status < 600


def _error_classes() -> list[type[MoicaAuthError]]:
    """Every class of the hierarchy, walked directly (``error_codes()`` keys a dict by
    code, so it would hide a second class with the same code)."""
    found: list[type[MoicaAuthError]] = []
    pending: list[type[MoicaAuthError]] = [MoicaAuthError]
    while pending:
        cls = pending.pop()
        if cls not in found and cls.__module__.startswith("moica_auth"):
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def reused_codes(classes: list[type[Exception]]) -> dict[str, list[str]]:
    """The codes that more than one class *declares* (a subclass that only inherits its
    parent's code declares none)."""
    owners: dict[str, list[str]] = {}
    for cls in classes:
        code = vars(cls).get("code")
        if code is not None:
            owners.setdefault(code, []).append(cls.__qualname__)
    return {code: names for code, names in owners.items() if len(names) > 1}


def test_codes_are_unique_per_class() -> None:
    classes = _error_classes()
    assert len(classes) > 20  # the walk really saw the hierarchy
    assert reused_codes(list(classes)) == {}
    # Every class is reachable by its code: none hides behind another with the same code.
    declared = [cls for cls in classes if "code" in vars(cls)]
    assert sorted(error_codes().values(), key=id) == sorted(declared, key=id)


def test_reused_code_is_caught() -> None:
    # The check above must be able to fail: two unrelated classes declaring one code.
    class First(Exception):
        code = "twice"

    class Second(Exception):
        code = "twice"

    class Inherits(First):
        pass

    assert reused_codes([First, Second, Inherits]) == {
        "twice": [First.__qualname__, Second.__qualname__]
    }


def test_refusal_json_carries_data_but_never_the_detail() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, tzinfo=UTC)
    error = CertificateRevoked(
        "CRL 2026010200 lists serial 0A", reason="key_compromise", revoked_at=when
    )
    out = error.as_dict()
    assert out["ok"] is False and out["code"] == "certificate_revoked"
    assert out["reason"] == "key_compromise" and out["revoked_at"] == when.isoformat()
    assert "serial" not in str(out)
