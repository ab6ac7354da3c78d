"""Typed settings (``moica_auth.conf``): defaults, overrides, derived values."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from moica_auth.conf import DEFAULT_RATE_LIMIT, app_settings
from moica_auth.exceptions import ConfigurationError
from moica_auth.revocation.settings import RevocationSettings
from moica_auth.services import get_services, load_certificate_setting

FIXED = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED


def test_defaults(settings):
    assert app_settings.ORIGIN is None
    assert app_settings.CHALLENGE_TTL == 120.0
    assert app_settings.REDIS_URL is None
    assert app_settings.MAX_BODY_BYTES == 64 * 1024
    assert frozenset({"2.16.886.101.0.3.3"}) == app_settings.POLICY_OIDS
    assert frozenset({"sha256", "sha384", "sha512"}) == app_settings.ALLOWED_HASHES
    assert app_settings.VERIFIERS == ("moica_auth.identity.verifiers.CertificateLast4Verifier",)
    assert RevocationSettings() == app_settings.REVOCATION
    assert app_settings.REVOCATION.order == ("ocsp", "crl")
    assert app_settings.REVOCATION.soft_fail is False
    assert app_settings.RATE_LIMIT.cert_failures == DEFAULT_RATE_LIMIT["cert_failures"] == 3
    assert app_settings.LOGIN_URL == "moica:login-page"
    assert app_settings.CLOCK is None
    settings.LOGIN_REDIRECT_URL = "/home/"
    assert app_settings.LOGIN_REDIRECT == "/home/"


def test_overrides_are_read_lazily(settings):
    settings.MOICA_AUTH_ORIGIN = "https://portal.example.gov.tw/"
    assert app_settings.ORIGIN == "https://portal.example.gov.tw"
    settings.MOICA_AUTH_RATE_LIMIT = {"ip_failures": 5}
    limits = app_settings.RATE_LIMIT
    assert limits.ip_failures == 5 and limits.cert_lock == 900
    settings.MOICA_AUTH_CLOCK = "tests.test_django_conf.fixed_clock"
    assert app_settings.now() == FIXED


@pytest.mark.parametrize("value", [None, "off", False])
def test_revocation_off(settings, value):
    settings.MOICA_AUTH_REVOCATION = value
    assert app_settings.REVOCATION is None


def test_revocation_options_merge_with_defaults(settings):
    settings.MOICA_AUTH_REVOCATION = {"order": ["crl"], "crl_grace": 3600}
    parsed = app_settings.REVOCATION
    assert parsed == RevocationSettings(order=("crl",), crl_grace=3600.0)
    assert parsed.timeout == 5.0 and parsed.login_fetch_deadline == 3.0


@pytest.mark.parametrize(
    ("value", "key", "check_id"),
    [
        ({"crl_grase": 60}, "crl_grase", "moica_auth.E009"),
        ({"grace_seconds": 60}, "grace_seconds", "moica_auth.E009"),
        ({"timeout": "5"}, "timeout", "moica_auth.E010"),
        ({"soft_fail": "no"}, "soft_fail", "moica_auth.E010"),
        ({"order": "crl"}, "order", "moica_auth.E010"),
        ({"login_fetch_deadline": 0}, "login_fetch_deadline", "moica_auth.E010"),
        ({"max_bytes": True}, "max_bytes", "moica_auth.E010"),
        (["crl"], "MOICA_AUTH_REVOCATION", "moica_auth.E009"),
    ],
)
@pytest.mark.django_db
def test_bad_revocation_settings_fail_the_system_check(settings, value, key, check_id):
    from django.core.checks import run_checks

    settings.MOICA_AUTH_REVOCATION = value
    with pytest.raises(ConfigurationError) as info:
        app_settings.REVOCATION  # noqa: B018
    assert info.value.data["key"] == key
    errors = [m for m in run_checks() if m.id.startswith("moica_auth.E0")]
    assert [m.id for m in errors if key in m.msg] == [check_id], errors


@pytest.mark.parametrize(
    "value", [{"order": ["crl", "ldap"]}, {"intermediates": "sometimes"}, {"leaf": "never"}]
)
@pytest.mark.django_db
def test_invalid_revocation_policy_fails_the_system_check(settings, value):
    from django.core.checks import run_checks

    settings.MOICA_AUTH_REVOCATION = value
    assert "moica_auth.E011" in {m.id for m in run_checks()}


def test_hash_key_is_derived_with_a_domain_separator(settings):
    settings.MOICA_AUTH_HASH_KEY = None
    derived = app_settings.HASH_KEY
    assert app_settings.HASH_KEY_IS_DERIVED and len(derived) == 32
    assert derived != settings.SECRET_KEY.encode()
    assert derived != hashlib.sha256(settings.SECRET_KEY.encode()).digest()
    assert derived != hmac.new(settings.SECRET_KEY.encode(), b"", hashlib.sha256).digest()
    settings.SECRET_KEY = "another-secret-key-for-the-test"
    assert derived != app_settings.HASH_KEY
    settings.MOICA_AUTH_HASH_KEY = "explicit-secret-0123456789abcdef"
    assert app_settings.HASH_KEY == b"explicit-secret-0123456789abcdef"
    assert not app_settings.HASH_KEY_IS_DERIVED


def test_missing_origin_is_a_configuration_error(settings):
    settings.MOICA_AUTH_ORIGIN = None
    with pytest.raises(ConfigurationError):
        get_services()


def test_certificate_setting_forms(tmp_path):
    with pytest.raises(ConfigurationError):
        load_certificate_setting([str(tmp_path / "absent.pem")])
    with pytest.raises(ConfigurationError):
        load_certificate_setting([42])  # type: ignore[list-item]
