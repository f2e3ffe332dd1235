"""HTTP dates (RFC 9110 section 5.6.7, IMF-fixdate), cached per second."""

from __future__ import annotations

import functools
import time
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


_date_line: tuple[int, bytes] = (-1, b"")


def http_date_line() -> bytes:
    """``b"Date: <IMF-fixdate>\\r\\n"`` for now; rebuilt once a second (one per response otherwise)."""
    global _date_line
    now = int(time.time())
    if _date_line[0] != now:
        _date_line = (now, f"Date: {_format_date(now)}\r\n".encode("ascii"))
    return _date_line[1]
