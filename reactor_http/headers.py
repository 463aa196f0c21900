"""Pure helpers for header field values: comma lists, HTTP dates, the keep-alive decision.

No I/O, no state. Values arrive already decoded as latin-1 `str` with names lower-cased.
"""

from __future__ import annotations

import calendar
import re
import time

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, 1)}
# Years an HTTP-date may name (the grammar's 4DIGIT, without year 0, which calendar rejects).
_MIN_YEAR, _MAX_YEAR = 1, 9999
# OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3).
_OWS = " \t"

# RFC 9110 section 5.6.7: a recipient accepts all three formats; we only ever send IMF-fixdate.
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z][a-z]) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    r"(\d\d)-([A-Z][a-z][a-z])-(\d\d) (\d\d):(\d\d):(\d\d) GMT")
_ASCTIME_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z][a-z]) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})")


def format_http_date(epoch_seconds: float) -> str:
    """Format seconds since the epoch as an IMF-fixdate (RFC 9110 section 5.6.7)."""
    t = time.gmtime(epoch_seconds)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def parse_http_date(value: str) -> int | None:
    """Parse any of the three HTTP date formats to epoch seconds; None if invalid."""
    value = value.strip()
    match = _IMF_FIXDATE.fullmatch(value)
    if match:
        day, month, year, hour, minute, second = match.groups()
    else:
        match = _RFC850_DATE.fullmatch(value)
        if match:
            day, month, year2, hour, minute, second = match.groups()
            # RFC 9110 section 5.6.7: a two-digit year more than 50 years in the future is in the
            # past.
            this_year = time.gmtime().tm_year
            year = 1900 + int(year2) + 100 * ((this_year - 1900) // 100)
            if year > this_year + 50:
                year -= 100
        else:
            match = _ASCTIME_DATE.fullmatch(value)
            if not match:
                return None
            month, day, hour, minute, second, year = match.groups()
    month_number = _MONTH_NUMBER.get(month)
    if month_number is None:
        return None
    try:
        fields = (int(year), month_number, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    # Year 0000 matches the grammar (4DIGIT) but names no calendar year: calendar.monthrange
    # raises for it. Only years the calendar module handles are dates at all.
    if not _MIN_YEAR <= fields[0] <= _MAX_YEAR:
        return None
    try:
        # A day the month does not have (31 Feb) is not a valid HTTP-date: timegm would roll it
        # over.
        if not (1 <= fields[2] <= calendar.monthrange(fields[0], month_number)[1] and
                fields[3] <= 23 and fields[4] <= 59 and fields[5] <= 60):
            return None
        return calendar.timegm(fields + (0, 0, 0))
    except (ValueError, OverflowError):  # client input never raises out of here
        return None


def comma_list(value: str | None) -> list[str]:
    """Split a list-based field value (RFC 9110 section 5.6.1), dropping empty elements.

    Elements are trimmed of OWS only, SP and HTAB (section 5.6.3), as the parser does:
    str.strip() would also drop NBSP (0xA0) and NEL (0x85), which arrive as latin-1 obs-text.
    """
    if not value:
        return []
    return [trimmed for trimmed in (item.strip(_OWS) for item in value.split(",")) if trimmed]


def tokens_lower(value: str | None) -> set[str]:
    """The case-insensitive tokens of a list field such as Connection."""
    return {item.lower() for item in comma_list(value)}


def expects_continue(version: tuple[int, int], expect: str | None) -> bool:
    """Does the client wait for a 100 (Continue) before it sends its body? RFC 9110 section
    10.1.1: `Expect: 100-continue` (case-insensitive), which HTTP/1.0 requests MUST not get."""
    return expect is not None and version >= (1, 1) and "100-continue" in tokens_lower(expect)


def wants_keep_alive(version: tuple[int, int], connection: str | None) -> bool:
    """The one keep-alive decision for a request (RFC 9112 section 9.3).

    HTTP/1.1 persists unless the client sent `close`; HTTP/1.0 persists only with `keep-alive`.
    """
    if connection is None:
        return version >= (1, 1)
    options = tokens_lower(connection)
    if "close" in options:
        return False
    return version >= (1, 1) or "keep-alive" in options


def quality_values(value: str | None) -> dict[str, float]:
    """Parse `Accept-Encoding`-style lists into {token: q} (RFC 9110 section 12.4.2)."""
    result: dict[str, float] = {}
    for item in comma_list(value):
        name, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, raw = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        result[name.strip().lower()] = q
    return result


class DateCache:
    """The Date header value, formatted at most once per second."""

    __slots__ = ("_second", "_value", "_field")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""
        self._field = b""

    def get(self, now: float | None = None) -> str:
        """The IMF-fixdate for `now` (wall-clock seconds; default: the current time)."""
        second = int(time.time() if now is None else now)
        if second != self._second:
            self._refresh(second)
        return self._value

    def field(self) -> bytes:
        """The whole `Date: ...` field line for the current second, as bytes."""
        second = int(time.time())
        if second != self._second:
            self._refresh(second)
        return self._field

    def _refresh(self, second: int) -> None:
        self._second = second
        self._value = format_http_date(second)
        self._field = f"Date: {self._value}\r\n".encode("ascii")
