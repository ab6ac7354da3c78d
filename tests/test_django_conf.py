"""Typed settings (``moica_auth.conf``): defaults, overrides, derived values."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from moica_auth.conf import DEFAULT_RATE_LIMIT, app_settings
from moica_auth.exceptions import ConfigurationError
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
    assert app_settings.REVOCATION == {"order": ["ocsp", "crl"], "soft_fail": False, "timeout": 5.0}
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
    assert app_settings.REVOCATION == {
        "order": ["crl"],
        "soft_fail": False,
        "timeout": 5.0,
        "crl_grace": 3600,
    }


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
