"""The whole path with real processes: command line or embedding → settings → master → workers → a response."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import REPO, Server, child_env, free_port, http_get, pronghorn_cmd, running


def test_wsgiapp_module_four_workers_answer(project: Path) -> None:
    port = free_port()
    cmd = pronghorn_cmd("exampleapi:app", f"--bind=127.0.0.1:{port}", "--workers=4", module="pronghorn.app.wsgiapp")
    with running(cmd, cwd=project, port=port) as server:
        server.wait_for_output("Booting worker", timeout=10)
        pids: set[str] = set()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for _ in range(4):
                results = list(pool.map(lambda _: http_get(port, "/slow"), range(8)))
                for status, _, body in results:
                    assert status == 200
                    pids.add(re.search(rb"pid=(\d+)", body).group(1).decode())  # type: ignore[union-attr]
                if len(pids) == 4:
                    break
        assert len(pids) == 4, pids
        assert str(server.pid) not in pids


@pytest.mark.parametrize("entry", [("pronghorn",), ("pronghorn.app.wsgiapp",)])
def test_entry_points_serve_the_demo(tmp_path: Path, entry: tuple[str]) -> None:
    port = free_port()
    with running(pronghorn_cmd("pronghorn.demo:app", "-b", f"127.0.0.1:{port}", module=entry[0]), cwd=tmp_path, port=port):
        status, headers, body = http_get(port, "/hello?x=1")
    assert status == 200
    assert b"pronghorn" in body and b"/hello" in body
    assert headers["server"] == "pronghorn"


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "pronghorn", "--version"], capture_output=True, text=True,
                         env=child_env(), timeout=30)
    assert out.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", out.stdout + out.stderr)


def test_env_cmd_args(project: Path) -> None:
    port = free_port()
    (project / "pronghorn.conf.py").write_text("workers = 5\nbind = '127.0.0.1:1'\n")
    env = {"PRONGHORN_CMD_ARGS": f"--bind=127.0.0.1:{port} --workers=2"}
    with running(pronghorn_cmd("exampleapi:app"), cwd=project, port=port, env=env) as server:
        assert http_get(port, "/env")[0] == 200
        server.wait_for_output("Booting worker", timeout=10)
        time.sleep(0.5)
        out = server.output()
    assert out.count("Booting worker with pid") == 2, out
    assert f"Listening at: http://127.0.0.1:{port}" in out


def test_factory_reference(project: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("exampleapi:create_app('hi', repeat=3)", "-b", f"127.0.0.1:{port}"), cwd=project, port=port):
        status, _, body = http_get(port, "/")
    assert (status, body) == (200, b"hihihi")


def test_unix_socket_bind(project: Path) -> None:
    import socket as socket_module

    path = project / "app.sock"
    with running(pronghorn_cmd("exampleapi:app", "-b", f"unix:{path}"), cwd=project) as server:
        server.wait_for_output("Listening at: unix:", timeout=10)
        with socket_module.socket(socket_module.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET /u HTTP/1.1\r\nHost: example.org:81\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"path=/u" in data
    assert not path.exists(), "the socket file is removed at shutdown"


def _run(args: list[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pronghorn", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_missing_attribute_fails_fast_naming_it(project: Path) -> None:
    port = free_port()
    server = Server(pronghorn_cmd("exampleapi:nope", "-b", f"127.0.0.1:{port}", "-w", "3"), cwd=project)
    try:
        code = server.wait(timeout=15)
    finally:
        server.stop()
    out = server.output()
    assert code == 4, out
    assert "nope" in out and "exampleapi" in out
    assert out.count("Booting worker with pid") <= 3, "no respawn loop"


def test_missing_module_fails_fast(project: Path) -> None:
    server = Server(pronghorn_cmd("no_such_module:app", "-b", f"127.0.0.1:{free_port()}"), cwd=project)
    try:
        code = server.wait(timeout=15)
    finally:
        server.stop()
    assert code == 3 and "no_such_module" in server.output()  # (Gunicorn: a worker boot error)


def test_check_config_exit_codes(project: Path) -> None:
    good = _run(["exampleapi:app", "--check-config"], project)
    assert good.returncode == 0, good.stderr
    bad = _run(["exampleapi:missing", "--check-config"], project)
    assert bad.returncode == 1
    assert "missing" in bad.stderr
    bad_bind = _run(["exampleapi:app", "--check-config", "-b", "127.0.0.1:notaport"], project)
    assert bad_bind.returncode == 1 and "bind" in bad_bind.stderr
    bad_value = _run(["exampleapi:app", "--check-config", "--workers", "x"], project)
    assert bad_value.returncode == 1 and "workers" in bad_value.stderr


def test_print_config_lists_every_declared_setting(project: Path) -> None:
    from pronghorn.config.declared import ALL_SETTINGS

    out = _run(["exampleapi:app", "--print-config", "-w", "3"], project)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    names = [line.split("=", 1)[0].strip() for line in lines]
    assert names == sorted(s.name for s in ALL_SETTINGS)
    values = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip() for line in lines}
    assert values["workers"] == "3"
    assert values["bind"] == "['127.0.0.1:8000']"
    assert values["on_starting"].startswith("<") and values["on_starting"].endswith("()>")


def test_bad_config_value_one_line(project: Path) -> None:
    (project / "pronghorn.conf.py").write_text("timeout = 'soon'\n")
    out = _run(["exampleapi:app"], project)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "timeout" in out.stderr and "'soon'" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_stop_signals_end_the_server_promptly(project: Path, sig: int) -> None:
    # Signalled while later workers are still being forked: a worker must never miss its stop signal.
    for _ in range(3):
        port = free_port()
        with running(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}", "-w", "4"), cwd=project) as server:
            server.wait_for_output("Booting worker", timeout=10)
            server.signal(sig)
            assert server.wait(timeout=8) == 0
            out = server.output()
        assert "Shutting down" in out


def test_worker_crash_is_replaced(project: Path) -> None:
    port = free_port()
    with running(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}", "-w", "1"), cwd=project, port=port) as server:
        pid = int(re.search(rb"pid=(\d+)", http_get(port)[2]).group(1))  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        server.wait_for_output(f"Worker (pid:{pid}) was sent SIGKILL", timeout=10)
        new_pid = int(re.search(rb"pid=(\d+)", http_get(port)[2]).group(1))  # type: ignore[union-attr]
        assert new_pid != pid


def test_embedding_example(tmp_path: Path) -> None:
    port = free_port()
    example = REPO / "examples" / "standalone_app.py"
    env = {"PRONGHORN_EXAMPLE_BIND": f"127.0.0.1:{port}"}
    with running([sys.executable, str(example)], cwd=tmp_path, port=port, env=env) as server:
        status, _, body = http_get(port, "/")
        assert (status, body) == (200, b"Works fine")
        server.wait_for_output("pre-fork server", timeout=10)


def test_chdir_pythonpath_and_env(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "site" / "siteapp.py").write_text(
        "import os, helper\n"
        "def app(environ, start_response):\n"
        "    body = (os.getcwd() + '|' + helper.NAME + '|' + os.environ.get('GREETING', '')).encode()\n"
        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    (tmp_path / "lib" / "helper.py").write_text("NAME = 'from-pythonpath'\n")
    port = free_port()
    args = ["siteapp:app", "--chdir", "site", "--pythonpath", str(tmp_path / "lib"), "-e", "GREETING=hi",
            "-b", f"127.0.0.1:{port}"]
    with running(pronghorn_cmd(*args), cwd=tmp_path, port=port):
        status, _, body = http_get(port)
    assert status == 200
    assert body.decode() == f"{tmp_path / 'site'}|from-pythonpath|hi"


def test_address_in_use_fails_with_one_clear_line(project: Path) -> None:
    import socket as socket_module

    with socket_module.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(pronghorn_cmd("exampleapi:app", "-b", f"127.0.0.1:{port}"), cwd=project)
        try:
            code = server.wait(timeout=20)
        finally:
            server.stop()
    assert code == 1
    assert f"Can't bind 127.0.0.1:{port}" in server.output()
    assert "Traceback" not in server.output()
