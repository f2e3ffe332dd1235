"""The pure parts of ASGI serving: response heads from byte headers, the parser handing over after an
upgrade, the WebSocket handshake checks, app detection, worker class names, and one HTTP exchange's
``receive``/``send`` rules driven on a real event loop with a recording channel."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from pronghorn.apps.asgi import AsgiCycle, HttpExchange
from pronghorn.apps.cycle import CycleHooks, CycleSettings
from pronghorn.apps.loading import is_asgi_app
from pronghorn.apps.websocket import handshake_error, is_upgrade
from pronghorn.config import Config
from pronghorn.http import EndOfMessage, RequestHead, RequestParser, ResponseFramer
from pronghorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName
from pronghorn.workers.registry import resolve_worker_class, worker_class_label


def _framer(version: tuple[int, int] = (1, 1)) -> ResponseFramer:
    return ResponseFramer(request_method=b"GET", request_version=version, keep_alive=True, server_header=b"pronghorn")


def _head(raw: bytes) -> RequestHead:
    parser = RequestParser()
    parser.feed(raw)
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    return head


# --- response heads from byte headers ------------------------------------------------------------


def test_byte_headers_frame_like_str_headers() -> None:
    framer = _framer()
    head = framer.head(200, "OK", [(b"content-type", b"text/plain"), [b"content-length", b"5"]])
    assert b"\r\ncontent-type: text/plain\r\n" in head and b"\r\ncontent-length: 5\r\n" in head
    assert framer.content_length == 5 and not framer.chunked
    chunked = _framer()
    chunked.head(200, "OK", [(b"x-a", b"1")])
    assert chunked.chunked


@pytest.mark.parametrize(("headers", "error"), [
    ([(b"x-bad", b"a\r\nb")], InvalidResponseHeader),
    ([(b"x-bad", b"a\x00b")], InvalidResponseHeader),
    ([(b"bad name", b"v")], InvalidResponseHeaderName),
    ([(b"content-length", b"5"), (b"content-length", b"6")], InvalidResponseHeader),
])
def test_byte_headers_are_validated(headers: list[Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        _framer().head(200, "OK", headers)


def test_hop_by_hop_byte_headers_are_dropped() -> None:
    head = _framer().head(200, "OK", [(b"Connection", b"close"), (b"Transfer-Encoding", b"chunked"), (b"x", b"y")])
    assert head.count(b"Transfer-Encoding") == 1  # the server's own (the body has no length)
    assert b"Connection: close\r\n" in head  # the app's close is honoured, in the server's own line


# --- the parser after an upgrade -----------------------------------------------------------------


def test_take_rest_hands_over_the_bytes_after_the_head() -> None:
    parser = RequestParser()
    parser.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
    assert isinstance(parser.next_event(), RequestHead)
    assert isinstance(parser.next_event(), EndOfMessage)
    assert parser.take_rest() == b"\x81\x05hello"
    with pytest.raises(RuntimeError):
        parser.take_rest()


# --- WebSocket handshakes ---------------------------------------------------------------------------

GOOD = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_a_good_handshake() -> None:
    head = _head(GOOD)
    assert is_upgrade(head)
    assert handshake_error(head) is None


@pytest.mark.parametrize(("raw", "status"), [
    (GOOD.replace(b"GET", b"POST"), b"400"),
    (GOOD.replace(b"HTTP/1.1", b"HTTP/1.0"), b"400"),
    (GOOD.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="), b"400"),
    (GOOD.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"), b"400"),
    (GOOD.replace(b"Version: 13", b"Version: 8"), b"426"),
])
def test_bad_handshakes_get_their_status(raw: bytes, status: bytes) -> None:
    response = handshake_error(_head(raw))
    assert response is not None and response.startswith(b"HTTP/1.1 " + status)
    if status == b"426":
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in response


def test_only_websocket_upgrades_are_upgrades() -> None:
    assert not is_upgrade(_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert not is_upgrade(_head(GOOD.replace(b"Upgrade: websocket", b"Upgrade: h2c")))
    assert not is_upgrade(_head(GOOD.replace(b"Connection: keep-alive, Upgrade", b"Connection: keep-alive")))


# --- detection and worker classes -----------------------------------------------------------------


async def _asgi(scope: Any, receive: Any, send: Any) -> None: ...


class _AsgiObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


def _wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


class _WsgiClass:
    def __init__(self, environ: Any, start_response: Any) -> None: ...


def test_asgi_apps_are_told_from_wsgi_apps() -> None:
    assert is_asgi_app(_asgi) and is_asgi_app(_AsgiObject()) and is_asgi_app(functools.partial(_asgi))
    assert not is_asgi_app(_wsgi) and not is_asgi_app(_WsgiClass) and not is_asgi_app(_AsgiObject)


@pytest.mark.parametrize("name", ["asgi", "gunicorn.workers.gasgi.ASGIWorker", "egg:gunicorn#asgi",
                                  "uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornH11Worker",
                                  "uvicorn_worker.UvicornWorker"])
def test_asgi_worker_names(name: str) -> None:
    worker_class = resolve_worker_class(name)
    assert worker_class.__name__ == "AsgiWorker"
    label = worker_class_label(name, worker_class)
    assert label.startswith("asgi")
    assert ("uvicorn is not used" in label) == ("uvicorn" in name)


# --- one exchange ----------------------------------------------------------------------------------


class Channel:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bool]] = []
        self.completed = 0
        self.aborted = 0
        self.wanted = 0

    def send_response(self, data: bytes, last: bool) -> None:
        self.sent.append((data, last))

    def writable(self) -> None:
        return None

    def body_wanted(self) -> None:
        self.wanted += 1

    def response_complete(self) -> None:
        self.completed += 1

    def abort(self) -> None:
        self.aborted += 1


def _exchange(loop: asyncio.AbstractEventLoop, raw: bytes) -> tuple[HttpExchange, Channel]:
    cycle = AsgiCycle(_asgi, CycleSettings(Config()), _Log(), CycleHooks(), Config())
    cycle.loop = loop
    head = _head(raw)
    channel = Channel()
    client = cycle.connection(("127.0.0.1", 5000), ("127.0.0.1", 8000))
    framer = ResponseFramer(request_method=head.method, request_version=head.version, keep_alive=True,
                            server_header=b"pronghorn")
    return HttpExchange(cycle, head, client, channel, framer, cycle.scope("http", head, client, "http", None)), channel


class _Log:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def test_receive_hands_over_the_body_then_waits_for_the_end() -> None:
    async def run() -> None:
        exchange, channel = _exchange(asyncio.get_running_loop(),
                                      b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
        exchange.feed_body(b"abc")
        assert await exchange.receive() == {"type": "http.request", "body": b"abc", "more_body": True}
        later = asyncio.ensure_future(exchange.receive())
        await asyncio.sleep(0)
        assert not later.done() and channel.wanted
        exchange.feed_body(b"def")
        exchange.end_body()
        assert await later == {"type": "http.request", "body": b"def", "more_body": False}
        pending = asyncio.ensure_future(exchange.receive())
        await asyncio.sleep(0)
        assert not pending.done()  # nothing more until the client goes or the response is complete
        exchange.client_gone()
        assert await pending == {"type": "http.disconnect"}

    asyncio.run(run())


def test_send_rules() -> None:
    async def run() -> None:
        exchange, channel = _exchange(asyncio.get_running_loop(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(RuntimeError, match="before http.response.start"):
            await exchange.send({"type": "http.response.body", "body": b"x"})
        with pytest.raises(RuntimeError, match="unexpected message type"):
            await exchange.send({"type": "http.response.push"})
        await exchange.send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
        with pytest.raises(RuntimeError, match="twice"):
            await exchange.send({"type": "http.response.start", "status": 200})
        assert channel.sent == []  # the head waits for the first body bytes
        await exchange.send({"type": "http.response.body", "body": b"ok"})
        (data, last), = channel.sent
        assert data.startswith(b"HTTP/1.1 201 Created\r\n") and data.endswith(b"\r\n\r\nok") and last
        assert channel.completed == 1
        with pytest.raises(RuntimeError, match="after the response was complete"):
            await exchange.send({"type": "http.response.body", "body": b"more"})
        assert await exchange.receive() == {"type": "http.request", "body": b"", "more_body": False}
        assert await exchange.receive() == {"type": "http.disconnect"}

    asyncio.run(run())


def test_a_streamed_response_is_chunked() -> None:
    async def run() -> None:
        exchange, channel = _exchange(asyncio.get_running_loop(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await exchange.send({"type": "http.response.start", "status": 200})
        await exchange.send({"type": "http.response.body", "body": b"one", "more_body": True})
        await exchange.send({"type": "http.response.body", "body": b"", "more_body": True})
        await exchange.send({"type": "http.response.body", "body": b"two"})
        wire = b"".join(data for data, _ in channel.sent)
        assert wire.split(b"\r\n\r\n", 1)[1] == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"

    asyncio.run(run())


def test_a_cancelled_receive_leaves_the_others_waiting() -> None:
    async def run() -> None:
        exchange, _ = _exchange(asyncio.get_running_loop(), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
        other = asyncio.ensure_future(exchange.receive())
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(exchange.receive(), 0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(exchange.receive(), 0.05)
        assert not other.done()
        exchange.feed_body(b"abc")
        exchange.end_body()
        assert (await other)["body"] == b"abc"
        assert exchange.waiters == []

    asyncio.run(run())


@pytest.mark.parametrize(("path", "expected"), [("/users", "/api/users"), ("/api/users", "/api/users"),
                                                 ("/api", "/api"), ("/apix", "/api/apix")])
def test_root_path_prefixes_a_path_once(path: str, expected: str) -> None:
    config = Config()
    config.set("root_path", "/api")
    cycle = AsgiCycle(_asgi, CycleSettings(config), _Log(), CycleHooks(), config)
    client = cycle.connection(("127.0.0.1", 5000), ("127.0.0.1", 8000))
    scope = cycle.scope("http", _head(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()), client, "http", None)
    assert (scope["path"], scope["root_path"]) == (expected, "/api")
