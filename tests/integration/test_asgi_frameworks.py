"""ASGI frameworks in real servers with real clients: a Starlette app, a Django ASGI app behind a small
ASGI router (lifespan and WebSockets are the router's, as real Django deployments do it) and the
FastAPI example of ``examples/``. Each: lifespan state reaching requests, a WebSocket echo driven by
the ``websockets`` client, request bodies, client disconnects seen by the app, several workers, and
the lifespan shutdown after TERM."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import REPO, Server, free_port, http_get, http_request, pronghorn_cmd

pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

# -- helpers ------------------------------------------------------------------------------------------

# Written next to each app: ``mark(name)`` makes a file the test waits for (atomically, by rename).
MARK = r'''
import os as _os
from pathlib import Path as _Path

HERE = _Path(__file__).resolve().parent


def mark(name, text=""):
    tmp = HERE / f".{name}.{_os.getpid()}.tmp"
    tmp.write_text(text)
    tmp.replace(HERE / name)
'''


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def marks(directory: Path, prefix: str) -> set[str]:
    return {path.name[len(prefix):] for path in directory.glob(f"{prefix}*")}


def get_json(port: int, path: str) -> Any:
    status, headers, body = http_get(port, path)
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body)


def pids_answering(port: int, path: str, want: int, pid_of: Callable[[bytes], int]) -> set[int]:
    """Worker pids seen over fresh concurrent connections, until ``want`` are seen (or 10 rounds)."""
    pids: set[int] = set()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            for status, _, body in pool.map(lambda _: http_get(port, path), range(16)):
                assert status == 200, body
                pids.add(pid_of(body))
            if len(pids) >= want:
                break
    return pids


def ws_url(port: int, path: str) -> str:
    return f"ws://127.0.0.1:{port}{path}"


def assert_echoes(port: int, path: str, greeting: str | None = None) -> None:
    """A WebSocket session: the greeting first (if any), then text and bytes messages echoed."""
    with connect(ws_url(port, path), open_timeout=10, close_timeout=5) as ws:
        if greeting is not None:
            assert ws.recv(timeout=10) == greeting
        for message in ("hello", "", "héllo wörld ✓", "x" * 70_000,  # past 64 KiB: a 64-bit frame length
                        b"\x00\x01\x02\xff", b"", bytes(range(256)) * 1000):
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.send(["frag", "mented"])  # one message in several frames
        assert ws.recv(timeout=10) == "fragmented"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[Server, int]]]:
    """Starts ``pronghorn *args -b <a free port>`` (stopped at the end of the test) and waits for its
    port (and for ``ready`` in its output): ``server, port = start("app:app", "-w", "2")``."""
    servers: list[Server] = []

    def _start(*args: str, cwd: Path = tmp_path, ready: str | None = None) -> tuple[Server, int]:
        port = free_port()
        server = Server(pronghorn_cmd(*args, "-b", f"127.0.0.1:{port}"), cwd=cwd,
                        log=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        server.wait_for_port(port)
        if ready:
            server.wait_for_output(ready)
        return server, port

    try:
        yield _start
    finally:
        for server in servers:
            server.stop()


def term_and_wait(server: Server) -> str:
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0, server.output()
    return server.output()


def assert_clean(output: str) -> None:
    """No traceback or error in a server's log."""
    assert "Traceback" not in output and "[ERROR]" not in output, output


# -- Starlette ----------------------------------------------------------------------------------------

STARLETTE_APP = MARK + r'''
import asyncio
import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute


@asynccontextmanager
async def lifespan(app):
    mark(f"started-{os.getpid()}")
    yield {"greeting": "hello from the lifespan", "worker_pid": os.getpid()}
    mark(f"shutdown-{os.getpid()}")


async def state(request):
    return JSONResponse({"greeting": request.state.greeting, "worker_pid": request.state.worker_pid,
                         "pid": os.getpid(), "root_path": request.scope["root_path"]})


async def upload(request):
    await asyncio.sleep(float(request.query_params.get("delay", 0)))  # a busy app, the body waiting
    body = await request.body()
    return JSONResponse({"length": len(body), "first": body[:1].decode()})


async def wait_for_disconnect(request):
    """Answers nothing: polls until the client goes away, as long-polling endpoints do."""
    tag = request.query_params["tag"]
    mark(f"waiting-{tag}")
    while not await request.is_disconnected():
        await asyncio.sleep(0.05)
    mark(f"disconnected-{tag}")
    return PlainTextResponse("nobody is listening")


async def lines():
    for n in range(100_000):
        yield f"line {n}\n"
        await asyncio.sleep(0.02)


class Stream:
    """Lines until the client goes away: then ``send`` raises (an OSError, ASGI 2.4), which
    Starlette's StreamingResponse turns into ClientDisconnect."""

    async def __call__(self, scope, receive, send):
        tag = Request(scope).query_params["tag"]
        try:
            await StreamingResponse(lines(), media_type="text/plain")(scope, receive, send)
        except ClientDisconnect:
            mark(f"stream-gone-{tag}")
            raise


async def echo(websocket):
    await websocket.accept()
    await websocket.send_text(websocket.state.greeting)  # the lifespan state in a WebSocket's scope
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            mark(f"ws-closed-{websocket.query_params.get('tag', '')}", str(message.get("code")))
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


async def echo_with_idle_pings(websocket):
    """An echo that sends "ping" after 0.2 s without a message: receive() under asyncio.wait_for,
    as idle timeouts and heartbeats are written."""
    await websocket.accept()
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), 0.2)
        except asyncio.TimeoutError:
            await websocket.send_text("ping")
            continue
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_text(message["text"])


app = Starlette(lifespan=lifespan, routes=[
    Route("/state", state),
    Route("/upload", upload, methods=["POST"]),
    Route("/wait", wait_for_disconnect),
    Route("/stream", Stream()),
    WebSocketRoute("/ws", echo),
    WebSocketRoute("/ws-idle", echo_with_idle_pings),
])
'''


@pytest.fixture
def starlette_project(tmp_path: Path) -> Path:
    pytest.importorskip("starlette")
    (tmp_path / "starletteapp.py").write_text(STARLETTE_APP)
    return tmp_path


def test_starlette_lifespan_state_routes_and_websocket_echo(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    server, port = start("starletteapp:app", "-w", "1")
    state = get_json(port, "/state")
    assert state["greeting"] == "hello from the lifespan" and state["worker_pid"] == state["pid"]
    assert "Serving an ASGI application" in server.output()

    status, _, body = http_request(port, "POST", "/upload", b"y" * 200_000, {"Content-Type": "application/octet-stream"})
    assert (status, json.loads(body)) == (200, {"length": 200_000, "first": "y"})

    assert_echoes(port, "/ws?tag=greeting", "hello from the lifespan")
    # The client's close reached the app as websocket.disconnect with the client's code.
    assert wait_for(lambda: (starlette_project / "ws-closed-greeting").exists())
    assert (starlette_project / "ws-closed-greeting").read_text() == "1000"
    assert_clean(server.output())


def test_starlette_reads_a_body_over_256_kib_that_arrived_before_it_read(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    _, port = start("starletteapp:app")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:  # the app sleeps first: the whole body is received before it reads any of it
        conn.request("POST", "/upload?delay=0.3", body=b"y" * 300_000, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"length": 300_000, "first": "y"})
    finally:
        conn.close()


def test_starlette_websocket_too_large_message_closes_with_1009(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    _, port = start("starletteapp:app", "--websocket-max-message-size", "1000")
    with connect(ws_url(port, "/ws?tag=big"), open_timeout=10) as ws:
        ws.recv(timeout=10)  # the greeting
        ws.send("x" * 1000)
        assert ws.recv(timeout=10) == "x" * 1000
        ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert wait_for(lambda: (starlette_project / "ws-closed-big").exists())
    assert (starlette_project / "ws-closed-big").read_text() == "1009"


def test_starlette_websocket_receive_under_a_timeout(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    _, port = start("starletteapp:app")
    with connect(ws_url(port, "/ws-idle"), open_timeout=10) as ws:
        assert ws.recv(timeout=5) == "ping"  # 0.2 s without a message: the app's wait_for timed out
        for text in ("hello", "again"):
            ws.send(text)
            assert ws.recv(timeout=5) == text


def test_starlette_sees_the_client_disconnect(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    _, port = start("starletteapp:app", "--asgi-disconnect-grace-period", "30")
    # Before the response starts: the app polls request.is_disconnected().
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /wait?tag=poll HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert wait_for(lambda: (starlette_project / "waiting-poll").exists())
    time.sleep(0.2)
    assert not (starlette_project / "disconnected-poll").exists()
    closed_at = time.monotonic()
    sock.close()
    assert wait_for(lambda: (starlette_project / "disconnected-poll").exists(), timeout=5)
    assert time.monotonic() - closed_at < 3

    # Mid-response: the client reads part of a streamed body, then closes the socket.
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /stream?tag=mid HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    received = b""
    while received.count(b"line ") < 5:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in received.lower()
    closed_at = time.monotonic()
    sock.close()
    assert wait_for(lambda: (starlette_project / "stream-gone-mid").exists(), timeout=5)
    assert time.monotonic() - closed_at < 3

    assert get_json(port, "/state")["greeting"] == "hello from the lifespan"  # the worker serves on


def test_starlette_two_workers_each_run_the_lifespan_and_shut_it_down_on_term(starlette_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    server, port = start("starletteapp:app", "-w", "2", "--root-path", "/api")
    assert wait_for(lambda: len(marks(starlette_project, "started-")) == 2, timeout=10)
    started = marks(starlette_project, "started-")
    pids = pids_answering(port, "/state", 2, lambda body: json.loads(body)["pid"])
    assert {str(pid) for pid in pids} == started
    state = get_json(port, "/api/state")  # the mount prefix: in root_path, stripped by the router
    assert state["root_path"] == "/api" and state["greeting"] == "hello from the lifespan"
    with connect(ws_url(port, "/ws?tag=term"), open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "hello from the lifespan"
    assert marks(starlette_project, "shutdown-") == set()
    output = term_and_wait(server)
    assert marks(starlette_project, "shutdown-") == started, output
    assert_clean(output)


# -- Django -------------------------------------------------------------------------------------------

DJANGO_APP = MARK + r'''
import asyncio
import os
import threading

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="not-a-secret: a test app",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,
    USE_TZ=True,
)

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings.configure)
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def state_view(request):
    """An async view: the router's lifespan state is in the ASGI scope of the request."""
    state = request.scope.get("state", {})
    return JsonResponse({"greeting": state.get("greeting"), "started_by": state.get("started_by"),
                         "pid": os.getpid(), "method": request.method})


def sync_view(request):
    """A sync view: Django runs it in a thread."""
    return JsonResponse({"q": request.GET.get("q"), "on_main_thread": threading.current_thread() is threading.main_thread(),
                         "pid": os.getpid()})


def upload_view(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"length": len(request.body), "content_type": request.content_type})


async def slow_view(request):
    """Waits; Django cancels it when the client goes away (Django >= 5.0)."""
    tag = request.GET["tag"]
    mark(f"waiting-{tag}")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        mark(f"cancelled-{tag}")
        raise
    return HttpResponse("late")


urlpatterns = [
    path("state", state_view),
    path("sync", sync_view),
    path("upload", upload_view),
    path("slow", slow_view),
]

django_app = get_asgi_application()


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = "hello from the router"
            scope["state"]["started_by"] = os.getpid()
            mark(f"started-{os.getpid()}")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            mark(f"shutdown-{os.getpid()}")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket_echo(scope, receive, send):
    """Raw ASGI WebSocket messages, the greeting from the lifespan state first."""
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": scope["state"]["greeting"]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
    else:
        await django_app(scope, receive, send)
'''


@pytest.fixture
def django_project(tmp_path: Path) -> Path:
    pytest.importorskip("django", minversion="4.2")
    (tmp_path / "djangoapp.py").write_text(DJANGO_APP)
    return tmp_path


def test_django_behind_an_asgi_router_with_two_workers(django_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    server, port = start("djangoapp:application", "-k", "asgi", "-w", "2", ready="Serving an ASGI application")
    assert wait_for(lambda: len(marks(django_project, "started-")) == 2, timeout=10)
    started = marks(django_project, "started-")

    state = get_json(port, "/state")
    assert state["greeting"] == "hello from the router" and state["started_by"] == state["pid"]
    pids = pids_answering(port, "/state", 2, lambda body: json.loads(body)["pid"])
    assert {str(pid) for pid in pids} == started

    sync = get_json(port, "/sync?q=caf%C3%A9")
    assert sync["q"] == "café" and sync["on_main_thread"] is False

    for size in (0, 11, 200_000):
        status, _, body = http_request(port, "POST", "/upload", b"z" * size, {"Content-Type": "application/octet-stream"})
        assert (status, json.loads(body)) == (200, {"length": size, "content_type": "application/octet-stream"})
    # Chunked request body, as a client streaming an upload sends it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/upload", body=iter([b"ab", b"cde", b"f" * 100_000]), encode_chunked=True,
                     headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"length": 100_005, "content_type": "text/plain"})
    finally:
        conn.close()

    assert http_get(port, "/nowhere")[0] == 404

    assert_echoes(port, "/ws", "hello from the router")

    output = term_and_wait(server)
    assert marks(django_project, "shutdown-") == started, output
    assert_clean(output)


def test_django_view_is_cancelled_when_the_client_goes_away(django_project: Path, start: Callable[..., tuple[Server, int]]) -> None:
    pytest.importorskip("django", minversion="5.0")  # Django 5.0 cancels views on a disconnect
    server, port = start("djangoapp:application", "--asgi-disconnect-grace-period", "30")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /slow?tag=gone HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert wait_for(lambda: (django_project / "waiting-gone").exists())
    closed_at = time.monotonic()
    sock.close()
    assert wait_for(lambda: (django_project / "cancelled-gone").exists(), timeout=5), server.output()
    assert time.monotonic() - closed_at < 3
    assert get_json(port, "/state")["greeting"] == "hello from the router"


# -- FastAPI: the example of examples/ ----------------------------------------------------------------


@pytest.fixture
def fastapi_server(tmp_path: Path, start: Callable[..., tuple[Server, int]]) -> tuple[Server, int]:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    assert (REPO / "examples" / "fastapi_app.py").is_file()
    # As its docstring says to run it, from the repository root.
    return start("--chdir", "examples", "fastapi_app:app", "-w", "2", cwd=REPO, ready="Serving an ASGI application")


def test_fastapi_example_serves_every_route(fastapi_server: tuple[Server, int]) -> None:
    server, port = fastapi_server

    index = get_json(port, "/")
    assert index["store_open"] is True and isinstance(index["worker_pid"], int)
    assert index["worker_pid"] != server.pid

    # The store lives in each worker's lifespan state: create and read back on one kept-alive connection.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        before = json.loads(response.read())
        conn.request("POST", "/items", body=json.dumps({"name": "hat", "price": 12.5, "tags": ["wool"]}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        created = json.loads(response.read())
        assert response.status == 201, created
        assert created["name"] == "hat" and created["price"] == 12.5 and created["tags"] == ["wool"]
        conn.request("GET", f"/items/{created['id']}")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, created)
        conn.request("GET", "/")
        response = conn.getresponse()
        after = json.loads(response.read())
        assert after["worker_pid"] == before["worker_pid"] and after["items"] == before["items"] + 1
        conn.request("GET", "/items/999999")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (404, {"detail": "no such item"})
    finally:
        conn.close()

    # pydantic refuses an invalid body with 422.
    status, _, body = http_request(port, "POST", "/items", json.dumps({"name": "", "price": -1}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 422
    assert {error["loc"][-1] for error in json.loads(body)["detail"]} == {"name", "price"}

    # The streamed countdown, chunked, read with httpx as it arrives.
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        with client.stream("GET", "/countdown", params={"start": 4}) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert streamed.headers["content-type"].startswith("text/plain")
            assert list(streamed.iter_lines()) == ["4", "3", "2", "1", "liftoff"]
        assert client.get("/openapi.json").json()["info"]["title"] == "pronghorn FastAPI example"

    assert_echoes(port, "/ws")

    # Two workers, each with its own store (its own lifespan state).
    pids = pids_answering(port, "/", 2, lambda body: json.loads(body)["worker_pid"])
    assert len(pids) == 2 and server.pid not in pids
    assert_clean(term_and_wait(server))
