"""What the minimal arbiter already does: max_requests recycling, heartbeat timeout, TTIN/TTOU, pidfile."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from serving import free_port, http_get, pronghorn_cmd, running

HANGING_APP = '''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        time.sleep(60)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


def _pid(port: int, path: str = "/") -> int:
    status, _, body = http_get(port, path)
    assert status == 200
    return int(body)


def test_max_requests_recycles_the_worker(tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(HANGING_APP)
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "--max-requests", "3"), cwd=tmp_path,
                 port=port) as server:
        pids = [_pid(port) for _ in range(7)]
        out = server.output()
    assert pids[0] == pids[1] == pids[2] and pids[3] == pids[4] == pids[5]
    assert len(set(pids)) == 3
    assert out.count("Autorestarting worker after current request.") >= 2


def test_hung_worker_is_aborted_and_replaced(tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(HANGING_APP)
    (tmp_path / "conf.py").write_text(
        "def worker_abort(worker):\n    worker.log.info('worker_abort hook ran in %s', worker.pid)\n"
    )
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-t", "2", "-c", "conf.py"), cwd=tmp_path,
                 port=port) as server:
        first = _pid(port)
        started = time.monotonic()
        try:
            http_get(port, "/hang", timeout=15)
        except (OSError, IndexError):
            pass  # the connection dies with the worker, without a response
        out = server.wait_for_output(f"WORKER TIMEOUT (pid:{first})", timeout=10)
        server.wait_for_output("worker_abort hook ran", timeout=10)
        assert time.monotonic() - started < 10
        second = _pid(port)
    assert second != first
    assert "WORKER TIMEOUT" in out


def test_ttin_ttou_and_pidfile(tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(HANGING_APP)
    pidfile = tmp_path / "app.pid"
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "-p", str(pidfile)), cwd=tmp_path,
                 port=port) as server:
        assert pidfile.read_text().strip() == str(server.pid)
        server.wait_for_output("Booting worker")
        server.signal(signal.SIGTTIN)
        deadline = time.monotonic() + 10
        while server.output().count("Booting worker with pid") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.output().count("Booting worker with pid") == 3
        oldest = re.findall(r"Booting worker with pid: (\d+)", server.output())[0]
        server.signal(signal.SIGTTOU)
        server.wait_for_output(f"Worker exiting (pid: {oldest})", timeout=10)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    assert not pidfile.exists()
    booted = re.findall(r"Booting worker with pid: (\d+)", server.output())
    assert len(booted) == 3
