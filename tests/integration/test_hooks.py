"""Server hooks given in a config file fire where Gunicorn fires them; a raising hook is only logged."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from serving import free_port, http_get, pronghorn_cmd, running

HOOKS_CONFIG = '''
import json, os

RECORD = {record!r}

def _record(name, *details):
    with open(RECORD, "a") as handle:
        handle.write(json.dumps([name, os.getpid(), *map(str, details)]) + "\\n")

workers = 2

def on_starting(server): _record("on_starting")
def when_ready(server): _record("when_ready", len(server.listeners))
def pre_fork(server, worker): _record("pre_fork", worker.age)
def post_fork(server, worker): _record("post_fork", worker.pid)
def post_worker_init(worker): _record("post_worker_init", callable(worker.wsgi))
def pre_request(worker, req): _record("pre_request", req.method, req.path)
def post_request(worker, req, environ, resp): _record("post_request", req.path, resp.status, environ["PATH_INFO"])
def worker_int(worker): _record("worker_int")
def worker_exit(server, worker): _record("worker_exit", worker.pid)
def child_exit(server, worker): _record("child_exit", worker.pid)
def nworkers_changed(server, new_value, old_value): _record("nworkers_changed", new_value, old_value)
def on_exit(server): _record("on_exit")
'''

ALL_HOOKS = {
    "on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init", "pre_request", "post_request",
    "worker_int", "worker_exit", "child_exit", "nworkers_changed", "on_exit",
}


def _records(path: Path) -> list[list[str]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(path: Path, name: str, count: int = 1, timeout: float = 10.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in _records(path) if r[0] == name]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"hook {name} fired fewer than {count} times: {_records(path)}")


def test_every_hook_fires(project: Path) -> None:
    record = project / "hooks.jsonl"
    (project / "hooks.py").write_text(HOOKS_CONFIG.format(record=str(record)))
    port = free_port()
    with running(pronghorn_cmd("exampleapi:app", "-c", "hooks.py", "-b", f"127.0.0.1:{port}"), cwd=project,
                 port=port) as server:
        _wait_for(record, "post_worker_init", 2)
        assert http_get(port, "/hooked")[0] == 200
        _wait_for(record, "post_request")

        # A worker that dies is reported to child_exit in the master and replaced (pre_fork again).
        worker_pid = int(_wait_for(record, "post_fork")[0][2])
        os.kill(worker_pid, signal.SIGTERM)
        _wait_for(record, "child_exit")
        _wait_for(record, "pre_fork", 3)

        server.signal(signal.SIGTTIN)
        _wait_for(record, "nworkers_changed", 2)

        server.signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
    records = _records(record)
    fired = {r[0] for r in records}
    assert fired == ALL_HOOKS, ALL_HOOKS - fired

    master = server.pid
    by_name = {name: [r for r in records if r[0] == name] for name in ALL_HOOKS}
    for name in ("on_starting", "when_ready", "pre_fork", "child_exit", "nworkers_changed", "on_exit"):
        assert all(r[1] == master for r in by_name[name]), name
    for name in ("post_fork", "post_worker_init", "pre_request", "post_request", "worker_int", "worker_exit"):
        assert all(r[1] != master for r in by_name[name]), name
    assert by_name["when_ready"][0][2] == "1"
    assert by_name["pre_request"][0][2:] == ["GET", "/hooked"]
    assert by_name["post_request"][0][2:] == ["/hooked", "200 OK", "/hooked"]
    assert by_name["nworkers_changed"][0][2:] == ["2", "None"]
    assert by_name["nworkers_changed"][1][2:] == ["3", "2"]
    assert by_name["child_exit"][0][2] == str(worker_pid)
    order = [r[0] for r in records]
    assert order[0] == "on_starting" and order.index("when_ready") < order.index("pre_fork")
    assert order[-1] == "on_exit"


def test_raising_hook_is_logged_and_server_keeps_serving(project: Path) -> None:
    (project / "bad_hooks.py").write_text(
        "def pre_request(worker, req):\n    raise RuntimeError('pre_request exploded')\n"
        "def when_ready(server):\n    raise ValueError('when_ready exploded')\n"
        "def post_request(worker, req):\n    raise KeyError('two-argument post_request')\n"
    )
    port = free_port()
    with running(pronghorn_cmd("exampleapi:app", "-c", "bad_hooks.py", "-b", f"127.0.0.1:{port}"), cwd=project,
                 port=port) as server:
        assert http_get(port, "/x")[0] == 200
        assert http_get(port, "/y")[0] == 200
        out = server.wait_for_output("two-argument post_request")
    assert "when_ready exploded" in out and "pre_request exploded" in out
    assert re.search(r"Traceback \(most recent call last\)", out)


def test_hook_with_wrong_arity_is_a_config_error(project: Path) -> None:
    import subprocess
    import sys

    from serving import child_env

    (project / "arity.py").write_text("def pre_fork(server):\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pronghorn", "exampleapi:app", "-c", "arity.py"], cwd=project,
                         env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "pre_fork" in out.stderr and "2 arguments" in out.stderr


def test_output_buffered_in_the_master_is_written_once_not_once_per_worker(tmp_path: Path) -> None:
    # Without PYTHONUNBUFFERED, print() to a file or pipe is block-buffered: a fork copies what is not
    # yet written into every worker, and each one would write it again when it exits.
    (tmp_path / "hello.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'hi']\n"
    )
    (tmp_path / "conf.py").write_text(
        "workers = 3\nprint('printed by the config file')\n"
        "def when_ready(server):\n    print('printed by when_ready')\n"
    )
    port = free_port()
    args = pronghorn_cmd("hello:app", "-b", f"127.0.0.1:{port}", "-c", "conf.py")
    with running(args, cwd=tmp_path, port=port, env={"PYTHONUNBUFFERED": ""}) as server:
        server.wait_for_output("printed by when_ready")  # written before the first fork, not at exit
        deadline = time.monotonic() + 15
        while server.output().count("Booting worker with pid") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        out = server.output()
    assert out.count("Worker exiting") == 3, out
    assert out.count("printed by the config file") == 1, out
    assert out.count("printed by when_ready") == 1, out
