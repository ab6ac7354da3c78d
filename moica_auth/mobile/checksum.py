"""The SP API checksums (``sp_checksum`` we send, ``idp_checksum`` MOI answers with).

MOI's rule (DOMAIN.md, 行動自然人憑證應用程式介面規格書 v2.9): a checksum is
``hex(IV) + hex(AES-256-GCM(key, IV, utf8(lower-hex SHA-256(payload))) + tag)`` with a
12-byte IV, the payload being a fixed concatenation of fields per interface (an absent
field counts as ``""``). Because AES-GCM is an AEAD (NIST SP 800-38D), a checksum that
decrypts under the shared key *and* yields the expected digest proves the answer came
from the key holder; the 16-byte tag is checked by :class:`AESGCM` itself.

MOI's samples use an all-zero IV. Under one GCM key a repeated IV leaks the
authentication subkey (SP 800-38D §8), so every ``sp_checksum`` here gets a fresh random
IV from :func:`os.urandom`, and an answer is checked with the IV it carries.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from moica_auth.mobile.errors import MobileChecksumInvalid

__all__ = [
    "IDP_FIELDS",
    "IV_BYTES",
    "SP_FIELDS",
    "make_checksum",
    "payload_of",
    "verify_checksum",
]

IV_BYTES = 12
_TAG_BYTES = 16
# hex(IV) + hex(ciphertext of 64 hex digits + tag)
_CHECKSUM_CHARS = 2 * (IV_BYTES + 64 + _TAG_BYTES)

#: Field order of each request's ``sp_checksum`` payload.
SP_FIELDS: dict[str, tuple[str, ...]] = {
    "ATH-01": (
        "transaction_id",
        "sp_service_id",
        "id_num",
        "op_code",
        "op_mode",
        "hint",
        "sign_data",
    ),
    "ATH-02": ("transaction_id", "sp_service_id", "sp_ticket_id"),
    "ATH-03": (
        "transaction_id",
        "sp_service_id",
        "id_num",
        "device_user_def_desc",
        "op_code",
        "hint",
        "sign_data",
    ),
    "ATH-04": ("transaction_id", "sp_service_id", "id_num", "op_code", "op_mode", "hint"),
    "LF-01": ("transaction_id", "sp_service_id", "id_num"),
    "WEB-01": ("transaction_id", "sp_service_id", "op_code", "hint", "sign_data"),
}

#: Field order of each answer's ``idp_checksum`` payload ("TICKET" for ATH-01/03/04).
IDP_FIELDS: dict[str, tuple[str, ...]] = {
    "TICKET": ("transaction_id", "error_code", "sp_ticket"),
    "ATH-02": ("transaction_id", "error_code", "hashed_id_num", "signed_response"),
    "LF-01": ("transaction_id", "error_code", "is_fido", "is_mcert_sign"),
    "WEB-01": ("transaction_id", "error_code", "id_num", "signed_response"),
}


def payload_of(fields: Sequence[str], values: Mapping[str, str | None]) -> str:
    """Concatenate ``values`` in the order ``fields``; an absent or ``None`` value is ``""``."""
    out = []
    for name in fields:
        value = values.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise TypeError(f"checksum field {name} must be a string")
        out.append(value)
    return "".join(out)


def _digest(payload: str) -> bytes:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest().encode("ascii")


def _aead(key: bytes) -> AESGCM:
    if not isinstance(key, bytes) or len(key) != 32:
        raise ValueError("the SP API key must be 32 bytes (AES-256)")
    return AESGCM(key)


def make_checksum(key: bytes, payload: str, *, iv: bytes | None = None) -> str:
    """The checksum of ``payload`` under ``key`` with a fresh random IV.

    ``iv`` exists for the virtual SP API's fault modes and for known-answer tests only;
    production callers never pass it.
    """
    nonce = os.urandom(IV_BYTES) if iv is None else iv
    if len(nonce) != IV_BYTES:
        raise ValueError("the checksum IV must be 12 bytes")
    sealed = _aead(key).encrypt(nonce, _digest(payload), None)
    return nonce.hex() + sealed.hex()


def verify_checksum(key: bytes, payload: str, checksum: object) -> None:
    """Raise :class:`MobileChecksumInvalid` unless ``checksum`` seals ``payload``.

    The IV is the checksum's first 12 bytes; the tag is verified by AES-GCM; the
    decrypted digest is compared with :func:`hmac.compare_digest`. Upper-case hex is
    accepted (it is the same bytes); anything else, any length but the exact one, a
    failed tag or another digest is refused.
    """
    if not isinstance(checksum, str) or not checksum:
        raise MobileChecksumInvalid("the answer carries no idp_checksum")
    if len(checksum) != _CHECKSUM_CHARS:
        raise MobileChecksumInvalid("idp_checksum has the wrong length")
    try:
        raw = binascii.unhexlify(checksum)
    except (binascii.Error, ValueError):
        raise MobileChecksumInvalid("idp_checksum is not hex") from None
    nonce, sealed = raw[:IV_BYTES], raw[IV_BYTES:]
    try:
        plain = _aead(key).decrypt(nonce, sealed, None)
    except InvalidTag:
        raise MobileChecksumInvalid("idp_checksum does not verify under the SP key") from None
    if not hmac.compare_digest(plain, _digest(payload)):
        raise MobileChecksumInvalid("idp_checksum seals another answer")
