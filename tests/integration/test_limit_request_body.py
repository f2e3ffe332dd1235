"""``limit_request_body`` over real sockets, for the sync worker and the default (gthread) worker.

A declared Content-Length over the limit is answered 413 as soon as the head is parsed: no
``100 Continue`` first, no body byte read, the app never called, and the connection closed. A
chunked body is refused once its de-chunked size would cross the limit; a body of exactly the
limit is served. Every server is a real pronghorn process stopped by its pid (``running()``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import (
    WORKER_ARGS,
    Server,
    free_port,
    parse_response,
    pronghorn_cmd,
    running,
    split_responses,
)

LIMIT = 1000
HUGE = 107374182400  # 100 GiB: never sent, only declared

APP = r'''
import os

CALLS = os.path.join(os.getcwd(), "calls.log")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    with open(CALLS, "a") as log:  # which requests reached the application at all
        log.write(environ["QUERY_STRING"] + "\n")
    if path == "/noread":  # never touches wsgi.input
        body = b"noread"
    else:
        size = 0
        while chunk := environ["wsgi.input"].read(4096):
            size += len(chunk)
        body = b"read %d" % size
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# "default" passes no worker flag at all: whatever the default worker is, it must enforce the limit.
WORKERS = {"sync": WORKER_ARGS["sync"], "default": [], "gthread-t4": WORKER_ARGS["gthread-t4"]}
NEXT_REQUEST = b"GET /noread?tag=next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@contextlib.contextmanager
def start(cwd: Path, worker: str, *extra: str) -> Iterator[tuple[int, Server]]:
    port = free_port()
    cmd = pronghorn_cmd("limitapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", *WORKERS[worker], *extra)
    with running(cmd, cwd=cwd, port=port) as srv:
        yield port, srv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("limit-body")
    (cwd / "limitapp.py").write_text(APP)
    return cwd


@pytest.fixture(scope="module", params=list(WORKERS))
def server(request: pytest.FixtureRequest, workdir: Path) -> Iterator[tuple[int, Server]]:
    with start(workdir, request.param, "--limit-request-body", str(LIMIT)) as started:
        yield started


def calls(cwd: Path, tag: str) -> int:
    log = cwd / "calls.log"
    return log.read_text().splitlines().count(f"tag={tag}") if log.exists() else 0


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test: never closed)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        return until_closed(sock)


def post_head(target: str, length: int, *, expect: bool = False) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n" % (
        target.encode(), length, b"Expect: 100-continue\r\n" if expect else b"")


def chunked_post(target: str, *sizes: int) -> bytes:
    chunks = b"".join(b"%x\r\n" % size + b"c" * size + b"\r\n" for size in sizes)
    return b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (target.encode(), chunks)


def assert_413_then_closed(data: bytes, srv: Server) -> None:
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), (data, srv.output()[-3000:])
    responses = split_responses(data)
    assert len(responses) == 1, responses  # nothing after it: the connection closed, pipelined bytes unanswered
    status, headers, _ = parse_response(responses[0])
    assert status == 413 and headers.get("connection") == "close"


@pytest.mark.parametrize("target", ["/noread", "/read"])
def test_declared_length_over_the_limit_gets_413_before_any_100_continue(
    server: tuple[int, Server], workdir: Path, target: str
) -> None:
    port, srv = server
    tag = f"huge{target.replace('/', '-')}"
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(post_head(f"{target}?tag={tag}", HUGE, expect=True))  # and not one body byte
        data = until_closed(sock)
    assert b"100 Continue" not in data, data
    assert_413_then_closed(data, srv)
    assert calls(workdir, tag) == 0  # refused with the head: the application never ran
    assert str(HUGE) in srv.output()  # the refusal is logged with the declared length


def test_declared_length_over_the_limit_without_expect(server: tuple[int, Server], workdir: Path) -> None:
    port, srv = server
    raw = post_head("/noread?tag=over", LIMIT + 1) + b"b" * (LIMIT + 1)
    assert_413_then_closed(exchange(port, raw), srv)
    assert calls(workdir, "over") == 0


@pytest.mark.parametrize("sizes", [(LIMIT + 1,), (500, 501), (LIMIT, 1)])
def test_chunked_body_crossing_the_limit_gets_413_and_closes(
    server: tuple[int, Server], sizes: tuple[int, ...]
) -> None:
    port, srv = server
    # The app reads its body (the sync worker reads it only through wsgi.input); the pipelined
    # request after it must never be answered.
    assert_413_then_closed(exchange(port, chunked_post("/read?tag=chunked-over", *sizes) + NEXT_REQUEST), srv)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_of_exactly_the_limit_is_served(server: tuple[int, Server], framing: str) -> None:
    port, srv = server
    if framing == "length":
        raw = post_head("/read?tag=exact", LIMIT) + b"b" * LIMIT
    else:
        raw = chunked_post("/read?tag=exact", 400, 599, 1)
    first, *_ = split_responses(exchange(port, raw + NEXT_REQUEST))
    status, _, body = parse_response(first)
    assert (status, body) == (200, b"read %d" % LIMIT), srv.output()[-3000:]


def test_exactly_the_limit_with_expect_gets_100_continue_then_200(server: tuple[int, Server]) -> None:
    port, srv = server
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(post_head("/read?tag=expect-exact", LIMIT, expect=True))
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", srv.output()[-3000:]
        sock.sendall(b"b" * LIMIT + NEXT_REQUEST)
        data = until_closed(sock)
    status, _, body = parse_response(split_responses(data)[0])
    assert (status, body) == (200, b"read %d" % LIMIT)


@pytest.mark.parametrize("worker", ["sync", "default"])
def test_default_limit_is_one_gib(workdir: Path, worker: str) -> None:
    with start(workdir, worker) as (port, srv):
        over = exchange(port, post_head("/noread?tag=default-over", (1 << 30) + 1, expect=True))
        assert b"100 Continue" not in over
        assert_413_then_closed(over, srv)
        # 1 GiB itself is allowed: the head is accepted and 100 Continue invites the body.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(post_head("/read?tag=default-at", 1 << 30, expect=True))
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n"), srv.output()[-3000:]
