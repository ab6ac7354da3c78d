"""The HiPKI local component's error codes, with what a citizen should be told.

The component (跨平台網頁元件, ``http://localhost:61161``) reports failures in two fields of
its JSON answer: ``ret_code`` (what went wrong) and ``last_error`` (the card's PIN state).
This module is the one owner of their names: the ``RET_*``/``LAST_*`` constants below are
what the virtual card (:mod:`moica_auth.testing.virtual_card`) answers with, and the
browser client's built-in table is generated from :data:`RET_CODES`, :data:`LAST_ERRORS`
and :data:`CLIENT_ERRORS`::

    python -m moica_auth.hipki --write-js   # rewrite the table in moica-auth.js
    python -m moica_auth.hipki --check      # exit 1 if the committed table is stale

Codes are unsigned 32-bit; some component builds send them as negative ints
(−2147483646 is 0x80000002), which :func:`normalise_code` folds back. A code this module
does not know is reported as ``unknown`` *with its hex value*, never as success.

The server renders the messages into the page in the active language
(:func:`client_messages`) so that the zh-Hant / English catalogue lives in one place,
Django's; the generated table is the English fallback for pages that pass none.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

__all__ = [
    "CLIENT_ERRORS",
    "LAST_ERRORS",
    "RET_CODES",
    "HipkiError",
    "client_messages",
    "describe",
    "hex_code",
    "normalise_code",
]


@dataclass(frozen=True)
class HipkiError:
    """One failure the component or the browser bridge can report."""

    key: str  # stable name used by the browser client, e.g. "no_card"
    message: str | Promise
    tries_left: int | None = None


# --------------------------------------------------------------------------- ret_code
# The major code (DOMAIN.md "HiPKI local component"). Grouped by the component's ranges.
RET_OK = 0
# 0x760000xx: the request and the component itself
RET_NO_KEY = 0x76000001
RET_NO_CERTIFICATE = 0x76000002
RET_NO_DATA = 0x76000003
RET_NO_CIPHER = 0x76000004
RET_NO_LIBRARY_PATH = 0x76000005
RET_NO_CARD = 0x76000006
RET_NOT_LOGGED_IN = 0x76000007
RET_WRONG_TYPE = 0x76000008
RET_FILE_ERROR = 0x76000009
RET_FILE_TOO_LARGE = 0x7600000A
RET_JSON_ERROR = 0x7600000B
RET_PARAMETER_ERROR = 0x7600000C
#: The component's signer crashed or timed out; the browser client also reports its own
#: timeout with this code.
RET_SIGNER_TIMEOUT = 0x7600000D
RET_METHOD_NOT_SUPPORTED = 0x7600000E
RET_SITE_NOT_TRUSTED = 0x7600000F  # answered to a sign request from an untrusted site
RET_SITE_NOT_TRUSTED_INFO = 0x76000031  # answered to pkcs11info from an untrusted site
RET_NO_PIN = 0x76000998
RET_CANCELLED = 0x76000999
# 0x761000xx: the card library (PKCS#11), the reader and the card
RET_LIBRARY_LOAD_FAILED = 0x76100001
RET_LIBRARY_RELEASE_FAILED = 0x76100002
RET_NO_READER = 0x76100003
RET_READER_INFO_FAILED = 0x76100004
RET_SESSION_FAILED = 0x76100005
RET_CARD_LOGIN_FAILED = 0x76100006
RET_CARD_LOGOUT_FAILED = 0x76100007
RET_CARD_KEY_FAILED = 0x76100008
RET_CARD_CERTIFICATE_FAILED = 0x76100009
RET_LIBRARY_INFO_FAILED = 0x7610000A
RET_CARD_INFO_FAILED = 0x7610000B
RET_CERTIFICATE_NOT_ON_CARD = 0x7610000C
RET_KEY_NOT_ON_CARD = 0x7610000D
# 0x762xxxxx: soft (PFX) certificates, CA and certificate type
RET_PFX_FAILED_FIRST = 0x76200001
RET_PFX_FAILED_LAST = 0x76200007
RET_CA_NOT_SUPPORTED = 0x76200008
RET_ID_MISMATCH = 0x76210001
RET_CERTIFICATE_TYPE_NOT_SUPPORTED = 0x76210002
# 0x763000xx signing (init, type, content, run, certificate, DER, final, verify, BIO)
RET_SIGN_FAILED_FIRST = 0x76300001
RET_SIGN_FAILED_LAST = 0x76300009
# 0x764000xx decryption
RET_DECRYPT_FAILED_FIRST = 0x76400001
RET_DECRYPT_FAILED_LAST = 0x76400003
# 0x765000xx certificate validity
RET_CERT_NOT_YET_VALID = 0x76500001
RET_CERT_EXPIRED = 0x76500002
# 0x766000xx base64
RET_BASE64_ENCODE = 0x76600001
RET_BASE64_DECODE = 0x76600002
# 0x830001xx: the card does not belong to the service
RET_NOT_GPKI_CARD = 0x83000100
RET_WRONG_SERVICE_MOICA = 0x83000101
RET_WRONG_SERVICE_MOEACA = 0x83000102
RET_WRONG_SERVICE_GCA = 0x83000103
RET_WRONG_SERVICE_XCA = 0x83000104
RET_PIN_FORMAT = 0x83000105
RET_USER_CODE_FORMAT = 0x83000106

# --------------------------------------------------------------------------- last_error
# The card's minor code: its PIN state after a failed login to the card.
LAST_FUNCTION_FAILED = 0x06
LAST_WRONG_PIN = 0xA0
LAST_PIN_LENGTH = 0xA2
LAST_CARD_LOCKED = 0xA4
LAST_TRIES_LEFT_2 = 0x80000002
LAST_TRIES_LEFT_1 = 0x80000001

# Shared entries: several codes ask the citizen to do the same thing.
_PAGE_ERROR = HipkiError(
    "page_error",
    _(
        "This page sent the card reader component a request it could not use (error "
        "%(code)s). Reload the page and try again; if it happens again, tell the site's "
        "help desk this code."
    ),
)
_SITE_NOT_TRUSTED = HipkiError(
    "site_not_trusted",
    _("The card reader component does not yet trust this site. Allow this site, then try again."),
)
_DRIVER_PROBLEM = HipkiError(
    "driver_problem",
    _(
        "The card reader's driver could not be loaded. Reinstall the card reader driver and "
        "the HiPKI component, restart the computer, then try again."
    ),
)
_CARD_READ_FAILED = HipkiError(
    "card_read_failed",
    _(
        "The card could not be read. Take the card out, insert it again with the chip "
        "facing up, then try again."
    ),
)
_NOT_ON_CARD = HipkiError(
    "certificate_not_on_card",
    _(
        "The certificate this site needs is not on the card in the reader. Insert your "
        "citizen digital certificate (自然人憑證) card."
    ),
)
_SOFT_CERTIFICATE = HipkiError(
    "soft_certificate_failed",
    _(
        "The certificate file (PFX) could not be used. Log in with your citizen digital "
        "certificate (自然人憑證) card instead."
    ),
)
_SIGNING_FAILED = HipkiError(
    "signing_failed",
    _(
        "The card could not sign. Take the card out, insert it again, then try again; if it "
        "happens again, restart the HiPKI component."
    ),
)
_DECRYPTION_FAILED = HipkiError(
    "decryption_failed",
    _("The card could not decrypt the data. Take the card out, insert it again, then try again."),
)

#: ret_code values (unsigned 32-bit) → what the citizen is told.
RET_CODES: dict[int, HipkiError] = {
    **dict.fromkeys(
        (
            RET_NO_KEY,
            RET_NO_CERTIFICATE,
            RET_NO_DATA,
            RET_NO_CIPHER,
            RET_WRONG_TYPE,
            RET_FILE_ERROR,
            RET_FILE_TOO_LARGE,
            RET_JSON_ERROR,
            RET_PARAMETER_ERROR,
            RET_BASE64_ENCODE,
            RET_BASE64_DECODE,
        ),
        _PAGE_ERROR,
    ),
    RET_NO_LIBRARY_PATH: _DRIVER_PROBLEM,
    RET_NO_CARD: HipkiError(
        "no_card", _("No card was found. Insert your citizen certificate card.")
    ),
    RET_NOT_LOGGED_IN: HipkiError(
        "not_logged_in", _("The card was not opened with its PIN. Enter the PIN and try again.")
    ),
    RET_SIGNER_TIMEOUT: HipkiError(
        "component_timeout",
        _(
            "The card reader component stopped or did not answer in time. Close other "
            "programs that use the card, restart the HiPKI component, then try again."
        ),
    ),
    RET_METHOD_NOT_SUPPORTED: HipkiError(
        "component_outdated",
        _(
            "Your card reader component (HiPKI) is too old for this site. Install the latest "
            "version from the MOICA site (moica.nat.gov.tw), then try again."
        ),
    ),
    # Both codes mean the user has not yet allowed this site (addDomain).
    RET_SITE_NOT_TRUSTED: _SITE_NOT_TRUSTED,
    RET_SITE_NOT_TRUSTED_INFO: _SITE_NOT_TRUSTED,
    RET_NO_PIN: HipkiError("no_pin", _("Enter the card's PIN.")),
    RET_CANCELLED: HipkiError("cancelled", _("You cancelled the operation.")),
    RET_LIBRARY_LOAD_FAILED: _DRIVER_PROBLEM,
    RET_LIBRARY_RELEASE_FAILED: _DRIVER_PROBLEM,
    RET_LIBRARY_INFO_FAILED: _DRIVER_PROBLEM,
    RET_NO_READER: HipkiError(
        "no_reader", _("No card reader was found. Connect the reader and try again.")
    ),
    RET_READER_INFO_FAILED: HipkiError(
        "reader_failed",
        _("The card reader did not answer. Unplug the reader, plug it in again, then try again."),
    ),
    RET_SESSION_FAILED: _CARD_READ_FAILED,
    RET_CARD_LOGIN_FAILED: HipkiError(
        "card_login_failed", _("Logging in to the card failed. Check the PIN.")
    ),
    RET_CARD_LOGOUT_FAILED: _CARD_READ_FAILED,
    RET_CARD_KEY_FAILED: _CARD_READ_FAILED,
    RET_CARD_CERTIFICATE_FAILED: _CARD_READ_FAILED,
    RET_CARD_INFO_FAILED: _CARD_READ_FAILED,
    RET_CERTIFICATE_NOT_ON_CARD: _NOT_ON_CARD,
    RET_KEY_NOT_ON_CARD: _NOT_ON_CARD,
    **dict.fromkeys(range(RET_PFX_FAILED_FIRST, RET_PFX_FAILED_LAST + 1), _SOFT_CERTIFICATE),
    RET_CA_NOT_SUPPORTED: HipkiError(
        "ca_not_supported",
        _(
            "The certificate on this card is from an authority this service does not accept. "
            "Insert your citizen digital certificate (自然人憑證) card."
        ),
    ),
    RET_ID_MISMATCH: HipkiError("id_mismatch", _("The ID number does not match the card.")),
    RET_CERTIFICATE_TYPE_NOT_SUPPORTED: HipkiError(
        "certificate_type_not_supported",
        _(
            "This type of certificate cannot be used here. Insert your citizen digital "
            "certificate (自然人憑證) card."
        ),
    ),
    **dict.fromkeys(range(RET_SIGN_FAILED_FIRST, RET_SIGN_FAILED_LAST + 1), _SIGNING_FAILED),
    **dict.fromkeys(
        range(RET_DECRYPT_FAILED_FIRST, RET_DECRYPT_FAILED_LAST + 1), _DECRYPTION_FAILED
    ),
    RET_CERT_NOT_YET_VALID: HipkiError(
        "certificate_not_yet_valid", _("The card's certificate is not yet valid.")
    ),
    RET_CERT_EXPIRED: HipkiError(
        "certificate_expired",
        _(
            "The card's certificate has expired. Renew it at a household registration "
            "office (戶政事務所)."
        ),
    ),
    RET_NOT_GPKI_CARD: HipkiError(
        "not_gpki_card",
        _(
            "The card in the reader is not a government certificate card. Insert your citizen "
            "digital certificate (自然人憑證) card."
        ),
    ),
    RET_WRONG_SERVICE_MOICA: HipkiError(
        "wrong_card_moica",
        _(
            "Wrong service for this card: you inserted a citizen digital certificate "
            "(自然人憑證) card, which this service does not accept."
        ),
    ),
    RET_WRONG_SERVICE_MOEACA: HipkiError(
        "wrong_card_moeaca",
        _(
            "Wrong service for this card: you inserted a company certificate (工商憑證) card. "
            "Insert your citizen digital certificate (自然人憑證) card."
        ),
    ),
    RET_WRONG_SERVICE_GCA: HipkiError(
        "wrong_card_gca",
        _(
            "Wrong service for this card: you inserted a government agency certificate "
            "(政府憑證) card. Insert your citizen digital certificate (自然人憑證) card."
        ),
    ),
    RET_WRONG_SERVICE_XCA: HipkiError(
        "wrong_card_xca",
        _(
            "Wrong service for this card: you inserted an organisation certificate "
            "(組織及團體憑證) card. Insert your citizen digital certificate (自然人憑證) card."
        ),
    ),
    RET_PIN_FORMAT: HipkiError("pin_format", _("The PIN must be 6 to 8 digits.")),
    RET_USER_CODE_FORMAT: HipkiError(
        "user_code_format", _("The user code (用戶代碼) is not in the right format.")
    ),
}

#: last_error values: the card's PIN state after a failed login to the card. A known one
#: wins over the ret_code (it says more: how many tries are left).
LAST_ERRORS: dict[int, HipkiError] = {
    LAST_WRONG_PIN: HipkiError("wrong_pin", _("Wrong PIN.")),
    LAST_PIN_LENGTH: HipkiError("pin_length", _("The PIN must be 6 to 8 digits.")),
    LAST_CARD_LOCKED: HipkiError(
        "card_locked",
        _(
            "The card is locked after too many wrong PINs. Unlock it online with your user "
            "code (用戶代碼)."
        ),
    ),
    LAST_TRIES_LEFT_2: HipkiError("wrong_pin", _("Wrong PIN. 2 tries left."), tries_left=2),
    LAST_TRIES_LEFT_1: HipkiError(
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
    # A code not in RET_CODES: %(code)s is its hex value, e.g. 0x76990001.
    "unknown_code": HipkiError(
        "unknown",
        _(
            "The card reader component reported error %(code)s. Restart the HiPKI component "
            "and try again; if it happens again, tell the site's help desk this code."
        ),
    ),
    "server_error": HipkiError(
        "server_error", _("The server could not be reached. Please try again.")
    ),
}

_MIN_CODE = -(1 << 31)
# The forms the browser client accepts too (moica-auth.js hexCode): bounded length.
_HEX_RE = re.compile(r"0x[0-9a-f]{1,8}")
_DECIMAL_RE = re.compile(r"-?[0-9]{1,10}")
_MAX_CODE = (1 << 32) - 1


def normalise_code(value: object) -> int | None:
    """A ``ret_code``/``last_error`` as an unsigned 32-bit int, or ``None`` if unreadable.

    Accepts an int or a decimal / ``0x`` hex string. Negative values (a signed 32-bit
    build of the component) are folded to unsigned: −2147483646 → 0x80000002. Anything
    outside the 32-bit range, booleans and other types are ``None``.
    """
    if value is None or isinstance(value, bool):
        return None
    number: int
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if _HEX_RE.fullmatch(text):
            number = int(text[2:], 16)
        elif _DECIMAL_RE.fullmatch(text):
            number = int(text, 10)
        else:
            return None
    else:
        return None
    if not _MIN_CODE <= number <= _MAX_CODE:
        return None
    return number & 0xFFFFFFFF


def hex_code(code: int) -> str:
    """``0x`` and upper-case hex, as the citizen is shown a code: ``0x7600000D``."""
    return f"0x{code:X}"


def describe(ret_code: object, last_error: object = None) -> HipkiError:
    """The failure a component answer reports; ``last_error`` wins when it is known.

    An unknown nonzero ``ret_code`` is ``unknown`` with its hex value in the message; a
    message with a ``%(code)s`` placeholder gets the hex value too (the browser client
    fills it in the same way).
    """
    last = normalise_code(last_error)
    if last and last in LAST_ERRORS:
        return LAST_ERRORS[last]
    ret = normalise_code(ret_code)
    if ret is not None and ret in RET_CODES:
        known = RET_CODES[ret]
        if "%(code)s" not in str(known.message):
            return known
        return HipkiError(known.key, str(known.message) % {"code": hex_code(ret)})
    if ret:
        template = CLIENT_ERRORS["unknown_code"]
        return HipkiError(template.key, str(template.message) % {"code": hex_code(ret)})
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


# --------------------------------------------------------------------------- the JS table
CLIENT_JS = Path(__file__).resolve().parent / "static" / "moica_auth" / "moica-auth.js"
JS_BEGIN = "// BEGIN GENERATED by `python -m moica_auth.hipki --write-js`: do not edit.\n"
JS_END = "// END GENERATED\n"
#: The constants the client itself raises errors with.
_JS_CONSTANTS = {
    "RET_NO_PIN": RET_NO_PIN,
    "RET_CANCELLED": RET_CANCELLED,
    "RET_CARD_LOGIN_FAILED": RET_CARD_LOGIN_FAILED,
    "LAST_PIN_LENGTH": LAST_PIN_LENGTH,
}


def generated_js() -> str:
    """The block between :data:`JS_BEGIN` and :data:`JS_END` of ``moica-auth.js``: the
    English catalogue (the fallback when a page passes none) and the client's codes."""
    from django.utils.translation import override

    with override(None):  # msgids: English
        table = client_messages()
    lines = [JS_BEGIN, "const FALLBACK = {\n"]
    for section, entries in table.items():
        if not isinstance(entries, dict):  # pragma: no cover - client_messages' shape
            raise TypeError(section)
        lines.append(f"  {section}: {{\n")
        for key, value in entries.items():  # one code per line: reviewable diffs
            lines.append(f"    {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},\n")
        lines.append("  },\n")
    lines.append("};\n")
    for name, code in _JS_CONSTANTS.items():
        lines.append(f'const {name} = "{code:X}";\n')
    lines.append(JS_END)
    return "".join(lines)


def render_client_js(source: str) -> str:
    """``source`` (the client) with its generated block replaced by :func:`generated_js`."""
    start = source.find(JS_BEGIN)
    end = source.find(JS_END)
    if start < 0 or end < start:
        raise ValueError("moica-auth.js has no generated block (BEGIN/END GENERATED markers)")
    return source[:start] + generated_js() + source[end + len(JS_END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moica_auth.hipki",
        description="Generate the browser client's HiPKI code table from moica_auth.hipki.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write-js", action="store_true", help="rewrite the table in place")
    group.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    parser.add_argument("--js", type=Path, default=CLIENT_JS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from django.conf import settings

    if not settings.configured:
        # Only to let gettext return the English msgids; no project is needed.
        settings.configure(USE_I18N=False)
    path: Path = args.js
    source = path.read_text("utf-8")
    wanted = render_client_js(source)
    if args.check:
        if wanted != source:
            print(
                f"{path} is out of date: run python -m moica_auth.hipki --write-js",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date")
        return 0
    if wanted != source:
        path.write_text(wanted, "utf-8")
        print(f"rewrote the HiPKI table in {path}")
    else:
        print(f"{path} is already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
