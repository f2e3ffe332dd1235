"""Raise the open-files soft limit as far as the hard limit allows, before any worker is forked.

Each client connection is a file descriptor. Many systems start processes with a soft limit of
1024 although the hard limit is far higher, which would cap a worker well below
``worker_connections``; raising the soft limit needs no privilege, and forked workers inherit it.
"""

from __future__ import annotations

import resource

from pronghorn.logs import Logger

NR_OPEN_PATH = "/proc/sys/fs/nr_open"  # Linux: the most descriptors any process may have open
FALLBACK_CAP = 1 << 20  # when the hard limit is unlimited and the system's cap cannot be read


def raise_open_files_limit(log: Logger) -> int | None:
    """Set the soft ``RLIMIT_NOFILE`` to the hard limit (capped when that is unlimited).

    Never lowers the limit and never raises an exception: a failure is logged as a warning and
    start-up goes on. Returns the soft limit in force afterwards (None if it cannot be read).
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        log.warning("Could not read the open files limit: %s", exc)
        return None
    target = hard if hard != resource.RLIM_INFINITY else _system_cap()
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.debug("Open files limit: %s (hard limit %s)", _show(soft), _show(hard))
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("Could not raise the open files limit from %s to %s: %s", soft, target, exc)
        return soft
    log.debug("Open files limit: %s, raised from %s (hard limit %s)", target, soft, _show(hard))
    return target


def _system_cap() -> int:
    try:
        with open(NR_OPEN_PATH) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return FALLBACK_CAP


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
