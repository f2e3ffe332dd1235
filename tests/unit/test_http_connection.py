"""The event-loop worker's connection protocol against a fake transport and a fake host (no sockets).

The host is a real ``WorkerLoop`` on a fake loop; its fake pool runs a step on the loop's next pass and
hands the outcome back as the real pool would; the transport records what is written and plays the flow control a real
transport does (``pause_writing`` past a high-water mark, ``resume_writing`` when the client reads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pronghorn.apps.cycle import CycleHooks, CycleSettings, RequestCycle
from pronghorn.config import Config
from pronghorn.workers import loop_io
from pronghorn.workers.http_connection import HttpConnection
from pronghorn.workers.worker_loop import WorkerLoop

HIGH_WATER = 1000  # the fake transport's


class FakeLoop:
    def __init__(self) -> None:
        self.soon: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append((callback, args))

    call_soon_threadsafe = call_soon

    def run_pending(self) -> None:
        while self.soon:
            callback, args = self.soon.pop(0)
            callback(*args)


class FakeTransport:
    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn
        self.buffer = bytearray()  # written, not yet read by the client
        self.received = bytearray()  # read by the client
        self.closed = False
        self.aborted = False
        self.paused = False
        self.reading = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def write(self, data: bytes | memoryview) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.paused:
            self.paused = True
            self.conn.pause_writing()

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def client_reads(self) -> bytes:
        """The client takes everything written so far."""
        data = bytes(self.buffer)
        self.received += data
        self.buffer.clear()
        if self.paused:
            self.paused = False
            self.conn.resume_writing()
        return data


class FakeWorker:
    """The worker process as its WorkerLoop sees it."""

    def __init__(self) -> None:
        self.alive = True
        self.max_requests = 1 << 62

    def request_finished(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass


class FakePool:
    """Runs a job "on a thread" on the loop's next pass, then hands its outcome back as the pool does."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop

    def submit(self, job: Any) -> None:
        self.loop.call_soon(lambda: job.finished_on_loop(job.run_on_thread()))


def make_host(app: Callable[..., Any], threads: int) -> tuple[WorkerLoop, FakeWorker, FakeLoop]:
    cfg = Config()
    cfg.set("threads", threads)
    loop = FakeLoop()
    log = logging.getLogger("test-connection")
    worker = FakeWorker()
    cycle = RequestCycle(app, CycleSettings(cfg), log, CycleHooks())
    host = WorkerLoop(loop, cycle, log, cfg, worker, FakePool(loop) if threads > 1 else None)  # type: ignore[arg-type]
    return host, worker, loop


class _Listener:
    server_name = ("127.0.0.1", 8000)


class Connected:
    def __init__(self, app: Callable[..., Any], threads: int) -> None:
        self.host, self.worker, self.loop = make_host(app, threads)
        self.conn = HttpConnection(self.host, _Listener(), ("127.0.0.1", 40000), -1)  # type: ignore[arg-type]
        self.transport = FakeTransport(self.conn)
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]

    @property
    def in_cycle(self) -> bool:
        return self.conn.busy

    def worker_handled(self) -> int:
        return self.host.handled


def connect(app: Callable[..., Any], threads: int = 1) -> tuple[HttpConnection, FakeTransport, Connected]:
    connected = Connected(app, threads)
    return connected.conn, connected.transport, connected


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "5")])
    return [environ["PATH_INFO"].encode()[:5].ljust(5, b".")]


GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
MODES = pytest.mark.parametrize("threads", [1, 4], ids=["inline", "pool"])


@MODES
def test_pipelined_requests_are_answered_in_order_on_one_connection(threads: int) -> None:
    conn, transport, host = connect(hello, threads=threads)
    conn.data_received(b"".join(GET % name for name in (b"a", b"b", b"c")))
    host.loop.run_pending()
    data = transport.client_reads()
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"/a...") < data.index(b"/b...") < data.index(b"/c...")
    assert host.host.handled == 3 and not host.in_cycle and not transport.closed


class Recorded:
    """A streamed body that records when each item is pulled, and whether it was closed."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.pulled = 0
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for item in self.items:
            self.pulled += 1
            yield item

    def close(self) -> None:
        self.closed += 1


def streaming(body: Recorded) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Recorded:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def test_each_item_is_written_before_the_next_is_pulled() -> None:
    # (Inline. On a pool thread an item is handed to the loop before the next is pulled, and the loop
    # writes it as soon as it runs: tests/abuse measures that end to end.)
    body = Recorded([b"one", b"two", b"three"])
    seen: list[tuple[int, bytes]] = []
    conn, transport, host = connect(streaming(body))
    original = transport.write

    def write(data: bytes | memoryview) -> None:
        seen.append((body.pulled, bytes(data)))
        original(data)

    transport.write = write  # type: ignore[method-assign]
    conn.data_received(GET % b"s")
    host.loop.run_pending()
    items = [(pulled, data) for pulled, data in seen if b"one" in data or b"two" in data or b"three" in data]
    assert [pulled for pulled, _ in items] == [1, 2, 3]  # item n on its way before item n+1 is asked for
    assert body.closed == 1


def item_size(threads: int) -> int:
    # Inline, the transport's mark stops the pulling; on the pool, what was handed to the loop and
    # not yet written counts too (loop_io.HIGH_WATER): items large enough to cross both.
    return 600 if threads == 1 else loop_io.HIGH_WATER // 2


@MODES
def test_a_client_that_does_not_read_parks_the_response(threads: int) -> None:
    size = item_size(threads)
    body = Recorded([b"x" * size] * 20)
    conn, transport, host = connect(streaming(body), threads=threads)
    conn.data_received(GET % b"s")
    host.loop.run_pending()
    bound = HIGH_WATER if threads == 1 else loop_io.HIGH_WATER
    assert body.pulled <= bound // size + 2 and len(transport.buffer) <= bound + size + 200  # one item past the mark
    assert conn.parked and host.in_cycle
    reads = 0
    while body.closed == 0 and reads < 50:
        transport.client_reads()
        host.loop.run_pending()
        reads += 1
    transport.client_reads()
    assert body.pulled == 20 and body.closed == 1 and not host.in_cycle
    assert transport.received.count(b"x" * size) == 20 and transport.received.endswith(b"0\r\n\r\n")


@MODES
def test_a_client_gone_while_parked_ends_the_response_once(threads: int) -> None:
    body = Recorded([b"x" * item_size(threads)] * 20)
    conn, transport, host = connect(streaming(body), threads=threads)
    conn.data_received(GET % b"s")
    host.loop.run_pending()
    assert conn.parked
    conn.connection_lost(ConnectionResetError())
    host.loop.run_pending()
    assert body.closed == 1 and body.pulled < 20 and not host.in_cycle and host.host.handled == 1
    assert conn not in host.host.connections


def test_expect_100_continue_is_answered_before_the_body_arrives() -> None:
    def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]

    conn, transport, host = connect(echo)
    conn.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert transport.client_reads() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.data_received(b"abcd")
    host.loop.run_pending()
    answer = transport.client_reads()
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nabcd")
    assert b"100 Continue" not in answer


def test_a_malformed_request_is_answered_once_and_closed() -> None:
    conn, transport, host = connect(hello)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n" + GET % b"next")
    host.loop.run_pending()
    data = transport.client_reads()
    assert data.startswith(b"HTTP/1.1 400 ") and data.count(b"HTTP/1.1") == 1
    assert transport.closed and host.host.handled == 0


def test_reading_pauses_while_a_request_runs_and_much_is_buffered() -> None:
    conn, transport, host = connect(hello, threads=4)
    conn.data_received(GET % b"a")  # on the "pool": not run until the loop's next pass
    conn.data_received(b"x" * (300 * 1024))
    assert not transport.reading
    host.loop.run_pending()
    assert transport.reading  # the next request may be read once the first is answered


def test_informational_final_status_closes_the_connection() -> None:
    def early(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("103 Early Hints", [])
        return []

    conn, transport, host = connect(early)
    conn.data_received(GET % b"a" + GET % b"b")
    host.loop.run_pending()
    assert transport.closed and transport.client_reads().count(b"HTTP/1.1") == 1


@MODES
def test_a_file_without_the_socket_is_read_only_as_the_client_takes_it(threads: int, tmp_path: Any) -> None:
    # The connection has no socket of its own here (as over TLS): the file goes through the transport,
    # a block at a time, never more than one block past the transport's mark.
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Length", str(1 << 20))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    conn, transport, host = connect(app, threads=threads)
    conn.data_received(GET % b"f" + GET % b"next")
    host.loop.run_pending()
    assert len(transport.buffer) <= loop_io.READ_BLOCK + HIGH_WATER + 200 and conn.parked
    reads = 0
    while host.worker_handled() < 2 and reads < 100:
        transport.client_reads()
        host.loop.run_pending()
        reads += 1
    transport.client_reads()
    head, _, rest = bytes(transport.received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and rest[: 1 << 20] == path.read_bytes()
    assert rest[1 << 20 :].startswith(b"HTTP/1.1 200 OK")  # the pipelined request, after the file
