"""Every error carries its status and reason and renders its own response."""

from __future__ import annotations

import re

import pytest

from pronghorn.http import (
    ChunkMissingTerminator,
    ExpectationFailed,
    IncompleteMessage,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidResponseHeader,
    InvalidResponseHeaderName,
    InvalidSchemeHeaders,
    LimitRequestBody,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    ProtocolError,
    UnsupportedTransferCoding,
    error_response,
    url_scheme_from_headers,
)

BAD = "Bad Request"


@pytest.mark.parametrize(
    ("cls", "status", "reason", "respond"),
    [
        (ProtocolError, 400, BAD, True),
        (InvalidRequestLine, 400, BAD, True),
        (InvalidRequestMethod, 400, BAD, True),
        (InvalidHTTPVersion, 400, BAD, True),
        (InvalidHeader, 400, BAD, True),
        (InvalidHeaderName, 400, BAD, True),
        (ObsoleteFolding, 400, BAD, True),
        (InvalidChunkSize, 400, BAD, True),
        (ChunkMissingTerminator, 400, BAD, True),
        (InvalidChunkExtension, 400, BAD, True),
        (InvalidSchemeHeaders, 400, BAD, True),
        (LimitRequestLine, 414, "URI Too Long", True),
        (LimitRequestHeaders, 431, "Request Header Fields Too Large", True),
        (LimitRequestBody, 413, "Content Too Large", True),  # RFC 9110 section 15.5.14
        (ExpectationFailed, 417, "Expectation Failed", True),
        (UnsupportedTransferCoding, 501, "Not Implemented", True),
        (IncompleteMessage, 400, BAD, False),
    ],
)
def test_status_reason_and_response(cls: type[ProtocolError], status: int, reason: str, respond: bool) -> None:
    error = cls("bad <thing> & \"more\"")
    assert (error.status, error.reason, error.respond) == (status, reason, respond)
    assert isinstance(error, ProtocolError)
    assert str(error) == error.message == "bad <thing> & \"more\""
    assert repr(error) == f"{cls.__name__}('bad <thing> & \"more\"')"
    raw = error.to_response()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == f"HTTP/1.1 {status} {reason}".encode()
    dates = [line for line in lines[1:] if line.startswith(b"Date: ")]
    assert len(dates) == 1 and dates[0].endswith(b" GMT")
    assert sorted(line for line in lines[1:] if line not in dates) == sorted(
        [b"Connection: close", b"Content-Type: text/html", b"Content-Length: %d" % len(body)]
    )
    assert b"bad &lt;thing&gt; &amp; &quot;more&quot;" in body
    assert b"<thing>" not in body
    assert f"<title>{status} {reason}</title>".encode() in body


def test_default_message_is_the_reason() -> None:
    assert LimitRequestLine().message == "URI Too Long"
    assert b"<p>Bad Request</p>" in InvalidHeader().to_response()


def test_error_response_format() -> None:
    raw = error_response(500, "Internal Server Error", "")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert re.search(rb"\r\nContent-Length: (\d+)", raw)[1] == str(len(body)).encode()  # type: ignore[index]
    assert body.startswith(b"<html>") and body.endswith(b"</html>\n")


def test_non_ascii_message_is_escaped_to_ascii() -> None:
    raw = InvalidHeader("caf\u00e9 \u2603").to_response()
    assert b"caf&#233; &#9731;" in raw
    raw.decode("ascii")


def test_response_header_errors_are_value_errors_answered_500() -> None:
    assert issubclass(InvalidResponseHeader, ValueError)
    assert issubclass(InvalidResponseHeaderName, InvalidResponseHeader)
    assert not issubclass(InvalidResponseHeader, ProtocolError)
    assert (InvalidResponseHeader.status, InvalidResponseHeader.reason) == (500, "Internal Server Error")
    assert InvalidResponseHeaderName.status == 500


# -- trusted secure-scheme headers (Gunicorn secure_scheme_headers) -----------------------------------

SECURE = {b"X-FORWARDED-PROTO": b"https", b"x-forwarded-ssl": b"on"}


@pytest.mark.parametrize(
    ("headers", "scheme"),
    [
        ((), None),
        (((b"X-OTHER", b"https"),), None),
        (((b"X-FORWARDED-PROTO", b"https"),), "https"),
        (((b"X-FORWARDED-PROTO", b"HTTPS"),), "https"),
        (((b"X-FORWARDED-PROTO", b"http"),), "http"),
        (((b"X-FORWARDED-PROTO", b"https"), (b"X-FORWARDED-SSL", b"on")), "https"),
        (((b"X-FORWARDED-PROTO", b"http"), (b"X-FORWARDED-SSL", b"off")), "http"),
    ],
)
def test_url_scheme_from_headers(headers: tuple[tuple[bytes, bytes], ...], scheme: str | None) -> None:
    assert url_scheme_from_headers(headers, SECURE) == scheme


def test_contradictory_scheme_headers() -> None:
    with pytest.raises(InvalidSchemeHeaders) as caught:
        url_scheme_from_headers(((b"X-FORWARDED-PROTO", b"https"), (b"X-FORWARDED-SSL", b"off")), SECURE)
    assert caught.value.status == 400
