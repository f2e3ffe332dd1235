"""Request body readers (RFC 9112 sections 6 and 7).

A reader consumes bytes from the front of the parser's buffer and returns the
next :class:`BodyData` / :class:`EndOfMessage`, or ``None`` when it needs more
bytes (the parser turns that into ``NEED_DATA`` or, at EOF, into
``IncompleteMessage``).  Data is handed out in the largest slice available:
one copy out of the buffer, no per-byte work.

Chunked framing (RFC 9112 section 7.1) is a small loop over four states::

    SIZE --(n > 0)--> DATA --(n bytes)--> DATA_CRLF --(CRLF)--> SIZE
    SIZE --(n == 0)--> TRAILERS --(field section)--> DONE

The body limit (``Limits.max_body_size``) is checked on each chunk's declared
size, before any of its data is handed out: a body that would cross it is
refused with 413 and no byte past the limit ever leaves the reader.
(Content-Length bodies are checked by the parser on the head.)
"""

from __future__ import annotations

import enum
import re
from typing import Final

from .errors import (
    ChunkMissingTerminator,
    IncompleteMessage,
    InvalidChunkExtension,
    InvalidChunkSize,
    LimitRequestBody,
    ProtocolError,
    show,
)
from .events import END_OF_MESSAGE, BodyData, EndOfMessage
from .fields import FieldSectionScanner, parse_field_lines
from .grammar import HEXDIG, OWS
from .limits import Limits

# RFC 9112 section 7.1.1:
#   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#   chunk-ext-name = token ; chunk-ext-val = token / quoted-string
# RFC 9110 section 5.6.4: quoted-string, qdtext, quoted-pair; obs-text = %x80-FF.
_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT: Final = re.compile(
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
# 16 hex digits already describe 2**64-1 bytes; more significant digits are junk.
MAX_CHUNK_SIZE_DIGITS: Final = 16
_CR: Final = 0x0D


def take(buf: bytearray, size: int) -> bytes:
    """Remove and return the first ``size`` bytes of ``buf`` (one copy)."""
    if size >= len(buf):
        data = bytes(buf)
        buf.clear()
        return data
    with memoryview(buf) as view:
        data = bytes(view[:size])
    del buf[:size]
    return data


class LengthReader:
    """Content-Length framing: exactly ``length`` bytes (RFC 9112 section 6.2)."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def eof_error(self) -> ProtocolError:
        """The error for EOF before the body is complete: no response, just close."""
        return IncompleteMessage("Connection closed before the request body was complete")

    def read(self, buf: bytearray) -> BodyData | EndOfMessage | None:
        remaining = self.remaining
        if remaining == 0:
            return END_OF_MESSAGE
        if not buf:
            return None
        data = take(buf, remaining)
        self.remaining = remaining - len(data)
        return BodyData(data)


class _Chunk(enum.Enum):
    SIZE = enum.auto()
    DATA = enum.auto()
    DATA_CRLF = enum.auto()
    TRAILERS = enum.auto()
    DONE = enum.auto()


# Module constants: an enum member looked up through its class costs ~50 ns (once per chunk).
_CHUNK_SIZE: Final = _Chunk.SIZE
_CHUNK_DATA: Final = _Chunk.DATA
_CHUNK_DATA_CRLF: Final = _Chunk.DATA_CRLF
_CHUNK_TRAILERS: Final = _Chunk.TRAILERS
_CHUNK_DONE: Final = _Chunk.DONE


class ChunkedReader:
    """Chunked framing with extensions and a trailer section (RFC 9112 section 7.1)."""

    __slots__ = ("_limits", "_state", "_remaining", "_declared", "_scan", "_trailers")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._state = _CHUNK_SIZE
        self._remaining = 0
        self._declared = 0  # the sizes of all chunks so far: the body's length once they are read
        self._scan = 0  # where the search for the size line's LF resumes
        self._trailers = FieldSectionScanner(limits)

    def eof_error(self) -> ProtocolError:
        """The error for EOF before the body is complete.

        Gunicorn (26.1) answers EOF where a chunk's CRLF or the trailer
        section's final CRLF is due with ChunkMissingTerminator (400); EOF
        anywhere else in the body is a plain incomplete message (no response).
        """
        if self._state is _CHUNK_DATA_CRLF:
            return ChunkMissingTerminator("Connection closed before the CRLF after chunk data")
        if self._state is _CHUNK_TRAILERS:
            return ChunkMissingTerminator("Connection closed before the end of the trailer section")
        return IncompleteMessage("Connection closed before the request body was complete")

    def read(self, buf: bytearray) -> BodyData | EndOfMessage | None:
        while True:
            state = self._state
            if state is _CHUNK_DATA:
                if not buf:
                    return None
                data = take(buf, self._remaining)
                self._remaining -= len(data)
                if self._remaining == 0:
                    self._state = _CHUNK_DATA_CRLF
                return BodyData(data)
            if state is _CHUNK_SIZE:
                if not self._read_size_line(buf):
                    return None
            elif state is _CHUNK_DATA_CRLF:
                # RFC 9112 section 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
                if len(buf) < 2:
                    if buf and buf[0] != _CR:
                        raise ChunkMissingTerminator(f"Chunk data not followed by CRLF: {show(bytes(buf))}")
                    return None
                if buf[0] != _CR or buf[1] != 0x0A:
                    raise ChunkMissingTerminator(f"Chunk data not followed by CRLF: {show(bytes(buf[:8]))}")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state is _CHUNK_TRAILERS:
                # RFC 9112 section 7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
                end = self._trailers.find_end(buf)
                if end == -1:
                    return None
                block = take(buf, end)[:-2]
                trailers = parse_field_lines(block, self._limits, trailers=True)
                self._state = _CHUNK_DONE
                return EndOfMessage(tuple(trailers))
            else:
                return END_OF_MESSAGE

    def _read_size_line(self, buf: bytearray) -> bool:
        # Gunicorn: the size line (chunk-ext included) is capped at
        # limit_request_field_size bytes before its CRLF.  The search never
        # looks past where that CRLF must be, so buffered chunk data is not scanned.
        limit = self._limits.max_header_field_size
        lf = buf.find(b"\n", self._scan, limit + 2)
        if lf == -1:
            # Only once even a final CR could not save the line (limit + 1
            # bytes without LF means a line of at least limit + 1 bytes): the
            # verdict must not depend on how the bytes were split.
            if len(buf) > limit + 1:
                raise InvalidChunkSize("Chunk size line too long")
            self._scan = len(buf)
            return False
        if lf == 0 or buf[lf - 1] != _CR:
            raise InvalidChunkSize("Chunk size line not terminated by CRLF")
        if lf - 1 > limit:
            raise InvalidChunkSize("Chunk size line too long")
        line = take(buf, lf + 1)[:-2]
        self._scan = 0
        size = self._parse_size_line(line)
        if size == 0:
            self._state = _CHUNK_TRAILERS
        else:
            declared = self._declared + size
            limit = self._limits.max_body_size
            if limit and declared > limit:
                # RFC 9110 section 15.5.14: refused before this chunk's data is handed out.
                raise LimitRequestBody(f"Chunked request body is larger than {limit} bytes")
            self._declared = declared
            self._remaining = size
            self._state = _CHUNK_DATA
        return True

    def _parse_size_line(self, line: bytes) -> int:
        # RFC 9112 section 7.1: chunk-size = 1*HEXDIG (no sign, no "0x", no "_").
        rest = line.lstrip(HEXDIG)
        digits = line[: len(line) - len(rest)]
        if not digits:
            raise InvalidChunkSize(f"Invalid chunk size {show(line)}")
        if len(digits.lstrip(b"0")) > MAX_CHUNK_SIZE_DIGITS:  # explicit set: b"0"
            raise InvalidChunkSize(f"Chunk size too large {show(digits)}")
        size = int(digits, 16)  # bytes checked against HEXDIG above
        if rest:
            # Only BWS may sit between the size and ";" (RFC 9112 section 7.1.1);
            # trailing whitespace without an extension is invalid.
            after_ws = rest.lstrip(OWS)
            if not after_ws or after_ws[0] != 0x3B:
                raise InvalidChunkSize(f"Invalid chunk size {show(line)}")
            if len(rest) > self._limits.max_chunk_extension:
                raise InvalidChunkExtension("Chunk extension too long")
            if 0x0D in rest:  # CR as an int (a bytes needle costs a TypeError inside)
                raise InvalidChunkExtension("Bare CR in chunk extension")
            if _CHUNK_EXT.fullmatch(rest) is None:
                raise InvalidChunkExtension(f"Invalid chunk extension {show(rest)}")
        return size
