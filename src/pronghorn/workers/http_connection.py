"""One client connection of the event-loop worker, as an asyncio protocol (see ``gthread`` for the whole).

It feeds received bytes to the sans-IO parser, collects each request's body (in memory, or spilled
to a temporary file), starts the request cycle's ``Exchange`` for a complete request and has its
host run it (inline, or on a pool thread), parks the response while the client does not take what
was written, and then keeps the connection alive for the next request or closes it.

It knows its worker through the worker's ``WorkerLoop``; unit tests drive it with a real
``WorkerLoop`` on a fake loop, a fake transport and a fake pool.
"""

from __future__ import annotations

import asyncio
import ssl
from time import monotonic  # a module global: no attribute look-up per call
from typing import TYPE_CHECKING, Any, cast

from pronghorn.apps.wsgi import NO_BODY, BytesBody, ClientDisconnected
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
from pronghorn.net.tls import TlsStream
from pronghorn.workers.admission import SETTLED, FreshClaim
from pronghorn.workers.loop_io import SPILL_THRESHOLD, LoopOutput, SpooledBody, ThreadSink

if TYPE_CHECKING:
    from pronghorn.apps.cycle import Exchange
    from pronghorn.workers.worker_loop import WorkerLoop

READ_PAUSE_BYTES = 256 * 1024  # stop reading a connection whose unprocessed bytes pass this
STOP_LINGER = 2.0  # how long an idle keep-alive connection is kept once the worker is stopping


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, collect the body, run the request, keep alive or close."""

    # A worker may hold thousands of idle keep-alive connections: no per-instance dict.
    __slots__ = (
        "host", "listener", "fileno", "peer", "client", "parser", "transport", "output", "head", "body", "exchange",
        "sink", "busy", "running", "parked", "closing", "reading_paused", "deadline", "started", "parked_since", "claim",
        "proxy_pending", "tls",
    )

    def __init__(self, host: WorkerLoop, listener: Listener, peer: Any, fileno: int, claim: FreshClaim = SETTLED) -> None:
        self.host = host
        self.listener = listener
        self.fileno = fileno
        self.peer: tuple[str, int] | str | None
        if isinstance(peer, tuple):
            self.peer = peer if len(peer) == 2 else (peer[0], peer[1])  # IPv6 addresses come with 4 items
        else:
            self.peer = peer or None
        self.client = host.cycle.connection(
            self.peer, listener.server_name, url_scheme=host.url_scheme, multithread=host.threads > 1
        )
        self.parser = RequestParser(self.client.limits)
        self.transport: asyncio.Transport | None = None
        self.output: LoopOutput | None = None
        self.head: RequestHead | None = None
        self.body: SpooledBody | BytesBody | None = None  # made when the first body bytes arrive
        self.exchange: Exchange | None = None
        self.sink: ThreadSink | None = None  # the running request's, when it runs on a pool thread
        self.busy = False  # a request is in the request cycle (running, or its response waits for the client)
        self.running = False  # on a pool thread right now
        self.parked = False  # its response waits for the client to take what was written
        self.closing = False
        self.reading_paused = False
        self.deadline = monotonic() + host.header_timeout
        self.started = 0.0  # when the running request was dispatched (moved on by the time it was parked)
        self.parked_since = 0.0
        self.claim = claim  # on an app thread, until the first request runs (see ``Admission``)
        # The first bytes, while a PROXY header may still be coming (None: not looked for, or done).
        self.proxy_pending: bytes | None = None if host.cycle.settings.proxy_mode == "off" else b""
        # TLS of our own (not an ``ssl=`` transport): its handshake counts against header_timeout
        # like a request head, and its records go out with the responses' writes.
        self.tls = TlsStream(host.tls) if host.tls is not None else None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        # Inline, bytes go straight to the socket while it takes them. With app threads, every write
        # goes through the transport, which keeps the GIL (os.write releases it, and a waiting app
        # thread would take it in the middle of the loop's pass, and the loop wait to get it back).
        self.output = LoopOutput(
            self.host.loop, self.transport, self.fileno, self, direct=self.host.threads == 1, tls=self.tls
        )
        self.host.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.proxy_pending is not None:
            rest = self._after_proxy_header(self.proxy_pending + data)
            if not rest:  # incomplete, refused, or nothing after the header yet (b"" would mean EOF)
                return
            data = rest
        tls = self.tls
        if tls is not None:
            if tls.peer_closed or self.closing:
                return
            data = self._decrypt(tls, data)
            if tls.peer_closed:  # close_notify: the end of input, after what came with it
                if data:
                    self.received(data)
                self._end_of_input()
                return
            if not data:
                return
        self.received(data)

    def received(self, data: bytes) -> None:
        """Bytes from the client (b"": its end of input), after any PROXY header and TLS."""
        self.parser.feed(data)
        if self.busy:
            if self.parser.buffered > READ_PAUSE_BYTES and not self.reading_paused:
                self.pause_reading()
            return
        self.process()

    def pause_reading(self) -> None:
        self.reading_paused = True
        self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        tls = self.tls
        if tls is not None:
            if tls.peer_closed:  # after close_notify, which was the end of input already
                return True
            if tls.established and not self.host.suppress_ragged_eofs:
                # Without close_notify the end may be an attacker's cut: nothing more is answered.
                self.host.log.debug("TLS from %s ended without close_notify; dropping the connection",
                                    client_ip(self.peer))
                self.abort()
                return None
        self._end_of_input()
        return True  # half-close: a pipelined request may still be answered

    def _end_of_input(self) -> None:
        if self.proxy_pending is not None:  # cut short before a PROXY header was complete: HTTP says what
            if self.proxy_pending:
                self.parser.feed(self.proxy_pending)
            self.proxy_pending = None
        self.received(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.claim.settle()
        if self.output is not None:
            self.output.lose()
        if self.busy:
            if self.sink is not None:
                self.sink.wake()
            if self.parked:
                self.resume()  # the exchange ends (ClientDisconnected): close() and the logs still run
        elif self.body is not None:
            self.body.close()
        self.host.closed(self)

    def pause_writing(self) -> None:
        self.output.paused = True  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        output = self.output
        assert output is not None
        output.paused = False
        output.resume()
        self.output_ready()

    def output_ready(self) -> None:
        """The client caught up, or a file send ended: a parked response or waiting requests go on."""
        sink = self.sink
        if sink is not None:
            if self.output is not None and self.output.file is None:
                sink.file_pending = False
            sink.wake()
        if self.parked:
            self.host.loop.call_soon(self.resume)  # not from inside the transport's own callback
        elif not self.busy and not self.closing and self.parser.buffered:
            self.host.loop.call_soon(self.process)  # pipelined requests stopped while the client was behind

    def _decrypt(self, tls: TlsStream, data: bytes) -> bytes:
        """The plain bytes in ``data``; b"" after a TLS failure, which closes the connection."""
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:  # a failed handshake (bad client certificate), a forged record
            self.host.log.debug("TLS with %s failed: %s", client_ip(self.peer), exc)
            self.close()  # after the alert OpenSSL wrote
            return b""
        self._send_tls_output(tls)  # handshake messages, session tickets, key updates
        return plain

    def _send_tls_output(self, tls: TlsStream) -> None:
        data = tls.take_output()
        if data and self.output is not None and not self.output.lost:
            try:
                self.output.send_raw(data)
            except ClientDisconnected:
                pass

    def _after_proxy_header(self, data: bytes) -> bytes | None:
        """The bytes after the PROXY header (all of them without one); None while it is incomplete
        or after it was refused."""
        host = self.host
        try:
            found = host.cycle.proxy_header(data, self.peer)
        except ProtocolError as exc:
            self.proxy_pending = None
            self.refuse(exc)
            return None
        if found is None:
            self.proxy_pending = data
            return None
        self.proxy_pending = None
        info, used = found
        if info is not None:
            self.client = host.cycle.connection(
                self.peer, self.listener.server_name, url_scheme=host.url_scheme, multithread=host.threads > 1,
                proxy=info,
            )
        return data[used:]

    # --- request handling ---

    def process(self) -> None:
        """Turn buffered bytes into events until a request is running or more bytes are needed.

        Requests run inline are answered before ``dispatch()`` returns, so pipelined requests are
        taken in this loop (not by recursion). Nothing more is taken while the client does not read
        the responses (``output.paused``): ``resume_writing`` goes on.
        """
        host = self.host
        parser = self.parser
        output = self.output
        assert output is not None
        while not self.busy and not self.closing and not output.paused:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self.refuse(exc)
                return
            if event is NEED_DATA:
                return
            event_type = type(event)
            if event_type is BodyData:
                if not isinstance(self.body, SpooledBody):
                    self.body = SpooledBody(host.tmp_upload_dir)
                try:
                    self.body.write(event.data)  # type: ignore[union-attr]
                except OSError as exc:
                    self.cannot_store_body(exc)
                    return
                self.deadline = monotonic() + host.header_timeout
            elif event_type is RequestHead:
                self.head = event  # type: ignore[assignment]
                if event.expect_continue:  # type: ignore[union-attr]
                    # The loop reads the body itself (the parser refused a body over the limit), so
                    # the client may send it now.
                    self.write_raw(CONTINUE_RESPONSE)
                # Usually the body (if any) came with the head: run the request now.
                data = parser.take_body(SPILL_THRESHOLD)
                if data is not None and not self.closing:
                    if data:
                        self.body = BytesBody(data)
                    if not self.dispatch():
                        return
                    continue
                self.deadline = monotonic() + host.header_timeout
            elif event_type is EndOfMessage:
                if not self.dispatch():
                    return
            elif event is CONNECTION_CLOSED:
                self.close()
                return

    def refuse(self, exc: ProtocolError) -> None:
        """A request that cannot be served: its error status once, then close."""
        self.host.log.warning("Invalid request from ip=%s: %s", client_ip(self.peer), exc)
        if exc.respond and (self.tls is None or self.tls.established):  # (no HTTP before the handshake)
            self.write_raw(exc.to_response())
        self.close()

    def cannot_store_body(self, exc: OSError) -> None:
        """A body past the spill threshold could not go to its temporary file: 500, once, then close."""
        self.host.log.error("Cannot store a request body in tmp_upload_dir (%s): %s",
                            self.host.tmp_upload_dir or "the system's temporary directory", exc)
        self.write_raw(error_response(500, "Internal Server Error", "The request body could not be stored."))
        self.close()

    def dispatch(self) -> bool:
        """Start the request whose body is complete; True if it is answered and the next may start."""
        head = self.head
        assert head is not None and self.output is not None
        host = self.host
        if self.body is not None:
            try:
                self.body.finish()
            except OSError as exc:  # (the spilled body's last bytes are written here)
                self.cannot_store_body(exc)
                return False
        if head.expect_continue:
            # The loop sent 100 Continue when the head arrived; the app's first read must not repeat it.
            head = head._replace(expect_continue=False)
        sink = ThreadSink(host.loop, self.output, host.stall_timeout) if host.threads > 1 else None
        try:
            self.exchange = host.cycle.start(
                head,
                self.body or NO_BODY,
                sink if sink is not None else self.output,
                self.client,
                keep_alive=host.keepalive > 0 and self.host.alive,
            )
        except ProtocolError as exc:  # refused before the app ran (contradictory proxy headers)
            self.refuse(exc)
            return False
        self.sink = sink
        self.busy = True
        self.started = monotonic()
        self.claim.settle()
        if sink is None:
            return self.run_inline()
        self.running = True
        self.host.submit(self)
        return False

    def run_inline(self) -> bool:
        """One step of the request on the loop's thread; True if it is answered and the next may start."""
        assert self.exchange is not None
        if self.host.run_inline(self.exchange, self.started):
            return self.finish_request()
        self.park()
        return False

    def run_on_thread(self) -> bool:
        """On a pool thread (``PoolJob``): one step of the request."""
        exchange = self.exchange
        assert exchange is not None
        try:
            return exchange.step()
        except BaseException:  # noqa: BLE001 - the loop must still get the connection back
            self.host.log.exception("Error running request")
            exchange.response.failed = True
            return True

    def finished_on_loop(self, done: bool) -> None:
        """Back from the pool thread: the request is answered, or waits for the client."""
        self.running = False
        self.host.back_from_thread()
        if not done:
            self.park()
            return
        sink = self.sink
        if sink is not None and sink.final and not sink.cancelled and self.output is not None and not self.output.lost:
            self.output.write_last(sink.final)
        if self.finish_request():
            self.process()

    def park(self) -> None:
        """The response waits for the client; ``output_ready`` resumes it (at once if it can go on)."""
        self.parked = True
        now = monotonic()
        self.parked_since = now
        stall = self.host.stall_timeout
        self.deadline = now + stall if stall else float("inf")
        output = self.output
        sink = self.sink
        assert output is not None
        if output.lost or (not output.paused and output.file is None and (sink is None or not sink.file_pending)):
            self.host.loop.call_soon(self.resume)

    def resume(self) -> None:
        if not self.parked:
            return
        self.parked = False
        self.started += monotonic() - self.parked_since  # request_timeout counts the app's time
        if self.sink is None:
            if self.run_inline():
                self.process()
        else:
            self.running = True
            self.host.submit(self)

    def finish_request(self) -> bool:
        """Bookkeeping after a response; True if the connection goes on to its next request."""
        exchange = self.exchange
        assert exchange is not None
        response = exchange.response
        host = self.host
        self.exchange = None
        self.sink = None
        self.busy = False
        if self.body is not None:
            self.body.close()
            self.body = None
        self.head = None
        host.request_finished()
        if not response.keep_alive or self.closing or self.transport is None:
            self.close()
            return False
        if response.status_code < 200:
            # An app's 1xx status as the final answer: a client still waits for a final response,
            # and would take the next request's as this one's (RFC 9110 section 15.2).
            self.close()
            return False
        self.parser.start_next_request()
        # A stopping worker still answers a request already on its way (with "Connection: close").
        keepalive = self.host.keepalive
        self.deadline = monotonic() + (keepalive if host.alive else min(keepalive, STOP_LINGER))
        self.resume_reading()
        return True

    # --- output and closing ---

    def write_raw(self, data: bytes) -> None:
        """Bytes the loop writes itself (100 Continue, error responses), after anything held."""
        output = self.output
        if output is not None and not output.lost:
            try:
                output.write(data)
            except ClientDisconnected:
                pass

    def hold(self) -> None:
        self.host.hold(self)

    def flush(self) -> None:
        """Write the responses held by the output (end of the loop's pass)."""
        if self.output is not None:
            self.output.flush()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
            if self.tls is not None:
                self.tls.close_notify()
                self._send_tls_output(self.tls)
            self.transport.close()  # what the transport still buffers is sent first

    def abort(self) -> None:
        self.closing = True
        if self.output is not None:
            self.output.lose()
        if self.sink is not None:
            self.sink.take_over()
        if self.transport is not None:
            self.transport.abort()

    def check_deadline(self, now: float, request_timeout: float) -> None:
        """The worker's tick: act on this connection's deadline if it has passed."""
        if self.running:
            if request_timeout and now - self.started > request_timeout:
                self.host.cut_short(self)
        elif now > self.deadline:
            if self.parked:
                self.host.log.debug("Client %s stopped reading its response; closing", self.peer)
                self.abort()
                return
            if self.head is not None and not self.busy:
                # RFC 9110 section 15.5.9: the request was not completed in time.
                self.write_raw(error_response(408, "Request Timeout", "The request body was not received in time."))
            self.close()

    @property
    def idle(self) -> bool:
        return not self.busy and self.head is None and self.parser.buffered == 0


def client_ip(peer: Any) -> Any:
    return peer[0] if isinstance(peer, tuple) else peer
