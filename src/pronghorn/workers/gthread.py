"""The gthread worker: an event loop does every socket operation; the application sees whole requests.

How this works:

* One asyncio loop per worker (uvloop when it is installed). Listening sockets are watched with
  ``add_reader``; while every application thread is busy, or ``worker_connections`` connections
  are open, the worker stops watching them so an idle sibling takes the next connection.
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
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from pronghorn.apps.cycle import RequestTimedOut
from pronghorn.apps.wsgi import NO_BODY, BytesBody, ClientDisconnected, Response
from pronghorn.http import (
    CONNECTION_CLOSED,
    CONTINUE_RESPONSE,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
    error_response,
)
from pronghorn.net.listeners import Listener
from pronghorn.workers.base import Worker
from pronghorn.workers.loop_io import SPILL_THRESHOLD, AppThreads, DirectSink, FlowControl, SpooledBody, ThreadSink

if TYPE_CHECKING:
    from pronghorn.apps.wsgi import ResponseSink

READ_PAUSE_BYTES = 256 * 1024  # stop reading a connection whose unprocessed bytes pass this
# A connection just accepted counts as a request about to need an app thread until its first request
# is dispatched, it closes, or this many seconds pass (so silent connections cannot block accepting).
FRESH_GRACE = 0.1
# A pool at capacity leaves new connections to idle siblings; if none takes them within this
# long, every worker is busy and this one accepts anyway (its threads then serve them in order).
OVERFLOW_WAIT = 0.02
STOP_LINGER = 2.0  # how long an idle keep-alive connection is kept once the worker is stopping


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


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, collect the body, run the request, keep alive or close."""

    # A worker may hold thousands of idle keep-alive connections: no per-instance dict.
    __slots__ = (
        "worker", "listener", "fileno", "peer", "client", "parser", "transport", "head", "body", "busy", "closing",
        "reading_paused", "deadline", "started", "flow", "sink", "direct_sink", "fresh",
    )

    def __init__(self, worker: ThreadWorker, listener: Listener, peer: Any, fileno: int) -> None:
        self.worker = worker
        self.listener = listener
        self.fileno = fileno
        self.peer: tuple[str, int] | str | None
        if isinstance(peer, tuple):
            self.peer = peer if len(peer) == 2 else (peer[0], peer[1])  # IPv6 addresses come with 4 items
        else:
            self.peer = peer or None
        assert worker.cycle is not None
        self.client = worker.cycle.connection(self.peer, listener.server_name, multithread=worker.pool is not None)
        self.parser = RequestParser(self.client.limits)
        self.transport: asyncio.Transport | None = None
        self.head: RequestHead | None = None
        self.body: SpooledBody | BytesBody | None = None  # made when the first body bytes arrive
        self.busy = False  # a request is being run by the application
        self.closing = False
        self.reading_paused = False
        self.deadline = time.monotonic() + worker.header_timeout
        self.started = 0.0
        # Only application threads wait on flow control; inline, the loop thread writes itself.
        self.flow = FlowControl() if worker.pool is not None else None
        self.sink: ThreadSink | None = None
        self.direct_sink: DirectSink | None = None  # inline mode: the socket itself, made once
        self.fresh = False  # accepted, first request not dispatched yet (counted in ``worker.fresh``)

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.worker.connections.add(self)
        self.fresh = True
        self.worker.fresh += 1
        self.worker.loop.call_later(FRESH_GRACE, self._fresh_expired)

    def settle(self) -> None:
        """No longer a request about to need an app thread (see ``ThreadWorker.update_accepting``)."""
        if self.fresh:
            self.fresh = False
            self.worker.fresh -= 1

    def _fresh_expired(self) -> None:
        if self.fresh:
            self.settle()
            self.worker.update_accepting()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.busy:
            if self.parser.buffered > READ_PAUSE_BYTES and not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self.process()

    def eof_received(self) -> bool | None:
        self.parser.feed(b"")
        if not self.busy:
            self.process()
        return True  # half-close: a pipelined request may still be answered

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flow is not None:
            self.flow.lose()
        if self.direct_sink is not None:
            self.direct_sink.discard()
        self.settle()
        self.worker.connections.discard(self)
        if self.body is not None and not self.busy:
            self.body.close()
        self.worker.connection_closed()

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.pause()

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.resume()

    # --- request handling ---

    def process(self) -> None:
        """Turn buffered bytes into events until a request is ready to run or more bytes are needed.

        Requests run inline are answered before ``dispatch()`` returns, so pipelined requests are
        taken in this loop (not by recursion); a request on the pool resumes it when it finishes.
        """
        worker = self.worker
        parser = self.parser
        while not self.busy and not self.closing:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                worker.log.warning("Invalid request from ip=%s: %s", _ip(self.peer), exc)
                if exc.respond:
                    self.write_raw(exc.to_response())
                self.close()
                return
            if event is NEED_DATA:
                return
            event_type = type(event)
            if event_type is BodyData:
                if not isinstance(self.body, SpooledBody):
                    self.body = SpooledBody(worker.tmp_upload_dir)
                self.body.write(event.data)  # type: ignore[union-attr]
                self.deadline = time.monotonic() + worker.header_timeout
            elif event_type is RequestHead:
                self.head = event  # type: ignore[assignment]
                if event.expect_continue:  # type: ignore[union-attr]
                    # The loop reads the body itself, so the client may send it now.
                    self.write_raw(CONTINUE_RESPONSE)
                # Usually the body (if any) came with the head: run the request now.
                data = parser.take_body(SPILL_THRESHOLD)
                if data is not None and not self.closing:
                    if data:
                        self.body = BytesBody(data)
                    if not self.dispatch():
                        return
                    continue
                self.deadline = time.monotonic() + worker.header_timeout
            elif event_type is EndOfMessage:
                if not self.dispatch():
                    return
            elif event is CONNECTION_CLOSED:
                self.close()
                return

    def dispatch(self) -> bool:
        """Run the request whose body is complete; True if it is answered and the next may start."""
        assert self.head is not None and self.transport is not None
        if self.body is not None:
            self.body.finish()
        self.busy = True
        self.started = time.monotonic()
        worker = self.worker
        worker.busy += 1
        if self.fresh:
            self.settle()
            if worker.pool is None:
                worker.update_accepting()  # inline, the loop accepts again once this request is answered
        if worker.pool is None:
            if self.direct_sink is None:
                self.direct_sink = DirectSink(self.fileno, worker.cfg.timeout, self)
            return self.finish_request(worker.run_inline(self, self.direct_sink))
        worker.update_accepting()
        assert self.flow is not None
        self.sink = ThreadSink(worker.loop, self.transport, self.flow)
        worker.pool.submit(worker.busy, worker.run_pooled, self, self.sink)
        return False

    def request_finished(self, response: Response | None, final: list[bytes]) -> None:
        """From the pool thread, with the response's last bytes (``ThreadSink.write_last``)."""
        if final and self.flow is not None and not self.flow.lost and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(final)
        if self.finish_request(response):
            self.process()

    def finish_request(self, response: Response | None) -> bool:
        """Bookkeeping after a response; True if the connection goes on to its next request."""
        worker = self.worker
        worker.busy -= 1
        self.busy = False
        self.sink = None
        if self.body is not None:
            self.body.close()
            self.body = None
        self.head = None
        worker.handled_request()
        if worker.pool is not None or not worker.alive:
            worker.update_accepting()  # inline, capacity does not change with each request
        if response is None or not response.keep_alive or self.closing or self.transport is None:
            self.close()
            return False
        if response.status_code < 200:
            # An app's 1xx status as the final answer: a client still waits for a final response,
            # and would take the next request's as this one's (RFC 9110 section 15.2).
            self.close()
            return False
        self.parser.start_next_request()
        # A stopping worker still answers a request already on its way (with "Connection: close").
        self.deadline = time.monotonic() + (worker.keepalive if worker.alive else min(worker.keepalive, STOP_LINGER))
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        return True

    # --- output and closing ---

    def write_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.flush():
            self.transport.write(data)

    def hold(self) -> None:
        self.worker.hold(self)

    def flush(self) -> bool:
        """Write the responses held by the inline sink; False if the client is gone (then aborted)."""
        if self.direct_sink is not None:
            try:
                self.direct_sink.flush()
            except ClientDisconnected:
                self.abort()
                return False
        return True

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing() and self.flush():
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.flow is not None:
            self.flow.lose()
        if self.direct_sink is not None:
            self.direct_sink.discard()
        if self.transport is not None:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        return not self.busy and self.head is None and self.parser.buffered == 0


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
        self.busy = 0
        self.accepting = False
        self.loop = new_event_loop()
        self.stopping_since = 0.0
        # One connection at a time per readiness event when siblings share the socket (fair spread).
        self.has_siblings = cfg.workers > 1
        self.accept_batch = 1 if self.has_siblings else 16
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
        if not want and self.pool is not None and self.alive and not self.overflow_check_scheduled:
            self.overflow_check_scheduled = True
            self.loop.call_later(OVERFLOW_WAIT, self._accept_overflow)
        if want == self.accepting:
            return
        self.accepting = want
        for listener in self.sockets:
            if want:
                self.loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                self.loop.remove_reader(listener.fileno())

    def _accept_overflow(self) -> None:
        """Still at capacity: take connections no sibling took meanwhile (queue them on our threads)."""
        self.overflow_check_scheduled = False
        if self.accepting or not self.alive:
            return
        room = self.worker_connections - len(self.connections) - self.pending_accepts
        for listener in self.sockets:
            if room <= 0:
                break
            queued = listener.queued_connections()
            if queued:
                taken = min(room, max(1, queued // 2))  # leave some for busy siblings checking too
                self._accept(listener, limit=taken)
                room -= taken
        self._watch(self.has_room())  # schedules the next check while the pool stays full

    def _accept(self, listener: Listener, limit: int | None = None) -> None:
        if limit is None and not self.has_room():
            self._watch(False)  # a connection waits: leave it to idle siblings
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

    def connection_closed(self) -> None:
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
            self.log.warning("Invalid request from ip=%s: %s", _ip(conn.peer), exc)
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


def _ip(peer: Any) -> Any:
    return peer[0] if isinstance(peer, tuple) else peer
