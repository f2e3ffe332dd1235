"""A received chunk kept as it is: heads parsed in place, bodies sliced out of it, take_body()."""

from __future__ import annotations

import pytest

from pronghorn.apps.wsgi import BytesBody
from pronghorn.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    IncompleteMessage,
    RequestHead,
    RequestParser,
)
from pronghorn.http.parser import ParserState

BODY = bytes(range(256)) * 16  # 4 KiB
POST = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"


def head_of(parser: RequestParser) -> RequestHead:
    event = parser.next_event()
    assert isinstance(event, RequestHead)
    return event


def test_a_body_that_came_with_its_head_is_taken_whole() -> None:
    parser = RequestParser()
    parser.feed(POST % len(BODY) + BODY)
    assert head_of(parser).content_length == len(BODY)
    assert parser.take_body(1 << 20) == BODY
    assert parser.state is ParserState.DONE
    assert parser.buffered == 0


def test_a_chunk_of_body_bytes_only_is_handed_out_as_it_is() -> None:
    parser = RequestParser()
    parser.feed(POST % (2 * len(BODY)))
    head_of(parser)
    assert parser.take_body(1 << 20) is None  # nothing of the body is here yet
    first, second = BODY[:], bytes(BODY)
    parser.feed(first)
    event = parser.next_event()
    assert isinstance(event, BodyData) and event.data is first  # no copy
    parser.feed(second)
    event = parser.next_event()
    assert isinstance(event, BodyData) and event.data is second
    assert isinstance(parser.next_event(), EndOfMessage)


@pytest.mark.parametrize("missing", [1, len(BODY)])
def test_an_incomplete_body_is_left_to_next_event(missing: int) -> None:
    parser = RequestParser()
    parser.feed(POST % len(BODY) + BODY[:-missing])
    head_of(parser)
    assert parser.take_body(1 << 20) is None
    assert parser.state is ParserState.BODY
    received = b""
    while isinstance(event := parser.next_event(), BodyData):
        received += event.data
    assert event is NEED_DATA
    parser.feed(BODY[-missing:])
    event = parser.next_event()
    assert isinstance(event, BodyData)
    assert received + event.data == BODY
    assert isinstance(parser.next_event(), EndOfMessage)


def test_a_body_over_the_limit_is_not_taken() -> None:
    parser = RequestParser()
    parser.feed(POST % len(BODY) + BODY)
    head_of(parser)
    assert parser.take_body(len(BODY) - 1) is None
    event = parser.next_event()
    assert isinstance(event, BodyData) and event.data == BODY


def test_a_request_without_body_gives_an_empty_one() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    head_of(parser)
    assert parser.take_body(0) == b""
    assert parser.state is ParserState.DONE


def test_a_chunked_body_is_not_taken() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    head_of(parser)
    assert parser.take_body(1 << 20) is None
    event = parser.next_event()
    assert isinstance(event, BodyData) and event.data == b"abc"


def test_take_body_only_right_after_a_head() -> None:
    parser = RequestParser()
    assert parser.take_body(1 << 20) is None  # no head yet
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    head_of(parser)
    assert parser.take_body(0) == b""
    assert parser.take_body(0) is None  # the message is complete


def test_pipelined_requests_after_a_taken_body_are_parsed_from_the_same_chunk() -> None:
    second = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    parser = RequestParser()
    parser.feed(POST % 3 + b"abc" + second + b"GET /partial HTTP/1.1\r\nHo")
    head_of(parser)
    assert parser.take_body(1 << 20) == b"abc"
    parser.start_next_request()
    assert head_of(parser).path == b"/next"
    assert parser.take_body(0) == b""
    parser.start_next_request()
    assert parser.next_event() is NEED_DATA  # the rest of the third head is still to come
    parser.feed(b"st: h\r\n\r\n")
    assert head_of(parser).path == b"/partial"


def test_eof_inside_a_body_taken_in_pieces_is_incomplete() -> None:
    parser = RequestParser()
    parser.feed(POST % 10 + b"abc")
    head_of(parser)
    assert parser.take_body(1 << 20) is None
    assert parser.next_event() == BodyData(b"abc")
    parser.feed(b"")
    with pytest.raises(IncompleteMessage):
        parser.next_event()


def test_eof_between_requests_after_a_held_chunk() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    head_of(parser)
    assert parser.take_body(0) == b""
    parser.start_next_request()
    parser.feed(b"")
    assert parser.next_event() is CONNECTION_CLOSED


def test_bytes_body_hands_over_the_whole_body_and_slices_partial_reads() -> None:
    whole = BytesBody(BODY)
    assert whole.read(len(BODY)) is BODY
    assert whole.read(10) == b""
    parts = BytesBody(BODY)
    assert parts.read(100) + parts.read(10_000) == BODY
    assert parts.read(1) == b""
