"""HTTP/1.1 request parser: bytes in, events out (sans-IO, RFC 9112).

How this works
--------------
``feed()`` appends bytes to one ``bytearray``; ``feed(b"")`` records EOF. A
``bytes`` chunk that arrives while that buffer is empty is kept as received
instead (``_chunk``, read from ``_chunk_pos``): a whole head is parsed in
place and a Content-Length body is handed out as a slice of it (or the chunk
itself), so the usual request is copied once, not three times. Anything else
first moves the chunk's unread bytes into the buffer (``_spill()``).
``next_event()`` advances a small state machine over that buffer and returns
one event per call:

``IDLE``   waiting for a request head.  One empty line (CRLF) before the
           request line is skipped.  The request line must end in CRLF within
           ``max_request_line + 2`` bytes (else 414 at once, without waiting
           for the line to finish) and is validated at once
           (``parse_request_line``); then :class:`FieldSectionScanner` finds the
           end of the header section, checking only newly arrived bytes.  A
           complete section is validated in one go (``parse_field_lines``,
           ``build_request_head``) and returned as a
           :class:`RequestHead`; the body reader is chosen (chunked, length, or
           none: no framing means no body) and the state becomes ``BODY``.
           A Content-Length over ``max_body_size`` is refused (413) instead,
           before the head is returned: no ``100 Continue`` can invite the body.
``BODY``   the reader turns buffered bytes into :class:`BodyData` slices and
           finally :class:`EndOfMessage` (state ``DONE``).  A chunked body is
           refused (413) at the chunk-size line that would take it over
           ``max_body_size``, so no slice handed out ever crosses the limit.
``DONE``   ``NEED_DATA`` until the caller calls ``start_next_request()``;
           pipelined bytes stay buffered until then.
``CLOSED`` the peer closed between requests (``CONNECTION_CLOSED``).
``ERROR``  the first :class:`ProtocolError` is kept and re-raised by every
           later call; the connection must be closed after answering it.

EOF inside a message raises :class:`IncompleteMessage` (``respond = False``),
except where a chunk's CRLF or the end of the trailer section is due: that is
:class:`ChunkMissingTerminator` (400), as in Gunicorn.

Policies
--------
* Strict by construction: bare LF, obs-fold (unless permitted), control bytes,
  non-token names, CL+TE, duplicate CL/Host/Content-Type, non-final chunked,
  Transfer-Encoding on HTTP/1.0 and malformed chunk lines are all rejected,
  never repaired (RFC 9112 section 11.2, request smuggling).
* Missing Host on HTTP/1.1 (RFC 9112 section 3.2: "MUST respond 400"): rejected
  when ``Limits.require_host`` is set.  It is off by default because Gunicorn
  accepts such requests and the conformance corpus requires them to be served.
* Keep-alive: ``close`` anywhere in Connection closes (RFC 9112 section 9.6);
  otherwise the first Connection field decides (exactly ``close`` /
  ``keep-alive``), else the version does.  CONNECT and compressed transfer
  codings always close afterwards.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Final, Literal

from .body import ChunkedReader, LengthReader, take
from .errors import IncompleteMessage, InvalidRequestLine, LimitRequestBody, LimitRequestLine, ProtocolError
from .events import CONNECTION_CLOSED, END_OF_MESSAGE, NEED_DATA, BodyData, EndOfMessage, Event, RequestHead
from .fields import FieldSectionScanner, parse_field_lines
from .framing import build_request_head
from .limits import Limits
from .request_line import RequestLine, parse_request_line

# C, built with the compiled modules (setup.py); without it every head takes the general path.
HeadScanner = Callable[[bytes | bytearray, int, type, tuple[int, int, int, int]], tuple[Any, ...] | Literal[False] | None]
scan_head: HeadScanner | None
try:
    from ._head import scan_head
except ImportError:  # pragma: no cover - an install without a compiler
    scan_head = None

_CR: Final = 0x0D
_LF: Final = 0x0A
_DEFAULT_LIMITS: Final = Limits()
_NO_BODY: Final = LengthReader(0)


class ParserState(enum.Enum):
    IDLE = "IDLE"  # waiting for (the rest of) a request head
    BODY = "BODY"  # head delivered, body events pending
    DONE = "DONE"  # EndOfMessage delivered; call start_next_request()
    CLOSED = "CLOSED"  # peer closed cleanly between requests
    ERROR = "ERROR"  # a ProtocolError was raised; the parser is dead


# Module constants: an enum member looked up through its class costs ~50 ns, several times a request.
_IDLE: Final = ParserState.IDLE
_BODY: Final = ParserState.BODY
_DONE: Final = ParserState.DONE
_CLOSED: Final = ParserState.CLOSED
_ERROR: Final = ParserState.ERROR


class RequestParser:
    """Server-side HTTP/1.1 request parser for one connection."""

    __slots__ = (
        "_limits",
        "_buf",
        "_chunk",
        "_chunk_pos",
        "_eof",
        "_state",
        "_error",
        "_head",
        "_reader",
        "_preamble_checked",
        "_line_end",
        "_line_scan",
        "_request_line",
        "_fields",
    )

    def __init__(self, limits: Limits = _DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._chunk: bytes | None = None  # received bytes not copied into _buf (which is then empty)
        self._chunk_pos = 0
        self._eof = False
        self._state = _IDLE
        self._error: ProtocolError | None = None
        self._head: RequestHead | None = None
        self._reader: ChunkedReader | LengthReader | None = None
        self._preamble_checked = False
        self._line_end = -1  # index of the request line's LF once found
        self._line_scan = 0  # where the search for that LF resumes
        self._request_line: RequestLine | None = None
        self._fields: FieldSectionScanner | None = None  # made when a head arrives in pieces

    # -- public API ---------------------------------------------------------

    @property
    def state(self) -> ParserState:
        return self._state

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (e.g. pipelined requests)."""
        if self._chunk is not None:
            return len(self._chunk) - self._chunk_pos
        return len(self._buf)

    @property
    def eof(self) -> bool:
        """Whether the peer's EOF has been fed."""
        return self._eof

    @property
    def head(self) -> RequestHead | None:
        """The head of the current request (``None`` while waiting for one)."""
        return self._head

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` signals EOF from the peer."""
        if self._eof:
            if data:
                raise RuntimeError("feed() called with data after EOF")
            return
        if not data:
            self._eof = True
        elif self._state is not _ERROR:
            if self._chunk is None and not self._buf and type(data) is bytes:
                self._chunk = data  # immutable: safe to keep without a copy
                self._chunk_pos = 0
            else:
                self._spill()
                self._buf += data

    def next_event(self) -> Event:
        """Next event, ``NEED_DATA`` or ``CONNECTION_CLOSED``; raises :class:`ProtocolError`."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        try:
            if self._state is _BODY:
                return self._read_body()
            if self._state is _IDLE:
                if self._chunk is None and not self._buf and not self._eof:
                    return NEED_DATA  # the usual state between keep-alive requests
                return self._read_head()
            if self._state is _CLOSED:
                return CONNECTION_CLOSED
            return NEED_DATA
        except ProtocolError as exc:
            self._error = exc
            self._state = _ERROR
            raise

    def take_body(self, limit: int) -> bytes | None:
        """Right after a ``RequestHead``: its whole body at once if it is all here already and at
        most ``limit`` bytes (b"" for a request without one). That completes the message, as
        ``EndOfMessage`` would. Otherwise None, and ``next_event()`` delivers the body as usual."""
        if self._state is not _BODY:
            return None
        reader = self._reader
        if reader is _NO_BODY:
            self._state = _DONE
            return b""
        chunk = self._chunk
        if chunk is None or type(reader) is not LengthReader:
            return None
        remaining = reader.remaining
        if remaining > limit or self._chunk_pos + remaining > len(chunk):
            return None
        reader.remaining = 0
        self._state = _DONE
        return self._take_from_chunk(chunk, remaining)

    def start_next_request(self) -> None:
        """After ``EndOfMessage``: parse the next (pipelined) request from buffered bytes."""
        if self._state is not _DONE:
            raise RuntimeError(f"start_next_request() in state {self._state.value}")
        if self._head is not None and not self._head.keep_alive:
            raise RuntimeError("the previous request does not allow another one on this connection")
        self._state = _IDLE
        self._head = None
        self._reader = None
        self._preamble_checked = False
        self._line_end = -1
        self._line_scan = 0
        self._request_line = None

    def take_rest(self) -> bytes:
        """After ``EndOfMessage`` of a request that switched protocols (a WebSocket handshake): the
        bytes received after it, which belong to the new protocol. The parser is done."""
        if self._state is not _DONE:
            raise RuntimeError(f"take_rest() in state {self._state.value}")
        self._spill()
        rest = bytes(self._buf)
        self._buf = bytearray()
        self._state = _CLOSED
        return rest

    # -- internals ----------------------------------------------------------

    def _read_body(self) -> Event:
        reader = self._reader
        if reader is _NO_BODY:
            self._state = _DONE
            return END_OF_MESSAGE
        assert reader is not None
        chunk = self._chunk
        if chunk is not None:
            if type(reader) is LengthReader:
                return self._read_length_body(reader, chunk)
            self._spill()
        event = reader.read(self._buf)
        if event is None:
            if self._eof:
                raise reader.eof_error()
            return NEED_DATA
        if type(event) is EndOfMessage:
            self._state = _DONE
        return event

    def _spill(self) -> None:
        """Move the held chunk's unread bytes into the buffer (paths that work on the buffer)."""
        chunk = self._chunk
        if chunk is not None:
            self._chunk = None
            self._buf += chunk if self._chunk_pos == 0 else memoryview(chunk)[self._chunk_pos :]

    def _read_length_body(self, reader: LengthReader, chunk: bytes) -> Event:
        """Content-Length body bytes straight from the held chunk: a slice, or the chunk itself."""
        remaining = reader.remaining
        if remaining == 0:
            self._state = _DONE
            return END_OF_MESSAGE
        data = self._take_from_chunk(chunk, remaining)
        reader.remaining = remaining - len(data)
        return BodyData(data)

    def _take_from_chunk(self, chunk: bytes, size: int) -> bytes:
        """The held chunk's next ``size`` bytes (or all it has left), consumed."""
        pos = self._chunk_pos
        end = pos + size
        if end >= len(chunk):
            self._chunk = None
            return chunk if pos == 0 else chunk[pos:]
        self._chunk_pos = end
        return chunk[pos:end]

    def _wait_for_head(self) -> Event:
        if not self._eof:
            return NEED_DATA
        if not self._buf:
            self._state = _CLOSED
            return CONNECTION_CLOSED
        raise IncompleteMessage("Connection closed before the request head was complete")

    def _read_head(self) -> Event:
        limits = self._limits
        chunk = self._chunk
        if chunk is not None:
            if self._line_end == -1 and self._line_scan == 0 and chunk[self._chunk_pos] != _CR:
                head = self._read_whole_head(chunk, self._chunk_pos, limits)
                if head is not None:
                    return head
            self._spill()
        buf = self._buf
        if self._line_end == -1 and self._line_scan == 0 and buf and buf[0] != _CR:
            head = self._read_whole_head(buf, 0, limits)
            if head is not None:
                return head
        if self._line_end == -1:
            if not self._preamble_checked:
                if len(buf) < 2:
                    if not buf or buf[0] == _CR:
                        return self._wait_for_head()
                else:
                    self._preamble_checked = True
                    # RFC 9112 section 2.2: ignore at least one empty line
                    # received before the request-line (we ignore exactly one).
                    if buf[0] == _CR and buf[1] == _LF:
                        del buf[:2]
            limit = limits.max_request_line
            lf = buf.find(b"\n", self._line_scan, limit + 2)
            if lf == -1:
                if len(buf) > limit + 2:
                    raise LimitRequestLine(f"Request line is longer than {limit} bytes")
                self._line_scan = len(buf)
                return self._wait_for_head()
            # RFC 9112 section 2.2: a bare LF is not accepted as a terminator.
            if lf == 0 or buf[lf - 1] != _CR:
                raise InvalidRequestLine("Bare LF in request line")
            if lf - 1 > limit:
                raise LimitRequestLine(f"Request line is longer than {limit} bytes")
            # Validated as soon as it is complete (as Gunicorn does), so a bad
            # request line is reported as such however the bytes were split.
            self._request_line = parse_request_line(bytes(buf[: lf - 1]), limits)
            self._line_end = lf
            if self._fields is None:
                self._fields = FieldSectionScanner(limits)
            self._fields.reset(lf + 1)
        assert self._fields is not None
        end = self._fields.find_end(buf)
        if end == -1:
            return self._wait_for_head()
        request_line = self._request_line
        assert request_line is not None
        raw = take(buf, end)
        return self._start_body(build_request_head(request_line, parse_field_lines(raw[self._line_end + 1 : end - 2], limits), limits))

    def _read_whole_head(self, buf: bytes | bytearray, start: int, limits: Limits) -> RequestHead | None:
        """The usual case, a whole head already received (and nothing scanned yet) from ``start`` of
        the held chunk or of the buffer: the same steps as the incremental path in one go. Anything
        unusual returns None and that path decides, so verdicts never depend on which path ran."""
        if scan_head is not None:
            scanned = scan_head(buf, start, RequestLine, limits.usual_head_caps)
            if scanned is None:
                return None  # not whole yet
            if scanned is not False:
                head_end, request_line, fields = scanned
                if isinstance(buf, bytearray):
                    del buf[:head_end]
                elif head_end >= len(buf):
                    self._chunk = None
                else:
                    self._chunk_pos = head_end
                return self._start_body(build_request_head(request_line, fields, limits))
        end = buf.find(b"\r\n\r\n", start)
        if end == -1:
            return None
        lf = buf.find(b"\n", start, start + limits.max_request_line + 2)
        if lf <= start or buf[lf - 1] != _CR or lf - 1 - start > limits.max_request_line:
            return None
        head_end = end + 4  # end >= lf - 1: the request line holds no LF before ``lf``
        if head_end - (lf + 1) > limits.max_field_section:
            return None
        if isinstance(buf, bytearray):
            raw = take(buf, head_end)
        else:  # the held chunk: consumed by moving the read position
            raw = self._take_from_chunk(buf, head_end - start)
            lf -= start
            end -= start
            head_end -= start
        request_line = parse_request_line(raw[: lf - 1], limits)
        # The section is empty when the request line's CRLF starts the terminator.
        fields = parse_field_lines(raw[lf + 1 : head_end - 2], limits) if end != lf - 1 else []
        return self._start_body(build_request_head(request_line, fields, limits))

    def _start_body(self, head: RequestHead) -> RequestHead:
        if head.chunked:
            self._reader = ChunkedReader(self._limits)
        elif head.content_length:
            length = head.content_length
            limit = self._limits.max_body_size
            if limit and length > limit:
                # RFC 9110 section 15.5.14: refused on the declared length, before the caller sees
                # the head (so before any 100 Continue) and before any body byte is read.
                raise LimitRequestBody(f"Request body of {length} bytes is larger than {limit} bytes")
            self._reader = LengthReader(length)
        else:
            self._reader = _NO_BODY  # no state to keep: shared
        self._head = head
        self._state = _BODY
        return head
