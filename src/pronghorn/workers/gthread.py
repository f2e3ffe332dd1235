"""The gthread worker: an event loop does every socket operation; the application sees whole requests.

How this works:

* One asyncio loop per worker (uvloop when it is installed). Listening sockets are watched with
  ``add_reader``; while every application thread is busy, or ``worker_connections`` connections
  are open, the worker stops watching them so an idle sibling takes the next connection. A worker
  holding clearly more connections than an accepting sibling (``ConnectionBoard``) leaves new ones
  to it for a moment, so keep-alive connections, and the memory they cost, spread evenly.
* Each connection is an ``HttpConnection`` protocol. Bytes go into the sans-IO parser; the loop
  collects the head and the whole body (a large body goes to a temporary file) before the request
  is run through ``RequestCycle``: inline on the loop thread when ``threads == 1``, else on a pool
  of ``threads`` threads. A slow client therefore never holds an application thread.
* Responses go out through ``DirectSink`` (inline) or ``ThreadSink`` (pool); both keep memory
  bounded when a client reads slowly.
* Keep-alive and pipelining: after a response the parser goes on with the bytes already buffered;
  requests on one connection are answered in order, one at a time.
* A one-second tick refreshes the heartbeat (an application blocking the loop thread stops it, and
  the master kills the worker at ``timeout``), enforces ``header_timeout``, ``keepalive`` and the
  body idle deadline, and answers requests running past ``request_timeout`` with 504.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import time
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any

from pronghorn.apps.cycle import RequestTimedOut
from pronghorn.apps.wsgi import NO_BODY, Response
from pronghorn.http import ProtocolError, error_response
from pronghorn.net.listeners import Listener
from pronghorn.workers.base import Worker
from pronghorn.workers.connection_board import NOT_ACCEPTING
from pronghorn.workers.http_connection import STOP_LINGER, HttpConnection, client_ip
from pronghorn.workers.loop_io import AppThreads, ThreadSink

if TYPE_CHECKING:
    from pronghorn.apps.wsgi import ResponseSink

# A connection just accepted counts as a request about to need an app thread until its first request
# is dispatched, it closes, or this many seconds pass (so silent connections cannot block accepting).
FRESH_GRACE = 0.1
# A pool at capacity leaves new connections to idle siblings; if none takes them within this
# long, every worker is busy and this one accepts anyway (its threads then serve them in order).
OVERFLOW_WAIT = 0.02
# A worker holding more than BALANCE_SLACK connections above an accepting sibling leaves new ones to
# it (``ConnectionBoard``), and takes those still waiting after BALANCE_WAIT itself. Short, so the
# one-sided stretches while it is not watching stay small.
BALANCE_SLACK = 16
BALANCE_WAIT = 0.002


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
    """Gunicorn's ``gthread`` name, on an event loop."""

    def run(self) -> None:
        cfg = self.cfg
        self.threads = max(1, cfg.threads)
        self.header_timeout = float(cfg.header_timeout)
        self.tmp_upload_dir = cfg.tmp_upload_dir
        self.request_timeout = float(cfg.request_timeout or 0)
        self.keepalive = float(cfg.keepalive)
        self.worker_connections = cfg.worker_connections
        self.pool = AppThreads(self.threads, "pronghorn-app") if self.threads > 1 else None
        self.connections: set[HttpConnection] = set()
        self.held: list[HttpConnection] = []  # connections holding responses until the loop's pass ends
        self.pending_accepts = 0
        self.overflow_check_scheduled = False
        self.fresh = 0  # connections whose first request is not dispatched yet (HttpConnection.fresh)
        self.fresh_until: deque[tuple[float, HttpConnection]] = deque()  # in accept order: one timer for all
        self.busy = 0
        self.accepting = False
        self.loop = new_event_loop()
        self.stopping_since = 0.0
        # One connection at a time per readiness event when siblings share the socket (fair spread).
        self.has_siblings = cfg.workers > 1
        self.accept_batch = 1 if self.has_siblings else 16
        self.seat = self.board_seat if self.has_siblings else None
        self.published_load = NOT_ACCEPTING  # what the seat holds (a new seat starts there)
        asyncio.set_event_loop(self.loop)
        for listener in self.sockets:
            listener.socket.setblocking(False)
        self.loop.add_reader(self.wake_fd, self._drain_wake_pipe)
        self.update_accepting()
        self.loop.call_soon(self._tick)
        try:
            self.loop.run_forever()
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            self.loop.close()

    # --- accepting ---

    def has_room(self) -> bool:
        # Capacity: requests running, plus (when siblings share the listeners, so one of them can take
        # the connection instead) connections just accepted whose first request will soon need a
        # thread. Inline (threads == 1) the loop cannot accept while the app runs anyway, so there
        # only the just-accepted ones count: without them one worker takes a burst of connections
        # while its sibling idles, and all but the first wait.
        claims = self.pending_accepts + self.fresh if self.has_siblings else 0
        return (
            self.alive
            and (claims == 0 if self.pool is None else self.busy + claims < self.threads)
            and len(self.connections) < self.worker_connections
        )

    def update_accepting(self) -> None:
        """Watch the listeners while there is room. When only the threads are busy, they stay watched
        until a connection actually waits (``_accept`` stops then): a pool filling and draining with
        every request would otherwise remove and re-add the readers (epoll_ctl) each time."""
        want = self.has_room()
        if not want and self.accepting and self.alive and len(self.connections) < self.worker_connections:
            return
        self._watch(want)

    def _watch(self, want: bool) -> None:
        if not want and self.pool is not None and self.alive:
            self._check_overflow_soon(OVERFLOW_WAIT)
        if want == self.accepting:
            return
        self.accepting = want
        for listener in self.sockets:
            if want:
                self.loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                self.loop.remove_reader(listener.fileno())
        self._publish_load()

    def _check_overflow_soon(self, delay: float) -> None:
        if not self.overflow_check_scheduled:
            self.overflow_check_scheduled = True
            self.loop.call_later(delay, self._accept_overflow)

    def _accept_overflow(self) -> None:
        """Not watching for a moment (at capacity, or leaving connections to a sibling with fewer):
        take the connections no sibling took meanwhile."""
        self.overflow_check_scheduled = False
        if self.accepting or not self.alive:
            return
        room = self.worker_connections - len(self.connections) - self.pending_accepts
        for listener in self.sockets:
            if room <= 0:
                break
            queued = listener.queued_connections()
            if queued != 0:
                # Leave some for busy siblings checking too; without a count (unix sockets) try one.
                taken = min(room, 1 if queued is None else max(1, queued // 2))
                self._accept(listener, limit=taken)
                room -= taken
        self._watch(self.has_room())  # schedules the next check while the pool stays full

    def _publish_load(self) -> None:
        """Put this worker's count on the board, when it changed."""
        load = len(self.connections) + self.pending_accepts if self.accepting else NOT_ACCEPTING
        if self.seat is not None and load != self.published_load:
            self.published_load = load
            self.seat.publish(load)

    def _leave_to_sibling(self) -> bool:
        """True (and not watching for BALANCE_WAIT) if an accepting sibling holds clearly fewer connections."""
        load = len(self.connections) + self.pending_accepts
        if self.seat is None or load <= BALANCE_SLACK:  # nobody can hold clearly fewer: skip the board
            return False
        fewest = self.seat.fewest_elsewhere()
        if fewest is None or load <= fewest + BALANCE_SLACK:
            return False
        self._check_overflow_soon(BALANCE_WAIT)  # first: with a pool, _watch() would schedule OVERFLOW_WAIT
        self._watch(False)
        return True

    def _accept(self, listener: Listener, limit: int | None = None) -> None:
        if limit is None:
            if not self.has_room():
                self._watch(False)  # a connection waits: leave it to idle siblings
                return
            if self._leave_to_sibling():
                return
        for _ in range(limit if limit is not None else self.accept_batch):
            try:
                sock, addr = listener.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE):
                    if exc.errno in (errno.EMFILE, errno.ENFILE):
                        self.log.error("Out of file descriptors accepting a connection: %s", exc)
                    return
                raise
            sock.setblocking(False)
            if not listener.is_unix:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending_accepts += 1
            self._publish_load()
            self.loop.create_task(self._connect(listener, sock, addr))
            if limit is None and not self.has_room():
                self._watch(False)
                return
            if len(self.connections) >= self.worker_connections:
                self.update_accepting()
                return

    async def _connect(self, listener: Listener, sock: socket.socket, addr: Any) -> None:
        # Until connection_made() the connection is in no set: it is counted from accept() on, or a
        # stopping worker could exit with it unanswered (and the client would see a reset).
        try:
            fileno = sock.fileno()
            await self.loop.connect_accepted_socket(lambda: HttpConnection(self, listener, addr, fileno), sock)
        except OSError:
            sock.close()
        finally:
            self.pending_accepts -= 1
            self._publish_load()
            self.update_accepting()  # a connection that failed to set up no longer claims a thread

    def hold(self, conn: HttpConnection) -> None:
        """A connection holds a response: flush it once the loop has handled every ready one."""
        self.held.append(conn)
        if len(self.held) == 1:
            self.loop.call_soon(self._flush_held)

    def _flush_held(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.flush()

    def connection_opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)
        self.fresh += 1
        self.fresh_until.append((time.monotonic() + FRESH_GRACE, conn))
        if len(self.fresh_until) == 1:  # else the timer for an earlier one is pending
            self.loop.call_later(FRESH_GRACE, self._fresh_expired)
        # Not published: until _connect() ends it is also in pending_accepts, counted at accept().

    def _fresh_expired(self) -> None:
        now = time.monotonic()
        waiting = self.fresh_until
        while waiting and waiting[0][0] <= now:
            waiting.popleft()[1].settle()
        if waiting:
            self.loop.call_later(waiting[0][0] - now, self._fresh_expired)
        self.update_accepting()

    def connection_closed(self) -> None:
        self._publish_load()
        self.update_accepting()
        if not self.alive and not self.connections and not self.pending_accepts:
            self.loop.stop()

    # --- running requests ---

    def run_request(self, conn: HttpConnection, sink: ResponseSink) -> Response | None:
        """Run one request through the request cycle (on a pool thread, or inline)."""
        assert self.cycle is not None and conn.head is not None
        head = conn.head
        if head.expect_continue:
            # The loop sent 100 Continue when the head arrived; the app's first read must not repeat it.
            head = head._replace(expect_continue=False)
        try:
            return self.cycle.run(head, conn.body or NO_BODY, sink, conn.client, keep_alive=self.keepalive > 0 and self.alive)
        except ProtocolError as exc:  # refused before the app ran (contradictory proxy headers)
            self.log.warning("Invalid request from ip=%s: %s", client_ip(conn.peer), exc)
            if exc.respond:
                try:
                    sink.write(exc.to_response())
                except Exception:  # noqa: BLE001 - the client is gone; nothing more to do
                    pass
            return None

    def run_pooled(self, conn: HttpConnection, sink: ThreadSink) -> None:
        """On a pool thread: run the request, then hand the connection back to the loop."""
        response = None
        try:
            response = self.run_request(conn, sink)
        except BaseException:  # noqa: BLE001 - the loop must still get the connection back
            self.log.exception("Error running request")
        finally:
            try:
                self.loop.call_soon_threadsafe(conn.request_finished, response, sink.final)
            except RuntimeError:  # the loop is closed: the worker is exiting
                pass

    def run_inline(self, conn: HttpConnection, sink: ResponseSink) -> Response | None:
        """Run a request on the loop thread; ``request_timeout`` interrupts it with SIGALRM."""
        limit = self.request_timeout
        if not limit:
            return self.run_request(conn, sink)
        previous = signal.signal(signal.SIGALRM, self._request_timed_out)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            return self.run_request(conn, sink)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _request_timed_out(self, signum: int, frame: FrameType | None) -> None:
        # The application's state may be inconsistent after the interruption: recycle the worker.
        if self.alive:
            self.log.info("Autorestarting worker after a request timeout.")
            self.alive = False
        raise RequestTimedOut(f"Request timed out after {self.cfg.request_timeout}s")

    # --- the tick: heartbeat, deadlines, shutdown ---

    def _tick(self) -> None:
        self.notify()
        now = time.monotonic()
        if self.alive and not self.parent_alive():
            self.alive = False
            self.draining = False
        if not self.alive:
            self._stop_step(now)
        for conn in list(self.connections):
            if conn.busy:
                self._check_request_timeout(conn, now)
            elif now > conn.deadline:
                if conn.head is not None:
                    # RFC 9110 section 15.5.9: the request was not completed in time.
                    conn.write_raw(error_response(408, "Request Timeout", "The request body was not received in time."))
                conn.close()
        self.loop.call_later(1.0, self._tick)

    def _check_request_timeout(self, conn: HttpConnection, now: float) -> None:
        limit = float(self.cfg.request_timeout)
        if not limit or now - conn.started <= limit or conn.sink is None:
            return
        head = conn.head
        self.log.error(
            "Request timed out after %ss: %s %s", self.cfg.request_timeout,
            head.method.decode("ascii") if head else "-", head.path.decode("latin-1") if head else "-",
        )
        if conn.sink.take_over():
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
            self.update_accepting()
            if self.draining:
                for listener in self.sockets:
                    queued = listener.queued_connections()
                    self._accept(listener, limit=queued if queued is not None else 64)
        # Idle keep-alive connections are not cut at once: a request already on its way would be
        # lost. Each is answered with "Connection: close" if a request comes, or closed when its
        # keep-alive deadline passes (at most ``keepalive`` seconds).
        for conn in list(self.connections):
            if conn.idle and conn.deadline > now + STOP_LINGER:
                conn.deadline = now + STOP_LINGER
        finished = not self.connections and not self.pending_accepts
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

    def handle_exit(self, signum: int, frame: FrameType | None) -> None:
        super().handle_exit(signum, frame)
        # The loop may own the signal wake-up descriptor; make it act now rather than at the tick.
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_step, time.monotonic())
