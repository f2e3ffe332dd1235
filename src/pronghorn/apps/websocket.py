"""WebSocket connections of an ASGI app (RFC 6455), after an HTTP/1.1 upgrade on the same connection.

The handshake is checked here against the request head our parser produced; the app then accepts
(``websocket.accept``: the 101 response, with its subprotocol and extra headers), refuses
(``websocket.close`` before accepting: 403) or answers with an HTTP response of its own (the
``websocket.http.response`` extension). Frames are read and written by the ``websockets``
package's sans-IO ``Protocol`` (masking, fragmentation limits, UTF-8 checks, ping/pong, the closing
handshake, ``websocket_max_message_size`` as 1009); messages are put together here. The connection
stops reading while the app leaves ``MESSAGES_HIGH_WATER`` bytes unread, and ``send`` waits while
the client does not take what was written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import importlib.util
from collections import deque
from typing import TYPE_CHECKING, Any

from pronghorn.apps.asgi import AsgiCycle, Channel, Message, reason_phrase, wait_for_wake, wake_all
from pronghorn.errors import ClientGone
from pronghorn.apps.cycle import ClientConnection
from pronghorn.http import RequestHead, ResponseFramer, error_response, is_token, is_valid_field_value

if TYPE_CHECKING:
    from websockets.frames import CloseCode, Opcode
    from websockets.protocol import Protocol, Side, State

# Optional (pronghorn[websockets]): without it, an upgrade request reaches the app as plain HTTP.
# Imported with the first handshake: the package costs a worker ~4 MiB, which apps that never see a
# WebSocket should not carry.
_AVAILABLE = importlib.util.find_spec("websockets") is not None

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MESSAGES_HIGH_WATER = 1 << 20  # bytes received and not yet taken by the app, at which reading stops
# Headers the 101 response sets itself: an app's own would contradict the handshake.
_HANDSHAKE_FIELDS = frozenset({"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
                               "sec-websocket-extensions", "content-length", "transfer-encoding", "server", "date"})

CONNECTING, OPEN, CLOSED = 0, 1, 2


def available() -> bool:
    return _AVAILABLE


def _import_protocol() -> None:
    global CloseCode, Opcode, Protocol, Side, State
    from websockets.frames import CloseCode, Opcode
    from websockets.protocol import Protocol, Side, State


def _tokens(head: RequestHead, name: bytes) -> list[bytes]:
    return [item.strip(b" \t").lower() for value in head.get_all(name) for item in value.split(b",")]


def is_upgrade(head: RequestHead) -> bool:
    """Whether the request asks for a WebSocket (Upgrade: websocket, Connection: upgrade)."""
    if head.get(b"UPGRADE") is None:  # nearly every request: one pass over the names
        return False
    return b"websocket" in _tokens(head, b"UPGRADE") and b"upgrade" in _tokens(head, b"CONNECTION")


def handshake_error(head: RequestHead) -> bytes | None:
    """The HTTP error response for an invalid opening handshake (RFC 6455 section 4.2.1), or None."""
    if head.method != b"GET" or head.version < (1, 1):
        return error_response(400, "Bad Request", "A WebSocket handshake is a GET request over HTTP/1.1.")
    if head.has_body:
        return error_response(400, "Bad Request", "A WebSocket handshake has no body.")
    keys = head.get_all(b"SEC-WEBSOCKET-KEY")
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return error_response(400, "Bad Request", "Sec-WebSocket-Key must be 16 bytes in base64.")
    if head.get_all(b"SEC-WEBSOCKET-VERSION") != [b"13"]:
        # RFC 6455 section 4.4: say which version is spoken.
        response = error_response(426, "Upgrade Required", "Only WebSocket version 13 is supported.")
        return response.replace(b"\r\n", b"\r\nSec-WebSocket-Version: 13\r\n", 1)
    return None


class WebSocketSession:
    """One WebSocket connection and its app call (see the module doc)."""

    def __init__(self, cycle: AsgiCycle, head: RequestHead, client: ClientConnection, channel: Channel) -> None:
        self.cycle = cycle
        self.head = head
        self.channel = channel
        url_scheme, forwarded = cycle.url_scheme_of(head, client)
        self.scope = cycle.scope("websocket", head, client, "wss" if url_scheme == "https" else "ws", forwarded)
        self.scope["subprotocols"] = [p.strip() for v in head.get_all(b"SEC-WEBSOCKET-PROTOCOL")
                                      for p in v.decode("latin-1").split(",") if p.strip()]
        self.scope["extensions"] = {"websocket.http.response": {}}
        self.key = head.get(b"SEC-WEBSOCKET-KEY") or b""
        self.state = CONNECTING
        self.protocol: Any = None
        self.early = bytearray()  # bytes received before the app accepted
        self.messages: deque[tuple[Message, int]] = deque()  # with each one's size on the wire
        self.queued = 0
        self.fragments: list[bytes] = []
        self.fragment_opcode: Any = None
        self.connect_delivered = False
        self.close_code = 1006
        self.close_reason = ""
        self.waiters: list[asyncio.Future[None]] = []
        self.denial: ResponseFramer | None = None  # the app answers the handshake with an HTTP response
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if "Protocol" not in globals():
            _import_protocol()
        self.task = self.cycle.run_app(self.call_app())

    # --- the connection's side ---

    def feed(self, data: bytes) -> None:
        """Bytes from the client (b"": the end of its stream)."""
        protocol = self.protocol
        if protocol is None:  # not accepted yet: kept for the protocol (bounded by pausing)
            if not data:
                self._closed(1006, "")
                return
            if self.state == CLOSED:
                return
            self.early += data
            if len(self.early) > MESSAGES_HIGH_WATER:
                self.channel.pause_reading()
            return
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        self._take_frames()

    def client_gone(self) -> None:
        if self.state != CLOSED:
            self._closed(1006, "")
        task = self.task
        if task is not None and not task.done():
            loop = self.cycle.loop
            assert loop is not None
            loop.call_later(self.cycle.disconnect_grace, task.cancel)

    def _take_frames(self) -> None:
        protocol = self.protocol
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self.fragment_opcode = opcode
                self.fragments = [frame.data]
            elif opcode is Opcode.CONT:
                self.fragments.append(frame.data)
            elif opcode is Opcode.CLOSE:
                continue  # the protocol answered it; the state below says the connection closed
            else:
                continue  # ping (answered by the protocol) and pong
            if frame.fin:
                data = b"".join(self.fragments) if len(self.fragments) > 1 else self.fragments[0]
                self.fragments = []
                if self.fragment_opcode is Opcode.TEXT:
                    try:
                        message: Message = {"type": "websocket.receive", "text": data.decode("utf-8")}
                    except UnicodeDecodeError:
                        protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
                        break
                else:
                    message = {"type": "websocket.receive", "bytes": data}
                self.messages.append((message, len(data)))
                self.queued += len(data)
        self._write_out()
        if protocol.state is State.CLOSING or protocol.state is State.CLOSED:
            received, sent = protocol.close_rcvd, protocol.close_sent
            close = received if received is not None else sent
            self._closed(close.code if close is not None else 1006, close.reason if close is not None else "")
            self.channel.expect_close()
        elif self.queued > MESSAGES_HIGH_WATER:
            self.channel.pause_reading()
        wake_all(self.waiters)

    def _write_out(self) -> None:
        """Send what the protocol produced; its end-of-stream marker (b"") half-closes the connection."""
        for data in self.protocol.data_to_send():
            if data:
                try:
                    self.channel.send_response(data, False)
                except ClientGone:
                    return
            else:  # our side is done: half-close, and the client closes (or CLOSE_TIMEOUT aborts)
                self.channel.half_close()

    def _closed(self, code: int, reason: str) -> None:
        if self.state != CLOSED:
            self.state = CLOSED
            self.close_code = code
            self.close_reason = reason
        wake_all(self.waiters)

    # --- the app's side ---

    async def call_app(self) -> None:
        try:
            await self.cycle.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._end_call(1011, None)
            raise
        except ClientGone:
            pass
        except Exception:
            self.cycle.log.exception("Error in WebSocket app for %s", self.scope["path"])
            self._end_call(1011, 500)
        else:
            if self.state == CONNECTING and self.denial is None:
                self.cycle.log.info("WebSocket app for %s returned without accepting: 403", self.scope["path"])
            self._end_call(1000, 403)
        finally:
            if self.task is not None:
                self.cycle.running.discard(self.task)

    def _end_call(self, code: int, status: int | None) -> None:
        """The app's call ended: refuse a handshake it left open, close a connection it left open."""
        if self.state == CONNECTING:
            if self.denial is None and status is not None:
                self._refuse(status)
            else:
                self.channel.abort()
            self.state = CLOSED
        else:
            self.server_close(code)

    def server_close(self, code: int, reason: str = "") -> None:
        """Close an open WebSocket from the server's side (its app ended, or the worker is stopping);
        the app gets ``websocket.disconnect`` with ``code``."""
        if self.state == OPEN:
            self.protocol.send_close(code, reason)
            self._write_out()
            self._closed(code, reason)
            self.channel.expect_close()

    def _refuse(self, status: int) -> None:
        try:
            self.channel.send_response(error_response(status, reason_phrase(status), ""), True)
        except ClientGone:
            pass
        self.channel.close()

    async def receive(self) -> Message:
        while True:
            if not self.connect_delivered:
                self.connect_delivered = True
                return {"type": "websocket.connect"}
            messages = self.messages
            if messages:
                message, size = messages.popleft()
                self.queued -= size
                if self.queued < MESSAGES_HIGH_WATER // 2 and self.state == OPEN:
                    self.channel.body_wanted()
                return message
            if self.state == CLOSED:
                return {"type": "websocket.disconnect", "code": self.close_code, "reason": self.close_reason}
            loop = self.cycle.loop
            assert loop is not None
            await wait_for_wake(self.waiters, loop)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.state != OPEN:
                if self.state == CONNECTING:
                    raise RuntimeError("ASGI app sent websocket.send before websocket.accept")
                raise ClientGone("the WebSocket is closed")
            text, data = message.get("text"), message.get("bytes")
            if (text is None) == (data is None):
                raise ValueError("websocket.send needs exactly one of 'text' and 'bytes'")
            if text is not None:
                self.protocol.send_text(text.encode("utf-8"))
            else:
                self.protocol.send_binary(bytes(data or b""))
            self._write_out()
            waiter = self.channel.writable()
            if waiter is not None:
                await waiter
                if self.state == CLOSED:
                    raise ClientGone("the WebSocket is closed")
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            if self.state == CONNECTING:
                if self.denial is not None:
                    raise RuntimeError("ASGI app sent websocket.close during its HTTP response")
                self.state = CLOSED
                self._refuse(403)
            else:
                self.server_close(int(message.get("code") or 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self.state != CONNECTING or self.denial is not None:
                raise RuntimeError("websocket.http.response.start is only allowed before websocket.accept")
            self.denial = ResponseFramer(request_method=b"GET", request_version=self.head.version, keep_alive=False,
                                         server_header=self.cycle.server_header)
            status = int(message["status"])
            self.channel.send_response(self.denial.head(status, reason_phrase(status), message.get("headers", ())),
                                       False)
        elif kind == "websocket.http.response.body":
            if self.denial is None or self.state != CONNECTING:
                raise RuntimeError("websocket.http.response.body before websocket.http.response.start")
            body = self.denial.body(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self.channel.send_response(body + self.denial.end(), True)
                self.state = CLOSED
                self.channel.close()
            elif body:
                self.channel.send_response(body, False)
        else:
            raise RuntimeError(f"ASGI app sent an unexpected message type {kind!r} on a WebSocket")

    def _accept(self, message: Message) -> None:
        if self.state != CONNECTING or self.denial is not None:
            raise RuntimeError("ASGI app sent websocket.accept twice, or after closing")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"websocket.accept: subprotocol {subprotocol!r} was not offered by the client")
        lines = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
                 b"Sec-WebSocket-Accept: " + base64.b64encode(hashlib.sha1(self.key + ACCEPT_GUID).digest()) + b"\r\n"]
        if subprotocol is not None:
            lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n")
        for name, value in message.get("headers", ()):
            name, value = bytes(name), bytes(value)
            if not is_token(name) or not is_valid_field_value(value):
                raise ValueError(f"websocket.accept: invalid header {name[:64]!r}")
            if name.lower().decode("latin-1") in _HANDSHAKE_FIELDS:
                raise ValueError(f"websocket.accept: header {name.decode('latin-1')!r} belongs to the handshake")
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        self.channel.send_response(b"".join(lines), False)
        max_size = self.cycle.websocket_max_size or None
        self.protocol = Protocol(Side.SERVER, max_size=max_size)
        self.state = OPEN
        early, self.early = bytes(self.early), bytearray()
        if early:
            self.protocol.receive_data(early)
            self._take_frames()
        self.channel.body_wanted()
