"""The HiPKI local component's error codes, with what a citizen should be told.

The component (跨平台網頁元件, ``http://localhost:61161``) reports failures in two fields of
its JSON answer: ``ret_code`` (what went wrong) and ``last_error`` (the card's PIN state).
Codes are from the component's public client code; see ``docs/protocol.md``.

The browser client shows these messages; the server renders them into the page in the
active language (:func:`client_messages`) so that the zh-Hant / English catalogue lives in
one place, Django's.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

__all__ = [
    "CLIENT_ERRORS",
    "LAST_ERRORS",
    "RET_CODES",
    "HipkiError",
    "client_messages",
    "describe",
]


@dataclass(frozen=True)
class HipkiError:
    """One failure the component or the browser bridge can report."""

    key: str  # stable name used by the browser client, e.g. "no_card"
    message: str | Promise
    tries_left: int | None = None


_SITE_NOT_TRUSTED = HipkiError(
    "site_not_trusted",
    _("The card reader component does not yet trust this site. Allow this site, then try again."),
)

# ret_code values (unsigned 32-bit, as the component sends them).
RET_CODES: dict[int, HipkiError] = {
    0x76000006: HipkiError(
        "no_card", _("No card was found. Insert your citizen certificate card.")
    ),
    0x76000998: HipkiError("no_pin", _("Enter the card's PIN.")),
    0x76000999: HipkiError("cancelled", _("You cancelled the operation.")),
    # Both codes mean the user has not yet allowed this site (addDomain).
    0x7600000F: _SITE_NOT_TRUSTED,
    0x76000031: _SITE_NOT_TRUSTED,
    0x76100003: HipkiError(
        "no_reader", _("No card reader was found. Connect the reader and try again.")
    ),
    0x76100006: HipkiError("card_login_failed", _("Logging in to the card failed. Check the PIN.")),
    0x76500001: HipkiError(
        "certificate_not_yet_valid", _("The card's certificate is not yet valid.")
    ),
    0x76500002: HipkiError("certificate_expired", _("The card's certificate has expired.")),
    0x76210001: HipkiError("id_mismatch", _("The ID number does not match the card.")),
}

# last_error values: the card's PIN state after a failed login to the card.
LAST_ERRORS: dict[int, HipkiError] = {
    0xA0: HipkiError("wrong_pin", _("Wrong PIN.")),
    0xA2: HipkiError("pin_length", _("The PIN must be 6 to 8 digits.")),
    0xA4: HipkiError(
        "card_locked",
        _(
            "The card is locked after too many wrong PINs. Unlock it online with your user "
            "code (用戶代碼)."
        ),
    ),
    0x80000002: HipkiError("wrong_pin", _("Wrong PIN. 2 tries left."), tries_left=2),
    0x80000001: HipkiError(
        "wrong_pin", _("Wrong PIN. 1 try left before the card locks."), tries_left=1
    ),
}

# Failures the browser bridge detects itself, before or without a component answer.
CLIENT_ERRORS: dict[str, HipkiError] = {
    "component_missing": HipkiError(
        "component_missing",
        _("The card reader component (HiPKI) is not running. Install or start it, then try again."),
    ),
    "popup_blocked": HipkiError(
        "popup_blocked",
        _("The browser blocked the card reader window. Allow pop-ups for this site."),
    ),
    "timeout": HipkiError("timeout", _("The card reader component did not answer in time.")),
    "unknown": HipkiError("unknown", _("The card reader component reported an error.")),
    "server_error": HipkiError(
        "server_error", _("The server could not be reached. Please try again.")
    ),
}


def describe(ret_code: int | str | None, last_error: int | str | None = None) -> HipkiError:
    """The failure a component answer reports; ``last_error`` wins when it is known.

    Both fields may arrive as numbers or as decimal/hex strings.
    """
    last = _as_int(last_error)
    if last and last in LAST_ERRORS:
        return LAST_ERRORS[last]
    ret = _as_int(ret_code)
    if ret is not None and ret in RET_CODES:
        return RET_CODES[ret]
    return CLIENT_ERRORS["unknown"]


def client_messages() -> dict[str, object]:
    """Every message in the active language, keyed as the browser client looks them up.

    ``ret_code`` and ``last_error`` keys are upper-case hex without ``0x``.
    """
    return {
        "ret_code": {
            f"{code:X}": {"key": e.key, "message": str(e.message)} for code, e in RET_CODES.items()
        },
        "last_error": {
            f"{code:X}": {"key": e.key, "message": str(e.message), "tries_left": e.tries_left}
            for code, e in LAST_ERRORS.items()
        },
        "client": {key: str(e.message) for key, e in CLIENT_ERRORS.items()},
    }


def _as_int(value: int | str | None) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value & 0xFFFFFFFF
    text = value.strip().lower()
    try:
        return int(text, 16) if text.startswith("0x") else int(text)
    except ValueError:
        return None
