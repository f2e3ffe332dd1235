"""The master raises the open-files soft limit to the hard limit, so workers can hold thousands of
connections even when started with the common default soft limit of 1024."""

from __future__ import annotations

import re
import resource
import selectors
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving import Server, free_port, running

HELLO_APP = '''
def app(environ, start_response):
    body = b"x" * (32 << 20) if environ["PATH_INFO"] == "/big" else b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

# Starts pronghorn with a lowered soft limit, as a shell's `ulimit -Sn` or a service manager would.
LOW_LIMIT_LAUNCHER = '''
import os, resource, sys

soft = int(sys.argv[1])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
os.execv(sys.executable, [sys.executable, "-m", "pronghorn", *sys.argv[2:]])
'''


@pytest.fixture()
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "helloapp.py").write_text(HELLO_APP)
    (tmp_path / "launch_low_limit.py").write_text(LOW_LIMIT_LAUNCHER)
    return tmp_path


def _hard_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _expected_soft_limit() -> int:
    """What the master should raise to: the hard limit, or the kernel's cap when that is unlimited."""
    hard = _hard_limit()
    if hard != resource.RLIM_INFINITY:
        return hard
    return int(Path("/proc/sys/fs/nr_open").read_text())


def _open_files_limits(pid: int) -> tuple[str, str]:
    """(soft, hard) as /proc/<pid>/limits shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no open files line in /proc/{pid}/limits")


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(child) for child in (task / "children").read_text().split()}
    return children


def _launch_low_limit(app_dir: Path, soft: int, *args: str) -> list[str]:
    return [sys.executable, str(app_dir / "launch_low_limit.py"), str(soft), "helloapp:app", *args]


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
def test_workers_inherit_the_soft_limit_raised_to_the_hard_limit(app_dir: Path) -> None:
    if _hard_limit() <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    port = free_port()
    args = _launch_low_limit(app_dir, 256, "-b", f"127.0.0.1:{port}", "-w", "2", "--log-level", "debug")
    with running(args, cwd=app_dir, port=port) as server:
        out = _wait_for_boots(server, 2)
        booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", out)}
        workers = _children(server.pid)
        assert booted <= workers, (booted, workers)
        limits = {pid: _open_files_limits(pid) for pid in (server.pid, *booted)}
    expected = str(_expected_soft_limit())
    for pid, (soft, _hard) in limits.items():
        assert soft == expected, (pid, soft, expected)
    assert f"Open files limit: {expected}, raised from 256" in out, out


def _wait_for_boots(server: Server, count: int, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = server.output()
        if out.count("Booting worker with pid") >= count:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{count} workers did not boot:\n{server.output()}")


@pytest.fixture()
def many_client_sockets() -> Iterator[None]:
    """Let this test process hold a few thousand sockets of its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if wanted < 4096:
        pytest.skip(f"the hard open files limit ({hard}) is too low for this test")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


CONNECTIONS = 2000


@pytest.mark.usefixtures("many_client_sockets")
def test_one_worker_serves_2000_concurrent_connections_when_started_with_a_soft_limit_of_1024(
    app_dir: Path,
) -> None:
    port = free_port()
    # keep-alive far above the test's length: every connection stays open, so a worker stuck at
    # ~1020 descriptors could not make room by closing idle ones.
    args = _launch_low_limit(app_dir, 1024, "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread",
                             "--worker-connections", "3000", "--keep-alive", "120")
    clients: list[socket.socket] = []
    with running(args, cwd=app_dir, port=port):
        try:
            deadline = time.monotonic() + 30
            for _ in range(CONNECTIONS):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            for client in clients:
                client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            answered = _read_one_response_each(clients, deadline)
        finally:
            for client in clients:
                client.close()
    assert answered == CONNECTIONS


def _read_one_response_each(clients: list[socket.socket], deadline: float) -> int:
    """Read until every client has one whole response (or the deadline); returns how many have."""
    received = {client.fileno(): b"" for client in clients}
    answered = 0
    with selectors.DefaultSelector() as selector:
        for client in clients:
            client.setblocking(False)
            selector.register(client, selectors.EVENT_READ, client)
        while answered < len(clients) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                reader: socket.socket = key.data
                chunk = reader.recv(65536)
                assert chunk, "the server closed a connection before answering it"
                data = received[reader.fileno()] = received[reader.fileno()] + chunk
                if data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nhello"):
                    answered += 1
                    selector.unregister(reader)
    return answered


@pytest.mark.usefixtures("many_client_sockets")
def test_a_slow_reader_on_a_descriptor_above_1024_gets_its_whole_response(app_dir: Path) -> None:
    port = free_port()
    args = _launch_low_limit(app_dir, 1024, "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread",
                             "--worker-connections", "3000", "--keep-alive", "120")
    clients: list[socket.socket] = []
    with running(args, cwd=app_dir, port=port) as server:
        try:
            for _ in range(1100):  # held open, so the next connection's descriptor is above 1024
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            slow = socket.socket()
            clients.append(slow)
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the response cannot fit in flight
            slow.settimeout(10)
            slow.connect(("127.0.0.1", port))
            slow.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.5)  # the worker fills the socket and has to wait for it to drain
            received = 0
            deadline = time.monotonic() + 30
            while received <= 32 << 20 and time.monotonic() < deadline:  # the body and its head
                chunk = slow.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        finally:
            for client in clients:
                client.close()
        out = server.output()
    assert received > 32 << 20, out
