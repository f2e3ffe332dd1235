"""Error and access logs of real servers: every access-log atom, the JSON access log, logging
configuration files and dictionaries (Gunicorn's logger names included), syslog to a socket of the
test, capture_output, a custom logger_class, USR1 after log rotation and HUP with a broken logging
configuration."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from serving import WORKER_ARGS, free_port, http_get, pronghorn_cmd, running

APP = r'''
import sys


def app(environ, start_response):
    if environ["PATH_INFO"] == "/print":
        print("printed by the app", flush=True)
        sys.stderr.write("written to stderr by the app\n")
        sys.stderr.flush()
    body = b"hello"
    start_response("201 Created", [("Content-Length", str(len(body))), ("X-Out", "out-value")])
    return [body]
'''

EVERY_ATOM = "|".join(f"%({atom})s" for atom in "h l u t r s m U q H b B f a T M D L p".split()) + \
    "|%({x-in}i)s|%({x-out}o)s|%({wsgi.url_scheme}e)s|%({missing}i)s"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "logapp.py").write_text(APP)
    return tmp_path


def _wait_for_line(path: Path, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if re.search(pattern, line):
                    return line
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in {path}:\n{path.read_text() if path.exists() else '-'}")


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_every_access_log_atom_field_by_field(app_dir: Path, worker: str) -> None:
    port = free_port()
    access = app_dir / "access.log"
    cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--access-logfile", str(access),
                        "--access-logformat", EVERY_ATOM, *WORKER_ARGS[worker])
    with running(cmd, cwd=app_dir, port=port):
        auth = base64.b64encode(b"alice:secret").decode()
        before = time.time()
        http_get(port, "/some/path?q=1&r=two", headers={
            "Authorization": f"Basic {auth}", "Referer": "http://ref.example/", "User-Agent": 'agent "quoted"',
            "X-In": "in-value"})
        line = _wait_for_line(access, r"/some/path")
    fields = line.split("|")
    (h, l_, u, t, r, s, m, U, q, H, b, B, f, a, T, M, D, L, p, header_in, header_out, env, missing) = fields
    assert (h, l_, u) == ("127.0.0.1", "-", "alice")
    stamp = time.mktime(time.strptime(t, "[%d/%b/%Y:%H:%M:%S %z]"))
    assert before - 2 <= stamp <= time.time() + 1
    assert r == "GET /some/path?q=1&r=two HTTP/1.1"
    assert (s, m, U, q, H) == ("201", "GET", "/some/path", "q=1&r=two", "HTTP/1.1")
    assert b == B == "5"
    assert (f, a) == ("http://ref.example/", 'agent \\"quoted\\"')
    assert int(T) == 0 and 0 <= int(M) < 1000 and 0 < int(D) < 1_000_000
    assert re.fullmatch(r"0\.\d{6}", L) and int(L[2:]) == int(D)
    assert re.fullmatch(r"<\d+>", p) and int(p[1:-1]) != os.getpid()
    assert (header_in, header_out, missing) == ("in-value", "out-value", "-")
    assert env == "http"  # {name}e: a key of the WSGI environ


def test_the_json_access_log_has_a_field_per_atom(app_dir: Path) -> None:
    port = free_port()
    access = app_dir / "access.log"
    cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--access-logfile", str(access),
                        "--access-log-json")
    with running(cmd, cwd=app_dir, port=port):
        http_get(port, "/j?x=1", headers={"User-Agent": 'probe "1"'})
        record = json.loads(_wait_for_line(access, r'"/j"'))
    assert record["remote_addr"] == "127.0.0.1" and record["status"] == "201" and record["method"] == "GET"
    assert (record["path"], record["query"], record["user_agent"], record["bytes"]) == ("/j", "x=1", 'probe "1"', 5)
    assert record["request"] == "GET /j?x=1 HTTP/1.1" and isinstance(record["duration_us"], int)


DICT_CONFIG = '''
logconfig_dict = {{
    "version": 1,
    "formatters": {{"plain": {{"format": "%(name)s %(levelname)s %(message)s"}}}},
    "handlers": {{
        "errors": {{"class": "logging.FileHandler", "filename": {errors!r}, "formatter": "plain"}},
        "access": {{"class": "logging.FileHandler", "filename": {access!r}, "formatter": "plain"}},
    }},
    "loggers": {{
        "gunicorn.error": {{"level": "INFO", "handlers": ["errors"], "propagate": False}},
        "gunicorn.access": {{"level": "INFO", "handlers": ["access"], "propagate": False}},
    }},
}}
'''


def test_logconfig_dict_written_for_gunicorns_loggers_sets_up_ours(app_dir: Path) -> None:
    errors, access = app_dir / "errors.log", app_dir / "access.log"
    (app_dir / "pronghorn.conf.py").write_text(DICT_CONFIG.format(errors=str(errors), access=str(access)))
    port = free_port()
    with running(pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1"), cwd=app_dir, port=port):
        http_get(port, "/dict")
        assert "GET /dict HTTP/1.1" in _wait_for_line(access, r"/dict")  # on by itself, as in Gunicorn
        assert _wait_for_line(errors, r"Listening at").startswith("pronghorn.error INFO ")  # (our name)


def test_logconfig_ini_and_logconfig_json(app_dir: Path) -> None:
    ini_log, json_log = app_dir / "ini.log", app_dir / "json.log"
    (app_dir / "logging.ini").write_text(f"""
[loggers]
keys=root,error

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_error]
level=INFO
handlers=file
propagate=0
qualname=pronghorn.error

[handler_file]
class=FileHandler
formatter=plain
args=({str(ini_log)!r},)

[formatter_plain]
format=ini %(levelname)s %(message)s
""")
    (app_dir / "logging.json").write_text(json.dumps({
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(json_log)}},
        "loggers": {"pronghorn.error": {"level": "INFO", "handlers": ["file"], "propagate": False}},
    }))
    for flag, path in (("--log-config", "logging.ini"), ("--log-config-json", "logging.json")):
        port = free_port()
        with running(pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", flag, path),
                     cwd=app_dir, port=port):
            _wait_for_line(ini_log if flag == "--log-config" else json_log, r"Booting worker")
    assert _wait_for_line(ini_log, r"Listening at").startswith("ini INFO ")


def test_a_broken_logging_configuration_stops_start_up_with_one_line(app_dir: Path) -> None:
    (app_dir / "pronghorn.conf.py").write_text(
        "logconfig_dict = {'version': 1, 'handlers': {'x': {'class': 'no.such.Handler'}}}\n")
    import subprocess

    from serving import child_env

    result = subprocess.run(pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{free_port()}"), cwd=app_dir,
                            env=child_env(), capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: Invalid value for logconfig_dict: "), lines


def test_hup_with_a_broken_logging_configuration_keeps_the_previous_one(app_dir: Path) -> None:
    errors, access = app_dir / "errors.log", app_dir / "access.log"
    config = app_dir / "pronghorn.conf.py"
    config.write_text(DICT_CONFIG.format(errors=str(errors), access=str(access)))
    port = free_port()
    with running(pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1"), cwd=app_dir,
                 port=port) as server:
        _wait_for_line(errors, r"Booting worker")
        config.write_text(DICT_CONFIG.format(errors=str(errors), access=str(access)).replace(
            "logging.FileHandler", "no.such.Handler", 1))
        server.signal(signal.SIGHUP)
        _wait_for_line(errors, r"Reload failed, keeping the current configuration: Invalid value for logconfig_dict")
        http_get(port, "/after-hup")
        _wait_for_line(access, r"/after-hup")  # both logs still go where they went
        assert http_get(port, "/")[0] == 201


def test_usr1_after_rotation_recreates_the_error_log_and_writes_there(app_dir: Path) -> None:
    errors = app_dir / "errors.log"
    port = free_port()
    cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--error-logfile", str(errors),
                        "--capture-output")
    with running(cmd, cwd=app_dir, port=port) as server:
        http_get(port, "/print")
        _wait_for_line(errors, r"printed by the app")  # capture_output: the app's stdout and stderr
        _wait_for_line(errors, r"written to stderr by the app")
        errors.rename(app_dir / "errors.log.1")
        server.signal(signal.SIGUSR1)  # (logged to the old file: the files are reopened after)
        _wait_for_line(app_dir / "errors.log.1", r"Handling signal: usr1")
        deadline = time.monotonic() + 10  # the worker reopens its own files when it gets the signal
        while "written to stderr by the app" not in (errors.read_text() if errors.exists() else ""):
            assert time.monotonic() < deadline, "the app's output did not reach the new file"
            http_get(port, "/print")
            time.sleep(0.1)
        _wait_for_line(errors, r"printed by the app")
    assert "printed by the app" in (app_dir / "errors.log.1").read_text()


def test_usr1_reopens_the_files_of_a_logging_configuration_too(app_dir: Path) -> None:
    errors, access = app_dir / "errors.log", app_dir / "access.log"
    (app_dir / "pronghorn.conf.py").write_text(DICT_CONFIG.format(errors=str(errors), access=str(access)))
    port = free_port()
    with running(pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1"), cwd=app_dir,
                 port=port) as server:
        http_get(port, "/before")
        _wait_for_line(access, r"/before")
        access.rename(app_dir / "access.log.1")
        server.signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10  # the worker reopens its own files when it gets the signal
        while "/after" not in (access.read_text() if access.exists() else ""):
            assert time.monotonic() < deadline, "no access-log line in the new file"
            http_get(port, "/after")
            time.sleep(0.1)
    assert "/before" in (app_dir / "access.log.1").read_text()


def test_syslog_datagrams_carry_the_tag_and_the_access_log(app_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        syslog_port = collector.getsockname()[1]
        port = free_port()
        cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--log-syslog",
                            "--log-syslog-to", f"udp://127.0.0.1:{syslog_port}", "--log-syslog-prefix", "shop",
                            "--log-syslog-facility", "local3")
        with running(cmd, cwd=app_dir, port=port):
            http_get(port, "/via-syslog")
            seen: list[bytes] = []
            while not any(b"/via-syslog" in message for message in seen):
                seen.append(collector.recv(65536))
    listening = next(message for message in seen if b"Listening at" in message)
    # <PRI> is facility * 8 + severity: local3 (19), info (6)
    assert listening.startswith(b"<158>pronghorn.shop.error["), listening
    access = next(message for message in seen if b"/via-syslog" in message)
    assert access.startswith(b"<158>pronghorn.shop.access["), access


LOGGER_MODULE = '''
from pronghorn.logs import Logger


class ShoutingLogger(Logger):
    def info(self, msg, *args, **kwargs):
        super().info("LOUD " + msg, *args, **kwargs)
'''


def test_a_custom_logger_class(app_dir: Path) -> None:
    (app_dir / "shouting.py").write_text(LOGGER_MODULE)
    port = free_port()
    cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--logger-class", "shouting.ShoutingLogger")
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_output("LOUD Booting worker")


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_an_invalid_request_is_logged_once_at_warning_without_a_traceback(app_dir: Path, worker: str) -> None:
    errors = app_dir / "errors.log"
    port = free_port()
    cmd = pronghorn_cmd("logapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--error-logfile", str(errors),
                        *WORKER_ARGS[worker])
    with running(cmd, cwd=app_dir, port=port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /bad path HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
        line = _wait_for_line(errors, r"Invalid request from ip=127\.0\.0\.1")
        assert http_get(port, "/")[0] == 201  # (and anything logged for the bad one is in by now)
    text = errors.read_text()
    assert "[WARNING] Invalid request from ip=127.0.0.1" in line
    assert text.count("Invalid request from") == 1 and "Traceback" not in text
