"""``MOICA_AUTH_REVOCATION``, parsed once into a typed, validated :class:`RevocationSettings`.

The dict in Django settings is read in one place (``moica_auth.conf.app_settings``);
everything else — the policy, the OCSP and CRL sources, the CRL refresher, the
``moica_revocation`` command — is built from this object by :mod:`moica_auth.services`.
An unknown key or a value of the wrong type raises :class:`ConfigurationError` whose
``data["key"]`` names the key; the Django system checks report it (``moica_auth.E009`` …
``E012``), so a misspelled key fails ``manage.py check`` instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Final

from cryptography import x509

from moica_auth.exceptions import ConfigurationError

__all__ = ["DEFAULT_LOGIN_FETCH_DEADLINE", "RevocationSettings", "parse_revocation_settings"]

DEFAULT_LOGIN_FETCH_DEADLINE: Final = 3.0

CertificateSetting = str | bytes | x509.Certificate


@dataclass(frozen=True)
class RevocationSettings:
    """Every ``MOICA_AUTH_REVOCATION`` key, with its default (docs/revocation.md)."""

    # The policy (moica_auth.revocation.policy.RevocationPolicy).
    order: tuple[str, ...] = ("ocsp", "crl")
    soft_fail: bool = False
    leaf: str = "required"
    intermediates: str = "if_available"
    #: OCSP request timeout in seconds.
    timeout: float = 5.0
    #: Seconds past nextUpdate a CRL may still be used (RFC 5280 §5.1.2.5).
    crl_grace: float = 0.0
    #: Dotted path to, or a callable ``(store=, trust=, settings=)`` returning, a checker.
    checker: str | Callable[..., Any] | None = None
    # OCSP (RFC 6960).
    ocsp_url: str | None = None
    ocsp_urls: Mapping[str, str] = field(default_factory=dict)
    ocsp_nonce_optout: tuple[str, ...] = ()
    # The CRL index and its refresher.
    crl_urls: tuple[str, ...] = ()
    crl_urls_from_issuers: bool = True
    #: CA certificates whose CRLs are accepted; ``None``: the trust store's.
    issuer_certificates: tuple[CertificateSetting, ...] | None = None
    #: Separate CRL signers trusted by configuration (RFC 5280 §6.3.3 (f)).
    crl_signer_certificates: tuple[CertificateSetting, ...] = ()
    #: ``None``: ``MOICA_AUTH_REDIS_URL`` (or a process-local index when unset).
    redis_url: str | None = None
    redis_prefix: str = "moica:crl"
    fetch_on_miss: bool = False
    #: One bounded download on the login path, fleet-wide (seconds).
    login_fetch_deadline: float = DEFAULT_LOGIN_FETCH_DEADLINE
    background_refresh_seconds: float = 0.0
    # The background refresher's and the command's downloads.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    total_timeout: float = 120.0
    max_bytes: int = 64 * 1024 * 1024
    refresh_margin_seconds: float = 7200.0
    max_age_seconds: float = 21600.0
    min_interval_seconds: float = 900.0
    retry_interval_seconds: float = 30.0
    lock_ttl_seconds: float = 300.0
    skew_seconds: float = 300.0

    @property
    def crl_grace_delta(self) -> timedelta:
        return timedelta(seconds=self.crl_grace)


_BOOLS: Final = frozenset({"soft_fail", "crl_urls_from_issuers", "fetch_on_miss"})
_POSITIVE: Final = frozenset(
    {
        "timeout",
        "login_fetch_deadline",
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "refresh_margin_seconds",
        "max_age_seconds",
        "min_interval_seconds",
        "retry_interval_seconds",
        "lock_ttl_seconds",
    }
)
_NON_NEGATIVE: Final = frozenset({"crl_grace", "background_refresh_seconds", "skew_seconds"})
_STRING_LISTS: Final = frozenset({"order", "crl_urls", "ocsp_nonce_optout"})
_OPTIONAL_STRINGS: Final = frozenset({"ocsp_url", "redis_url"})
_CERTIFICATE_LISTS: Final = frozenset({"issuer_certificates", "crl_signer_certificates"})
KNOWN_KEYS: Final = frozenset(f.name for f in fields(RevocationSettings))


def _fail(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"MOICA_AUTH_REVOCATION[{key!r}] {message}", key=key)


def _number(key: str, value: object) -> float:
    # bool is an int: True must not pass for 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, f"must be a number, not {type(value).__name__}")
    return float(value)


def _strings(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
        raise _fail(key, "must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise _fail(key, "must be a list of strings")
    return items


def _value(key: str, value: object) -> object:
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise _fail(key, f"must be True or False, not {type(value).__name__}")
        return value
    if key in _POSITIVE:
        number = _number(key, value)
        if not number > 0:
            raise _fail(key, "must be a positive number")
        return number
    if key in _NON_NEGATIVE:
        number = _number(key, value)
        if number < 0:
            raise _fail(key, "must not be negative")
        return number
    if key == "max_bytes":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _fail(key, "must be a positive integer (bytes)")
        return value
    if key in _STRING_LISTS:
        return _strings(key, value)
    if key in _OPTIONAL_STRINGS:
        if value is not None and not isinstance(value, str):
            raise _fail(key, f"must be a string or None, not {type(value).__name__}")
        return value or None
    if key in ("leaf", "intermediates", "redis_prefix"):
        if not isinstance(value, str):
            raise _fail(key, f"must be a string, not {type(value).__name__}")
        return value
    if key == "ocsp_urls":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise _fail(key, "must be a dict of URL → URL strings")
        return dict(value)
    if key in _CERTIFICATE_LISTS:
        if value is None and key == "issuer_certificates":
            return None
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise _fail(key, "must be a list of file paths, PEM strings, bytes or certificates")
        items = tuple(value)
        if not all(isinstance(i, str | bytes | x509.Certificate) for i in items):
            raise _fail(key, "must be a list of file paths, PEM strings, bytes or certificates")
        return items
    if key == "checker":
        if value is not None and not (isinstance(value, str) or callable(value)):
            raise _fail(key, "must be a dotted path or a callable")
        return value
    raise _fail(key, "is not a known key")  # pragma: no cover - KNOWN_KEYS guards


def parse_revocation_settings(raw: Mapping[str, Any]) -> RevocationSettings:
    """Validate ``raw`` (the ``MOICA_AUTH_REVOCATION`` dict) key by key.

    Raises :class:`ConfigurationError` with ``data["key"]`` for the first unknown key,
    wrong type or out-of-range value. ``grace_seconds`` (an older name of ``crl_grace``)
    is refused with a hint rather than silently read under two names.
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            "MOICA_AUTH_REVOCATION must be a dict (or None / 'off')", key="MOICA_AUTH_REVOCATION"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in KNOWN_KEYS:
            hint = " (use 'crl_grace')" if key == "grace_seconds" else ""
            raise ConfigurationError(
                f"MOICA_AUTH_REVOCATION has an unknown key {key!r}{hint}", key=str(key)
            )
        values[key] = _value(key, value)
    return RevocationSettings(**values)
