"""A large single-block body is sent without being joined to its head (no copy of the body)."""

from __future__ import annotations

import select
import socket
import threading

from pronghorn.apps.wsgi import COALESCE_LIMIT, Response
from pronghorn.http import ResponseFramer
from pronghorn.workers.loop_io import LoopOutput


class Recorder:
    """A sink that keeps what it is given, as given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [data]))

    def write_parts(self, parts: list[bytes]) -> None:
        self.calls.append(("parts", list(parts)))

    def write_last(self, parts: list[bytes]) -> None:
        self.calls.append(("last", list(parts)))

    def ready(self) -> bool:
        return True

    def wait_for_room(self) -> None:
        pass

    def sendfile(self, file: object, offset: int, count: int) -> None:
        raise AssertionError("not used")


def respond(sink: Recorder, body: bytes | list[bytes]) -> None:
    framer = ResponseFramer(request_method=b"GET", request_version=(1, 1), keep_alive=True, server_header=b"t")
    response = Response(framer, sink)  # type: ignore[arg-type]
    response.start_response("200 OK", [("Content-Length", str(len(body) if isinstance(body, bytes) else sum(map(len, body))))])
    result = [body] if isinstance(body, bytes) else iter(body)
    if not response.write_whole(result):  # as the request cycle does
        for chunk in result:
            response.write(chunk)
    response.finish()


def test_small_body_is_one_write_with_its_head() -> None:
    sink = Recorder()
    respond(sink, b"x" * 100)
    assert [kind for kind, _ in sink.calls] == ["last"]
    assert len(sink.calls[0][1]) == 1 and sink.calls[0][1][0].endswith(b"\r\n\r\n" + b"x" * 100)


def test_large_body_is_handed_over_as_is() -> None:
    body = b"y" * (COALESCE_LIMIT + 1)
    sink = Recorder()
    respond(sink, body)
    assert len(sink.calls) == 1 and sink.calls[0][0] == "last"
    head, sent = sink.calls[0][1]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert sent is body  # the very object: not copied


def test_a_streamed_large_block_goes_out_as_parts_before_the_last_bytes() -> None:
    block = b"z" * (COALESCE_LIMIT + 1)
    sink = Recorder()
    respond(sink, [block, b"end"])
    assert [kind for kind, _ in sink.calls] == ["parts", "write"], sink.calls
    assert sink.calls[0][1][1] is block and sink.calls[1][1] == [b"end"]


class _BufferingTransport:
    """A transport that takes whatever the socket did not (as uvloop's does) and sends it on demand."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()

    def get_extra_info(self, name: str) -> object:
        return None

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes | memoryview) -> None:
        self.pending += data

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        for part in parts:
            self.pending += part

    def drain(self) -> None:
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except BlockingIOError:
                select.select([], [self.sock], [], 1.0)
                continue
            del self.pending[:sent]


def test_loop_output_write_parts_survives_partial_writes() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    held = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # an earlier pipelined response, held
    parts = [b"head\r\n\r\n", bytes(range(256)) * 8192, b"", b"tail"]  # 2 MiB between two small pieces
    expected = held + b"".join(parts)
    received = bytearray()

    def read() -> None:
        while len(received) < len(expected):
            chunk = theirs.recv(7000)  # small reads: many partial writes on the other side
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        holds: list[None] = []

        class Owner:
            def hold(self) -> None:
                holds.append(None)

            def output_ready(self) -> None:
                pass

        transport = _BufferingTransport(ours)
        output = LoopOutput(None, transport, ours.fileno(), Owner())  # type: ignore[arg-type]
        output.write_last([held])
        output.write_parts(parts)  # the held response goes first, then what the socket takes now
        assert transport.pending, "the socket took 2 MiB at once: the test shows nothing"
        transport.drain()
        reader.join(10)
        assert bytes(received) == expected
        assert len(holds) == 1  # the small write was held (and sent first)
    finally:
        ours.close()
        theirs.close()
