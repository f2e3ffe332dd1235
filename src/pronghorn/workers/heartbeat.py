"""A worker's heartbeat: a timestamp the worker refreshes and the master reads.

The file's size doubles as a "ready" flag: 0 while the worker boots, 1 once it serves requests,
so a reload can wait for new workers before stopping the old ones.

The file is created by the master before the fork and unlinked at once, so only the two processes
hold it. Refreshing it is ``os.utime`` on the open descriptor; on a tmpfs (``/dev/shm``, chosen by
default when present) that never waits on a disk.
"""

from __future__ import annotations

import os
import tempfile
import time

_SHARED_MEMORY_DIR = "/dev/shm"


def default_heartbeat_dir() -> str | None:
    return _SHARED_MEMORY_DIR if os.path.isdir(_SHARED_MEMORY_DIR) and os.access(_SHARED_MEMORY_DIR, os.W_OK) else None


class Heartbeat:
    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="pronghorn-", dir=directory or default_heartbeat_dir())
        os.unlink(path)
        os.set_inheritable(fd, False)
        self._fd = fd
        self.notify()

    def notify(self) -> None:
        now = time.monotonic()
        os.utime(self._fd, (now, now))

    def mark_ready(self) -> None:
        """Called once the worker serves: lets the master retire old workers only after this."""
        os.ftruncate(self._fd, 1)

    def is_ready(self) -> bool:
        return os.fstat(self._fd).st_size > 0

    def last_update(self) -> float:
        """The monotonic time of the last ``notify()``."""
        return os.fstat(self._fd).st_mtime

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1
