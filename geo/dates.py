"""Periods of time as kpmap writes them: "YYYY-MM-DD" (a day), "YYYY-MM" (a month) or "YYYY" (a
year). The one parser every part of kpmap reads a period with (authored facts, the filters, the
store's time index, the links between records).

    period("2024-02")     # Period(first=date(2024, 2, 1), last=date(2024, 2, 29))
"""

import calendar
import re
from datetime import date
from typing import NamedTuple

PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


class Period(NamedTuple):
    first: date
    last: date


def period(text: str) -> Period:
    """The first and last day of a period; ValueError (saying which) if it is not one.

    >>> period("2024-02").last, period("2023").last, period("2024-04-02").first
    (datetime.date(2024, 2, 29), datetime.date(2023, 12, 31), datetime.date(2024, 4, 2))
    >>> period("2024-02-31")
    Traceback (most recent call last):
    ...
    ValueError: 2024-02-31 does not exist as a date (day is out of range for month)
    """
    match = PERIOD.match(text)
    if not match:
        raise ValueError(f"{text!r} is not YYYY-MM-DD, YYYY-MM or YYYY")
    year_text, month_text, day_text = match.groups()
    year = int(year_text)
    try:
        if day_text:
            first = last = date(year, int(month_text), int(day_text))
        elif month_text:
            month = int(month_text)
            first = date(year, month, 1)
            last = date(year, month, calendar.monthrange(year, month)[1])
        else:
            first, last = date(year, 1, 1), date(year, 12, 31)
    except ValueError as exc:
        raise ValueError(f"{text} does not exist as a date ({exc})") from None
    return Period(first, last)
