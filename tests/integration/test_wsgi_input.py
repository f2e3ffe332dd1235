"""``wsgi.input`` and ``Expect: 100-continue`` over real sockets.

Every read style must stop exactly at the end of the body: each test pipelines a second request's
bytes right after the body on the same connection, and the app reports what it read. One server
(one worker) runs ``inputapp``, wrapped in ``wsgiref.validate`` with warnings turned into errors:
``sync``, ``gthread`` with the app inline on the loop thread, and ``gthread`` with four app threads.

The sync worker answers one request per connection; the gthread worker keeps the connection alive,
so it also answers the pipelined request (which says ``Connection: close``) and that answer is
checked too. The gthread worker receives the whole body on its loop before the app runs: a body
that is malformed or cut short is answered (or the connection closed) without running the app, and
``100 Continue`` goes out as soon as the head is parsed rather than on the app's first read.
"""

from __future__ import annotations

import json
import socket
import time
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

INPUT_APP = r'''
import json, os, time, warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")

ERROR_LOG = os.path.join(os.getcwd(), "read-errors.log")
TEXT = ("Content-Type", "text/plain")


def read_parts(stream, style, arg):
    """The pieces one read style returns until the body ends."""
    if style == "read-all":
        # validate's InputWrapper insists on read(size); read() with no argument is what is tested
        # here, so call the server's stream underneath it.
        return [stream.input.read()]
    if style == "read-n":
        parts = []
        while part := stream.read(arg):
            parts.append(part)
        return parts
    if style == "readline":
        parts = []
        while line := stream.readline():
            parts.append(line)
        return parts
    if style == "readline-n":
        parts = []
        while line := stream.readline(arg):
            parts.append(line)
        return parts
    if style == "readlines":
        return stream.readlines()
    if style == "readlines-hint":
        parts = []
        while lines := stream.readlines(arg):
            parts.extend(lines)
        return parts
    if style == "iter":
        return list(stream)  # validate's InputWrapper iterates by calling readline()
    if style == "iter-server":
        return list(stream.input)  # the server's own __iter__, under the validator's wrapper
    raise LookupError(style)


def checked(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    stream = environ["wsgi.input"]
    if path == "/noread":
        start_response("200 OK", [TEXT, ("Content-Length", "6")])
        return [b"noread"]
    if path == "/write-then-read":
        write = start_response("200 OK", [TEXT])
        write(b"started")
        path = "/read"
    if path == "/read":
        time.sleep(float(query.get("delay", "0")))
        try:
            parts = read_parts(stream, query["style"], int(query.get("arg", "0")))
        except Exception as exc:
            with open(ERROR_LOG, "a") as log:
                log.write(f"{query.get('tag')} {type(exc).__name__}\n")
            raise
        after = stream.read(10)  # the body has ended: nothing more, whatever the socket holds
        out = json.dumps({"parts": [p.decode("latin-1") for p in parts], "after": after.decode("latin-1")})
        start_response("200 OK", [TEXT, ("Content-Length", str(len(out)))])
        return [out.encode()]
    start_response("404 Not Found", [TEXT])
    return [b"no route"]


app = validator(checked)
'''

LINES = [b"first line\n", b"second\r\n", b"\n", b"last without newline"]
BODY = b"".join(LINES)
NEXT_REQUEST = b"GET /noread HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module", params=["sync", "gthread", "gthread-t4"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Server, Path]]:
    cwd = tmp_path_factory.mktemp("wsgi-input")
    (cwd / "inputapp.py").write_text(INPUT_APP)
    port = free_port()
    with running(pronghorn_cmd("inputapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", *WORKER_ARGS[request.param]),
                 cwd=cwd, port=port) as srv:
        yield port, srv, cwd


def is_sync(srv: Server) -> bool:
    return "gthread" not in srv.args


def first_response(srv: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """The first response; a kept-alive connection must then carry exactly the pipelined answer."""
    first, *rest = split_responses(data)
    if is_sync(srv):
        assert rest == [], rest  # one request per connection
    elif parse_response(first)[1].get("connection") != "close":
        assert len(rest) == 1 and parse_response(rest[0])[::2] == (200, b"noread"), rest
    return parse_response(first)


def exchange(port: int, raw: bytes, *, half_close: bool = False, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def chunked(body: bytes, sizes: tuple[int, ...] = (3, 7, 1)) -> bytes:
    out, rest, index = b"", body, 0
    while rest:
        size = sizes[index % len(sizes)]
        out += b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size])
        rest, index = rest[size:], index + 1
    return out + b"0\r\n\r\n"


def post(target: str, body: bytes, framing: str, extra: bytes = b"") -> bytes:
    if framing == "length":
        return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
            target.encode(), len(body), extra, body)
    return b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n%s\r\n%s" % (
        target.encode(), extra, chunked(body))


def expected_parts(style: str, arg: int) -> list[bytes]:
    if style == "read-all":
        return [BODY]
    if style == "read-n":
        return [BODY[i:i + arg] for i in range(0, len(BODY), arg)]
    if style == "readline-n":
        return [line[i:i + arg] for line in LINES for i in range(0, len(line), arg)]
    return LINES


STYLES = [("read-all", 0), ("read-n", 1), ("read-n", 4), ("read-n", 1000), ("readline", 0),
          ("readline-n", 3), ("readline-n", 100), ("readlines", 0), ("readlines-hint", 5), ("iter", 0), ("iter-server", 0)]


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize(("style", "arg"), STYLES)
def test_reads_stop_at_the_end_of_the_body(server: tuple[int, Server, Path], framing: str, style: str,
                                           arg: int) -> None:
    port, srv, _ = server
    raw = post(f"/read?style={style}&arg={arg}", BODY, framing) + NEXT_REQUEST
    status, _, body = first_response(srv, exchange(port, raw))
    assert status == 200, srv.output()
    report = json.loads(body)
    assert [p.encode("latin-1") for p in report["parts"]] == expected_parts(style, arg)
    assert report["after"] == ""


def test_empty_body_reads_nothing(server: tuple[int, Server, Path]) -> None:
    raw = b"POST /read?style=read-n&arg=10 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" + NEXT_REQUEST
    status, _, body = first_response(server[1], exchange(server[0], raw))
    assert status == 200 and json.loads(body) == {"parts": [], "after": ""}


def _read_errors(cwd: Path, tag: str) -> list[str]:
    log = cwd / "read-errors.log"
    return [line.split()[1] for line in log.read_text().splitlines() if line.split()[0] == tag] if log.exists() else []


def test_broken_chunked_body_raises_in_read_and_gets_400(server: tuple[int, Server, Path]) -> None:
    port, srv, cwd = server
    raw = (b"POST /read?style=read-n&arg=3&tag=badchunk HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n" + NEXT_REQUEST)
    data = exchange(port, raw)  # returns only once the server closed the connection
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (data, srv.output())
    assert data.count(b"HTTP/1.1 ") == 1 and b"noread" not in data
    # gthread finds the bad chunk while receiving the body, before the app runs.
    assert _read_errors(cwd, "badchunk") == (["InvalidChunkSize"] if is_sync(srv) else [])


def test_broken_chunked_body_after_the_response_started_aborts(server: tuple[int, Server, Path]) -> None:
    port, srv, cwd = server
    raw = (b"POST /write-then-read?style=read-all&tag=late HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n-1\r\nmore\r\n0\r\n\r\n" + NEXT_REQUEST)
    data = exchange(port, raw)
    if not is_sync(srv):
        # The whole body is received before the app runs, so no response has started: a plain 400.
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and data.count(b"HTTP/1.1 ") == 1, data
        assert _read_errors(cwd, "late") == []
        return
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert body == b"7\r\nstarted\r\n"  # no last chunk, no 400 page glued on: just the close
    assert _read_errors(cwd, "late") == ["InvalidChunkSize"]


@pytest.mark.parametrize(("style", "arg"), [("read-all", 0), ("read-n", 4), ("readline", 0), ("iter", 0)])
def test_body_shorter_than_content_length_then_eof_is_not_2xx(server: tuple[int, Server, Path], style: str,
                                                              arg: int) -> None:
    port, srv, cwd = server
    tag = f"short-{style}"
    raw = (f"POST /read?style={style}&arg={arg}&tag={tag} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
           .encode() + b"only this much\n")
    data = exchange(port, raw, half_close=True)
    assert not data.startswith(b"HTTP/1.1 2"), data
    assert data == b""  # the client is gone: nothing is answered
    # gthread: the loop sees the EOF while receiving the body; the app never runs.
    assert _read_errors(cwd, tag) == (["IncompleteMessage"] if is_sync(srv) else [])


# --- 9. Expect: 100-continue ------------------------------------------------------------------------------


def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_100_continue_is_sent_when_the_app_first_reads(server: tuple[int, Server, Path]) -> None:
    # On gthread: sent once the head is parsed, since the loop reads the body before the app runs.
    port, srv, _ = server
    head = (b"POST /read?style=read-n&arg=100&delay=0.5 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(BODY))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sent = time.monotonic()
        sock.sendall(head)
        interim = _recv_until(sock, b"\r\n\r\n")
        waited = time.monotonic() - sent
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", srv.output()
        if is_sync(srv):
            assert waited >= 0.4  # not before the app ran (it sleeps 0.5 s before reading)
        sock.sendall(BODY + NEXT_REQUEST)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"100 Continue" not in data  # exactly one interim response
    status, _, body = first_response(srv, data)
    assert status == 200 and json.loads(body)["parts"] == [BODY.decode()]


def test_no_100_continue_when_the_app_does_not_read(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    if not is_sync(srv):
        # Deliberate difference: gthread receives the whole body on its loop before the app runs
        # (a slow client never holds an app thread), so it sends 100 Continue as soon as the head is
        # parsed, whether or not the app will read the body.
        pytest.skip("gthread sends 100 Continue when the head is parsed, before the app runs")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = _recv_until(sock, b"noread")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"100 Continue" not in data


def test_100_continue_ignored_for_http10(server: tuple[int, Server, Path]) -> None:
    raw = (b"POST /read?style=read-n&arg=100 HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
           b"hello")
    data = exchange(server[0], raw)
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and b"100 Continue" not in data


def test_other_expectation_is_417(server: tuple[int, Server, Path]) -> None:
    data = exchange(server[0], b"POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\n"
                                b"hello")
    assert data.startswith(b"HTTP/1.1 417 Expectation Failed\r\n")
    assert b"noread" not in data and data.count(b"HTTP/1.1 ") == 1
