"""Start real pronghorn processes for tests and always stop them by pid.

Each server runs in its own session (process group = its pid), so stopping it by that pid also
reaches workers it forked, even if the master died first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pronghorn

REPO = Path(__file__).resolve().parents[1]
# Where the pronghorn these tests import lives (site-packages, or src/): servers run the same code.
PACKAGE_ROOT = Path(pronghorn.__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRONGHORN_", "GUNICORN_"))}
    env.pop("PORT", None)
    env.pop("WEB_CONCURRENCY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]))
    # Servers run as users start them: not unbuffered, so output they buffer is tested as it behaves.
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra or {})
    return env


class Server:
    """A started process; ``stop()`` ends its whole process group by the child's pid."""

    def __init__(self, args: Sequence[str], *, cwd: Path | str, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.args = list(args)
        self.log_path = Path(log) if log else Path(cwd) / f"server-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, cwd=str(cwd), env=child_env(env), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid = self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server did not listen on {port} within {timeout}s:\n{self.output()}")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen within {timeout}s:\n{self.output()}")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self) -> None:
        """TERM the group, then KILL whatever is left of it."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            try:
                self.proc.wait(timeout=grace)
                if not _group_alive(self.pid):
                    break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@contextlib.contextmanager
def running(args: Sequence[str], *, cwd: Path | str, port: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(args, cwd=cwd, env=env)
    try:
        if port is not None:
            server.wait_for_port(port)
        yield server
    finally:
        server.stop()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:  # fields[0] is the state, fields[1] the parent's pid
            found.append(int(entry))
    return sorted(found)


def pronghorn_cmd(*args: str, module: str = "pronghorn") -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_until(condition: Callable[[], object], timeout: float) -> bool:
    """Poll ``condition`` every 20 ms until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def sd_notifications(sock: socket.socket, until: str, timeout: float = 20.0) -> list[dict[str, str]]:
    """sd_notify datagrams read from ``sock``, as dicts, up to and including the first with ``until``."""
    got: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        got.append(message)
        if until in message:
            return got
    raise AssertionError(f"no {until} notification within {timeout}s; got {got}")


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request with ``http.client``; returns (status, lower-cased headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def http_get(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 10.0,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET over a fresh connection; returns (status, headers, body) read until close."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{extra}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return status, headers, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]


class Load:
    """Client threads sending GETs until stopped; counts successes and failures, records pids.

    The app is expected to answer with its worker pid as the body. Every loop is bounded by
    ``max_seconds`` so a stuck server cannot hang the test run.
    """

    def __init__(self, port: int, *, concurrency: int = 20, path: str = "/", max_seconds: float = 60.0) -> None:
        import threading

        self.port = port
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self.pids: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        import http.client

        # One persistent HTTP/1.1 client per thread: it keeps the connection alive when the server
        # allows and opens a new one after a "Connection: close" response, as browsers do.
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    client.request("GET", self.path)
                    response = client.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise AssertionError(f"status {response.status}")
                    if response.will_close:
                        client.close()
                    with self._lock:
                        self.ok += 1
                        self.pids.append((time.monotonic(), int(body.split(b"|")[0])))
                except Exception as exc:  # noqa: BLE001 - every kind of failure is counted
                    client.close()
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def pids_since(self, moment: float) -> set[int]:
        with self._lock:
            return {pid for at, pid in self.pids if at >= moment}

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ok < count and time.monotonic() < deadline:
            time.sleep(0.02)


# -- worker classes and reading responses by their framing ------------------------------------------

# Command-line arguments selecting each worker the functional tests run against.
WORKER_ARGS: dict[str, list[str]] = {
    "sync": ["-k", "sync"],
    "gthread": ["-k", "gthread", "--threads", "1"],  # the app runs inline on the loop thread
    "gthread-t4": ["-k", "gthread", "--threads", "4"],  # the app runs on a pool of four threads
    "gevent": ["-k", "gevent"],  # a greenlet per connection (pronghorn[gevent])
    "asgi": ["-k", "asgi"],  # an ASGI app (abuse suite: ``abuseapp:asgi_app``)
}


def complete_responses(data: bytes | bytearray, *, head: bool = False) -> list[int]:
    """End offsets of the complete final responses at the start of ``data`` (1xx are skipped).

    A response counts as complete when its framing says so: no body (HEAD, 204, 304),
    Content-Length, or a chunked body up to its last chunk and trailer section. A response
    framed by the close is never complete here; read it until the server closes.
    """
    ends: list[int] = []
    pos = 0
    while True:
        end = data.find(b"\r\n\r\n", pos)
        if end == -1:
            return ends
        lines = data[pos:end].split(b"\r\n")
        status = int(lines[0][9:12])
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[bytes(name.strip().lower())] = bytes(value.strip())  # data may be a bytearray
        pos = end + 4
        if 100 <= status < 200:
            continue
        if head or status in (204, 304):
            pass
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            while True:
                eol = data.find(b"\r\n", pos)
                if eol == -1:
                    return ends
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    if data[pos:pos + 2] == b"\r\n":
                        pos += 2
                    else:
                        trailer_end = data.find(b"\r\n\r\n", pos)
                        if trailer_end == -1:
                            return ends
                        pos = trailer_end + 4
                    break
                if len(data) < pos + size + 2:
                    return ends
                pos += size + 2
        elif b"content-length" in fields:
            pos += int(fields[b"content-length"])
            if pos > len(data):
                return ends
        else:
            return ends
        ends.append(pos)


def read_responses(sock: socket.socket, count: int = 1, *, head: bool = False) -> bytes:
    """Read until ``count`` final responses are complete by their framing, or the server closes.

    Works the same whether the server keeps the connection alive or closes it after responding.
    """
    data = b""
    while len(complete_responses(data, head=head)) < count:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def split_responses(data: bytes, *, head: bool = False) -> list[bytes]:
    """``data`` cut into its framed responses; what follows the last complete one is the last item."""
    parts, start = [], 0
    for end in complete_responses(data, head=head):
        parts.append(data[start:end])
        start = end
    if start < len(data):
        parts.append(data[start:])
    return parts
