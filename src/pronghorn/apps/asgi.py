"""The ASGI side of an HTTP request (ASGI 3.0): the scope, ``receive`` and ``send``.

``AsgiCycle`` is the request cycle of an ASGI app: it shares ``RequestCycle``'s per-connection
set-up (trusted proxies, PROXY headers, parser limits) and its hooks and logs, and runs each request
as one ``HttpExchange``: the app's call is a task on the worker's loop, its body comes from the
connection as it arrives, and its response goes out through the connection (a ``Channel``). Nothing
here owns a socket: ``workers.asgi_connection`` does.

How the parts meet: the connection feeds the exchange the body it parses (``feed_body``,
``end_body``) and stops reading while the app leaves ``BODY_HIGH_WATER`` unread; ``receive`` hands
it over and asks for more. ``send`` frames the response with the HTTP core's ``ResponseFramer`` and
waits while the client does not take what was written. Once the response is complete the connection
goes on to its next request, even if the app's call goes on (background work after the response).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from http import HTTPStatus
from time import monotonic
from typing import Any, Protocol

from pronghorn.apps.cycle import EMPTY_INPUT, ClientConnection, Request, RequestCycle
from pronghorn.apps.environ import build_environ, unquote_to_bytes
from pronghorn.apps.wsgi import COALESCE_LIMIT
from pronghorn.errors import ClientGone
from pronghorn.http import CONTINUE_RESPONSE, RequestHead, ResponseFramer, error_response

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
BODY_HIGH_WATER = 256 * 1024  # request body bytes the app has not read, at which the connection stops reading

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
DISCONNECT: Message = {"type": "http.disconnect"}

_REASONS = {status.value: status.phrase for status in HTTPStatus}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "")


class Channel(Protocol):
    """The connection as an exchange sees it."""

    def send_response(self, data: bytes, last: bool) -> None:
        """Response bytes, in order (``last``: the final ones, which may wait for the loop's pass)."""

    def writable(self) -> asyncio.Future[None] | None:
        """A future done when the client has taken what was written; None if it keeps up."""

    def body_wanted(self) -> None:
        """The app waits for request body bytes: read on."""

    def response_complete(self) -> None:
        """The response is complete: the connection goes on (next request, or close)."""

    def abort(self) -> None:
        """Drop the connection (a response that cannot be completed)."""

    # What a WebSocket needs besides:

    def pause_reading(self) -> None:
        """Stop reading from the client until ``body_wanted``."""

    def close(self) -> None:
        """Close after what was written."""

    def half_close(self) -> None:
        """End our side of the stream after what was written; the client closes."""

    def expect_close(self) -> None:
        """A closing handshake started: the client must finish it soon."""


class AsgiCycle(RequestCycle):
    """Runs requests through one worker's ASGI application (see the module doc)."""

    def __init__(self, app: Callable[..., Any], settings: Any, log: Any, hooks: Any, cfg: Any) -> None:
        super().__init__(app, settings, log, hooks)
        self.root_path: str = cfg.root_path or ""
        self.disconnect_grace = float(cfg.asgi_disconnect_grace_period)
        self.websocket_max_size = int(cfg.websocket_max_message_size)
        self.state: dict[str, Any] | None = None  # the lifespan state, once startup ran
        self.loop: asyncio.AbstractEventLoop | None = None  # set by the worker in the child
        self.running: set[asyncio.Task[None]] = set()  # app calls in progress (kept referenced)
        self.warned_websockets = False

    def without_websockets(self) -> None:
        """A WebSocket handshake, without the websockets package: the app gets it as plain HTTP."""
        if not self.warned_websockets:
            self.warned_websockets = True
            self.log.warning("A WebSocket handshake reached the app as a plain HTTP request: WebSockets need "
                             "the websockets package (pip install 'pronghorn[websockets]')")

    def scope(self, kind: str, head: RequestHead, client: ClientConnection, url_scheme: str,
              forwarded: dict[str, str] | None) -> dict[str, Any]:
        """The scope of one request (``kind``: "http" or "websocket")."""
        root_path = self.root_path
        if forwarded and "SCRIPT_NAME" in forwarded:  # a trusted proxy's mount prefix
            root_path = forwarded["SCRIPT_NAME"]
        path = unquote_to_bytes(head.path).decode("utf-8", "replace")
        version = head.version
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": ASGI_VERSION,
            "http_version": "1.1" if version == (1, 1) else f"{version[0]}.{version[1]}",
            "scheme": url_scheme,
            "path": root_path + path if root_path and not _under(path, root_path) else path,
            "raw_path": head.path,
            "query_string": head.query,
            "root_path": root_path,
            "headers": [(name.lower(), value) for name, value in head.headers],
        }
        addresses = client.addresses
        if addresses is None:  # once per connection
            addresses = client.addresses = (_client_address(client), _server_address(client))
        scope["client"], scope["server"] = addresses
        if kind == "http":
            scope["method"] = head.method.decode("ascii")
        if self.state is not None:
            scope["state"] = dict(self.state)  # each request its own shallow copy
        return scope

    def start_http(self, head: RequestHead, client: ClientConnection, channel: Channel, keep_alive: bool) -> HttpExchange:
        """One request, its app call started as a task (the first step runs on the loop's next pass).
        Raises ``ProtocolError`` for a request refused before the app runs (contradictory proxy headers)."""
        url_scheme, forwarded = self.url_scheme_of(head, client)
        framer = ResponseFramer(
            request_method=head.method, request_version=head.version, keep_alive=keep_alive and head.keep_alive,
            server_header=self.server_header,
        )
        scope = self.scope("http", head, client, url_scheme, forwarded)
        exchange = HttpExchange(self, head, client, channel, framer, scope)
        if self.needs_request:
            exchange.req = Request(head, client.peer, url_scheme, None)
            exchange.environ = build_environ(
                head, client.environ, remote=client.remote, body=EMPTY_INPUT, url_scheme=url_scheme,
                script_name=self.settings.script_name, forwarded=forwarded,
            )
            if self.pre_request is not None:
                self.pre_request(exchange.req)
        exchange.task = self.run_app(exchange.call_app())
        return exchange

    def url_scheme_of(self, head: RequestHead, client: ClientConnection) -> tuple[str, dict[str, str] | None]:
        if client.trusted:
            proxy_scheme, forwarded = self.forwarding.from_proxy(head)
            return proxy_scheme or client.url_scheme, forwarded
        return client.url_scheme, None

    def run_app(self, call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task for an app call, in ``running`` until the call ends (it removes itself: a done
        callback would cost a pass of the loop per request)."""
        assert self.loop is not None
        task: asyncio.Task[None] = self.loop.create_task(call)
        self.running.add(task)
        return task

    def logged(self, exchange: HttpExchange) -> None:
        """The access log, metrics and ``post_request`` of a finished response."""
        if not self.timed:  # nothing to log or count
            return
        took = monotonic() - exchange.started
        if self.metrics is not None:
            self.metrics.request(exchange.head.method, exchange.status_code, took)
        req = exchange.req
        if req is not None:
            environ = exchange.environ or {}
            if self.access is not None:
                self.access(exchange, req, environ, timedelta(seconds=took))  # type: ignore[arg-type]
            if self.post_request is not None:
                self.post_request(req, environ, exchange)  # type: ignore[arg-type]


async def wait_for_wake(waiters: list[asyncio.Future[None]], loop: asyncio.AbstractEventLoop) -> None:
    """Wait until ``wake_all(waiters)``. Each caller waits on a future of its own: an app that
    cancels one ``receive`` (``asyncio.wait_for``) must not cancel another one, or the next."""
    waiter = loop.create_future()
    waiters.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        if waiter in waiters:
            waiters.remove(waiter)
        raise


def wake_all(waiters: list[asyncio.Future[None]]) -> None:
    pending = waiters[:]
    waiters.clear()
    for waiter in pending:
        if not waiter.done():
            waiter.set_result(None)


def _under(path: str, root_path: str) -> bool:
    """Whether ``path`` already starts with the mount prefix (a proxy that did not strip it)."""
    return path == root_path or path.startswith(root_path + "/")


def _client_address(client: ClientConnection) -> tuple[str, int] | None:
    host, port = client.remote
    return (host, int(port)) if port is not None and host else None


def _server_address(client: ClientConnection) -> tuple[str, int | None] | None:
    environ = client.environ
    name = environ.get("SERVER_NAME")
    if name is None:
        return None
    port = environ.get("SERVER_PORT")
    return name, int(port) if port else None


class HttpExchange:
    """One HTTP request of an ASGI app, from its head to the end of the app's call."""

    __slots__ = (
        "cycle", "head", "client", "channel", "framer", "scope", "task", "req", "environ", "started",
        "chunks", "queued", "body_complete", "body_delivered", "disconnected", "waiters", "continue_due",
        "status_code", "status", "headers", "head_bytes", "complete", "timed_out",
    )

    def __init__(self, cycle: AsgiCycle, head: RequestHead, client: ClientConnection, channel: Channel,
                 framer: ResponseFramer, scope: dict[str, Any]) -> None:
        self.cycle = cycle
        self.head = head
        self.client = client
        self.channel = channel
        self.framer = framer
        self.scope = scope
        self.req: Request | None = None
        self.environ: dict[str, Any] | None = None
        self.started = monotonic() if cycle.timed else 0.0
        self.chunks: deque[bytes] = deque()
        self.queued = 0  # body bytes received and not yet handed to the app
        self.body_complete = not head.has_body
        self.body_delivered = False  # the app was given the body's end (more_body False)
        self.disconnected = False
        self.waiters: list[asyncio.Future[None]] = []  # receive() calls waiting for body or disconnect
        self.continue_due = head.expect_continue  # 100 Continue when the app first asks for the body
        self.status_code = 0
        self.status: str | None = None  # "200 OK", as the access log reads it
        self.headers: list[tuple[str, str]] = []  # as hooks and the access log read them
        self.head_bytes: bytes | None = None  # the response head, sent with the first body bytes
        self.complete = False  # the response is complete (or was replaced by an error)
        self.timed_out = 0.0  # the request_timeout it ran past
        self.task: asyncio.Task[None] | None = None

    # --- the connection's side ---

    def feed_body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.queued += len(data)
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        self._wake()

    def client_gone(self) -> None:
        """The connection closed: ``receive`` says so, ``send`` fails; the app's call is cancelled
        after ``asgi_disconnect_grace_period`` if it has not ended by then."""
        if self.disconnected:
            return
        self.disconnected = True
        self._wake()
        task = self.task
        if not self.complete and task is not None and not task.done():
            loop = self.cycle.loop
            assert loop is not None
            loop.call_later(self.cycle.disconnect_grace, task.cancel)

    def time_out(self, limit: float) -> None:
        """The app ran past ``request_timeout``: its call is cancelled, 504 if nothing was sent yet."""
        self.timed_out = limit
        if self.task is not None:
            self.task.cancel()

    def _wake(self) -> None:
        if self.waiters:
            wake_all(self.waiters)

    # --- the app's side ---

    async def call_app(self) -> None:
        try:
            await self.cycle.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if self.timed_out:
                self._fail(504, "Gateway Timeout", f"Request timed out after {self.timed_out:g}s")
            elif not self.complete and not self.disconnected:
                self.channel.abort()  # the worker is stopping
            raise
        except ClientGone:
            pass
        except Exception:
            if self.disconnected:  # what the app made of a send() to a client that left: not an error here
                self.cycle.log.debug("ASGI app ended with an exception after its client left: %s %s",
                                     self.scope.get("method"), self.scope["path"], exc_info=True)
            else:
                self.cycle.log.exception("Error handling request %s %s", self.scope.get("method"), self.scope["path"])
                self._fail(500, "Internal Server Error", None)
        else:
            if not self.complete and not self.disconnected:
                what = "completing" if self.status is not None else "starting"
                self.cycle.log.error("ASGI app returned without %s the response: %s %s", what,
                                     self.scope.get("method"), self.scope["path"])
                self._fail(500, "Internal Server Error", None)
        finally:
            if self.task is not None:
                self.cycle.running.discard(self.task)

    def _fail(self, status: int, reason: str, why: str | None) -> None:
        """The app's call failed: answer ``status`` if the response has not started, else abort."""
        if why is not None:
            self.cycle.log.error("%s: %s %s", why, self.scope.get("method"), self.scope["path"])
        if self.complete or self.disconnected:
            return
        if self.status is not None and self.head_bytes is None:
            self.channel.abort()  # part of a response went out: the client must see it cut
            self.complete = True
            return
        # Nothing was sent (a started response's head waits for its body): the error instead, and
        # the connection closes after it.
        self.head_bytes = None
        self.framer = ResponseFramer(request_method=self.head.method, request_version=self.head.version,
                                     keep_alive=False, server_header=self.cycle.server_header)
        self.framer.head(status, reason, [])
        self.framer.end()
        self.status_code = status
        self.status = f"{status} {reason}"
        self._complete(error_response(status, reason, "" if status == 500 else "The application did not answer in time."))

    async def receive(self) -> Message:
        while True:
            if self.disconnected:
                return DISCONNECT
            if not self.body_delivered:
                chunks = self.chunks
                if chunks:
                    data = chunks.popleft()
                    self.queued -= len(data)
                    more = not (self.body_complete and not chunks)
                    if not more:
                        self.body_delivered = True
                    elif self.queued < BODY_HIGH_WATER // 2:
                        self.channel.body_wanted()
                    return {"type": "http.request", "body": data, "more_body": more}
                if self.body_complete:
                    self.body_delivered = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if self.continue_due:
                    self.continue_due = False
                    if self.status is None:  # RFC 9110 section 10.1.1: only before the final response
                        self.channel.send_response(CONTINUE_RESPONSE, False)
                self.channel.body_wanted()
            elif self.complete:
                return DISCONNECT
            await self._wait()

    async def _wait(self) -> None:
        loop = self.cycle.loop
        assert loop is not None
        await wait_for_wake(self.waiters, loop)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("ASGI app sent http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("ASGI app sent http.response.body after the response was complete")
            if self.disconnected:
                raise ClientGone("the client closed the connection")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise TypeError(f"http.response.body: body must be bytes, not {type(body).__name__}")
                body = bytes(body)
            framer = self.framer
            data = framer.body(body) if body else b""
            head = self.head_bytes
            if head is not None:
                self.head_bytes = None
                if len(data) <= COALESCE_LIMIT:
                    data = head + data  # one write, one TCP segment
                else:
                    self.channel.send_response(head, False)  # a large body goes out as it is, not copied
            if not message.get("more_body", False):
                tail = framer.end()
                if len(data) > COALESCE_LIMIT:
                    self.channel.send_response(data, False)
                    data = b""
                self._complete(data + tail if tail else data)
                return
            if data:
                self.channel.send_response(data, False)
            waiter = self.channel.writable()
            if waiter is not None:
                await waiter
                if self.disconnected:
                    raise ClientGone("the client closed the connection")
        elif kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("ASGI app sent http.response.start twice")
            status = message["status"]
            if type(status) is not int:
                raise TypeError(f"http.response.start: status must be an int, not {type(status).__name__}")
            reason = reason_phrase(status)
            headers = message.get("headers", ())
            self.head_bytes = self.framer.head(status, reason, headers)
            self.status_code = status
            self.status = f"{status} {reason}"
            if self.req is not None:
                self.headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]
        else:
            raise RuntimeError(f"ASGI app sent an unexpected message type {kind!r} on an HTTP connection")

    def _complete(self, data: bytes) -> None:
        self.complete = True
        try:
            if data:
                self.channel.send_response(data, True)
        finally:
            self._wake()  # a receive() waiting now sees http.disconnect
            self.cycle.logged(self)
            self.channel.response_complete()

    # --- what the access log and post_request read (Gunicorn's response attributes) ---

    @property
    def sent(self) -> int:
        return self.framer.bytes_sent

    @property
    def keep_alive(self) -> bool:
        return bool(self.framer.keep_alive) and not self.disconnected
