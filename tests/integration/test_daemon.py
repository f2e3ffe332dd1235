"""``-D``: the launching command returns at once and a detached master keeps serving.

The daemon is not the test's child: it is found through its pidfile and stopped by that pid (its
workers are stopped by their pids too if the master leaves any behind).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from serving import child_env, free_port, http_get, pronghorn_cmd

APP = '''
import os

def app(environ, start_response):
    body = f"pid={os.getpid()} ppid={os.getppid()} cwd={os.getcwd()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''



def _state(pid: int) -> str | None:
    """The process state letter from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaps it if it happens to be our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in (None, "Z")  # a zombie nobody reaps has still exited


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[2])


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _stop(pid: int, grace: float = 10.0) -> bool:
    """TERM ``pid``, KILL it after ``grace`` seconds; True if it exited on TERM."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return False


def _wait_for_pid(pidfile: Path, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        time.sleep(0.05)
    raise AssertionError(f"no pid in {pidfile} within {timeout}s")


def _get_when_listening(port: int, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, body = http_get(port, "/")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        assert status == 200
        return body


@pytest.mark.parametrize("inherit_stdio", [False, True], ids=["stdio-to-devnull", "stdio-inherited"])
def test_daemon_detaches_serves_and_stops_by_pidfile_pid(tmp_path: Path, inherit_stdio: bool) -> None:
    (tmp_path / "daemonapp.py").write_text(APP)
    port = free_port()
    pidfile = tmp_path / "run" / "pronghorn.pid"
    pidfile.parent.mkdir()
    launcher_log = tmp_path / "launcher.log"
    # A relative pidfile path: the daemon keeps the working directory it was started in.
    args = ["daemonapp:app", "-D", "-b", f"127.0.0.1:{port}", "-p", "run/pronghorn.pid"]
    if inherit_stdio:
        args.append("--enable-stdio-inheritance")

    launcher = None
    daemon_pid: int | None = None
    workers: set[int] = set()
    exited_on_term = False
    leftovers: list[int] = []
    try:
        with open(launcher_log, "wb") as log:
            launcher = subprocess.Popen(
                pronghorn_cmd(*args), cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started = time.monotonic()
        assert launcher.wait(timeout=10) == 0, launcher_log.read_text()
        assert time.monotonic() - started < 10

        daemon_pid = _wait_for_pid(pidfile)
        assert daemon_pid != launcher.pid
        assert _alive(daemon_pid)

        body = _get_when_listening(port).decode()
        fields = dict(item.split("=", 1) for item in body.split(" "))
        assert int(fields["ppid"]) == daemon_pid  # the worker is the daemon master's child
        assert fields["cwd"] == str(tmp_path)
        workers = _children(daemon_pid)
        assert int(fields["pid"]) in workers

        if inherit_stdio:  # the master's log goes on reaching the launcher's stdout after it exited
            deadline = time.monotonic() + 10
            while "Booting worker" not in launcher_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "Booting worker" in launcher_log.read_text()
        else:
            assert "Booting worker" not in launcher_log.read_text()
    finally:
        if launcher is not None and launcher.poll() is None:  # not detached: stop it and its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=10)
        if daemon_pid is not None:
            exited_on_term = _stop(daemon_pid)
            leftovers = [pid for pid in workers if _alive(pid)]
            for pid in leftovers:
                _stop(pid, grace=1.0)
    assert daemon_pid is not None and not _alive(daemon_pid)
    assert exited_on_term, "the daemon needed SIGKILL"
    assert not leftovers, f"workers {leftovers} outlived the master"
    assert not pidfile.exists()
