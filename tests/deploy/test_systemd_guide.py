"""docs/deploy-systemd.md's example units (deploy/systemd/): how they fit together, and the
service run under systemd-socket-activate (ready, reload, stop) and across a restart, with the test
holding the sockets as systemd does. The stand-ins are in ``deploy.common``'s docstring.
"""

from __future__ import annotations

import ast
import concurrent.futures
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import (Load, Server, child_env, children_of, free_port, http_get, parse_response, pronghorn_cmd,
                     running, sd_notifications, wait_until)

from deploy.common import APP_REFERENCE, SYSTEMD, effective_settings, group_gone, live_children, port_of

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
needs_socket_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate is missing (Debian's systemd package has it)"
)


def unix_get(path: str, target: str = "/", headers: dict[str, str] | None = None,
             timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return parse_response(data)


class HeldSocketsServer(Server):
    """A Server whose process inherits ``fds``: the test holds the sockets, as systemd does."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], fds: list[int]) -> None:
        self.args = list(args)
        self.log_path = Path(cwd) / f"server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, cwd=str(cwd), env=child_env(env), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=fds,
        )
        self.pid = self.proc.pid


# What systemd does for a socket-activated service: the sockets at fds 3, 4, ... and LISTEN_FDS
# and LISTEN_PID (the service's own pid) in its environment; then exec the service in place.
ACTIVATE_HELD_SOCKETS = (
    "import os, sys\n"
    "held = [int(fd) for fd in os.environ.pop('HELD_FDS').split(',')]\n"
    "for number, fd in enumerate(held, start=3):\n"
    "    os.dup2(fd, number)\n"
    "for fd in held:\n"
    "    os.close(fd)\n"
    "os.environ.update(LISTEN_FDS=str(len(held)), LISTEN_PID=str(os.getpid()))\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


# --- the units ------------------------------------------------------------------------------------------

Unit = dict[str, list[tuple[str, str]]]


def read_unit(path: Path) -> Unit:
    """A unit file's sections, each a list of (key, value) in file order (keys may repeat)."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a unit file line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: Unit, section: str, key: str) -> list[str]:
    return [value for name, value in unit.get(section, []) if name == key]


def unit_value(unit: Unit, section: str, key: str) -> str:
    values = unit_values(unit, section, key)
    assert values, f"[{section}] has no {key}="
    return values[-1]  # for single-valued settings, systemd keeps the last assignment


_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 0.001, "msec": 0.001,
               "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0,
               "hour": 3600.0, "hours": 3600.0}


def timespan(text: str) -> float:
    """A systemd time span such as ``40``, ``40s`` or ``1min 30s``, in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert parts and re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*[a-z]*)+\s*", text), f"not a time span: {text!r}"
    return sum(float(number) * _TIME_UNITS[unit] for number, unit in parts)


def exec_argv(line: str) -> list[str]:
    """An Exec*= line as argv: without systemd's prefixes (-, @, :, +, !), split as systemd does."""
    return shlex.split(line.lstrip("-@:+!"))


def service_unit() -> Unit:
    return read_unit(SYSTEMD / "pronghorn.service")


def socket_unit() -> Unit:
    return read_unit(SYSTEMD / "pronghorn.socket")


def service_command(service: Unit) -> tuple[list[str], str]:
    """ExecStart with the stand-ins (see ``deploy.common``'s docstring), and the config path it names."""
    argv = exec_argv(unit_value(service, "Service", "ExecStart"))
    executable, args = argv[0], argv[1:]
    assert executable.startswith("/") and executable.endswith("/bin/pronghorn"), (
        f"ExecStart should run a virtualenv's pronghorn by its absolute path, not {executable!r}")
    assert args and not args[-1].startswith("-") and ":" in args[-1], "ExecStart ends with the app reference"
    command, config, index = pronghorn_cmd(), "", 0
    while index < len(args) - 1:
        arg = args[index]
        if arg in ("-c", "--config"):
            config = args[index + 1]
            command += [arg, str(SYSTEMD / "pronghorn.conf.py")]
            index += 2
            continue
        if arg.startswith("--config="):
            config = arg.partition("=")[2]
            arg = "--config=" + str(SYSTEMD / "pronghorn.conf.py")
        command.append(arg)
        index += 1
    assert config.startswith("/") and Path(config).name == "pronghorn.conf.py", (
        f"ExecStart should name the guide's config file by an absolute path, not {config!r}")
    return command + [APP_REFERENCE], config


def service_environment(service: Unit) -> dict[str, str]:
    assert not unit_values(service, "Service", "EnvironmentFile"), "the test applies Environment= only"
    env = {}
    for line in unit_values(service, "Service", "Environment"):
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def activated_addresses(directory: Path) -> list[tuple[str, str]]:
    """Each ListenStream= of the socket unit and the test's stand-in for it."""
    pairs = []
    for value in unit_values(socket_unit(), "Socket", "ListenStream"):
        if value.startswith("/"):
            pairs.append((value, str(directory / Path(value).name)))
        else:
            assert re.fullmatch(r"(\d+|[\d.]+:\d+|\[[0-9a-fA-F:]+\]:\d+)", value), f"ListenStream={value}"
            pairs.append((value, f"127.0.0.1:{free_port()}"))
    return pairs


# --- the tests ------------------------------------------------------------------------------------------


def test_systemd_units_fit_together(guide_dir: Path) -> None:
    service, sock = service_unit(), socket_unit()
    # The socket unit activates the service of the same name, which needs it.
    assert unit_values(sock, "Socket", "Service") in ([], ["pronghorn.service"])
    assert "pronghorn.socket" in " ".join(unit_values(service, "Unit", "Requires")).split()
    assert "pronghorn.socket" in " ".join(unit_values(service, "Unit", "After")).split()
    assert unit_values(sock, "Socket", "ListenStream"), "the socket unit listens somewhere"
    assert unit_values(sock, "Socket", "Accept") in ([], ["no"], ["false"]), "one service for all connections"
    # The master tells systemd when it is ready; a stop is TERM to the master only.
    assert unit_value(service, "Service", "Type") in ("notify", "notify-reload")
    assert unit_values(service, "Service", "NotifyAccess") in ([], ["main"], ["all"])
    assert unit_value(service, "Service", "KillMode") == "mixed"
    assert unit_value(service, "Service", "Restart") == "on-failure"
    assert unit_value(service, "Service", "User") not in ("", "root", "0")
    reload_argv = exec_argv(unit_value(service, "Service", "ExecReload"))
    assert "$MAINPID" in reload_argv and ("-HUP" in reload_argv or "HUP" in reload_argv), reload_argv
    # systemd's SIGKILL must come after the master's own deadline (graceful_timeout) and the few
    # moments it takes to kill and reap what is left.
    command, _ = service_command(service)
    settings = effective_settings(command, guide_dir, service_environment(service))
    graceful = float(settings["graceful_timeout"])
    stop_timeout = timespan(unit_value(service, "Service", "TimeoutStopSec"))
    assert stop_timeout >= graceful + 5, f"TimeoutStopSec={stop_timeout:g} vs graceful_timeout={graceful:g}"
    # Under socket activation `bind` is ignored, and a HUP that changes it would swap systemd's
    # sockets for new ones: the guide's config file leaves it out.
    tree = ast.parse((SYSTEMD / "pronghorn.conf.py").read_text())
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert "bind" not in assigned


@needs_socket_activate
def test_systemd_activation_ready_reload_stop(guide_dir: Path) -> None:
    """The service's ExecStart under systemd-socket-activate with the socket unit's sockets."""
    service = service_unit()
    command, _ = service_command(service)
    addresses = activated_addresses(guide_dir)
    unix_path = next(test for unit, test in addresses if unit.startswith("/"))
    tcp_port = port_of(next(test for unit, test in addresses if not unit.startswith("/")))
    notify_path = str(guide_dir / "notify.sock")
    # systemd-socket-activate, like systemd, gives the service a clean environment: the unit's
    # Environment= and what systemd adds (NOTIFY_SOCKET); PYTHONPATH is the tests' (serving.py).
    env = {**service_environment(service), "NOTIFY_SOCKET": notify_path,
           "PYTHONPATH": child_env()["PYTHONPATH"]}
    activate = [SOCKET_ACTIVATE or "systemd-socket-activate"]
    for _, address in addresses:
        activate += ["-l", address]
    for name, value in env.items():
        activate += ["-E", f"{name}={value}"]
    stop_timeout = timespan(unit_value(service, "Service", "TimeoutStopSec"))

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        notify.bind(notify_path)
        with running([*activate, *command], cwd=guide_dir) as server:
            assert wait_until(lambda: server.output().count("Listening on ") == len(addresses), 10), server.output()
            # Nothing runs yet: the first connection starts the service, and is served.
            status, _, body = unix_get(unix_path, "/first", headers={"X-Forwarded-Proto": "https"})
            assert status == 200 and body.split(b"|")[1:] == [b"/first", b"https"], body  # a Unix peer is trusted
            ready = sd_notifications(notify, "READY")[-1]
            assert ready["READY"] == "1" and ready["MAINPID"] == str(server.pid), ready
            out = server.output()
            assert f"Listening at: unix:{unix_path} ({server.pid})" in out
            assert f"Listening at: http://127.0.0.1:{tcp_port} ({server.pid})" in out
            assert out.count("Listening at:") == len(addresses), "bind is ignored: only systemd's sockets"
            assert http_get(tcp_port, "/tcp")[0] == 200

            # systemctl reload: ExecReload as written, under a small load that must lose nothing.
            workers = int(effective_settings(command, guide_dir, env)["workers"])
            assert wait_until(lambda: len(live_children(server.pid)) == workers, 10), children_of(server.pid)
            old_workers = set(children_of(server.pid))
            reload_argv = [arg.replace("${MAINPID}", str(server.pid)).replace("$MAINPID", str(server.pid))
                           for arg in exec_argv(unit_value(service, "Service", "ExecReload"))]
            with Load(tcp_port, concurrency=4, max_seconds=30) as load:
                load.wait_for(20)
                assert subprocess.run(reload_argv, timeout=10).returncode == 0
                reload = sd_notifications(notify, "READY")
                assert reload[0].get("RELOADING") == "1" and reload[-1]["READY"] == "1", reload
                after_ready = time.monotonic()
                assert wait_until(lambda: not old_workers & set(children_of(server.pid)), 20), "old workers stopped"
                assert wait_until(lambda: load.pids_since(after_ready) - old_workers, 10), "new workers serve"
            assert load.ok > 20 and not load.failures, load.failures[:5]
            assert unix_get(unix_path, "/after-reload")[0] == 200

            # systemctl stop (KillMode=mixed): TERM to the master alone, with a request in flight.
            slow = pool.submit(http_get, tcp_port, "/slow?1.5", timeout=30)
            time.sleep(0.3)
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            assert server.wait(timeout=stop_timeout) == 0
            assert time.monotonic() - started < stop_timeout
            assert slow.result(timeout=10)[0] == 200
            assert "STOPPING" in sd_notifications(notify, "STOPPING")[-1]
            assert group_gone(server.pid), "the master's workers were gone before it exited"


@needs_socket_activate
def test_systemd_restart_keeps_sockets(guide_dir: Path) -> None:
    """systemctl restart with socket activation: connections made while no pronghorn runs wait in
    the backlog of the sockets systemd holds (the test holds them here) and are served next."""
    service = service_unit()
    command, _ = service_command(service)
    backlog = int(unit_value(socket_unit(), "Socket", "Backlog"))
    held: list[socket.socket] = []
    fds: list[int] = []
    servers: list[Server] = []
    try:
        for unit_address, address in activated_addresses(guide_dir):
            if unit_address.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(address)
                unix_path = address
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port_of(address)))
                tcp_port = port_of(address)
            sock.listen(backlog)
            held.append(sock)
        # Copies above the numbers systemd's fds take (3, 4, ...), moved there by the launcher.
        fds += [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 20) for sock in held]
        env = {**service_environment(service), "HELD_FDS": ",".join(map(str, fds))}
        launch = [sys.executable, "-c", ACTIVATE_HELD_SOCKETS, *command]

        def start() -> Server:
            server = HeldSocketsServer(launch, cwd=guide_dir, env=env, fds=fds)
            servers.append(server)
            return server

        first = start()
        assert http_get(tcp_port, "/one", timeout=20)[0] == 200, first.output()
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=timespan(unit_value(service, "Service", "TimeoutStopSec"))) == 0
        assert Path(unix_path).exists(), "pronghorn left systemd's socket file in place"

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(http_get, tcp_port, "/queued", timeout=30),
                       pool.submit(unix_get, unix_path, "/queued", timeout=30)]
            time.sleep(0.5)
            assert not any(future.done() for future in waiting), [f.result() for f in waiting if f.done()]
            second = start()
            for future in waiting:
                status, _, body = future.result(timeout=30)
                assert status == 200 and b"|/queued|" in body, body
            assert second.output().count("Listening at:") == len(held)
    finally:
        for server in servers:
            server.stop()
        for sock in held:
            sock.close()
        for fd in fds:
            os.close(fd)
