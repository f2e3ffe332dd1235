"""The gevent worker in real servers: selected as Gunicorn configs select it (plain, with a config file
that monkey-patches first, by Gunicorn's dotted name), many sleeping requests and outbound socket
calls at once in one worker, keep-alive, the limits and timeouts, and graceful TERM and HUP under load
without a failed request."""

from __future__ import annotations

import concurrent.futures
import http.client
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import Server, child_env, free_port, http_get, pronghorn_cmd, running

pytest.importorskip("gevent")

APP = r'''
import socket
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(1)
    elif path == "/slow":
        time.sleep(5)
    elif path == "/outbound":  # a socket call out of the app: cooperative once patched
        with socket.create_connection(("127.0.0.1", int(environ["QUERY_STRING"])), timeout=10) as out:
            out.sendall(b"ping")
            assert out.recv(4) == b"pong"
    elif path == "/upload":
        size = len(environ["wsgi.input"].read())
        body = str(size).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''

CONFIGS = {
    "plain": "worker_class = 'gevent'\n",
    "self-patched": "from gevent import monkey\nmonkey.patch_all()\n\nworker_class = 'gevent'\n",
    "dotted": "worker_class = 'gunicorn.workers.ggevent.GeventWorker'\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "geventapp.py").write_text(APP)
    return tmp_path


def _server(project: Path, config: str, *args: str) -> tuple[int, list[str]]:
    (project / "gunicorn.conf.py").write_text(config)
    port = free_port()
    return port, pronghorn_cmd("geventapp:app", "-b", f"127.0.0.1:{port}", *args)


def _get(port: int, path: str, timeout: float = 20) -> int:
    return http_get(port, path, timeout=timeout)[0]


def _many(port: int, path: str, count: int) -> tuple[list[int], float]:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda _: _get(port, path), range(count)))
    return statuses, time.monotonic() - started


@pytest.mark.parametrize("config", CONFIGS)
def test_100_sleeping_requests_in_one_worker_take_one_second(project: Path, config: str) -> None:
    port, cmd = _server(project, CONFIGS[config], "-w", "1")
    with running(cmd, cwd=project, port=port) as server:
        server.wait_for_output("Using worker: gevent")
        _get(port, "/")  # booted
        statuses, took = _many(port, "/sleep", 100)
    assert statuses == [200] * 100
    assert took < 2.0, took


@pytest.fixture
def slow_peer() -> Iterator[int]:
    """A TCP server of the test that answers "pong" a second after each "ping", many at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            if conn.recv(4) == b"ping":
                time.sleep(1)
                conn.sendall(b"pong")

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_outbound_socket_calls_wait_together(project: Path, slow_peer: int) -> None:
    port, cmd = _server(project, CONFIGS["plain"], "-w", "1")
    with running(cmd, cwd=project, port=port):
        statuses, took = _many(port, f"/outbound?{slow_peer}", 30)
    assert statuses == [200] * 30
    assert took < 2.5, took


def test_keep_alive_limits_and_timeouts(project: Path) -> None:
    port, cmd = _server(project, CONFIGS["plain"], "-w", "1", "--limit-request-body", "1000", "--request-timeout", "1",
                        "--header-timeout", "1")
    with running(cmd, cwd=project, port=port) as server:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(3):  # one connection, three requests
                conn.request("GET", "/")
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, b"ok")
            conn.request("POST", "/upload", body=b"x" * 500)
            assert conn.getresponse().read() == b"500"
        finally:
            conn.close()
        assert http_get(port, "/upload", headers={"Content-Length": "5000"})[0] == 413
        assert _get(port, "/slow") == 504  # request_timeout
        server.wait_for_output("Request timed out after 1s")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a head that never ends
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 3


def test_eventlet_and_tornado_are_refused_with_what_to_use(project: Path) -> None:
    for name, advice in (("eventlet", "gevent"), ("tornado", "gthread")):
        result = subprocess.run(pronghorn_cmd("geventapp:app", "-k", name, "--check-config"), cwd=project,
                                env=child_env(), capture_output=True, text=True, timeout=60)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: Invalid value for worker_class: '{name}' (not available") and advice in lines[0]


class _Load:
    """Threads sending requests on kept-alive connections until stopped; failures are counted."""

    def __init__(self, port: int, threads: int = 8) -> None:
        self.port = port
        self.ok = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or body != b"ok":
                    self.failed.append(f"{response.status} {body!r}")
                self.ok += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                self.failed.append(repr(exc))
                conn.close()

    def __enter__(self) -> _Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(20)


@pytest.mark.parametrize("config", ["plain", "self-patched"])
def test_hup_and_term_under_load_fail_no_request(project: Path, config: str) -> None:
    port, cmd = _server(project, CONFIGS[config], "-w", "2")
    server = Server(cmd, cwd=project)
    try:
        server.wait_for_port(port)
        _get(port, "/")
        with _Load(port) as load:
            time.sleep(1)
            server.signal(signal.SIGHUP)
            server.wait_for_output("Hang up: reloading")
            time.sleep(3)
        assert load.failed == [] and load.ok > 100, (load.failed[:5], load.ok)
        # TERM with requests in hand: each is answered before the worker leaves.
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            pending = [pool.submit(_get, port, "/sleep") for _ in range(20)]
            time.sleep(0.4)
            server.signal(signal.SIGTERM)
            assert [future.result() for future in pending] == [200] * 20
        assert server.wait(timeout=20) == 0
    finally:
        server.stop()


def test_max_requests_recycles_the_worker_without_a_failed_request(project: Path) -> None:
    port, cmd = _server(project, CONFIGS["plain"], "-w", "1", "--max-requests", "5")
    with running(cmd, cwd=project, port=port) as server:
        with _Load(port, threads=2) as load:
            deadline = time.monotonic() + 15
            while server.output().count("Autorestarting worker") < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert server.output().count("Autorestarting worker") >= 3
    assert load.failed == [] and load.ok >= 15, (load.failed[:5], load.ok)


def test_a_patched_process_refuses_a_thread_pool_beside_the_event_loop(project: Path) -> None:
    (project / "gunicorn.conf.py").write_text("from gevent import monkey\nmonkey.patch_all()\n\nthreads = 4\n")
    result = subprocess.run(pronghorn_cmd("geventapp:app", "-b", f"127.0.0.1:{free_port()}"), cwd=project,
                            env=child_env(), capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: Invalid value for threads: 4 (gevent has monkey-patched threading")


def test_worker_connections_caps_the_connections_served_at_once(project: Path) -> None:
    port, cmd = _server(project, CONFIGS["plain"], "-w", "1", "--worker-connections", "2")
    with running(cmd, cwd=project, port=port):
        _get(port, "/")
        statuses, took = _many(port, "/sleep", 4)  # two at a time: two rounds of a second
    assert statuses == [200] * 4
    assert 1.9 < took < 3.5, took
