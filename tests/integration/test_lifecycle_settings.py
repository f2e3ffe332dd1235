"""Lifecycle settings of the process model: code reload, privileges, titles, reload hooks, spew."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from serving import free_port, http_get, pronghorn_cmd, running

IDS_APP = '''
import os

VERSION = "one"

def app(environ, start_response):
    body = f"{VERSION}|{os.getpid()}|{os.getuid()}|{os.getgid()}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
'''


def _wait(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _body(port: int) -> list[str]:
    return http_get(port)[2].decode().split("|")


@pytest.mark.parametrize("engine", ["poll", "inotify"])
def test_reload_restarts_workers_when_code_changes(tmp_path: Path, engine: str) -> None:
    (tmp_path / "idsapp.py").write_text(IDS_APP)
    (tmp_path / "extra.txt").write_text("a")
    port = free_port()
    args = ["idsapp:app", "-b", f"127.0.0.1:{port}", "--reload", "--reload-engine", engine,
            "--reload-extra-file", str(tmp_path / "*.txt")]
    with running(pronghorn_cmd(*args), cwd=tmp_path, port=port) as server:
        assert _body(port)[0] == "one"
        time.sleep(1.1)  # a new mtime second for the poll engine
        (tmp_path / "idsapp.py").write_text(IDS_APP.replace('"one"', '"two"'))
        assert _wait(lambda: "Worker reloading:" in server.output())
        assert _wait(lambda: _body(port)[0] == "two")
        (tmp_path / "extra.txt").write_text("b")
        assert _wait(lambda: server.output().count("Worker reloading:") >= 2)


def test_reload_serves_a_syntax_error_until_it_is_fixed(tmp_path: Path) -> None:
    (tmp_path / "idsapp.py").write_text("def app(environ, start_response)\n    pass\n")
    port = free_port()
    with running(pronghorn_cmd("idsapp:app", "-b", f"127.0.0.1:{port}", "--reload"), cwd=tmp_path, port=port) as server:
        status, _, body = http_get(port)
        assert status == 500 and b"SyntaxError" in body
        (tmp_path / "idsapp.py").write_text(IDS_APP)
        assert _wait(lambda: http_get(port)[0] == 200)
        assert "Worker reloading:" in server.output()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_workers_run_as_the_configured_user_and_group(tmp_path: Path) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid).gr_name
    except KeyError:
        pytest.skip("no 'nobody' user")
    # pytest's tmp_path is private to root; the unprivileged worker must be able to import the app.
    shared = Path(tempfile.mkdtemp(prefix="pronghorn-user-test-"))
    try:
        shared.chmod(0o755)
        (shared / "idsapp.py").write_text(IDS_APP)
        (shared / "idsapp.py").chmod(0o644)
        port = free_port()
        args = ["idsapp:app", "-b", f"127.0.0.1:{port}", "-u", "nobody", "-g", group, "--initgroups", "-t", "2"]
        with running(pronghorn_cmd(*args), cwd=shared, port=port) as server:
            _, pid, uid, gid = _body(port)
            assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
            time.sleep(3)  # longer than timeout: the heartbeat still works for the unprivileged worker
            assert _body(port)[1] == pid
            assert "WORKER TIMEOUT" not in server.output()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_process_titles(tmp_path: Path) -> None:
    pytest.importorskip("setproctitle")
    (tmp_path / "idsapp.py").write_text(IDS_APP)
    port = free_port()
    with running(pronghorn_cmd("idsapp:app", "-b", f"127.0.0.1:{port}", "-n", "shop"), cwd=tmp_path, port=port) as server:
        worker = int(_body(port)[1])

        def title(pid: int) -> str:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

        assert "master [shop]" in title(server.pid)
        assert "worker [shop]" in title(worker)


def test_on_reload_applies_new_config_and_pre_exec_fires(tmp_path: Path) -> None:
    (tmp_path / "idsapp.py").write_text(IDS_APP)
    record = tmp_path / "hooks.log"
    conf = tmp_path / "conf.py"
    hooks = (
        f"RECORD = {str(record)!r}\n"
        "def on_reload(server):\n    open(RECORD, 'a').write('on_reload %d\\n' % server.cfg.workers)\n"
        "def pre_exec(server):\n    open(RECORD, 'a').write('pre_exec\\n')\n"
    )
    conf.write_text("workers = 1\n" + hooks)
    port = free_port()
    with running(pronghorn_cmd("idsapp:app", "-b", f"127.0.0.1:{port}", "-c", "conf.py"), cwd=tmp_path,
                 port=port) as server:
        conf.write_text("workers = 3\n" + hooks)
        server.signal(signal.SIGHUP)
        assert _wait(lambda: record.exists() and "on_reload 3" in record.read_text())
        assert _wait(lambda: server.output().count("Booting worker with pid") == 4)
        assert _wait(lambda: server.output().count("Worker exiting") == 1)
        conf.write_text("workers = 'bad'\n")
        server.signal(signal.SIGHUP)
        assert _wait(lambda: "Reload failed, keeping the current configuration" in server.output())
        assert http_get(port)[0] == 200
        server.signal(signal.SIGUSR2)
        assert _wait(lambda: "pre_exec" in record.read_text())


def test_spew_traces_lines(tmp_path: Path) -> None:
    (tmp_path / "idsapp.py").write_text(IDS_APP)
    port = free_port()
    with running(pronghorn_cmd("idsapp:app", "-b", f"127.0.0.1:{port}", "--spew"), cwd=tmp_path, port=port) as server:
        assert http_get(port, timeout=30)[0] == 200
        assert _wait(lambda: "idsapp.py:" in server.output(), 10)
