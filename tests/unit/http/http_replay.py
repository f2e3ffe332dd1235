"""Helpers for driving RequestParser in tests (not a test module)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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


@dataclass
class Completed:
    head: RequestHead
    body: bytes
    trailers: tuple[tuple[bytes, bytes], ...]


@dataclass
class Replay:
    completed: list[Completed] = field(default_factory=list)
    heads: list[RequestHead] = field(default_factory=list)
    error: ProtocolError | None = None
    closed: bool = False  # CONNECTION_CLOSED seen, or stopped after a closing request


def split_whole(raw: bytes) -> list[bytes]:
    return [raw]


def split_lines(raw: bytes) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    while True:
        at = raw.find(b"\n", start)
        if at == -1:
            break
        out.append(raw[start : at + 1])
        start = at + 1
    if start < len(raw):
        out.append(raw[start:])
    return out


def split_bytes(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def split_random(raw: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    start = 0
    while start < len(raw):
        size = rng.randint(1, max(1, min(len(raw) - start, rng.choice((3, 17, 64, 1024)))))
        out.append(raw[start : start + size])
        start += size
    return out


def replay(chunks: list[bytes], limits: Limits = Limits(), *, eof: bool = True) -> Replay:
    """Feed ``chunks`` (then EOF), following pipelined keep-alive requests."""
    parser = RequestParser(limits)
    result = Replay()
    head: RequestHead | None = None
    body = bytearray()
    feeds = list(chunks) + ([b""] if eof else [])
    try:
        for chunk in feeds:
            parser.feed(chunk)
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    if parser.state is ParserState.DONE:
                        assert head is not None
                        if not head.keep_alive:
                            result.closed = True
                            return result
                        parser.start_next_request()
                        continue
                    break
                if event is CONNECTION_CLOSED:
                    result.closed = True
                    return result
                if isinstance(event, RequestHead):
                    head = event
                    result.heads.append(event)
                    body = bytearray()
                elif isinstance(event, BodyData):
                    assert event.data, "empty BodyData"
                    body += event.data
                elif isinstance(event, EndOfMessage):
                    assert head is not None
                    result.completed.append(Completed(head, bytes(body), event.trailers))
    except ProtocolError as exc:
        result.error = exc
    return result


def parse_one(raw: bytes, limits: Limits = Limits()) -> Completed:
    """Parse exactly one complete request or raise its ProtocolError."""
    out = replay([raw], limits, eof=False)
    if out.error is not None:
        raise out.error
    assert out.completed, "request did not complete"
    return out.completed[0]


def parse_error(raw: bytes, limits: Limits = Limits(), *, eof: bool = True) -> ProtocolError:
    out = replay([raw], limits, eof=eof)
    assert out.error is not None, f"expected an error, got {out.completed}"
    return out.error


def _summary(result: Replay) -> tuple[object, ...]:
    done = [(c.head, c.body, c.trailers) for c in result.completed]
    return (done, type(result.error) if result.error else None, result.closed)


def replay_splits(raw: bytes, limits: Limits = Limits(), *, eof: bool = True) -> Replay:
    """Replay ``raw`` whole, per line, per byte and randomly split; all must agree.

    The verdict (completed requests, error class, clean close) may never depend
    on how the bytes arrived.  Returns the whole-buffer replay.
    """
    whole = replay([raw], limits, eof=eof)
    expected = _summary(whole)
    for chunks in (split_lines(raw), split_bytes(raw), split_random(raw, 7)):
        other = replay(chunks, limits, eof=eof)
        assert _summary(other) == expected, f"split-dependent verdict: {other.error!r} vs {whole.error!r}"
    return whole


def accept(raw: bytes, limits: Limits = Limits()) -> Completed:
    """The single request in ``raw`` (checked across splits)."""
    out = replay_splits(raw, limits, eof=False)
    assert out.error is None, f"unexpected {out.error!r}"
    assert len(out.completed) == 1, out.completed
    return out.completed[0]


def reject(raw: bytes, limits: Limits = Limits(), *, eof: bool = False) -> ProtocolError:
    """The ProtocolError ``raw`` must raise before any request completes (checked across splits)."""
    out = replay_splits(raw, limits, eof=eof)
    assert out.error is not None, f"expected an error, got {out.completed}"
    assert not out.completed, "a request completed before the error"
    return out.error
