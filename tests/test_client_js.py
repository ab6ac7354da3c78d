"""The browser client's error mapping, run in Node (skipped when ``node`` is absent).

The bridge itself (popup, postMessage, fetch) is exercised in a real browser by the
Playwright tests; these check the pure parts against the server-side catalogue: every
HiPKI code the catalogue knows maps to the same key, message and tries-left in the browser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from moica_auth.hipki import CLIENT_ERRORS, LAST_ERRORS, RET_CODES, client_messages, describe

CLIENT_JS = (
    Path(__file__).resolve().parent.parent
    / "moica_auth"
    / "static"
    / "moica_auth"
    / "moica-auth.js"
)
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

_RUNNER = """
globalThis.location = { hostname: "portal.example", host: "portal.example:8443" };
const input = JSON.parse(process.argv[2]);
// A .js file outside a "type": "module" package would load as CommonJS; a data: URL is
// always an ES module.
const fs = await import("node:fs");
const source = fs.readFileSync(input.module, "utf8");
const m = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
const client = new m.MoicaClient({ componentUrl: input.componentUrl, messages: input.messages });
const out = { answers: [], local: [] };
for (const answer of input.answers) {
  const e = client.componentError(answer);
  out.answers.push({ key: e.key, message: e.message, code: e.code, triesLeft: e.triesLeft,
                     addDomainUrl: e.addDomainUrl });
}
for (const pin of input.pins) {
  try {
    await client.login({ pin });
    out.local.push(null);
  } catch (e) {
    out.local.push(e.key);
  }
}
out.hex = input.hex.map((v) => m.hexCode(v));
out.picked = m.pickSigningCertificate(input.info);
console.log(JSON.stringify(out));
"""


def run_client(tmp_path: Path, **payload: Any) -> dict[str, Any]:
    runner = tmp_path / "runner.mjs"
    runner.write_text(_RUNNER, "utf-8")
    payload.setdefault("componentUrl", "http://localhost:61161/")
    payload.setdefault("messages", client_messages())
    payload.setdefault("answers", [])
    payload.setdefault("pins", [])
    payload.setdefault("hex", [])
    payload.setdefault("info", {})
    payload["module"] = str(CLIENT_JS)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(runner), json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_component_code_maps_like_the_server_catalogue(tmp_path: Path) -> None:
    answers: list[dict[str, Any]] = [{"ret_code": code, "last_error": 0} for code in RET_CODES]
    answers += [{"ret_code": 0x76100006, "last_error": code} for code in LAST_ERRORS]
    out = run_client(tmp_path, answers=answers)
    for answer, got in zip(answers, out["answers"], strict=True):
        expected = describe(answer["ret_code"], answer["last_error"])
        assert got["key"] == expected.key
        assert got["message"] == str(expected.message)
        assert got["triesLeft"] == expected.tries_left
        assert got["code"] == f"0x{answer['ret_code']:X}"


def test_unknown_codes_are_unknown(tmp_path: Path) -> None:
    out = run_client(tmp_path, answers=[{"ret_code": 0x7600000D}, {}])
    assert [a["key"] for a in out["answers"]] == ["unknown", "unknown"]
    assert out["answers"][0]["message"] == str(CLIENT_ERRORS["unknown"].message)


def test_site_not_trusted_links_to_add_domain_with_the_host_name(tmp_path: Path) -> None:
    out = run_client(tmp_path, answers=[{"ret_code": 0x7600000F}, {"ret_code": 0x76000031}])
    urls = {a["addDomainUrl"] for a in out["answers"]}
    # addDomain takes location.hostname: no scheme, no port.
    assert urls == {"http://localhost:61161/addDomain?domain=portal.example"}


def test_codes_arrive_as_numbers_or_strings(tmp_path: Path) -> None:
    out = run_client(tmp_path, hex=[0x76000006, "0x7600000f", "1979711494", -2147483646, None])
    assert out["hex"] == ["76000006", "7600000F", "76000006", "80000002", None]


def test_pin_is_checked_before_any_popup(tmp_path: Path) -> None:
    # No window exists in Node: reaching window.open would throw a ReferenceError, so
    # these keys prove the PIN was refused first.
    out = run_client(tmp_path, pins=["", "12345", "123456789", "12a456"])
    assert out["local"] == ["no_pin", "pin_length", "pin_length", "pin_length"]


def test_picks_the_digital_signature_certificate(tmp_path: Path) -> None:
    info = {
        "slots": [
            {"slotDescription": "empty", "token": None},
            {
                "slotDescription": "reader",
                "token": {
                    "certs": [
                        {"usage": "keyEncipherment", "sn": "E"},
                        {"usage": "digitalSignature", "sn": "S"},
                    ]
                },
            },
        ]
    }
    out = run_client(tmp_path, info=info)
    assert out["picked"]["sn"] == "S"
    assert out["picked"]["slotDescription"] == "reader"
