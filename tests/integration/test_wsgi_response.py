"""The WSGI response side over real sockets: write(), exc_info, close(), framing, header checks, 103.

One server (one worker) runs ``respapp``: ``sync``, ``gthread`` with the app inline on the loop
thread, and ``gthread`` with four app threads. Every route is wrapped in ``wsgiref.validate`` with
warnings turned into errors, except the ``/raw/...`` routes, whose point is to do what the validator
forbids (bad header names/values, bad status lines): they are mounted next to it, not behind it.

Responses are read by their framing (the gthread worker keeps HTTP/1.1 connections alive); a
response that is cut short or framed by the close is read until the server closes. Tests that
check that nothing follows a response send ``Connection: close`` and read until the close.
"""

from __future__ import annotations

import re
import socket
import struct
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
    read_responses,
    running,
)

RESP_APP = r'''
import os, sys, time, warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")

CLOSE_LOG = os.path.join(os.getcwd(), "closes.log")
TEXT = ("Content-Type", "text/plain")


class Body:
    """A response iterable whose close() calls are appended to closes.log, one line per call."""

    def __init__(self, tag, chunks, fail_at=None, delay=0.0):
        self.tag, self.chunks, self.fail_at, self.delay = tag, chunks, fail_at, delay

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("app failed mid-body")
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    def close(self):
        with open(CLOSE_LOG, "a") as log:
            log.write(self.tag + "\n")


def checked(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/write-mixed":
        write = start_response("200 OK", [TEXT])
        write(b"one,")
        write(b"two,")
        return [b"three,", b"four"]
    if path == "/exc-before":
        start_response("200 OK", [TEXT, ("X-First", "yes")])
        try:
            raise ValueError("failed before any body")
        except ValueError:
            start_response("503 Replaced", [TEXT, ("X-Second", "yes")], sys.exc_info())
        return [b"replaced"]
    if path == "/exc-after":
        write = start_response("200 OK", [TEXT])
        write(b"partial")
        try:
            raise ValueError("boom after headers")
        except ValueError:
            start_response("500 Oops", [TEXT], sys.exc_info())  # must re-raise the ValueError
        return [b"never sent"]
    if path == "/exc-after-empty":  # an empty piece is not body data: the headers are still open
        start_response("200 OK", [TEXT, ("X-First", "yes")])

        def pieces():
            yield b""
            try:
                raise ValueError("failed after an empty piece")
            except ValueError:
                start_response("500 Late", [TEXT], sys.exc_info())
            yield b"late error"

        return pieces()
    if path == "/empty-then-raise":
        start_response("200 OK", [TEXT])

        def failing():
            yield b""
            raise RuntimeError("failed after an empty piece")

        return failing()
    if path == "/twice":
        start_response("200 OK", [TEXT])
        start_response("201 Created", [TEXT])
        return [b"never sent"]
    if path == "/close-ok":
        start_response("200 OK", [TEXT])
        return Body(query["tag"], [b"a", b"b"])
    if path == "/close-fail":
        start_response("200 OK", [TEXT])
        return Body(query["tag"], [b"a", b"b", b"c"], fail_at=1)
    if path == "/close-slow":
        start_response("200 OK", [TEXT])
        return Body(query["tag"], [b"x" * 1024] * 400, delay=0.02)
    if path == "/cl":  # declares Content-Length: declared, sends the given pieces
        start_response("200 OK", [TEXT, ("Content-Length", query["declared"])])
        return [piece.encode() for piece in query["pieces"].split(",")]
    if path == "/chunked":
        start_response("200 OK", [TEXT])
        return [b"hello", b"", b"world!"]
    if path == "/status":  # any status, declaring Content-Length: 5 and sending 5 bytes
        code = int(query["code"])
        headers = [("Content-Length", "5")] + ([] if code in (204, 304) else [TEXT])
        start_response(f"{code} Whatever", headers)
        return [b"hello"]
    if path == "/hop":
        start_response("200 OK", [
            TEXT, ("X-Kept", "yes"), ("Proxy-Status", "origin; error=none"),
            ("Connection", "keep-alive"), ("Keep-Alive", "timeout=99"),
            ("Transfer-Encoding", "gzip"), ("Upgrade", "h2c"), ("TE", "trailers"),
            ("Trailer", "X-Checksum"), ("Trailers", "X-Checksum"),
            ("Proxy-Authenticate", "Basic"), ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("Server", "impostor/1.0"), ("Date", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ])
        return [b"hop"]
    if path in ("/hints", "/hints-bad"):
        hints = environ.get("wsgi.early_hints")
        link = "</s.css>; rel=preload" if path == "/hints" else "</s.css>\r\nInjected: yes"
        if hints is not None:
            hints([("Link", link)])
        start_response("200 OK", [TEXT, ("Content-Length", "2")])
        return [b"ok"]
    if path == "/bare-status":  # proves the harness: validate only *warns* here, and that is a 500
        start_response("200", [TEXT])
        return [b"ok"]
    start_response("404 Not Found", [TEXT])
    return [b"no route"]


RAW_CASES = {
    # Each breaks a rule wsgiref.validate enforces itself, so these bypass it.
    "value-crlf": ("200 OK", [("X-Bad", "a\r\nInjected: yes")]),
    "value-lf": ("200 OK", [("X-Bad", "a\nInjected: yes")]),
    "value-cr": ("200 OK", [("X-Bad", "a\rInjected: yes")]),
    "value-nul": ("200 OK", [("X-Bad", "a\x00Injected")]),
    "name-space": ("200 OK", [("Bad Injected", "v")]),
    "name-colon": ("200 OK", [("X-Injected:", "v")]),
    "name-crlf": ("200 OK", [("X-A\r\nInjected", "v")]),
    "name-empty": ("200 OK", [("", "Injected")]),
    "status-crlf": ("200 OK\r\nInjected: yes", []),
    "status-two-digits": ("20 Injected", []),
    "status-four-digits": ("2000 Injected", []),
    "status-no-code": ("OK Injected", []),
    "status-nul": ("200 OK\x00Injected", []),
}


def raw(environ, start_response):
    status, headers = RAW_CASES[environ["PATH_INFO"].rsplit("/", 1)[1]]
    start_response(status, [("Content-Type", "text/plain")] + headers)
    return [b"Injected body"]


validated = validator(checked)


def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/raw/"):
        return raw(environ, start_response)
    return validated(environ, start_response)
'''


@pytest.fixture(scope="module", params=["sync", "gthread", "gthread-t4"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Server, Path]]:
    cwd = tmp_path_factory.mktemp("wsgi-response")
    (cwd / "respapp.py").write_text(RESP_APP)
    port = free_port()
    with running(pronghorn_cmd("respapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", *WORKER_ARGS[request.param]),
                 cwd=cwd, port=port) as srv:
        yield port, srv, cwd


def exchange(port: int, raw: bytes, timeout: float = 10.0, *, head: bool = False) -> bytes:
    """Send ``raw`` and read until the response is complete by its framing or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_responses(sock, head=head)


def get(port: int, target: str, method: str = "GET", version: str = "HTTP/1.1", *, close: bool = False) -> bytes:
    """One request; with ``close`` it says ``Connection: close`` and everything up to the close is read."""
    connection = "Connection: close\r\n" if close else ""
    raw = f"{method} {target} {version}\r\nHost: t\r\n{connection}\r\n".encode()
    if close:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data
    return exchange(port, raw, head=method == "HEAD")


def keeps_alive(srv: Server) -> bool:
    return "gthread" in srv.args


def split(data: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """Status line, header list (names lower-cased, order and duplicates kept) and raw body bytes."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {data[:200]!r}"
    status_line, *lines = head.split(b"\r\n")
    headers = []
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.lower(), value.strip(" \t")))
    return status_line, headers, body


def close_count(cwd: Path, tag: str) -> int:
    log = cwd / "closes.log"
    return log.read_text().split().count(tag) if log.exists() else 0


def test_validator_warnings_are_500(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    assert get(port, "/bare-status").startswith(b"HTTP/1.1 500 ")
    srv.wait_for_output("WSGIWarning: The status string ('200') should be")


# --- 3. write() mixed with the iterable -------------------------------------------------------------


def test_write_callable_then_iterable_in_order(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    status_line, headers, body = split(get(port, "/write-mixed"))
    assert status_line == b"HTTP/1.1 200 OK", srv.output()
    assert ("transfer-encoding", "chunked") in headers
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n6\r\nthree,\r\n4\r\nfour\r\n0\r\n\r\n"


# --- 4. start_response with exc_info ---------------------------------------------------------------


def test_exc_info_before_headers_replaces_status_and_headers(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    status, headers, body = parse_response(get(port, "/exc-before"))
    assert status == 503, srv.output()
    assert "x-first" not in headers and headers["x-second"] == "yes"
    assert body == b"replaced"


def test_exc_info_after_headers_reraises_and_aborts(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    data = get(port, "/exc-after")
    status_line, headers, body = split(data)
    assert status_line == b"HTTP/1.1 200 OK"
    assert ("transfer-encoding", "chunked") in headers
    # The part written before the failure, then the connection closed: no last chunk, no 500 page.
    assert body == b"7\r\npartial\r\n"
    assert data.count(b"HTTP/1.1 ") == 1
    # The exception start_response re-raised is the app's own, logged as an app error.
    srv.wait_for_output("ValueError: boom after headers")


def test_empty_first_piece_sends_the_headers(server: tuple[int, Server, Path]) -> None:
    # PEP 3333 says the head should wait for the first non-empty piece. Gunicorn and wsgiref's own
    # handler send it on the first piece even when empty (apps use b"" to flush headers early), and
    # pronghorn deliberately does the same: after that, exc_info re-raises and the response aborts.
    port, srv, _ = server
    data = get(port, "/exc-after-empty")
    status_line, headers, body = split(data)
    assert status_line == b"HTTP/1.1 200 OK" and ("x-first", "yes") in headers, srv.output()
    assert body == b"" and data.count(b"HTTP/1.1 ") == 1  # no chunk at all, not even the last one
    srv.wait_for_output("ValueError: failed after an empty piece")
    status_line, _, body = split(get(port, "/empty-then-raise"))
    assert status_line == b"HTTP/1.1 200 OK" and body == b""


def test_start_response_twice_without_exc_info_is_500(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    data = get(port, "/twice")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), srv.output()
    assert data.count(b"HTTP/1.1 ") == 1 and b"never sent" not in data


def test_error_answer_to_an_unread_upload_arrives_without_a_reset(server: tuple[int, Server, Path]) -> None:
    # The app fails without reading the body. Closing with that body unread in the socket would
    # make the kernel send a reset, which can destroy the 500 before the client reads it; the
    # worker reads (a bounded amount of) what is left first, as it does after a success.
    port, srv, _ = server
    upload = b"u" * 300_000
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /twice HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(upload))
        sock.sendall(upload)
        time.sleep(0.2)
        data = b""
        while chunk := sock.recv(65536):  # ConnectionResetError here is the failure
            data += chunk
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), srv.output()


# --- 5. close() exactly once --------------------------------------------------------------------------


def _wait_for_close(cwd: Path, tag: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and close_count(cwd, tag) == 0:
        time.sleep(0.02)
    time.sleep(0.2)  # let a second (wrong) call show up
    return close_count(cwd, tag)


def test_close_called_once_on_success(server: tuple[int, Server, Path]) -> None:
    port, _, cwd = server
    status, _, body = parse_response(get(port, "/close-ok?tag=ok"))
    assert (status, body) == (200, b"ab")
    assert _wait_for_close(cwd, "ok") == 1


def test_close_called_once_when_iterator_raises(server: tuple[int, Server, Path]) -> None:
    port, srv, cwd = server
    data = get(port, "/close-fail?tag=fail")
    status_line, _, body = split(data)
    assert status_line == b"HTTP/1.1 200 OK"
    assert body == b"1\r\na\r\n"  # truncated: no last chunk after the failure
    assert _wait_for_close(cwd, "fail") == 1
    srv.wait_for_output("RuntimeError: app failed mid-body")


def test_close_called_once_when_client_disconnects(server: tuple[int, Server, Path]) -> None:
    port, _, cwd = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /close-slow?tag=gone HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    # The app would need 8 s to finish; the server notices the reset at its next write.
    assert _wait_for_close(cwd, "gone", timeout=6.0) == 1
    # The worker is free again afterwards.
    assert parse_response(get(port, "/close-ok?tag=after"))[0] == 200


# --- 6. framing --------------------------------------------------------------------------------------


def test_content_length_body_sent_as_is(server: tuple[int, Server, Path]) -> None:
    status_line, headers, body = split(get(server[0], "/cl?declared=10&pieces=hello,world"))
    assert status_line == b"HTTP/1.1 200 OK"
    assert ("content-length", "10") in headers and "transfer-encoding" not in dict(headers)
    assert body == b"helloworld"


def test_body_shorter_than_content_length_ends_with_close(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    status_line, headers, body = split(get(port, "/cl?declared=10&pieces=hello"))
    assert status_line == b"HTTP/1.1 200 OK"
    # On a kept-alive connection the head went out before the body turned out short; the close
    # after the five bytes is what tells the client (sync closes every connection anyway).
    connection = "keep-alive" if keeps_alive(srv) else "close"
    assert ("content-length", "10") in headers and ("connection", connection) in headers
    assert body == b"hello"  # what was sent, then EOF (the framing is incomplete: read until the close)


def test_body_longer_than_content_length_is_truncated(server: tuple[int, Server, Path]) -> None:
    # Read up to the close: nothing may follow the seven declared bytes.
    status_line, headers, body = split(get(server[0], "/cl?declared=7&pieces=hello,world,again", close=True))
    assert status_line == b"HTTP/1.1 200 OK" and ("content-length", "7") in headers
    assert body == b"hellowo"


def test_no_content_length_on_http11_is_chunked(server: tuple[int, Server, Path]) -> None:
    status_line, headers, body = split(get(server[0], "/chunked"))
    assert status_line == b"HTTP/1.1 200 OK"
    assert [v for n, v in headers if n == "transfer-encoding"] == ["chunked"]
    assert "content-length" not in dict(headers)
    assert body == b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"  # the empty piece is not a last-chunk


def test_no_content_length_on_http10_is_close_delimited(server: tuple[int, Server, Path]) -> None:
    status_line, headers, body = split(get(server[0], "/chunked", version="HTTP/1.0"))
    assert status_line == b"HTTP/1.0 200 OK"
    assert "transfer-encoding" not in dict(headers) and "content-length" not in dict(headers)
    assert ("connection", "close") in headers
    assert body == b"helloworld!"


def test_head_keeps_content_length_and_sends_no_body(server: tuple[int, Server, Path]) -> None:
    status_line, headers, body = split(get(server[0], "/cl?declared=10&pieces=hello,world", method="HEAD"))
    assert status_line == b"HTTP/1.1 200 OK"
    assert ("content-length", "10") in headers and body == b""


def test_head_without_content_length_is_not_chunked(server: tuple[int, Server, Path]) -> None:
    status_line, headers, body = split(get(server[0], "/chunked", method="HEAD"))
    assert status_line == b"HTTP/1.1 200 OK"
    assert "transfer-encoding" not in dict(headers) and body == b""


@pytest.mark.parametrize(
    ("code", "keeps_length"),
    [(204, False), (304, True), (199, False)],  # 199: a final 1xx from the app, framed like Gunicorn
)
def test_bodiless_statuses(server: tuple[int, Server, Path], code: int, keeps_length: bool) -> None:
    port, srv, _ = server
    started = time.monotonic()
    data = get(port, f"/status?code={code}")  # a 1xx is not final: read until the close
    if code < 200:
        # The client still waits for a final response, so the connection cannot be reused: it is
        # closed at once, not after the keep-alive timeout.
        assert time.monotonic() - started < 1.5
    status_line, headers, body = split(data)
    assert status_line == f"HTTP/1.1 {code} Whatever".encode(), srv.output()
    names = dict(headers)
    assert ("content-length" in names) is keeps_length
    if keeps_length:
        assert names["content-length"] == "5"
    assert "transfer-encoding" not in names
    assert body == b""


def test_hop_by_hop_headers_from_app_are_dropped(server: tuple[int, Server, Path]) -> None:
    port, srv, _ = server
    status_line, headers, body = split(get(port, "/hop"))
    assert status_line == b"HTTP/1.1 200 OK", srv.output()
    names = [n for n, _ in headers]
    for dropped in ("keep-alive", "upgrade", "te", "trailer", "trailers", "proxy-authenticate",
                    "proxy-authorization", "proxy-connection"):
        assert dropped not in names, (dropped, headers)
    assert ("x-kept", "yes") in headers
    assert ("proxy-status", "origin; error=none") in headers  # RFC 9209: end-to-end, not hop-by-hop
    # The server's own Connection field only (sync closes; gthread keeps HTTP/1.1 connections).
    assert [v for n, v in headers if n == "connection"] == ["keep-alive" if keeps_alive(srv) else "close"]
    assert [v for n, v in headers if n == "transfer-encoding"] == ["chunked"]  # the server's own framing
    assert [v for n, v in headers if n == "server"] == ["pronghorn"]
    dates = [v for n, v in headers if n == "date"]
    assert len(dates) == 1 and "2000" not in dates[0]
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", dates[0])
    assert body == b"3\r\nhop\r\n0\r\n\r\n"


def test_every_response_has_one_date_and_one_server(server: tuple[int, Server, Path]) -> None:
    for target in ("/chunked", "/cl?declared=5&pieces=hello", "/status?code=204", "/status?code=304",
                   "/write-mixed", "/exc-before"):
        _, headers, _ = split(get(server[0], target))
        assert [n for n, _ in headers].count("date") == 1, (target, headers)
        assert [v for n, v in headers if n == "server"] == ["pronghorn"], (target, headers)


# --- 7. response header validation ------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    "value-crlf", "value-lf", "value-cr", "value-nul", "name-space", "name-colon", "name-crlf", "name-empty",
    "status-crlf", "status-two-digits", "status-four-digits", "status-no-code", "status-nul",
])
def test_bad_app_header_or_status_is_500_and_never_sent(server: tuple[int, Server, Path], case: str) -> None:
    port, srv, _ = server
    data = get(port, f"/raw/{case}")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), (data, srv.output())
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"Injected" not in data and b"\x00" not in data
    head = data.partition(b"\r\n\r\n")[0]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")


# --- 11. wsgi.early_hints -----------------------------------------------------------------------------


def test_early_hints_sends_103_before_the_final_response(server: tuple[int, Server, Path]) -> None:
    data = get(server[0], "/hints")
    assert data.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nok")


def test_early_hints_with_a_bad_value_are_500_and_never_sent(server: tuple[int, Server, Path]) -> None:
    data = get(server[0], "/hints-bad")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"Injected" not in data


def test_early_hints_are_not_sent_to_http10(server: tuple[int, Server, Path]) -> None:
    data = get(server[0], "/hints", version="HTTP/1.0")
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and b"103" not in data
