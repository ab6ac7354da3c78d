"""Reading what arrives from the wire, shared by :mod:`moica_auth.certificate` and
:mod:`moica_auth.signature` (each with its own error class)."""

from __future__ import annotations

from moica_auth.exceptions import MoicaAuthError


def wire_bytes(data: object, *, what: str, error: type[MoicaAuthError]) -> bytes:
    """``data`` as ``bytes``: ASCII text is encoded, bytes-like input copied.

    Text that is not ASCII and any other type raise ``error`` (``what`` names the input in
    its detail: ``"<what> text is not ASCII"``, ``"unsupported <what> input type <type>"``).
    """
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError as exc:
            raise error(f"{what} text is not ASCII") from exc
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return bytes(data)
        except (ValueError, TypeError) as exc:
            # A released memoryview (ValueError), or a bytes subclass whose __bytes__ fails.
            raise error(f"unreadable {what} input") from exc
    raise error(f"unsupported {what} input type {type(data).__name__}")
