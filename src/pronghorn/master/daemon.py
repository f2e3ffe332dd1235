"""Detach the server from the terminal that started it (``-D`` / ``--daemon``).

How this works: the starting process forks; the child calls ``setsid()`` so it leads a new session
with no controlling terminal, points the standard streams at ``/dev/null``, then forks once more and
exits, so the grandchild, which goes on to become the master, is not a session leader and can never
acquire a terminal again. The starting
process waits for the intermediate child, so it knows the grandchild exists (or why it could not be
created) before it exits 0 with ``os._exit`` (no ``atexit`` handlers, no buffered output flushed twice).

Call ``daemonize()`` before the arbiter binds its listeners or writes the pidfile: the pidfile must
hold the daemon's pid, and nothing opened before the call is closed by it. The working directory and
the umask are left as they are (``chdir`` and ``umask`` are settings applied elsewhere). The process
must not have started threads yet: only the forking thread survives a fork.
"""

from __future__ import annotations

import os
import sys

_DEV_NULL = os.devnull


def daemonize(enable_stdio_inheritance: bool) -> None:
    """Turn the calling process into a background daemon; returns only in the daemon.

    Standard input is always redirected to ``/dev/null``; standard output and error are too unless
    ``enable_stdio_inheritance`` is true, in which case they stay where they were. Raises ``OSError``
    in the calling process if a fork or ``setsid()`` fails (nothing has exited at that point).
    """
    flush_stdio()
    first = os.fork()
    if first > 0:
        _exit_once_detached(first)
    # Intermediate child: a new session, the standard streams, then the fork that leaves the session
    # leader behind. Anything going wrong here is reported to the starting process as the exit code.
    try:
        os.setsid()
        _redirect_stdio(enable_stdio_inheritance)
        second = os.fork()
    except OSError as exc:
        os._exit(exc.errno if exc.errno and 0 < exc.errno < 256 else 1)
    except BaseException:
        os._exit(1)
    if second > 0:
        os._exit(0)


def _exit_once_detached(intermediate: int) -> None:
    """In the starting process: wait for the intermediate child, then exit 0 (or raise why not)."""
    while True:
        try:
            _, status = os.waitpid(intermediate, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        os._exit(0)
    if code > 0:
        raise OSError(code, f"could not detach into the background: {os.strerror(code)}")
    raise OSError(f"could not detach into the background: helper process killed by signal {-code}")


def _redirect_stdio(keep_output: bool) -> None:
    null = os.open(_DEV_NULL, os.O_RDWR)
    try:
        targets = (0,) if keep_output else (0, 1, 2)
        for fd in targets:
            if fd != null:
                os.dup2(null, fd)
    finally:
        if null > 2:
            os.close(null)


def flush_stdio() -> None:
    """Flush Python's buffers before a fork, so output written before it appears exactly once.

    Without it, what ``print()`` left in a block-buffered ``sys.stdout`` (a file or a pipe, no
    ``PYTHONUNBUFFERED``) is copied into the child and written again by each process that flushes.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
