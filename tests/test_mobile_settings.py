"""``MOICA_AUTH_MOBILE``: parsing, the key's forms, and the system checks E020–E022/W020."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from moica_auth.exceptions import ConfigurationError
from moica_auth.mobile.checks import check_mobile, check_mobile_deploy
from moica_auth.mobile.settings import mobile_settings, parse_mobile_settings

#: This module doubles as a URLconf without moica_auth.urls (the E024 test).
urlpatterns: list[object] = []

KEY = bytes(range(32))
B64 = base64.b64encode(KEY).decode()
GOOD = {"api_url": "https://fidoapi.moi.gov.tw", "service_id": "SVC-1", "aes_key": B64}


def test_defaults() -> None:
    s = parse_mobile_settings(GOOD)
    assert s.endpoint("getSpTicket") == "https://fidoapi.moi.gov.tw/moise/sp/getSpTicket"
    assert s.aes_key == KEY and s.time_limit == 120 and s.poll_interval >= 4
    assert s.modes == ("push", "qr") and s.sign_type == "PKCS#1"
    assert s.web_url == "https://fido.moi.gov.tw" and not s.is_test_api


def test_test_host_gets_the_test_web_url() -> None:
    s = parse_mobile_settings({**GOOD, "api_url": "https://fidoapi-test.moi.gov.tw/"})
    assert s.web_url == "https://fido-test.moi.gov.tw" and s.is_test_api
    assert s.api_url == "https://fidoapi-test.moi.gov.tw"


@pytest.mark.parametrize("form", [KEY, B64, {"env": "MOBILE_KEY_T"}, "env:MOBILE_KEY_T"])
def test_key_forms(form: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILE_KEY_T", B64)
    assert parse_mobile_settings({**GOOD, "aes_key": form}).aes_key == KEY


def test_key_never_in_repr() -> None:
    s = parse_mobile_settings(GOOD)
    assert B64 not in repr(s) and repr(KEY) not in repr(s)


@pytest.mark.parametrize(
    "change",
    [
        {"aes_key": base64.b64encode(bytes(16)).decode()},
        {"aes_key": "not base64!"},
        {"aes_key": "env:MOBILE_KEY_UNSET_X"},
        {"aes_key": 42},
        {"api_url": "ftp://x"},
        {"api_url": ""},
        {"service_id": ""},
        {"modes": ["ath"]},
        {"modes": []},
        {"time_limit": 29},
        {"time_limit": 601},
        {"poll_interval": 1},
        {"sign_type": "RAW"},
        {"retries": 9},
        {"unknown": 1},
        {"push_limits": {"per_id": 0}},
        {"push_limits": {"bogus": 1}},
    ],
)
def test_rejects_bad_settings(change: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_mobile_settings({**GOOD, **change})
    assert B64 not in str(info.value)


def test_absent_setting_means_off() -> None:
    assert mobile_settings() is None
    assert check_mobile() == []


def _ids(raw: object) -> list[str]:
    with override_settings(MOICA_AUTH_MOBILE=raw):
        return [m.id or "" for m in check_mobile()]


def test_check_valid_setting_is_quiet() -> None:
    assert _ids(GOOD) == []


@pytest.mark.parametrize(
    "key", [None, base64.b64encode(bytes(16)).decode(), "env:MOBILE_KEY_UNSET_Y"]
)
def test_check_e021_missing_or_short_key(key: object) -> None:
    raw = dict(GOOD)
    if key is None:
        del raw["aes_key"]
    else:
        raw["aes_key"] = key
    assert _ids(raw) == ["moica_auth.E021"]


def test_check_e022_production_url_without_tls() -> None:
    assert _ids({**GOOD, "api_url": "http://fidoapi.moi.gov.tw"}) == ["moica_auth.E022"]
    assert _ids({**GOOD, "api_url": "http://127.0.0.1:8790"}) == []


def test_check_e020_other_mistakes() -> None:
    assert _ids({**GOOD, "modes": ["ath"]}) == ["moica_auth.E020"]
    assert _ids("not a dict") == ["moica_auth.E020"]


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("https://fidoapi-test.moi.gov.tw", True),
        ("http://127.0.0.1:8790", True),
        ("https://fidoapi.moi.gov.tw", False),
    ],
)
def test_deploy_check_w020_test_url(url: str, warned: bool) -> None:
    with override_settings(MOICA_AUTH_MOBILE={**GOOD, "api_url": url}):
        ids = [m.id for m in check_mobile_deploy()]
    assert ids == (["moica_auth.W020"] if warned else [])


@pytest.mark.django_db
def test_app_checks_include_the_mobile_checks() -> None:
    from moica_auth.checks import check_settings

    with override_settings(MOICA_AUTH_MOBILE={**GOOD, "aes_key": "c2hvcnQ="}):
        ids = [m.id for m in check_settings()]
    assert "moica_auth.E021" in ids


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8766", True),
        ("http://[::1]:8766", True),
        ("https://fidoapi.moi.gov.tw", False),
        ("https://fidoapi-test.moi.gov.tw", False),
    ],
)
def test_polling_below_4s_only_against_a_loopback_api(url: str, allowed: bool) -> None:
    """The virtual SP API of tests and the demo may be polled fast; MOI never."""
    with override_settings(MOICA_AUTH_MOBILE={**GOOD, "api_url": url, "poll_interval": 0.5}):
        if allowed:
            parsed = mobile_settings()
            assert parsed is not None and parsed.poll_interval == 0.5
            assert not [m for m in check_mobile() if m.id == "moica_auth.E020"]
        else:
            with pytest.raises(ConfigurationError):
                mobile_settings()
            assert [m.id for m in check_mobile()] == ["moica_auth.E020"]


# --- WEB-01 redirect mode: E023, E024, W021 ---------------------------------------------

WEB = {**GOOD, "modes": ["push", "web"]}


def test_web_mode_is_a_valid_mode_and_quiet_by_default() -> None:
    assert parse_mobile_settings(WEB).modes == ("push", "web")
    with override_settings(ROOT_URLCONF="tests.django_urls"):
        assert _ids(WEB) == []


def test_check_e023_web_mode_with_strict_session_cookies() -> None:
    with override_settings(SESSION_COOKIE_SAMESITE="Strict", ROOT_URLCONF="tests.django_urls"):
        assert _ids(WEB) == ["moica_auth.E023"]
        assert _ids(GOOD) == []  # only WEB-01 needs the cookie after a cross-site POST


def test_check_e024_web_mode_without_the_callback_route() -> None:
    # A project that forgot moica_auth.urls.
    with override_settings(ROOT_URLCONF="tests.test_mobile_settings"):
        assert _ids(WEB) == ["moica_auth.E024"]
        assert _ids(GOOD) == []


@pytest.mark.parametrize(
    ("origin", "warned"), [("http://portal.example.gov.tw", True), ("https://portal.gov.tw", False)]
)
def test_deploy_check_w021_web_mode_without_https_origin(origin: str, warned: bool) -> None:
    with override_settings(MOICA_AUTH_MOBILE=WEB, MOICA_AUTH_ORIGIN=origin):
        ids = [m.id for m in check_mobile_deploy()]
    assert ids == (["moica_auth.W021"] if warned else [])
    with override_settings(MOICA_AUTH_MOBILE=GOOD, MOICA_AUTH_ORIGIN=origin):
        assert [m.id for m in check_mobile_deploy()] == []
