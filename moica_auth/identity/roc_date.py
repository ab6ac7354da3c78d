"""Birth dates as Taiwanese services write them: the ROC (Minguo, 民國) calendar.

ROC year = Gregorian year − 1911, so ROC year 1 is 1912 and ``0600101`` is 1971-01-01.
Government forms ask for a birth date as seven digits, ``YYYMMDD``.

:func:`parse_birth_date` accepts exactly these forms (after stripping white space and
mapping full-width digits to ASCII):

==================  =====================  ===================================
form                example                calendar
==================  =====================  ===================================
``YYYMMDD``         ``0600101``            ROC, exactly 7 digits
``YYY/MM/DD``       ``060/01/01``          ROC, 3-digit year, 2-digit month/day
``YYY-MM-DD``       ``060-01-01``          ROC, as above
``YYYY-MM-DD``      ``1971-01-01``         Gregorian (ISO 8601 calendar date)
:class:`date`       ``date(1971, 1, 1)``   as is (a ``datetime`` is refused)
==================  =====================  ===================================

Everything else is refused with :class:`BirthDateInvalid`, in particular six digits
(``600101`` could be ROC 60-01-01 or Gregorian 1960-01-01) and a short ROC year with
separators (``60/1/1``): guessing the calendar of a birth date would make a personal-data
check accept the wrong person. The date must exist in the Gregorian calendar, fall in
ROC year 1 or later, and not be after today (in Asia/Taipei).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from moica_auth.exceptions import BirthDateInvalid

__all__ = ["ROC_EPOCH_OFFSET", "parse_birth_date", "roc_year", "to_roc"]

#: Gregorian year = ROC year + 1911.
ROC_EPOCH_OFFSET = 1911

_TAIPEI = ZoneInfo("Asia/Taipei")
_ROC_COMPACT = re.compile(r"([0-9]{3})([0-9]{2})([0-9]{2})")
_ROC_SEPARATED = re.compile(r"([0-9]{3})([/-])([0-9]{2})\2([0-9]{2})")
_ISO = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_MAX_INPUT = 32


def _today() -> date:
    # A birth date is a civil date in Taiwan; "today" there is what rules out the future.
    return datetime.now(_TAIPEI).date()


def _build(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise BirthDateInvalid("no such calendar date") from exc


def parse_birth_date(value: object, *, today: date | None = None) -> date:
    """Parse a birth date in one of the forms in the module docstring.

    ``today`` pins the clock (tests); ``None`` means today in Asia/Taipei. Raises
    :class:`BirthDateInvalid` (``birth_date_invalid``) for the wrong type, an unknown
    form, a date that does not exist (``0900229``: 2001 is not a leap year), a year before
    ROC 1 (1912), or a date after ``today``.
    """
    if isinstance(value, datetime):
        raise BirthDateInvalid("expected a date, got a datetime")
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        if len(value) > _MAX_INPUT:
            raise BirthDateInvalid("too long")
        text = value.translate(_FULL_WIDTH).strip()
        if match := _ROC_COMPACT.fullmatch(text):
            roc, month, day = (int(part) for part in match.groups())
        elif match := _ROC_SEPARATED.fullmatch(text):
            roc, month, day = int(match[1]), int(match[3]), int(match[4])
        elif match := _ISO.fullmatch(text):
            roc, month, day = int(match[1]) - ROC_EPOCH_OFFSET, int(match[2]), int(match[3])
        else:
            raise BirthDateInvalid("not YYYMMDD, YYY/MM/DD, YYY-MM-DD or YYYY-MM-DD")
        if roc < 1:
            raise BirthDateInvalid("before ROC year 1 (1912)")
        parsed = _build(roc + ROC_EPOCH_OFFSET, month, day)
    else:
        raise BirthDateInvalid(f"expected a string or a date, got {type(value).__name__}")
    if parsed.year <= ROC_EPOCH_OFFSET:
        raise BirthDateInvalid("before ROC year 1 (1912)")
    if parsed > (today if today is not None else _today()):
        raise BirthDateInvalid("in the future")
    return parsed


def roc_year(d: date) -> int:
    """The ROC year of ``d`` (Gregorian − 1911); :class:`BirthDateInvalid` before 1912."""
    year = d.year - ROC_EPOCH_OFFSET
    if year < 1:
        raise BirthDateInvalid("before ROC year 1 (1912)")
    return year


def to_roc(d: date) -> str:
    """``d`` as the seven digits ``YYYMMDD`` (``date(1971, 1, 1)`` → ``"0600101"``)."""
    return f"{roc_year(d):03d}{d.month:02d}{d.day:02d}"
