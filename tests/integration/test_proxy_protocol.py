"""The PROXY protocol over real sockets, on sync and the default worker (inline and pooled)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import WORKER_ARGS, Server, free_port, parse_response, pronghorn_cmd, running

APP = '''
import json

def app(environ, start_response):
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "PROXY_PROTOCOL", "PROXY_ADDR", "PROXY_PORT")
    body = json.dumps({key: environ.get(key) for key in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''

WORKERS = ["sync", "gthread", "gthread-t4", "gevent"]
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@contextlib.contextmanager
def _server(tmp_path: Path, worker: str, *extra: str) -> Iterator[tuple[int, Server]]:
    (tmp_path / "proxyapp.py").write_text(APP)
    port = free_port()
    cmd = pronghorn_cmd("proxyapp:app", "-b", f"127.0.0.1:{port}", "-w", "1", *WORKER_ARGS[worker], *extra)
    with running(cmd, cwd=tmp_path, port=port) as server:
        yield port, server


def _exchange(port: int, *pieces: bytes) -> bytes:
    """Send the pieces (separately, so a header may arrive split), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _v2_tcp4(source: str, source_port: int, destination: str, destination_port: int) -> bytes:
    block = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", source_port, destination_port)
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block


@pytest.mark.parametrize("worker", WORKERS)
def test_v1_and_v2_headers_set_the_client_address(tmp_path: Path, worker: str) -> None:
    with _server(tmp_path, worker, "--proxy-protocol") as (port, _):
        status, _, body = parse_response(_exchange(port, b"PROXY TCP4 203.0.113.7 ", b"192.0.2.1 51000 443\r\n", REQUEST))
        assert status == 200
        assert json.loads(body) == {"REMOTE_ADDR": "203.0.113.7", "REMOTE_PORT": "51000", "PROXY_PROTOCOL": "TCP4",
                                    "PROXY_ADDR": "192.0.2.1", "PROXY_PORT": "443"}
        status, _, body = parse_response(_exchange(port, _v2_tcp4("198.51.100.9", 40000, "192.0.2.1", 8443) + REQUEST))
        assert status == 200
        assert json.loads(body)["REMOTE_ADDR"] == "198.51.100.9" and json.loads(body)["PROXY_PORT"] == "8443"
        # Without a header (auto), the connection's own peer.
        status, _, body = parse_response(_exchange(port, REQUEST))
        assert status == 200 and json.loads(body)["REMOTE_ADDR"] == "127.0.0.1"
        assert json.loads(body)["PROXY_PROTOCOL"] is None


@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n",
    b"PROXY TCP4 203.0.113.999 192.0.2.1 51000 443\r\n",
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,  # version 3
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,  # too short for IPv4
])
def test_a_malformed_header_gets_400_and_a_closed_connection(tmp_path: Path, worker: str, header: bytes) -> None:
    with _server(tmp_path, worker, "--proxy-protocol") as (port, server):
        answer = _exchange(port, header + REQUEST)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
        assert answer.count(b"HTTP/1.1 ") == 1  # once, then closed: the request behind it is not served
        assert "Traceback" not in server.output()


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_a_peer_outside_proxy_allow_ips_is_refused(tmp_path: Path, worker: str) -> None:
    with _server(tmp_path, worker, "--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/8") as (port, _):
        answer = _exchange(port, b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n" + REQUEST)
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:80]
        status, _, body = parse_response(_exchange(port, REQUEST))  # without a header it is served as itself
        assert status == 200 and json.loads(body)["REMOTE_ADDR"] == "127.0.0.1"
