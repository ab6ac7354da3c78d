"""Signature requests: the exact bytes a citizen is asked to sign (what you see is what you sign).

A request renders an application form as one canonical UTF-8 text::

    moica-auth-sign/1
    portal: https://portal.example
    service: 土地登記線上聲明
    application: A-2026-0001
    signer: 王*明 key=3f2a…(32 hex)
    nonce: 2G2sQ…(base64url)
    time: 2026-12-05T21:00:00Z
    expires: 2026-12-05T21:05:00Z
    --
    <label>: <value>
    …

The header names the portal, service and application, the signer the portal expects (a
masked name and a keyed hash of the login certificate, never an ID number), and a fresh
nonce and time, so a signature cannot be moved to another application, portal or citizen.
Labels and values are NFC-normalised; a value's line breaks are written as ``\\n`` (and
``\\`` as ``\\\\``) so one field can never pose as another line. Control characters and
Unicode bidirectional overrides are refused: they would let the page show text other than
the bytes signed. The whole text is bounded (:data:`DEFAULT_MAX_TEXT_BYTES`).

A document is signed through the same text: its SHA-256 is a field (``document-sha256``),
and the card signs the text in HiPKI ``RAW`` mode over a DER DigestInfo of SHA-256(text)
(RFC 8017 §9.2), so the document itself never travels to the card.

The signature types a request can ask for:

* ``PKCS7``: HiPKI signs the text as an attached CMS SignedData (RFC 5652);
* ``RAW``: HiPKI signs the DigestInfo; the result is a PKCS#1 v1.5 signature over the text
  with SHA-256, verified exactly as HiPKI ``PKCS1``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from asn1crypto import algos, core

from moica_auth.exceptions import SigningRequestInvalid

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_MAX_TEXT_BYTES",
    "SIGNATURE_TYPES",
    "TEXT_FORMAT",
    "SignatureRequest",
    "build_request",
    "digest_info",
    "mask_name",
    "parse_header",
    "signer_key",
]

TEXT_FORMAT: Final = "moica-auth-sign/1"
SIGNATURE_TYPES: Final = frozenset({"PKCS7", "RAW"})
DEFAULT_MAX_TEXT_BYTES: Final = 16 * 1024
DEFAULT_LIFETIME: Final = timedelta(minutes=5)
MAX_FIELDS: Final = 200
MAX_LABEL_CHARS: Final = 200
_NONCE_BYTES: Final = 24
_SIGNER_KEY_CONTEXT: Final = b"moica_auth.signing.signer.v1\x00"

# Unicode bidi embedding/override/isolate controls and the implicit marks: they reorder
# what the page shows without changing the bytes (CVE-2021-42574 "Trojan Source").
_BIDI: Final = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_HEADER_ORDER: Final = ("portal", "service", "application", "signer", "nonce", "time", "expires")
_HEADER_LINE: Final = re.compile(r"^([a-z]+): (.*)$")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(text: object, what: str, *, max_chars: int | None = None) -> str:
    if not isinstance(text, str):
        raise SigningRequestInvalid(f"{what} must be text")
    value = unicodedata.normalize("NFC", text)
    for char in value:
        if char in _BIDI:
            raise SigningRequestInvalid(f"{what} contains a bidirectional control character")
        if char not in "\n" and unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn"):
            raise SigningRequestInvalid(f"{what} contains a control or unassigned character")
    if max_chars is not None and len(value) > max_chars:
        raise SigningRequestInvalid(f"{what} is longer than {max_chars} characters")
    return value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _one_line(value: object, what: str) -> str:
    cleaned = _clean(value, what, max_chars=MAX_LABEL_CHARS)
    if "\n" in cleaned or not cleaned.strip():
        raise SigningRequestInvalid(f"{what} must be one non-empty line")
    return cleaned


def mask_name(name: str) -> str:
    """``王小明`` → ``王*明``; ``王明`` → ``王*``: enough for the citizen to recognise."""
    name = name.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def signer_key(hash_key: bytes, certificate_fingerprint: str) -> str:
    """The keyed hash (HMAC-SHA256, 128 bits shown) naming the expected signing certificate.

    Keyed so that the text does not let a reader look the certificate up; the
    certificate itself (which is public) travels in the evidence record.
    """
    if not hash_key:
        raise SigningRequestInvalid("a hash key is required to name the signer")
    fingerprint = certificate_fingerprint.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise SigningRequestInvalid("the signer fingerprint must be 64 hex characters")
    mac = hmac.new(hash_key, _SIGNER_KEY_CONTEXT + bytes.fromhex(fingerprint), hashlib.sha256)
    return mac.hexdigest()[:32]


def digest_info(text: bytes) -> bytes:
    """DER DigestInfo(SHA-256, SHA-256(text)) (RFC 8017 §9.2 step 2): HiPKI ``RAW`` tbs."""
    der: bytes = algos.DigestInfo(
        {
            # parameters NULL, as RFC 8017 §9.2 note 1 spells it: a card pads these bytes
            # as given, and verifiers compare the whole encoding.
            "digest_algorithm": algos.DigestAlgorithm(
                {"algorithm": "sha256", "parameters": core.Null()}
            ),
            "digest": hashlib.sha256(text).digest(),
        }
    ).dump()
    return der


@dataclass(frozen=True)
class SignatureRequest:
    """One request to sign; ``text`` is exactly what the page shows and the card signs."""

    text: str
    signature_type: str
    portal: str
    service: str
    application_id: str
    signer: str
    nonce: str
    created_at: datetime
    expires_at: datetime

    @property
    def signed_bytes(self) -> bytes:
        return self.text.encode("utf-8")

    def hipki_request(self) -> dict[str, Any]:
        """The HiPKI ``MakeSignature`` fields (without ``pin``) for this request."""
        if self.signature_type == "RAW":
            return {
                "func": "MakeSignature",
                "signatureType": "RAW",
                "tbs": base64.b64encode(digest_info(self.signed_bytes)).decode("ascii"),
                "tbsEncoding": "base64",
                "hashAlgorithm": "SHA256",
                "withCardSN": "true",
                "nonce": "",
            }
        return {
            "func": "MakeSignature",
            "signatureType": "PKCS7",
            "tbs": self.text,
            "tbsEncoding": "NONE",
            "hashAlgorithm": "SHA256",
            "withCardSN": "true",
            "nonce": "",
        }

    def is_expired(self, at: datetime) -> bool:
        return at >= self.expires_at


def build_request(
    *,
    portal: str,
    service: str,
    application_id: str,
    fields: Sequence[tuple[str, str]],
    signer_name: str,
    signer_key: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_LIFETIME,
    signature_type: str = "PKCS7",
    document_sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    nonce: str | None = None,
) -> SignatureRequest:
    """Render a form (``fields``: (label, value) pairs, in the order shown) as a request.

    Raises :class:`SigningRequestInvalid` for anything that would make the text ambiguous
    or too large; never truncates.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if signature_type not in SIGNATURE_TYPES:
        raise SigningRequestInvalid(f"signature type must be one of {sorted(SIGNATURE_TYPES)}")
    if not timedelta(seconds=10) <= lifetime <= timedelta(hours=1):
        raise SigningRequestInvalid("lifetime must be between 10 seconds and 1 hour")
    if not re.fullmatch(r"[0-9a-f]{32}", signer_key):
        raise SigningRequestInvalid("signer key must be 32 lowercase hex characters")
    if isinstance(fields, str | bytes) or len(fields) > MAX_FIELDS:
        raise SigningRequestInvalid(f"fields must be at most {MAX_FIELDS} (label, value) pairs")
    created = now.astimezone(UTC).replace(microsecond=0)
    header = {
        "portal": _one_line(portal, "portal"),
        "service": _one_line(service, "service"),
        "application": _one_line(application_id, "application id"),
        "signer": f"{mask_name(_one_line(signer_name, 'signer name'))} key={signer_key}",
        "nonce": nonce
        or base64.urlsafe_b64encode(secrets.token_bytes(_NONCE_BYTES)).decode().rstrip("="),
        "time": _iso(created),
        "expires": _iso(created + lifetime),
    }
    lines = [TEXT_FORMAT, *(f"{name}: {header[name]}" for name in _HEADER_ORDER), "--"]
    body: list[tuple[str, str]] = []
    for pair in fields:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise SigningRequestInvalid("each field must be a (label, value) pair")
        label = _one_line(pair[0], "a field label")
        if ":" in label:
            raise SigningRequestInvalid("a field label must not contain ':'")
        body.append((label, _escape(_clean(pair[1], f"the value of {label!r}"))))
    if document_sha256 is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", document_sha256):
            raise SigningRequestInvalid("document_sha256 must be 64 lowercase hex characters")
        body.append(("document-sha256", document_sha256))
    if not body:
        raise SigningRequestInvalid("a signature request needs at least one field")
    lines.extend(f"{label}: {value}" for label, value in body)
    text = "\n".join(lines) + "\n"
    if len(text.encode("utf-8")) > max_bytes:
        raise SigningRequestInvalid(f"the text to sign is larger than {max_bytes} bytes")
    return SignatureRequest(
        text=text,
        signature_type=signature_type,
        portal=header["portal"],
        service=header["service"],
        application_id=header["application"],
        signer=header["signer"],
        nonce=header["nonce"],
        created_at=created,
        expires_at=created + lifetime,
    )


def parse_header(text: str) -> dict[str, str]:
    """Read the header of a request text back (for the offline evidence verifier).

    Raises :class:`SigningRequestInvalid` when the text is not a ``moica-auth-sign/1``
    rendering with every header line in order.
    """
    lines = text.split("\n")
    if not lines or lines[0] != TEXT_FORMAT:
        raise SigningRequestInvalid(f"the signed text does not start with {TEXT_FORMAT}")
    out: dict[str, str] = {}
    for name, line in zip(_HEADER_ORDER, lines[1 : 1 + len(_HEADER_ORDER)], strict=False):
        match = _HEADER_LINE.match(line)
        if match is None or match.group(1) != name:
            raise SigningRequestInvalid(f"the signed text lacks its {name!r} line")
        out[name] = match.group(2)
    if len(lines) < 2 + len(_HEADER_ORDER) or lines[1 + len(_HEADER_ORDER)] != "--":
        raise SigningRequestInvalid("the signed text lacks its header separator")
    key = re.fullmatch(r".* key=([0-9a-f]{32})", out["signer"])
    if key is None:
        raise SigningRequestInvalid("the signed text's signer line has no key")
    out["signer_key"] = key.group(1)
    return out
