"""Wire decoding of a HiPKI ``signature`` field: base64 text or raw DER, size-bounded."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from moica_auth._wire import wire_bytes
from moica_auth.exceptions import MalformedSignature

__all__ = ["MAX_SIGNATURE_BYTES", "decode_signature"]

# A HiPKI SignedData with the signer certificate is ~2-3 kB; 64 KiB leaves room for a few
# intermediates while refusing to feed megabytes of attacker-chosen input to the parser.
MAX_SIGNATURE_BYTES: Final = 64 * 1024

_BASE64_TEXT_RE: Final = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")
_STANDARD_B64_RE: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def decode_signature(data: bytes | str) -> bytes:
    """Decode a signature from the wire: base64 text or raw DER/binary bytes.

    Accepts standard or URL-safe base64 (RFC 4648 §4, §5), with or without whitespace and
    padding, as ``str`` or ``bytes``; ``bytes`` that are not base64 text are taken as raw
    binary (a DER SignedData always contains non-ASCII length octets). Empty input, text
    that is not base64, and anything larger than :data:`MAX_SIGNATURE_BYTES` raise
    :class:`MalformedSignature`.
    """
    raw = wire_bytes(data, what="signature", error=MalformedSignature)
    # Text is always base64; bytes are base64 text only if they look like it.
    text = isinstance(data, str) or _BASE64_TEXT_RE.fullmatch(raw) is not None
    # Base64 inflates by 4/3 (plus whitespace), so the wire limit is a little higher than
    # the decoded one; both bound the work done on attacker-chosen input.
    if len(raw) > MAX_SIGNATURE_BYTES * 2:
        raise MalformedSignature(f"signature input larger than {MAX_SIGNATURE_BYTES * 2} bytes")
    decoded = _decode_base64(raw) if text else raw
    if not decoded:
        raise MalformedSignature("empty signature")
    if len(decoded) > MAX_SIGNATURE_BYTES:
        raise MalformedSignature(f"signature larger than {MAX_SIGNATURE_BYTES} bytes")
    return decoded


def _decode_base64(raw: bytes) -> bytes:
    compact = b"".join(raw.split())
    if b"-" in compact or b"_" in compact:
        if b"+" in compact or b"/" in compact:
            raise MalformedSignature("signature mixes standard and URL-safe base64")
        compact = compact.translate(bytes.maketrans(b"-_", b"+/"))
    # URL-safe producers often drop the padding; restore it rather than refuse.
    if b"=" not in compact:
        compact += b"=" * (-len(compact) % 4)
    if len(compact) % 4 or not _STANDARD_B64_RE.fullmatch(compact):
        raise MalformedSignature("signature is not valid base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignature("signature is not valid base64") from exc
