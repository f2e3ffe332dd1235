"""A worker's heartbeat: a timestamp the worker refreshes and the master reads.

The file's size doubles as a "ready" flag: 0 while the worker boots, 1 once it serves requests,
so a reload can wait for new workers before stopping the old ones.

The file is created by the master before the fork and unlinked at once, so only the two processes
hold it. Refreshing it is ``os.utime`` on the open descriptor; on a tmpfs (``/dev/shm``, chosen by
default when present) that never waits on a disk.
"""

from __future__ import annotations

import errno
import os
import time

_SHARED_MEMORY_DIR = "/dev/shm"


def default_heartbeat_dir() -> str | None:
    return _SHARED_MEMORY_DIR if os.path.isdir(_SHARED_MEMORY_DIR) and os.access(_SHARED_MEMORY_DIR, os.W_OK) else None


def _unlinked_file(directory: str | None) -> int:
    """An open, already unlinked, private file in ``directory``: ``tempfile.mkstemp`` + unlink.

    Not through ``tempfile`` itself: it imports ``shutil``, which imports zlib, bz2 and lzma, and
    every worker would inherit them from the master (~0.7 MiB of RSS each).
    """
    if directory is None:
        import tempfile  # no /dev/shm and no worker_tmp_dir: the platform's temporary directory

        directory = tempfile.gettempdir()
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = os.path.join(directory, f"pronghorn-{os.urandom(6).hex()}")
        try:
            fd = os.open(path, flags, 0o600)  # not inheritable (PEP 446)
        except FileExistsError:
            continue
        os.unlink(path)
        return fd
    raise FileExistsError(errno.EEXIST, f"no unused temporary file name in {directory!r}")


class Heartbeat:
    def __init__(self, directory: str | None = None) -> None:
        fd = _unlinked_file(directory or default_heartbeat_dir())
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
