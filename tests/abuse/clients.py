"""The abuse suite's clients: ordinary load, hostile connection swarms, and raw feeders.

Ordinary clients are plain threads with blocking sockets (``RequestLoad``). The many connections of
an attack (slowloris, silent, idle keep-alive, slow POST) are driven by one ``selectors`` loop in one
thread (``Swarm``), not a thread each; a swarm measured against can run in a process of its own.
Every loop here ends by itself: each has a count and a deadline, and every socket has a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import math
import multiprocessing
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from serving import complete_responses

ADDRESS = "127.0.0.1"


# -- reading responses ------------------------------------------------------------------------------


class ResponseReader:
    """Reads Content-Length framed responses (all this suite's app sends) from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.received = 0
        self.closing = False  # the last response said "Connection: close"

    def read(self) -> tuple[int, bytes]:
        """The next final response as (status, body); ConnectionError if the server closes first."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                status = int(self.buf[9:12])
                length = content_length(bytes(self.buf[:end]))
                if 100 <= status < 200:
                    del self.buf[:end + 4]
                    continue
                total = end + 4 + length
                self.closing = says_close(bytes(self.buf[:end]))
                while len(self.buf) < total:
                    self._fill()
                body = bytes(self.buf[end + 4:total])
                del self.buf[:total]
                return status, body
            self._fill()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed by the server" if not self.buf else "closed in a response")
        self.received += len(chunk)
        self.buf += chunk


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def says_close(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"connection" and b"close" in value.lower():
            return True
    return False


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"


# -- ordinary clients -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    completed: int
    failed: int
    latencies: list[float]  # seconds, one per request; a failed request counts as infinitely slow
    elapsed: float
    errors: list[str] = field(default_factory=list)
    retried: int = 0  # requests answered on a second connection after a kept-alive one was closed unanswered
    refused: int = 0  # connections refused once ``refused_ends`` (a stopped server), not failures
    finished_at: list[float] = field(default_factory=list)  # monotonic end of each answered request

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=math.inf)

    def summary(self) -> str:
        text = (f"{self.completed} ok / {self.failed} failed in {self.elapsed:.1f}s = {self.throughput:.0f} req/s, "
                f"p50 {ms(percentile(self.latencies, 0.5))}, p99 {ms(self.p99)}, max {ms(self.worst)}")
        if self.retried:
            text += f", {self.retried} retried on a new connection"
        if self.refused:
            text += f", {self.refused} refused after the stop"
        if self.errors:
            text += f" (first error: {self.errors[0]})"
        return text

    def rate_between(self, start: float, end: float) -> float:
        """Answered requests per second between two ``time.monotonic()`` moments."""
        count = sum(1 for moment in self.finished_at if start <= moment < end)
        return count / (end - start) if end > start else 0.0


def merged(*results: LoadResult) -> LoadResult:
    return LoadResult(
        completed=sum(r.completed for r in results), failed=sum(r.failed for r in results),
        latencies=[x for r in results for x in r.latencies], elapsed=sum(r.elapsed for r in results),
        errors=[e for r in results for e in r.errors], retried=sum(r.retried for r in results),
        refused=sum(r.refused for r in results), finished_at=[t for r in results for t in r.finished_at],
    )


class RequestLoad:
    """Client threads sending GETs, each timed; for ``duration`` seconds or ``requests`` per thread.

    ``mode``: "keep-alive" (one persistent connection per thread), "new" (a new connection for every
    request, ``Connection: close``), or "mixed" (half the threads each). ``pace``: seconds between
    the starts of a thread's requests (0 = as fast as answers come). A run by ``requests`` still
    ends after ``max_seconds``; ``stop()`` ends any run early. With ``refused_ends``, a refused
    connection ends its thread and is counted apart (the server under test was stopped on purpose).
    """

    def __init__(self, port: int, *, threads: int = 4, path: str = "/hello", mode: str = "mixed",
                 pace: float = 0.0, duration: float = 3.0, requests: int | None = None, timeout: float = 5.0,
                 max_seconds: float = 60.0, refused_ends: bool = False) -> None:
        self.port = port
        self.threads = threads
        self.mode = mode
        self.pace = pace
        self.duration = duration
        self.requests = requests
        self.timeout = timeout
        self.refused_ends = refused_ends
        self.seconds = duration if requests is None else max_seconds
        self.request = f"GET {path} HTTP/1.1\r\nHost: {ADDRESS}\r\n\r\n".encode()
        self.closing_request = f"GET {path} HTTP/1.1\r\nHost: {ADDRESS}\r\nConnection: close\r\n\r\n".encode()
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._errors: list[str] = []
        self._completed = 0
        self._failed = 0
        self._retried = 0
        self._refused = 0
        self._finished_at: list[float] = []
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._started = 0.0

    def run(self) -> LoadResult:
        self.start()
        return self.join()

    def start(self) -> None:
        self._started = time.monotonic()
        for index in range(self.threads):
            keep_alive = self.mode == "keep-alive" or (self.mode == "mixed" and index % 2 == 0)
            thread = threading.Thread(target=self._client, args=(keep_alive,), daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> LoadResult:
        self._stop.set()
        return self.join()

    def join(self) -> LoadResult:
        # Each thread ends by its own deadline; a request in progress then may take ``timeout`` more.
        limit = self._started + self.seconds + 2 * self.timeout + 5
        for thread in self._workers:
            thread.join(timeout=max(0.1, limit - time.monotonic()))
        elapsed = time.monotonic() - self._started
        with self._lock:
            return LoadResult(self._completed, self._failed, list(self._latencies), elapsed, list(self._errors[:5]),
                              self._retried, self._refused, list(self._finished_at))

    def _client(self, keep_alive: bool) -> None:
        start = time.monotonic()
        deadline = start + self.seconds
        next_at = start
        sock: socket.socket | None = None
        reader: ResponseReader | None = None
        done = 0
        try:
            while (time.monotonic() < deadline and not self._stop.is_set()
                   and (self.requests is None or done < self.requests)):
                if self.pace:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_at = max(next_at + self.pace, time.monotonic() - self.pace)
                done += 1
                began = time.perf_counter()
                error = None
                refused = False
                for attempt in (0, 1):
                    reused = sock is not None
                    received_before = reader.received if reused and reader is not None else 0
                    try:
                        if sock is None:
                            sock = socket.create_connection((ADDRESS, self.port), timeout=self.timeout)
                            reader = ResponseReader(sock)
                        assert reader is not None
                        sock.sendall(self.request if keep_alive else self.closing_request)
                        status, _ = reader.read()
                        error = None if status == 200 else f"status {status}"
                        if not keep_alive or reader.closing:  # the server's "Connection: close" too
                            sock.close()
                            sock = None
                        break
                    except (OSError, ConnectionError, ValueError) as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        refused = isinstance(exc, ConnectionRefusedError) and sock is None
                        if sock is not None:
                            sock.close()
                            sock = None
                        # A kept-alive connection the server closed while idle: retry once on a new one,
                        # as HTTP clients do (a request that was never answered).
                        if not (reused and attempt == 0 and reader is not None and reader.received == received_before):
                            break
                latency = time.perf_counter() - began
                if refused and self.refused_ends:
                    with self._lock:
                        self._refused += 1
                    return
                with self._lock:
                    if error is None:
                        self._completed += 1
                        self._latencies.append(latency)
                        self._finished_at.append(time.monotonic())
                        self._retried += attempt
                    else:
                        self._failed += 1
                        self._latencies.append(math.inf)
                        self._errors.append(error)
                if error is not None:
                    time.sleep(0.01)  # a refusing server must not turn this loop into a spin
        finally:
            if sock is not None:
                sock.close()


# -- many hostile connections in one selectors loop ---------------------------------------------------


@dataclass(eq=False)
class Conn:
    sock: socket.socket | None  # None once reported back from a swarm's own process
    opened: float  # connect() called
    connected: float = 0.0  # established (client side)
    closed: float = 0.0  # EOF or reset seen
    how: str = ""  # "eof", "reset", "send-error", "connect-error", "stopped"
    sent: int = 0
    received: bytes = b""
    responded: float = 0.0
    outbox: bytes = b""

    @property
    def lifetime(self) -> float:
        return self.closed - self.connected if self.closed and self.connected else math.inf


class _SharedCount:
    """A counter of the swarm's kept in shared memory, so a swarm in its own process is watched alike."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, swarm: Swarm, owner: object = None) -> int:
        return swarm._counts[self.index]

    def __set__(self, swarm: Swarm, value: int) -> None:
        swarm._counts[self.index] = value


class Swarm:
    """``count`` connections held open by one selectors loop in one thread.

    Each sends ``opening`` once connected, then ``drip`` every ``drip_every`` seconds (up to
    ``drip_limit`` bytes of drip). With ``read_response`` it reads one response (then idles).
    ``reconnect`` replaces connections the server closes, keeping the pressure constant.
    At most ``max_in_flight`` connections are being set up at once; ``open_per_second`` paces opening.
    ``own_process`` runs the loop in a process of its own: beside clients whose throughput is
    measured, a loop in their process takes the GIL from them, and the attack then seems to cost the
    server what it cost the measuring clients (7% of their throughput in one comparison).
    """

    open_now = _SharedCount(0)  # established and not closed
    responded = _SharedCount(1)
    _to_open = _SharedCount(2)
    _in_flight = _SharedCount(3)
    _reconnect = _SharedCount(4)

    def __init__(self, port: int, count: int, *, opening: bytes = b"", drip: bytes = b"", drip_every: float = 1.0,
                 drip_limit: int | None = None, read_response: bool = False, reconnect: bool = False,
                 max_in_flight: int = 100, open_per_second: float | None = None, max_seconds: float = 90.0,
                 own_process: bool = False) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._counts: Any = self._context.RawArray("q", 5)
        self.port = port
        self.count = count
        self.opening = opening
        self.drip = drip
        self.drip_every = drip_every
        self.drip_limit = drip_limit
        self.read_response = read_response
        self._reconnect = reconnect
        self.max_in_flight = max_in_flight
        self.open_per_second = open_per_second
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.conns: list[Conn] = []
        self.connect_errors: list[str] = []
        self._to_open = count
        self._stop = self._context.Event()
        self._report, self._report_sender = self._context.Pipe(duplex=False)
        self._runner: threading.Thread | multiprocessing.process.BaseProcess
        if own_process:
            self._runner = self._context.Process(target=_swarm_in_own_process, args=(self,), daemon=True)
        else:
            self._runner = threading.Thread(target=self._run, daemon=True)
        self._selector = selectors.DefaultSelector()
        self._drips: list[tuple[float, int, Conn]] = []  # a heap: (when, tie-breaker, connection)

    def __getstate__(self) -> dict[str, Any]:
        """What a swarm's own process is given: its settings and the shared counters and signals."""
        kept = ("port", "count", "opening", "drip", "drip_every", "drip_limit", "read_response", "max_in_flight",
                "open_per_second", "max_seconds", "_counts", "_stop", "_report_sender")
        return {name: self.__dict__[name] for name in kept}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.deadline = time.monotonic() + self.max_seconds
        self.conns = []
        self.connect_errors = []
        self._selector = selectors.DefaultSelector()
        self._drips = []

    def __enter__(self) -> Swarm:  # noqa: PYI034 - Self needs Python 3.11
        self._runner.start()
        if not isinstance(self._runner, threading.Thread):
            self._report_sender.close()  # the child's copy is the one left: its exit ends our wait
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close every connection from this side (the swarm's loop does it) and wait for that."""
        self._stop.set()
        try:
            if isinstance(self._runner, threading.Thread):
                self._runner.join(timeout=30)
                return
            if self._report.poll(30):
                # What the swarm's process saw of its connections, for the case to judge (nothing if
                # it died: the case's counts then show it).
                with contextlib.suppress(EOFError):
                    records, self.connect_errors = self._report.recv()
                    self.conns = [Conn(None, *record) for record in records]
            self._runner.join(timeout=10)
        finally:
            if isinstance(self._runner, multiprocessing.process.BaseProcess) and self._runner.is_alive():
                self._runner.kill()
                self._runner.join(timeout=10)
            self._report.close()
            self._report_sender.close()

    def stop_reconnecting(self) -> None:
        self._reconnect = False

    def wait(self, predicate: str, timeout: float) -> bool:
        """Wait until "all-open", "all-responded" or "all-closed"; False if the time ran out."""
        checks = {
            "all-open": lambda: self.open_now >= self.count,
            "all-responded": lambda: self.responded >= self.count,
            "all-closed": lambda: self._to_open == 0 and self.open_now == 0 and self._in_flight == 0,
        }
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if checks[predicate]():
                return True
            if not self._runner.is_alive():
                break
            time.sleep(0.02)
        return checks[predicate]()

    # -- the loop (the swarm's own thread) --

    def _run(self) -> None:
        opened_since = time.monotonic()
        opened_count = 0
        try:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                now = time.monotonic()
                while self._to_open > 0 and self._in_flight < self.max_in_flight:
                    if self.open_per_second and opened_count >= (now - opened_since) * self.open_per_second:
                        break
                    self._open(now)
                    opened_count += 1
                # Sleep until the next drip is due, not on a short tick: each needless wake-up takes a
                # core from the clients and workers being measured. Connections waiting to be opened
                # (paced, or beyond max_in_flight) are looked at again soon.
                timeout = 0.01 if self._to_open > 0 else 0.1
                if self._drips:
                    timeout = min(timeout, max(0.0, self._drips[0][0] - now))
                for key, mask in self._selector.select(timeout):
                    conn: Conn = key.data
                    if not conn.connected:
                        self._finish_connect(conn)
                    else:
                        if mask & selectors.EVENT_READ:
                            self._readable(conn)
                        if mask & selectors.EVENT_WRITE and not conn.closed:
                            self._flush(conn)
                self._send_drips(time.monotonic())
        finally:
            for conn in self.conns:
                if not conn.closed:
                    self._closed(conn, "stopped", count_reconnect=False)
            self._selector.close()

    def _open(self, now: float) -> None:
        self._to_open -= 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:  # out of descriptors: open no more (the case's counts show it)
            self.connect_errors.append(f"socket(): {exc.strerror}")
            self._to_open = 0
            return
        sock.setblocking(False)
        conn = Conn(sock, opened=now)
        self.conns.append(conn)
        code = sock.connect_ex((ADDRESS, self.port))
        if code not in (0, errno.EINPROGRESS):
            self.connect_errors.append(errno.errorcode.get(code, str(code)))
            conn.how = "connect-error"
            conn.closed = now
            sock.close()
            return
        self._in_flight += 1
        self._selector.register(sock, selectors.EVENT_WRITE, conn)

    def _finish_connect(self, conn: Conn) -> None:
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.connect_errors.append(errno.errorcode.get(code, str(code)))
            self._in_flight -= 1
            self._selector.unregister(conn.sock)
            conn.sock.close()
            conn.how = "connect-error"
            conn.closed = time.monotonic()
            if self._reconnect and not self._stop.is_set():
                self._to_open += 1
            return
        conn.connected = time.monotonic()
        self.open_now += 1
        if not self.read_response:
            self._in_flight -= 1
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if self.opening:
            self._send(conn, self.opening)
        if self.drip:
            heapq.heappush(self._drips, (conn.connected + self.drip_every, id(conn), conn))

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._closed(conn, "reset")
            return
        if not data:
            self._closed(conn, "eof")
            return
        conn.received += data
        if self.read_response and not conn.responded and complete_responses(conn.received):
            conn.responded = time.monotonic()
            self.responded += 1
            self._in_flight -= 1

    def _send(self, conn: Conn, data: bytes) -> None:
        conn.outbox += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbox) if conn.outbox else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._closed(conn, "send-error")
            return
        conn.sent += sent
        conn.outbox = conn.outbox[sent:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        self._selector.modify(conn.sock, events, conn)

    def _send_drips(self, now: float) -> None:
        while self._drips and self._drips[0][0] <= now:
            due, key, conn = heapq.heappop(self._drips)
            if conn.closed or (self.drip_limit is not None and conn.sent >= len(self.opening) + self.drip_limit):
                continue
            heapq.heappush(self._drips, (due + self.drip_every, key, conn))
            if not conn.outbox:  # the server is not reading: do not pile up
                self._send(conn, self.drip)

    def _closed(self, conn: Conn, how: str, count_reconnect: bool = True) -> None:
        conn.closed = time.monotonic()
        conn.how = how
        with contextlib.suppress(OSError, KeyError, ValueError):
            self._selector.unregister(conn.sock)
        assert conn.sock is not None  # the swarm's own connections always have theirs
        conn.sock.close()
        if conn.connected:
            self.open_now -= 1
        else:
            self._in_flight -= 1
        if self.read_response and conn.connected and not conn.responded:
            self._in_flight -= 1
        if count_reconnect and self._reconnect and not self._stop.is_set():
            self._to_open += 1


def _swarm_in_own_process(swarm: Swarm) -> None:
    swarm._run()
    records = [(c.opened, c.connected, c.closed, c.how, c.sent) for c in swarm.conns]
    swarm._report_sender.send((records, swarm.connect_errors))


# -- raw feeders ------------------------------------------------------------------------------------


@dataclass
class FeedResult:
    sent: int  # bytes the server had taken when its answer or close was seen
    outcome: str  # "status 431", "closed", "reset", "no answer", "stopped reading"
    elapsed: float
    response: bytes


def feed_until_answered(port: int, pieces: Iterable[bytes], *, max_bytes: int, pace: float = 0.001,
                        answer_wait: float = 3.0) -> FeedResult:
    """Send ``pieces`` one by one, looking for an answer (or a close) after each, until one comes,
    the server stops reading, or ``max_bytes`` were sent. Pieces are small and the check follows each,
    so what is counted exceeds what the server read by little more than the bytes in flight."""
    started = time.monotonic()
    sock = socket.create_connection((ADDRESS, port), timeout=answer_wait)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    sent = 0
    outcome = ""
    try:
        for piece in pieces:
            if sent >= max_bytes:
                break
            view = memoryview(piece)
            try:
                while view:
                    count = sock.send(view)
                    sent += count
                    view = view[count:]
            except TimeoutError:
                outcome = "stopped reading"
                break
            except OSError:
                break  # reset or broken pipe: the answer (if any) is read below
            if poller.poll(pace * 1000):
                break
        response = b""
        poller.poll(answer_wait * 1000)
        try:
            while chunk := sock.recv(65536):
                response += chunk
                if len(response) > 1 << 20:
                    break
        except TimeoutError:
            outcome = outcome or ("no answer" if not response else "")
        except OSError:
            outcome = outcome or ("reset" if not response else "")
        if response.startswith(b"HTTP/"):
            final = [line for line in response.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
            statuses = [int(line[9:12]) for line in final if not 100 <= int(line[9:12]) < 200]
            outcome = f"status {statuses[0]}" if statuses else outcome or "closed"
        elif not outcome:
            outcome = "closed" if not response else f"garbage {response[:30]!r}"
        return FeedResult(sent, outcome, time.monotonic() - started, response)
    finally:
        sock.close()


def reset_socket(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError, KeyError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def reset_storm(port: int, count: int, *, threads: int = 4, max_seconds: float = 30.0) -> tuple[int, int]:
    """``count`` connections that connect and reset: a third right away, a third after half a
    request, a third after a whole request (before its answer). Returns (done, errors)."""
    deadline = time.monotonic() + max_seconds
    tally = [0, 0]
    lock = threading.Lock()
    half = b"GET /hello HTTP/1.1\r\nHo"
    whole = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

    def storm(indexes: range) -> None:
        for index in indexes:
            if time.monotonic() > deadline:
                return
            try:
                sock = socket.create_connection((ADDRESS, port), timeout=5)
                if index % 3 == 1:
                    sock.sendall(half)
                elif index % 3 == 2:
                    sock.sendall(whole)
                reset_socket(sock)
                outcome = 0
            except OSError:
                outcome = 1
            with lock:
                tally[outcome] += 1

    workers = [threading.Thread(target=storm, args=(range(i, count, threads),), daemon=True) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=max(0.1, deadline - time.monotonic() + 5))
    return tally[0], tally[1]
