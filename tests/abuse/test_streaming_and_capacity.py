"""Abuse cases 5-7: streamed chunks leave at once; many open connections cost nothing per request.

Streaming (5) runs on every worker. Cases 6 and 7 hold thousands of keep-alive connections, which
only an event-loop worker can: ``sync`` closes every connection after one response, so there is
nothing to hold (extra connections would only wait in the listen backlog).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from abuse.clients import LoadResult, RequestLoad, ResponseReader, Swarm, merged, ms
from abuse.harness import BIG_SIZE, CaseFigures, abuse_server, nofile_raised

KEEP_ALIVE_GET = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


# -- 5. streaming ------------------------------------------------------------------------------------

_CHUNK = re.compile(rb"<chunk (\d) at (\d+\.\d+)>")
_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception): ")


def read_stream(port: int, max_seconds: float = 10.0) -> list[tuple[int, float, float]]:
    """GET /stream; for each chunk: (index, when the app yielded it, when it arrived here)."""
    seen: list[tuple[int, float, float]] = []
    data = b""
    deadline = time.monotonic() + max_seconds
    with socket.create_connection(("127.0.0.1", port), timeout=max_seconds) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while len(seen) < 4 and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            arrived = time.time()
            if not chunk:
                break
            data += chunk
            for match in _CHUNK.finditer(data):
                index = int(match.group(1))
                if index >= len(seen):
                    seen.append((index, float(match.group(2)), arrived))
    return seen


@pytest.mark.parametrize("worker", ["gthread", "gthread-t4", "sync", "asgi"])
def test_streamed_chunks_leave_when_yielded(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """The app yields 4 chunks 0.3 s apart, each stamped with time.time(): each arrives within 50 ms."""
    with abuse_server(workdir, worker) as server:
        chunks = read_stream(server.port)
        delays = [arrived - yielded for _, yielded, arrived in chunks]
        figures.note("chunk delays (arrival - yield): " + ", ".join(ms(d) for d in delays))
        figures.check(len(chunks) == 4, f"all 4 chunks arrived ({len(chunks)})")
        figures.check(bool(delays) and max(delays) <= 0.050,
                      f"each chunk within 50 ms of being yielded (worst {ms(max(delays, default=0))})")
        server.fds_back_at_baseline(figures)
    figures.assert_all()


# -- 6. 1,500 connections on one worker --------------------------------------------------------------


def fetch_big(port: int, max_seconds: float = 30.0) -> tuple[int, int, float, str]:
    """GET /big on a new connection: (status, body bytes, seconds, error)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reader = ResponseReader(sock)
            status, body = reader.read()
            return status, len(body), time.monotonic() - started, ""
    except (OSError, ConnectionError) as exc:
        return 0, 0, time.monotonic() - started, f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["gthread", "asgi"])
def test_8_mib_response_with_1500_connections_open_on_one_worker(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """1,500 keep-alive connections held on one worker (each has had one GET answered), then an
    8 MiB response on a new connection arrives whole.

    ``--worker-connections 4000`` so the 1,500 all fit on the one worker (the default is 1000), and
    ``--keep-alive 120`` so they stay open for the whole case. This process's descriptor limit is
    raised after the server started: the server must raise its own.
    """
    with abuse_server(workdir, worker, "--worker-connections", "4000", "--keep-alive", "120", workers=1) as server, \
            nofile_raised():
        with Swarm(server.port, 1500, opening=KEEP_ALIVE_GET, read_response=True, max_in_flight=100,
                   max_seconds=90) as swarm:
            all_answered = swarm.wait("all-responded", 45.0)
            answered = swarm.responded
            status, size, seconds, error = fetch_big(server.port)
            still_open = swarm.open_now
        log = server.log()

        figures.check(all_answered, f"1500 connections each had a GET answered ({answered}; "
                                    f"{len(swarm.connect_errors)} failed to connect)")
        figures.note(f"held connections still open when the big response was done: {still_open} of 1500")
        figures.check(status == 200 and size == BIG_SIZE,
                      f"8 MiB response arrived whole: status {status}, {size} of {BIG_SIZE} bytes in {seconds:.2f}s"
                      + (f" ({error})" if error else ""))
        errors = [line for line in log.splitlines() if "[ERROR]" in line]
        exceptions = [line for line in log.splitlines() if _EXCEPTION_LINE.match(line)]
        figures.note(f"server log: {len(errors)} errors" + (f", last exception: {exceptions[-1][:160]}" if exceptions else ""))
        server.fds_back_at_baseline(figures)
    figures.assert_all()


# -- 7. 5,000 idle connections -----------------------------------------------------------------------

ROUNDS = 3  # runs with the idle connections, each between two runs without


def fixed_load(port: int) -> LoadResult:
    """4 threads on keep-alive connections, each sending 500 GETs 4 ms apart (2,000 in 2 s)."""
    return RequestLoad(port, threads=4, mode="keep-alive", pace=0.004, requests=500, timeout=5.0).run()


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["gthread", "asgi"])
def test_5000_idle_connections_do_not_slow_a_fixed_load(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """p99 of a fixed GET load with 5,000 idle keep-alive connections open is within 20 % of its p99
    without them.

    Rule: p99 with them <= max(1.2 x p99 without, p99 without + 2 ms); the 2 ms floor keeps a
    1.0 vs 1.3 ms difference from failing on scheduling noise. Like is compared with like: the same
    load, run without / with / without ... the idle connections (ROUNDS times with), back to back,
    each side's samples pooled, so drift in the machine's background load falls on both sides. Each run
    without them starts once the server has closed the previous 5,000 (descriptors back at baseline):
    closing them is work of its own, not part of either side.
    """
    with abuse_server(workdir, worker, "--worker-connections", "10000", "--keep-alive", "120") as server, \
            nofile_raised():
        without = [fixed_load(server.port)]
        with_idle: list[LoadResult] = []
        for _ in range(ROUNDS):
            with Swarm(server.port, 5000, opening=KEEP_ALIVE_GET, read_response=True, max_in_flight=200,
                       max_seconds=100) as swarm:
                all_answered = swarm.wait("all-responded", 60.0)
                figures.check(all_answered, f"5000 idle connections opened, each after one answered GET "
                                            f"({swarm.responded}; {len(swarm.connect_errors)} failed to connect)")
                if not all_answered:
                    break
                time.sleep(0.5)
                with_idle.append(fixed_load(server.port))
                figures.note(f"idle connections still open after the loaded run: {swarm.open_now} of 5000")
            server.wait_for_fd_baseline(10.0)
            without.append(fixed_load(server.port))

        baseline, loaded = merged(*without), merged(*with_idle)
        limit = max(1.2 * baseline.p99, baseline.p99 + 0.002)
        for index, result in enumerate(without):
            figures.note(f"without ({index + 1}):     {result.summary()}")
        for index, result in enumerate(with_idle):
            figures.note(f"with 5000 idle ({index + 1}): {result.summary()}")
        figures.check(bool(with_idle) and loaded.p99 <= limit,
                      f"p99 with 5000 idle connections {ms(loaded.p99)} vs {ms(baseline.p99)} without "
                      f"(limit max(1.2x, +2 ms) = {ms(limit)})")
        server.fds_back_at_baseline(figures)
    figures.assert_all()
