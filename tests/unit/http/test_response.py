"""ResponseFramer, parse_status and http_date (RFC 9110/9112; Gunicorn reference section 6, "Response side")."""

from __future__ import annotations

import re

import pytest

from pronghorn.http import (
    CONTINUE_RESPONSE,
    HOP_BY_HOP,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    ResponseFramer,
    http_date,
    is_token,
    is_valid_field_value,
    parse_status,
)

DATE = re.compile(rb"\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n")


def framer(method: bytes = b"GET", version: tuple[int, int] = (1, 1), keep_alive: bool = True) -> ResponseFramer:
    return ResponseFramer(request_method=method, request_version=version, keep_alive=keep_alive, server_header=b"pronghorn")


def fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    assert lines[-2:] == ["", ""]
    return [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:-2])]


def test_default_headers() -> None:
    f = framer()
    head = f.head(200, "OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: pronghorn\r\n")
    assert DATE.search(head)
    names = [name for name, _ in fields(head)]
    assert names == ["Server", "Date", "Connection", "Content-Type", "Content-Length"]
    assert ("Connection", "keep-alive") in fields(head)
    assert f.keep_alive and not f.chunked and f.content_length == 2


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP) + ["Connection", "TRANSFER-ENCODING", "Keep-Alive", "Server", "Date"])
def test_hop_by_hop_headers_from_the_app_are_dropped(name: str) -> None:
    head = framer().head(200, "OK", [(name, "x"), ("Content-Length", "0")])
    assert [n.lower() for n, _ in fields(head)].count(name.lower()) == (1 if name.lower() in ("server", "date", "connection") else 0)
    assert b": x\r\n" not in head


def test_upgrade_websocket_is_kept_and_connection_upgrade_sets_upgrade_mode() -> None:
    f = framer()
    head = f.head(101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    assert ("Upgrade", "websocket") in fields(head)
    assert ("Connection", "upgrade") in fields(head)
    assert f.upgrade and not f.keep_alive
    head = framer().head(200, "OK", [("Upgrade", "h2c")])
    assert "Upgrade" not in [n for n, _ in fields(head)]


def test_app_connection_close_closes() -> None:
    f = framer()
    assert ("Connection", "close") in fields(f.head(200, "OK", [("Connection", "close"), ("Content-Length", "0")]))
    assert not f.keep_alive


def test_request_that_closes_gets_connection_close() -> None:
    f = framer(keep_alive=False)
    assert ("Connection", "close") in fields(f.head(200, "OK", [("Content-Length", "0")]))
    assert not f.keep_alive


@pytest.mark.parametrize(
    ("version", "headers", "chunked", "keep_alive", "status_line"),
    [
        ((1, 1), [], True, True, b"HTTP/1.1 200 OK"),
        ((1, 1), [("Content-Length", "5")], False, True, b"HTTP/1.1 200 OK"),
        ((1, 0), [], False, False, b"HTTP/1.0 200 OK"),  # close-delimited
        ((1, 0), [("Content-Length", "5")], False, True, b"HTTP/1.0 200 OK"),
    ],
)
def test_body_framing_choice(
    version: tuple[int, int], headers: list[tuple[str, str]], chunked: bool, keep_alive: bool, status_line: bytes
) -> None:
    f = framer(version=version)
    head = f.head(200, "OK", headers)
    assert head.startswith(status_line + b"\r\n")
    assert f.chunked is chunked and f.keep_alive is keep_alive
    assert (("Transfer-Encoding", "chunked") in fields(head)) is chunked
    assert ("Connection", "keep-alive" if keep_alive else "close") in fields(head)
    body = f.body(b"hello") + f.body(b"") + f.end()
    assert body == (b"5\r\nhello\r\n0\r\n\r\n" if chunked else b"hello")
    assert f.bytes_sent == 5 and f.complete and not f.short


@pytest.mark.parametrize(
    ("method", "status", "keeps_length"),
    [(b"HEAD", 200, True), (b"GET", 304, True), (b"GET", 204, False), (b"GET", 100, False), (b"GET", 103, False), (b"HEAD", 204, False)],
)
def test_responses_without_body(method: bytes, status: int, keeps_length: bool) -> None:
    f = framer(method=method)
    head = f.head(status, "X", [("Content-Length", "5"), ("ETag", "\"e\"")])
    assert (("Content-Length", "5") in fields(head)) is keeps_length
    assert ("Transfer-Encoding", "chunked") not in fields(head)
    assert not f.body_dropped
    assert f.body(b"hello") == b"" and f.end() == b""
    assert f.body_dropped and f.bytes_sent == 0
    # A 1xx as the final status leaves the client waiting: the connection cannot be reused.
    assert f.keep_alive is (status >= 200) and not f.chunked and f.complete


@pytest.mark.parametrize("method, status", [(b"HEAD", 200), (b"GET", 304), (b"GET", 204)])
def test_no_body_responses_without_length_keep_the_connection(method: bytes, status: int) -> None:
    f = framer(method=method, version=(1, 0), keep_alive=True)
    f.head(status, "X", [])
    assert f.keep_alive and not f.chunked


def test_output_truncated_at_content_length() -> None:
    f = framer()
    f.head(200, "OK", [("Content-Length", "4")])
    assert f.body(b"ab") == b"ab"
    assert f.body(b"cdef") == b"cd"
    assert f.body(b"gh") == b""
    assert f.end() == b""
    assert f.bytes_sent == 4 and f.complete and f.keep_alive


def test_short_content_length_body_closes() -> None:
    f = framer()
    f.head(200, "OK", [("Content-Length", "10")])
    f.body(b"abc")
    assert f.short and f.keep_alive  # not ended yet
    f.end()
    assert f.short and not f.keep_alive and f.bytes_sent == 3


@pytest.mark.parametrize(("values", "length"), [(["5", "5"], 5), ([" 7\t"], 7), (["0"], 0), (["007"], 7)])
def test_response_content_length_forms(values: list[str], length: int) -> None:
    f = framer()
    head = f.head(200, "OK", [("Content-Length", v) for v in values])
    assert f.content_length == length
    assert [n for n, _ in fields(head)].count("Content-Length") == 1


@pytest.mark.parametrize("values", [["-1"], ["five"], [""], ["1" * 20], ["5", "6"], ["\u0661"], ["5,5"]])
def test_invalid_response_content_length(values: list[str]) -> None:
    with pytest.raises(InvalidResponseHeader):
        framer().head(200, "OK", [("Content-Length", v) for v in values])


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nX-Injected: 1", "a\x00b", "\x7f", "\x01", "caf\u00e9\u2603", "\x0b"])
def test_invalid_response_header_values(value: str) -> None:
    with pytest.raises(InvalidResponseHeader) as caught:
        framer().head(200, "OK", [("X-A", value)])
    assert type(caught.value) is InvalidResponseHeader


@pytest.mark.parametrize("name", ["", "X A", "X:A", "X\r\nY", "X\x00", "caf\u00e9", "(x)", "X/Y"])
def test_invalid_response_header_names(name: str) -> None:
    with pytest.raises(InvalidResponseHeaderName):
        framer().head(200, "OK", [(name, "v")])


@pytest.mark.parametrize("header", [(b"X-A", "v"), ("X-A", b"v"), ("X-A", 1), (None, "v")])
def test_non_str_headers_are_type_errors(header: tuple[object, object]) -> None:
    with pytest.raises(TypeError):
        framer().head(200, "OK", [header])  # type: ignore[list-item]


@pytest.mark.parametrize("value", ["", "v", "a\tb", " spaced ", "caf\u00e9 \u00ff", "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"])
def test_valid_response_header_values(value: str) -> None:
    head = framer().head(200, "OK", [("X-A", value), ("Content-Length", "0")])
    assert ("X-A: " + value + "\r\n").encode("latin-1") in head


def test_invalid_status_and_reason_in_head() -> None:
    for code in (99, 1000, -1):
        with pytest.raises(ValueError):
            framer().head(code, "X", [])
    with pytest.raises(ValueError):
        framer().head(200, "O\r\nK", [])
    with pytest.raises(InvalidResponseHeader):
        ResponseFramer(request_method=b"GET", request_version=(1, 1), keep_alive=True, server_header=b"a\r\nb").head(200, "OK", [])


def test_framer_call_order() -> None:
    f = framer()
    with pytest.raises(RuntimeError):
        f.body(b"x")
    with pytest.raises(RuntimeError):
        f.end()
    f.head(200, "OK", [])
    with pytest.raises(RuntimeError):
        f.head(200, "OK", [])
    assert f.end() == b"0\r\n\r\n"
    assert f.end() == b""


# -- parse_status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "parsed"),
    [
        ("200 OK", (200, "OK")),
        ("200", (200, "")),
        ("200 ", (200, "")),
        ("404 Not Found", (404, "Not Found")),
        ("599 x\ty", (599, "x\ty")),
        ("200 caf\u00e9", (200, "caf\u00e9")),
        ("000 zero", (0, "zero")),
    ],
)
def test_parse_status(status: str, parsed: tuple[int, str]) -> None:
    assert parse_status(status) == parsed


@pytest.mark.parametrize(
    "status",
    ["", "20", "2000", "200OK", " 200 OK", "200\tOK", "OK 200", "2x0 OK", "200 O\rK", "200 O\nK", "200 \x00", "\u0662\u0660\u0660 OK", "200 \u2603"],
)
def test_parse_status_rejects(status: str) -> None:
    with pytest.raises(ValueError):
        parse_status(status)


@pytest.mark.parametrize("status", [b"200 OK", 200, None])
def test_parse_status_needs_str(status: object) -> None:
    with pytest.raises(ValueError):
        parse_status(status)  # type: ignore[arg-type]


# -- small helpers ------------------------------------------------------------------------------------------


def test_http_date() -> None:
    assert http_date(1508607753.740316) == "Sat, 21 Oct 2017 17:42:33 GMT"
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert DATE.search(b"\r\nDate: " + http_date().encode() + b"\r\n")


@pytest.mark.parametrize(("name", "ok"), [("X-A", True), (b"X-A", True), ("", False), (b"", False), ("X A", False), (b"X\x80", False)])
def test_is_token(name: str | bytes, ok: bool) -> None:
    assert is_token(name) is ok


@pytest.mark.parametrize(("value", "ok"), [("a b\t", True), (b"\x80", True), ("a\r", False), (b"\x00", False), ("\u0100", False)])
def test_is_valid_field_value(value: str | bytes, ok: bool) -> None:
    assert is_valid_field_value(value) is ok


def test_continue_response() -> None:
    assert CONTINUE_RESPONSE == b"HTTP/1.1 100 Continue\r\n\r\n"
