"""Prometheus metrics across all workers, served by the master at ``metrics_bind``.

How this works: before forking a worker, the master maps a block of shared memory for it
(``pronghorn.metrics.CounterBlock``, anonymous and shared, so only the master and that worker see
it). The worker counts each request into its block with plain stores (no lock, no system call: it
is the only writer) and writes its gauges there on its tick; the master reads every block when
scraped. When a worker exits, the master adds its counters to those
of the workers gone before (so totals never go back, across restarts) and counts the restart under
its reason. A thread of the master answers ``GET /metrics`` in the text format of
``prometheus_client`` (an optional dependency: ``pip install 'pronghorn[prometheus]'``).
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from typing import Any

from pronghorn.errors import ConfigError
from pronghorn.metrics import (
    BUCKETS,
    CELLS,
    DURATION_SUM_US,
    EXIT_REASON,
    HISTOGRAM,
    IN_FLIGHT,
    METHODS,
    OPEN_CONNECTIONS,
    REQUESTS,
    STATUSES,
    CounterBlock,
)

RESTART_REASONS = ("crash", "timeout", "max_requests", "memory", "reload")
# What a worker writes in its block before leaving of its own accord (``Metrics.exit_reason``).
EXIT_REASONS = {1: "max_requests", 2: "memory", 3: "reload"}
TOTALS = range(DURATION_SUM_US, CELLS)  # the counters (not the gauges) kept when a worker is gone


class Exporter:
    """The master's side: blocks for new workers, totals of gone ones, and the ``/metrics`` server."""

    def __init__(self, address: tuple[str, int], listeners: Any) -> None:
        shown = f"{address[0]}:{address[1]}"
        # Imported when first scraped, after the workers are forked: they need none of it.
        if importlib.util.find_spec("prometheus_client") is None:
            raise ConfigError(f"Invalid value for metrics_bind: {shown} (needs the prometheus_client package: "
                              "pip install 'pronghorn[prometheus]')")
        self.listeners = listeners  # a callable giving the current listening sockets
        self.blocks: dict[int, CounterBlock] = {}  # by worker pid
        self.retired = [0] * CELLS
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)
        self.lock = threading.Lock()  # between the scraping thread and the master's reaping
        # Held by the scraping thread while it imports what a scrape needs, and by the master around
        # each fork: a worker forked while a module's import lock was held would wait for ever.
        self.fork_guard = threading.Lock()
        try:
            # SO_REUSEPORT: a new master (USR2) serves beside the old one until that one stops.
            self.sock = socket.create_server(address, family=socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                                             reuse_port=hasattr(socket, "SO_REUSEPORT"))
        except OSError as exc:
            raise ConfigError(f"Invalid value for metrics_bind: {shown} ({exc.strerror or exc})") from None
        self.sock.set_inheritable(False)
        self.thread: threading.Thread | None = None

    # --- the master's main thread ---

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self.thread.start()

    def new_block(self) -> CounterBlock:
        return CounterBlock()

    def worker_started(self, pid: int, block: CounterBlock) -> None:
        with self.lock:
            self.blocks[pid] = block

    def worker_gone(self, pid: int, restart_reason: str | None) -> None:
        """Fold a reaped worker's counters into the totals; count its restart (None: not restarted)."""
        with self.lock:
            block = self.blocks.pop(pid, None)
            if block is not None:
                cells = block.cells
                retired = self.retired
                for index in TOTALS:
                    retired[index] += cells[index]
                if restart_reason == "crash" and cells[EXIT_REASON] in EXIT_REASONS:
                    restart_reason = EXIT_REASONS[cells[EXIT_REASON]]
                block.close()
            if restart_reason is not None:
                self.restarts[restart_reason] += 1

    def close_in_worker(self) -> None:
        """In a new worker: the master's socket and the other workers' blocks are not its own."""
        self.sock.close()
        for block in self.blocks.values():
            block.close()
        self.blocks = {}

    # --- the scraping thread ---

    def _serve(self) -> None:
        imported = False
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return  # closed: the master is stopping
            if not imported:
                with self.fork_guard:
                    import pronghorn.http  # noqa: F401

                    self.render()  # (whatever rendering imports)
                imported = True
            with client:
                client.settimeout(5.0)
                try:
                    self._answer(client)
                    # A worker forked meanwhile holds a copy of this descriptor: closing ours alone
                    # would not end the connection.
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _answer(self, client: socket.socket) -> None:
        from pronghorn.http import NEED_DATA, Limits, ProtocolError, RequestHead, RequestParser

        parser = RequestParser(Limits.from_settings())
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                client.sendall(exc.to_response())
                return
            if event is NEED_DATA:
                data = client.recv(8192)
                if not data:
                    return
                parser.feed(data)
            elif isinstance(event, RequestHead):
                break
            else:
                return
        if event.method not in (b"GET", b"HEAD") or event.path != b"/metrics":
            client.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        body = self.render()
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        client.sendall(head + (body if event.method == b"GET" else b""))

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)

    def snapshot(self) -> tuple[list[int], int, int, int, dict[str, int]]:
        """Totals (gone workers and live ones), in flight, open connections, live workers, restarts."""
        with self.lock:
            totals = list(self.retired)
            in_flight = connections = 0
            for block in self.blocks.values():
                cells = block.cells
                for index in TOTALS:
                    totals[index] += cells[index]
                in_flight += cells[IN_FLIGHT]
                connections += cells[OPEN_CONNECTIONS]
            return totals, in_flight, connections, len(self.blocks), dict(self.restarts)


class _Collector:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        totals, in_flight, connections, workers, restarts = self.exporter.snapshot()
        requests = CounterMetricFamily("pronghorn_requests", "Requests answered, by method and status.",
                                       labels=["method", "status"])
        for row, method in enumerate(METHODS):
            base = REQUESTS + row * STATUSES
            for status in range(STATUSES):
                count = totals[base + status]
                if count:
                    requests.add_metric([method.decode(), str(status)], count)
        yield requests
        cumulative, buckets = 0, []
        for index, bound in enumerate((*BUCKETS, float("inf"))):
            cumulative += totals[HISTOGRAM + index]
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily("pronghorn_request_duration_seconds", "Time from a request's head to the end "
                                    "of its response.", buckets=buckets, sum_value=totals[DURATION_SUM_US] / 1e6)
        yield GaugeMetricFamily("pronghorn_requests_in_flight", "Requests being run now.", value=in_flight)
        yield GaugeMetricFamily("pronghorn_open_connections", "Client connections open now.", value=connections)
        yield GaugeMetricFamily("pronghorn_workers", "Worker processes alive.", value=workers)
        restart_family = CounterMetricFamily("pronghorn_worker_restarts", "Workers replaced, by reason.",
                                             labels=["reason"])
        for reason, count in restarts.items():
            restart_family.add_metric([reason], count)
        yield restart_family
        backlog = GaugeMetricFamily("pronghorn_listen_backlog", "Connections waiting to be accepted (Linux).",
                                    labels=["listener"])
        for listener in self.exporter.listeners():
            depth = listener.queued_connections()
            if depth is not None:
                backlog.add_metric([str(listener)], depth)
        yield backlog
