"""Taiwan national ID numbers (身分證統一編號) and resident certificate numbers (居留證號).

A MOICA certificate carries only the **last four** characters of its holder's ID number
(SubjectDirectoryAttributes 2.16.886.1.100.2.51), so a service that needs the full number
asks the citizen for it and checks it here:

* :func:`parse_id_number` checks the format and the check digit and normalises the value;
* :func:`check_last4` compares it with the certificate's last four characters;
* :func:`id_number_hash` is the only form in which a number may be stored.

Accepted forms (all ten characters, ASCII after normalisation):

=================  ======================  ===============================================
kind               pattern                 second character
=================  ======================  ===============================================
``national``       ``[A-Z][12][0-9]{8}``   1 male, 2 female
``resident_old``   ``[A-Z][A-D][0-9]{8}``  letter, its letter value mod 10 is the digit
``resident_new``   ``[A-Z][89][0-9]{8}``   8 male, 9 female (since 2021-01-02); the third
                                           digit says: 0–6 foreign national, 7 no household
                                           registration, 8 Hong Kong/Macao, 9 mainland
=================  ======================  ===============================================

Check digit (the same for every kind): with ``L`` the first letter's two-digit value,
``tens(L)·1 + units(L)·9 + Σ d_i·w_i + check ≡ 0 (mod 10)`` where ``d_2 … d_9`` are
characters two to nine (a letter in position two counts as its letter value mod 10) and
the weights are 8, 7, …, 1.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Literal

from moica_auth.exceptions import ConfigurationError, IdNumberInvalid, IdNumberMismatch

__all__ = [
    "LETTER_VALUES",
    "IdKind",
    "IdNumber",
    "ResidentCategory",
    "check_last4",
    "checksum_digit",
    "id_number_hash",
    "parse_id_number",
]

IdKind = Literal["national", "resident_old", "resident_new"]
ResidentCategory = Literal["foreign", "no_household_registration", "hong_kong_macao", "mainland"]

#: The two-digit value of each leading letter. The order is not alphabetical: I, O, W,
#: X, Y and Z were added after the first 20 letters had been assigned.
LETTER_VALUES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17,
    "I": 34, "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23,
    "Q": 24, "R": 25, "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30,
    "Y": 31, "Z": 33,
}  # fmt: skip

# Explicit [0-9] (not \d) so that other scripts' digits never pass.
_NATIONAL = re.compile(r"[A-Z][12][0-9]{8}")
_RESIDENT_OLD = re.compile(r"[A-Z][A-D][0-9]{8}")
_RESIDENT_NEW = re.compile(r"[A-Z][89][0-9]{8}")
_PREFIX9 = re.compile(r"[A-Z][0-9A-D][0-9]{7}")

# Citizens often type with a Chinese input method left in full-width mode
# ("Ａ１２３…"); map exactly the full-width ASCII block, nothing else (no NFKC, which
# would also turn circled or superscript digits into ASCII).
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_MAX_INPUT = 64  # anything longer is not an ID number; don't process it further
_HASH_DOMAIN = b"moica-auth/id-number/v1\x00"
_MIN_HASH_KEY = 16

_RESIDENT_CATEGORIES: dict[str, ResidentCategory] = {
    **dict.fromkeys("0123456", "foreign"),
    "7": "no_household_registration",
    "8": "hong_kong_macao",
    "9": "mainland",
}


@dataclass(frozen=True, repr=False)
class IdNumber:
    """A checked, normalised ID number.

    ``value`` is the full number. It is personal data: ``repr()`` and ``str()`` show only
    :meth:`masked`, and it must never be logged or stored in the clear (store
    :func:`id_number_hash`).
    """

    value: str
    kind: IdKind = field(compare=False)

    def __post_init__(self) -> None:
        # Direct construction must not be a way around the checks.
        if not isinstance(self.value, str) or _classify(self.value) != self.kind:
            raise IdNumberInvalid("value and kind do not form a valid ID number")

    @property
    def last4(self) -> str:
        """The last four characters, as the certificate's SDA 2.16.886.1.100.2.51 carries."""
        return self.value[-4:]

    @property
    def resident_category(self) -> ResidentCategory | None:
        """For a new-form resident number, what its third digit says; else ``None``."""
        if self.kind != "resident_new":
            return None
        return _RESIDENT_CATEGORIES[self.value[2]]

    def masked(self) -> str:
        """``"A*****6789"``: the first letter and the last four characters only.

        The last four are already on the certificate (and printed on many documents),
        so showing them reveals nothing the login had not; the sex digit and the
        middle five digits are hidden.
        """
        return f"{self.value[0]}{'*' * 5}{self.value[-4:]}"

    def __repr__(self) -> str:
        return f"IdNumber(kind={self.kind!r}, masked={self.masked()!r})"

    def __str__(self) -> str:
        return self.masked()


def _normalise(value: object) -> str:
    if not isinstance(value, str):
        raise IdNumberInvalid(f"expected a string, got {type(value).__name__}")
    if len(value) > _MAX_INPUT:
        raise IdNumberInvalid("too long")
    text = value.translate(_FULL_WIDTH).strip()
    if not text.isascii():
        # Checked before upper-casing: str.upper() turns a few non-ASCII letters into
        # ASCII ones ("ı" -> "I", "ſ" -> "S"), which is no typing mode to forgive.
        raise IdNumberInvalid("characters outside ASCII and its full-width forms")
    return text.upper()


def _digit_value(char: str) -> int:
    # Position two of an old resident number is a letter standing for a digit.
    return LETTER_VALUES[char] % 10 if char.isalpha() else int(char)


def _weighted_sum(prefix9: str) -> int:
    letter = LETTER_VALUES[prefix9[0]]
    total = (letter // 10) + (letter % 10) * 9
    for weight, char in zip(range(8, 0, -1), prefix9[1:9], strict=True):
        total += _digit_value(char) * weight
    return total


def checksum_digit(prefix9: str) -> str:
    """The check digit that completes the nine characters ``prefix9`` into a valid number.

    For generating test numbers: ``"A12345678" + checksum_digit("A12345678")``.
    Raises :class:`IdNumberInvalid` when ``prefix9`` is not a letter, a digit or A–D,
    and seven digits.
    """
    normalised = _normalise(prefix9)
    if not _PREFIX9.fullmatch(normalised):
        raise IdNumberInvalid("not a nine-character ID number prefix")
    return str((10 - _weighted_sum(normalised) % 10) % 10)


def parse_id_number(value: object) -> IdNumber:
    """Check and normalise an ID number typed by a citizen.

    Strips surrounding white space, maps full-width characters to ASCII and upper-cases.
    Raises :class:`IdNumberInvalid` (``id_number_invalid``) for anything that is not a
    ``str``, does not match one of the three forms, or fails the check digit. The error
    never contains the number.
    """
    normalised = _normalise(value)
    return IdNumber(value=normalised, kind=_classify(normalised))


def _classify(normalised: str) -> IdKind:
    kind: IdKind
    if _NATIONAL.fullmatch(normalised):
        kind = "national"
    elif _RESIDENT_NEW.fullmatch(normalised):
        kind = "resident_new"
    elif _RESIDENT_OLD.fullmatch(normalised):
        kind = "resident_old"
    else:
        raise IdNumberInvalid("not in the form of an ID or resident certificate number")
    if (_weighted_sum(normalised) + int(normalised[9])) % 10 != 0:
        raise IdNumberInvalid("check digit does not match")
    return kind


def check_last4(id_number: IdNumber, citizen_last4: str | None) -> None:
    """Require ``id_number`` to end with the certificate's last four characters.

    ``citizen_last4`` is SDA 2.16.886.1.100.2.51 of the certificate. A certificate without
    it cannot vouch for any number, so ``None`` fails closed with
    :class:`IdNumberMismatch` (``id_number_mismatch``), as does any difference. The
    comparison is constant-time so the response time does not reveal how many of the
    four matched.
    """
    if citizen_last4 is None:
        raise IdNumberMismatch("the certificate carries no ID number last-4")
    expected = citizen_last4.strip().upper().encode("utf-8")
    if not hmac.compare_digest(id_number.last4.encode("ascii"), expected):
        raise IdNumberMismatch("last four characters differ from the certificate")


def id_number_hash(id_number: IdNumber, *, key: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) of the normalised number, as lower-case hex.

    The message is domain-separated (``b"moica-auth/id-number/v1\\0" + number``) so the
    same key can serve other purposes without colliding. The key must be a secret of at
    least 16 bytes (a plain hash of a 10-character ID is brute-forced in seconds, so an
    unkeyed hash is not an option); otherwise :class:`ConfigurationError`.
    """
    if not isinstance(key, bytes) or len(key) < _MIN_HASH_KEY:
        raise ConfigurationError(f"the ID number hash key must be at least {_MIN_HASH_KEY} bytes")
    mac = hmac.new(key, _HASH_DOMAIN + id_number.value.encode("ascii"), hashlib.sha256)
    return mac.hexdigest()
