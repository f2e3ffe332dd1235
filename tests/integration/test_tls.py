"""HTTPS served by pronghorn itself, on sync and the default worker (inline and with a thread pool).

Certificates are made by the test (``trustme``) and verified by the client; every server is a real
process on loopback, stopped by its pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import trustme
from cryptography import x509
from serving import (
    WORKER_ARGS,
    Server,
    child_env,
    children_of,
    free_port,
    parse_response,
    pronghorn_cmd,
    read_responses,
    running,
    split_responses,
)

WORKERS = ["sync", "gthread", "gthread-t4", "gevent"]

APP = r'''
import hashlib
import os
import time

FILE_SIZE = 300_000


def app(environ, start_response):
    if environ["PATH_INFO"] == "/file":  # wsgi.file_wrapper: sendfile cannot carry TLS
        with open("payload.bin", "wb") as out:
            out.write(bytes(range(256)) * (FILE_SIZE // 256) + b"x" * (FILE_SIZE % 256))
        start_response("200 OK", [("Content-Length", str(FILE_SIZE))])
        return environ["wsgi.file_wrapper"](open("payload.bin", "rb"))
    if environ["PATH_INFO"] == "/echo":  # the body's size and digest, read in pieces
        digest = hashlib.sha256()
        size = 0
        while chunk := environ["wsgi.input"].read(65536):
            digest.update(chunk)
            size += len(chunk)
        body = f"{size} {digest.hexdigest()}".encode()
    elif environ["PATH_INFO"] == "/big":  # 32 MiB, streamed: more than any buffer along the way
        start_response("200 OK", [("Content-Length", str(32 << 20))])
        return (b"z" * 65536 for _ in range(512))
    elif environ["PATH_INFO"] == "/slow":
        time.sleep(0.5)
        body = b"slow"
    elif environ["PATH_INFO"] == "/addr":
        body = f"{environ['REMOTE_ADDR']}:{environ['REMOTE_PORT']}".encode()
    else:
        body = f"{environ['wsgi.url_scheme']} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture
def certs(tmp_path: Path) -> trustme.CA:
    (tmp_path / "tlsapp.py").write_text(APP)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    _server_cert(ca, tmp_path)
    return ca


def _server_cert(ca: trustme.CA, directory: Path) -> trustme.LeafCert:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    for pem in leaf.cert_chain_pems[1:]:
        pem.write_to_path(str(directory / "cert.pem"), append=True)
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    return leaf


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Answer(NamedTuple):
    status: int
    body: bytes
    serial: int  # of the certificate the server presented
    alpn: str | None


def _https_get(port: int, context: ssl.SSLContext, path: str = "/") -> Answer:
    """One GET over a fresh TLS connection, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            serial = int(tls.getpeercert()["serialNumber"], 16)  # type: ignore[index, arg-type]
            alpn = tls.selected_alpn_protocol()
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            if not data:
                raise ConnectionError("closed without an answer")
            status, _, body = parse_response(data)
            return Answer(status, body, serial, alpn)


@contextlib.contextmanager
def _tls_server(directory: Path, worker: str, *extra: str) -> Iterator[tuple[int, Server]]:
    port = free_port()
    cmd = pronghorn_cmd("tlsapp:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--certfile", "cert.pem",
                        "--keyfile", "key.pem", *WORKER_ARGS[worker], *extra)
    with running(cmd, cwd=directory, port=port) as server:
        server.wait_for_output("Booting worker")
        yield port, server


def _serial(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


@pytest.mark.parametrize("worker", WORKERS)
def test_https_with_a_verified_certificate(tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    with _tls_server(tmp_path, worker) as (port, _):
        answer = _https_get(port, _client_context(certs))
        assert answer.status == 200
        assert answer.body.startswith(b"https "), answer.body
        assert answer.alpn == "http/1.1"
        status, body, _, _ = _https_get(port, _client_context(certs), "/file")
        assert status == 200 and len(body) == 300_000
        assert body[:512] == bytes(range(256)) * 2 and body.endswith(b"x" * (300_000 % 256))


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_client_certificates_are_required_with_cert_reqs_2(tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    client = certs.issue_cert("client@example.test")
    with _tls_server(tmp_path, worker, "--cert-reqs", "2", "--ca-certs", "ca.pem") as (port, _):
        without = _client_context(certs)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _https_get(port, without)  # TLS 1.3: the refusal (an alert, or a close) comes on the first read
        with_cert = _client_context(certs)
        client.configure_cert(with_cert)
        answer = _https_get(port, with_cert)
        assert answer.status == 200 and answer.body.startswith(b"https ")


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_a_renewed_certificate_is_served_after_hup(tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    context = _client_context(certs)
    with _tls_server(tmp_path, worker) as (port, server):
        first = _https_get(port, context).serial
        wanted = _serial(_server_cert(certs, tmp_path))  # written over cert.pem and key.pem
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        seen = first
        while seen != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = _https_get(port, context).serial
        assert seen == wanted != first


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_a_handshake_that_never_completes_is_cut_and_holds_nobody(tmp_path: Path, certs: trustme.CA,
                                                                  worker: str) -> None:
    # sync: the socket timeout (``timeout``) bounds the handshake; the loop: header_timeout.
    extra = ("--timeout", "3") if worker == "sync" else ("--header-timeout", "2")
    with _tls_server(tmp_path, worker, *extra) as (port, _):
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2 if worker == "sync" else 20)]
        try:
            if worker != "sync":  # the loop keeps serving others meanwhile (a sync worker is held, as in Gunicorn)
                started = time.monotonic()
                assert _https_get(port, _client_context(certs)).status == 200
                assert time.monotonic() - started < 1.0
            started = time.monotonic()
            for sock in silent:
                sock.settimeout(max(0.1, 8 - (time.monotonic() - started)))
                assert sock.recv(1) == b""  # closed by the server
            assert time.monotonic() - started < 6
        finally:
            for sock in silent:
                sock.close()


@pytest.mark.parametrize(("args", "line"), [
    (["--certfile", "missing.pem"], "Error: Invalid value for certfile: 'missing.pem' (no such file)"),
    (["--certfile", "cert.pem", "--keyfile", "ca.pem"], "Error: Invalid value for keyfile: 'ca.pem' (the certificate "
                                                        "and key do not load: "),
    (["--keyfile", "key.pem"], "Error: Invalid value for keyfile: 'key.pem' (certfile must be set with it)"),
    (["--certfile", "cert.pem", "--keyfile", "key.pem", "--ciphers", "NOT-A-CIPHER"],
     "Error: Invalid value for ciphers: 'NOT-A-CIPHER' ("),
    (["--certfile", "cert.pem", "--keyfile", "key.pem", "--proxy-protocol", "-k", "sync"],
     "Error: Invalid value for proxy_protocol: 'auto' (not available together with TLS on the SyncWorker; use 'off' "
     "or the default worker)"),
])
def test_a_certificate_that_does_not_load_stops_start_up(tmp_path: Path, certs: trustme.CA, args: list[str],
                                                         line: str) -> None:
    for extra in ([], ["--check-config"]):
        result = subprocess.run(pronghorn_cmd("tlsapp:app", "-b", f"127.0.0.1:{free_port()}", *args, *extra),
                                cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        lines = [text for text in result.stderr.splitlines() if text.strip()]
        assert len(lines) == 1 and lines[0].startswith(line), lines


def _responses(tls: ssl.SSLSocket, count: int) -> list[tuple[int, bytes]]:
    """(status, body) of the next ``count`` responses on one connection."""
    parts = split_responses(read_responses(tls, count))
    assert len(parts) == count, parts
    return [(status, body) for status, _, body in map(parse_response, parts)]


@pytest.mark.parametrize("worker", ["gthread", "gthread-t4"])
def test_one_connection_carries_pipelined_requests_a_large_upload_and_a_clean_close(
        tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    upload = bytes(range(256)) * 8192  # 2 MiB: many records, spilled to a file by the server
    with _tls_server(tmp_path, worker) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            # Without suppressed ragged EOFs, a close without close_notify would raise here.
            with _client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1",
                                                    suppress_ragged_eofs=False) as tls:
                tls.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # one record, three requests
                assert [status for status, _ in _responses(tls, 3)] == [200] * 3
                tls.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(upload) + upload)
                (status, body), = _responses(tls, 1)
                assert (status, body) == (200, f"{len(upload)} {hashlib.sha256(upload).hexdigest()}".encode())
                tls.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert _responses(tls, 1)[0][0] == 200
                assert tls.recv(1) == b""  # the server's close_notify, then its close


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_plain_http_on_the_tls_port_gets_no_http_answer(tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    with _tls_server(tmp_path, worker) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := raw.recv(65536):
                    data += chunk
        assert b"HTTP/1.1" not in data  # a TLS alert at most, then a close
        assert _https_get(port, _client_context(certs)).status == 200


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_proxy_header_before_the_handshake_sets_the_client_address(tmp_path: Path, certs: trustme.CA,
                                                                     version: str) -> None:
    if version == "v1":
        header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 443\r\n"
    else:  # signature, v2 PROXY, TCP over IPv4, 12 address bytes
        header = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + socket.inet_aton("203.0.113.7")
                  + socket.inet_aton("192.0.2.1") + (40001).to_bytes(2, "big") + (443).to_bytes(2, "big"))
    with _tls_server(tmp_path, "gthread", "--proxy-protocol", version, "--proxy-allow-from", "127.0.0.1") as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(header)
            with _client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /addr HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _responses(tls, 1) == [(200, b"203.0.113.7:40001")]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # a bad header: closed, no HTTP
            raw.sendall(b"PROXY TCP4 nonsense\r\n")
            assert raw.recv(65536) == b""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("worker", ["gthread", "gthread-t4"])
def test_clients_that_do_not_read_hold_neither_memory_nor_others(tmp_path: Path, certs: trustme.CA,
                                                                  worker: str) -> None:
    """Flow control counts encrypted bytes: a response is parked, not encrypted into memory whole."""
    with _tls_server(tmp_path, worker, "-w", "1") as (port, server):
        _https_get(port, _client_context(certs))  # the worker is up and warm
        workers = children_of(server.pid)
        before = sum(_rss_kib(pid) for pid in workers)
        stalled = []
        try:
            for _ in range(4):
                raw = socket.create_connection(("127.0.0.1", port), timeout=10)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                tls = _client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1")
                tls.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                stalled.append(tls)
            time.sleep(1.0)
            started = time.monotonic()
            assert _https_get(port, _client_context(certs)).status == 200
            assert time.monotonic() - started < 1.0
            grown = sum(_rss_kib(pid) for pid in workers) - before
            assert grown < 16 * 1024, f"the worker grew by {grown} KiB for 4 x 32 MiB not read"
            with stalled[0]:  # and a stalled response still arrives whole once read
                got = len(read_responses(stalled[0]))
            assert got > 32 << 20
        finally:
            for tls in stalled:
                tls.close()


@pytest.mark.parametrize("suppress", [True, False])
def test_an_end_without_close_notify_is_an_error_only_with_suppress_ragged_eofs_off(
        tmp_path: Path, certs: trustme.CA, suppress: bool) -> None:
    (tmp_path / "pronghorn.conf.py").write_text(f"suppress_ragged_eofs = {suppress}\n")
    with _tls_server(tmp_path, "gthread-t4") as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with _client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                # The TCP stream ends while the app runs, without close_notify (a cut, or a careless client).
                with socket.socket(fileno=os.dup(tls.fileno())) as same:
                    same.shutdown(socket.SHUT_WR)
                answer = b""
                with contextlib.suppress(ssl.SSLError):  # (the drop, seen as an end without close_notify)
                    answer = read_responses(tls)
        if suppress:
            assert parse_response(answer)[::2] == (200, b"slow")
        else:
            assert b"HTTP/1.1" not in answer


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_do_handshake_on_connect_as_gunicorn_configs_set_it(tmp_path: Path, certs: trustme.CA, worker: str) -> None:
    with _tls_server(tmp_path, worker, "--do-handshake-on-connect") as (port, _):
        assert _https_get(port, _client_context(certs)).status == 200
