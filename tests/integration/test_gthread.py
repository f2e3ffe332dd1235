"""The gthread worker (issue 6) over real sockets: keep-alive, pipelining, deadlines, capacity-aware
accept, request bodies spilled to disk, bounded response buffering, ``request_timeout`` and the
heartbeat kill.

Every server is a real ``pronghorn -k gthread`` process, stopped by its pid in a finally
(``running()``). Memory is judged from the worker's ``/proc/<pid>/status``: ``VmHWM`` (its peak
resident size) after an operation against ``VmRSS`` before it, so memory that was used and then
freed still counts.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving import (
    Server,
    complete_responses,
    free_port,
    http_get,
    parse_response,
    pronghorn_cmd,
    running,
)

APP = r'''
import os, time
from urllib.parse import parse_qs

UPLOAD_DIR = os.environ.get("UPLOAD_DIR", "")


def upload_files_open():
    """How many descriptors of this process point into the upload directory (spilled bodies)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if UPLOAD_DIR and target.startswith(UPLOAD_DIR + "/"):
            count += 1
    return count


def big(total):
    for index in range(total >> 16):
        yield b"%08d" % index + b"x" * (65536 - 8)  # a new object each time, as real apps produce


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    stream = environ["wsgi.input"]
    if path == "/big":
        total = int(query["mib"]) << 20
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
        return big(total)
    if path == "/block":  # one large block: the head and this body go out without being joined
        block = bytes(range(256)) * (int(query["kib"]) << 2)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(block)))])
        return [block]
    if path == "/file":  # no Content-Length: chunked around the file on HTTP/1.1
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(os.path.join(os.getcwd(), "data.bin"), "rb"))
    if path == "/asyncio":  # synchronous code may run an event loop of its own, as in any server
        import asyncio
        try:
            asyncio.get_running_loop()
            seen = b"a running loop"
        except RuntimeError:
            seen = b"no running loop"
        body = seen + b", asyncio.run: " + asyncio.run(asyncio.sleep(0, result=b"ok"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/upload":
        in_files = upload_files_open()
        size = 0
        while chunk := stream.read(1 << 16):
            size += len(chunk)
        body = f"{size} {in_files}".encode()
    else:
        if path == "/sleep":
            time.sleep(float(query.get("s", "1")))
        elif path == "/busy":  # inline, this blocks the loop thread itself: no sleep, no I/O
            end = time.monotonic() + float(query["s"])
            while time.monotonic() < end:
                pass
        body = f"{os.getpid()}|{environ['REQUEST_METHOD']} {path}|".encode() + stream.read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


FILE_SIZE = 32 << 20


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("gthread")
    (cwd / "gapp.py").write_text(APP)
    (cwd / "uploads").mkdir()
    (cwd / "data.bin").write_bytes(bytes(range(256)) * (FILE_SIZE // 256))
    (cwd / "uploads.conf.py").write_text(f"tmp_upload_dir = {str(cwd / 'uploads')!r}\n")
    return cwd


@contextlib.contextmanager
def gthread(workdir: Path, *args: str, workers: int = 1) -> Iterator[tuple[int, Server]]:
    """A gthread server running ``gapp``; yields once its workers have booted."""
    port = free_port()
    cmd = pronghorn_cmd("gapp:app", "-b", f"127.0.0.1:{port}", "-k", "gthread", "-w", str(workers), *args)
    with running(cmd, cwd=workdir, port=port, env={"UPLOAD_DIR": str(workdir / "uploads")}) as server:
        wait_for_count(server, "Booting worker", workers)
        if workers > 1:
            time.sleep(0.5)  # each has loaded the app and watches the listener
        yield port, server


def wait_for_count(server: Server, text: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while server.output().count(text) < count:
        assert time.monotonic() < deadline, f"{count} x {text!r} not seen:\n{server.output()}"
        time.sleep(0.05)


class Client:
    """One connection; responses are taken off it one at a time by their framing."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = bytearray()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while not complete_responses(self.buffer):
            chunk = self.sock.recv(1 << 20)
            assert chunk, f"closed before a complete response: {bytes(self.buffer[:300])!r}"
            self.buffer += chunk
        end = complete_responses(self.buffer)[0]
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return parse_response(data)

    def wait_closed(self, timeout: float) -> bytes:
        """Everything the server still sends until it closes; fails if it does not within ``timeout``."""
        self.sock.settimeout(timeout)
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def on_threads(workdir: Path, shared: Shared, threads: str, check: Callable[[int], None]) -> None:
    """Run ``check(port)`` on the shared inline server ("1"), or on a server with that many threads."""
    if threads == "1":
        check(shared.port)
    else:
        with gthread(workdir, "--threads", threads) as (port, _):
            check(port)


def get(path: str, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path.encode(), connection)


def worker_pid(port: int) -> int:
    status, _, body = http_get(port, "/pid")
    assert status == 200
    return int(body.split(b"|")[0])


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def concurrently(port: int, paths: list[str]) -> tuple[float, list[tuple[int, dict[str, str], bytes]]]:
    """GET every path at once, each on its own connection; (seconds until all answered, responses)."""
    results: list[tuple[int, dict[str, str], bytes]] = []
    lock = threading.Lock()

    def one(path: str) -> None:
        response = http_get(port, path, timeout=10)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=one, args=(path,), daemon=True) for path in paths]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    return time.monotonic() - started, results


@dataclass
class Shared:
    port: int
    server: Server


@pytest.fixture(scope="module")
def shared(workdir: Path) -> Iterator[Shared]:
    """One worker, the app inline on the loop thread, short deadlines, uploads spilled to ``uploads/``."""
    with gthread(workdir, "--threads", "1", "--keep-alive", "1", "--header-timeout", "1",
                 "-c", "uploads.conf.py") as (port, server):
        yield Shared(port, server)


# --- keep-alive ------------------------------------------------------------------------------------------


def test_several_requests_on_one_connection(shared: Shared) -> None:
    with Client(shared.port) as client:
        pids = set()
        for index in range(3):
            client.send(get(f"/n{index}"))
            status, headers, body = client.response()
            assert status == 200 and headers["connection"] == "keep-alive", headers
            pid, what, _ = body.split(b"|")
            assert what == f"GET /n{index}".encode()
            pids.add(pid)
        assert len(pids) == 1  # the same worker, over the same connection


def test_an_app_run_inline_does_not_see_the_workers_event_loop(shared: Shared) -> None:
    """Django's ORM refuses to run where a loop is running, and asyncio.run() cannot nest."""
    for _ in range(2):  # and the loop is still there for the worker after the first
        status, _, body = http_get(shared.port, "/asyncio")
        assert (status, body) == (200, b"no running loop, asyncio.run: ok")


def test_idle_keep_alive_connection_is_closed_after_keepalive_seconds(shared: Shared) -> None:
    with Client(shared.port) as client:
        client.send(get("/"))
        assert client.response()[0] == 200
        answered = time.monotonic()
        assert client.wait_closed(timeout=5) == b""  # closed quietly
        idle = time.monotonic() - answered
    assert 0.7 <= idle <= 3.0, idle  # --keep-alive 1, enforced by a one-second tick


def test_keep_alive_zero_closes_after_each_response(workdir: Path) -> None:
    with gthread(workdir, "--keep-alive", "0") as (port, _), Client(port) as client:
        client.send(get("/"))
        status, headers, _ = client.response()
        assert status == 200 and headers["connection"] == "close"
        assert client.wait_closed(timeout=2) == b""


# --- pipelining ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", "4"])
def test_pipelined_requests_are_answered_in_order(workdir: Path, shared: Shared, threads: str) -> None:
    raw = (get("/first")
           + b"POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
           + get("/third", close=True))

    def check(port: int) -> None:
        with Client(port) as client:
            client.send(raw)  # one send: the three requests arrive together
            answers = [client.response() for _ in range(3)]
            assert client.wait_closed(timeout=2) == b""
        assert [body.split(b"|", 1)[1] for _, _, body in answers] == [
            b"GET /first|", b"POST /second|hello world", b"GET /third|"]
        assert [headers["connection"] for _, headers, _ in answers] == ["keep-alive", "keep-alive", "close"]

    on_threads(workdir, shared, threads, check)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_continue_for_a_pipelined_request_follows_the_previous_response(
    workdir: Path, shared: Shared, threads: str
) -> None:
    # Inline, responses wait for the end of the loop's pass; the 100 Continue for the next request
    # must still come after the response before it.
    raw = get("/first") + b"POST /second HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"

    def check(port: int) -> None:
        with Client(port) as client:
            client.send(raw + get("/third", close=True))
            received = client.wait_closed(timeout=5)
        assert re.findall(rb"HTTP/1\.1 (\d{3})", received) == [b"200", b"100", b"200", b"200"]
        assert received.index(b"GET /first|") < received.index(b"100 Continue") < received.index(b"POST /second|ok")

    on_threads(workdir, shared, threads, check)


# --- deadlines -------------------------------------------------------------------------------------------


def test_partial_head_is_closed_quietly_after_header_timeout(shared: Shared) -> None:
    with Client(shared.port) as client:
        client.send(b"GET /never HTTP/1.1\r\nHost: t\r\n")  # no blank line: the head never ends
        sent = time.monotonic()
        assert client.wait_closed(timeout=5) == b""
        waited = time.monotonic() - sent
    assert 0.7 <= waited <= 3.0, waited


def test_stalled_body_gets_408_and_close(shared: Shared) -> None:
    with Client(shared.port) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        sent = time.monotonic()
        data = client.wait_closed(timeout=5)
        waited = time.monotonic() - sent
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data
    assert parse_response(data)[1]["connection"] == "close"
    assert 0.7 <= waited <= 3.0, waited


# --- slow clients ----------------------------------------------------------------------------------------


def test_a_trickling_upload_does_not_block_other_clients(shared: Shared) -> None:
    # One worker, one thread: the body is received by the loop, so the app (and the only thread)
    # is free for the second client while the first one is still sending.
    body = b"0123456789" * 2
    with Client(shared.port) as slow:
        slow.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body[:5]:
            slow.send(bytes([byte]))
            time.sleep(0.1)
        started = time.monotonic()
        status, _, _ = http_get(shared.port, "/other", timeout=5)
        assert status == 200 and time.monotonic() - started < 0.5
        for byte in body[5:]:  # each byte well within the one-second body deadline
            slow.send(bytes([byte]))
            time.sleep(0.05)
        status, _, answer = slow.response()
    assert status == 200 and answer == b"%d 0" % len(body)  # small: kept in memory


# --- capacity-aware accept -------------------------------------------------------------------------------


def test_busy_workers_leave_connections_to_idle_siblings(workdir: Path) -> None:
    with gthread(workdir, "--threads", "2", workers=2) as (port, server):
        elapsed, responses = concurrently(port, ["/sleep?s=1"] * 4)
        assert [status for status, _, _ in responses] == [200] * 4, server.output()
        pids = Counter(body.split(b"|")[0] for _, _, body in responses)
        assert sorted(pids.values()) == [2, 2], pids  # two threads each, both workers used
        assert elapsed < 1.8, elapsed  # all four at once: nobody waited for a busy worker


def test_inline_worker_leaves_the_second_slow_request_to_its_sibling(workdir: Path) -> None:
    with gthread(workdir, "--threads", "1", workers=2) as (port, server):
        elapsed, responses = concurrently(port, ["/sleep?s=1"] * 2)
        assert [status for status, _, _ in responses] == [200] * 2, server.output()
        assert len({body.split(b"|")[0] for _, _, body in responses}) == 2
        assert elapsed < 1.8, elapsed


def _open_keep_alive(port: int, count: int) -> list[tuple[Client, bytes]]:
    """``count`` connections opened one after another, each answered once and kept: (client, worker pid)."""
    clients = []
    for _ in range(count):
        client = Client(port)
        client.send(get("/pid"))
        status, _, body = client.response()
        assert status == 200
        clients.append((client, body.split(b"|")[0]))
    return clients


def test_new_connections_go_to_the_worker_holding_fewer(workdir: Path) -> None:
    # Without the connection board two idle workers win new connections about equally often, however
    # many each already holds; with it, the one holding far fewer takes them until they are level.
    with gthread(workdir, "--threads", "1", "--keep-alive", "30", workers=2) as (port, server):
        blocker = Client(port)
        clients: list[tuple[Client, bytes]] = []
        try:
            blocker.send(get("/busy?s=1.5"))  # one worker's loop is stuck: the other takes the next 100
            time.sleep(0.2)
            clients += _open_keep_alive(port, 100)
            busy_pid = blocker.response()[2].split(b"|")[0]
            loaded = {pid for _, pid in clients}
            assert len(loaded) == 1 and busy_pid not in loaded, server.output()
            clients += _open_keep_alive(port, 100)
            newcomers = Counter(pid for _, pid in clients[100:])
            assert newcomers[busy_pid] >= 80, newcomers
        finally:
            blocker.sock.close()
            for client, _ in clients:
                client.sock.close()


def test_a_lighter_sibling_that_is_busy_does_not_hold_new_connections(workdir: Path) -> None:
    with gthread(workdir, "--threads", "1", "--keep-alive", "30", workers=2) as (port, server):
        clients = _open_keep_alive(port, 80)
        try:
            by_pid: dict[bytes, list[Client]] = {}
            for client, pid in clients:
                by_pid.setdefault(pid, []).append(client)
            assert len(by_pid) == 2, by_pid.keys()
            light, heavy = sorted(by_pid, key=lambda pid: len(by_pid[pid]))
            for client in by_pid[light][: len(by_pid[light]) // 2 + 10]:
                client.sock.close()  # the light worker now holds clearly fewer connections ...
            time.sleep(0.2)
            blocker = by_pid[light][-1]
            blocker.send(get("/busy?s=3"))  # ... and its loop thread is stuck in the app
            time.sleep(0.2)
            started = time.monotonic()
            newcomers = _open_keep_alive(port, 10)
            elapsed = time.monotonic() - started
            assert {pid for _, pid in newcomers} == {heavy}, server.output()
            assert elapsed < 1.5, elapsed  # taken by the heavy one after a moment, not after 3 s
            assert blocker.response()[0] == 200
            for client, _ in newcomers:
                client.sock.close()
        finally:
            for client, _ in clients:
                client.sock.close()


# --- request bodies spill to disk ------------------------------------------------------------------------


def _upload(port: int, size: int) -> bytes:
    block = b"u" * (1 << 20)
    with Client(port, timeout=30) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size >> 20):
            client.send(block)
        status, _, body = client.response()
    assert status == 200
    return body


def test_large_body_is_spooled_to_tmp_upload_dir(shared: Shared) -> None:
    size, in_files = _upload(shared.port, 5 << 20).split()
    assert int(size) == 5 << 20
    assert int(in_files) == 1  # while the app ran, the body was an open file in tmp_upload_dir


def test_a_body_that_cannot_be_spilled_is_answered_500_and_logged(workdir: Path) -> None:
    (workdir / "nowhere.conf.py").write_text(f"tmp_upload_dir = {str(workdir / 'missing' / 'dir')!r}\n")
    with gthread(workdir, "-c", "nowhere.conf.py") as (port, server), Client(port) as client:
        # Past the 1 MiB kept in memory, and then nothing more: every byte sent has been read when
        # the server closes, so its answer is not lost to a reset.
        client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (4 << 20))
        client.send(b"u" * ((1 << 20) + 4096))
        status, headers, _ = client.response()
        assert (status, headers["connection"]) == (500, "close")
        out = server.wait_for_output("Cannot store a request body in tmp_upload_dir")
        assert "No such file or directory" in out
        assert http_get(port, "/n")[0] == 200  # the worker serves on


def test_64_mib_upload_costs_far_less_than_64_mib_of_memory(shared: Shared) -> None:
    pid = worker_pid(shared.port)
    before = memory_kib(pid, "VmRSS")
    size, _ = _upload(shared.port, 64 << 20).split()
    assert int(size) == 64 << 20
    growth_mib = (memory_kib(pid, "VmHWM") - before) / 1024
    assert growth_mib < 16, f"the worker's peak memory grew by {growth_mib:.1f} MiB"


# --- bounded response buffering --------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", "4"])
def test_one_large_block_to_a_slow_reader_then_the_next_request(workdir: Path, shared: Shared, threads: str) -> None:
    size = 4 << 20
    expected = bytes(range(256)) * (size // 256)

    def check(port: int) -> None:
        with Client(port, timeout=20) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            client.send(get(f"/block?kib={size >> 10}") + get("/after"))
            time.sleep(0.5)  # not reading yet: the server's writes stop part-way
            data = bytearray()
            while b"\r\n\r\n" not in data:
                chunk = client.sock.recv(65536)
                assert chunk, bytes(data)
                data += chunk
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nContent-Length: %d" % size in head
            received = bytearray(body)
            while len(received) < size:
                chunk = client.sock.recv(1 << 20)
                assert chunk, f"closed after {len(received)} of {size} bytes"
                received += chunk
            client.buffer[:] = received[size:]
            assert received[:size] == expected
            status, _, answer = client.response()
            assert status == 200 and answer.endswith(b"GET /after|")

    on_threads(workdir, shared, threads, check)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_fast_app_and_slow_reader_keep_memory_bounded(workdir: Path, shared: Shared, threads: str) -> None:
    total = 64 << 20

    def check(port: int) -> None:
        pid = worker_pid(port)
        before = memory_kib(pid, "VmRSS")
        with Client(port, timeout=20) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            client.send(get(f"/big?mib={total >> 20}"))
            time.sleep(2)  # not reading: the app produces far faster than this client reads
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.sock.recv(65536)
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nContent-Length: %d" % total in head
            received = len(body)
            while received < total:
                chunk = client.sock.recv(1 << 20)
                assert chunk, f"closed after {received} of {total} bytes"
                received += len(chunk)
        # The peak over the stall and the fast read that followed it.
        growth_mib = (memory_kib(pid, "VmHWM") - before) / 1024
        assert growth_mib < 16, f"the worker's peak memory grew by {growth_mib:.1f} MiB"
        assert received == total

    on_threads(workdir, shared, threads, check)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_file_wrapper_to_a_slow_reader_then_the_next_request(workdir: Path, shared: Shared, threads: str) -> None:
    def check(port: int) -> None:
        pid = worker_pid(port)
        before = memory_kib(pid, "VmRSS")
        with Client(port, timeout=20) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            client.send(get("/file") + get("/after"))  # pipelined behind the file
            time.sleep(1)  # not reading yet
            status, headers, body = client.response()
            assert status == 200 and headers["transfer-encoding"] == "chunked"
            assert body == (workdir / "data.bin").read_bytes()
            status, _, body = client.response()
            assert status == 200 and body.split(b"|")[1] == b"GET /after"
        growth_mib = (memory_kib(pid, "VmHWM") - before) / 1024
        assert growth_mib < 16, f"the worker's peak memory grew by {growth_mib:.1f} MiB"

    on_threads(workdir, shared, threads, check)


# --- request_timeout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["1", "4"])  # 1: SIGALRM interrupts the app inline; 4: the loop answers
def test_request_timeout_answers_504_and_recycles_the_worker(workdir: Path, threads: str) -> None:
    with gthread(workdir, "--threads", threads, "--request-timeout", "1") as (port, server):
        first = worker_pid(port)
        started = time.monotonic()
        status, headers, _ = http_get(port, "/sleep?s=5", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 504 and headers["connection"] == "close", server.output()
        assert elapsed < 2.5, elapsed
        server.wait_for_output("GET /sleep")
        logged = [line for line in server.output().splitlines() if "timed out" in line and "GET /sleep" in line]
        assert logged, server.output()  # the timeout is logged with method and path
        # Recycled: a new worker boots (once the stuck app thread is done) and answers.
        wait_for_count(server, "Booting worker", 2, timeout=10)
        assert worker_pid(port) != first


# --- the heartbeat ---------------------------------------------------------------------------------------


def test_app_blocking_the_loop_is_killed_at_timeout(workdir: Path) -> None:
    with gthread(workdir, "--threads", "1", "-t", "2") as (port, server):
        first = worker_pid(port)
        answer: list[bytes] = []

        def stuck_request() -> None:
            with Client(port) as client, contextlib.suppress(OSError):
                client.send(get("/busy?s=10"))
                answer.append(client.wait_closed(timeout=10))  # the worker is killed under it

        blocked = threading.Thread(target=stuck_request, daemon=True)
        started = time.monotonic()
        blocked.start()
        server.wait_for_output("WORKER TIMEOUT", timeout=8)
        assert time.monotonic() - started < 6  # -t 2, checked about once a second by the master
        wait_for_count(server, "Booting worker", 2, timeout=8)
        assert worker_pid(port) != first
        blocked.join(timeout=10)
        # Aborted mid-request: answered 500 (nothing had been sent), logged once, no raw dump.
        assert len(answer) == 1 and answer[0].startswith(b"HTTP/1.1 500 "), answer
        output = server.output()
        assert output.count("Worker timed out (aborted by the master): GET /busy") == 1, output
        assert "Fatal error" not in output and "Traceback" not in output, output
        assert "Perhaps out of memory" not in output, output


FAIR_APP = '''
import time

def app(environ, start_response):
    time.sleep(0.2)
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_saturated_pool_does_not_starve_queued_clients(tmp_path: Path) -> None:
    """Keep-alive clients of a busy worker must not hold every thread while others wait in the queue."""
    import http.client
    import threading

    (tmp_path / "fairapp.py").write_text(FAIR_APP)
    port = free_port()
    counts = [0] * 6
    stop = threading.Event()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while not stop.is_set():
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.will_close:
                    conn.close()
                counts[index] += 1
        except OSError:
            pass
        finally:
            conn.close()

    args = ["fairapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread", "--threads", "2", "--keep-alive", "30"]
    with running(pronghorn_cmd(*args), cwd=tmp_path, port=port):
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
        for thread in threads[:4]:  # these keep both threads busy from now on
            thread.start()
        time.sleep(1.0)
        for thread in threads[4:]:  # latecomers wait in the listen queue
            thread.start()
        time.sleep(3.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    # Latecomers get a fair share, not the odd request when the early clients happen to pause.
    assert min(counts[4:]) >= 0.3 * max(counts[:4]), counts
