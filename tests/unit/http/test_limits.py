"""Size limits with Gunicorn's clamps (Gunicorn reference section 6, "Limits"), and the body limit."""

from __future__ import annotations

import pytest
from http_replay import accept, reject, replay, split_bytes, split_random

from pronghorn.http import (
    NEED_DATA,
    BodyData,
    EndOfMessage,
    InvalidChunkSize,
    LimitRequestBody,
    LimitRequestHeaders,
    LimitRequestLine,
    Limits,
    ParserState,
    ProtocolError,
    RequestHead,
    RequestParser,
)


@pytest.mark.parametrize(
    ("setting", "effective"),
    [(0, 1 << 20), (-1, 8190), (-4094, 8190), (1, 1), (4094, 4094), (8189, 8189), (8190, 8190), (8191, 8190), (10**9, 8190)],
)
def test_request_line_clamp(setting: int, effective: int) -> None:
    assert Limits.from_settings(limit_request_line=setting).max_request_line == effective
    assert Limits(max_request_line=setting).max_request_line == effective


@pytest.mark.parametrize(
    ("setting", "effective"),
    [(0, 32768), (-1, 32768), (1, 1), (100, 100), (32768, 32768), (32769, 32768), (10**9, 32768)],
)
def test_field_count_clamp(setting: int, effective: int) -> None:
    assert Limits.from_settings(limit_request_fields=setting).max_header_count == effective


@pytest.mark.parametrize(("setting", "effective"), [(0, 8190), (-1, 8190), (1, 1), (8190, 8190), (20000, 20000)])
def test_field_size_clamp(setting: int, effective: int) -> None:
    # 0 does NOT mean unlimited for the field size (Gunicorn test limit_header_default_01).
    assert Limits.from_settings(limit_request_field_size=setting).max_header_field_size == effective


@pytest.mark.parametrize(("setting", "effective"), [(0, 4096), (-3, 4096), (10, 10)])
def test_chunk_extension_clamp(setting: int, effective: int) -> None:
    assert Limits(max_chunk_extension=setting).max_chunk_extension == effective


def test_defaults_match_gunicorn() -> None:
    limits = Limits.from_settings()
    assert (limits.max_request_line, limits.max_header_count, limits.max_header_field_size) == (4094, 100, 8190)
    assert limits == Limits()
    assert limits.max_field_section == 100 * (8190 + 2) + 4


# -- request line -----------------------------------------------------------------------------


def line_of(length: int) -> bytes:
    line = b"GET /" + b"a" * (length - 14) + b" HTTP/1.1"
    assert len(line) == length
    return line


@pytest.mark.parametrize(("limit", "length", "ok"), [(20, 20, True), (20, 21, False), (100, 100, True), (100, 101, False)])
def test_request_line_limit(limit: int, length: int, ok: bool) -> None:
    raw = line_of(length) + b"\r\n\r\n"
    limits = Limits.from_settings(limit_request_line=limit)
    if ok:
        accept(raw, limits)
    else:
        error = reject(raw, limits)
        assert type(error) is LimitRequestLine and (error.status, error.reason) == (414, "URI Too Long")


def test_request_line_limit_raised_early_without_crlf() -> None:
    limits = Limits.from_settings(limit_request_line=20)
    parser = RequestParser(limits)
    parser.feed(b"GET /" + b"a" * 17)  # 22 = limit + 2 bytes, no LF yet: could still be OK-ish
    assert parser.next_event() is NEED_DATA
    parser.feed(b"a")  # more than limit + 2 bytes without CRLF
    with pytest.raises(LimitRequestLine):
        parser.next_event()


def test_zero_means_unlimited_request_line() -> None:
    limits = Limits.from_settings(limit_request_line=0)
    head = accept(line_of(50_000) + b"\r\n\r\n", limits).head
    assert len(head.target) == 50_000 - 13
    assert type(reject(line_of((1 << 20) + 1) + b"\r\n\r\n", limits)) is LimitRequestLine


def test_skipped_leading_crlf_does_not_count() -> None:
    accept(b"\r\n" + line_of(20) + b"\r\n\r\n", Limits.from_settings(limit_request_line=20))


# -- header fields -------------------------------------------------------------------------------


def req(*lines: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


@pytest.mark.parametrize(("count", "ok"), [(1, True), (3, True), (4, False)])
def test_field_count_limit(count: int, ok: bool) -> None:
    limits = Limits.from_settings(limit_request_fields=3)
    raw = req(*(b"X-%d: v" % i for i in range(count)))
    if ok:
        assert len(accept(raw, limits).head.headers) == count
    else:
        error = reject(raw, limits)
        assert type(error) is LimitRequestHeaders and (error.status, error.reason) == (431, "Request Header Fields Too Large")


def test_default_field_count_is_100() -> None:
    assert len(accept(req(*(b"X-%d: v" % i for i in range(100)))).head.headers) == 100
    assert reject(req(*(b"X-%d: v" % i for i in range(101)))).status == 431


@pytest.mark.parametrize(("setting", "size", "ok"), [(30, 30, True), (30, 31, False), (0, 8190, True), (0, 8191, False), (-5, 8191, False)])
def test_field_size_limit_counts_name_colon_value_and_crlf(setting: int, size: int, ok: bool) -> None:
    line = b"X-Long: " + b"v" * (size - 10)
    assert len(line) + 2 == size
    limits = Limits.from_settings(limit_request_field_size=setting)
    if ok:
        accept(req(line), limits)
    else:
        assert type(reject(req(line), limits)) is LimitRequestHeaders


@pytest.mark.parametrize("extra", [0, 1])
def test_folded_lines_count_toward_field_size(extra: int) -> None:
    limits = Limits.from_settings(limit_request_field_size=30, permit_obsolete_folding=True)
    first, fold = b"X-A: aaaa", b" " + b"b" * (16 + extra)
    assert len(first) + 2 + len(fold) + 2 == 30 + extra
    if not extra:
        assert accept(req(first, fold), limits).head.get(b"X-A") == b"aaaa " + fold[1:]
    else:
        assert type(reject(req(first, fold), limits)) is LimitRequestHeaders


def test_unfinished_overlong_field_line_rejected_early() -> None:
    limits = Limits.from_settings(limit_request_field_size=30)
    out = replay([b"GET / HTTP/1.1\r\nX-A: " + b"v" * 29], limits, eof=False)
    assert type(out.error) is LimitRequestHeaders
    out = replay([b"GET / HTTP/1.1\r\nX-A: " + b"v" * 23 + b"\r"], limits, eof=False)  # 29 bytes so far: fits
    assert out.error is None


def test_unfinished_header_section_capped() -> None:
    limits = Limits.from_settings(limit_request_fields=2, limit_request_field_size=10)
    assert limits.max_field_section == 2 * 12 + 4
    lines = b"A: 1\r\n" * 5  # 30 bytes > 28, no terminating CRLFCRLF yet
    out = replay([b"GET / HTTP/1.1\r\n" + lines], limits, eof=False)
    assert type(out.error) is LimitRequestHeaders


def test_limits_apply_to_trailers_too() -> None:
    limits = Limits.from_settings(limit_request_fields=2)
    body = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    assert len(accept(body + b"A: 1\r\nB: 2\r\n\r\n", limits).trailers) == 2
    assert type(reject(body + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits)) is LimitRequestHeaders
    limits = Limits.from_settings(limit_request_fields=2, limit_request_field_size=10)
    assert type(reject(body + b"A: 1\r\n" * 5, limits)) is LimitRequestHeaders  # trailer section cap
    assert type(reject(body + b"A: 1234567890\r\n\r\n", limits)) is LimitRequestHeaders


@pytest.mark.parametrize(
    ("setting", "line", "ok"),
    [
        (40, b"0" * 35 + b"1;a=b", True),  # 40 bytes before CRLF
        (40, b"0" * 36 + b"1;a=b", False),
        (0, b"0" * 8189 + b"1", True),  # 0 -> 8190
        (0, b"0" * 8190 + b"1", False),
    ],
)
def test_chunk_size_line_capped_by_field_size(setting: int, line: bytes, ok: bool) -> None:
    raw = b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + line + b"\r\nx\r\n0\r\n\r\n"
    limits = Limits.from_settings(limit_request_field_size=setting)
    if ok:
        assert accept(raw, limits).body == b"x"
    else:
        assert type(reject(raw, limits)) is InvalidChunkSize


# -- request body (limit_request_body, pronghorn's own) ------------------------------------------


@pytest.mark.parametrize(("setting", "effective"), [(0, 0), (1, 1), (1 << 30, 1 << 30), (10**15, 10**15)])
def test_body_size_is_kept_as_given(setting: int, effective: int) -> None:
    assert Limits.from_settings(limit_request_body=setting).max_body_size == effective
    assert Limits(max_body_size=setting).max_body_size == effective


@pytest.mark.parametrize("setting", [-1, -(1 << 30)])
def test_negative_body_size_is_refused(setting: int) -> None:
    # No clamp has a meaning here (the setting's validator refuses negatives before this).
    with pytest.raises(ValueError, match="max_body_size"):
        Limits(max_body_size=setting)
    with pytest.raises(ValueError, match="max_body_size"):
        Limits.from_settings(limit_request_body=setting)


def test_body_size_default_is_one_gib_and_part_of_the_value() -> None:
    assert Limits().max_body_size == Limits.from_settings().max_body_size == 1073741824
    assert Limits(max_body_size=10) != Limits(max_body_size=11)
    assert "max_body_size=10" in repr(Limits(max_body_size=10))
    with pytest.raises(AttributeError):
        Limits().max_body_size = 0


def post(length: int, *, expect: bool = False) -> bytes:
    """A POST head declaring ``length`` body bytes (the body itself is not included)."""
    head = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n" % length
    return head + (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n"


@pytest.mark.parametrize(("length", "ok"), [(1, True), (99, True), (100, True), (101, False), (10**12, False)])
def test_declared_length_against_the_limit(length: int, ok: bool) -> None:
    limits = Limits.from_settings(limit_request_body=100)
    if ok:
        assert accept(post(length) + b"x" * length, limits).body == b"x" * length
    else:
        error = reject(post(length), limits)
        assert type(error) is LimitRequestBody
        assert (error.status, error.reason, error.respond) == (413, "Content Too Large", True)
        assert str(length) in str(error) and "100" in str(error)


@pytest.mark.parametrize("expect", [False, True])
def test_declared_length_over_the_limit_is_refused_with_the_head(expect: bool) -> None:
    """No RequestHead comes out, so a worker cannot send 100 Continue or read a body byte first."""
    limits = Limits.from_settings(limit_request_body=100)
    parser = RequestParser(limits)
    parser.feed(post(107374182400, expect=expect))  # 100 GiB, no body byte sent
    with pytest.raises(LimitRequestBody):
        parser.next_event()
    assert parser.head is None and parser.state is ParserState.ERROR
    with pytest.raises(LimitRequestBody):  # sticky, as every protocol error
        parser.next_event()
    # The same head split over reads: the verdict comes once the head is complete, not later.
    out = replay(split_bytes(post(107374182400, expect=expect)), limits, eof=False)
    assert type(out.error) is LimitRequestBody and out.heads == []


def test_declared_length_at_the_limit_is_delivered_head_first() -> None:
    limits = Limits.from_settings(limit_request_body=100)
    parser = RequestParser(limits)
    parser.feed(post(100, expect=True))
    head = parser.next_event()
    assert isinstance(head, RequestHead) and head.expect_continue and head.content_length == 100
    assert parser.next_event() is NEED_DATA


def test_default_limit_is_one_gib_on_the_declared_length() -> None:
    assert replay([post(1 << 30)], eof=False).error is None
    assert type(reject(post((1 << 30) + 1))) is LimitRequestBody


CHUNKED = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(*sizes: int, end: bytes = b"0\r\n\r\n") -> bytes:
    return CHUNKED + b"".join(b"%x\r\n" % size + b"d" * size + b"\r\n" for size in sizes) + end


@pytest.mark.parametrize(
    ("sizes", "ok"),
    [
        ((100,), True),
        ((40, 60), True),  # exactly the limit, across chunks
        ((1,) * 100, True),
        ((101,), False),
        ((40, 61), False),  # one byte over, in the last chunk
        ((1,) * 101, False),
        ((99, 1, 1), False),
    ],
)
def test_chunked_total_against_the_limit(sizes: tuple[int, ...], ok: bool) -> None:
    limits = Limits.from_settings(limit_request_body=100)
    if ok:
        done = accept(chunked(*sizes), limits)
        assert done.body == b"d" * sum(sizes)
    else:
        error = reject(chunked(*sizes), limits)
        assert type(error) is LimitRequestBody and error.status == 413


def body_events_until_error(chunks: list[bytes], limits: Limits) -> tuple[list[bytes], ProtocolError | None]:
    """Every BodyData slice handed out (in order) before the parser stopped, and its error."""
    parser = RequestParser(limits)
    slices: list[bytes] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (event := parser.next_event()) is not NEED_DATA:
                if isinstance(event, BodyData):
                    slices.append(event.data)
                elif isinstance(event, EndOfMessage):
                    return slices, None
    except ProtocolError as exc:
        return slices, exc
    return slices, None


@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
@pytest.mark.parametrize("sizes", [(40, 61), (101,), (100, 1), (0x10000,), (7,) * 15])
def test_no_body_byte_past_the_limit_is_ever_handed_out(sizes: tuple[int, ...], split: str) -> None:
    limits = Limits.from_settings(limit_request_body=100)
    raw = chunked(*sizes, end=b"")  # the client never gets to finish: the verdict must come before
    chunks = {"whole": [raw], "bytes": split_bytes(raw), "random": split_random(raw, 11)}[split]
    slices, error = body_events_until_error(chunks, limits)
    assert type(error) is LimitRequestBody
    assert sum(len(piece) for piece in slices) <= 100
    # What was handed out is exactly the chunks that fit whole: the refusal comes at the size line.
    fitting = 0
    for size in sizes:
        if fitting + size > 100:
            break
        fitting += size
    assert b"".join(slices) == b"d" * fitting


def test_chunk_declared_over_the_limit_is_refused_before_its_data_arrives() -> None:
    limits = Limits.from_settings(limit_request_body=100)
    slices, error = body_events_until_error([CHUNKED + b"FFFFFFFF\r\n"], limits)
    assert type(error) is LimitRequestBody and slices == []


def test_trailers_do_not_count_toward_the_body_limit() -> None:
    limits = Limits.from_settings(limit_request_body=5)
    done = accept(chunked(5, end=b"0\r\nX-Checksum: " + b"c" * 64 + b"\r\n\r\n"), limits)
    assert done.body == b"ddddd" and done.trailers == ((b"X-CHECKSUM", b"c" * 64),)


def test_zero_means_no_body_limit() -> None:
    limits = Limits.from_settings(limit_request_body=0)
    out = replay([post(107374182400)], limits, eof=False)
    assert out.error is None and out.heads[0].content_length == 107374182400
    out = replay([CHUNKED + b"FFFFFFFFFFFF\r\n" + b"d" * 1000], limits, eof=False)
    assert out.error is None and out.heads
    assert accept(chunked(70000, 70000), limits).body == b"d" * 140000


def test_body_limit_holds_for_each_request_of_a_connection() -> None:
    """The count starts again with every request: pipelined bodies each get the whole limit."""
    limits = Limits.from_settings(limit_request_body=100)
    out = replay([chunked(100) + post(100) + b"x" * 100 + chunked(60, 41)], limits, eof=False)
    assert [len(done.body) for done in out.completed] == [100, 100]
    assert type(out.error) is LimitRequestBody
