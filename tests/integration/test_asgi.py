"""ASGI apps on real servers: scopes, bodies both ways, errors, disconnects, timeouts, lifespan,
detection and worker classes, WebSockets, and the WSGI features that apply to ASGI as well (access
log, max_requests, TLS, the PROXY protocol, Prometheus metrics)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import Server, child_env, free_port, http_request, pronghorn_cmd, read_responses, running

websockets = pytest.importorskip("websockets")
from websockets.sync.client import connect as ws_connect  # noqa: E402

APP = r'''
import asyncio, json, os, time

MARKS = os.environ.get("MARKS", ".")


def mark(name, text=""):
    with open(os.path.join(MARKS, name), "w") as f:
        f.write(text)


async def read_body(receive):
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def reply(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope, receive, send):
    mode = os.environ.get("LIFESPAN", "ok")
    message = await receive()
    if mode == "raise":
        raise RuntimeError("no lifespan here")
    if mode == "fail":
        await send({"type": "lifespan.startup.failed", "message": "the database is down"})
        return
    scope["state"]["greeting"] = "hello from startup"
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown"
    mark(f"shutdown-{os.getpid()}")
    await send({"type": "lifespan.shutdown.complete"})


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/ws/refuse":
        await send({"type": "websocket.close"})
        return
    if path == "/ws/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-length", b"6")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[-1] if offered else None,
                "headers": [(b"x-scope-scheme", scope["scheme"].encode())]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            mark(f"ws-closed-{message['code']}")
            return
        if message.get("text") == "close please":
            await send({"type": "websocket.close", "code": 4000, "reason": "asked to"})
            continue
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    path = scope["path"]
    if path.endswith("/scope"):
        shown = {key: value for key, value in scope.items() if key != "headers"}
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        for key in ("raw_path", "query_string"):
            shown[key] = scope[key].decode("latin-1")
        shown["state"] = dict(scope.get("state") or {})
        return await reply(send, 200, json.dumps(shown).encode())
    if path == "/echo":
        body = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})  # no length: chunked
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        await send({"type": "http.response.body", "body": body[len(body) // 2 :]})
        return
    if path == "/slow-read":  # reads its body slowly: the server must not buffer the upload meanwhile
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
            await asyncio.sleep(0.2)
        return await reply(send, 200, str(total).encode())
    if path == "/big":  # 64 MiB, streamed
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"67108864")]})
        block = b"x" * 65536
        for _ in range(1024):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/error-before":
        raise ValueError("broken before the response")
    if path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("broken in the middle")
    if path == "/start-twice":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 200, "headers": []})
    if path == "/after-complete":
        await reply(send, 200, b"done")
        await send({"type": "http.response.body", "body": b"more"})
    if path == "/no-response":
        return
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
    if path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        mark("saw-disconnect")
        return
    if path == "/ignore-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            mark("cancelled")
            raise
    if path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or 5))
        return await reply(send, 200, b"slept")
    if path == "/continue":
        body = await read_body(receive)
        return await reply(send, 200, b"got %d" % len(body))
    if path == "/background":
        await reply(send, 200, b"answered")
        await asyncio.sleep(0.5)
        mark("background-done")
        return
    await reply(send, 200, f"{os.getpid()} {path}".encode())
'''

WSGI_APP = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "asgiapp.py").write_text(APP)
    (tmp_path / "wsgiapp_plain.py").write_text(WSGI_APP)
    return tmp_path


@contextlib.contextmanager
def serve(project: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[int, Server]]:
    """``asgiapp:app`` served on a free port (``MARKS``: where the app leaves its marker files)."""
    port = free_port()
    cmd = pronghorn_cmd("asgiapp:app", "-b", f"127.0.0.1:{port}", *args)
    with running(cmd, cwd=project, port=port, env={"MARKS": str(project), **(env or {})}) as server:
        yield port, server


def _get(port: int, path: str, *, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return http_request(port, method, path, body, headers, timeout=20)


def _wait_for_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def _worker_pids(server_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server_pid)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- scopes -----------------------------------------------------------------------------------------


def test_http_scope_follows_the_spec(project: Path) -> None:
    with serve(project, "-k", "asgi") as (port, server):
        status, _, body = _get(port, "/a%20b/scope?x=1&y=%2F", headers={"X-Custom": "Value"})
        assert status == 200
        scope = json.loads(body)
        assert scope["type"] == "http"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/a b/scope"
        assert scope["raw_path"] == "/a%20b/scope"
        assert scope["query_string"] == "x=1&y=%2F"
        assert scope["root_path"] == ""
        assert ["x-custom", "Value"] in scope["headers"]
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
        assert scope["server"] == ["127.0.0.1", port]
        assert scope["state"] == {"greeting": "hello from startup"}


def test_root_path_is_the_mount_prefix(project: Path) -> None:
    with serve(project, "--root-path", "/api") as (port, server):
        scope = json.loads(_get(port, "/users/scope")[2])
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/users/scope"
        assert scope["raw_path"] == "/users/scope"


# --- bodies ------------------------------------------------------------------------------------------


def test_request_body_streamed_in_and_response_chunked_out(project: Path) -> None:
    with serve(project) as (port, server):
        payload = os.urandom(3 << 20)

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(payload), 100_000):
                yield payload[start : start + 100_000]

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("POST", "/echo", body=chunks(), encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == payload
        conn.close()


def test_an_app_reading_slowly_keeps_the_upload_out_of_server_memory(project: Path) -> None:
    with serve(project, "-w", "1") as (port, server):
        assert _get(port, "/")[0] == 200
        worker = _worker_pids(server.pid)[0]
        before = _rss_kib(worker)
        size = 64 << 20
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /slow-read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            sock.settimeout(0.5)
            block = b"y" * 65536
            sent = 0
            peak = before
            deadline = time.monotonic() + 8
            while sent < size and time.monotonic() < deadline:
                try:
                    sent += sock.send(block)
                except socket.timeout:
                    pass
                peak = max(peak, _rss_kib(worker))
        # The app takes one piece each 0.2 s: in 5 s the client got far less than 64 MiB in, the rest
        # waited in the client because the server stopped reading.
        assert sent < 32 << 20, f"{sent / 1048576:.1f} MiB sent, worker grew by {(peak - before) / 1024:.1f} MiB"
        assert peak - before < 16 * 1024, f"worker grew by {(peak - before) / 1024:.1f} MiB"


def test_a_client_that_does_not_read_keeps_the_response_out_of_server_memory(project: Path) -> None:
    with serve(project, "-w", "1") as (port, server):
        assert _get(port, "/")[0] == 200
        worker = _worker_pids(server.pid)[0]
        before = _rss_kib(worker)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(2)
            grown = _rss_kib(worker) - before
            # Another client is served while the 64 MiB response waits.
            started = time.monotonic()
            assert _get(port, "/other")[0] == 200
            assert time.monotonic() - started < 1
        assert grown < 8 * 1024, f"worker grew by {grown / 1024:.1f} MiB"


def test_expect_continue_is_answered_when_the_app_reads(project: Path) -> None:
    with serve(project) as (port, server), socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert read_responses(sock).endswith(b"got 5")


def test_pipelined_requests_are_answered_in_order(project: Path) -> None:
    with serve(project) as (port, server), socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
        data = read_responses(sock, 5)
        assert [data.index(b" /p%d" % i) for i in range(5)] == sorted(data.index(b" /p%d" % i) for i in range(5))


# --- errors, disconnects, timeouts --------------------------------------------------------------------


def test_app_errors(project: Path) -> None:
    with serve(project) as (port, server):
        assert _get(port, "/error-before")[0] == 500
        assert _get(port, "/no-response")[0] == 500
        assert _get(port, "/bad-header")[0] == 500
        # After http.response.start the client sees the response cut: no final chunk.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /error-after HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK") and b"partial" in received
        assert not received.endswith(b"0\r\n\r\n")
        # A started response whose head still waits for its body is replaced by the 500.
        assert _get(port, "/start-twice")[0] == 500
        status, _, body = _get(port, "/after-complete")
        assert (status, body) == (200, b"done")
        time.sleep(0.3)
        log = server.output()
        assert "broken before the response" in log and "broken in the middle" in log
        assert "ASGI app returned without starting the response" in log
        assert "http.response.start twice" in log
        assert "after the response was complete" in log
        assert "Invalid value for response header" in log or "x-bad" in log


def test_the_app_sees_the_client_go_away(project: Path) -> None:
    with serve(project) as (port, server):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"first" in sock.recv(65536)
        assert _wait_for_file(project / "saw-disconnect", 3)


def test_an_app_ignoring_the_disconnect_is_cancelled_after_the_grace_period(project: Path) -> None:
    with serve(project, "--asgi-disconnect-grace-period", "1") as (port, server):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /ignore-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"first" in sock.recv(65536)
        started = time.monotonic()
        assert _wait_for_file(project / "cancelled", 4)
        assert 0.8 < time.monotonic() - started < 3


def test_request_timeout_answers_504(project: Path) -> None:
    with serve(project, "--request-timeout", "1") as (port, server):
        started = time.monotonic()
        status, _, _ = _get(port, "/sleep?10")
        assert status == 504
        assert time.monotonic() - started < 3
        assert _get(port, "/sleep?0.1")[0] == 200  # the worker goes on


def test_background_work_after_the_response(project: Path) -> None:
    with serve(project) as (port, server):
        started = time.monotonic()
        status, _, body = _get(port, "/background")
        assert (status, body) == (200, b"answered")
        assert time.monotonic() - started < 0.4
        assert _wait_for_file(project / "background-done", 3)


# --- lifespan ---------------------------------------------------------------------------------------


def test_lifespan_shutdown_runs_when_the_worker_stops(project: Path) -> None:
    with serve(project, "-w", "2") as (port, server):
        assert json.loads(_get(port, "/scope")[2])["state"] == {"greeting": "hello from startup"}
        deadline = time.monotonic() + 10  # both workers booted (their signal handlers in place)
        while server.output().count("Serving an ASGI application") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _worker_pids(server.pid)
        server.signal(signal.SIGTERM)  # the master, which stops its workers
        assert server.wait(15) == 0
    assert sorted(p.name for p in project.glob("shutdown-*")) == sorted(f"shutdown-{pid}" for pid in workers)


@pytest.mark.parametrize(("mode", "lifespan"), [("fail", "auto"), ("fail", "on"), ("raise", "on")])
def test_a_failed_startup_stops_the_server_with_status_3(project: Path, mode: str, lifespan: str) -> None:
    port = free_port()
    cmd = pronghorn_cmd("asgiapp:app", "-b", f"127.0.0.1:{port}", "--asgi-lifespan", lifespan)
    proc = subprocess.run(cmd, cwd=project, env=child_env({"LIFESPAN": mode}), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "ASGI lifespan startup failed" in proc.stderr


def test_an_app_without_lifespan_support_is_served_in_auto_mode(project: Path) -> None:
    with serve(project, env={"LIFESPAN": "raise"}) as (port, server):
        assert json.loads(_get(port, "/scope")[2])["state"] == {}
        assert "ASGI lifespan is not used" in server.output()


def test_lifespan_off_never_calls_the_app(project: Path) -> None:
    with serve(project, "--asgi-lifespan", "off", env={"LIFESPAN": "fail"}) as (port, server):
        assert json.loads(_get(port, "/scope")[2])["state"] == {}  # (startup would have failed)


# --- worker classes and detection ------------------------------------------------------------------


def test_the_default_worker_detects_an_asgi_app(project: Path) -> None:
    with serve(project) as (port, server):
        assert _get(port, "/")[0] == 200
        assert "Serving an ASGI application" in server.output()


@pytest.mark.parametrize("worker_class", ["uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker",
                                          "gunicorn.workers.gasgi.ASGIWorker", "asgi"])
def test_worker_classes_of_configs_people_run(project: Path, worker_class: str) -> None:
    (project / "gunicorn.conf.py").write_text(f"worker_class = {worker_class!r}\nworkers = 2\n")
    with serve(project) as (port, server):
        assert _get(port, "/")[0] == 200
        if "uvicorn" in worker_class:
            assert f"worker_class {worker_class} is served by pronghorn's own ASGI worker" in server.output()


@pytest.mark.parametrize(("app", "worker", "expected"), [
    ("asgiapp:app", "sync", "it is an ASGI application"),
    ("wsgiapp_plain:app", "asgi", "this one is a WSGI application"),
])
def test_a_worker_class_that_cannot_serve_the_app_stops_the_server(project: Path, app: str, worker: str,
                                                                    expected: str) -> None:
    cmd = pronghorn_cmd(app, "-b", f"127.0.0.1:{free_port()}", "-k", worker)
    proc = subprocess.run(cmd, cwd=project, env=child_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 4
    assert expected in proc.stderr


def test_asgi_loop_asyncio(project: Path) -> None:
    with serve(project, "--asgi-loop", "asyncio") as (port, server):
        assert _get(port, "/")[0] == 200
        assert "on the asyncio event loop" in server.output()


# --- what applies to ASGI as to WSGI ------------------------------------------------------------------


def test_access_log_and_max_requests(project: Path) -> None:
    with serve(project, "-w", "1", "--max-requests", "5", "--access-logfile", "-") as (port, server):
        pids = {_get(port, f"/n{i}")[2].split()[0] for i in range(12)}
        assert len(pids) >= 2  # the worker was replaced after 5 requests
        time.sleep(0.3)
        log = server.output()
        assert '"GET /n3 HTTP/1.1" 200 ' in log
        assert "Autorestarting worker after current request." in log


def test_tls_and_wss(project: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    pem = str(tmp_path / "server.pem")
    with serve(project, "--certfile", pem, "--keyfile", pem) as (port, server):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        conn.request("GET", "/scope")
        assert json.loads(conn.getresponse().read())["scheme"] == "https"
        conn.close()
        with ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=context) as ws:
            assert ws.response.headers["x-scope-scheme"] == "wss"
            ws.send("over tls")
            assert ws.recv(timeout=5) == "over tls"


def test_proxy_protocol_sets_the_client(project: Path) -> None:
    with serve(project, "--proxy-protocol", "v1") as (port, server), \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\nGET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        body = read_responses(sock).split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["client"] == ["203.0.113.7", 51000]


def test_prometheus_counts_asgi_requests(project: Path) -> None:
    pytest.importorskip("prometheus_client")
    metrics_port = free_port()
    with serve(project, "-w", "2", "--metrics-bind", f"127.0.0.1:{metrics_port}") as (port, server):
        for _ in range(7):
            assert _get(port, "/")[0] == 200
        assert _get(port, "/error-before")[0] == 500
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline:
            text = _get(metrics_port, "/metrics")[2].decode()
            if 'pronghorn_requests_total{method="GET",status="200"} 7.0' in text:
                break
            time.sleep(0.2)
        assert 'pronghorn_requests_total{method="GET",status="200"} 7.0' in text
        assert 'pronghorn_requests_total{method="GET",status="500"} 1.0' in text


# --- WebSockets -------------------------------------------------------------------------------------


def test_websocket_echo_fragments_ping_and_close(project: Path) -> None:
    with serve(project) as (port, server):
        with ws_connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat", "superchat"]) as ws:
            assert ws.subprotocol == "superchat"
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            ws.send(b"\x00\x01\x02")
            assert ws.recv(timeout=5) == b"\x00\x01\x02"
            ws.send(["frag", "mented"])
            assert ws.recv(timeout=5) == "fragmented"
            ws.send("é" * 10000)
            assert ws.recv(timeout=5) == "é" * 10000
            assert ws.ping().wait(5)
            ws.send("close please")
            with pytest.raises(websockets.ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 4000 and ws.close_reason == "asked to"
        with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("bye")
            assert ws.recv(timeout=5) == "bye"
        assert _wait_for_file(project / "ws-closed-1000", 3)


def test_websocket_message_over_the_limit_closes_with_1009(project: Path) -> None:
    with serve(project, "--websocket-max-message-size", "1000") as (port, server):
        with ws_connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            ws.send("x" * 1000)
            assert ws.recv(timeout=5) == "x" * 1000
            ws.send("x" * 1001)
            with pytest.raises(websockets.ConnectionClosedError):
                ws.recv(timeout=5)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009
        with ws_connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            ws.send(["x" * 600, "x" * 600])  # fragments under the limit, a message over it
            with pytest.raises(websockets.ConnectionClosedError):
                ws.recv(timeout=5)
            assert ws.protocol.close_rcvd.code == 1009
        assert _wait_for_file(project / "ws-closed-1009", 3)


def test_websocket_handshakes_refused(project: Path) -> None:
    with serve(project) as (port, server):
        with pytest.raises(websockets.InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{port}/ws/refuse")
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus) as denied:
            ws_connect(f"ws://127.0.0.1:{port}/ws/deny")
        assert denied.value.response.status_code == 401 and denied.value.response.body == b"denied"
        handshake = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(handshake.format(12).encode())
            response = read_responses(sock)
            assert response.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13\r\n" in response
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(handshake.replace("dGhlIHNhbXBsZSBub25jZQ==", "short").format(13).encode())
            assert read_responses(sock).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(handshake.format(13).encode())
            response = sock.recv(65536)
            assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 section 1.3


def test_many_websockets_in_one_worker(project: Path) -> None:
    with serve(project, "-w", "1") as (port, server):
        clients = [ws_connect(f"ws://127.0.0.1:{port}/ws").__enter__() for _ in range(200)]
        try:
            for index, ws in enumerate(clients):
                ws.send(f"n{index}")
            assert [ws.recv(timeout=10) for ws in clients] == [f"n{index}" for index in range(200)]
        finally:
            for ws in clients:
                ws.close()


if sys.platform != "linux":  # /proc
    pytestmark = pytest.mark.skip("reads /proc")


def test_a_stopping_worker_closes_websockets_with_1012(project: Path) -> None:
    with serve(project, "-w", "1", "--graceful-timeout", "20") as (port, server):
        with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 1012
        assert server.wait(10) == 0
        assert time.monotonic() - started < 5  # not held until graceful_timeout
        assert _wait_for_file(project / "ws-closed-1012", 1)


def test_lifespan_shutdown_runs_even_when_a_request_outlasts_graceful_timeout(project: Path) -> None:
    with serve(project, "-w", "1", "--graceful-timeout", "4") as (port, server):
        assert _get(port, "/")[0] == 200
        worker = _worker_pids(server.pid)[0]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /sleep?60 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert server.wait(10) == 0
        assert time.monotonic() - started < 6
        assert (project / f"shutdown-{worker}").exists()  # before the master's kill at graceful_timeout
