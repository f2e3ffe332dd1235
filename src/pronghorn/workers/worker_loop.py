"""The event-loop side of a gthread worker: what its connections share and ask of it.

``ThreadWorker`` (a ``Worker``: signals, heartbeat, the process's life) builds one ``WorkerLoop`` in
the child. The loop's hot path lives here, in a compiled class, so that a request's calls between
the connection and its worker are native: running a request inline or handing it to the pool,
holding whole responses to the end of the loop's pass, the deadlines the tick enforces.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
from time import monotonic, thread_time  # module globals: no attribute look-up per call
from types import FrameType
from typing import Any, Protocol

from pronghorn.apps.cycle import Exchange, RequestCycle, RequestTimedOut, WorkerAborted
from pronghorn.http import error_response
from pronghorn.net.listeners import Listener
from pronghorn.workers.admission import Admission, FreshClaim
from pronghorn.workers.app_threads import PoolJob
from pronghorn.workers.http_connection import HttpConnection


YIELD_AFTER = 0.0003  # seconds of busy loop passes after which a worker offers its core (_offer_core)
BUSY_SHARE = 0.9  # "busy": the loop thread ran for this share of the time


class WorkerHooks(Protocol):
    """What the loop tells its worker process."""

    alive: bool  # False once the worker is stopping: responses then say ``Connection: close``
    max_requests: int

    def request_finished(self) -> None:
        """``handled`` reached ``max_requests``, or the worker is stopping (it may be done)."""

    def connection_closed(self) -> None:
        """A stopping worker may be done."""


class JobPool(Protocol):
    def submit(self, job: PoolJob) -> None: ...


class WorkerLoop:
    """Shared by every connection of one worker (see the module doc)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cycle: RequestCycle,
        log: Any,
        cfg: Any,
        worker: WorkerHooks,
        pool: JobPool | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = loop
        self.tls = tls
        self.suppress_ragged_eofs = bool(cfg.suppress_ragged_eofs)
        self.url_scheme = "https" if tls is not None else "http"
        self.cycle = cycle
        self.log = log
        self.worker = worker
        self.pool = pool
        self.admission: Admission | None = None  # set once made (it calls back into ``accepted``)
        self.header_timeout = float(cfg.header_timeout)
        self.keepalive = float(cfg.keepalive)
        self.request_timeout = float(cfg.request_timeout or 0)
        # A response the client takes nothing of for this long is dropped (the sync worker's socket
        # timeout, and Gunicorn's): the worker's ``timeout``; 0 waits for ever.
        self.stall_timeout = float(cfg.timeout)
        self.tmp_upload_dir: str | None = cfg.tmp_upload_dir
        self.threads = max(1, int(cfg.threads))
        self.connections: set[HttpConnection] = set()
        self.held: list[HttpConnection] = []  # connections holding responses until the loop's pass ends
        self.on_threads = 0  # requests whose step runs on a pool thread
        self.handled = 0  # requests answered (the worker's ``nr``, which it reads from here)
        self.max_requests = worker.max_requests
        self.marked_busy = False  # siblings see this worker busy until the end of the loop's pass
        # _offer_core's window: since when, and the loop thread's CPU time then
        self.window_started = monotonic()
        self.window_cpu = thread_time()
        # What a new connection is: ``AsgiConnection`` when the app is an ASGI app.
        self.connection_class: type[HttpConnection] = HttpConnection
        self.running_inline: Exchange | None = None  # the request the loop's own thread is running
        self.aborting = False  # the master aborted the worker: leave once the running request is answered

    @property
    def alive(self) -> bool:
        return self.worker.alive

    # --- connections ---

    def accepted(self, listener: Listener, sock: socket.socket, addr: Any, claim: FreshClaim) -> None:
        self.loop.create_task(self._connect(listener, sock, addr, claim))

    async def _connect(self, listener: Listener, sock: socket.socket, addr: Any, claim: FreshClaim) -> None:
        fileno = sock.fileno()
        try:
            # (TLS is the connection's own: see ``HttpConnection.tls``.)
            await self.loop.connect_accepted_socket(lambda: self.connection_class(self, listener, addr, fileno, claim), sock)
        except OSError:
            sock.close()
            claim.settle()
            if self.admission is not None:
                self.admission.released()

    def opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)

    def closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.admission is not None:
            self.admission.released()
        self.worker.connection_closed()

    def hold(self, conn: HttpConnection) -> None:
        """A connection holds a response: flush it once the loop has handled every ready one."""
        self.held.append(conn)
        if len(self.held) == 1:
            self.loop.call_soon(self.flush_held)

    def flush_held(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.flush()
        self._offer_core()

    def _offer_core(self) -> None:
        """After a loop pass whose responses are out: give the core away if the loop was busy."""
        # A saturated worker never waits in the loop's poll, so the kernel would switch between it and
        # a sibling sharing its core (the usual 2 x cores + 1 workers) only when its time slice ends,
        # milliseconds later, while the sibling's clients wait. Offering the core once the responses
        # of ``YIELD_AFTER`` of uninterrupted work are out keeps that wait short (p99 5 ms -> 1.5 ms
        # measured). Only then: a worker that sleeps between requests is woken ahead of busy
        # processes, and giving the core away would only make it wait for them.
        now = monotonic()
        elapsed = now - self.window_started
        if elapsed > YIELD_AFTER:
            cpu = thread_time()
            busy = cpu - self.window_cpu
            self.window_started = now
            self.window_cpu = cpu
            if busy > BUSY_SHARE * elapsed:
                os.sched_yield()

    def request_finished(self) -> None:
        # Counted here, natively: the worker is only called when there is something to decide.
        self.handled += 1
        if self.handled >= self.max_requests or not self.worker.alive:
            self.worker.request_finished()

    # --- running requests ---

    def submit(self, conn: HttpConnection) -> None:
        """Run one step of the connection's request on a pool thread."""
        assert self.pool is not None
        self.on_threads += 1
        if self.admission is not None:
            self.admission.set_in_use(self.on_threads)
        self.pool.submit(conn)

    def back_from_thread(self) -> None:
        self.on_threads -= 1
        if self.admission is not None:
            self.admission.set_in_use(self.on_threads)

    def run_inline(self, exchange: Exchange, started: float) -> bool:
        """One step of a request on the loop thread; ``request_timeout`` interrupts it with SIGALRM."""
        if not self.marked_busy:
            # Busy for siblings until this pass of the loop is over, not around each request: under
            # load one pass runs many requests, and each publication writes to memory they share.
            self.marked_busy = True
            if self.admission is not None:
                self.admission.set_in_use(1)
            self.loop.call_soon(self._pass_over)
        self.running_inline = exchange
        limit = self.request_timeout
        previous: Any = None
        if limit:
            previous = signal.signal(signal.SIGALRM, self._request_timed_out)
            signal.setitimer(signal.ITIMER_REAL, max(0.001, limit - (monotonic() - started)))
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
            if self.aborting:
                self.loop.call_soon(self.leave_after_abort)

    def _pass_over(self) -> None:
        self.marked_busy = False
        if self.admission is not None:
            self.admission.set_in_use(0)
        # Responses too large to hold (a 1 MiB body) were written during the pass: offer the core
        # here too, or two such workers on one core take turns only when a time slice ends.
        if not self.held:  # else flush_held offers it, once the held responses are out
            self._offer_core()

    def _request_timed_out(self, signum: int, frame: FrameType | None) -> None:
        if self.running_inline is None:
            return
        # The application's state may be inconsistent after the interruption: recycle the worker.
        self._recycle_after_timeout()
        raise RequestTimedOut(f"Request timed out after {self.request_timeout:g}s")

    def _recycle_after_timeout(self) -> None:
        if self.worker.alive:
            self.log.info("Autorestarting worker after a request timeout.")
            self.worker.alive = False

    def leave_after_abort(self) -> None:
        """After the master's abort: answer 500 what pool threads have not answered, close, stop."""
        for conn in list(self.connections):
            if conn.running and conn.sink is not None and conn.sink.take_over():
                self.log.error("Worker timed out (aborted by the master): request from %s not answered in time", conn.peer)
                conn.write_raw(error_response(500, "Internal Server Error", "The application did not answer in time."))
            conn.close()
        self.loop.call_soon(self.loop.stop)  # after this pass, so what was just written is flushed

    # --- deadlines (the worker's tick) ---

    def check_deadlines(self, now: float) -> None:
        request_timeout = self.request_timeout
        metrics = self.cycle.metrics
        if metrics is not None:  # sampled here, not counted per request: the tick is cheap
            metrics.gauges(sum(1 for conn in self.connections if conn.busy), len(self.connections))
        for conn in list(self.connections):
            conn.check_deadline(now, request_timeout)

    def cut_short(self, conn: HttpConnection) -> None:
        """A request on a pool thread ran past ``request_timeout``: answer 504 if nothing was sent."""
        exchange = conn.exchange
        head = conn.head
        self.log.error(
            "Request timed out after %ss: %s %s", f"{self.request_timeout:g}",
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
        self._recycle_after_timeout()
