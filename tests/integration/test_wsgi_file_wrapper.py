"""``wsgi.file_wrapper`` bodies over real sockets: sendfile, and the iterated fallback.

Three servers run ``fileapp``: sendfile on (``SENDFILE=y`` given explicitly so the caller's
environment cannot turn it off), ``--no-sendfile``, and ``SENDFILE=0``; the three run with the
``sync`` worker and with ``gthread`` (one thread: the app inline, sending from the loop thread; four
threads: sending from a pool thread).
Responses are read by their framing, as the gthread worker keeps connections alive. The app's file object counts
its read calls and logs the count when closed: zero reads means the kernel sent the file (sendfile);
iteration reads it.

The app is *not* wrapped in ``wsgiref.validate``: the validator wraps every returned iterable in its
own ``IteratorWrapper``, which hides the ``wsgi.file_wrapper`` object from the server, so sendfile
(and the non-file fallback decision) could never be exercised through it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import (
    WORKER_ARGS,
    Server,
    free_port,
    pronghorn_cmd,
    read_responses,
    running,
)

FILE_APP = r'''
import io, os, warnings
from urllib.parse import parse_qs

warnings.simplefilter("error")

DATA_PATH = os.path.join(os.getcwd(), "big.bin")
READ_LOG = os.path.join(os.getcwd(), "reads.log")


class CountingFile(io.FileIO):
    """A real file (it has a fileno) that counts reads and logs the count when closed."""

    def __init__(self, path, tag):
        super().__init__(path, "rb")
        self.tag, self.reads = tag, 0

    def read(self, size=-1):
        self.reads += 1
        return super().read(size)

    def readinto(self, buffer):
        self.reads += 1
        return super().readinto(buffer)

    def close(self):
        if not self.closed:
            with open(READ_LOG, "a") as log:
                log.write(f"{self.tag} {self.reads}\n")
        super().close()


def app(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in query:
        headers.append(("Content-Length", query["cl"]))
    wrapper = environ["wsgi.file_wrapper"]
    if environ["PATH_INFO"] == "/bytesio":
        with open(DATA_PATH, "rb") as source:
            data = source.read()
        start_response("200 OK", headers)
        return wrapper(io.BytesIO(data), 65536)
    raw = CountingFile(DATA_PATH, query["tag"])
    skip = int(query.get("skip", "0"))
    if query.get("buffered"):
        # A buffered file positioned by reading: the OS offset is ahead of the logical one.
        filelike = io.BufferedReader(raw, 1 << 16)
        filelike.read(skip)
    else:
        filelike = raw
        filelike.seek(skip)
    raw.reads = 0
    start_response("200 OK", headers)
    return wrapper(filelike, 65536)
'''

SIZE = 1 << 20
MODES = ["sendfile", "no-sendfile", "env-off"]


@pytest.fixture(scope="module", params=["sync", "gthread", "gthread-t4"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, int], Path, bytes, dict[str, Server]]]:
    worker = WORKER_ARGS[request.param]
    cwd = tmp_path_factory.mktemp("wsgi-file")
    (cwd / "fileapp.py").write_text(FILE_APP)
    data = os.urandom(SIZE)
    (cwd / "big.bin").write_bytes(data)
    ports = {mode: free_port() for mode in MODES}
    with running(pronghorn_cmd("fileapp:app", "-b", f"127.0.0.1:{ports['sendfile']}", *worker), cwd=cwd,
                 port=ports["sendfile"], env={"SENDFILE": "y"}) as on, \
         running(pronghorn_cmd("fileapp:app", "-b", f"127.0.0.1:{ports['no-sendfile']}", "--no-sendfile", *worker),
                 cwd=cwd, port=ports["no-sendfile"]) as off, \
         running(pronghorn_cmd("fileapp:app", "-b", f"127.0.0.1:{ports['env-off']}", *worker), cwd=cwd,
                 port=ports["env-off"], env={"SENDFILE": "0"}) as env_off:
        yield ports, cwd, data, {"sendfile": on, "no-sendfile": off, "env-off": env_off}


def get(port: int, target: str, version: str = "HTTP/1.1", method: str = "GET") -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {target} {version}\r\nHost: t\r\n\r\n".encode())
        data = read_responses(sock, head=method == "HEAD")  # by framing, or until the close
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def unchunk_strict(body: bytes) -> tuple[bytes, list[int]]:
    """Decode a chunked body, checking every CRLF; returns the data and the chunk sizes."""
    out, sizes = [], []
    while True:
        line, sep, body = body.partition(b"\r\n")
        assert sep, "chunk size line without CRLF"
        size = int(line, 16)
        if size == 0:
            assert body == b"\r\n", body[:50]  # empty trailer section, nothing after it
            return b"".join(out), sizes
        assert body[size:size + 2] == b"\r\n", "chunk data not followed by CRLF"
        out.append(body[:size])
        sizes.append(size)
        body = body[size + 2:]


def reads_logged(cwd: Path, tag: str) -> int:
    log = cwd / "reads.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            name, count = line.split()
            if name == tag:
                return int(count)
        time.sleep(0.02)
    raise AssertionError(f"no close() logged for {tag}")


def check_reads(cwd: Path, tag: str, mode: str) -> None:
    reads = reads_logged(cwd, tag)
    if mode == "sendfile":
        assert reads == 0, "the file was read in Python, not sent with sendfile"
    else:
        assert reads > 0


@pytest.mark.parametrize("mode", MODES)
def test_file_with_content_length(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, cwd, data, _ = setup
    head, body = get(ports[mode], f"/file?tag=cl-{mode}&cl={SIZE}")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding" not in head
    assert f"Content-Length: {SIZE}\r\n".encode() in head + b"\r\n"
    assert body == data
    check_reads(cwd, f"cl-{mode}", mode)


@pytest.mark.parametrize("mode", MODES)
def test_file_without_content_length_http11_is_chunked(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, cwd, data, _ = setup
    head, body = get(ports[mode], f"/file?tag=chunked-{mode}")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    decoded, sizes = unchunk_strict(body)
    assert decoded == data
    if mode == "sendfile":
        assert sizes == [SIZE]  # one chunk framing the whole sendfile
    else:
        assert sizes == [65536] * (SIZE // 65536)  # the wrapper's block size
    check_reads(cwd, f"chunked-{mode}", mode)


@pytest.mark.parametrize("mode", MODES)
def test_file_over_http10_is_close_delimited(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, cwd, data, _ = setup
    head, body = get(ports[mode], f"/file?tag=http10-{mode}", version="HTTP/1.0")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == data
    check_reads(cwd, f"http10-{mode}", mode)


@pytest.mark.parametrize("mode", MODES)
def test_file_truncated_at_content_length(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, cwd, data, _ = setup
    head, body = get(ports[mode], f"/file?tag=short-{mode}&cl=1000")
    assert b"Content-Length: 1000" in head and body == data[:1000]
    check_reads(cwd, f"short-{mode}", mode)


@pytest.mark.parametrize("buffered", ["", "1"])
@pytest.mark.parametrize("mode", MODES)
def test_file_is_sent_from_its_current_position(setup, mode: str, buffered: str) -> None:  # type: ignore[no-untyped-def]
    # PEP 3333: "transmission should begin at the current position within the file" -- for a
    # buffered file that is its tell(), not the descriptor's offset (the buffer read ahead).
    ports, cwd, data, _ = setup
    tag = f"skip{buffered}-{mode}"
    _, body = get(ports[mode], f"/file?tag={tag}&skip=1000&buffered={buffered}")
    decoded, _ = unchunk_strict(body)
    assert decoded == data[1000:]
    check_reads(cwd, tag, mode)
    _, body = get(ports[mode], f"/file?tag=cl{tag}&skip=1000&buffered={buffered}&cl={SIZE - 1000}")
    assert body == data[1000:]
    check_reads(cwd, f"cl{tag}", mode)


@pytest.mark.parametrize("mode", MODES)
def test_head_with_file_sends_no_body(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, cwd, _, _ = setup
    head, body = get(ports[mode], f"/file?tag=head-{mode}&cl={SIZE}", method="HEAD")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and f"Content-Length: {SIZE}".encode() in head
    assert body == b""
    reads_logged(cwd, f"head-{mode}")  # closed all the same


@pytest.mark.parametrize("mode", MODES)
def test_wrapper_over_non_file_object_is_iterated(setup, mode: str) -> None:  # type: ignore[no-untyped-def]
    ports, _, data, servers = setup
    head, body = get(ports[mode], "/bytesio")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), servers[mode].output()
    decoded, sizes = unchunk_strict(body)
    assert decoded == data and sizes == [65536] * (SIZE // 65536)
