"""What each signing channel signs, so that an offline verifier can recompute it.

The card (HiPKI) signs the request text itself (``PKCS7``) or its DigestInfo (``RAW``),
and the evidence record's ``signature`` verifies over ``signed_bytes`` directly. The
mobile citizen certificate signs MOI's ``sign_data``, which holds at most
:data:`MOBILE_SIGN_DATA_MAX` (1024) *characters*:

* a request text of at most 1024 characters is ``sign_data`` as it is (``tbs: "text"``):
  the phone signs exactly ``signed_bytes`` (its UTF-8 encoding);
* a longer text is replaced by its digest line (``tbs: "sha256"``)::

      moica-auth-sign-sha256/1 <64 lowercase hex of SHA-256(signed_bytes)>

  (ASCII, no line break, 89 characters), and the phone signs that line's bytes. The page
  still shows the whole text; the digest line binds it as firmly as the text would,
  and an auditor recomputes the line from ``signed_bytes`` with any SHA-256 tool.

The record names the channel in its ``channel`` field (covered by its digest and so by the
time-stamp): ``{"name": "mobile-sp-api", "tbs": "text"|"sha256", "sign_type":
"PKCS#1"|"PKCS#7", "form": "mobile"}``. A record without ``channel`` is a card signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DIGEST_LINE_PREFIX",
    "MOBILE_CHANNEL",
    "MOBILE_SIGN_DATA_MAX",
    "SigningChannel",
    "digest_line",
    "mobile_channel",
]

MOBILE_CHANNEL: Final = "mobile-sp-api"
MOBILE_SIGN_DATA_MAX: Final = 1024
DIGEST_LINE_PREFIX: Final = "moica-auth-sign-sha256/1 "
_TBS: Final = frozenset({"text", "sha256"})
#: MOI's sign_type → the evidence record's signature_type.
_SIGNATURE_TYPES: Final = {"PKCS#1": "PKCS1", "PKCS#7": "PKCS7"}


def digest_line(signed_bytes: bytes) -> str:
    """``moica-auth-sign-sha256/1 <hex>``: what the phone signs for a long text."""
    return DIGEST_LINE_PREFIX + hashlib.sha256(signed_bytes).hexdigest()


@dataclass(frozen=True)
class SigningChannel:
    """A non-card signing channel: what it signs (``tbs``), how (``sign_type``) and the
    certificate form it requires (``form``)."""

    name: str
    tbs: str
    sign_type: str
    form: str

    def __post_init__(self) -> None:
        if self.name != MOBILE_CHANNEL:
            raise ValueError("unknown signing channel")
        if self.tbs not in _TBS:
            raise ValueError("tbs must be 'text' or 'sha256'")
        if self.sign_type not in _SIGNATURE_TYPES:
            raise ValueError("sign_type must be PKCS#1 or PKCS#7")
        if self.form != "mobile":
            raise ValueError("the mobile channel requires form 'mobile'")

    @property
    def signature_type(self) -> str:
        """The evidence record's ``signature_type`` (``PKCS1`` or ``PKCS7``)."""
        return _SIGNATURE_TYPES[self.sign_type]

    def sign_data(self, signed_bytes: bytes) -> str:
        """MOI's ``sign_data`` for a request whose text is ``signed_bytes``."""
        if self.tbs == "sha256":
            return digest_line(signed_bytes)
        return signed_bytes.decode("utf-8")

    def content(self, signed_bytes: bytes) -> bytes:
        """The bytes the phone's signature is over (``sign_data`` as UTF-8)."""
        return self.sign_data(signed_bytes).encode("utf-8")

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "tbs": self.tbs, "sign_type": self.sign_type, "form": self.form}

    @classmethod
    def from_json(cls, value: object) -> SigningChannel:
        """Parse a record's ``channel``; raises ``ValueError`` for anything else."""
        if not isinstance(value, Mapping) or set(value) != {"name", "tbs", "sign_type", "form"}:
            raise ValueError("channel must have exactly name, tbs, sign_type and form")
        fields: Mapping[str, Any] = value
        if not all(isinstance(v, str) for v in fields.values()):
            raise ValueError("channel fields must be text")
        return cls(
            name=fields["name"],
            tbs=fields["tbs"],
            sign_type=fields["sign_type"],
            form=fields["form"],
        )


def mobile_channel(text: str, *, sign_type: str = "PKCS#1") -> SigningChannel:
    """The mobile channel for a request text: ``tbs`` "text" when it fits MOI's
    ``sign_data`` (≤ 1024 characters), "sha256" otherwise."""
    tbs = "text" if len(text) <= MOBILE_SIGN_DATA_MAX else "sha256"
    return SigningChannel(name=MOBILE_CHANNEL, tbs=tbs, sign_type=sign_type, form="mobile")
