"""Property tests: any byte stream, split any way, yields events or one ProtocolError, fast.

Properties checked for every generated stream:

* only :class:`RequestHead` / :class:`BodyData` / :class:`EndOfMessage` / the two signals come
  out, in a valid order, or a :class:`ProtocolError` is raised; nothing else ever escapes;
* the error is sticky (every later call re-raises the same object);
* the verdict does not depend on how the bytes were split;
* parsing stays under 50 ms per KiB of input (measured per example, and on large adversarial inputs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pronghorn.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    BodyData,
    EndOfMessage,
    Limits,
    ParserState,
    ProtocolError,
    RequestHead,
    RequestParser,
)

SECONDS_PER_KIB = 0.050
# PRONGHORN_FUZZ_SCALE=20 for a longer hunt; the default keeps this file well under 20 s.
SCALE = int(os.environ.get("PRONGHORN_FUZZ_SCALE", "1"))
FUZZ = settings(deadline=None, max_examples=1500 * SCALE, database=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Outcome:
    requests: list[tuple[RequestHead, bytes, tuple[tuple[bytes, bytes], ...]]] = field(default_factory=list)
    error: ProtocolError | None = None
    closed: bool = False
    seconds: float = 0.0

    def verdict(self) -> tuple[object, ...]:
        # The error *class* may differ for input that breaks several rules at
        # once (which rule is noticed first can depend on where a read ended,
        # as in Gunicorn); whether and how the connection is rejected may not.
        respond = None if self.error is None else self.error.respond
        return (self.requests, self.error is not None, respond, self.closed)


def drive(pieces: list[bytes], limits: Limits, eof: bool) -> Outcome:
    """Feed ``pieces`` (then EOF), following keep-alive requests; check event order as we go."""
    parser = RequestParser(limits)
    out = Outcome()
    head: RequestHead | None = None
    body = bytearray()
    started = time.thread_time()  # CPU time of this thread: other processes on a busy machine do not count
    try:
        for piece in [p for p in pieces if p] + ([b""] if eof else []):  # b"" means EOF
            parser.feed(piece)
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    if parser.state is ParserState.DONE and head is not None and head.keep_alive:
                        parser.start_next_request()
                        head = None
                        continue
                    break
                if event is CONNECTION_CLOSED:
                    assert head is None
                    out.closed = True
                    break
                if isinstance(event, RequestHead):
                    assert head is None, "two heads without an EndOfMessage"
                    head, body = event, bytearray()
                elif isinstance(event, BodyData):
                    assert head is not None and event.data, "body data outside a request, or empty"
                    body += event.data
                elif isinstance(event, EndOfMessage):
                    assert head is not None
                    assert head.chunked or not event.trailers  # trailers only with chunked bodies
                    if head.content_length is not None:
                        assert len(body) == head.content_length
                    out.requests.append((head, bytes(body), event.trailers))
                    if not head.keep_alive:
                        head = None  # the caller closes here; keep feeding to exercise the DONE state
                else:
                    raise AssertionError(f"unexpected event {event!r}")
            if out.closed:
                break
    except ProtocolError as exc:
        out.error = exc
    out.seconds = time.thread_time() - started
    if out.error is not None:
        for _ in range(2):  # sticky: the same object, every time
            with pytest.raises(ProtocolError) as again:
                parser.next_event()
            assert again.value is out.error
    return out


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces, start = [], 0
    for size in sizes:
        if start >= len(data):
            break
        pieces.append(data[start : start + size])
        start += size
    if start < len(data):
        pieces.append(data[start:])
    return pieces


def check(data: bytes, sizes: list[int], limits: Limits, eof: bool) -> None:
    whole = drive([data], limits, eof)
    split = drive(cut(data, sizes), limits, eof)
    assert split.verdict() == whole.verdict(), f"split-dependent: {split.error!r} vs {whole.error!r}"
    budget = SECONDS_PER_KIB * max(1.0, len(data) / 1024)
    for pieces, first in (([data], whole), (cut(data, sizes), split)):
        assert measure(pieces, limits, eof, first.seconds) < budget, f"{len(data)} bytes"


def measure(pieces: list[bytes], limits: Limits, eof: bool, seconds: float) -> float:
    """Best of up to three runs: a scheduler or GC hiccup on a busy machine is not the parser's cost."""
    for _ in range(2):
        if seconds < SECONDS_PER_KIB:
            break
        seconds = min(seconds, drive(pieces, limits, eof).seconds)
    return seconds


# -- strategies ----------------------------------------------------------------------------------------

limits_st = st.builds(
    Limits,
    max_request_line=st.sampled_from([0, -1, 1, 12, 40, 4094]),
    max_header_count=st.sampled_from([0, 1, 3, 100]),
    max_header_field_size=st.sampled_from([0, 1, 12, 40, 8190]),
    max_chunk_extension=st.sampled_from([0, 1, 8]),
    permit_obsolete_folding=st.booleans(),
    strip_header_spaces=st.booleans(),
    permit_unconventional_method=st.booleans(),
    permit_unconventional_version=st.booleans(),
    casefold_method=st.booleans(),
    header_map=st.sampled_from(["drop", "refuse", "dangerous"]),
    underscore_names_allowed=st.sampled_from([frozenset(), frozenset({b"*"}), frozenset({b"X_A"})]),
    require_host=st.booleans(),
)
sizes_st = st.lists(st.integers(min_value=1, max_value=40), max_size=60)

EOL = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"", b"\r\r\n"])
METHOD = st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"CONNECT", b"PUT", b"get", b"M-SEARCH", b"G#T", b"", b"GE T"])
TARGET = st.sampled_from(
    [b"/", b"/a?b=c#d", b"*", b"//x", b"http://h/p", b"https://[::1]:8/x", b"h.example:443", b"[::1]:80", b"foo", b"", b"/\x00", b"/\xff"]
)
VERSION = st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 ", b"HTTP/11"])
SP = st.sampled_from([b" "] * 8 + [b"  ", b"\t", b""])
NAME = st.sampled_from(
    [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Content-Type", b"X-A", b"X_A",
     b"Trailer", b"TE", b"Authorization", b"Bad Name", b"", b" X", b"X\x00"]
)
VALUE = st.sampled_from(
    [b"chunked", b"gzip, chunked", b"identity, chunked", b"chunked, chunked", b"gzip", b"br", b"0", b"3", b"5", b"-1",
     b"5, 5", b"close", b"keep-alive", b"100-continue", b"nope", b"", b" v ", b"a\x00b", b"\x80\xff", b"h"]
)
FIELD = st.builds(lambda n, colon, v, eol: n + colon + v + eol, NAME, st.sampled_from([b": ", b":", b" : ", b""]), VALUE, EOL)
FOLD = st.builds(lambda ws, v, eol: ws + v + eol, st.sampled_from([b" ", b"\t"]), VALUE, EOL)
CHUNK = st.one_of(
    st.builds(lambda d, ext, eol: b"%x" % len(d) + ext + eol + d + b"\r\n", st.binary(max_size=12), st.sampled_from([b"", b";a=b", b";a=\"q\"", b"; x", b";", b";a\rb"]), EOL),
    st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: v\r\n\r\n", b"0\r\nHost: h\r\n\r\n", b"0\r\n", b"ffffffffffffffffff\r\n", b"5 \r\n", b"-1\r\n", b"Z\r\n"]),
)
REQUEST = st.builds(
    lambda m, s1, t, s2, v, eol, fields, end, body: m + s1 + t + s2 + v + eol + b"".join(fields) + end + b"".join(body),
    METHOD, SP, TARGET, SP, VERSION, EOL,
    st.lists(st.one_of(FIELD, FIELD, FIELD, FOLD), max_size=6),
    EOL,
    st.lists(st.one_of(CHUNK, st.binary(max_size=8)), max_size=4),
)
GOOD_FIELD = st.sampled_from(
    [b"Host: h", b"X-A: v", b"Accept: */*", b"Connection: keep-alive", b"Connection: close", b"Expect: 100-continue",
     b"X_A: 1", b"Content-Type: text/plain", b"X-B:\tspaced out \t"]
)


@st.composite
def good_request(draw: st.DrawFn) -> bytes:
    """A well-formed request (valid framing and body), so that streams get past the head."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    line = draw(st.sampled_from([b"GET /", b"POST /a?b=c", b"PUT /x#f", b"HEAD http://h/p", b"OPTIONS *", b"DELETE //x"]))
    fields = draw(st.lists(GOOD_FIELD, max_size=4, unique=True))
    body = draw(st.binary(max_size=20))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == b"HTTP/1.1" else ["none", "length"]))
    if framing == "length":
        fields.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        fields.append(draw(st.sampled_from([b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked"])))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        ext = draw(st.sampled_from([b"", b";a=b", b" ; n=\"q\\\"v\""]))
        trailers = draw(st.sampled_from([b"", b"X-T: 1\r\n", b"X-T: 1\r\nX-U: 2\r\n"]))
        body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces) + b"0\r\n" + trailers + b"\r\n"
    else:
        body = b""
    return line + b" " + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """``base`` with a few single-byte insertions, deletions or replacements."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from([0x0D, 0x0A, 0x20, 0x09, 0x00, 0x3A, 0x3B, 0x22, 0x30, 0x5F, 0x80, 0xFF]))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            data[at:at] = bytes([byte])
        elif at < len(data):
            data[at : at + 1] = b"" if op == "delete" else bytes([byte])
    return bytes(data)


FRAGMENT = st.one_of(REQUEST, FIELD, CHUNK, EOL, st.binary(max_size=16))
PIPELINE = st.lists(good_request(), min_size=1, max_size=4).map(b"".join)
PLAUSIBLE = st.one_of(
    PIPELINE,
    mutated(PIPELINE),
    mutated(PIPELINE),
    st.tuples(PIPELINE, FRAGMENT).map(b"".join),
    st.lists(FRAGMENT, min_size=1, max_size=4).map(b"".join),
)


@FUZZ
@given(data=st.binary(max_size=600), sizes=sizes_st, limits=limits_st, eof=st.booleans())
def test_arbitrary_bytes(data: bytes, sizes: list[int], limits: Limits, eof: bool) -> None:
    check(data, sizes, limits, eof)


@FUZZ
@given(data=st.binary(max_size=300), sizes=sizes_st, eof=st.booleans())
def test_arbitrary_bytes_after_a_valid_head(data: bytes, sizes: list[int], eof: bool) -> None:
    # Aim the noise at the body readers and at the next pipelined request.
    for head in (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        check(head + data, sizes, Limits(), eof)


@FUZZ
@given(data=PLAUSIBLE, sizes=sizes_st, limits=limits_st, eof=st.booleans())
def test_plausible_http(data: bytes, sizes: list[int], limits: Limits, eof: bool) -> None:
    check(data, sizes, limits, eof)


@settings(deadline=None, max_examples=100 * SCALE, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragment=FRAGMENT, repeat=st.integers(min_value=100, max_value=3000), sizes=sizes_st, limits=limits_st)
def test_repeated_fragments_stay_linear(fragment: bytes, repeat: int, sizes: list[int], limits: Limits) -> None:
    # Long inputs (up to ~100 KiB) made of one fragment over and over: no quadratic paths.
    check(b"GET / HTTP/1.1\r\n" + fragment * repeat, sizes, limits, eof=True)


# -- large adversarial inputs, measured ------------------------------------------------------------------

BIG = Limits(max_request_line=0, max_header_count=32768, max_header_field_size=1 << 20, permit_obsolete_folding=True)
ADVERSARIAL = {
    "long-line-no-lf": (b"GET /" + b"a" * (1 << 20), BIG),
    "many-headers": (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 30000 + b"\r\n", BIG),
    "one-huge-header": (b"GET / HTTP/1.1\r\nX-A: " + b"b" * 500_000 + b"\r\n\r\n", BIG),
    "huge-folded-header": (b"GET / HTTP/1.1\r\nX-A: b\r\n" + b" c\r\n" * 50_000 + b"\r\n", BIG),
    "unfinished-section": (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 60_000, BIG),
    "tiny-chunks": (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 60_000 + b"0\r\n\r\n", Limits()),
    "chunk-extensions": (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"1;" + b"a=\"b\";" * 600 + b"c\r\nx\r\n") * 100 + b"0\r\n\r\n",
        Limits(max_chunk_extension=8000),
    ),
    "many-trailers": (
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-T: v\r\n" * 30000 + b"\r\n", BIG
    ),
    "pipelined-requests": (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 5000, Limits()),
    "large-body": (b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000, Limits()),
}


@pytest.mark.parametrize("split", [64, 1500, 65536])
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_large_inputs_parse_in_bounded_time(name: str, split: int) -> None:
    data, limits = ADVERSARIAL[name]
    pieces = [data[i : i + split] for i in range(0, len(data), split)]
    kib = len(data) / 1024
    seconds = drive(pieces, limits, eof=True).seconds  # only ProtocolError may escape the parser
    if seconds > 0.001 * kib:  # measure once more: a busy machine is not the parser's cost
        seconds = min(seconds, drive(pieces, limits, eof=True).seconds)
    assert seconds < SECONDS_PER_KIB * kib, f"{name}: {seconds * 1000:.1f} ms for {kib:.0f} KiB"
    # and far below the budget in practice: 1 ms per KiB still flags accidental quadratic work
    assert seconds < 0.001 * kib + 0.05, f"{name}: {seconds * 1000:.1f} ms for {kib:.0f} KiB"
