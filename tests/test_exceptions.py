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


def test_codes_are_unique_per_class() -> None:
    classes = list(error_codes().values())
    assert len({cls.code for cls in classes}) == len(classes)


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
