"""``python -m moica_auth mobile device-status|sign`` against the virtual SP API."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from moica_auth.cli import main
from moica_auth.testing.virtual_sp import VirtualSpApi
from tests.mobile_fixtures import CITIZEN, NO_PHONE, _reset_faults, vsp_fixture

__all__ = ["_reset_faults", "vsp_fixture"]


@pytest.fixture(autouse=True)
def _env(vsp: VirtualSpApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOICA_AUTH_MOBILE_API_URL", vsp.url)
    monkeypatch.setenv("MOICA_AUTH_MOBILE_SERVICE_ID", vsp.service_id)
    monkeypatch.setenv("MOICA_AUTH_MOBILE_AES_KEY", base64.b64encode(vsp.aes_key).decode())


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["mobile", *argv])
    out = capsys.readouterr()
    return code, json.loads((out.out or out.err).strip().splitlines()[-1])


def test_device_status(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "device-status", "--id", CITIZEN)
    assert code == 0 and out["has_device"] is True and out["can_sign"] is True
    assert out["id_number"] != CITIZEN and str(out["id_number"]).endswith(CITIZEN[-4:])
    code, out = _run(capsys, "device-status", "--id", NO_PHONE)
    assert code == 0 and out["has_device"] is False


def test_sign_by_push_verifies_the_answer(
    vsp: VirtualSpApi, capsys: pytest.CaptureFixture[str]
) -> None:
    def approve() -> None:
        for _ in range(50):
            if vsp.pending(CITIZEN):
                vsp.approve(id_number=CITIZEN)
                return
            time.sleep(0.1)

    threading.Thread(target=approve).start()
    code, out = _run(capsys, "sign", "--id", CITIZEN, "--data", "admin test", "--wait", "10")
    assert code == 0 and out["state"] == "signed" and out["signature_valid"] is True


def test_sign_refusal_is_typed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "sign", "--id", NO_PHONE, "--data", "x", "--wait", "0")
    assert code == 1 and out["code"] == "mobile_no_device"


def test_key_comes_only_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOICA_AUTH_MOBILE_AES_KEY")
    code, out = _run(capsys, "device-status", "--id", CITIZEN)
    assert code == 2 and out["code"] == "usage"


def test_bad_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "device-status", "--id", "A123")
    assert code == 2 and out["code"] == "usage"
