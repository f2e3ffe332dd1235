"""HTTP dates (RFC 9110 section 5.6.7, IMF-fixdate), cached per second."""

from __future__ import annotations

import functools
import time
from time import time as _time  # a module global: no attribute look-up per call
from typing import Final

_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=4)
def _format_date(seconds: int) -> str:
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def http_date(timestamp: float | None = None) -> str:
    """IMF-fixdate (RFC 9110 section 5.6.7), e.g. ``'Sat, 21 Oct 2017 17:42:33 GMT'``."""
    return _format_date(int(time.time() if timestamp is None else timestamp))


class _DateLine:
    """The current Date line and its second, in native attributes (a module global would be a dict
    look-up and a store each)."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""


_DATE_LINE: Final = _DateLine()


def http_date_line() -> bytes:
    """``b"Date: <IMF-fixdate>\\r\\n"`` for now; rebuilt once a second (one per response otherwise)."""
    now = int(_time())
    cached = _DATE_LINE
    if cached.second != now:
        cached.line = f"Date: {_format_date(now)}\r\n".encode("ascii")
        cached.second = now
    return cached.line
