"""One client connection of an ASGI app: ``HttpConnection`` with the request handed to the app at once.

Everything before the request is the WSGI connection's: the PROXY header, TLS, the parser and its
limits, refusing malformed requests, keep-alive deadlines, closing. The difference is what happens
with a request: its app call starts as soon as the head is parsed (``AsgiCycle.start_http``), the
body is handed over as it arrives (reading stops while the app leaves too much unread), and the
response goes out as the app sends it (``send`` waits while the client does not take it). The
connection is the exchange's ``Channel``. A WebSocket handshake turns the connection over to a
``WebSocketSession`` for the rest of its life.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from pronghorn.apps import websocket
from pronghorn.apps.asgi import BODY_HIGH_WATER, HttpExchange
from pronghorn.apps.wsgi import ClientDisconnected
from pronghorn.errors import ClientGone
from pronghorn.http import CONNECTION_CLOSED, NEED_DATA, BodyData, EndOfMessage, ProtocolError, RequestHead, error_response
from pronghorn.net.listeners import Listener
from pronghorn.workers.admission import SETTLED, FreshClaim
from pronghorn.workers.http_connection import READ_PAUSE_BYTES, STOP_LINGER, HttpConnection, client_ip
from pronghorn.workers.loop_io import SPILL_THRESHOLD

if TYPE_CHECKING:
    from pronghorn.apps.asgi import AsgiCycle
    from pronghorn.workers.worker_loop import WorkerLoop

FOREVER = float("inf")
CLOSE_TIMEOUT = 10.0  # seconds a WebSocket client gets to answer our close frame and close


class AsgiConnection(HttpConnection):
    """See the module doc."""

    __slots__ = ("exchange_asgi", "session", "drain_waiter")

    def __init__(self, host: WorkerLoop, listener: Listener, peer: Any, fileno: int, claim: FreshClaim = SETTLED) -> None:
        super().__init__(host, listener, peer, fileno, claim)
        self.exchange_asgi: HttpExchange | None = None  # the request whose response is in progress
        self.session: websocket.WebSocketSession | None = None  # after a WebSocket handshake
        self.drain_waiter: asyncio.Future[None] | None = None  # a send() waiting for the client to read

    @property
    def asgi_cycle(self) -> AsgiCycle:
        return self.host.cycle  # type: ignore[return-value]

    # --- input ---

    def received(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            session.feed(data)
            if not data:  # the client's end of the stream: nothing more can come
                self.close()
            return
        self.parser.feed(data)
        exchange = self.exchange_asgi
        if exchange is not None:
            if not data and exchange.body_complete:
                # The end of the client's stream while its response is in progress: as other ASGI
                # servers do, the client is gone (http.disconnect), not half-closed and waiting.
                exchange.client_gone()
                self.close()
            elif not exchange.body_complete:
                self.pump_body(exchange)
            elif self.parser.buffered > READ_PAUSE_BYTES and not self.reading_paused:
                self.pause_reading()  # pipelined requests wait for this response
            return
        if not self.busy:
            self.process()

    def process(self) -> None:
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
            if type(event) is RequestHead:
                self.head = event
                self.start(event)
            elif event is CONNECTION_CLOSED:
                self.close()
                return

    def start(self, head: RequestHead) -> None:
        host = self.host
        cycle = self.asgi_cycle
        self.claim.settle()
        # (the Upgrade field first: almost no request has one, and websocket.py is not compiled)
        if head.get(b"UPGRADE") is not None and websocket.is_upgrade(head):
            if websocket.available():
                self.start_websocket(head)
                return
            cycle.without_websockets()
        try:
            exchange = cycle.start_http(head, self.client, self, host.keepalive > 0 and host.alive)
        except ProtocolError as exc:  # refused before the app ran (contradictory proxy headers)
            self.refuse(exc)
            return
        self.exchange_asgi = exchange
        self.busy = True
        self.started = monotonic()
        self.deadline = FOREVER
        data = self.parser.take_body(SPILL_THRESHOLD)
        if data is not None:  # the whole body came with the head (or there is none)
            if data:
                exchange.feed_body(data)
            exchange.end_body()
        else:
            self.pump_body(exchange)

    def pump_body(self, exchange: HttpExchange) -> None:
        """Hand the body parsed so far to the app; stop reading while it leaves too much unread."""
        parser = self.parser
        while exchange.queued < BODY_HIGH_WATER:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                self.body_refused(exc, exchange)
                return
            if event is NEED_DATA:
                return
            if type(event) is BodyData:
                exchange.feed_body(event.data)
                if self.deadline != FOREVER:
                    self.deadline = monotonic() + self.host.header_timeout
            elif type(event) is EndOfMessage:
                exchange.end_body()
                self.deadline = FOREVER
                return
        if not self.reading_paused:
            self.pause_reading()

    def body_refused(self, exc: ProtocolError, exchange: HttpExchange) -> None:
        """A malformed body, or one over ``limit_request_body``: its status if nothing was sent yet."""
        self.host.log.warning("Invalid request from ip=%s: %s", client_ip(self.peer), exc)
        if exc.respond and exchange.status is None:
            self.write_raw(exc.to_response())
        exchange.client_gone()  # the app's response, if it comes, is not sent
        self.close()

    def start_websocket(self, head: RequestHead) -> None:
        refusal = websocket.handshake_error(head)
        if refusal is not None:
            self.host.log.debug("Invalid WebSocket handshake from %s", client_ip(self.peer))
            self.write_raw(refusal)
            self.close()
            return
        if self.parser.take_body(0) is None:  # (a handshake has no body: this ends the message)
            self.close()
            return
        session = websocket.WebSocketSession(self.asgi_cycle, head, self.client, self)
        self.session = session
        self.busy = True
        self.deadline = FOREVER
        rest = self.parser.take_rest()
        session.start()
        if rest:
            session.feed(rest)

    # --- the Channel an exchange writes through ---

    def send_response(self, data: bytes, last: bool) -> None:
        output = self.output
        if output is None or output.lost or self.closing:
            raise ClientGone("the client closed the connection")
        try:
            if last:
                output.write_last([data])
            else:
                output.write(data)
        except ClientDisconnected as exc:
            raise ClientGone(str(exc)) from None

    def writable(self) -> asyncio.Future[None] | None:
        output = self.output
        if output is None or not output.paused or output.lost:
            return None
        waiter = self.drain_waiter
        if waiter is None:
            waiter = self.drain_waiter = self.host.loop.create_future()
            stall = self.host.stall_timeout
            self.deadline = monotonic() + stall if stall else FOREVER
        return waiter

    def body_wanted(self) -> None:
        exchange = self.exchange_asgi
        if exchange is not None and not exchange.body_complete and self.deadline == FOREVER:
            self.deadline = monotonic() + self.host.header_timeout  # the body's idle deadline
        self.resume_reading()
        if exchange is not None and not exchange.body_complete:
            self.pump_body(exchange)  # (its end may be parsed already, with nothing buffered)

    def response_complete(self) -> None:
        exchange = self.exchange_asgi
        if exchange is None:
            return
        host = self.host
        self.exchange_asgi = None
        self.busy = False
        self.head = None
        host.request_finished()
        if self.closing or not exchange.keep_alive or not exchange.body_complete:
            # (a body the app left unread would have to be read through first: the client may retry)
            self.close()
            return
        self.parser.start_next_request()
        keepalive = host.keepalive
        self.deadline = monotonic() + (keepalive if host.alive else min(keepalive, STOP_LINGER))
        self.resume_reading()
        if self.parser.buffered:
            host.loop.call_soon(self.process)  # a pipelined request: after this send() returns

    def output_ready(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if self.deadline != FOREVER and (self.exchange_asgi is not None or self.session is not None):
                self.deadline = FOREVER
            if not waiter.done():
                waiter.set_result(None)
        elif not self.busy and not self.closing and self.parser.buffered:
            self.host.loop.call_soon(self.process)

    # --- the end ---

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        exchange = self.exchange_asgi
        if exchange is not None:
            exchange.client_gone()
        if self.session is not None:
            self.session.client_gone()
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def check_deadline(self, now: float, request_timeout: float) -> None:
        exchange = self.exchange_asgi
        if exchange is not None and request_timeout and not exchange.timed_out and now - self.started > request_timeout:
            exchange.time_out(request_timeout)
        if now <= self.deadline:
            return
        if self.drain_waiter is not None:
            self.host.log.debug("Client %s stopped reading its response; closing", self.peer)
            self.abort()
        elif exchange is not None:  # the app waits for a body that stopped coming
            if exchange.status is None:
                self.write_raw(error_response(408, "Request Timeout", "The request body was not received in time."))
            exchange.client_gone()
            self.close()
        elif self.session is not None:  # its closing handshake was not answered in time
            self.abort()
        else:
            super().check_deadline(now, request_timeout)

    def half_close(self) -> None:
        """Our side of a WebSocket is done (RFC 6455 section 7.1.1: the server closes the TCP
        connection first): the rest is written, then the end of our stream; reading goes on so that
        the client's last bytes are not answered with a reset, until it closes too."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.flush()
        if self.tls is not None:
            self.tls.close_notify()
            self._send_tls_output(self.tls)
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self.close()
        self.expect_close()

    def expect_close(self) -> None:
        """A WebSocket's closing handshake started: the client has ``CLOSE_TIMEOUT`` to finish it."""
        self.deadline = min(self.deadline, monotonic() + CLOSE_TIMEOUT)
