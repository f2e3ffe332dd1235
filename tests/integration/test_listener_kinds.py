"""Every kind of listener served end to end: unix sockets, several binds, ``fd://N`` and systemd
socket activation (a launcher that hands over fd 3 with LISTEN_FDS/LISTEN_PID, as systemd does);
and trusted-proxy headers judged alike on each (a unix-socket peer is trusted, as in Gunicorn).
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import WORKER_ARGS, free_port, parse_response, pronghorn_cmd, running

WORKERS = ["sync", "gthread"]

APP = '''
import json

def app(environ, start_response):
    body = json.dumps({"scheme": environ["wsgi.url_scheme"], "remote": environ.get("REMOTE_ADDR")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''

# Hands a listening socket to pronghorn as fd ``FD`` and execs it (the pid stays, so LISTEN_PID holds).
LAUNCHER = '''
import os, socket, sys
fd, port, activation = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "activation"
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(128)
os.dup2(sock.fileno(), fd)
os.set_inheritable(fd, True)
if activation:
    os.environ["LISTEN_FDS"], os.environ["LISTEN_PID"] = "1", str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "pronghorn", *sys.argv[4:]])
'''


@pytest.fixture
def app_dir() -> Iterator[Path]:
    # A short path: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="ph-") as name:
        directory = Path(name)
        (directory / "kindsapp.py").write_text(APP)
        (directory / "launch.py").write_text(LAUNCHER)
        yield directory


def _get(family: int, address: object, headers: str = "") -> dict[str, str]:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status, _, body = parse_response(data)
    assert status == 200, data[:200]
    return dict(json.loads(body))


def _wait_for_file(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("worker", WORKERS)
def test_a_unix_socket_and_a_tcp_port_at_once_with_proxy_headers_trusted_only_from_the_unix_peer(
        app_dir: Path, worker: str) -> None:
    port, path = free_port(), app_dir / "web.sock"
    cmd = pronghorn_cmd("kindsapp:app", "-b", f"127.0.0.1:{port}", "-b", f"unix:{path}", "-w", "1",
                        "--forwarded-allow-ips", "10.0.0.1", *WORKER_ARGS[worker])
    forwarded = "X-Forwarded-Proto: https\r\n"
    with running(cmd, cwd=app_dir, port=port) as server:
        _wait_for_file(path)
        assert _get(socket.AF_UNIX, str(path), forwarded)["scheme"] == "https"  # a unix peer is trusted
        assert _get(socket.AF_INET, ("127.0.0.1", port), forwarded) == {"scheme": "http", "remote": "127.0.0.1"}
        server.signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    assert not path.exists(), "the socket file is removed when the server stops"


@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("how", ["fd", "activation"])
def test_a_socket_handed_over_by_descriptor_is_served(app_dir: Path, worker: str, how: str) -> None:
    port = free_port()
    fd = 3 if how == "activation" else 7
    binding = [] if how == "activation" else ["-b", f"fd://{fd}"]
    cmd = [sys.executable, "launch.py", str(fd), str(port), how, "kindsapp:app", *binding, "-w", "1",
           *WORKER_ARGS[worker]]
    with running(cmd, cwd=app_dir, port=port) as server:
        assert _get(socket.AF_INET, ("127.0.0.1", port))["remote"] == "127.0.0.1"
        out = server.wait_for_output("Listening at")
        assert f"127.0.0.1:{port}" in out


def test_reuse_port_lets_a_second_server_share_the_port(app_dir: Path) -> None:
    port = free_port()
    cmd = pronghorn_cmd("kindsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--reuse-port")
    with running(cmd, cwd=app_dir, port=port) as first:
        first.wait_for_output("Booting worker")
        with running(cmd, cwd=app_dir) as second:  # the same port: both bind it with SO_REUSEPORT
            second.wait_for_output("Booting worker")
            assert "Listening at" in second.output()
            for _ in range(20):  # new connections go to either server; every one is answered
                assert _get(socket.AF_INET, ("127.0.0.1", port))["remote"] == "127.0.0.1"
            first.signal(signal.SIGTERM)
            first.proc.wait(timeout=30)
            assert _get(socket.AF_INET, ("127.0.0.1", port))["remote"] == "127.0.0.1"  # the second serves on


def test_without_reuse_port_a_second_server_cannot_bind_the_port(app_dir: Path) -> None:
    port = free_port()
    cmd = pronghorn_cmd("kindsapp:app", "-b", f"127.0.0.1:{port}", "-w", "1")
    with running(cmd, cwd=app_dir, port=port) as first:
        first.wait_for_output("Booting worker")
        with running(cmd, cwd=app_dir) as second:
            assert second.proc.wait(timeout=60) != 0  # after its bind retries
            assert "Address already in use" in second.output()


def test_a_hup_that_changes_bind_keeps_the_sockets_systemd_passed(app_dir: Path) -> None:
    """Under socket activation the sockets are systemd's: a new ``bind`` is not taken, and the old
    sockets are not closed (nor, on Linux, made to drop handshakes for systemd's next start)."""
    port, other = free_port(), free_port()
    (app_dir / "conf.py").write_text(f"bind = ['127.0.0.1:{port}']\n")
    cmd = [sys.executable, "launch.py", "3", str(port), "activation", "kindsapp:app", "-c", "conf.py", "-w", "1"]
    with running(cmd, cwd=app_dir, port=port) as server:
        server.wait_for_output("Booting worker")
        (app_dir / "conf.py").write_text(f"bind = ['127.0.0.1:{other}']\n")
        server.signal(signal.SIGHUP)
        out = server.wait_for_output("bind changed, but the sockets are systemd's")
        assert "Listening on the sockets systemd passed" in out
        server.wait_for_output("Booting worker with pid", timeout=15)
        time.sleep(0.5)
        for _ in range(3):
            assert _get(socket.AF_INET, ("127.0.0.1", port))["remote"] == "127.0.0.1"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", other), timeout=2).close()
