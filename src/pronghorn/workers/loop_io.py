"""The pieces between the event loop and the application: request bodies and response sinks.

A request body is received whole by the loop before the application runs (so a slow client never
holds an application thread) into a ``SpooledBody``, which moves to a temporary file past a
threshold. A response goes back through a sink: ``DirectSink`` writes straight to the socket
when the application runs on the loop thread; ``ThreadSink`` hands bytes over from a pool thread
and makes that thread wait while the transport holds more than its high-water mark, so memory stays
bounded however fast the application produces. Both send ``wsgi.file_wrapper`` files with the
kernel's sendfile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import select
import threading
from collections.abc import Callable
from typing import IO, Protocol

from pronghorn.apps.wsgi import BytesBody, ClientDisconnected

SPILL_THRESHOLD = 1 << 20  # request bodies larger than this go to a temporary file
HIGH_WATER = 256 * 1024  # transport buffer size at which a producing app thread waits
SENDFILE_BLOCK = 1 << 20
HOLD_LIMIT = 64 * 1024  # inline responses up to this size wait for the end of the loop's pass


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


class FlowControl:
    """Transport flow control as seen from the application's side (shared by the sinks)."""

    def __init__(self) -> None:
        self.paused = False
        self.lost = False
        self.condition = threading.Condition()

    def pause(self) -> None:
        with self.condition:
            self.paused = True

    def resume(self) -> None:
        with self.condition:
            self.paused = False
            self.condition.notify_all()

    def lose(self) -> None:
        with self.condition:
            self.lost = True
            self.condition.notify_all()


def sendfile_to(
    fileno: int, file: IO[bytes], offset: int, count: int, wait_writable: Callable[[], None]
) -> None:
    """Send ``count`` bytes of ``file`` from ``offset`` with the kernel's sendfile, waiting (through
    ``wait_writable``) whenever the socket is full."""
    source = file.fileno()
    while count > 0:
        try:
            sent = os.sendfile(fileno, source, offset, min(count, SENDFILE_BLOCK))
        except BlockingIOError:
            wait_writable()
            continue
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from exc
        if sent == 0:
            break
        offset += sent
        count -= sent


class HoldingConnection(Protocol):
    def hold(self) -> None:
        """A response is held: have the loop flush it once this pass is over."""


class DirectSink:
    """Writes from the loop thread itself (the application runs inline when ``threads == 1``).

    Small responses are held until the loop has handled every connection that was ready, then
    written (``flush``): under load one pass of the loop answers many connections, and writing
    their responses together wakes each client once per batch instead of switching to it after
    every response. Anything larger than ``HOLD_LIMIT`` goes straight to the socket, after what
    is held: when the kernel takes it all (the usual case) nothing is buffered at all. When a
    client reads slower than the response is produced, the loop thread waits for the socket (at
    most ``timeout`` seconds a step) rather than buffering without limit; applications that
    stream large bodies to slow clients should run with ``threads > 1``.
    """

    __slots__ = ("fileno", "timeout", "_owner", "_held", "_held_size")

    def __init__(self, fileno: int, timeout: float, owner: HoldingConnection) -> None:
        self.fileno = fileno
        self.timeout = timeout or None
        self._owner = owner  # its ``hold()`` asks the loop to call flush() once this pass is over
        self._held: list[bytes] | None = None  # (one per idle connection: nothing allocated until used)
        self._held_size = 0

    def write(self, data: bytes) -> None:
        if self._held_size + len(data) <= HOLD_LIMIT:
            if self._held is None:
                self._held = [data]
                self._owner.hold()
            else:
                self._held.append(data)
            self._held_size += len(data)
            return
        self.flush()
        self._write(data)

    def flush(self) -> None:
        """Write what is held (``ClientDisconnected`` if the client is gone)."""
        held = self._held
        if held is not None:
            self._held = None
            self._held_size = 0
            self._write(held[0] if len(held) == 1 else b"".join(held))

    def discard(self) -> None:
        self._held = None
        self._held_size = 0

    def _write(self, data: bytes) -> None:
        try:
            sent = os.write(self.fileno, data)  # the usual case: the kernel takes it all at once
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from exc
        if sent < len(data):
            self._send_views([memoryview(data)[sent:]])

    def write_parts(self, parts: list[bytes]) -> None:
        """Several pieces in one ``writev`` (a large body is sent from where it is, not copied)."""
        self.flush()  # what is held goes first
        self._send_views([memoryview(part) for part in parts if part])

    def write_last(self, parts: list[bytes]) -> None:
        if len(parts) == 1:
            self.write(parts[0])  # a small one is held with the other responses of this pass
        else:
            self.write_parts(parts)

    def _send_views(self, views: list[memoryview]) -> None:
        """Send every byte of ``views``, waiting (bounded) while the socket is full."""
        while views:
            try:
                sent = os.writev(self.fileno, views)
            except BlockingIOError:
                self._wait_writable()
                continue
            except OSError as exc:
                raise ClientDisconnected(str(exc)) from exc
            while sent:
                size = views[0].nbytes
                if sent < size:
                    views[0] = views[0][sent:]
                    break
                sent -= size
                del views[0]

    def _wait_writable(self) -> None:
        _, writable, _ = select.select([], [self.fileno], [], self.timeout)
        if not writable:
            raise ClientDisconnected("timed out writing to the client")

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        self.flush()
        sendfile_to(self.fileno, file, offset, count, self._wait_writable)


class AppThreads:
    """Up to ``count`` application threads, started as needed, fed by one queue. Lighter than a
    ThreadPoolExecutor driven through run_in_executor (no future per call, no done-callback chain):
    the called function hands its result to the loop itself, and its thread goes straight back to
    waiting, so the loop it wakes does not wait for the GIL meanwhile."""

    def __init__(self, count: int, name: str) -> None:
        self.count = count
        self.name = name
        self.queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[object, ...]] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, busy: int, fn: Callable[..., None], *args: object) -> None:
        """Queue a call; ``busy`` counts the calls queued or running, this one included."""
        if len(self.threads) < min(busy, self.count):
            thread = threading.Thread(target=self._run, name=f"{self.name}_{len(self.threads)}", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.queue.put((fn, args))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            item[0](*item[1])
            del item

    def shutdown(self) -> None:
        """Queued calls are dropped; threads end once their current call returns."""
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self.queue.put(None)


class ThreadSink:
    """Writes from a pool thread: the loop does the I/O, the thread waits while the buffer is full.

    "Full" counts the bytes handed to the loop but not yet given to the transport, as well as the
    transport's own buffer (``FlowControl.paused``): a thread producing faster than the loop runs
    its callbacks would otherwise queue any amount of memory before the transport pauses it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.WriteTransport, flow: FlowControl) -> None:
        self.loop = loop
        self.transport = transport
        self.flow = flow
        self.started = False
        self.queued = 0  # bytes scheduled on the loop, not yet written to the transport
        self.final: list[bytes] = []  # the response's last bytes: the loop writes them after the request
        # sendfile needs the plain socket; a TLS transport gets the file's bytes through write().
        self.socket = transport.get_extra_info("socket") if transport.get_extra_info("sslcontext") is None else None

    def write(self, data: bytes) -> None:
        self._reserve(len(data))
        self.loop.call_soon_threadsafe(self._write, data)

    def write_parts(self, parts: list[bytes]) -> None:
        """Several pieces at once; the transport's ``writelines`` keeps them as they are (uvloop: writev)."""
        size = sum(len(part) for part in parts)
        self._reserve(size)
        self.loop.call_soon_threadsafe(self._write_parts, parts, size)

    def _reserve(self, size: int) -> None:
        """Wait while the client reads too slowly (bounded buffering), then count ``size`` bytes queued."""
        flow = self.flow
        with flow.condition:
            while (flow.paused or self.queued > HIGH_WATER) and not flow.lost:
                flow.condition.wait(1.0)
            if flow.lost:
                raise ClientDisconnected("connection closed by the client")
            self.started = True
            self.queued += size

    def write_last(self, parts: list[bytes]) -> None:
        """The response's final bytes go back with the finished request (one wake-up of the loop for
        both), after everything written before. Not sent yet: a timeout may still answer 504."""
        if self.flow.lost:
            raise ClientDisconnected("connection closed by the client")
        self.final = parts

    def take_over(self) -> bool:
        """From the loop: stop the application's output. True if none of it was sent yet."""
        with self.flow.condition:
            self.flow.lost = True
            self.flow.condition.notify_all()
            return not self.started

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)  # may pause writing (``flow.paused``) before the thread wakes
        with self.flow.condition:
            self.queued -= len(data)
            self.flow.condition.notify_all()

    def _write_parts(self, parts: list[bytes], size: int) -> None:
        if not self.transport.is_closing():
            self.transport.writelines(parts)
        with self.flow.condition:
            self.queued -= size
            self.flow.condition.notify_all()

    def sendfile(self, file: IO[bytes], offset: int, count: int) -> None:
        """The kernel's sendfile, from this thread, once everything written before has gone out.

        It writes to a duplicate of the connection's descriptor, taken on the loop thread while the
        transport is open, so the descriptor cannot be closed and reused under it; the loop writes
        nothing to this connection meanwhile (this sink is its only writer while the app runs).
        """
        if self.socket is None:
            self._send_contents(file, offset, count)
            return
        fileno = self._claim_socket()

        def wait_writable() -> None:
            if self.flow.lost:
                raise ClientDisconnected("connection closed by the client")
            select.select([], [fileno], [], 1.0)  # the client reads slowly: wait, bounded

        try:
            sendfile_to(fileno, file, offset, count, wait_writable)
        finally:
            os.close(fileno)

    def _claim_socket(self) -> int:
        """A duplicate of the socket, once the loop has written everything queued before."""
        assert self.socket is not None
        sock = self.socket
        claimed: concurrent.futures.Future[int] = concurrent.futures.Future()

        def check() -> None:  # on the loop thread
            if self.transport.is_closing() or self.flow.lost:
                claimed.set_result(-1)
            elif self.queued or self.transport.get_write_buffer_size():
                self.loop.call_later(0.002, check)
            else:
                claimed.set_result(os.dup(sock.fileno()))

        with self.flow.condition:
            if self.flow.lost:
                raise ClientDisconnected("connection closed by the client")
            self.started = True
        self.loop.call_soon_threadsafe(check)
        while True:
            try:
                fileno = claimed.result(timeout=1.0)
                break
            except concurrent.futures.TimeoutError:
                if self.flow.lost:
                    # Given up: a descriptor duplicated after all must not leak.
                    claimed.add_done_callback(_close_claimed)
                    raise ClientDisconnected("connection closed by the client") from None
        if fileno < 0:
            raise ClientDisconnected("connection closed by the client")
        return fileno

    def _send_contents(self, file: IO[bytes], offset: int, count: int) -> None:
        # Reads happen on this thread; the loop only writes, and the flow control bounds memory.
        file.seek(offset)
        while count > 0:
            data = file.read(min(count, SENDFILE_BLOCK))
            if not data:
                break
            count -= len(data)
            self.write(data)


def _close_claimed(claimed: concurrent.futures.Future[int]) -> None:
    fileno = claimed.result()
    if fileno >= 0:
        os.close(fileno)
