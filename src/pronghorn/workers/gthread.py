"""The gthread worker: an event loop does every socket operation; the application sees whole requests.

How this works:

* One asyncio loop per worker (uvloop when it is installed). ``Admission`` watches the listeners and
  accepts (never waiting on a client; spreading connections between siblings through the
  ``ConnectionBoard``), up to ``worker_connections`` open at once.
* Each connection is an ``HttpConnection`` protocol. Bytes go into the sans-IO parser; the loop
  collects the head and the whole body (a large body goes to a temporary file, never more than
  ``limit_request_body``) before the request cycle runs the app: inline on the loop thread when
  ``threads == 1``, else on a pool of ``threads`` threads. A slow client never holds an app thread.
* The response iterable is pulled only while the client takes what was written: an item the app
  yields is written before the next is asked for, and a response to a client that does not read is
  parked (no thread, one item buffered) until the transport drains. Whole small responses are held
  to the end of the loop's pass and written together.
* Keep-alive and pipelining: after a response the parser goes on with the bytes already buffered;
  requests on one connection are answered in order, one at a time.
* A tick twice a second refreshes the heartbeat (an app blocking the loop thread stops it, and the
  master aborts the worker at ``timeout``: the request is answered 500), enforces ``header_timeout``,
  ``keepalive``, the body idle deadline and the stall deadline of a parked response, and answers
  requests running past ``request_timeout`` on a pool thread with 504 (inline, SIGALRM interrupts).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from types import FrameType
from typing import Any

from pronghorn.apps.cycle import WorkerAborted
from pronghorn.apps.loading import is_asgi_app
from pronghorn.workers.admission import Admission
from pronghorn.workers.app_threads import AppThreads
from pronghorn.workers.base import Worker
from pronghorn.workers.http_connection import STOP_LINGER
from pronghorn.workers.worker_loop import WorkerLoop

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # only the build needs it: without it the decorator does nothing
    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda cls: cls

TICK = 0.5  # seconds between deadline checks: a deadline is enforced at most this late

# Imported with this module, i.e. in the master before it forks (the master resolves the worker
# class): the extension's start-up code then runs once, and its memory is shared with the workers
# instead of being built again (and touched) in each of them.
try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    _uvloop = None  # type: ignore[assignment]


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (``kind``: ``asgi_loop``, which may ask for asyncio's own)."""
    if event_loop_name(kind) == "asyncio":
        return asyncio.new_event_loop()
    return _uvloop.new_event_loop()


def event_loop_name(kind: str = "auto") -> str:
    return "asyncio" if _uvloop is None or kind == "asyncio" else "uvloop"


@mypyc_attr(allow_interpreted_subclasses=True)  # AsgiWorker, and worker classes of users' own
class ThreadWorker(Worker):
    """Gunicorn's ``gthread`` name, on an event loop; ``WorkerLoop`` is what its connections see."""

    proxy_header_before_tls = True  # the connection does its own TLS, after the PROXY header

    asgi: Any = None  # an ``AsgiServing`` when the app is an ASGI app
    # Made in the child by ``prepare``:
    loop: asyncio.AbstractEventLoop
    pool: AppThreads | None
    worker_loop: WorkerLoop
    admission: Admission
    stopping_since: float
    left_loop: bool
    exit_code: int

    def make_cycle(self) -> Any:
        """An ASGI app (an async callable) is served on the same loop, by ``AsgiServing``."""
        if is_asgi_app(self.wsgi):
            from pronghorn.workers.asgi_serving import AsgiServing  # only for ASGI apps

            self.asgi = AsgiServing(self)
            return self.asgi.cycle
        return super().make_cycle()

    def run(self) -> None:
        self.prepare(new_event_loop(self.cfg.asgi_loop if self.asgi is not None else "auto"))
        if self.asgi is None:
            # A WSGI app is synchronous code: on this thread the loop is the server's, never the
            # app's. asyncio.get_running_loop() raises here as in any thread of a sync server, or
            # Django's ORM, its async views (async_to_sync) and asyncio.run() refuse to work. Hidden
            # once, at the loop's first pass: nothing of the worker asks asyncio for it.
            self.loop.call_soon(asyncio._set_running_loop, None)
        else:
            asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        self.loop.add_reader(self.wake_fd, self._drain_wake_pipe)
        self.loop.call_soon(self._tick)
        try:
            if self.asgi is not None:
                # The lifespan startup, before the first connection. A TERM meanwhile lets it finish
                # (the loop is not left), so that the shutdown follows a whole startup.
                self.left_loop = True
                self.asgi.start()
                self.left_loop = False
            if self.alive:
                self.admission.start()
                self.loop.run_forever()
        finally:
            self.left_loop = True
            if self.asgi is not None:
                self.asgi.stop(self.stopping_since)  # (0.0 after INT or QUIT: no waiting)
            if self.pool is not None:
                self.pool.shutdown()
            self.loop.close()
        if self.exit_code:
            sys.exit(self.exit_code)

    def prepare(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's state in the child (the object itself was made in the master); no I/O yet."""
        assert self.cycle is not None
        self.loop = loop
        # An ASGI app's calls are tasks on the loop thread: no pool; for admission the worker then has
        # one thread, like an inline WSGI worker (a fresh connection shows it busy for a moment, and
        # siblings take the next ones: measured 77% -> 98% of throughput kept under slow POSTs).
        threads = max(1, self.cfg.threads) if self.asgi is None else 1
        self.pool = AppThreads(threads, "pronghorn-app", loop) if threads > 1 else None
        self.worker_loop = WorkerLoop(loop, self.cycle, self.log, self.cfg, self, self.pool, self.tls)
        self.stopping_since = 0.0
        self.left_loop = False
        self.exit_code = 0
        self.admission = Admission(
            loop,
            self.sockets,
            self.worker_loop.accepted,
            max_connections=self.cfg.worker_connections,
            threads=threads,
            seat=self.board_seat if self.cfg.workers > 1 else None,
            log=self.log,
        )
        self.worker_loop.admission = self.admission
        if self.asgi is not None:
            self.asgi.attach(loop, self.worker_loop)

    # --- WorkerHooks ---

    def request_finished(self) -> None:
        self.nr = self.worker_loop.handled
        self.check_limits()
        if not self.alive:
            self._stop_step(time.monotonic())

    def connection_closed(self) -> None:
        if not self.alive and self._nothing_left():
            self._leave_loop()

    def _nothing_left(self) -> bool:
        """No connection, nothing to accept, no ASGI app call still running (background work)."""
        return not self.worker_loop.connections and not self.admission.open and (
            self.asgi is None or not self.asgi.cycle.running)

    # --- the tick: heartbeat, deadlines, shutdown ---

    def _tick(self) -> None:
        self.notify()
        self.nr = self.worker_loop.handled  # counted by the loop; the memory limit is checked here
        self.check_limits()
        now = time.monotonic()
        if self.alive and not self.parent_alive():
            self.alive = False
            self.draining = False
        if not self.alive:
            self._stop_step(now)
        self.worker_loop.check_deadlines(now)
        self.loop.call_later(TICK, self._tick)

    def _stop_step(self, now: float) -> None:
        if not self.stopping_since:
            self.stopping_since = now
            self.admission.stop()
            if self.draining:
                self.admission.take_backlog()
            self.close_listeners()
            if self.asgi is not None:
                self.asgi.going_away(self.worker_loop.connections)
        # Idle keep-alive connections are not cut at once: a request already on its way would be
        # lost. Each is answered with "Connection: close" if a request comes, or closed when its
        # keep-alive deadline passes (at most ``keepalive`` seconds).
        connections = self.worker_loop.connections
        for conn in list(connections):
            if conn.idle and conn.deadline > now + STOP_LINGER:
                conn.deadline = now + STOP_LINGER
        finished = self._nothing_left()
        graceful = self.cfg.graceful_timeout - (self.asgi.shutdown_reserve() if self.asgi is not None else 0.0)
        if finished or now - self.stopping_since > graceful:
            self._leave_loop()

    def _leave_loop(self) -> None:
        if not self.left_loop:  # (after it, the loop runs only the ASGI app's last steps)
            self.loop.stop()

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass
        if not self.alive:
            self._stop_step(time.monotonic())

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What the loop would print on stderr goes to the error log, once."""
        exc = context.get("exception")
        message = context.get("message", "Unhandled error in the event loop")
        if exc is not None:
            self.log.error("%s", message, exc_info=(type(exc), exc, exc.__traceback__))
        else:
            self.log.error("%s", message)

    # --- signals ---

    def handle_quit(self, signum: int, frame: FrameType | None) -> None:
        """Quick stop (INT, QUIT): leave the loop at once. Raising SystemExit here, as the sync
        worker does, would land inside whichever protocol callback runs, which uvloop reports as a
        fatal transport error and survives."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            super().handle_quit(signum, frame)
            return
        self.alive = False
        self.call_hook("worker_int", self)
        loop.stop()  # run() returns once the current callback is done; open connections are dropped

    def handle_abort(self, signum: int, frame: FrameType | None) -> None:
        """The master's ``timeout`` abort. A request running on this thread is interrupted and answered
        500 (``WorkerAborted``); requests on pool threads that have sent nothing are answered 500 too."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            super().handle_abort(signum, frame)
            return
        if self.exit_code:
            return  # already on the way out
        self.alive = False
        self.exit_code = 1
        self.call_hook("worker_abort", self)
        worker_loop = self.worker_loop
        worker_loop.aborting = True
        if worker_loop.running_inline is not None:
            raise WorkerAborted()  # answered 500 by the request cycle; the loop then leaves
        loop.call_soon(worker_loop.leave_after_abort)

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        super().handle_exit(signum, frame)
        # The loop may own the signal wake-up descriptor; make it act now rather than at the tick.
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_step, time.monotonic())

