"""Abuse cases 1-4: clients that are slow or silent must not cost ordinary clients their service.

Run on the default worker, inline (``--threads 1``, key "gthread") and with a pool (``--threads 4``,
key "gthread-t4"). Not on ``sync``: a blocking worker serves one connection at a time, so each
slow or silent client holds a whole worker until ``timeout`` -- two such clients stop a ``-w 2``
server by design (as in Gunicorn, whose documentation puts sync workers behind a buffering proxy).

Throughput is compared like with like: the same clients, for the same time, in one test, in short
windows that alternate without and with the attack (without, with, without, ... without), and each
side's median window is compared. The machine is shared, and its background load drifts and bursts
(windows seconds apart differ by half): alternating puts the drift on both sides, and the medians
leave out a window that a burst hit.
"""

from __future__ import annotations

import math
import socket
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from abuse.clients import LoadResult, RequestLoad, Swarm, merged, ms
from abuse.harness import AbuseServer, CaseFigures, abuse_server

LOOP_WORKERS = ["gthread", "gthread-t4", "asgi"]
KEPT_THROUGHPUT = 0.80
ROUNDS = 6  # windows under attack, each between two windows without (CI once had two of four 20-35% low)
WINDOW = 1.25  # seconds; a GET taking over 2 s counts as failed (the window then ends late)


class ThroughputWindows:
    """The ordinary clients' throughput, window by window: four threads, two on keep-alive
    connections and two opening a new connection for every GET."""

    def __init__(self, server: AbuseServer) -> None:
        self.server = server
        self.unloaded: list[LoadResult] = []
        self.loaded: list[LoadResult] = []

    def _window(self) -> LoadResult:
        return RequestLoad(self.server.port, threads=4, mode="mixed", duration=WINDOW, timeout=2.0).run()

    def without_attack(self) -> None:
        # Once the server has closed the last attack's connections: that is work of its own.
        self.server.wait_for_fd_baseline(5.0)
        self.unloaded.append(self._window())

    def under_attack(self) -> None:
        self.loaded.append(self._window())

    def check(self, figures: CaseFigures) -> None:
        baseline = statistics.median(r.throughput for r in self.unloaded)
        during = statistics.median(r.throughput for r in self.loaded)
        # Windows alternate (without, under attack, without, ...): each window under attack is held
        # to the two beside it, so a machine that speeds up or slows down between windows (a shared
        # one does) weighs on both sides alike; the median of those ratios is what was kept.
        ratios = []
        for loaded, before, after in zip(self.loaded, self.unloaded, self.unloaded[1:]):
            beside = (before.throughput + after.throughput) / 2
            ratios.append(loaded.throughput / beside if beside else 0.0)
        kept = statistics.median(ratios) if ratios else 0.0
        figures.note("req/s per window without: " + ", ".join(f"{r.throughput:.0f}" for r in self.unloaded)
                     + "; under attack: " + ", ".join(f"{r.throughput:.0f}" for r in self.loaded))
        figures.note(f"without, pooled: {merged(*self.unloaded).summary()}")
        figures.note(f"under attack, pooled: {merged(*self.loaded).summary()}")
        figures.check(kept >= KEPT_THROUGHPUT,
                      f"ordinary clients kept {kept:.0%} of their unloaded throughput (median of each window under "
                      f"attack against the two beside it; median windows {during:.0f} and {baseline:.0f} req/s; "
                      f"needs >= {KEPT_THROUGHPUT:.0%})")


# -- 1. slowloris ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("worker", LOOP_WORKERS)
def test_slowloris(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """400 connections sending one header line a second, never ending the head."""
    header_timeout = 5
    with abuse_server(workdir, worker, "--header-timeout", str(header_timeout)) as server, server.on_its_own_core():
        windows = ThroughputWindows(server)
        windows.without_attack()
        opened: list[bool] = []
        held: list[int] = []  # descriptors the workers held above baseline at the end of each window under attack
        for round_ in range(ROUNDS):
            # Connections the server closes are replaced while the ordinary clients run, so the attack
            # keeps its 400. After the last window under attack no more are opened, and the server
            # must close every one of those in time.
            with Swarm(server.port, 400, opening=b"GET /hello HTTP/1.1\r\n", drip=b"X-Slow: 1\r\n",
                       reconnect=True, max_seconds=60, own_process=True) as swarm:
                opened.append(swarm.wait("all-open", 10.0))
                windows.under_attack()
                held.append(server.extra_descriptors())
                if round_ == ROUNDS - 1:
                    swarm.stop_reconnecting()
                    swarm.wait("all-closed", header_timeout + 3.0)
            windows.without_attack()

        figures.check(all(opened), f"400 slowloris connections open at the start of each window under attack "
                                   f"(workers held {held} connections at the ends of those windows)")
        windows.check(figures)
        attempted = [c for c in swarm.conns if c.connected]  # the last round's
        # A connection still open when the swarm stopped was never closed by the server: infinitely late.
        lifetimes = sorted(math.inf if c.how == "stopped" else c.lifetime for c in attempted)
        late = [t for t in lifetimes if t > header_timeout + 1]
        figures.note(f"last round: {len(attempted)} slowloris connections ({len(swarm.connect_errors)} failed to "
                     f"connect); connect-to-close min {lifetimes[0]:.2f}s, median {lifetimes[len(lifetimes) // 2]:.2f}s, "
                     f"max {lifetimes[-1]:.2f}s; how they ended: {_tally(c.how for c in attempted)}")
        figures.check(bool(attempted) and not late,
                      f"every slowloris connection closed within header_timeout + 1 = {header_timeout + 1}s of its "
                      f"connect ({len(late)} of {len(attempted)} were not; slowest {lifetimes[-1] if lifetimes else 0:.2f}s)")
        server.fds_back_at_baseline(figures)
    figures.assert_all()


def _tally(values: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


# -- 2. slow POSTs -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("worker", LOOP_WORKERS)
def test_slow_posts(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """50 connections each POSTing a 100 kB body at 10 bytes a second to the body-reading app."""
    with abuse_server(workdir, worker) as server, server.on_its_own_core():
        windows = ThroughputWindows(server)
        windows.without_attack()
        opened: list[bool] = []
        held: list[int] = []  # descriptors the workers held above baseline at the end of each window under attack
        still_open: list[int] = []
        head = b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        for _ in range(ROUNDS):
            with Swarm(server.port, 50, opening=head, drip=b"x" * 10, drip_every=1.0, drip_limit=100_000,
                       max_seconds=60, own_process=True) as swarm:
                opened.append(swarm.wait("all-open", 10.0))
                windows.under_attack()
                held.append(server.extra_descriptors())
                still_open.append(swarm.open_now)
            windows.without_attack()

        figures.check(all(opened), f"50 slow POSTs open at the start of each window under attack "
                                   f"(workers held {held} connections at the ends of those windows)")
        figures.note(f"slow POSTs still open at the end of each window under attack: {still_open}")
        windows.check(figures)
        server.fds_back_at_baseline(figures)
    figures.assert_all()


# -- 3. clients that never read their response -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("worker", LOOP_WORKERS)
def test_non_reading_clients(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """8 clients ask for 8 MiB and never read; others' GETs stay fast and no worker is killed.

    ``--timeout 5``: a worker whose loop is stuck behind a non-reader misses its heartbeat within
    the test's window and is killed (pids change, "WORKER TIMEOUT" in the log).
    """
    with abuse_server(workdir, worker, "--timeout", "5") as server:
        pids_before = server.current_workers()
        reference = RequestLoad(server.port, threads=2, mode="new", pace=0.01, duration=2.0).run()
        non_readers: list[socket.socket] = []
        try:
            for _ in range(8):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # fixed: the kernel must not soak it all up
                sock.settimeout(5)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                non_readers.append(sock)
            time.sleep(0.3)
            during = RequestLoad(server.port, threads=2, mode="new", pace=0.01, duration=7.0, timeout=5.0).run()
            time.sleep(0.5)
            heads = sum(_peek(sock).startswith(b"HTTP/1.1 200") for sock in non_readers)
        finally:
            for sock in non_readers:
                sock.close()
        pids_after = server.current_workers()
        log = server.log()

        figures.note(f"unloaded reference (2 threads, new connection each): {reference.summary()}")
        figures.note(f"with 8 non-readers: {during.summary()}")
        figures.check(heads == 8, f"every non-reader was sent a 200 response head ({heads}/8)")
        figures.check(during.p99 < 0.100, f"other clients' GET p99 {ms(during.p99)} (needs < 100 ms)")
        figures.check(pids_after == pids_before, f"worker pids unchanged ({pids_before} -> {pids_after})")
        figures.check("WORKER TIMEOUT" not in log, f"no WORKER TIMEOUT in the log ({log.count('WORKER TIMEOUT')} seen)")
        server.fds_back_at_baseline(figures)  # a killed worker shows as "gone"
    figures.assert_all()


def _peek(sock: socket.socket) -> bytes:
    try:
        return sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return b""


# -- 4. silent connections ---------------------------------------------------------------------------


@pytest.mark.parametrize("worker", LOOP_WORKERS)
def test_silent_connections(workdir: Path, figures: CaseFigures, worker: str) -> None:
    """100 connections that send nothing, opened while ordinary GETs run: none of those is slow."""
    with abuse_server(workdir, worker) as server:
        reference = RequestLoad(server.port, threads=1, mode="new", pace=0.02, duration=2.0).run()
        load = RequestLoad(server.port, threads=1, mode="new", pace=0.02, duration=4.0, timeout=5.0)
        load.start()
        # Opened over the load's first second (100 a second), then held for the rest of it.
        with Swarm(server.port, 100, open_per_second=100, max_seconds=30) as swarm:
            during = load.join()
            silent_open = swarm.open_now

        figures.note(f"unloaded reference (1 thread, new connection each): {reference.summary()}")
        figures.note(f"while 100 silent connections arrive and stay: {during.summary()}")
        figures.check(silent_open == 100, f"100 silent connections held open ({silent_open})")
        figures.check(during.worst < 0.100 and during.completed > 0,
                      f"slowest ordinary GET {ms(during.worst)} of {len(during.latencies)} (needs < 100 ms)")
        server.fds_back_at_baseline(figures)
    figures.assert_all()
