"""The pieces between the event loop and the application: request bodies and response output.

A request body is received whole by the loop before the application runs (so a slow client never
holds an application thread) into a ``SpooledBody``, which moves to a temporary file past a
threshold. A response goes out through the connection's ``LoopOutput``, which only the loop thread
touches: it writes straight to the socket while the kernel takes the bytes, hands the rest to the
transport (whose flow control tells when the client has fallen behind), and sends
``wsgi.file_wrapper`` files with the kernel's sendfile whenever the socket has room. When the app
runs on a pool thread, ``ThreadSink`` is its side of the same output: bytes are handed to the loop,
and the request cycle stops pulling the response while the client is behind, so the thread goes
back to the pool instead of waiting for a slow reader.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import IO, Protocol

from pronghorn.apps.wsgi import BytesBody, ClientDisconnected
from pronghorn.net.tls import TlsStream

SPILL_THRESHOLD = 1 << 20  # request bodies larger than this go to a temporary file
HIGH_WATER = 256 * 1024  # bytes handed from an app thread and not yet written, at which it stops pulling
SENDFILE_BLOCK = 1 << 20
READ_BLOCK = 64 * 1024  # a file sent through the transport (TLS) is read this much at a time
HOLD_LIMIT = 64 * 1024  # whole responses up to this size wait for the end of the loop's pass
# The write() callable pushes bytes; with the app on the loop's own thread nothing can wait for the
# client, so past this many bytes buffered for a client that does not read, it counts as gone.
INLINE_WRITE_LIMIT = 8 << 20


class SpooledBody:
    """A request body received in pieces: in memory or (past ``SPILL_THRESHOLD``) in a temporary file."""

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._chunks: list[bytes] = []
        self._size = 0
        self._file: IO[bytes] | None = None
        self._reader: IO[bytes] | BytesBody = BytesBody(b"")

    @property
    def size(self) -> int:
        return self._size

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        if self._size > SPILL_THRESHOLD:
            import tempfile  # only once a body spills (tempfile pulls in shutil, zlib, bz2, lzma)

            self._file = tempfile.TemporaryFile(dir=self._directory)
            self._file.write(b"".join(self._chunks))
            self._chunks = []

    def finish(self) -> None:
        """All bytes are in: switch to reading."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            self._reader = self._file
        else:
            self._reader = BytesBody(b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0])
            self._chunks = []

    def read(self, size: int) -> bytes:
        return self._reader.read(size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._reader = BytesBody(b"")


class OutputOwner(Protocol):
    """What a ``LoopOutput`` tells its connection."""

    def hold(self) -> None:
        """A whole response is held: flush it once the loop's pass is over."""

    def output_ready(self) -> None:
        """A file send finished (or failed): a response waiting on it may go on."""


class FileSend:
    """A ``wsgi.file_wrapper`` file being sent with sendfile."""

    __slots__ = ("file", "offset", "count", "watched")

    def __init__(self, file: IO[bytes], offset: int, count: int) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self.watched = -1  # a duplicate of the socket watched for room, while the kernel's buffer is full


class LoopOutput:
    """One connection's output, used on the loop thread only; it is also the response sink when the
    app runs inline (``threads == 1``).

    Small whole responses are held until the loop has handled every connection that was ready, then
    written together (``flush``): under load one pass answers many connections, and each client is
    woken once per batch. Everything else is written at once: straight to the socket while the
    transport holds nothing (the usual case, no copy kept), else to the transport, which buffers and
    pauses us (``paused``) past its high-water mark. The loop never waits for a client.
    """

    __slots__ = (
        "_loop", "_transport", "_fileno", "_tls", "_direct", "_owner", "_held", "_held_size", "paused", "lost", "file",
        "_after_file",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, fileno: int, owner: OutputOwner, *,
        direct: bool = True, tls: TlsStream | None = None,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._fileno = fileno  # the socket (direct writes, sendfile); -1: none
        self._tls = tls  # everything written is encrypted by it first (and files are read, not sendfile'd)
        self._direct = direct and fileno >= 0  # write straight to the socket while it takes the bytes
        self._owner = owner
        self._held: list[bytes] | None = None  # (one per idle connection: nothing allocated until used)
        self._held_size = 0
        self.paused = False  # the transport's buffer is past its high-water mark
        self.lost = False
        self.file: FileSend | None = None
        self._after_file: list[bytes] = []  # written while a file is being sent: they follow it

    # --- ResponseSink (inline) ---

    def ready(self) -> bool:
        if self.lost:
            raise ClientDisconnected("connection closed by the client")
        return not self.paused and self.file is None

    def wait_for_room(self) -> None:
        if self.lost or self._transport.get_write_buffer_size() > INLINE_WRITE_LIMIT:
            raise ClientDisconnected("the client does not read what the write() callable sends")

    def write(self, data: bytes) -> None:
        if self._held is not None:
            self.flush()
        self._send(data)

    def write_parts(self, parts: list[bytes]) -> None:
        if self._held is not None:
            self.flush()
        self._send_parts(parts)

    def write_last(self, parts: list[bytes]) -> None:
        """A response's final bytes: a small whole response is held with the others of this pass."""
        if len(parts) == 1:
            data = parts[0]
            if self._held_size + len(data) <= HOLD_LIMIT and self.file is None:
                if self._held is None:
                    self._held = [data]
                    self._owner.hold()
                else:
                    self._held.append(data)
                self._held_size += len(data)
                return
            self.write(data)
        else:
            self.write_parts(parts)

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        if self._held is not None:
            self.flush()
        if self.lost:
            raise ClientDisconnected("connection closed by the client")
        self.file = FileSend(file, offset, count)
        self._send_file()

    def resume(self) -> None:
        """The transport drained: a file read through it goes on."""
        if self.file is not None and (self._fileno < 0 or self._tls is not None):
            self._send_file()

    # --- the loop's side ---

    def flush(self) -> None:
        """Write what is held (quietly nothing if the client is gone)."""
        held = self._held
        if held is not None:
            self._held = None
            self._held_size = 0
            if not self.lost:
                try:
                    self._send(held[0] if len(held) == 1 else b"".join(held))
                except ClientDisconnected:
                    pass

    def lose(self) -> None:
        """The connection is gone: drop what waits, stop a file send."""
        self.lost = True
        self._held = None
        self._held_size = 0
        self._after_file = []
        if self.file is not None:
            self._end_file()

    def _send(self, data: bytes | memoryview) -> None:
        if self.file is not None:
            self._after_file.append(bytes(data))
            return
        if self._tls is not None:
            data = self._tls.encrypt(data)
        self.send_raw(data)

    def send_raw(self, data: bytes | memoryview) -> None:
        """Bytes as they go on the wire, after anything written before them."""
        transport = self._transport
        if transport.is_closing():
            raise ClientDisconnected("connection closed")
        if self._direct and not transport.get_write_buffer_size():
            try:
                sent = os.write(self._fileno, data)  # the usual case: the kernel takes it all at once
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise ClientDisconnected(str(exc)) from exc
            if sent == len(data):
                return
            if sent:
                data = memoryview(data)[sent:]
        transport.write(data)

    def _send_parts(self, parts: list[bytes]) -> None:
        """Several pieces in one ``writev`` (a large body is sent from where it is, not copied)."""
        if self.file is not None:
            self._after_file.extend(parts)
            return
        if self._tls is not None:
            self.send_raw(self._tls.encrypt_parts(parts))
            return
        transport = self._transport
        if transport.is_closing():
            raise ClientDisconnected("connection closed")
        if not self._direct or transport.get_write_buffer_size():
            transport.writelines(parts)
            return
        try:
            sent = os.writev(self._fileno, parts)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from exc
        rest: list[bytes | memoryview] = []
        for part in parts:
            if sent >= len(part):
                sent -= len(part)
            elif sent:
                rest.append(memoryview(part)[sent:])
                sent = 0
            else:
                rest.append(part)
        if rest:
            transport.writelines(rest)

    def _send_file(self) -> None:
        """Send the file while the socket takes it; when it is full, wait for room without blocking."""
        send = self.file
        assert send is not None
        if self._fileno < 0 or self._tls is not None:
            self._read_file_through_transport(send)
            return
        if self._transport.get_write_buffer_size():
            self._watch_for_room(send)  # what the transport holds goes first
            return
        source = send.file.fileno()
        while send.count > 0:
            try:
                sent = os.sendfile(self._fileno, source, send.offset, min(send.count, SENDFILE_BLOCK))
            except BlockingIOError:
                self._watch_for_room(send)
                return
            except OSError:
                self.lost = True  # the transport notices too, and closes
                self._end_file()
                return
            if sent == 0:
                break  # the file is shorter than it was: the response ends short
            send.offset += sent
            send.count -= sent
        self._end_file()

    def _read_file_through_transport(self, send: FileSend) -> None:
        """Without sendfile (TLS): a block at a time, while the transport is not paused (``resume``)."""
        transport = self._transport
        while send.count > 0 and not self.paused:
            if transport.is_closing():
                self.lost = True
                break
            send.file.seek(send.offset)
            data = send.file.read(min(send.count, READ_BLOCK))
            if not data:
                break  # the file is shorter than it was: the response ends short
            send.offset += len(data)
            send.count -= len(data)
            transport.write(self._tls.encrypt(data) if self._tls is not None else data)
        else:
            if send.count > 0:
                return  # paused: resume() goes on
        self._end_file()

    def _watch_for_room(self, send: FileSend) -> None:
        # The transport owns the socket's descriptor in the loop: watch a duplicate of it.
        if send.watched < 0:
            send.watched = os.dup(self._fileno)
            self._loop.add_writer(send.watched, self._send_file)

    def _end_file(self) -> None:
        send = self.file
        assert send is not None
        self.file = None
        if send.watched >= 0:
            self._loop.remove_writer(send.watched)
            os.close(send.watched)
        after, self._after_file = self._after_file, []
        if after and not self.lost:
            try:
                self._send_parts(after)
            except ClientDisconnected:
                self.lost = True
        self._owner.output_ready()


class ThreadSink:
    """The response sink of a request running on a pool thread: the thread hands bytes to the loop,
    which writes them through the connection's ``LoopOutput``.

    ``ready()`` is False while the client is behind: bytes handed over and not yet written pass
    ``HIGH_WATER`` (a thread producing faster than the loop runs its callbacks), the transport is
    paused, or a file is being sent. The request cycle then stops pulling and the thread returns to
    the pool; the loop resumes the response on a pool thread once the client has caught up.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, output: LoopOutput, stall_timeout: float) -> None:
        self.loop = loop
        self.output = output
        self.stall_timeout = stall_timeout or None
        self.started = False  # some of the response was handed over (a timeout can no longer answer 504)
        # Bytes handed to the loop and bytes it wrote: one writer each (the thread, the loop), so
        # neither update can be lost between threads; their difference is what is queued.
        self.handed = 0
        self.written = 0
        self.file_pending = False
        self.final: list[bytes] = []  # the response's last bytes: the loop writes them after the request
        self.cancelled = False
        self._room: threading.Condition | None = None  # made when the write() callable first waits

    def ready(self) -> bool:
        output = self.output
        if self.cancelled or output.lost:
            raise ClientDisconnected("connection closed by the client")
        return not output.paused and not self.file_pending and self.handed - self.written <= HIGH_WATER

    def wait_for_room(self) -> None:
        """The write() callable: wait for the client to take what is queued, at most ``timeout`` s."""
        if self.ready():
            return
        if self._room is None:
            self._room = threading.Condition()
        deadline = time.monotonic() + self.stall_timeout if self.stall_timeout else None
        with self._room:
            while not self.ready():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ClientDisconnected("timed out waiting for the client to read")
                # Woken by the loop when the client catches up (``wake``); the timeout re-checks anyway.
                self._room.wait(min(remaining, 0.1) if remaining is not None else 0.1)

    def write(self, data: bytes) -> None:
        self._hand_over([data], len(data))

    def write_parts(self, parts: list[bytes]) -> None:
        self._hand_over(parts, sum(len(part) for part in parts))

    def write_last(self, parts: list[bytes]) -> None:
        """The response's final bytes go back with the finished request (one wake-up of the loop for
        both), after everything written before. Not sent yet: a timeout may still answer 504."""
        if self.cancelled or self.output.lost:
            raise ClientDisconnected("connection closed by the client")
        self.final = parts

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        """The loop sends the file; the request cycle waits (without this thread) until it is out."""
        if self.cancelled:
            raise ClientDisconnected("connection closed by the client")
        self.started = True
        self.file_pending = True
        self.loop.call_soon_threadsafe(self._sendfile, file, offset, count)

    def take_over(self) -> bool:
        """From the loop: stop the application's output. True if none of it was sent yet."""
        self.cancelled = True
        self.wake()
        return not self.started

    def wake(self) -> None:
        room = self._room
        if room is not None:
            with room:
                room.notify_all()

    def _hand_over(self, parts: list[bytes], size: int) -> None:
        if self.cancelled:
            raise ClientDisconnected("connection closed by the client")
        self.started = True
        self.handed += size
        self.loop.call_soon_threadsafe(self._write, parts, size)

    def _write(self, parts: list[bytes], size: int) -> None:  # on the loop thread
        self.written += size
        if not self.cancelled and not self.output.lost:
            try:
                if len(parts) == 1:
                    self.output.write(parts[0])
                else:
                    self.output.write_parts(parts)
            except ClientDisconnected:
                self.output.lost = True

    def _sendfile(self, file: IO[bytes], offset: int, count: int) -> None:  # on the loop thread
        if self.cancelled or self.output.lost:
            self.file_pending = False
            return
        try:
            self.output.sendfile(file, offset, count)
        except ClientDisconnected:
            self.output.lost = True
            self.file_pending = False
