"""RequestParser as a state machine: events, pipelining, EOF, sticky errors."""

from __future__ import annotations

import random

import pytest

from pronghorn.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    IncompleteMessage,
    InvalidHeader,
    InvalidRequestLine,
    LimitRequestLine,
    Limits,
    ParserState,
    ProtocolError,
    RequestHead,
    RequestParser,
)
from pronghorn.http.request_line import RequestLine

GET = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"


def test_two_pipelined_requests_come_out_in_order() -> None:
    parser = RequestParser()
    parser.feed(GET + POST)
    first = parser.next_event()
    assert isinstance(first, RequestHead) and first.path == b"/one"
    assert parser.next_event() == EndOfMessage()
    assert parser.state.name == "DONE"
    # The next request waits for start_next_request(), however many bytes are buffered.
    assert parser.next_event() is NEED_DATA
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == len(POST)
    parser.start_next_request()
    second = parser.next_event()
    assert isinstance(second, RequestHead) and second.path == b"/two" and second.content_length == 3
    assert parser.head is second
    assert parser.next_event() == BodyData(b"abc")
    assert parser.next_event() == EndOfMessage()
    parser.start_next_request()
    assert parser.next_event() is NEED_DATA
    parser.feed(b"")
    assert parser.next_event() is CONNECTION_CLOSED
    assert parser.next_event() is CONNECTION_CLOSED
    assert parser.state is ParserState.CLOSED


def test_pipelined_request_may_start_with_one_empty_line() -> None:
    parser = RequestParser()
    parser.feed(GET + b"\r\n" + GET)
    for _ in range(2):
        assert isinstance(parser.next_event(), RequestHead)
        assert parser.next_event() == EndOfMessage()
        parser.start_next_request()
    assert parser.next_event() is NEED_DATA


@pytest.mark.parametrize("state_events", [0, 1])
def test_start_next_request_only_after_end_of_message(state_events: int) -> None:
    parser = RequestParser()
    parser.feed(POST)
    for _ in range(state_events):
        parser.next_event()
    with pytest.raises(RuntimeError):
        parser.start_next_request()


def test_start_next_request_refused_when_the_request_closes() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.0\r\n\r\n" + GET)
    head = parser.next_event()
    assert isinstance(head, RequestHead) and not head.keep_alive
    assert parser.next_event() == EndOfMessage()
    with pytest.raises(RuntimeError):
        parser.start_next_request()


def test_need_data_until_the_head_is_complete() -> None:
    parser = RequestParser()
    for byte in GET[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_event() is NEED_DATA
        assert parser.head is None
    parser.feed(GET[-1:])
    assert isinstance(parser.next_event(), RequestHead)


@pytest.mark.parametrize("partial", [b"", b"\r\n"])
def test_clean_close_between_requests(partial: bytes) -> None:
    parser = RequestParser()
    parser.feed(partial)
    parser.feed(b"")
    assert parser.eof
    assert parser.next_event() is CONNECTION_CLOSED


@pytest.mark.parametrize("partial", [b"G", b"\r", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: h\r\n\r"])
def test_eof_inside_a_head_is_an_incomplete_message(partial: bytes) -> None:
    parser = RequestParser()
    parser.feed(partial)
    parser.feed(b"")
    with pytest.raises(IncompleteMessage) as caught:
        parser.next_event()
    assert caught.value.respond is False


def test_feed_after_eof() -> None:
    parser = RequestParser()
    parser.feed(b"")
    parser.feed(b"")  # a repeated EOF is harmless
    with pytest.raises(RuntimeError):
        parser.feed(b"GET")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"GET / HTTP/1.1\nHost: h\r\n\r\n", InvalidRequestLine),
        (b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", InvalidHeader),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", LimitRequestLine),
    ],
)
def test_errors_are_sticky(raw: bytes, error: type[ProtocolError]) -> None:
    parser = RequestParser(Limits())
    parser.feed(raw)
    with pytest.raises(error) as first:
        parser.next_event()
    assert parser.state is ParserState.ERROR
    parser.feed(GET)  # ignored: the connection is dead
    for _ in range(3):
        with pytest.raises(error) as again:
            parser.next_event()
        assert again.value is first.value
    with pytest.raises(RuntimeError):
        parser.start_next_request()


def test_error_after_a_completed_request_does_not_undo_it() -> None:
    parser = RequestParser()
    parser.feed(GET + b"BAD\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == EndOfMessage()
    parser.start_next_request()
    with pytest.raises(InvalidRequestLine):
        parser.next_event()
    with pytest.raises(InvalidRequestLine):
        parser.next_event()


def test_body_error_is_sticky() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == BodyData(b"abc")
    with pytest.raises(ProtocolError) as first:
        parser.next_event()
    with pytest.raises(ProtocolError) as again:
        parser.next_event()
    assert again.value is first.value


def test_parser_exposes_its_limits() -> None:
    limits = Limits(max_header_count=7)
    assert RequestParser(limits).limits is limits
    assert RequestParser().limits == Limits()


def test_request_head_is_immutable() -> None:
    parser = RequestParser()
    parser.feed(GET)
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    with pytest.raises(AttributeError):
        head.method = b"POST"  # type: ignore[misc]


# Heads the whole-head scan (``_head.scan_head``) takes, and neighbours it must leave to the general
# path: parsed from one chunk (the quick path, when it applies) and byte by byte (never the quick path),
# the outcome is the same.
QUICK_PATH_HEADS = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"GET /a/b?x=1&y=2#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a#f?g#h HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /? HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /# HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET //x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\nAccept:  text/html \t\r\nX-Empty:\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"PATCH /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nX_Y: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: 1\r\n continued\r\n\r\n",
    b"GET / HTTP/1.2\r\n\r\n",
    b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"get / HTTP/1.1\r\n\r\n",
    b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    b"GET /a#b#c HTTP/1.1\r\n\r\n",
    b"GET /\x80 HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b"GET / HTTP/1.1\n\r\n\r\n",
    b"GET / HTTP/1.1\r\n:\r\n\r\n",
    b"GET / HTTP/1.1\r\nA\r\n\r\n",
    b"GET / HTTP/1.1\r\nA:\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nA:\x00\r\n\r\n",
    b"GET / HTTP/1.1\r\nA:\x7f\r\n\r\n",
    b"GET / HTTP/1.1\r\nA : 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nA:\t\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Type: a\r\ncontent-type: b\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n" + b"X: " + b"b" * 30 + b"\r\n\r\n",
]


def _outcome(pieces: list[bytes], limits: Limits, first: bytes = b"") -> object:
    """The head, the body's bytes (however they were sliced) and the end, or the error it ran into;
    with ``first``, of the request pipelined behind that whole request, sent with the first piece."""
    parser = RequestParser(limits)
    if first:
        pieces = [first + pieces[0], *pieces[1:]]
    head: object = None
    body = b""
    try:
        for piece in pieces:
            parser.feed(piece)
            while (event := parser.next_event()) is not NEED_DATA:
                if first:  # still the first request: skipped
                    if isinstance(event, EndOfMessage):
                        parser.start_next_request()
                        first = b""
                elif isinstance(event, BodyData):
                    body += event.data
                elif isinstance(event, EndOfMessage):
                    return head, body
                else:
                    head = event
    except ProtocolError as exc:
        return head, body, type(exc), exc.respond
    return head, body, "incomplete"


@pytest.mark.parametrize("raw", QUICK_PATH_HEADS)
@pytest.mark.parametrize("limits", [Limits(), Limits(max_request_line=14, max_header_count=1, max_header_field_size=20)])
def test_the_whole_head_scan_decides_as_the_general_path(raw: bytes, limits: Limits) -> None:
    bytewise = [raw[i : i + 1] for i in range(len(raw))]
    assert _outcome([raw], limits) == _outcome(bytewise, limits)
    # Pipelined behind another request: the scan starts in the middle of the buffer.
    first = b"GET / HTTP/1.1\r\n\r\n"
    assert _outcome([raw], limits, first) == _outcome(bytewise, limits, first)


_PIECES = [
    b"GET", b"POST", b"get", b"PRI", b" ", b"  ", b"/", b"/a", b"?", b"#", b"*", b"%", b"\x80", b"\x7f", b"\t",
    b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b"\r\n", b"\n", b"\r", b"Host", b"X_Y", b"X-Y", b":", b": ", b"a",
    b"\x00", b"Content-Length: 2", b"Transfer-Encoding: chunked", b"HOST: b",
]


def test_the_whole_head_scan_decides_as_the_general_path_on_generated_heads() -> None:
    """Heads stitched from pieces around the usual shape (seeded), each decided both ways."""
    rng = random.Random(20261205)
    usual = [b"GET", b" ", b"/a?b#c", b" HTTP/1.1", b"\r\n", b"Host", b": ", b"a", b"\r\n"]
    for _ in range(3000):
        pieces = list(usual)
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(pieces) + 1)
            if rng.random() < 0.5 and pieces:
                pieces[min(where, len(pieces) - 1)] = rng.choice(_PIECES)
            else:
                pieces.insert(where, rng.choice(_PIECES))
        raw = b"".join(pieces) + b"\r\n\r\nab"
        limits = Limits() if rng.random() < 0.8 else Limits(max_request_line=12, max_header_count=1)
        assert _outcome([raw], limits) == _outcome([raw[i : i + 1] for i in range(len(raw))], limits), raw


def test_the_whole_head_scan_recognises_the_usual_head() -> None:
    scan_head = pytest.importorskip("pronghorn.http._head", reason="built with the compiled modules").scan_head
    caps = Limits().usual_head_caps
    raw = bytearray(b"xxPOST /a/b?x=1&y=?#frag HTTP/1.0\r\nHost:a\r\nX-Y:  \t v a \t\r\nE:\r\n\r\nbody")
    head_end, line, fields = scan_head(raw, 2, RequestLine, caps)
    assert head_end == 64 and type(line) is RequestLine
    assert line == (b"POST", b"/a/b?x=1&y=?#frag", b"/a/b", b"x=1&y=?", b"frag", (1, 0))
    assert fields == [(b"HOST", b"a"), (b"X-Y", b"v a"), (b"E", b"")]
    assert scan_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 0, RequestLine, caps) is None  # not whole yet
    # The general path decides: a name with "_", a repeated Host, a line over the cap.
    assert scan_head(b"GET / HTTP/1.1\r\nX_Y: 1\r\n\r\n", 0, RequestLine, caps) is False
    assert scan_head(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, RequestLine, caps) is False
    assert scan_head(b"GET / HTTP/1.1\r\n\r\n", 0, RequestLine, Limits(max_request_line=13).usual_head_caps) is False
    assert scan_head(b"GET / HTTP/1.1\r\n\r\n", 0, RequestLine, Limits(max_request_line=14).usual_head_caps)
    with pytest.raises(ValueError):
        scan_head(b"GET", 4, RequestLine, caps)
    with pytest.raises(TypeError):
        scan_head(b"GET / HTTP/1.1\r\n\r\n", 0, dict, caps)
