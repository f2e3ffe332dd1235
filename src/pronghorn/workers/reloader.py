"""The code reloader: restart a worker when a source file it imported (or an extra file) changes.

How this works. A reloader runs one daemon thread. Every ``interval`` seconds it rebuilds the list of
files to watch: the ``.py`` source of every module in ``sys.modules`` (so modules imported later are
watched too), the plain ``extra_files`` paths, and what the glob patterns among them match now (so
files created later are picked up). When one of them changes it calls ``callback(path)`` once, from
the watcher thread, and stops watching: the worker is expected to exit and be replaced.

Two engines notice changes:

- ``poll`` compares each file's (mtime, size, inode) with the previous check. An extra file that
  appears (a new glob match, or a plain path that was missing) counts as a change; a module file
  seen for the first time is only recorded, since being imported is not a change.
- ``inotify`` asks the Linux kernel, through ``ctypes`` on the C library, for events on the
  directories that hold the watched files (inotify reports a directory's entries, and saving by
  rename replaces the file's inode, which a watch on the file itself would lose). Events naming a
  watched file, or creating a file a pattern matches, are changes. The periodic rescan only adds
  directories; it also catches glob matches created before their directory's watch was in place.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import select
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, Protocol

ENGINES = ("auto", "poll", "inotify")

# Event flags from <sys/inotify.h>; the values are fixed by the Linux ABI.
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_WATCH_MASK = (
    IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF
)
_APPEARS = IN_CREATE | IN_MOVED_TO
# struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[len]; }
_EVENT_HEAD = struct.Struct("iIII")
_READ_SIZE = 64 * 1024
# Reported instead of a path when the kernel dropped events: a change may have been lost.
QUEUE_OVERFLOW = "<inotify event queue overflowed>"

_Signature = tuple[int, int, int]


class Reloader(Protocol):
    def start(self) -> None:
        """Record the current state of every watched file and start the watcher thread."""

    def stop(self) -> None:
        """Stop watching; returns once the watcher thread ended. Safe to call more than once."""

    def add_extra_file(self, path: str) -> None:
        """Also watch ``path`` from now on (e.g. the file of a SyntaxError, which is not imported)."""


def _has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def _signature(path: str) -> _Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def module_source_files() -> set[str]:
    """The ``.py`` files of the modules imported so far (absolute paths)."""
    files: set[str] = set()
    # list() copies the dict in C, so an import in another thread cannot break the iteration.
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            files.add(os.path.abspath(path))
    return files


class WatchList:
    """What to watch besides modules: plain extra paths and glob patterns, re-expanded on demand."""

    def __init__(self, extra_files: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._paths: list[str] = []
        self._patterns: list[str] = []
        for entry in extra_files:
            self.add(entry)

    def add(self, entry: str) -> None:
        path = os.path.abspath(entry)
        with self._lock:
            target = self._patterns if _has_magic(path) else self._paths
            if path not in target:
                target.append(path)

    def plain_paths(self) -> set[str]:
        with self._lock:
            return set(self._paths)

    def patterns(self) -> list[str]:
        with self._lock:
            return list(self._patterns)

    def glob_matches(self) -> set[str]:
        """Files (not directories) that the patterns match right now."""
        found: set[str] = set()
        for pattern in self.patterns():
            found.update(p for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p))
        return {os.path.abspath(p) for p in found}

    def pattern_directories(self) -> set[str]:
        """Existing directories where a file matching a pattern could be created."""
        dirs: set[str] = set()
        for pattern in self.patterns():
            parent = os.path.dirname(pattern)
            candidates = glob.glob(parent, recursive=True) if _has_magic(parent) else [parent]
            dirs.update(os.path.abspath(d) for d in candidates if os.path.isdir(d))
        return dirs

    def may_match(self, path: str) -> bool:
        """Whether a pattern matches ``path`` now; a cheap basename test first avoids most globbing."""
        name = os.path.basename(path)
        for pattern in self.patterns():
            last = os.path.basename(pattern)
            if last == "**" or fnmatch.fnmatchcase(name, last):
                return path in self.glob_matches()
        return False


class _WatcherThread:
    """Thread, stop flag and the once-only callback shared by both engines."""

    engine = "?"

    def __init__(self, extra_files: Iterable[str], callback: Callable[[str], None], interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"reloader interval must be positive, not {interval!r}")
        self._watch = WatchList(extra_files)
        self._callback = callback
        self._interval = interval
        self._stopping = threading.Event()
        self._fired = False
        self._thread: threading.Thread | None = None
        # Files added from another thread, with their state at that moment (the reference).
        self._pending_lock = threading.Lock()
        self._pending: dict[str, _Signature | None] = {}

    def start(self) -> None:
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("a reloader can only be started once, and not after stop()")
        self._prepare()
        self._thread = threading.Thread(target=self._run, name=f"pronghorn-reloader-{self.engine}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is None:
            self._release()
        elif thread is not threading.current_thread():
            # Bounded so a callback that hangs cannot hang the worker's shutdown as well.
            thread.join(timeout=5.0)

    def add_extra_file(self, path: str) -> None:
        with self._pending_lock:
            self._pending[os.path.abspath(path)] = _signature(path)
        self._watch.add(path)

    def _take_pending(self) -> dict[str, _Signature | None]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        return pending

    def _fire(self, path: str) -> None:
        if self._fired or self._stopping.is_set():
            return
        self._fired = True
        self._callback(path)

    def _prepare(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Interrupt a wait in the watcher thread (the poll engine's Event needs nothing more)."""

    def _release(self) -> None:
        """Free what the engine holds when the thread never ran."""


class PollReloader(_WatcherThread):
    """Compares each watched file's (mtime, size, inode) every ``interval`` seconds."""

    engine = "poll"

    def __init__(self, extra_files: Iterable[str], callback: Callable[[str], None], interval: float = 1.0) -> None:
        super().__init__(extra_files, callback, interval)
        # None marks an extra path that is watched but missing: its creation is a change.
        self._known: dict[str, _Signature | None] = {}

    def _prepare(self) -> None:
        self._check(initial=True)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            changed = self._check(initial=False)
            if changed is not None:
                self._fire(changed)
                return

    def _check(self, *, initial: bool) -> str | None:
        for path, sig in self._take_pending().items():
            self._known.setdefault(path, sig)
        plain = self._watch.plain_paths()
        matches = self._watch.glob_matches()
        current = module_source_files() | plain | matches
        for path in current | self._known.keys():
            sig = _signature(path)
            if path in self._known:
                if sig != self._known[path]:
                    return path  # modified, replaced, deleted, or a missing extra file created
                if path not in current and sig is not None:
                    del self._known[path]  # no longer imported nor matched: stop watching it
            elif sig is None:
                if path in plain:
                    self._known[path] = None
            elif path in matches and not initial:
                return path  # a file created after start that a pattern matches
            else:
                self._known[path] = sig
        return None


class _Libc:
    """The three inotify calls, looked up in the C library already loaded into this process."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise RuntimeError(f"inotify is unavailable: it is a Linux interface and this is {sys.platform}")
        import ctypes  # here, not at the top: only the inotify engine needs it

        self.get_errno = ctypes.get_errno
        # CDLL(None) is the running program's own symbol table, which includes libc on Linux.
        lib = ctypes.CDLL(None, use_errno=True)
        try:
            self.init1: Any = lib.inotify_init1
            self.add_watch: Any = lib.inotify_add_watch
        except AttributeError:
            raise RuntimeError("inotify is unavailable: the C library has no inotify_init1") from None
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int


class InotifyReloader(_WatcherThread):
    """Waits for kernel events on the directories of the watched files; rescans every ``interval``."""

    engine = "inotify"

    def __init__(self, extra_files: Iterable[str], callback: Callable[[str], None], interval: float = 1.0) -> None:
        super().__init__(extra_files, callback, interval)
        self._libc = _Libc()
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = self._libc.get_errno()
            raise RuntimeError(f"inotify is unavailable: inotify_init1 failed: {os.strerror(err)}")
        self._fd: int = fd
        # stop() writes to this pipe so the thread leaves its poll() at once.
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._fd_lock = threading.Lock()
        self._closed = False
        self._wd_dirs: dict[int, str] = {}
        self._dir_wds: dict[str, int] = {}
        self._files: set[str] = set()
        self._matches: set[str] = set()

    def _prepare(self) -> None:
        self._rescan(initial=True)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._release()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        next_scan = time.monotonic() + self._interval
        while not self._stopping.is_set():
            timeout_ms = max(0.0, next_scan - time.monotonic()) * 1000
            ready = poller.poll(timeout_ms)
            if self._stopping.is_set():
                return
            changed = self._read_events() if any(fd == self._fd for fd, _ in ready) else None
            if changed is None and time.monotonic() >= next_scan:
                changed = self._rescan(initial=False)
                next_scan = time.monotonic() + self._interval
            if changed is not None:
                self._fire(changed)
                return

    def _rescan(self, *, initial: bool) -> str | None:
        # A file added from another thread may have changed before its directory was watched.
        for path, before in self._take_pending().items():
            if _signature(path) != before:
                return path
        matches = self._watch.glob_matches()
        self._files = module_source_files() | self._watch.plain_paths() | matches
        created = sorted(matches - self._matches)
        self._matches = matches
        for directory in {os.path.dirname(f) for f in self._files} | self._watch.pattern_directories():
            if directory not in self._dir_wds:
                self._add_watch(directory)
        # A match created in a directory before its watch existed produced no event.
        return created[0] if created and not initial else None

    def _add_watch(self, directory: str) -> None:
        wd = self._libc.add_watch(self._fd, os.fsencode(directory), _WATCH_MASK)
        if wd < 0:
            # Missing or unreadable directories (e.g. modules imported from a zip) are skipped; a
            # directory that appears later is tried again at the next rescan.
            err = self._libc.get_errno()
            if err not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ENOSPC):
                raise OSError(err, f"inotify_add_watch({directory!r}) failed: {os.strerror(err)}")
            return
        self._wd_dirs[wd] = directory
        self._dir_wds[directory] = wd

    def _read_events(self) -> str | None:
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return None
            offset = 0
            while offset + _EVENT_HEAD.size <= len(data):
                wd, mask, _cookie, length = _EVENT_HEAD.unpack_from(data, offset)
                raw = data[offset + _EVENT_HEAD.size : offset + _EVENT_HEAD.size + length]
                offset += _EVENT_HEAD.size + length
                changed = self._event(wd, mask, os.fsdecode(raw.split(b"\0", 1)[0]))
                if changed is not None:
                    return changed

    def _event(self, wd: int, mask: int, name: str) -> str | None:
        if mask & IN_Q_OVERFLOW:
            return QUEUE_OVERFLOW
        directory = self._wd_dirs.get(wd)
        if directory is None:
            return None
        if mask & IN_IGNORED:
            # The watch is gone (directory deleted or unmounted); a rescan may add it again.
            del self._wd_dirs[wd]
            self._dir_wds.pop(directory, None)
            return None
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            inside = sorted(f for f in self._files if os.path.dirname(f) == directory)
            return inside[0] if inside else None
        if mask & IN_ISDIR or not name:
            return None
        path = os.path.join(directory, name)
        if path in self._files:
            return path
        if mask & _APPEARS and self._watch.may_match(path):
            return path
        return None

    def _wake(self) -> None:
        with self._fd_lock:
            if not self._closed:
                try:
                    os.write(self._wake_write, b"x")
                except BlockingIOError:
                    pass  # the pipe is full, so the thread is awake already

    def _release(self) -> None:
        with self._fd_lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._wake_read, self._wake_write):
                os.close(fd)


def inotify_available() -> bool:
    """Whether the inotify engine can start here (Linux, and the kernel lets us open an instance)."""
    try:
        InotifyReloader((), lambda path: None).stop()
    except RuntimeError:
        return False
    return True


def make_reloader(
    engine: str,
    extra_files: list[str],
    callback: Callable[[str], None],
    *,
    interval: float = 1.0,
) -> Reloader:
    """Build a reloader (not started). ``inotify`` raises ``RuntimeError`` where it cannot work."""
    choice = engine.lower()
    if choice == "poll":
        return PollReloader(extra_files, callback, interval)
    if choice == "inotify":
        return InotifyReloader(extra_files, callback, interval)
    if choice == "auto":
        try:
            return InotifyReloader(extra_files, callback, interval)
        except RuntimeError:
            return PollReloader(extra_files, callback, interval)
    raise ValueError(f"unknown reload engine {engine!r}: expected one of {', '.join(ENGINES)}")


def app_serving_traceback(exc: BaseException) -> Callable[..., Any]:
    """A WSGI app answering every request 500 with ``exc``'s traceback, so a developer sees the error.

    Used when ``reload`` is on and the app failed to import: the worker keeps running, the reloader
    watches the broken file, and saving a fix restarts the worker with the repaired app.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    body = text.encode("utf-8", "replace")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]

    def serve_traceback(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("500 Internal Server Error", list(headers))
        return [body]

    return serve_traceback
