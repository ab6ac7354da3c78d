"""Typed, lazily read settings of the Django app, all prefixed ``MOICA_AUTH_``.

Each setting is one property of :class:`AppSettings`; the property reads
``django.conf.settings`` every time it is accessed, so ``override_settings`` in tests
and settings changed at start-up are always seen. The defaults live here and only here;
``docs/integration.md`` documents them in a table.

Turning a safety check off (revocation, ``soft_fail``) is explicit and flagged by a
system check (see :mod:`moica_auth.checks`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, cast

from cryptography import x509
from django.conf import settings
from django.utils.module_loading import import_string

from moica_auth.exceptions import ConfigurationError
from moica_auth.revocation.settings import RevocationSettings, parse_revocation_settings

__all__ = [
    "CONFIRMATION_KEYS",
    "CONFIRMATION_REQUIRED_KEYS",
    "PREFIX",
    "AppSettings",
    "ConfirmationSettings",
    "RateLimits",
    "app_settings",
]

PREFIX = "MOICA_AUTH_"

#: The MOICA certificate policy (內政部憑證管理中心 citizen certificates, CP §1.2).
DEFAULT_POLICY_OIDS: tuple[str, ...] = ("2.16.886.101.0.3.3",)
DEFAULT_ALLOWED_HASHES: tuple[str, ...] = ("sha256", "sha384", "sha512")
DEFAULT_VERIFIERS: tuple[str, ...] = ("moica_auth.identity.verifiers.CertificateLast4Verifier",)

# Domain separator so the derived key is never equal to anything else Django derives
# from SECRET_KEY (django.core.signing uses its own salts).
_HASH_KEY_SALT = b"moica_auth.conf.HASH_KEY.v1"


def _names(value: Any) -> list[str]:
    """A setting that lists names; a bare string is one name, not its characters."""
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


#: Defaults of ``MOICA_AUTH_REVOCATION``: revocation is ON and fails closed. Every key
#: and its default: :class:`moica_auth.revocation.settings.RevocationSettings`.
DEFAULT_REVOCATION: dict[str, Any] = {}

#: Defaults of ``MOICA_AUTH_RATE_LIMIT``: like the card itself (3 wrong PINs lock it),
#: 3 failed logins with one certificate lock that certificate for 15 minutes, and one
#: client address may fail 20 times per 15 minutes and ask for 300 challenges per 5
#: minutes (each challenge is a record in the shared store until it expires).
DEFAULT_RATE_LIMIT: dict[str, int] = {
    "cert_failures": 3,
    "cert_window": 900,
    "cert_lock": 900,
    "ip_failures": 20,
    "ip_window": 900,
    "ip_lock": 900,
    "ip_challenges": 300,
    "ip_challenge_window": 300,
}


@dataclass(frozen=True)
class RateLimits:
    """The abuse limits: counts, windows and lock times in seconds."""

    cert_failures: int
    cert_window: int
    cert_lock: int
    ip_failures: int
    ip_window: int
    ip_lock: int
    ip_challenges: int = 300
    ip_challenge_window: int = 300


class ConfirmationSettings(TypedDict, total=False):
    """``MOICA_AUTH_CONFIRMATION``: the MOICA ID confirmation service (身分確認服務).

    Read by :func:`moica_auth.identity.confirmation.client_from_config`; ``url``,
    ``client_cert``, ``client_key`` and ``service_cert`` are required.
    """

    url: str  # https:// (plain http only to loopback: the test server)
    client_cert: str | bytes | Path | x509.Certificate  # path, PEM/DER bytes, PEM text
    client_key: str | bytes | Path | Any  # path, PEM/DER bytes, PEM text or a key object
    client_key_password: str | bytes | None
    service_cert: str | bytes | Path | x509.Certificate  # the service's signer, pinned
    timeout: float  # seconds, default 10
    client_id: str  # default: SHA-1 thumbprint of client_cert


#: Keys of ``MOICA_AUTH_CONFIRMATION`` (those ``client_from_config`` accepts).
CONFIRMATION_KEYS: frozenset[str] = frozenset(ConfirmationSettings.__annotations__)
CONFIRMATION_REQUIRED_KEYS: frozenset[str] = frozenset(
    {"url", "client_cert", "client_key", "service_cert"}
)


def _get(name: str, default: Any) -> Any:
    return getattr(settings, PREFIX + name, default)


class AppSettings:
    """One property per ``MOICA_AUTH_*`` setting, read lazily."""

    @property
    def ORIGIN(self) -> str | None:
        """``scheme://host[:port]`` of the portal, required. Challenges are bound to it."""
        value = _get("ORIGIN", None)
        return str(value).rstrip("/") if value else None

    @property
    def TRUST_ANCHORS(self) -> tuple[str | bytes | x509.Certificate, ...]:
        """Root certificates: PEM/DER file paths, PEM text, or certificate objects.

        Enabled :class:`moica_auth.models.TrustAnchor` rows are added to these.
        """
        return tuple(_get("TRUST_ANCHORS", ()))

    @property
    def INTERMEDIATES(self) -> tuple[str | bytes | x509.Certificate, ...]:
        """Intermediate CA certificates (MOICA G2/G3), same forms as ``TRUST_ANCHORS``."""
        return tuple(_get("INTERMEDIATES", ()))

    @property
    def POLICY_OIDS(self) -> frozenset[str]:
        """Accepted certificate policies (RFC 5280 §4.2.1.4); default the MOICA CP."""
        return frozenset(_names(_get("POLICY_OIDS", DEFAULT_POLICY_OIDS)))

    @property
    def VALIDATION_PROFILE(self) -> str:
        """``"moica"`` (the citizen certificate profile) or ``"generic"``."""
        return str(_get("VALIDATION_PROFILE", "moica"))

    @property
    def MIN_RSA_BITS(self) -> int:
        return int(_get("MIN_RSA_BITS", 2048))

    @property
    def MAX_CARRIED_CERTIFICATES(self) -> int:
        """Most certificates a login token may carry (default 8); more are refused with
        ``chain_too_complex`` before any path building."""
        return int(_get("MAX_CARRIED_CERTIFICATES", 8))

    @property
    def ALLOWED_HASHES(self) -> frozenset[str]:
        """Hash algorithms accepted in signatures; SHA-1 is never accepted by default."""
        return frozenset(h.lower() for h in _names(_get("ALLOWED_HASHES", DEFAULT_ALLOWED_HASHES)))

    @property
    def CHALLENGE_TTL(self) -> float:
        """Seconds a challenge may be used after it is issued (default 120)."""
        return float(_get("CHALLENGE_TTL", 120.0))

    @property
    def REDIS_URL(self) -> str | None:
        """Redis for challenges, rate limits and revocation caches; ``None`` = in-process.

        A URL (``redis://``, ``redis+sentinel://``, ``redis+cluster://`` …) or a dict, see
        :func:`moica_auth.stores.redis_url_from_mapping`.

        In-process stores only work with a single server process.
        """
        value = _get("REDIS_URL", None)
        if isinstance(value, Mapping):  # Sentinel or Cluster as a dict (see stores.py)
            from moica_auth.stores import redis_url_from_mapping

            return redis_url_from_mapping(value)
        return str(value) if value else None

    @property
    def STORE_PREFIX(self) -> str:
        return str(_get("STORE_PREFIX", "moica:"))

    @property
    def HASH_KEY_IS_DERIVED(self) -> bool:
        return not _get("HASH_KEY", None)

    @property
    def HASH_KEY(self) -> bytes:
        """Secret for the ID-number HMAC and the session binding of challenges.

        Default: derived from ``SECRET_KEY`` with a domain separator (a system check
        warns: rotating ``SECRET_KEY`` would then orphan every identity binding).
        """
        value = _get("HASH_KEY", None)
        if value:
            return value if isinstance(value, bytes) else str(value).encode()
        secret = str(settings.SECRET_KEY).encode()
        return hmac.new(_HASH_KEY_SALT, secret, hashlib.sha256).digest()

    @property
    def REVOCATION(self) -> RevocationSettings | None:
        """The parsed :class:`~moica_auth.revocation.settings.RevocationSettings`, or
        ``None`` when turned off (``None``/``"off"``/``False``).

        The only place ``MOICA_AUTH_REVOCATION`` is read. An unknown key, a wrong type or
        an out-of-range value raises ``ConfigurationError`` naming the key (system checks
        ``moica_auth.E009``–``E012``).
        """
        value = _get("REVOCATION", DEFAULT_REVOCATION)
        if value is None or value is False or value == "off":
            return None
        return parse_revocation_settings(value)

    @property
    def VERIFIERS(self) -> tuple[str, ...]:
        """Dotted paths of personal-data verifiers (ID number, birth date)."""
        return tuple(_get("VERIFIERS", DEFAULT_VERIFIERS))

    @property
    def CONFIRMATION(self) -> ConfirmationSettings | None:
        """The MOICA ID confirmation service: ``url``, ``client_cert``, ``client_key``,
        ``client_key_password``, ``service_cert``, ``timeout``, ``client_id``.

        Given to :class:`~moica_auth.identity.verifiers.MoicaConfirmationVerifier` when it
        is listed in ``VERIFIERS``; ``None`` (default) when not configured. Anything but
        a mapping raises :class:`ConfigurationError` (system check ``moica_auth.E008``).
        The keys and values are checked when the client is built.
        """
        value = _get("CONFIRMATION", None)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ConfigurationError("MOICA_AUTH_CONFIRMATION must be a dict")
        return cast(ConfirmationSettings, {str(k): v for k, v in value.items()})

    @property
    def REQUIRED_FIELDS(self) -> frozenset[str]:
        """Personal fields every login must verify (default none: the card alone)."""
        return frozenset(_get("REQUIRED_FIELDS", ()))

    @property
    def RATE_LIMIT(self) -> RateLimits:
        merged = dict(DEFAULT_RATE_LIMIT)
        try:
            merged.update(dict(_get("RATE_LIMIT", {})))
            return RateLimits(**{k: int(v) for k, v in merged.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"MOICA_AUTH_RATE_LIMIT takes integer values for {sorted(DEFAULT_RATE_LIMIT)}"
            ) from exc

    @property
    def CLIENT_IP_HEADER(self) -> str | None:
        """META key holding the client address set by a trusted proxy, e.g.
        ``"HTTP_X_REAL_IP"`` (for ``HTTP_X_FORWARDED_FOR`` the right-most entry is used);
        ``None`` (default) or an absent header: ``REMOTE_ADDR``."""
        value = _get("CLIENT_IP_HEADER", None)
        return str(value) if value else None

    @property
    def RECHECK_INTERVAL(self) -> float:
        """Seconds between revocation re-checks of a logged-in session (0 = never)."""
        return float(_get("RECHECK_INTERVAL", 3600.0))

    @property
    def AUDIT_RETENTION_DAYS(self) -> int:
        return int(_get("AUDIT_RETENTION_DAYS", 365))

    @property
    def MAX_BODY_BYTES(self) -> int:
        """Largest login request body accepted (default 64 KiB); larger is a 413."""
        return int(_get("MAX_BODY_BYTES", 64 * 1024))

    @property
    def LOGIN_REDIRECT(self) -> str:
        """Where a successful login goes without a safe ``next``."""
        return str(_get("LOGIN_REDIRECT", settings.LOGIN_REDIRECT_URL))

    @property
    def LOGIN_URL(self) -> str:
        """URL (or URL name) of the page that collects a card login / step-up."""
        return str(_get("LOGIN_URL", "moica:login-page"))

    @property
    def CREATE_USERS(self) -> bool:
        """Create a Django user for a citizen seen for the first time (default True)."""
        return bool(_get("CREATE_USERS", True))

    @property
    def CLOCK(self) -> Callable[[], datetime] | None:
        """Dotted path (or callable) returning an aware UTC ``datetime``; tests and demo."""
        value = _get("CLOCK", None)
        if value is None:
            return None
        if isinstance(value, str):
            value = import_string(value)
        return value  # type: ignore[no-any-return]

    def now(self) -> datetime:
        clock = self.CLOCK
        return clock() if clock is not None else datetime.now(UTC)

    def setting_names(self) -> Sequence[str]:
        return [name for name in dir(type(self)) if name.isupper()]


app_settings = AppSettings()
