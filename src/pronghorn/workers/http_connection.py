"""One client connection of the gthread worker, as an asyncio protocol (see ``gthread`` for the whole).

It feeds received bytes to the sans-IO parser, collects each request's body (in memory, or spilled
to a temporary file), hands the complete request to its worker to run, and then keeps the connection
alive for the next one or closes it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from pronghorn.apps.wsgi import BytesBody, ClientDisconnected, Response
from pronghorn.http import (
    CONNECTION_CLOSED,
    CONTINUE_RESPONSE,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
)
from pronghorn.net.listeners import Listener
from pronghorn.workers.loop_io import SPILL_THRESHOLD, DirectSink, FlowControl, SpooledBody, ThreadSink

if TYPE_CHECKING:
    from pronghorn.workers.gthread import ThreadWorker

READ_PAUSE_BYTES = 256 * 1024  # stop reading a connection whose unprocessed bytes pass this
STOP_LINGER = 2.0  # how long an idle keep-alive connection is kept once the worker is stopping


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
        self.fresh = True
        self.worker.connection_opened(self)

    def settle(self) -> None:
        """No longer a request about to need an app thread (see ``ThreadWorker.update_accepting``)."""
        if self.fresh:
            self.fresh = False
            self.worker.fresh -= 1

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
                worker.log.warning("Invalid request from ip=%s: %s", client_ip(self.peer), exc)
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


def client_ip(peer: Any) -> Any:
    return peer[0] if isinstance(peer, tuple) else peer
