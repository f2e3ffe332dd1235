"""Abuse cases 8-10 and 12: hostile input is cut off at its limit, and leaves nothing behind.

Every case here applies to ``sync`` as well as to the event-loop worker: each is about one
connection's input, which a blocking worker reads too. Case 11 (descriptors back at their baseline)
closes every case of the suite, here and in the other modules.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from abuse.clients import FeedResult, feed_until_answered, reset_storm
from abuse.harness import MB, AbuseServer, CaseFigures, abuse_server, cpu_seconds

PIECE = 16 * 1024

# -- 8. oversized and endless input -------------------------------------------------------------------

# The server's limits at their defaults (config/declared, http/limits.py): limit_request_field_size
# caps one header line, and a chunk's size line with its extensions; limit_request_fields x
# (limit_request_field_size + CRLF) + the final CRLF caps the bytes of a header or trailer section.
FIELD_LIMIT = 8190
SECTION_LIMIT = 100 * (8190 + 2) + 4
# What may be counted beyond a limit: one read of the event loop (uvloop reads up to 256 KiB at once)
# plus the pieces still in flight when the answer is seen.
MARGIN = 512 * 1024
MEMORY_GROWTH = 5 * MB


def huge_header_value() -> Iterator[bytes]:
    yield b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Huge: "
    while True:
        yield b"a" * PIECE


def many_header_lines(count: int = 100_000) -> Iterator[bytes]:
    yield b"GET /hello HTTP/1.1\r\nHost: x\r\n"
    per_piece = PIECE // 18
    for first in range(0, count, per_piece):
        yield b"".join(b"X-Line-%06d: v\r\n" % index for index in range(first, min(count, first + per_piece)))
    yield b"\r\n"


def long_chunk_extension(size: int = 1 << 20) -> Iterator[bytes]:
    yield b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext="
    for _ in range(size // PIECE):
        yield b"a" * PIECE
    yield b"\r\nx\r\n0\r\n\r\n"


def endless_trailers() -> Iterator[bytes]:
    yield b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
    index = 0
    while True:
        lines = []
        for _ in range(PIECE // 20):
            lines.append(b"X-Trailer-%08d: v\r\n" % index)
            index += 1
        yield b"".join(lines)


# (what, its pieces, bytes sent at most, the limit it breaks, the status that limit answers)
OVERSIZED: list[tuple[str, Callable[[], Iterator[bytes]], int, int, int]] = [
    ("10 MB header value", huge_header_value, 10 * MB, FIELD_LIMIT, 431),
    ("100,000 header lines", many_header_lines, 4 * MB, SECTION_LIMIT, 431),
    ("1 MB chunk extension", long_chunk_extension, 2 * MB, FIELD_LIMIT, 400),
    ("endless trailer section", endless_trailers, 10 * MB, SECTION_LIMIT, 431),
]


@pytest.mark.parametrize("worker", ["gthread", "sync", "asgi"])
def test_oversized_and_endless_input_is_cut_off(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """Each is answered (or closed) once the server has read at most its limit plus MARGIN, and no
    worker's memory peaks more than 5 MB above where it was."""
    with abuse_server(workdir, worker) as server:
        for what, pieces, max_bytes, limit, status in OVERSIZED:
            server.start_memory_watch()
            result = feed_until_answered(server.port, pieces(), max_bytes=max_bytes)
            growth = server.memory_growth_bytes()
            _check_cut_off(figures, what, result, limit, status, growth)
        server.fds_back_at_baseline(figures)
    figures.assert_all()


def _check_cut_off(figures: CaseFigures, what: str, result: FeedResult, limit: int, status: int, growth: int) -> None:
    figures.check(result.outcome in (f"status {status}", "closed", "reset"),
                  f"{what}: answered {result.outcome} after {result.elapsed:.2f}s (expected {status} or a close)")
    figures.check(result.sent <= limit + MARGIN,
                  f"{what}: {result.sent:,} bytes taken before the answer (limit {limit:,} + margin {MARGIN:,})")
    figures.check(growth < MEMORY_GROWTH, f"{what}: worker memory peak grew {growth / MB:.2f} MB (needs < 5 MB)")


# -- 9. 10,000 pipelined requests in one write --------------------------------------------------------


def pipeline(port: int, count: int, max_seconds: float = 60.0) -> tuple[list[tuple[int, bytes]], str, str, float]:
    """Send ``count`` keep-alive GETs to /p/<n> in one sendall while a thread reads the answers.

    Returns (answers as (status, body), how reading ended, send error, seconds)."""
    requests = b"".join(b"GET /p/%05d HTTP/1.1\r\nHost: x\r\n\r\n" % index for index in range(count))
    answers: list[tuple[int, bytes]] = []
    ended = ["timeout"]
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=max_seconds)

    def read() -> None:
        buf = bytearray()
        pos = 0
        while len(answers) < count:
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                return
            except OSError as exc:
                ended[0] = f"reset ({exc.strerror})"
                return
            if not chunk:
                ended[0] = "closed"
                return
            buf += chunk
            while (end := buf.find(b"\r\n\r\n", pos)) >= 0:
                head = bytes(buf[pos:end])
                length = next((int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                if len(buf) < end + 4 + length:
                    break
                answers.append((int(head[9:12]), bytes(buf[end + 4:end + 4 + length])))
                pos = end + 4 + length
            if pos > 1 << 20:
                del buf[:pos]
                pos = 0
        ended[0] = "all answered"

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    send_error = ""
    try:
        sock.sendall(requests)
    except OSError as exc:
        send_error = f"{type(exc).__name__}: {exc.strerror}"
    reader.join(timeout=max_seconds)
    if ended[0] == "all answered":  # and then nothing more: the connection stays usable and quiet
        with contextlib.suppress(OSError):
            sock.settimeout(0.2)
            extra = sock.recv(1)
            ended[0] += "; then closed" if not extra else "; then unexpected bytes"
    sock.close()
    reader.join(timeout=5)
    return answers, ended[0], send_error, time.monotonic() - started


@pytest.mark.parametrize("worker", ["gthread", "gthread-t4", "sync", "asgi"])
def test_10000_pipelined_requests_in_one_write(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """All answered in order with bounded memory; ``sync`` answers the first and closes."""
    count = 10_000
    with abuse_server(workdir, worker) as server:
        server.start_memory_watch()
        answers, ended, send_error, seconds = pipeline(server.port, count)
        growth = server.memory_growth_bytes()
        in_order = sum(1 for index, (status, body) in enumerate(answers)
                       if status == 200 and body.endswith(b" /p/%05d" % index))
        figures.note(f"{len(answers)} answers in {seconds:.2f}s, {in_order} in order; reading ended: {ended}"
                     + (f"; sendall: {send_error}" if send_error else ""))
        if worker == "sync":
            # One request per connection: the first is answered, then the connection is closed.
            figures.check(len(answers) == 1 and in_order == 1 and ended.startswith(("closed", "reset")),
                          f"sync answered the first request only, then closed ({len(answers)} answers, {ended})")
        else:
            figures.check(len(answers) == count and in_order == count,
                          f"all {count} answered, in order ({in_order} of {len(answers)})")
        figures.check(growth < 20 * MB, f"worker memory peak grew {growth / MB:.2f} MB (needs < 20 MB)")
        server.fds_back_at_baseline(figures)
    figures.assert_all()


# -- 10. connect-and-reset storms --------------------------------------------------------------------

IDLE_CPU = 0.020  # seconds of CPU in one second: 2 clock ticks, which an idle worker's 1 Hz chores may cost


def busiest_cpu_in(server: AbuseServer, window: float = 1.0) -> float:
    """Most CPU time any worker used during ``window`` seconds."""
    before = {pid: cpu_seconds(pid) for pid in server.pids}
    time.sleep(window)
    return max(cpu_seconds(pid) - used for pid, used in before.items())


@pytest.mark.parametrize("worker", ["gthread", "gthread-t4", "sync", "asgi"])
def test_connect_and_reset_storm_leaves_workers_idle(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """2,000 connections reset with SO_LINGER 0 (a third at once, a third after half a request, a third
    after a whole one); then every worker goes idle (within a few 1 s windows) and still serves."""
    with abuse_server(workdir, worker) as server:
        pids_before = server.current_workers()
        idle_before = busiest_cpu_in(server)
        started = time.monotonic()
        done, failed = reset_storm(server.port, 2000)
        storm_seconds = time.monotonic() - started
        windows = []
        for _ in range(5):  # a worker still busy with the storm's last connections gets a few seconds
            windows.append(busiest_cpu_in(server))
            if windows[-1] <= IDLE_CPU:
                break
        status, body = _get(server.port)
        pids_after = server.current_workers()

        figures.note(f"storm: {done} connections reset, {failed} failed to connect, in {storm_seconds:.2f}s; "
                     f"busiest worker CPU before: {idle_before * 1000:.0f} ms/s")
        figures.check(windows[-1] <= IDLE_CPU,
                      "workers idle after the storm: busiest worker's CPU per 1 s window "
                      + ", ".join(f"{w * 1000:.0f} ms" for w in windows) + f" (needs <= {IDLE_CPU * 1000:.0f} ms)")
        figures.check(status == 200, f"a GET after the storm is answered: {status} {body[:40]!r}")
        figures.check(pids_after == pids_before, f"worker pids unchanged ({pids_before} -> {pids_after})")
        server.fds_back_at_baseline(figures)
    figures.assert_all()


def _get(port: int) -> tuple[int, bytes]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data[9:12]), data.partition(b"\r\n\r\n")[2]
    except (OSError, ValueError) as exc:
        return 0, str(exc).encode()


# -- 12. limit_request_body with Expect: 100-continue ------------------------------------------------


@pytest.mark.parametrize("worker", ["gthread", "sync", "asgi"])
def test_huge_declared_body_with_expect_gets_413_without_continue(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """``Content-Length: 107374182400`` (100 GiB) with ``Expect: 100-continue`` to an app that never
    reads its body, with ``--limit-request-body 1048576``: 413, no ``100 Continue``, connection closed."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(abuse_server(workdir, worker, "--limit-request-body", "1048576"))
        except AssertionError as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            figures.check(False, "server started with --limit-request-body 1048576: " + " / ".join(lines[-2:])[:300])
            figures.assert_all()
        data, ended = b"", "timeout"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 107374182400\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            try:
                while chunk := sock.recv(65536):
                    data += chunk
                ended = "closed"
            except TimeoutError:
                pass
            except OSError as exc:
                ended = f"reset ({exc.strerror})"
        statuses = [int(line[9:12]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
        figures.note(f"answer: {data[:120]!r}")
        figures.check(bool(statuses) and statuses[-1] == 413, f"final status 413 ({statuses})")
        figures.check(100 not in statuses, "no 100 Continue")
        figures.check(ended != "timeout", f"connection closed by the server ({ended})")
        server.fds_back_at_baseline(figures)
    figures.assert_all()
