"""Metrics: what the request cycle, the workers, the logs and the master report, and where it goes.

``Metrics`` is the one interface they report to; behind it, ``StatsdSender`` sends Gunicorn's StatsD
metrics (named ``pronghorn.*`` where Gunicorn says ``gunicorn.*``) as datagrams, fire and forget,
and ``CounterBlock`` counts a worker's requests in memory its master reads for Prometheus
(``pronghorn.prometheus``). With neither set up, nothing is called per request. Compiled with
mypyc: a request costs a few stores.
"""

from __future__ import annotations

import array
import mmap
import socket
import time
from typing import Any, Final, Protocol

from pronghorn.errors import ConfigError

STATSD_PORT = 8125
# Gunicorn's ``mtype`` words for ``extra={"metric": ...}``, and their StatsD type letters.
STATSD_TYPES = {"counter": "c", "gauge": "g", "histogram": "h", "timer": "ms"}


class Metrics(Protocol):
    """What is reported; every method is cheap and never raises."""

    def request(self, method: bytes, status: int, seconds: float) -> None:
        """A request was answered (``status`` 0: no response could be sent)."""

    def gauges(self, in_flight: int, connections: int) -> None:
        """A worker's requests in the application now and its open connections (sampled on its tick)."""

    def flush(self) -> None:
        """The worker is leaving: what it counted must reach the master now."""

    def exit_reason(self, code: int) -> None:
        """The worker is leaving of its own accord (1 max_requests, 2 memory, 3 its code changed)."""

    def log_message(self, level: str) -> None:
        """A message was logged at critical, error, warning or exception level."""

    def custom(self, name: str, value: Any, mtype: str) -> None:
        """A log call's ``extra={"metric": name, "value": value, "mtype": mtype}``."""

    def workers(self, count: int) -> None:
        """The master's number of live workers (reported on every supervision pass)."""

    def backlog(self, depth: int) -> None:
        """Connections waiting in the listen queues (``enable_backlog_metric``)."""


class StatsdSender:
    """Gunicorn's StatsD metrics as datagrams to ``statsd_host`` (UDP, or a unix datagram socket)."""

    def __init__(self, address: str, prefix: str = "", tags: str = "") -> None:
        self.prefix = f"{prefix.rstrip('.')}." if prefix else ""
        self.suffix = f"|#{tags}" if tags else ""
        self.sock = _statsd_socket(address)
        self._last_workers = -1

    def request(self, method: bytes, status: int, seconds: float) -> None:
        self._send("pronghorn.requests", "1|c|@1.0")
        self._send("pronghorn.request.duration", f"{seconds * 1000:.3f}|ms")
        if status:
            self._send(f"pronghorn.request.status.{status}", "1|c|@1.0")

    def gauges(self, in_flight: int, connections: int) -> None:
        pass  # (Gunicorn's StatsD metrics have no gauge of requests in flight or connections)

    def flush(self) -> None:
        pass  # (every datagram is sent at once)

    def exit_reason(self, code: int) -> None:
        pass

    def log_message(self, level: str) -> None:
        self._send(f"pronghorn.log.{level}", "1|c|@1.0")

    def custom(self, name: str, value: Any, mtype: str) -> None:
        kind = STATSD_TYPES.get(mtype)
        if kind is not None:
            self._send(name, f"{value}|{kind}|@1.0" if kind == "c" else f"{value}|{kind}")

    def workers(self, count: int) -> None:
        if count != self._last_workers:  # a gauge: sent when it changes
            self._last_workers = count
            self._send("pronghorn.workers", f"{count}|g")

    def backlog(self, depth: int) -> None:
        self._send("pronghorn.backlog", f"{depth}|h")

    def _send(self, name: str, value: str) -> None:
        try:
            self.sock.send(f"{self.prefix}{name}:{value}{self.suffix}".encode())
        except OSError:
            pass  # nobody listening, or a full buffer: metrics never stop the server


def _statsd_socket(address: str) -> socket.socket:
    if address.startswith("unix:"):  # unix:PATH or unix://PATH
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        target: Any = address[len("unix:"):]
        target = target[2:] if target.startswith("//") else target
    else:
        host, port = split_statsd_address(address)
        try:
            family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as exc:
            raise ConfigError(f"Invalid value for statsd_host: {address!r} ({exc.strerror or exc})") from None
        sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        sock.connect(target)
    except OSError:
        pass  # a unix socket not there yet: each send tries again (and fails quietly until it is)
    return sock


def split_statsd_address(address: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for an IPv6 address) with StatsD's port 8125 by default."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else STATSD_PORT
    host, colon, port = address.rpartition(":")
    if not colon or ":" in host:
        return address, STATSD_PORT
    return host, int(port)


class Fanout:
    """Several ``Metrics`` as one."""

    def __init__(self, targets: list[Any]) -> None:
        self.targets = targets

    def request(self, method: bytes, status: int, seconds: float) -> None:
        for target in self.targets:
            target.request(method, status, seconds)

    def gauges(self, in_flight: int, connections: int) -> None:
        for target in self.targets:
            target.gauges(in_flight, connections)

    def flush(self) -> None:
        for target in self.targets:
            target.flush()

    def exit_reason(self, code: int) -> None:
        for target in self.targets:
            target.exit_reason(code)

    def log_message(self, level: str) -> None:
        for target in self.targets:
            target.log_message(level)

    def custom(self, name: str, value: Any, mtype: str) -> None:
        for target in self.targets:
            target.custom(name, value, mtype)

    def workers(self, count: int) -> None:
        for target in self.targets:
            target.workers(count)

    def backlog(self, depth: int) -> None:
        for target in self.targets:
            target.backlog(depth)


# --- a worker's counters, in memory shared with the master ---

METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE", b"other")
METHOD_ROWS: Final = {name: row for row, name in enumerate(METHODS)}
OTHER_METHOD: Final = 9  # the last of METHODS
STATUSES: Final = 600  # codes 100-599 by number; 0: the client went away before any response
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds; +Inf after them
# Layout of a block, in unsigned 64-bit cells: gauges, then counters.
IN_FLIGHT: Final = 0
OPEN_CONNECTIONS: Final = 1
EXIT_REASON: Final = 2
DURATION_SUM_US: Final = 3
HISTOGRAM: Final = 4
REQUESTS: Final = 16  # HISTOGRAM + a cell per bucket and +Inf
CELLS: Final = 6016  # REQUESTS + a row of STATUSES per method
FLUSH_INTERVAL: Final = 0.25  # seconds: the event-loop worker's tick (0.5 s) flushes every time


class CounterBlock:
    """One worker's counters, in an anonymous shared mapping made by the master before the fork.

    The worker counts in a list of its own (a request costs three list stores, where three stores
    into the mapping cost 0.5 µs) and copies it into the mapping on its tick (``gauges``, at most
    every ``FLUSH_INTERVAL``) and when it leaves (``flush``). So the master sees counts at most
    about half a second old, and a worker killed outright loses at most that much of its counts.
    """

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, CELLS * 8)
        self.cells = memoryview(self.memory).cast("Q")
        self.counts = [0] * CELLS
        self.duration_sum = 0.0  # seconds (a native float: no int made per request)
        self.next_flush = 0.0

    def request(self, method: bytes, status: int, seconds: float) -> None:
        counts = self.counts
        row = 0 if method == b"GET" else METHOD_ROWS.get(method, OTHER_METHOD)
        counts[REQUESTS + row * STATUSES + (status if 0 <= status < STATUSES else 0)] += 1
        if seconds <= 0.005:  # (BUCKETS[0]: most requests)
            counts[HISTOGRAM] += 1
        else:
            bucket = 1
            for bound in BUCKETS[1:]:
                if seconds <= bound:
                    break
                bucket += 1
            counts[HISTOGRAM + bucket] += 1
        self.duration_sum += seconds

    def gauges(self, in_flight: int, connections: int) -> None:
        cells = self.cells
        cells[IN_FLIGHT] = in_flight
        cells[OPEN_CONNECTIONS] = connections
        now = time.monotonic()
        if now >= self.next_flush:
            self.next_flush = now + FLUSH_INTERVAL
            self.flush()

    def flush(self) -> None:
        self.counts[DURATION_SUM_US] = int(self.duration_sum * 1_000_000)
        self.cells[DURATION_SUM_US:] = array.array("Q", self.counts[DURATION_SUM_US:])

    def exit_reason(self, code: int) -> None:
        self.cells[EXIT_REASON] = code

    def log_message(self, level: str) -> None:
        pass  # counted by StatsD only

    def custom(self, name: str, value: Any, mtype: str) -> None:
        pass

    def workers(self, count: int) -> None:
        pass

    def backlog(self, depth: int) -> None:
        pass

    def close(self) -> None:
        self.cells.release()
        self.memory.close()
