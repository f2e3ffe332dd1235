"""Metrics from real servers: StatsD datagrams read from a UDP socket of the test, and Prometheus
metrics scraped from the master, parsed by ``prometheus_client``, across two workers and a worker
killed in between."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving import WORKER_ARGS, children_of, free_port, http_get, pronghorn_cmd, running

APP = r'''
def app(environ, start_response):
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    start_response(status, [("Content-Length", "2")])
    return [b"ok"]
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "metricsapp.py").write_text(APP)
    return tmp_path


def _datagrams(sock: socket.socket, until: bytes, timeout: float = 10.0) -> list[bytes]:
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not any(until in line for line in seen):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            seen.extend(sock.recv(65536).split(b"\n"))
        except TimeoutError:
            raise AssertionError(f"{until!r} not received; got {seen}") from None
    return seen


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_statsd_datagrams(app_dir: Path, worker: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        statsd = f"127.0.0.1:{collector.getsockname()[1]}"
        port = free_port()
        cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--statsd-host", statsd,
                            "--statsd-prefix", "shop", "--dogstatsd-tags", "env:test,team:web", "--enable-backlog-metric",
                            *WORKER_ARGS[worker])
        with running(cmd, cwd=app_dir, port=port):
            seen = _datagrams(collector, b"shop.pronghorn.workers:2|g")
            seen += _datagrams(collector, b"shop.pronghorn.backlog:")  # every pass of the master's loop
            assert http_get(port, "/")[0] == 200
            assert http_get(port, "/missing")[0] == 404
            seen += _datagrams(collector, b"shop.pronghorn.request.status.404:")
    tags = b"|#env:test,team:web"
    assert b"shop.pronghorn.workers:2|g" + tags in seen
    assert b"shop.pronghorn.backlog:0|h" + tags in seen
    assert seen.count(b"shop.pronghorn.requests:1|c|@1.0" + tags) == 2
    assert b"shop.pronghorn.request.status.200:1|c|@1.0" + tags in seen
    assert b"shop.pronghorn.request.status.404:1|c|@1.0" + tags in seen
    durations = [line for line in seen if line.startswith(b"shop.pronghorn.request.duration:")]
    assert len(durations) == 2 and all(line.endswith(b"|ms" + tags) for line in durations)
    assert 0 <= float(durations[0].split(b":")[1].split(b"|")[0]) < 1000


def test_statsd_over_a_unix_socket(app_dir: Path) -> None:
    path = app_dir / "statsd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as collector:
        collector.bind(str(path))
        port = free_port()
        cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--statsd-host", f"unix://{path}")
        with running(cmd, cwd=app_dir, port=port):
            assert http_get(port, "/")[0] == 200
            assert b"pronghorn.requests:1|c|@1.0" in _datagrams(collector, b"pronghorn.request.status.200:")


def test_statsd_counts_log_messages_and_custom_metrics(app_dir: Path) -> None:
    (app_dir / "pronghorn.conf.py").write_text(
        "def when_ready(server):\n"
        "    server.log.warning('a warning')\n"
        "    server.log.info('deploy', extra={'metric': 'deploys', 'value': 1, 'mtype': 'counter'})\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        port = free_port()
        cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1",
                            "--statsd-host", f"127.0.0.1:{collector.getsockname()[1]}")
        with running(cmd, cwd=app_dir, port=port):
            seen = _datagrams(collector, b"deploys:")
    assert b"pronghorn.log.warning:1|c|@1.0" in seen
    assert b"deploys:1|c|@1.0" in seen


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _until(port: int, wanted: dict[tuple[str, tuple[tuple[str, str], ...]], float], timeout: float = 20.0,
           ) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scrape until every (name, labels) total has its wanted value; the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        samples = _scrape(port)
        if all(_total(samples, name, **dict(labels)) == value for (name, labels), value in wanted.items()):
            return samples
        assert time.monotonic() < deadline, (wanted, samples)
        time.sleep(0.1)


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(value for found, value in samples.get(name, []) if all(found.get(k) == v for k, v in labels.items()))


@pytest.fixture(params=["sync", "gthread"])
def prometheus_server(app_dir: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, int, object]]:
    port, metrics_port = free_port(), free_port()
    cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--metrics-bind",
                        f"127.0.0.1:{metrics_port}", *WORKER_ARGS[request.param])
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_port(metrics_port)
        yield port, metrics_port, server


def test_prometheus_counts_every_request_across_workers_and_a_killed_worker(
        prometheus_server: tuple[int, int, object]) -> None:
    port, metrics_port, server = prometheus_server
    _until(metrics_port, {("pronghorn_workers", ()): 2})
    for _ in range(30):
        assert http_get(port, "/")[0] == 200
    for _ in range(5):
        assert http_get(port, "/missing")[0] == 404
    # Counts reach the master on each worker's tick (at most half a second later).
    before = _until(metrics_port, {("pronghorn_requests_total", (("method", "GET"), ("status", "200"))): 30,
                                   ("pronghorn_requests_total", (("method", "GET"), ("status", "404"))): 5})
    assert _total(before, "pronghorn_request_duration_seconds_count") == 35
    assert _total(before, "pronghorn_request_duration_seconds_bucket", le="+Inf") == 35
    assert _total(before, "pronghorn_workers") == 2
    assert _total(before, "pronghorn_requests_in_flight") == 0

    workers = children_of(server.pid)  # type: ignore[attr-defined]
    assert len(workers) == 2
    import os

    os.kill(workers[0], signal.SIGKILL)
    after = _until(metrics_port, {("pronghorn_worker_restarts_total", (("reason", "crash"),)): 1,
                                  ("pronghorn_workers", ()): 2})
    assert _total(after, "pronghorn_requests_total", method="GET", status="200") == 30  # the dead one's kept
    for _ in range(10):
        assert http_get(port, "/")[0] == 200
    final = _until(metrics_port, {("pronghorn_requests_total", (("method", "GET"), ("status", "200"))): 40})
    assert _total(final, "pronghorn_request_duration_seconds_count") == 45
    for reason in ("timeout", "max_requests", "memory", "reload"):
        assert _total(final, "pronghorn_worker_restarts_total", reason=reason) == 0
    assert "pronghorn_listen_backlog" in final


def test_prometheus_counts_restarts_by_reason_and_open_connections(app_dir: Path) -> None:
    port, metrics_port = free_port(), free_port()
    cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--max-requests", "3",
                        "--metrics-bind", f"127.0.0.1:{metrics_port}")
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_port(metrics_port)
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            held.recv(65536)
            _until(metrics_port, {("pronghorn_open_connections", ()): 1})  # sampled on the worker's tick
        finally:
            held.close()
        for _ in range(4):  # the first worker leaves after its third request (and the held one's)
            assert http_get(port, "/")[0] == 200
        _until(metrics_port, {("pronghorn_worker_restarts_total", (("reason", "max_requests"),)): 1,
                              ("pronghorn_workers", ()): 1})
        server.signal(signal.SIGHUP)
        samples = _until(metrics_port, {("pronghorn_worker_restarts_total", (("reason", "reload"),)): 1,
                                        ("pronghorn_requests_total", ()): 5})
    assert _total(samples, "pronghorn_worker_restarts_total", reason="max_requests") == 1
    assert _total(samples, "pronghorn_worker_restarts_total", reason="crash") == 0


SLOW_APP = r'''
import time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        time.sleep(30)
    if environ["PATH_INFO"] == "/grow":
        global ballast
        ballast = bytearray(64 << 20)  # touched: resident
        ballast[::4096] = b"x" * len(ballast[::4096])
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_prometheus_counts_timeout_and_memory_restarts(app_dir: Path) -> None:
    (app_dir / "slowapp.py").write_text(SLOW_APP)
    port, metrics_port = free_port(), free_port()
    cmd = pronghorn_cmd("slowapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "sync", "--timeout", "2",
                        "--max-worker-memory", "60", "--metrics-bind", f"127.0.0.1:{metrics_port}")
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_port(metrics_port)
        _until(metrics_port, {("pronghorn_workers", ()): 1})
        with socket.create_connection(("127.0.0.1", port), timeout=15) as stuck:
            stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):  # read until the aborted worker's connection closes
                while stuck.recv(65536):
                    pass
        _until(metrics_port, {("pronghorn_worker_restarts_total", (("reason", "timeout"),)): 1,
                              ("pronghorn_workers", ()): 1})
        assert http_get(port, "/grow")[0] == 200  # then over max_worker_memory: it leaves
        samples = _until(metrics_port, {("pronghorn_worker_restarts_total", (("reason", "memory"),)): 1})
    assert _total(samples, "pronghorn_worker_restarts_total", reason="crash") == 0


def test_a_hup_that_moves_metrics_bind_is_refused(app_dir: Path) -> None:
    port, metrics_port = free_port(), free_port()
    conf = app_dir / "pronghorn.conf.py"
    conf.write_text(f"metrics_bind = '127.0.0.1:{metrics_port}'\n")
    with running(pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1"), cwd=app_dir,
                 port=port) as server:
        server.wait_for_port(metrics_port)
        conf.write_text(f"metrics_bind = '127.0.0.1:{free_port()}'\n")
        server.signal(signal.SIGHUP)
        server.wait_for_output("Reload failed, keeping the current configuration: Invalid value for metrics_bind")
        assert "pronghorn_workers" in _scrape(metrics_port)


def test_a_scrape_ends_even_when_a_worker_was_forked_during_it(app_dir: Path) -> None:
    """A worker forked while the master answers a scrape holds a copy of that connection: the
    master must end the connection itself, or a client reading to the end waits for ever."""
    port, metrics_port = free_port(), free_port()
    cmd = pronghorn_cmd("metricsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--metrics-bind",
                        f"127.0.0.1:{metrics_port}")
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_port(metrics_port)
        before = set(children_of(server.pid))
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as scrape:
            scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\n")  # the head is not complete yet
            time.sleep(0.3)  # the master's thread has accepted it and waits for the rest
            server.signal(signal.SIGTTIN)
            deadline = time.monotonic() + 15
            while not set(children_of(server.pid)) - before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert set(children_of(server.pid)) - before, "no worker was forked"
            scrape.sendall(b"\r\n")
            data = b""
            while chunk := scrape.recv(65536):  # socket.timeout here: the connection never ended
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and b"pronghorn_workers" in data
