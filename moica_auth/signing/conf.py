"""``MOICA_AUTH_SIGNING``: the signing settings, parsed once into one typed object.

::

    MOICA_AUTH_SIGNING = {
        "LIFETIME": 300,                 # seconds a signature request stays valid (10-3600)
        "MAX_TEXT_BYTES": 16384,         # bound of the text to sign (256-65536)
        "SIGNATURE_TYPES": ["PKCS7", "RAW"],
        "TSA_URL": "https://tsa.example/",   # RFC 3161 over HTTP; None: no time-stamp
        "TSA_ANCHORS": ["-----BEGIN CERTIFICATE-----…"],  # PEM text or file paths
        "TSA_INTERMEDIATES": [],         # TSA CA certificates tokens do not carry
        "TSA_TIMEOUT": 5.0,              # seconds, connect and read each
        "REQUIRE_TIMESTAMP": True,       # refuse a signature when the TSA gives no token
    }

Every key is optional. Errors raise :class:`~moica_auth.exceptions.ConfigurationError`,
which the system checks E101-E109 report at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from django.conf import settings

from moica_auth.exceptions import ConfigurationError
from moica_auth.signing.request import DEFAULT_MAX_TEXT_BYTES, SIGNATURE_TYPES
from moica_auth.signing.timestamp import TsaClient

__all__ = ["KNOWN_KEYS", "SigningSettings", "signing_settings", "tsa_client"]

KNOWN_KEYS: Final = frozenset(
    {
        "LIFETIME",
        "MAX_TEXT_BYTES",
        "SIGNATURE_TYPES",
        "TSA_URL",
        "TSA_ANCHORS",
        "TSA_INTERMEDIATES",
        "TSA_TIMEOUT",
        "REQUIRE_TIMESTAMP",
    }
)


@dataclass(frozen=True)
class SigningSettings:
    lifetime: timedelta
    max_text_bytes: int
    signature_types: frozenset[str]
    tsa_url: str | None
    tsa_anchors: tuple[x509.Certificate, ...]
    tsa_timeout: float
    require_timestamp: bool
    tsa_intermediates: tuple[x509.Certificate, ...] = ()


def _anchors(value: object, key: str = "TSA_ANCHORS") -> tuple[x509.Certificate, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ConfigurationError(f"{key} must be a list of PEM texts or file paths", check="E105")
    out: list[x509.Certificate] = []
    for item in value:
        if isinstance(item, x509.Certificate):
            out.append(item)
            continue
        if not isinstance(item, str | bytes):
            raise ConfigurationError(
                f"{key} holds something that is not a certificate", check="E105"
            )
        raw = item.encode() if isinstance(item, str) else item
        if b"-----BEGIN" not in raw:
            try:
                raw = Path(raw.decode()).read_bytes()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"a {key} file cannot be read", check="E105") from exc
        try:
            out.extend(x509.load_pem_x509_certificates(raw))
        except ValueError as exc:
            raise ConfigurationError(
                f"a {key} entry is not a PEM certificate", check="E105"
            ) from exc
    return tuple(out)


def signing_settings() -> SigningSettings:
    """Parse ``MOICA_AUTH_SIGNING``; raises :class:`ConfigurationError` (``data["check"]``
    is the system-check id that reports it)."""
    raw: Any = getattr(settings, "MOICA_AUTH_SIGNING", None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("MOICA_AUTH_SIGNING must be a dict", check="E101")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(f"MOICA_AUTH_SIGNING has unknown keys {unknown}", check="E101")
    lifetime = raw.get("LIFETIME", 300)
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not 10 <= lifetime <= 3600
    ):
        raise ConfigurationError("LIFETIME must be 10 to 3600 seconds", check="E102")
    max_bytes = raw.get("MAX_TEXT_BYTES", DEFAULT_MAX_TEXT_BYTES)
    if (
        isinstance(max_bytes, bool)
        or not isinstance(max_bytes, int)
        or not 256 <= max_bytes <= 65536
    ):
        raise ConfigurationError("MAX_TEXT_BYTES must be 256 to 65536", check="E103")
    types = raw.get("SIGNATURE_TYPES", sorted(SIGNATURE_TYPES))
    if isinstance(types, str) or not types or not set(types) <= SIGNATURE_TYPES:
        raise ConfigurationError(
            f"SIGNATURE_TYPES must be a non-empty subset of {sorted(SIGNATURE_TYPES)}", check="E104"
        )
    url = raw.get("TSA_URL")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError("TSA_URL must be an http(s) URL", check="E106")
    anchors = _anchors(raw.get("TSA_ANCHORS"))
    intermediates = _anchors(raw.get("TSA_INTERMEDIATES"), "TSA_INTERMEDIATES")
    if url and not anchors:
        raise ConfigurationError("TSA_URL is set but TSA_ANCHORS is empty", check="E107")
    timeout = raw.get("TSA_TIMEOUT", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ConfigurationError(
            "TSA_TIMEOUT must be more than 0 and at most 60 seconds", check="E108"
        )
    require = raw.get("REQUIRE_TIMESTAMP", bool(url))
    if not isinstance(require, bool):
        raise ConfigurationError("REQUIRE_TIMESTAMP must be True or False", check="E109")
    if require and not url:
        raise ConfigurationError("REQUIRE_TIMESTAMP is on but TSA_URL is not set", check="E109")
    return SigningSettings(
        lifetime=timedelta(seconds=float(lifetime)),
        max_text_bytes=max_bytes,
        signature_types=frozenset(types),
        tsa_url=url,
        tsa_anchors=anchors,
        tsa_timeout=float(timeout),
        require_timestamp=require,
        tsa_intermediates=intermediates,
    )


def tsa_client(config: SigningSettings) -> TsaClient | None:
    if not config.tsa_url:
        return None
    return TsaClient(
        url=config.tsa_url,
        anchors=config.tsa_anchors,
        timeout=config.tsa_timeout,
        intermediates=config.tsa_intermediates,
    )
