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
from django.utils.translation import override

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


def test_unknown_codes_are_unknown_and_show_their_hex_value(tmp_path: Path) -> None:
    out = run_client(tmp_path, answers=[{"ret_code": 0x76990001}, {}, {"ret_code": 0}])
    assert [a["key"] for a in out["answers"]] == ["unknown", "unknown", "unknown"]
    assert out["answers"][0]["message"] == str(describe(0x76990001).message)
    assert "0x76990001" in out["answers"][0]["message"]
    assert out["answers"][1]["message"] == str(CLIENT_ERRORS["unknown"].message)


def test_negative_int_codes_map_like_their_unsigned_form(tmp_path: Path) -> None:
    answers = [
        {"ret_code": 0x76100006 - (1 << 32), "last_error": -2147483646},
        {"ret_code": str(0x83000102 - (1 << 32))},
    ]
    out = run_client(tmp_path, answers=answers)
    assert out["answers"][0]["key"] == "wrong_pin"
    assert out["answers"][0]["triesLeft"] == 2
    assert out["answers"][1]["key"] == "wrong_card_moeaca"
    assert out["answers"][1]["code"] == "0x83000102"


def test_the_built_in_table_is_the_english_catalogue(tmp_path: Path) -> None:
    """A page that passes no catalogue gets the generated English table: same keys and
    messages as the server's, for every code."""
    answers: list[dict[str, Any]] = [{"ret_code": code} for code in RET_CODES]
    out = run_client(tmp_path, answers=answers, messages=None)
    with override(None):
        for answer, got in zip(answers, out["answers"], strict=True):
            expected = describe(answer["ret_code"])
            assert (got["key"], got["message"]) == (expected.key, str(expected.message))


def test_site_not_trusted_links_to_add_domain_with_the_host_name(tmp_path: Path) -> None:
    out = run_client(tmp_path, answers=[{"ret_code": 0x7600000F}, {"ret_code": 0x76000031}])
    urls = {a["addDomainUrl"] for a in out["answers"]}
    # addDomain takes location.hostname: no scheme, no port.
    assert urls == {"http://localhost:61161/addDomain?domain=portal.example"}


def test_codes_arrive_as_numbers_or_strings(tmp_path: Path) -> None:
    out = run_client(
        tmp_path,
        hex=[0x76000006, "0x7600000f", "1979711494", -2147483646, None, 1 << 32, -(1 << 31) - 1],
    )
    assert out["hex"] == ["76000006", "7600000F", "76000006", "80000002", None, None, None]


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


# --- the popup bridge, in a scripted fake browser ---------------------------------------

_BRIDGE_PRELUDE = r"""
// A fake browser around moica-auth.js: window.open gives a scripted popup, fetch answers
// like the site, console is recorded.
const input = JSON.parse(process.argv[2]);
const fs = await import("node:fs");
const log = { posted: [], fetches: [], console: [], opened: [], closed: 0 };
for (const level of ["log", "info", "warn", "error", "debug", "trace"]) {
  console[level] = (...args) => log.console.push(args.map(String).join(" "));
}
const listeners = new Set();
let lastPopup = null;
globalThis.location = { hostname: "portal.example", host: "portal.example",
                        origin: "https://portal.example", href: "https://portal.example/login/" };
globalThis.document = { cookie: "csrftoken=tok123" };
globalThis.window = {
  addEventListener(type, fn) { if (type === "message") listeners.add(fn); },
  removeEventListener(type, fn) { if (type === "message") listeners.delete(fn); },
  open(url, name, features) {
    const popup = {
      tag: `popup${log.opened.length}`,
      closed: false,
      postMessage(data, targetOrigin) { log.posted.push({ data, targetOrigin, to: this.tag }); },
      close() { this.closed = true; log.closed += 1; },
    };
    log.opened.push({ url, name, features });
    lastPopup = popup;
    return popup;
  },
  location: globalThis.location,
};
const CHALLENGE = { nonce: "NONCE", tbs: "TBS", tbs_encoding: "NONE", hash_algorithm: "SHA256",
                    signature_type: "PKCS7" };
const loginAnswer = input.loginAnswer || { status: 200, body: { ok: true, redirect: "/done/" } };
globalThis.fetch = async (url, init) => {
  log.fetches.push({ url: String(url), method: init.method, headers: init.headers,
                     body: init.body || null });
  const answer = String(url).includes("challenge") ? { status: 200, body: CHALLENGE } : loginAnswer;
  return { ok: answer.status < 400, status: answer.status, json: async () => answer.body };
};
const source = fs.readFileSync(input.module, "utf8");
const m = await import("data:text/javascript;base64," + Buffer.from(source).toString("base64"));
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const dispatch = (origin, src, data) => {
  for (const fn of [...listeners]) fn({ origin, source: src, data });
};
const settled = (promise) => promise.then(
  (value) => ({ value }),
  (e) => ({ error: { key: e.key, message: e.message, code: e.code, json: JSON.stringify(e) } }));
const COMPONENT = "http://localhost:61161";
const PIN = "135790";
const out = {};
"""

_BRIDGE_EPILOGUE = r"""
process.stdout.write(JSON.stringify({ out, log }));
process.exit(0);
"""


def run_bridge(tmp_path: Path, scenario: str, **payload: Any) -> dict[str, Any]:
    """Run ``scenario`` (JavaScript, after the fake-browser prelude); returns ``{out, log}``."""
    runner = tmp_path / "bridge.mjs"
    runner.write_text(_BRIDGE_PRELUDE + scenario + _BRIDGE_EPILOGUE, "utf-8")
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


PIN_JS = "135790"

_LOGIN_THROUGH_THE_POPUP = r"""
const client = new m.MoicaClient({ componentUrl: COMPONENT + "/" });
const done = settled(client.login({ pin: PIN, next: "/x/" }));
const popup = lastPopup;
await tick();
dispatch(COMPONENT, popup, JSON.stringify({ func: "getTbs" }));
await tick();
dispatch(COMPONENT, popup, JSON.stringify({ func: "sign", ret_code: 0, last_error: 0,
                                            signature: "SIG", certb64: "CERT", cardSN: "TP01" }));
out.result = await done;
"""


def _assert_pin_only_went_to_the_component(log: dict[str, Any]) -> None:
    for fetched in log["fetches"]:
        assert PIN_JS not in json.dumps(fetched), fetched
    assert not [line for line in log["console"] if PIN_JS in line]
    for message in log["posted"]:
        assert message["targetOrigin"] == "http://localhost:61161"


def test_bridge_posts_the_request_once_to_the_component_origin_only(tmp_path: Path) -> None:
    ran = run_bridge(tmp_path, _LOGIN_THROUGH_THE_POPUP)
    out, log = ran["out"], ran["log"]
    assert out["result"] == {"value": {"redirect": "/done/"}}
    (opened,) = log["opened"]
    assert opened["url"] == "http://localhost:61161/popupForm"
    (request,) = log["posted"]
    assert request["targetOrigin"] == "http://localhost:61161"  # never "*"
    sent = json.loads(request["data"])
    assert sent["pin"] == PIN_JS
    assert sent["nonce"] == "NONCE"
    assert log["closed"] == 1
    _assert_pin_only_went_to_the_component(log)
    login = json.loads(log["fetches"][-1]["body"])
    assert login["signature"] == "SIG"
    assert "pin" not in login


def test_bridge_ignores_other_windows_early_results_and_a_second_get_tbs(tmp_path: Path) -> None:
    scenario = r"""
    const client = new m.MoicaClient({ componentUrl: COMPONENT });
    const done = settled(client.login({ pin: PIN }));
    const popup = lastPopup;
    const stranger = { tag: "stranger" };  // another window on the component's origin
    await tick();
    dispatch(COMPONENT, stranger, '{"func":"getTbs"}');
    dispatch("https://evil.example", popup, '{"func":"getTbs"}');
    dispatch("http://localhost:61162", popup, '{"func":"getTbs"}');
    dispatch("null", popup, '{"func":"getTbs"}');
    await tick();
    out.postedBeforeGetTbs = log.posted.length;
    // A "result" before any request was sent is not a result.
    dispatch(COMPONENT, popup, '{"func":"sign","ret_code":0,"signature":"EARLY"}');
    await tick();
    dispatch(COMPONENT, popup, '{"func":"getTbs"}');
    await tick();
    dispatch(COMPONENT, popup, '{"func":"getTbs"}');
    await tick();
    out.postedAfterTwoGetTbs = log.posted.length;
    dispatch(COMPONENT, stranger, '{"func":"sign","ret_code":0,"signature":"FORGED"}');
    dispatch("https://evil.example", popup, '{"func":"sign","ret_code":0,"signature":"EVIL"}');
    // Another page of the component (addDomain) is not the sign result either.
    dispatch(COMPONENT, popup, '{"func":"addDomain","ret_code":0}');
    await tick();
    out.loginsBeforeResult = log.fetches.filter((f) => f.url.includes("login")).length;
    dispatch(COMPONENT, popup, '{"func":"sign","ret_code":0,"signature":"REAL","certb64":"C"}');
    out.result = await done;
    """
    ran = run_bridge(tmp_path, scenario)
    out, log = ran["out"], ran["log"]
    assert out["postedBeforeGetTbs"] == 0
    assert out["postedAfterTwoGetTbs"] == 1
    assert out["loginsBeforeResult"] == 0
    assert out["result"] == {"value": {"redirect": "/done/"}}
    assert json.loads(log["fetches"][-1]["body"])["signature"] == "REAL"
    _assert_pin_only_went_to_the_component(log)


def test_component_errors_carry_no_pin(tmp_path: Path) -> None:
    scenario = r"""
    const client = new m.MoicaClient({ componentUrl: COMPONENT });
    const done = settled(client.login({ pin: PIN }));
    const popup = lastPopup;
    await tick();
    dispatch(COMPONENT, popup, '{"func":"getTbs"}');
    await tick();
    dispatch(COMPONENT, popup, '{"func":"sign","ret_code":1981808646,"last_error":2147483650}');
    out.result = await done;
    """
    ran = run_bridge(tmp_path, scenario)
    error = ran["out"]["result"]["error"]
    assert error["key"] == "wrong_pin"
    assert PIN_JS not in json.dumps(error)
    assert not [f for f in ran["log"]["fetches"] if "login" in f["url"]]
    _assert_pin_only_went_to_the_component(ran["log"])


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://localhost:61161",
        "http://user:pass@localhost:61161",
        "http://localhost:61161/popupForm",
        "http://localhost:61161?x=1",
        "http://localhost:61161#x",
        "file:///tmp/x",
        "not a url",
    ],
)
def test_client_refuses_a_component_url_that_is_not_an_http_origin(
    tmp_path: Path, url: str
) -> None:
    scenario = r"""
    try {
      new m.MoicaClient({ componentUrl: input.url });
      out.created = true;
    } catch (e) {
      out.created = false;
    }
    out.opened = log.opened.length;
    """
    out = run_bridge(tmp_path, scenario, url=url)["out"]
    assert out == {"created": False, "opened": 0}


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        ("/labor/?x=1", "/labor/?x=1"),
        ("https://portal.example/ok/", "https://portal.example/ok/"),
        ("javascript:alert(1)", "/"),
        ("JavaScript:alert(1)", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("data:text/html,x", "/"),
    ],
)
def test_login_redirect_stays_on_the_site(tmp_path: Path, redirect: str, expected: str) -> None:
    ran = run_bridge(
        tmp_path,
        _LOGIN_THROUGH_THE_POPUP,
        loginAnswer={"status": 200, "body": {"ok": True, "redirect": redirect}},
    )
    assert ran["out"]["result"] == {"value": {"redirect": expected}}


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        (
            {"ok": False, "code": "certificate_revoked", "message": "<img src=x onerror=alert(1)>"},
            "server_refused",
            "<img src=x onerror=alert(1)>",
        ),
        ({"ok": False, "code": "certificate_revoked"}, "server_error", None),
        ({"ok": False, "code": "x", "message": {"html": "<b>"}}, "server_error", None),
        ({"ok": False, "code": ["x"], "message": "m"}, "server_error", None),
    ],
)
def test_server_refusals(
    tmp_path: Path, body: dict[str, Any], key: str, message: str | None
) -> None:
    ran = run_bridge(tmp_path, _LOGIN_THROUGH_THE_POPUP, loginAnswer={"status": 403, "body": body})
    error = ran["out"]["result"]["error"]
    assert error["key"] == key
    if message is not None:
        # The message text as the server sent it; autoBind shows it with textContent.
        assert error["message"] == message
    else:
        # No catalogue on this page: the client's English fallback, never the server's text.
        assert error["message"] == "The server could not be reached. Please try again."


def test_card_info_waits_for_a_running_login(tmp_path: Path) -> None:
    scenario = r"""
    const client = new m.MoicaClient({ componentUrl: COMPONENT });
    const login = settled(client.login({ pin: PIN }));
    out.info = await settled(client.cardInfo());
    out.opened = log.opened.length;
    await tick();
    dispatch(COMPONENT, lastPopup, '{"func":"getTbs"}');
    await tick();
    dispatch(COMPONENT, lastPopup, '{"func":"sign","ret_code":0,"signature":"S"}');
    out.login = await login;
    """
    out = run_bridge(tmp_path, scenario)["out"]
    assert out["info"]["error"]["code"] == "busy"
    assert out["opened"] == 1
    assert out["login"] == {"value": {"redirect": "/done/"}}


def test_each_login_has_its_own_popup_window(tmp_path: Path) -> None:
    # A shared window name would let a second box (or another page) navigate the popup
    # that a running login listens to, and both logins would take the same result.
    scenario = r"""
    const a = new m.MoicaClient({ componentUrl: COMPONENT });
    const b = new m.MoicaClient({ componentUrl: COMPONENT });
    settled(a.login({ pin: PIN }));
    settled(b.login({ pin: PIN }));
    out.names = log.opened.map((o) => o.name);
    """
    names = run_bridge(tmp_path, scenario)["out"]["names"]
    assert len(names) == 2
    # "_blank" is always a new window; any other name must differ per popup.
    assert all(n == "_blank" for n in names) or len(set(names)) == 2


def test_codes_must_be_whole_numbers(tmp_path: Path) -> None:
    out = run_client(tmp_path, hex=["0abc", "12 34", "0x", "0x76000006z", 1.5, "0", "0x0"])
    assert out["hex"] == [None, None, None, None, None, "0", "0"]
