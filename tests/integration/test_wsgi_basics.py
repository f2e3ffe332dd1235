"""Each worker over real sockets: PEP 3333 environ, framing without Content-Length, binds.

Every test runs against ``sync``, ``gthread`` with the app inline on the loop thread, and ``gthread``
with four app threads. Responses are read by their framing, so a kept-alive connection does not
make a test wait for the server's idle timeout.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from serving import (
    WORKER_ARGS,
    free_port,
    parse_response,
    pronghorn_cmd,
    read_responses,
    running,
)


def _exchange(port: int, raw: bytes, host: str = "127.0.0.1", family: int = socket.AF_INET, *, count: int = 1,
              head: bool = False) -> bytes:
    """Send ``raw``; read until ``count`` responses are complete or the server closes."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(raw)
        return read_responses(sock, count, head=head)


@pytest.fixture(params=["sync", "gthread", "gthread-t4"])
def worker(request: pytest.FixtureRequest) -> list[str]:
    return WORKER_ARGS[request.param]


@pytest.fixture()
def validated_server(validated_project: Path, worker: list[str]):  # type: ignore[no-untyped-def]
    port = free_port()
    with running(pronghorn_cmd("validated:app", "-b", f"127.0.0.1:{port}", "-w", "2", *worker),
                 cwd=validated_project, port=port) as server:
        yield port, server


def test_environ_passes_wsgiref_validate(validated_server) -> None:  # type: ignore[no-untyped-def]
    port, server = validated_server
    raw = (b"POST /caf%C3%A9/x%2Fy?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
           b"Content-Type: text/plain\r\nX-Dup: a\r\nX-Dup: b\r\nConnection: close\r\n\r\nhello")
    status, headers, body = parse_response(_exchange(port, raw))
    assert status == 200, server.output()
    assert headers["transfer-encoding"] == "chunked"
    environ = json.loads(body)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/x/y"  # percent-decoded bytes shown as latin-1
    assert environ["RAW_URI"] == "/caf%C3%A9/x%2Fy?q=1&r=%20"
    assert environ["QUERY_STRING"] == "q=1&r=%20"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == str(port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"].isdigit()
    assert environ["CONTENT_LENGTH"] == "5" and environ["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_DUP"] == "a,b"
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multiprocess"] is True and environ["wsgi.input_terminated"] is True
    assert environ["body"] == "hello"


def test_http10_response_without_length_is_close_delimited(validated_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = validated_server
    data = _exchange(port, b"GET /old HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_chunked_request_body(validated_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = validated_server
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    status, _, body = parse_response(_exchange(port, raw))
    assert status == 200
    environ = json.loads(body)
    assert environ["body"] == "hello world"
    assert "HTTP_X_TRAILER" not in environ


def test_bad_request_gets_400_once_and_close(validated_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = validated_server
    # Two responses are waited for: only the close may end the read after the 400.
    data = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nxGET / HTTP/1.1\r\nHost: x\r\n\r\n",
                     count=2)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.count(b"HTTP/1.1") == 1


def test_head_request_has_no_body(validated_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = validated_server
    data = _exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b""


def test_repeated_binds_tcp_and_v6(validated_project: Path, worker: list[str]) -> None:
    port4, port6 = free_port(), free_port()
    has_v6 = socket.has_ipv6
    if has_v6:
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            has_v6 = False
    binds = ["-b", f"127.0.0.1:{port4}"] + (["-b", f"[::1]:{port6}"] if has_v6 else [])
    with running(pronghorn_cmd("validated:app", *binds, *worker), cwd=validated_project, port=port4) as server:
        assert _exchange(port4, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200")
        if has_v6:
            server.wait_for_output(f"[::1]:{port6}")
            data = _exchange(port6, b"GET / HTTP/1.0\r\n\r\n", host="::1", family=socket.AF_INET6)
            assert data.startswith(b"HTTP/1.0 200")
            assert json.loads(data.partition(b"\r\n\r\n")[2])["SERVER_NAME"] == "::1"


def test_port_environment_variable_sets_default_bind(validated_project: Path, worker: list[str]) -> None:
    port = free_port()
    with running(pronghorn_cmd("validated:app", *worker), cwd=validated_project, port=port, env={"PORT": str(port)}) as server:
        server.wait_for_output(f"0.0.0.0:{port}")
