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
import signal
import socket
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from pronghorn.apps.cycle import Exchange, RequestTimedOut, WorkerAborted
from pronghorn.http import error_response
from pronghorn.net.listeners import Listener
from pronghorn.workers.admission import Admission, FreshClaim
from pronghorn.workers.app_threads import AppThreads
from pronghorn.workers.base import Worker
from pronghorn.workers.http_connection import STOP_LINGER, HttpConnection, LoopSettings

if TYPE_CHECKING:
    from pronghorn.apps.cycle import RequestCycle

TICK = 0.5  # seconds between deadline checks: a deadline is enforced at most this late

# Imported with this module, i.e. in the master before it forks (the master resolves the worker
# class): the extension's start-up code then runs once, and its memory is shared with the workers
# instead of being built again (and touched) in each of them.
try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    _uvloop = None  # type: ignore[assignment]


def new_event_loop() -> asyncio.AbstractEventLoop:
    if _uvloop is None:
        return asyncio.new_event_loop()
    return _uvloop.new_event_loop()


class ThreadWorker(Worker):
    """Gunicorn's ``gthread`` name, on an event loop. It is the ``ConnectionHost`` of its connections."""

    def run(self) -> None:
        self.prepare(new_event_loop())
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        self.loop.add_reader(self.wake_fd, self._drain_wake_pipe)
        self.admission.start()
        self.loop.call_soon(self._tick)
        try:
            self.loop.run_forever()
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            self.loop.close()
        if self.exit_code:
            sys.exit(self.exit_code)

    def prepare(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's state in the child (the object itself was made in the master); no I/O yet."""
        self.loop = loop
        self.settings = LoopSettings(self.cfg)
        self.pool = AppThreads(self.settings.threads, "pronghorn-app", self.loop) if self.settings.threads > 1 else None
        self.connections: set[HttpConnection] = set()
        self.held: list[HttpConnection] = []  # connections holding responses until the loop's pass ends
        self.busy = 0  # requests in the request cycle
        self.on_threads = 0  # requests whose step runs on a pool thread
        self.running_inline: Exchange | None = None  # the request the loop's own thread is running
        self.stopping_since = 0.0
        self.exit_code = 0
        seat = self.board_seat if self.cfg.workers > 1 else None
        self.admission = Admission(
            self.loop,
            self.sockets,
            self._accepted,
            max_connections=self.cfg.worker_connections,
            threads=self.settings.threads,
            seat=seat,
            log=self.log,
        )

    # --- ConnectionHost ---

    @property
    def request_cycle(self) -> RequestCycle:
        assert self.cycle is not None
        return self.cycle

    @property
    def accepting_requests(self) -> bool:
        return self.alive

    def opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)

    def closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        self.admission.released()
        if not self.alive and not self.connections and not self.admission.open:
            self.loop.stop()

    def hold(self, conn: HttpConnection) -> None:
        """A connection holds a response: flush it once the loop has handled every ready one."""
        self.held.append(conn)
        if len(self.held) == 1:
            self.loop.call_soon(self._flush_held)

    def _flush_held(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.flush()

    def request_started(self) -> None:
        self.busy += 1

    def request_finished(self) -> None:
        self.busy -= 1
        self.handled_request()
        if not self.alive:
            self._stop_step(time.monotonic())

    def submit(self, conn: HttpConnection) -> None:
        assert self.pool is not None
        self.on_threads += 1
        self.admission.set_in_use(self.on_threads)
        self.pool.submit(conn)

    def back_from_thread(self) -> None:
        self.on_threads -= 1
        self.admission.set_in_use(self.on_threads)

    def run_inline(self, exchange: Exchange, started: float) -> bool:
        """One step of a request on the loop thread; ``request_timeout`` interrupts it with SIGALRM."""
        self.admission.set_in_use(1)
        self.running_inline = exchange
        limit = self.settings.request_timeout
        if limit:
            previous = signal.signal(signal.SIGALRM, self._request_timed_out)
            signal.setitimer(signal.ITIMER_REAL, max(0.001, limit - (time.monotonic() - started)))
        try:
            return exchange.step()
        except (RequestTimedOut, WorkerAborted):  # raised outside the app (a hook, the access log)
            exchange.response.failed = True
            exchange.finalise()
            return True
        finally:
            if limit:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            self.running_inline = None
            self.admission.set_in_use(0)
            if self.exit_code:
                self.loop.call_soon(self._leave_after_abort)

    def _request_timed_out(self, signum: int, frame: FrameType | None) -> None:
        if self.running_inline is None:
            return
        # The application's state may be inconsistent after the interruption: recycle the worker.
        if self.alive:
            self.log.info("Autorestarting worker after a request timeout.")
            self.alive = False
        raise RequestTimedOut(f"Request timed out after {self.cfg.request_timeout}s")

    # --- accepting ---

    def _accepted(self, listener: Listener, sock: socket.socket, addr: Any, claim: FreshClaim) -> None:
        self.loop.create_task(self._connect(listener, sock, addr, claim))

    async def _connect(self, listener: Listener, sock: socket.socket, addr: Any, claim: FreshClaim) -> None:
        fileno = sock.fileno()
        try:
            await self.loop.connect_accepted_socket(lambda: HttpConnection(self, listener, addr, fileno, claim), sock)
        except OSError:
            sock.close()
            claim.settle()
            self.admission.released()

    # --- the tick: heartbeat, deadlines, shutdown ---

    def _tick(self) -> None:
        self.notify()
        now = time.monotonic()
        if self.alive and not self.parent_alive():
            self.alive = False
            self.draining = False
        if not self.alive:
            self._stop_step(now)
        request_timeout = self.settings.request_timeout
        for conn in list(self.connections):
            if conn.running:
                if request_timeout and now - conn.started > request_timeout:
                    self._cut_short(conn)
            elif now > conn.deadline:
                if conn.parked:
                    self.log.debug("Client %s stopped reading its response; closing", conn.peer)
                    conn.abort()
                    continue
                if conn.head is not None and not conn.busy:
                    # RFC 9110 section 15.5.9: the request was not completed in time.
                    conn.write_raw(error_response(408, "Request Timeout", "The request body was not received in time."))
                conn.close()
        self.loop.call_later(TICK, self._tick)

    def _cut_short(self, conn: HttpConnection) -> None:
        """A request on a pool thread ran past ``request_timeout``: answer 504 if nothing was sent."""
        exchange = conn.exchange
        head = conn.head
        self.log.error(
            "Request timed out after %ss: %s %s", self.cfg.request_timeout,
            head.method.decode("ascii") if head else "-", head.path.decode("latin-1") if head else "-",
        )
        conn.running = False  # logged once; the thread's outcome is ignored when it comes back
        if conn.sink is not None and conn.sink.take_over() and exchange is not None:
            exchange.response.failed = True
            conn.write_raw(error_response(504, "Gateway Timeout", "The application did not answer in time."))
            conn.close()
        else:
            conn.abort()
        # The thread cannot be stopped; recycle the worker once the others are done.
        if self.alive:
            self.log.info("Autorestarting worker after a request timeout.")
            self.alive = False

    def _stop_step(self, now: float) -> None:
        if not self.stopping_since:
            self.stopping_since = now
            self.admission.stop()
            if self.draining:
                self.admission.take_backlog()
        # Idle keep-alive connections are not cut at once: a request already on its way would be
        # lost. Each is answered with "Connection: close" if a request comes, or closed when its
        # keep-alive deadline passes (at most ``keepalive`` seconds).
        for conn in list(self.connections):
            if conn.idle and conn.deadline > now + STOP_LINGER:
                conn.deadline = now + STOP_LINGER
        finished = not self.connections and not self.admission.open
        if finished or now - self.stopping_since > self.cfg.graceful_timeout:
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
        if self.running_inline is not None:
            raise WorkerAborted()
        loop.call_soon(self._leave_after_abort)

    def _leave_after_abort(self) -> None:
        for conn in list(self.connections):
            if conn.running and conn.sink is not None and conn.sink.take_over():
                self.log.error("Worker timed out (aborted by the master): request from %s not answered in time", conn.peer)
                conn.write_raw(error_response(500, "Internal Server Error", "The application did not answer in time."))
            conn.close()
        self.loop.call_soon(self.loop.stop)  # after this pass, so what was just written is flushed

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        super().handle_exit(signum, frame)
        # The loop may own the signal wake-up descriptor; make it act now rather than at the tick.
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_step, time.monotonic())

