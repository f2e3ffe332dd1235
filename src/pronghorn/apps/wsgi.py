"""The WSGI side of a request (PEP 3333): the environ, ``wsgi.input`` and ``start_response``.

Nothing here owns a socket: the body comes from a ``BodySource`` and response bytes go to a
``ResponseSink``, so every worker class shares this code through ``RequestCycle``.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Protocol

from pronghorn.http import (
    NEED_DATA,
    BodyData,
    EndOfMessage,
    ProtocolError,
    RequestParser,
    ResponseFramer,
    error_response,
    parse_status,
)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Up to this many body bytes, the head and the body are joined into one write (one TCP segment);
# a larger block goes out as separate pieces (writev) so the body is never copied.
COALESCE_LIMIT = 64 * 1024


class BodySource(Protocol):
    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the request body (at least 1 unless the body has ended)."""


class _NoBody:
    """The body of a request that has none (most requests): nothing to allocate, read or close."""

    def read(self, size: int) -> bytes:
        return b""


NO_BODY = _NoBody()


class BytesBody:
    """A body received whole into memory: a read of all of it hands over the bytes themselves."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def read(self, size: int) -> bytes:
        offset = self._offset
        if offset == 0 and size >= len(self._data):
            data, self._data = self._data, b""
            return data
        data = self._data[offset : offset + size]
        self._offset = offset + len(data)
        return data

    def finish(self) -> None:
        """Nothing to do: the body was whole from the start (see ``SpooledBody.finish``)."""

    def close(self) -> None:
        self._data = b""


class ResponseSink(Protocol):
    """Where a response's bytes go. The request cycle pulls the next item of a response iterable only
    while ``ready()``; what it writes then is taken whole (a sink never waits in ``write``)."""

    def ready(self) -> bool:
        """True while the client takes what is written (False: the response waits for it)."""

    def wait_for_room(self) -> None:
        """For the ``write()`` callable, whose bytes the app pushes: wait, bounded, for the client to
        take what is queued (or raise ``ClientDisconnected``)."""

    def write(self, data: bytes) -> None:
        """Send bytes to the client (all of them, or raise ``OSError``)."""

    def write_parts(self, parts: list[bytes]) -> None:
        """Send the pieces in order without joining them (``writev`` where the sink can)."""

    def write_last(self, parts: list[bytes]) -> None:
        """The response's final pieces; a sink may send them a little later (with the finished request)."""

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` (the kernel's sendfile where it can)."""


class ParserBody:
    """The body of the current request, pulled from the parser, reading the socket when needed."""

    def __init__(self, parser: RequestParser, recv: Callable[[], bytes]) -> None:
        self._parser = parser
        self._recv = recv
        self._pending = b""
        self.finished = False
        self._error: ProtocolError | ClientDisconnected | None = None

    @property
    def broken(self) -> bool:
        """Reading failed (malformed body, client gone): there is nothing more to read."""
        return self._error is not None

    def read(self, size: int) -> bytes:
        while not self._pending and not self.finished:
            if self._error is not None:
                raise self._error
            try:
                event = self._parser.next_event()
            except ProtocolError as bad:
                self._error = bad
                raise
            if event is NEED_DATA:
                try:
                    data = self._recv()
                except OSError as exc:  # includes timeouts: the client stopped sending
                    self._error = ClientDisconnected(f"reading the request body: {exc}")
                    raise self._error from exc
                self._parser.feed(data)
            elif isinstance(event, BodyData):
                self._pending = event.data
            elif isinstance(event, EndOfMessage):
                self.finished = True
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def drain(self, limit: int) -> bool:
        """Read and discard the rest of the body, up to ``limit`` bytes; True if it ended."""
        while not self.finished and limit > 0:
            limit -= len(self.read(limit))
        return self.finished


class InputStream:
    """``wsgi.input``: never reads past the body; ``on_first_read`` sends ``100 Continue``."""

    def __init__(self, source: BodySource, on_first_read: Callable[[], None] | None = None) -> None:
        self._source = source
        self._on_first_read = on_first_read
        self._buffer = b""
        self._eof = False

    def _fill(self, size: int) -> bytes:
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()
        if self._eof:
            return b""
        data = self._source.read(size)
        if not data:
            self._eof = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while chunk := self._fill(65536):
                parts.append(chunk)
            return b"".join(parts)
        if not self._buffer and size > 0:
            chunk = self._fill(max(size, 8192))
            if len(chunk) == size or not chunk:
                return chunk  # the usual read: handed over as it came, not copied
            self._buffer = chunk
        while len(self._buffer) < size:
            chunk = self._fill(max(size - len(self._buffer), 8192))
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit is None or end < limit):
                cut = end + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                cut = limit
                break
            chunk = self._fill(8192)
            if not chunk:
                cut = len(self._buffer) if limit is None else min(limit, len(self._buffer))
                break
            self._buffer += chunk
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _is_regular_file(mode: int) -> bool:
    return stat_module.S_ISREG(mode)


class FileWrapper:
    """``wsgi.file_wrapper``: a file body the server may send with sendfile, or else iterate."""

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        while data := self.filelike.read(self.blksize):
            yield data


class ClientDisconnected(Exception):
    """Sending to the client failed: it went away. Nothing more can be sent on this connection."""


class Response:
    """``start_response`` and the body of one response, framed by the HTTP core."""

    def __init__(self, framer: ResponseFramer, sink: ResponseSink) -> None:
        self.framer = framer
        self.sink = sink
        self.status: str | None = None
        self.status_code = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.error_body_size = 0
        self.failed = False  # the connection must not be reused

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"status must be a str, not {type(status).__name__}")
        self.status_code, self.reason = parse_status(status)
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header names and values must be str: {name!r}: {value!r}")
        self.status = status
        self.headers = list(headers)
        return self.write_from_app

    def write_from_app(self, data: bytes) -> None:
        """The ``write()`` callable of PEP 3333. Items of a response iterable are pulled only when the
        client can take more; these the app pushes, so this is the one place that waits for the client
        (the sink bounds the wait)."""
        self.sink.wait_for_room()
        self.write(data)

    def _head(self) -> bytes:
        if self.status is None:
            raise AssertionError("the application sent a body before calling start_response()")
        head = self.framer.head(self.status_code, self.reason, self.headers)
        self.headers_sent = True
        return head

    def write(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"the application must produce bytes, not {type(data).__name__}")
        if not self.headers_sent:
            # The head goes out with the first block: one write, one TCP segment.
            head = self._head()
            body = self.framer.body(bytes(data))
            if len(body) <= COALESCE_LIMIT:
                self.send(head + body)
            else:
                self.send_parts([head, body])
            return
        framed = self.framer.body(bytes(data))
        if framed:
            self.send(framed)

    def write_whole(self, result: object) -> bool:
        """The most common body, a list of one ``bytes`` block: head, body and end in one write.
        False (nothing sent) for any other body, which is then iterated."""
        if type(result) is not list or len(result) != 1 or self.headers_sent or self.status is None:
            return False
        block = result[0]
        if type(block) is not bytes:
            return False
        framer = self.framer
        head = framer.head(self.status_code, self.reason, self.headers)
        self.headers_sent = True
        body = framer.body(block)
        if len(body) <= COALESCE_LIMIT:
            self.send(head + body + framer.end(), last=True)
        else:  # joined, a large body would be copied whole: the pieces go out as they are
            tail = framer.end()
            self.send_parts([head, body, tail] if tail else [head, body], last=True)
        return True

    def finish(self) -> None:
        if not self.headers_sent:
            self.send(self._head() + self.framer.end(), last=True)
            return
        tail = self.framer.end()
        if tail:
            self.send(tail, last=True)

    def send(self, data: bytes, last: bool = False) -> None:
        """Write to the client; a failure means it is gone (never confused with app errors).
        ``last``: the response's final bytes, which the sink may send later (``write_last``)."""
        try:
            if last:
                self.sink.write_last([data])
            else:
                self.sink.write(data)
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from exc

    def send_parts(self, parts: list[bytes], last: bool = False) -> None:
        """``send()`` for pieces that would be costly to join (``writev`` where the sink has it)."""
        try:
            if last:
                self.sink.write_last(parts)
            else:
                self.sink.write_parts(parts)
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from exc

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a ``wsgi.file_wrapper`` body with sendfile; False if the file cannot be sent that way."""
        filelike = wrapper.filelike
        try:
            fileno = filelike.fileno()
            # PEP 3333: sending starts at the file's current position. A buffered file's tell()
            # accounts for its read-ahead; the descriptor's own offset (lseek) can be past it.
            tell = getattr(filelike, "tell", None)
            offset = tell() if tell is not None else os.lseek(fileno, 0, os.SEEK_CUR)
            stat = os.fstat(fileno)
        except (AttributeError, OSError, ValueError):
            return False
        if not isinstance(offset, int) or not _is_regular_file(stat.st_mode):
            return False
        head = b"" if self.headers_sent else self._head()
        prefix, count, suffix = self.framer.file_frame(stat.st_size - offset)
        if head or prefix:
            self.send(head + prefix)
        if count:
            try:
                self.sink.sendfile(wrapper.filelike, offset, count)
            except OSError as exc:
                raise ClientDisconnected(str(exc)) from exc
        if suffix:
            self.send(suffix)
        return True

    def early_hints(self, headers: list[tuple[str, str]]) -> None:
        """``wsgi.early_hints``: a 103 response, on HTTP/1.1 and only before the final head."""
        if self.headers_sent or not self.framer.informational_allowed or not headers:
            return
        self.send(self.framer.informational(103, "Early Hints", headers))

    def send_error(self, status_code: int, reason: str, message: str) -> None:
        """Answer with an error page instead of the app's response (nothing may have been sent yet)."""
        self.status = f"{status_code} {reason}"
        self.status_code = status_code
        self.headers = []
        payload = error_response(status_code, reason, message)
        self.error_body_size = len(payload) - payload.index(b"\r\n\r\n") - 4
        self.headers_sent = True
        try:
            self.sink.write(payload)
        except OSError:
            self.failed = True

    @property
    def sent(self) -> int:
        """Body bytes sent (the access log's ``%(b)s``)."""
        return self.framer.bytes_sent or self.error_body_size

    @property
    def keep_alive(self) -> bool:
        return bool(self.framer.keep_alive) and not self.failed
