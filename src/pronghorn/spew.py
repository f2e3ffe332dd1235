"""``spew``: print every line the server executes (a last-resort debugging aid, very slow)."""

from __future__ import annotations

import linecache
import sys
import threading
from types import FrameType
from typing import Any


def _trace(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        filename = frame.f_code.co_filename
        line = linecache.getline(filename, frame.f_lineno).rstrip()
        print(f"{filename}:{frame.f_lineno}: {line}", file=sys.stderr)
    return _trace


def install_spew() -> None:
    sys.settrace(_trace)
    threading.settrace(_trace)
