"""Replay the shared conformance corpus (cases.jsonl) over real TCP against each worker class.

The corpus lives outside the repository (``<repo>/../shared/conformance/cases.jsonl``) and is read
at run time; it is never copied in.  The rules come from that directory's README:

* one server per worker class (``sync``; ``gthread`` with one thread) and distinct ``flags`` set,
  started with the echo app and one worker;
* each case gets a fresh connection; its bytes are sent as given, without a half-close;
* the client reads until the server closes or has been silent for ``IDLE`` seconds; if nothing at
  all came back, it half-closes (``SHUT_WR``) and reads once more for up to ``IDLE`` seconds;
* responses are framed by Content-Length, chunked, or (neither) the close; 1xx are skipped.

A worker that keeps the connection alive (gthread) would make every case wait ``IDLE`` seconds, so
the read stops waiting once the expected responses are complete by their framing (one for a
``reject``, one per request for an ``accept``): if the last of them is an error or says
``Connection: close``, the server must close by itself and the client goes on reading until it
does; otherwise the client half-closes and reads until the close, so any response the server
gives to bytes it took as a further request (a desync) is still seen.

Verdicts: ``reject`` passes on a first response of 4xx/5xx or a close with no response, and fails on
any 2xx after it (desync).  ``accept`` needs response *i* to be 200 with the JSON body equal to
``expected_echo`` *i*; fewer responses only when the last one says ``Connection: close`` and the
server closed; extra error responses (4xx/5xx) are tolerated, extra 2xx are a desync.  ``either``
is replayed and never judged.  Every case, whatever its verdict, fails if the server crashed (master
gone, a worker died or was replaced, or a traceback was logged while the case ran).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from serving import WORKER_ARGS, Server, free_port, pronghorn_cmd, running

CASES_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "cases.jsonl"
IDLE = 2.0  # seconds of silence that end a read, as the corpus rules state

# The echo app, written from the contract in the corpus README (the contract is text, not a module).
ECHO_APP = '''\
import base64, json

def app(environ, start_response):
    stream, te = environ["wsgi.input"], environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    cl = environ.get("CONTENT_LENGTH", "")
    body = stream.read() if "chunked" in te else stream.read(int(cl)) if cl.isdigit() else b""
    echo = {"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
            "query": environ.get("QUERY_STRING", ""), "protocol": environ["SERVER_PROTOCOL"],
            "headers": {k: v for k, v in environ.items()
                        if k.startswith("HTTP_") or (k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v)},
            "body": base64.b64encode(body).decode()}
    out = json.dumps(echo).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
'''

# Log lines that mean the server itself broke while a case ran.
CRASH_MARKERS = (
    "Traceback",
    "Exception in worker process",
    "Unhandled exception",
    "exited with code",
    "WORKER TIMEOUT",
    "was sent SIG",
)


def _load_cases() -> list[dict[str, Any]]:
    if not CASES_PATH.is_file():
        return []
    with CASES_PATH.open(encoding="utf-8") as fh:
        cases = [json.loads(line) for line in fh if line.strip()]
    # Group by flags so each server is started once and its cases run back to back.
    return sorted(cases, key=lambda case: (tuple(case["flags"]), case["id"]))


CASES = _load_cases()


# -- reading and framing responses ---------------------------------------------------------------

_DIGITS = frozenset(b"0123456789")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
_OWS = b" \t"


@dataclass
class Exchange:
    sent: bytes
    received: bytes = b""
    closed: bool = False  # the server closed (FIN or RST) rather than going quiet
    probed: bool = False  # the EOF probe (SHUT_WR) was needed
    answered: bool = False  # the expected 2xx responses were complete; the client then half-closed


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes:
        return b",".join(value for key, value in self.headers if key == name)

    @property
    def closes(self) -> bool:
        return b"close" in [token.strip(_OWS) for token in self.header(b"connection").lower().split(b",")]


class FramingError(Exception):
    """The server's bytes are not a sequence of well-framed HTTP/1.x responses."""


def _kept_alive_after(data: bytes, expected: int, methods: list[bytes] | None) -> bool:
    """``expected`` responses are complete, and the last one is a 2xx that keeps the connection."""
    try:
        responses = parse_responses(data, methods)
    except FramingError:
        return False  # not complete yet
    if len(responses) < expected:
        return False
    last = responses[-1]
    is_head = methods is not None and len(responses) <= len(methods) and methods[len(responses) - 1] == b"HEAD"
    framed = (last.status in (204, 304) or is_head or b"chunked" in last.header(b"transfer-encoding").lower()
              or bool(last.header(b"content-length")))
    return framed and 200 <= last.status < 300 and not last.closes


def _read_until_quiet(sock: socket.socket, exchange: Exchange, expected: int = 0,
                      methods: list[bytes] | None = None) -> None:
    sock.settimeout(IDLE)
    try:
        while chunk := sock.recv(65536):
            exchange.received += chunk
            if expected and not exchange.answered and _kept_alive_after(exchange.received, expected, methods):
                # Everything expected is here and the server keeps the connection: end the
                # connection from this side, and read what the server still has to say.
                exchange.answered = True
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
        exchange.closed = True
    except TimeoutError:  # socket.timeout
        pass
    except ConnectionResetError:  # bytes already received stay in exchange.received
        exchange.closed = True


def exchange_bytes(port: int, raw: bytes, expected: int = 0, methods: list[bytes] | None = None) -> Exchange:
    """Send ``raw``; read as the corpus rules say, stopping early once ``expected`` responses are in."""
    exchange = Exchange(sent=raw)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        _read_until_quiet(sock, exchange, expected, methods)
        if not exchange.received and not exchange.closed:
            exchange.probed = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            _read_until_quiet(sock, exchange)
    return exchange


def _number(text: bytes, digits: frozenset[int], base: int) -> int:
    if not text or any(byte not in digits for byte in text):
        raise FramingError(f"bad number {text!r}")
    return int(text, base)


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int]:
    body = b""
    while True:
        eol = data.find(b"\r\n", pos)
        if eol == -1:
            raise FramingError("chunk size line not terminated")
        size = _number(data[pos:eol].split(b";", 1)[0].strip(_OWS), _HEXDIGITS, 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)  # trailer section (usually empty)
            if end == -1:
                raise FramingError("chunked body without final CRLF")
            return body, end + 4
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise FramingError("chunk data not followed by CRLF")
        body += data[pos : pos + size]
        pos += size + 2


def parse_responses(data: bytes, request_methods: list[bytes] | None = None) -> list[Response]:
    """Split ``data`` into responses (1xx skipped); raises FramingError on malformed bytes."""
    responses: list[Response] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end == -1:
            raise FramingError(f"incomplete response head at byte {pos}")
        lines = data[pos:end].split(b"\r\n")
        status_line = lines[0]
        if not (status_line.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")) and len(status_line) >= 12):
            raise FramingError(f"bad status line {status_line!r}")
        status = _number(status_line[9:12], _DIGITS, 10)
        response = Response(status)
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise FramingError(f"bad header line {line!r}")
            response.headers.append((name.strip(_OWS).lower(), value.strip(_OWS)))
        pos = end + 4
        if 100 <= status < 200:
            continue
        index = len(responses)
        is_head = request_methods is not None and index < len(request_methods) and request_methods[index] == b"HEAD"
        if status in (204, 304) or is_head:
            pass
        elif b"chunked" in response.header(b"transfer-encoding").lower():
            response.body, pos = _dechunk(data, pos)
        elif response.header(b"content-length"):
            length = _number(response.header(b"content-length"), _DIGITS, 10)
            if pos + length > len(data):
                raise FramingError(f"body shorter than Content-Length {length}")
            response.body, pos = data[pos : pos + length], pos + length
        else:  # close-delimited
            response.body, pos = data[pos:], len(data)
        responses.append(response)
    return responses


# -- servers, one per flags set -------------------------------------------------------------------


class ServerPool:
    """Starts one echo server per distinct flags tuple, on first use; the fixture stops them all."""

    def __init__(self, workdir: Path, stack: contextlib.ExitStack, worker: str) -> None:
        self._workdir = workdir
        self._stack = stack
        self._worker = worker
        self._servers: dict[tuple[str, ...], tuple[int, Server]] = {}

    def get(self, flags: tuple[str, ...]) -> tuple[int, Server]:
        if flags not in self._servers:
            port = free_port()
            cmd = pronghorn_cmd("echo_app:app", "-b", f"127.0.0.1:{port}", "-w", "1", *WORKER_ARGS[self._worker],
                                *flags)
            server = self._stack.enter_context(running(cmd, cwd=self._workdir, port=port))
            server.wait_for_output("Booting worker")
            # One request without fields (some flag sets allow only tiny ones), so the first case
            # does not spend its idle budget on worker boot.
            warm_up = exchange_bytes(port, b"GET /warm-up HTTP/1.0\r\n\r\n")
            assert warm_up.received.startswith(b"HTTP/1.0 200 "), (warm_up, server.output())
            self._servers[flags] = (port, server)
        return self._servers[flags]


@pytest.fixture(scope="module", params=["sync", "gthread", "gevent"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    workdir = tmp_path_factory.mktemp("conformance-wire")
    (workdir / "echo_app.py").write_text(ECHO_APP)
    with contextlib.ExitStack() as stack:  # each running() stops its server by pid in a finally
        yield ServerPool(workdir, stack, request.param)


# -- verdicts -------------------------------------------------------------------------------------


def _judge_reject(responses: list[Response], exchange: Exchange) -> str | None:
    if not responses:
        return None if exchange.closed else "no response and the connection was not closed"
    if responses[0].status < 400:
        return f"first response is {responses[0].status}, expected 4xx/5xx or a close"
    late = [r.status for r in responses[1:] if 200 <= r.status < 300]
    return f"desync: 2xx after the error response ({late})" if late else None


def _judge_accept(case: dict[str, Any], responses: list[Response], exchange: Exchange) -> str | None:
    wanted = case["requests"]
    successes = sum(200 <= r.status < 300 for r in responses)
    if successes > len(wanted):
        return f"desync: {successes} 2xx responses for {len(wanted)} request(s)"
    for index, (response, request) in enumerate(zip(responses, wanted)):
        if response.status != 200:
            return f"response {index} is {response.status}, expected 200"
        try:
            echo = json.loads(response.body)
        except ValueError:
            return f"response {index} body is not JSON: {response.body[:300]!r}"
        if echo != request["expected_echo"]:
            return f"response {index} echo differs:\n  got      {echo}\n  expected {request['expected_echo']}"
    for index, response in enumerate(responses[len(wanted) :], start=len(wanted)):
        if response.status < 400:
            return f"extra response {index} is {response.status} (only 4xx/5xx extras are tolerated)"
    if len(responses) < len(wanted):
        if not responses:
            return f"no response for {len(wanted)} request(s) (closed={exchange.closed})"
        if not (responses[-1].closes and exchange.closed):
            return (f"{len(responses)} response(s) for {len(wanted)} request(s), and the last one did not "
                    f"say Connection: close before the server closed (closed={exchange.closed})")
    return None


def _crash(server: Server, log_before: int) -> str | None:
    if server.proc.poll() is not None:
        return f"server exited with {server.proc.returncode}"
    time.sleep(0.05)  # let a dying worker's last lines reach the log
    new = server.output()[log_before:]
    for marker in CRASH_MARKERS:
        if marker in new:
            return f"server log shows {marker!r}"
    if "Booting worker" in new:
        return "the worker was replaced while the case ran"
    return None


def _report(case: dict[str, Any], exchange: Exchange, reason: str, server: Server, log_before: int) -> str:
    how = "closed" if exchange.closed else f"silent for {IDLE}s"
    if exchange.answered:
        how += ", half-closed by the client after the expected responses"
    return "\n".join([
        f"case {case['id']} (expect {case['expect']}, flags {case['flags']}): {reason}",
        f"  source: {case['source']}",
        f"  note:   {case.get('note', '')}",
        f"  sent     ({len(exchange.sent)} bytes): {exchange.sent!r}",
        (f"  received ({len(exchange.received)} bytes, {how}, eof-probe={exchange.probed}): "
         f"{exchange.received[:3000]!r}"),
        "  server log during the case:",
        server.output()[log_before:][-3000:],
    ])


_PARAMS = [pytest.param(case, id=case["id"]) for case in CASES] or [
    pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=f"conformance corpus not found at {CASES_PATH}"))
]


@pytest.mark.parametrize("case", _PARAMS)
def test_case_over_the_wire(case: dict[str, Any], servers: ServerPool) -> None:
    port, server = servers.get(tuple(case["flags"]))
    log_before = len(server.output())
    raw = base64.b64decode(case["raw_b64"])
    methods = [request["method"].encode("latin-1") for request in case.get("requests") or []]
    methods = methods or [raw.split(b" ", 1)[0]]
    exchange = exchange_bytes(port, raw, max(1, len(case.get("requests") or [])), methods)
    reason: str | None = None
    try:
        responses = parse_responses(exchange.received, methods)
    except FramingError as exc:
        responses = []
        if case["expect"] != "either":
            reason = f"unparseable response bytes: {exc}"
    if reason is None:
        if case["expect"] == "reject":
            reason = _judge_reject(responses, exchange)
        elif case["expect"] == "accept":
            reason = _judge_accept(case, responses, exchange)
    reason = _crash(server, log_before) or reason
    if case["expect"] == "either":  # reported (pytest -rP shows it), never judged
        print(f"{case['id']}: statuses {[r.status for r in responses]}, closed={exchange.closed}, "
              f"eof-probe={exchange.probed}, received {exchange.received[:120]!r}")
    assert reason is None, _report(case, exchange, reason, server, log_before)


# -- a rejected request must not let the bytes behind it through ------------------------------------

VALID_FOLLOWER = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("bad", [
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 id="cl-and-te"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", id="space-in-field-name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", id="bare-lf"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"),
])
def test_rejected_request_then_valid_one_gets_only_the_error(bad: bytes, servers: ServerPool) -> None:
    port, server = servers.get(())
    log_before = len(server.output())
    exchange = exchange_bytes(port, bad + VALID_FOLLOWER, expected=1)
    responses = parse_responses(exchange.received)
    statuses = [r.status for r in responses]
    problem = None
    if len(responses) != 1 or not 400 <= responses[0].status < 500:
        problem = f"expected exactly one 4xx response, got {statuses}"
    elif not exchange.closed:
        problem = "the server did not close after the error"
    problem = _crash(server, log_before) or problem
    case = {"id": "rejected-then-valid", "expect": "reject", "flags": [], "source": "this file", "note": ""}
    assert problem is None, _report(case, exchange, problem, server, log_before)
