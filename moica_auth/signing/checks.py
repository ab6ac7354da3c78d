"""System checks E101-E109 for ``MOICA_AUTH_SIGNING`` (see :mod:`moica_auth.signing.conf`).

* E101 not a dict, or unknown keys; E102 LIFETIME; E103 MAX_TEXT_BYTES;
  E104 SIGNATURE_TYPES; E105 TSA_ANCHORS or TSA_INTERMEDIATES unreadable; E106 TSA_URL not http(s);
  E107 TSA_URL without TSA_ANCHORS; E108 TSA_TIMEOUT; E109 REQUIRE_TIMESTAMP without TSA_URL
  (or not a bool).
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from moica_auth.exceptions import ConfigurationError

__all__ = ["check_signing_settings"]

_HINT = "See docs/signing.md, section Settings."


@register(Tags.security, deploy=False)
def check_signing_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from moica_auth.signing.conf import signing_settings

    try:
        signing_settings()
    except ConfigurationError as exc:
        check = str(exc.data.get("check") or "E101")
        return [Error(f"MOICA_AUTH_SIGNING: {exc.detail}.", hint=_HINT, id=f"moica_auth.{check}")]
    return []
