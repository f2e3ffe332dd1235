"""Request-line rules (RFC 9112 section 3; Gunicorn reference section 6, "Request-line checks")."""

from __future__ import annotations

import pytest
from http_replay import accept, reject

from pronghorn.http import (
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    Limits,
    ProtocolError,
)

LENIENT_METHOD = Limits(permit_unconventional_method=True)
LENIENT_VERSION = Limits(permit_unconventional_version=True)


def req(line: bytes) -> bytes:
    return line + b"\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    ("line", "method", "path", "query", "fragment", "version"),
    [
        (b"GET / HTTP/1.1", b"GET", b"/", b"", b"", (1, 1)),
        (b"GET / HTTP/1.0", b"GET", b"/", b"", b"", (1, 0)),
        (b"GET /a/b?x=1&y=%20#frag HTTP/1.1", b"GET", b"/a/b", b"x=1&y=%20", b"frag", (1, 1)),
        (b"GET /?#? HTTP/1.1", b"GET", b"/", b"", b"?", (1, 1)),
        (b"GET //double/slash HTTP/1.1", b"GET", b"//double/slash", b"", b"", (1, 1)),
        (b"OPTIONS * HTTP/1.1", b"OPTIONS", b"*", b"", b"", (1, 1)),
        (b"CONNECT example.com:443 HTTP/1.1", b"CONNECT", b"example.com:443", b"", b"", (1, 1)),
        (b"CONNECT [::1]:443 HTTP/1.1", b"CONNECT", b"[::1]:443", b"", b"", (1, 1)),
        (b"GET http://h.example/p?q HTTP/1.1", b"GET", b"/p", b"q", b"", (1, 1)),
        (b"GET http://h.example HTTP/1.1", b"GET", b"", b"", b"", (1, 1)),
        (b"GET http://h.example?q=1 HTTP/1.1", b"GET", b"", b"q=1", b"", (1, 1)),
        (b"GET https://u:p@[::1]:8443/x HTTP/1.1", b"GET", b"/x", b"", b"", (1, 1)),
        (b"GET http://a%12:b!&*$@h.example:1234/t HTTP/1.1", b"GET", b"/t", b"", b"", (1, 1)),
        (b"M-SEARCH /x HTTP/1.1", b"M-SEARCH", b"/x", b"", b"", (1, 1)),
        (b"PROPFIND /dav HTTP/1.1", b"PROPFIND", b"/dav", b"", b"", (1, 1)),
        (b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1", b"ABCDEFGHIJKLMNOPQRST", b"/", b"", b"", (1, 1)),
        (b"GET /~!$&'()*+,;=:@%25 HTTP/1.1", b"GET", b"/~!$&'()*+,;=:@%25", b"", b"", (1, 1)),
    ],
)
def test_valid_request_lines(
    line: bytes, method: bytes, path: bytes, query: bytes, fragment: bytes, version: tuple[int, int]
) -> None:
    head = accept(req(line)).head
    assert (head.method, head.path, head.query, head.fragment, head.version) == (
        method, path, query, fragment, version
    )
    assert head.target == line.split(b" ")[1]
    assert head.http_version == f"HTTP/{version[0]}.{version[1]}"


def test_one_empty_line_before_the_request_line_is_skipped() -> None:
    assert accept(b"\r\n" + req(b"GET / HTTP/1.1")).head.path == b"/"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        # RFC 9112 section 2.2: at most one leading empty line, and only CRLF ones.
        (b"\r\n\r\n" + req(b"GET / HTTP/1.1"), InvalidRequestLine),
        (b"\n" + req(b"GET / HTTP/1.1"), InvalidRequestLine),
        # bare LF terminating (or inside) the request line
        (b"GET / HTTP/1.1\nHost: h\r\n\r\n", InvalidRequestLine),
        (b"GET\n/\nHTTP/1.1\r\n\r\n", InvalidRequestLine),
        # split on single SP into exactly three parts
        (req(b"GET /"), InvalidRequestLine),
        (req(b"GET"), InvalidRequestLine),
        (req(b""), InvalidRequestLine),
        (req(b"GET  / HTTP/1.1"), InvalidRequestLine),
        (req(b"GET /  HTTP/1.1"), InvalidHTTPVersion),
        (req(b"GET\t/\tHTTP/1.1"), InvalidRequestLine),
        (req(b" GET / HTTP/1.1"), InvalidRequestMethod),
    ],
)
def test_malformed_request_lines(raw: bytes, error: type[ProtocolError]) -> None:
    assert type(reject(raw)) is error


@pytest.mark.parametrize(
    "method",
    [b"get", b"Get", b"GE", b"G", b"ABCDEFGHIJKLMNOPQRSTU", b"G#T", b"GE(T", b"GE\"T", b"G\x00T", b"G\xe9T", b"GET:"],
)
def test_conventional_method_rules(method: bytes) -> None:
    error = reject(req(method + b" / HTTP/1.1"))
    assert type(error) is InvalidRequestMethod and error.status == 400


@pytest.mark.parametrize(
    ("method", "limits", "result"),
    [
        (b"get", LENIENT_METHOD, b"get"),
        (b"G", LENIENT_METHOD, b"G"),
        (b"#X", LENIENT_METHOD, b"#X"),
        (b"A" * 40, LENIENT_METHOD, b"A" * 40),
        (b"get", Limits(permit_unconventional_method=True, casefold_method=True), b"GET"),
        (b"GET", Limits(casefold_method=True), b"GET"),
    ],
)
def test_unconventional_methods_when_permitted(method: bytes, limits: Limits, result: bytes) -> None:
    assert accept(req(method + b" / HTTP/1.1"), limits).head.method == result


@pytest.mark.parametrize("method", [b"GE(T", b"G T", b"G\x7fT", b"\xc3\x9f"])
def test_method_must_be_a_token_even_when_permitted(method: bytes) -> None:
    assert isinstance(reject(req(method + b" / HTTP/1.1"), LENIENT_METHOD), (InvalidRequestMethod, InvalidRequestLine))


def test_casefold_alone_does_not_admit_lower_case() -> None:
    assert type(reject(req(b"get / HTTP/1.1"), Limits(casefold_method=True))) is InvalidRequestMethod


@pytest.mark.parametrize(
    "target",
    [
        b"/a\x00b", b"/a\x01", b"/a\x7f", b"/\x80", b"/caf\xc3\xa9", b"/\xff", b"/a\rb",  # bytes outside 0x21-0x7E
        b"*", b"*x",  # asterisk-form only with OPTIONS
        b"foo/bar", b"foo", b"?q", b"#f", b".", b"../x",  # relative references
        b"example.com:80",  # authority-form only with CONNECT
        b"1http://h/", b"ht tp://h/", b"+x://h/", b"://h/",  # bad scheme
        b"http:///p", b"http://?q", b"http://",  # empty authority
        b"http://[::1/", b"http://::1]/", b"http://[]/", b"http://[::1]x/", b"http://[z]/", b"http://[::1]:8a/",
    ],
)
def test_invalid_targets(target: bytes) -> None:
    assert type(reject(req(b"GET " + target + b" HTTP/1.1"))) is InvalidRequestLine


@pytest.mark.parametrize("target", [b"*", b"/", b"http://h/", b"host", b"host:", b":443", b"h:4x", b"[::1]", b"[::1", b"u@h:1", b"h h:1"])
def test_connect_requires_authority_form(target: bytes) -> None:
    assert type(reject(req(b"CONNECT " + target + b" HTTP/1.1"))) is InvalidRequestLine


@pytest.mark.parametrize(
    "version",
    [
        b"HTTP/111", b"HTTP/1.1 ", b"FTP/1.1", b"http/1.1", b"HTTP/1", b"HTTP/1.", b"HTTP/.1", b"HTTP/1.1.1",
        b"HTTP/1,1", b"HTTP /1.1", b"HTTP/01.1", b"HTTP/1.01", b"HTTP/+.1", b"HTTP/\xd9\xa1.\xd9\xa1", b"",
        b"HTTP/0.99", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9",
    ],
)
def test_invalid_versions(version: bytes) -> None:
    error = reject(b"GET / " + version + b"\r\n\r\n")
    assert isinstance(error, (InvalidHTTPVersion, InvalidRequestLine))
    if version and b" " not in version:
        assert type(error) is InvalidHTTPVersion


@pytest.mark.parametrize(("version", "parsed"), [(b"HTTP/0.9", (0, 9)), (b"HTTP/2.0", (2, 0)), (b"HTTP/1.5", (1, 5))])
def test_unconventional_versions_when_permitted(version: bytes, parsed: tuple[int, int]) -> None:
    assert accept(b"GET / " + version + b"\r\n\r\n", LENIENT_VERSION).head.version == parsed


@pytest.mark.parametrize("version", [b"HTTP/1.10", b"HTTP/x.y", b"HTTP/2"])
def test_version_grammar_holds_even_when_permitted(version: bytes) -> None:
    assert type(reject(b"GET / " + version + b"\r\n\r\n", LENIENT_VERSION)) is InvalidHTTPVersion


def test_checks_run_method_then_target_then_version() -> None:
    # Gunicorn order: the first failing part decides the error class.
    assert type(reject(req(b"get foo HTTP/9.9"))) is InvalidRequestMethod
    assert type(reject(req(b"GET foo HTTP/9.9"))) is InvalidRequestLine
