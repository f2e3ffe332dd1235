"""The process model under signals and load: reloads, upgrades and shutdowns that drop nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving import Load, Server, free_port, http_get, pronghorn_cmd, running

PID_APP = '''
import os, time

LEAK = []

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(1.0)
    elif path == "/veryslow":
        time.sleep(20.0)
    elif path == "/leak":
        LEAK.append(bytearray(2 * 1024 * 1024))  # 2 MiB a request, kept
    body = f"{os.getpid()}|{path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


# The process model must hold for both worker classes.
WORKERS = ["sync", "gthread"]


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pidapp.py").write_text(PID_APP)
    return tmp_path


def _worker_pids(server: Server) -> set[int]:
    """Workers alive right now, from the boot/exit lines of the log."""
    out = server.output()
    booted = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", out)}
    gone = {int(p) for p in re.findall(r"Worker exiting \(pid: (\d+)\)", out)}
    gone |= {int(p) for p in re.findall(r"Worker \(pid:(\d+)\)", out)}
    return booted - gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _serves(port: int) -> bool:
    """True once the server answers 200 (a refused or reset connection: not yet)."""
    try:
        return http_get(port, timeout=5)[0] == 200
    except OSError:
        return False


def _note_pid(port: int, answered: set[bytes]) -> set[bytes]:
    """Add the pid of the worker answering one request (PID_APP's body) to ``answered``."""
    try:
        answered.add(http_get(port, timeout=5)[2].split(b"|")[0])
    except OSError:
        pass
    return answered


def _wait(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("worker", WORKERS)
def test_hup_twice_under_load_drops_nothing_and_replaces_every_worker(app_dir: Path, worker: str) -> None:
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "-k", worker), cwd=app_dir,
                 port=port) as server:
        with Load(port, concurrency=20) as load:
            load.wait_for(50)
            first = load.pids_since(0)
            for round_number in (1, 2):
                before = load.ok
                server.signal(signal.SIGHUP)
                assert _wait(lambda: server.output().count("Handling signal: hup") >= round_number)
                assert _wait(lambda: len(_worker_pids(server)) == 2 and server.output().count("Booting worker") >= 2 + 2 * round_number), server.output()[-3000:]
                load.wait_for(before + 100)
            time.sleep(0.5)
            after = load.pids_since(time.monotonic() - 0.3)
        assert load.failures == [], load.failures[:5]
        assert load.ok > 200
        assert after and not (after & first), (first, after)
        assert server.output().count("Booting worker with pid") == 6


@pytest.mark.parametrize("worker", WORKERS)
def test_term_answers_in_flight_and_queued_requests(app_dir: Path, worker: str) -> None:
    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--graceful-timeout", "20", "-k", worker]
    if worker == "gthread":
        args += ["--threads", "2"]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(http_get, port, "/slow", timeout=30) for _ in range(6)]
            time.sleep(0.4)  # two in flight, four waiting in the backlog
            server.signal(signal.SIGTERM)
            statuses = [future.result()[0] for future in futures]
        assert statuses == [200] * 6
        assert server.wait(timeout=20) == 0


def test_master_killed_leaves_no_worker(app_dir: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "3"), cwd=app_dir, port=port) as server:
        assert _wait(lambda: len(_worker_pids(server)) == 3)
        workers = _worker_pids(server)
        server.signal(signal.SIGKILL)
        server.wait(timeout=5)
        time.sleep(5)
        assert [pid for pid in workers if _alive(pid)] == []


@pytest.mark.parametrize("worker", WORKERS)
def test_usr2_upgrade_then_term_old_master_under_load(app_dir: Path, worker: str) -> None:
    port = free_port()
    pidfile = app_dir / "app.pid"
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "-p", str(pidfile), "-k", worker]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        old_master = server.pid
        with Load(port, concurrency=10) as load:
            load.wait_for(30)
            server.signal(signal.SIGUSR2)
            assert _wait(lambda: Path(f"{pidfile}.2").exists(), 15), server.output()
            new_master = int(Path(f"{pidfile}.2").read_text())
            assert new_master != old_master
            assert _wait(lambda: server.output().count("Booting worker with pid") >= 4, 15)
            time.sleep(0.5)
            before = load.ok
            os.kill(old_master, signal.SIGTERM)
            assert server.wait(timeout=20) == 0
            assert _wait(lambda: pidfile.exists() and pidfile.read_text().strip() == str(new_master), 10)
            assert not Path(f"{pidfile}.2").exists()
            load.wait_for(before + 50)
        assert load.failures == [], load.failures[:5]
        assert _alive(new_master)
        os.kill(new_master, signal.SIGTERM)
        assert _wait(lambda: not _alive(new_master), 15)


@pytest.mark.parametrize("worker", WORKERS)
def test_max_requests_and_memory_recycle_under_load(app_dir: Path, worker: str) -> None:
    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--max-requests", "40", "--max-requests-jitter", "5",
            "-k", worker]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        with Load(port, concurrency=10) as load:
            load.wait_for(400, timeout=30)
        assert load.failures == [], load.failures[:5]
        assert len({pid for _, pid in load.pids}) >= 6
        assert "Autorestarting worker after current request." in server.output()

    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--max-worker-memory", "80", "-k", worker]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        with Load(port, concurrency=10, path="/leak") as load:
            assert _wait(lambda: server.output().count("is over max_worker_memory") >= 2, 30), server.output()[-2000:]
            load.wait_for(load.ok + 20)
        assert load.failures == [], load.failures[:5]
        assert len({pid for _, pid in load.pids}) >= 3


def test_usr1_reopens_log_files_in_master_and_workers(app_dir: Path) -> None:
    port = free_port()
    log = app_dir / "error.log"
    access = app_dir / "access.log"
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "--error-logfile", str(log), "--access-logfile", str(access)]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        assert http_get(port)[0] == 200
        assert _wait(lambda: access.exists() and access.read_text().count("GET /") == 1)
        log.rename(app_dir / "error.log.1")
        access.rename(app_dir / "access.log.1")
        server.signal(signal.SIGUSR1)
        assert _wait(log.exists)
        server.signal(signal.SIGTTIN)  # anything the master logs after the reopen lands in the new file
        assert _wait(lambda: "Handling signal: ttin" in log.read_text())
        assert "Handling signal: usr1" in (app_dir / "error.log.1").read_text()
        assert http_get(port, "/after")[0] == 200
        assert _wait(lambda: access.exists() and "GET /after" in access.read_text())


def test_winch_is_ignored_when_not_daemonized(app_dir: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-w", "2"), cwd=app_dir, port=port) as server:
        assert _wait(lambda: len(_worker_pids(server)) == 2)
        server.signal(signal.SIGWINCH)
        time.sleep(0.5)
        assert len(_worker_pids(server)) == 2 and http_get(port)[0] == 200


@pytest.mark.parametrize(("sig", "hook", "code"), [
    (signal.SIGTERM, None, 0), (signal.SIGINT, "worker_int", 0), (signal.SIGQUIT, "worker_int", 0),
    (signal.SIGABRT, "worker_abort", 1),
])
def test_worker_signals(app_dir: Path, sig: int, hook: str | None, code: int) -> None:
    (app_dir / "conf.py").write_text(
        "def worker_int(worker):\n    worker.log.info('hook worker_int ran')\n"
        "def worker_abort(worker):\n    worker.log.info('hook worker_abort ran')\n"
    )
    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-c", "conf.py"]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        worker = int(http_get(port)[2].split(b"|")[0])
        os.kill(worker, sig)
        assert _wait(lambda: not _alive(worker))
        new_worker = int(http_get(port)[2].split(b"|")[0])
        out = server.output()
    assert new_worker != worker
    if hook:
        assert f"hook {hook} ran" in out
    if code:
        assert f"Worker (pid:{worker}) exited with code {code}" in out


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT])
def test_quick_stop_of_a_busy_gthread_worker_is_clean(app_dir: Path, sig: int) -> None:
    # Under load the signal lands inside a protocol callback; the worker must leave its loop rather
    # than raise SystemExit into it (uvloop would log a fatal transport error and carry on).
    (app_dir / "conf.py").write_text("def worker_int(worker):\n    worker.log.info('hook worker_int ran')\n")
    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "-k", "gthread", "-c", "conf.py"]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        worker = int(http_get(port)[2].split(b"|")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            # Thousands of pipelined requests: the worker answers them from inside one callback.
            client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 20000)
            client.recv(65536)
            os.kill(worker, sig)
            assert _wait(lambda: not _alive(worker))
        assert int(http_get(port)[2].split(b"|")[0]) != worker
        out = server.output()
    assert "hook worker_int ran" in out
    assert "Fatal error" not in out and "Traceback" not in out
    assert f"Worker (pid:{worker}) was sent" not in out  # it ended by itself, not by SIGKILL


def test_worker_usr1_reopens_its_access_log(app_dir: Path) -> None:
    port = free_port()
    access = app_dir / "access.log"
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "--access-logfile", str(access)),
                 cwd=app_dir, port=port):
        worker = int(http_get(port)[2].split(b"|")[0])
        access.rename(app_dir / "access.log.1")
        os.kill(worker, signal.SIGUSR1)
        time.sleep(0.3)
        assert http_get(port, "/fresh")[0] == 200
        assert _wait(lambda: access.exists() and "GET /fresh" in access.read_text())
        assert _alive(worker)


def test_unix_socket_survives_upgrade(app_dir: Path) -> None:
    path = app_dir / "app.sock"
    with running(pronghorn_cmd("pidapp:app", "-b", f"unix:{path}"), cwd=app_dir) as server:
        server.wait_for_output("Booting worker")
        server.signal(signal.SIGUSR2)
        assert _wait(lambda: server.output().count("Booting worker with pid") >= 2, 15)
        old = server.pid
        os.kill(old, signal.SIGTERM)
        server.wait(timeout=20)
        assert path.exists(), "the new master still serves the socket file"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 200")


PRELOAD_APP = '''
import gc, os

IMPORTED_IN = os.getpid()

def app(environ, start_response):
    body = f"{os.getpid()}|{IMPORTED_IN}|{gc.get_freeze_count()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


def test_preload_imports_once_in_the_master_and_freezes_the_heap(tmp_path: Path) -> None:
    (tmp_path / "preapp.py").write_text(PRELOAD_APP)
    port = free_port()
    with running(pronghorn_cmd("preapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--preload"), cwd=tmp_path,
                 port=port) as server:
        worker, imported_in, frozen = map(int, http_get(port)[2].split(b"|"))
        assert imported_in == server.pid != worker
        assert frozen > 0


def test_crashed_worker_is_replaced_within_two_seconds(app_dir: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}"), cwd=app_dir, port=port) as server:
        worker = int(http_get(port)[2].split(b"|")[0])
        started = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        assert _wait(lambda: server.output().count("Booting worker with pid") == 2, 2.0)
        assert http_get(port)[0] == 200
        assert time.monotonic() - started < 3.0


def test_unknown_children_are_reaped_quietly(app_dir: Path) -> None:
    # The master adopts a child that is not a worker (as PID 1 in a container adopts orphans).
    (app_dir / "conf.py").write_text(
        "import os\n"
        "def when_ready(server):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(7)\n"
        "    server.log.info('forked stranger %s', pid)\n"
    )
    port = free_port()
    with running(pronghorn_cmd("pidapp:app", "-b", f"127.0.0.1:{port}", "-c", "conf.py"), cwd=app_dir,
                 port=port) as server:
        stranger = int(re.search(r"forked stranger (\d+)", server.wait_for_output("forked stranger")).group(1))  # type: ignore[union-attr]
        assert _wait(lambda: not Path(f"/proc/{stranger}").exists(), 5), "the stranger was reaped"
        assert http_get(port)[0] == 200
        out = server.output()
    assert f"({stranger})" not in out and f"pid:{stranger}" not in out


def test_umask_applies_to_unix_socket(app_dir: Path) -> None:
    path = app_dir / "app.sock"
    with running(pronghorn_cmd("pidapp:app", "-b", f"unix:{path}", "-m", "077"), cwd=app_dir) as server:
        server.wait_for_output("Listening at: unix:")
        assert path.stat().st_mode & 0o777 == 0o700


def test_winch_stops_workers_of_a_daemonized_master(app_dir: Path) -> None:
    import subprocess
    import sys

    from serving import child_env

    port = free_port()
    pidfile = app_dir / "d.pid"
    launcher = subprocess.run(
        [sys.executable, "-m", "pronghorn", "pidapp:app", "-D", "-b", f"127.0.0.1:{port}", "-w", "2", "-p", str(pidfile),
         "--error-logfile", str(app_dir / "d.log")],
        cwd=app_dir, env=child_env(), timeout=30,
    )
    assert launcher.returncode == 0
    assert _wait(pidfile.exists)
    master = int(pidfile.read_text())
    try:
        # Both workers answering, not only booted: a worker stopped before it has set up its signal
        # handlers ends without its "Worker exiting" line (seen once on a loaded machine).
        answered: set[bytes] = set()
        assert _wait(lambda: len(_note_pid(port, answered)) == 2)
        log = app_dir / "d.log"
        os.kill(master, signal.SIGWINCH)
        assert _wait(lambda: log.read_text().count("Worker exiting") == 2)
        assert _alive(master)
        with pytest.raises(OSError):
            http_get(port, timeout=2)
        os.kill(master, signal.SIGHUP)  # HUP brings workers back (the rollback of an upgrade)
        assert _wait(lambda: _serves(port))
    finally:
        os.kill(master, signal.SIGTERM)
        if not _wait(lambda: not _alive(master), 10):
            os.kill(master, signal.SIGKILL)


def test_int_during_graceful_stop_switches_to_quick(app_dir: Path) -> None:
    port = free_port()
    args = ["pidapp:app", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "30"]
    with running(pronghorn_cmd(*args), cwd=app_dir, port=port) as server:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: http_get(port, "/veryslow", timeout=30))
            time.sleep(0.5)
            server.signal(signal.SIGTERM)
            time.sleep(0.5)
            started = time.monotonic()
            server.signal(signal.SIGINT)
            assert server.wait(timeout=10) == 0
            assert time.monotonic() - started < 4
            with pytest.raises(Exception):
                pending.result()
        assert "Quick stop requested during a graceful one." in server.output()


def test_reload_with_an_unbindable_address_keeps_serving(app_dir: Path) -> None:
    port = free_port()
    conf = app_dir / "conf.py"
    conf.write_text(f"bind = '127.0.0.1:{port}'\n")
    with running(pronghorn_cmd("pidapp:app", "-c", "conf.py"), cwd=app_dir, port=port) as server:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            conf.write_text(f"bind = '127.0.0.1:{taken.getsockname()[1]}'\n")
            server.signal(signal.SIGHUP)
            assert _wait(lambda: "keeping the old ones" in server.output())
        assert http_get(port)[0] == 200
