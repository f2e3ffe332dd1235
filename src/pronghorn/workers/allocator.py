"""Let a worker keep freed memory for its next request instead of returning it to the kernel at once.

glibc's malloc hands the free memory at the top of a heap back to the kernel once more than 128 KiB
of it is free (``M_TRIM_THRESHOLD``), and serves every block from 128 KiB up with its own ``mmap``
(``M_MMAP_THRESHOLD``); it raises both only after a large mmapped block is freed, which a worker
that only handles bodies under 128 KiB never does. So a worker receiving 64 KiB request bodies gave
their pages back after nearly every request and took them again, zero-filled, for the next one: a
page fault per 4 KiB copied. On the pool that was half the requests/s of the same worker with
these thresholds raised (bench/run.py, 64 KiB uploads, ``--threads 4``).

The thresholds below keep at most ``TRIM_THRESHOLD`` free at the top of each heap and serve request
bodies up to the size kept in memory (``loop_io.SPILL_THRESHOLD``) from the heap. A deployment that
tunes malloc itself (``MALLOC_*`` variables or ``GLIBC_TUNABLES``) is left as it is, and so is any
other C library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

# Loaded with this module, in the master: a worker that loaded it itself would touch the symbol tables
# of every library the dynamic linker searches (about 0.2 MiB of RSS).
try:
    from pronghorn.workers._mallopt import mallopt as native_mallopt
except ImportError:  # not built (editable install, no compiler, PRONGHORN_COMPILE=0): ctypes, in the worker
    native_mallopt = None  # type: ignore[assignment]

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

TRIM_THRESHOLD = 4 << 20
MMAP_THRESHOLD = 2 << 20  # above the largest body kept in memory, plus the parser's copy of it
USER_TUNING = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def tuned_by_user(environ: Mapping[str, str]) -> bool:
    return any(name in environ for name in USER_TUNING) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def running_on_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):  # not a glibc system
        return False


def mallopt_function() -> Callable[[int, int], int]:
    """glibc's mallopt(): from the small C module built with the compiled ones, else through ctypes
    (about 0.5 MiB more in the worker's RSS)."""
    if native_mallopt is None:
        import ctypes

        return ctypes.CDLL(None).mallopt
    return native_mallopt


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds in this process; True if they were set."""
    if not running_on_glibc() or tuned_by_user(os.environ):
        return False
    mallopt = mallopt_function()  # only here: a worker on another C library never loads ctypes
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
