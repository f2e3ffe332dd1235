"""The master's pidfile."""

from __future__ import annotations

import os


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None

    def create(self, pid: int) -> None:
        """Write ``pid`` atomically; refuse if another live process owns the file."""
        other = self.read_live_pid()
        if other is not None and other != pid:
            raise RuntimeError(f"Already running on PID {other} (or pid file '{self.path}' is stale)")
        import tempfile  # here: only a server with a pidfile pays for it (and shutil, zlib, bz2, lzma)

        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".pronghorn-pid-")
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{pid}\n")
        os.chmod(temp, 0o644)
        os.replace(temp, self.path)
        self.pid = pid

    def read_live_pid(self) -> int | None:
        try:
            with open(self.path) as handle:
                text = handle.read().strip()
        except OSError:
            return None
        if not text.isdecimal():
            return None
        pid = int(text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def unlink(self) -> None:
        """Remove the file if it still names this process."""
        try:
            with open(self.path) as handle:
                if handle.read().strip() == str(self.pid):
                    os.unlink(self.path)
        except OSError:
            pass
