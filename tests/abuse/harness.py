"""The abuse suite's server side: the test app, starting a server, and reading its workers from /proc.

Every server is a real ``pronghorn`` process started through ``serving.running()``, so it is stopped
by its pid in a ``finally`` whatever happens in the test. Workers are found as the master's children;
their descriptors, memory and CPU time are read from ``/proc/<pid>/``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import WORKER_ARGS, Server, children_of, free_port, pronghorn_cmd, running

# One module, one callable, a few paths. Each worker leaves a marker when it has imported the app,
# so the suite knows when every worker is ready (and takes descriptor baselines only then).
APP = r'''
import os, time

open(f"ready-{os.getpid()}", "w").close()

BLOCK = b"x" * 65536
BIG_SIZE = 8 << 20


def stream():
    """Four chunks 0.3 s apart, each carrying the moment it was yielded."""
    for index in range(4):
        if index:
            time.sleep(0.3)
        yield b"<chunk %d at %.6f>\n" % (index, time.time())


def big():
    for _ in range(BIG_SIZE // len(BLOCK)):
        yield BLOCK


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream()
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))])
        return big()
    if path == "/read":  # reads its whole body
        size = 0
        stream_in = environ["wsgi.input"]
        while chunk := stream_in.read(65536):
            size += len(chunk)
        body = b"read %d" % size
    elif path == "/noread":  # never touches its body
        body = b"did not read"
    else:  # hello: the worker's pid and the path, so pipelined answers can be matched to requests
        body = f"{os.getpid()} {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    """The same paths for the ASGI worker (``abuseapp:asgi_app``)."""
    import asyncio

    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for index in range(4):
            if index:
                await asyncio.sleep(0.3)
            chunk = b"<chunk %d at %.6f>\n" % (index, time.time())
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"), (b"content-length", str(BIG_SIZE).encode())]})
        for _ in range(BIG_SIZE // len(BLOCK)):
            await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/read":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"read %d" % size
    elif path == "/noread":
        body = b"did not read"
    else:
        body = f"{os.getpid()} {path}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''

BIG_SIZE = 8 << 20
MB = 1_000_000


def write_app(directory: Path) -> Path:
    (directory / "abuseapp.py").write_text(APP)
    return directory


class CaseFigures:
    """What one case measured, and which of its thresholds held; printed at the end of the run.

    A case measures everything first and asserts last (``assert_all``), so its figures are
    reported even when an early threshold fails.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.failures: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(f"      {text}")

    def check(self, ok: bool, text: str) -> bool:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {text}")
        if not ok:
            self.failures.append(text)
        return ok

    def assert_all(self) -> None:
        if self.failures:  # the figures say the rest: no traceback of the test's source
            pytest.fail("\n".join(["thresholds missed:", *self.failures]), pytrace=False)


# -- /proc ------------------------------------------------------------------------------------------




def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1  # gone


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def reset_peak_memory(pid: int) -> None:
    """Make VmHWM (the peak resident size) restart from the current size (``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextlib.contextmanager
def nofile_raised() -> Iterator[int]:
    """This process's soft RLIMIT_NOFILE raised to its hard limit, restored afterwards.

    Raised only after the server has started: the server must raise its own limit, not inherit ours.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- a server under test ----------------------------------------------------------------------------


class AbuseServer:
    """A started server: its port, its workers, their descriptor baselines and memory."""

    def __init__(self, server: Server, port: int, workers: int, workdir: Path) -> None:
        self.server = server
        self.port = port
        self.workers = workers
        self.workdir = workdir
        self.pids: list[int] = []
        self.extra_pids: list[int] = []  # processes it started that outlive it (a USR2 upgrade's new master)
        self.fd_baseline: dict[int, int] = {}
        self._memory_before: dict[int, int] = {}

    def log(self) -> str:
        return self.server.output()

    def current_workers(self) -> list[int]:
        return children_of(self.server.pid)

    @contextlib.contextmanager
    def on_its_own_core(self) -> Iterator[None]:
        """The master and its workers on one core, this process (and the threads and processes it
        starts from here on, load and attack alike) on the others, as when clients are other
        machines. Unpinned on a 2-core machine, three busy processes share two cores: the same
        unloaded run gave 13k req/s or 34k from one start to the next, and any wake-up of the
        attacking swarm cost the clients more than it cost the server (wrk, which does not share a
        core with the swarm, saw no loss where these clients saw 10-15%)."""
        ours = os.sched_getaffinity(0)
        cpus = sorted(ours)
        if len(cpus) < 2:
            yield
            return
        for pid in (self.server.pid, *self.current_workers()):  # workers forked later inherit the master's
            os.sched_setaffinity(pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
        try:
            yield
        finally:
            os.sched_setaffinity(0, ours)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every worker has imported the app and answered; then take each one's descriptor count."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.current_workers()
            if len(pids) == self.workers and all((self.workdir / f"ready-{pid}").exists() for pid in pids):
                break
            assert time.monotonic() < deadline, f"workers not ready in {timeout}s: {pids}\n{self.log()}"
            time.sleep(0.05)
        self.pids = pids
        # Every worker answers at least once before the baseline: the event loop opens a descriptor
        # of its own with its first connection.
        answered: set[int] = set()
        while not answered >= set(pids) and time.monotonic() < deadline:
            answered |= self._warm_up_batch(2 * self.workers)
        assert answered >= set(pids), f"workers {sorted(set(pids) - answered)} answered no request"
        self.fd_baseline = self._stable_fd_counts(deadline)

    def _warm_up_batch(self, count: int) -> set[int]:
        """``count`` GETs on connections opened together (so more than one worker takes them);
        returns the pids that answered."""
        socks = [socket.create_connection(("127.0.0.1", self.port), timeout=10) for _ in range(count)]
        answered = set()
        try:
            for sock in socks:
                sock.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for sock in socks:
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                answered.add(int(data.partition(b"\r\n\r\n")[2].split(b" ")[0]))
        finally:
            for sock in socks:
                sock.close()
        return answered

    def _stable_fd_counts(self, deadline: float) -> dict[int, int]:
        previous = {pid: fd_count(pid) for pid in self.pids}
        while time.monotonic() < deadline:
            time.sleep(0.25)
            counts = {pid: fd_count(pid) for pid in self.pids}
            if counts == previous:
                return counts
            previous = counts
        return previous

    def wait_for_fd_baseline(self, timeout: float) -> dict[int, int]:
        """Each worker's descriptor count once all are back at their baseline, or when time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            counts = {pid: fd_count(pid) for pid in self.pids}
            if counts == self.fd_baseline or time.monotonic() > deadline:
                return counts
            time.sleep(0.1)

    def extra_descriptors(self) -> int:
        """How many more descriptors the workers hold than at their baseline (accepted connections,
        not those still queued in the listen backlog)."""
        return sum(fd_count(pid) - self.fd_baseline[pid] for pid in self.pids)

    def fds_back_at_baseline(self, figures: CaseFigures, timeout: float = 5.0) -> None:
        """Case 11: each worker's open descriptors return to their count before the case."""
        started = time.monotonic()
        counts = self.wait_for_fd_baseline(timeout)
        shown = ", ".join(f"pid {pid}: {self.fd_baseline[pid]} -> {counts[pid] if counts[pid] >= 0 else 'gone'}"
                          for pid in self.pids)
        figures.check(counts == self.fd_baseline,
                      f"worker descriptors back at baseline within {timeout:g}s "
                      f"(took {time.monotonic() - started:.1f}s; {shown})")

    def start_memory_watch(self) -> None:
        """Remember each worker's resident size and restart its peak from there."""
        self._memory_before = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                reset_peak_memory(pid)
                self._memory_before[pid] = status_kib(pid, "VmRSS")

    def memory_growth_bytes(self) -> int:
        """Largest growth of one worker since ``start_memory_watch``: its peak (VmHWM, so memory used
        and freed again still counts) minus its resident size before."""
        growth = 0
        for pid, before in self._memory_before.items():
            with contextlib.suppress(OSError):
                peak = max(status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS"))
                growth = max(growth, (peak - before) * 1024)
        return growth


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """TERM a process this suite started indirectly, then KILL it if it is still there after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@contextlib.contextmanager
def abuse_server(workdir: Path, worker: str, *extra: str, workers: int = 2) -> Iterator[AbuseServer]:
    """``pronghorn abuseapp:app`` with the given worker (a key of ``serving.WORKER_ARGS``), ready."""
    port = free_port()
    app = "abuseapp:asgi_app" if worker == "asgi" else "abuseapp:app"
    cmd = pronghorn_cmd(app, "-b", f"127.0.0.1:{port}", "-w", str(workers), *WORKER_ARGS[worker], *extra)
    with running(cmd, cwd=workdir, port=port) as server:
        handle = AbuseServer(server, port, workers, workdir)
        try:
            handle.wait_ready()
            yield handle
        finally:
            for pid in handle.extra_pids:
                stop_pid(pid)
