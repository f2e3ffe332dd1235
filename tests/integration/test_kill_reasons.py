"""When the master SIGKILLs a worker itself, its log says why (not "Perhaps out of memory?")."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from serving import Server, free_port, pronghorn_cmd, running

SLEEPY_APP = '''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        open("in-flight", "w").write(str(os.getpid()))
        time.sleep(30)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''

OOM_GUESS = "Perhaps out of memory"


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "sleepyapp.py").write_text(SLEEPY_APP)
    return tmp_path


def _request_in_flight(app_dir: Path, port: int) -> tuple[socket.socket, int]:
    """Start a /sleep request and wait until the app is inside it; returns the client and worker pid."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n")
    marker = app_dir / "in-flight"
    deadline = time.monotonic() + 15
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the request never reached the app"
    return client, int(marker.read_text())


def _stop_with_request_in_flight(app_dir: Path, args: list[str], sig: int) -> tuple[Server, int, float, int]:
    port = free_port()
    with running(pronghorn_cmd("sleepyapp:app", "-b", f"127.0.0.1:{port}", *args), cwd=app_dir,
                 port=port) as server:
        client, worker = _request_in_flight(app_dir, port)
        with client:
            started = time.monotonic()
            server.signal(sig)
            code = server.wait(timeout=30)
            took = time.monotonic() - started
    return server, worker, took, code


def test_int_with_a_request_in_flight_logs_the_quick_stop_kill(app_dir: Path) -> None:
    # The gthread worker does not interrupt a running request on INT, so the master kills it.
    server, worker, took, code = _stop_with_request_in_flight(app_dir, ["-k", "gthread"], signal.SIGINT)
    out = server.output()
    assert code == 0
    assert took < 15  # the quick-stop limit (2 s), not the 30 s request
    assert f"Worker (pid:{worker}) killed: it did not stop within the quick-stop limit (2s)" in out, out
    assert OOM_GUESS not in out, out


def test_a_worker_that_stops_in_time_is_not_reported_killed(app_dir: Path) -> None:
    # The sync worker leaves its request at once on INT: nothing was killed, nothing to report.
    server, worker, took, code = _stop_with_request_in_flight(app_dir, ["-k", "sync"], signal.SIGINT)
    out = server.output()
    assert code == 0
    assert f"Worker exiting (pid: {worker})" in out, out
    assert f"Worker (pid:{worker})" not in out, out


def test_term_with_a_request_in_flight_logs_the_graceful_timeout_kill(app_dir: Path) -> None:
    server, worker, took, code = _stop_with_request_in_flight(app_dir, ["--graceful-timeout", "1"], signal.SIGTERM)
    out = server.output()
    assert code == 0
    assert took < 15
    assert f"Worker (pid:{worker}) killed: it did not stop within graceful_timeout (1s)" in out, out
    assert OOM_GUESS not in out, out


def test_a_worker_stuck_after_its_timeout_abort_is_killed_and_the_log_says_why(app_dir: Path) -> None:
    # The abort hook hangs, so SIGABRT does not end the worker and the master has to SIGKILL it.
    (app_dir / "conf.py").write_text("import time\ndef worker_abort(worker):\n    time.sleep(60)\n")
    port = free_port()
    args = ["sleepyapp:app", "-b", f"127.0.0.1:{port}", "-k", "sync", "-t", "2", "-c", "conf.py"]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        client, worker = _request_in_flight(app_dir, port)
        with client:
            out = server.wait_for_output(f"Worker (pid:{worker}) killed:", timeout=20)
    line = next(line for line in out.splitlines() if f"Worker (pid:{worker}) killed:" in line)
    assert "after WORKER TIMEOUT" in line, line
    assert f"WORKER TIMEOUT (pid:{worker})" in out
    assert OOM_GUESS not in out, out


def test_a_sigkill_the_master_did_not_send_still_suggests_out_of_memory(app_dir: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("sleepyapp:app", "-b", f"127.0.0.1:{port}"), cwd=app_dir, port=port) as server:
        out = server.wait_for_output("Booting worker with pid:")
        worker = int(re.findall(r"Booting worker with pid: (\d+)", out)[0])
        os.kill(worker, signal.SIGKILL)
        out = server.wait_for_output(f"Worker (pid:{worker}) was sent SIGKILL! {OOM_GUESS}?")
    assert f"Worker (pid:{worker}) killed:" not in out
