"""What Gunicorn deployments bring along, run for real: None and string values, GUNICORN_CMD_ARGS,
./gunicorn.conf.py named by --print-config, load failures with Gunicorn's exit statuses and the
traceback that points at the user's line, and the small log lines Gunicorn users look for."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from serving import Server, child_env, free_port, http_get, pronghorn_cmd, running

APP = '''
def app(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("the app failed")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dropin.py").write_text(APP)
    return tmp_path


def _run(project: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pronghorn_cmd(*args), cwd=project, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout)


def test_none_and_string_values_from_real_config_files(project: Path) -> None:
    port = free_port()
    (project / "gunicorn.conf.py").write_text(f'''
import os

bind = ("127.0.0.1:{port}",)  # a tuple
workers = os.getenv("WEB_CONCURRENCY", 3)  # "2" from the environment
user = None
group = None
tmp_upload_dir = None
accesslog = None
preload_app = None
keepalive = "5"
''')
    with running(pronghorn_cmd("dropin:app"), cwd=project, port=port, env={"WEB_CONCURRENCY": "2"}) as server:
        assert http_get(port)[0] == 200
        server.wait_for_output(f"Config file: {project / 'gunicorn.conf.py'}")
        deadline = time.monotonic() + 10
        while server.output().count("Booting worker") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert server.output().count("Booting worker") == 2  # WEB_CONCURRENCY="2"


def test_gunicorn_cmd_args_apply_when_pronghorn_cmd_args_is_unset(project: Path) -> None:
    port = free_port()
    (project / "gunicorn.conf.py").write_text("bind = '127.0.0.1:1'\nworkers = 1\n")  # the variable wins over it
    env = {"GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{port} --workers=2"}
    with running(pronghorn_cmd("dropin:app"), cwd=project, port=port, env=env) as server:
        assert http_get(port)[0] == 200
        out = server.wait_for_output(f"Arguments from GUNICORN_CMD_ARGS: --bind=127.0.0.1:{port} --workers=2")
        assert f"Config file: {project / 'gunicorn.conf.py'}" in out
    other = free_port()
    env["PRONGHORN_CMD_ARGS"] = f"--bind=127.0.0.1:{other}"
    with running(pronghorn_cmd("dropin:app"), cwd=project, port=other, env=env) as server:
        assert http_get(other)[0] == 200
        assert "GUNICORN_CMD_ARGS" not in server.wait_for_output("Arguments from PRONGHORN_CMD_ARGS")


def test_print_config_names_the_file_read(project: Path) -> None:
    (project / "gunicorn.conf.py").write_text("workers = 3\n")
    result = _run(project, "dropin:app", "--print-config")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("config "))
    assert line.split("=", 1)[1].strip() == str(project / "gunicorn.conf.py"), line


HELPER = "import json\nimport not_installed_anywhere  # line 2\n"
USES_HELPER = "import helper\n\n\ndef app(environ, start_response):\n    return []\n"


def test_an_import_error_inside_the_users_module_shows_its_traceback(project: Path) -> None:
    (project / "helper.py").write_text(HELPER)
    (project / "uses_helper.py").write_text(USES_HELPER)
    server = Server(pronghorn_cmd("uses_helper:app", "-b", f"127.0.0.1:{free_port()}"), cwd=project)
    try:
        code = server.wait(timeout=20)
    finally:
        server.stop()
    out = server.output()
    assert code == 3, out  # Gunicorn's worker boot error
    assert "Traceback" in out and 'helper.py", line 2' in out and "not_installed_anywhere" in out
    check = _run(project, "uses_helper:app", "--check-config")
    assert check.returncode == 1
    assert 'helper.py", line 2' in check.stderr and "not_installed_anywhere" in check.stderr
    missing = _run(project, "not_a_module_here:app", "--check-config")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "No module named 'not_a_module_here'" in missing.stderr


# Exit statuses of Gunicorn 27.0.1 for each load failure, measured side by side with pronghorn on
# 2026-12-05 (gunicorn APP -b 127.0.0.1:0 -w 1 [--preload]): 4 when the reference gives no
# application, 3 (a worker boot error) when the module cannot be imported or raises, 1 whenever
# the master loads the app itself (--preload).
LOAD_FAILURES = {
    "missing_module:app": 3,
    "ok:missing_attribute": 4,
    "uses_helper:app": 3,
    "raises:app": 3,
    "syntax:app": 3,
    "notcallable:app": 4,
    "factory:create_app()": 3,
    "ok:app(": 4,
    "ok.py": 3,
}
MODULES = {
    "helper.py": HELPER,
    "uses_helper.py": USES_HELPER,
    "raises.py": "raise RuntimeError('boom at import')\n",
    "syntax.py": "def app(:\n",
    "notcallable.py": "app = 42\n",
    "factory.py": "def create_app():\n    raise ValueError('factory failed')\n",
    "ok.py": APP,
}


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
@pytest.mark.parametrize(("reference", "gunicorn_status"), LOAD_FAILURES.items())
def test_load_failures_end_with_gunicorns_exit_status(project: Path, reference: str, gunicorn_status: int,
                                                      preload: bool) -> None:
    for name, text in MODULES.items():
        (project / name).write_text(text)
    args = [reference, "-b", f"127.0.0.1:{free_port()}", "-w", "1"] + (["--preload"] if preload else [])
    result = _run(project, *args, timeout=60)
    assert result.returncode == (1 if preload else gunicorn_status), result.stdout + result.stderr


def test_small_log_parities(project: Path) -> None:
    (project / "pronghorn.conf.py").write_text("workers = 1\nworker_timout = 10\nkeep_alive = 5\nmy_port = 8000\n"
                                               "loglevel = 'warn'\n")  # not a level: Gunicorn uses info
    port = free_port()
    with running(pronghorn_cmd("dropin:app", "-b", f"127.0.0.1:{port}"), cwd=project, port=port) as server:
        out = server.wait_for_output("Booting worker")
        assert "'keep_alive' is not a setting and is ignored; did you mean 'keepalive'?" in out
        assert "'worker_timout' is not a setting and is ignored; did you mean 'timeout'?" in out
        assert "my_port" not in out  # other names stay ignored, as in Gunicorn
        assert "Setting loglevel is 'warn', not one of debug, info, warning, error, critical: info is used." in out
        assert http_get(port, "/fail")[0] == 500
        server.wait_for_output("Error handling request GET /fail")
        server.signal(signal.SIGHUP)
        server.wait_for_output("Hang up: reloading")
