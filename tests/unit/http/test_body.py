"""Chunked and length-delimited bodies (RFC 9112 sections 6.2 and 7.1)."""

from __future__ import annotations

import pytest
from http_replay import accept, reject, replay, replay_splits

from pronghorn.http import (
    BodyData,
    ChunkMissingTerminator,
    EndOfMessage,
    IncompleteMessage,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    Limits,
    ObsoleteFolding,
    ProtocolError,
    RequestHead,
    RequestParser,
)

HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("chunks", "body"),
    [
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
        (b"000000000000000000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),  # leading zeros are not digits of size
        (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),  # chunk data is opaque
        (b"1\r\n0\r\n1\r\n\n\r\n0\r\n\r\n", b"0\n"),
        (b"0000\r\n\r\n", b""),
    ],
)
def test_chunked_bodies(chunks: bytes, body: bytes) -> None:
    done = accept(HEAD + chunks)
    assert done.body == body and done.trailers == ()


def test_large_chunk_size() -> None:
    data = bytes(range(256)) * 300
    assert accept(HEAD + b"%X\r\n" % len(data) + data + b"\r\n0\r\n\r\n").body == data


def test_sixteen_significant_hex_digits_are_allowed() -> None:
    unlimited_body = Limits(max_body_size=0)  # the digit cap alone (the body limit is tested in test_limits)
    out = replay([HEAD + b"FFFFFFFFFFFFFFFF\r\nabc"], unlimited_body, eof=False)
    assert out.error is None and out.heads  # waiting for 2**64-1 bytes, not an error


@pytest.mark.parametrize("size", [b"1" + b"0" * 16, b"FFFFFFFFFFFFFFFFF", b"00" + b"1" * 17])
def test_chunk_size_digit_cap(size: bytes) -> None:
    assert type(reject(HEAD + size + b"\r\n")) is InvalidChunkSize


@pytest.mark.parametrize(
    "line",
    [b"", b"+5", b"-5", b"5 ", b"5\t", b" 5", b"\t5", b"5_0", b"0x5", b"g", b"5g", b"\xd9\xa1", b"5\r", b"5 \r", b"5 x", b"5,3"],
)
def test_invalid_chunk_sizes(line: bytes) -> None:
    assert type(reject(HEAD + line + b"\r\nhello\r\n0\r\n\r\n")) is InvalidChunkSize


def test_size_line_needs_crlf() -> None:
    assert type(reject(HEAD + b"5\nhello\r\n0\r\n\r\n")) is InvalidChunkSize
    assert type(reject(HEAD + b"\n")) is InvalidChunkSize


# -- chunk extensions (RFC 9112 section 7.1.1) -------------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    [
        b";a", b";a=b", b"; a = b", b" ;a", b"\t;\ta\t=\tb", b";a;b;c", b";a=b;c=d", b";name=\"quoted value\"",
        b";a=\"\"", b";a=\"x\\\"y\"", b";a=\"\\\\\"", b";a=\"\x80\xff\"", b";!#$%&'*+-.^_`|~=tok", b" \t ;a",
    ],
)
def test_valid_chunk_extensions(ext: bytes) -> None:
    assert accept(HEAD + b"5" + ext + b"\r\nhello\r\n0" + ext + b"\r\n\r\n").body == b"hello"


@pytest.mark.parametrize(
    "ext",
    [
        b";", b"; ", b";=b", b";a=", b";a =", b";a=b c", b";a b", b";a=\"open", b";a=\"x\"y", b";a=\"\x00\"",
        b";a=\"\x7f\"", b";a@b", b";a=b@", b";a=\"\\\x00\"", b";;a", b";a;", b";a=b=c", b";\x80",
    ],
)
def test_invalid_chunk_extensions(ext: bytes) -> None:
    assert type(reject(HEAD + b"5" + ext + b"\r\nhello\r\n0\r\n\r\n")) is InvalidChunkExtension


def test_bare_cr_in_chunk_extension() -> None:
    assert type(reject(HEAD + b"5;a\rb\r\nhello\r\n0\r\n\r\n")) is InvalidChunkExtension
    assert type(reject(HEAD + b"5;a=\"\r\"\r\nhello\r\n0\r\n\r\n")) is InvalidChunkExtension


@pytest.mark.parametrize(("length", "ok"), [(10, True), (11, False)])
def test_chunk_extension_cap(length: int, ok: bool) -> None:
    ext = b";a=" + b"x" * (length - 3)
    assert len(ext) == length
    raw = HEAD + b"5" + ext + b"\r\nhello\r\n0\r\n\r\n"
    limits = Limits(max_chunk_extension=10)
    if ok:
        assert accept(raw, limits).body == b"hello"
    else:
        assert type(reject(raw, limits)) is InvalidChunkExtension


def test_default_chunk_extension_cap_is_4096() -> None:
    ok = b";a=" + b"x" * 4093
    assert accept(HEAD + b"1" + ok + b"\r\nx\r\n0\r\n\r\n").body == b"x"
    assert type(reject(HEAD + b"1" + ok + b"x\r\nx\r\n0\r\n\r\n")) is InvalidChunkExtension


# -- chunk terminators and EOF --------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [b"XY", b"\n\r", b"\r\r", b"X\r\n", b"\rX", b"\n0\r\n\r\n", b"0\r\n\r\n"])
def test_chunk_data_must_be_followed_by_crlf(after: bytes) -> None:
    assert type(reject(HEAD + b"5\r\nhello" + after)) is ChunkMissingTerminator


@pytest.mark.parametrize(
    ("tail", "error", "respond"),
    [
        (b"", IncompleteMessage, False),  # EOF before the first size line
        (b"5", IncompleteMessage, False),  # EOF inside a size line
        (b"5\r\nhel", IncompleteMessage, False),  # EOF inside chunk data
        (b"5\r\nhello", ChunkMissingTerminator, True),  # EOF where the chunk's CRLF is due (Gunicorn)
        (b"5\r\nhello\r", ChunkMissingTerminator, True),
        (b"5\r\nhello\r\n0\r\n", ChunkMissingTerminator, True),  # EOF before the trailer section ends (26.1)
        (b"0\r\nX-T: v\r\n", ChunkMissingTerminator, True),
        (b"0\r\nX-T: v\r\n\r", ChunkMissingTerminator, True),
    ],
)
def test_eof_inside_a_chunked_body(tail: bytes, error: type[ProtocolError], respond: bool) -> None:
    got = reject(HEAD + tail, eof=True)
    assert type(got) is error and got.respond is respond


def test_eof_inside_a_length_body() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello"
    got = reject(raw, eof=True)
    assert type(got) is IncompleteMessage and got.respond is False


# -- trailers (RFC 9112 section 7.1.2, RFC 9110 section 6.5) ---------------------------------------------


def test_trailers_are_reported_and_not_merged() -> None:
    done = accept(HEAD + b"5\r\nhello\r\n0\r\nX-Checksum: abc \r\nx-other:1\r\n\r\n")
    assert done.trailers == ((b"X-CHECKSUM", b"abc"), (b"X-OTHER", b"1"))
    assert done.head.get(b"X-CHECKSUM") is None
    assert done.head.headers == ((b"HOST", b"h"), (b"TRANSFER-ENCODING", b"chunked"))


@pytest.mark.parametrize(
    "name", [b"Host", b"Content-Length", b"Transfer-Encoding", b"Trailer", b"Authorization", b"TE", b"te", b"HOST"]
)
def test_forbidden_trailer_names(name: bytes) -> None:
    error = reject(HEAD + b"0\r\n" + name + b": x\r\n\r\n")
    assert type(error) is InvalidHeaderName and error.status == 400


@pytest.mark.parametrize(
    ("trailer", "error"),
    [
        (b"X-T: a\nX-U: b\r\n", InvalidHeader),  # bare LF
        (b"\n", InvalidHeader),
        (b"X-T: a\x00\r\n", InvalidHeader),
        (b"X T: a\r\n", InvalidHeaderName),
        (b"NoColon\r\n", InvalidHeader),
        (b"X-T: a\r\n folded\r\n", ObsoleteFolding),
        (b"Content-Type: a\r\nContent-Type: b\r\n", InvalidHeader),
    ],
)
def test_invalid_trailers(trailer: bytes, error: type[ProtocolError]) -> None:
    assert type(reject(HEAD + b"0\r\n" + trailer + b"\r\n")) is error


def test_trailer_header_map() -> None:
    raw = HEAD + b"0\r\nX_T: 1\r\nX-T: 2\r\n\r\n"
    assert accept(raw).trailers == ((b"X-T", b"2"),)
    assert accept(raw, Limits(header_map="dangerous")).trailers == ((b"X_T", b"1"), (b"X-T", b"2"))
    assert type(reject(raw, Limits(header_map="refuse"))) is InvalidHeaderName


def test_body_events_in_order_without_empty_data() -> None:
    parser = RequestParser()
    parser.feed(HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\nX: y\r\n\r\n")
    events: list[object] = []
    while not events or not isinstance(events[-1], EndOfMessage):
        events.append(parser.next_event())
    assert isinstance(events[0], RequestHead)
    assert events[1:] == [BodyData(b"abc"), BodyData(b"de"), EndOfMessage(((b"X", b"y"),))]


def test_length_body_handed_out_as_it_arrives() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nab")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == BodyData(b"ab")
    parser.feed(b"cdefGET")  # body bytes, then the start of a pipelined request
    assert parser.next_event() == BodyData(b"cdef")
    assert parser.next_event() == EndOfMessage()
    assert parser.buffered == 3


def test_split_independence_of_a_mixed_stream() -> None:
    raw = HEAD + b"3;x=\"y\"\r\nabc\r\n0\r\nT: 1\r\n\r\n" + b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
    out = replay_splits(raw, eof=True)
    assert [c.body for c in out.completed] == [b"abc", b"hi"] and out.closed
