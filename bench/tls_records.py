"""What TLS costs per request outside any server: decrypt one request record, encrypt one response.

Two ways of calling OpenSSL through Python's ``ssl`` module, on memory BIOs (no sockets):

- ``wrapper``: ``ssl.SSLObject`` methods (Python-level), reading until ``SSLWantReadError``, as
  uvloop's TLS transport does;
- ``direct``: the C-level object behind it (``SSLObject._sslobj``), one read, checking the incoming
  BIO instead of catching an exception.

The gap is what the connection's own TLS layer (``pronghorn/net/tls.py``, the direct way) saves
per request against an ``ssl=`` transport.
Run: ``python bench/tls_records.py [--requests 100000]``.
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
import time
from pathlib import Path

from servers import make_tls_files

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: pronghorn\r\nDate: Sat, 05 Dec 2026 08:00:00 GMT\r\nContent-Length: 13\r\n"
            b"Content-Type: text/plain\r\n\r\nHello, world!")


def _connected_pair(server_context: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO,
                                                             ssl.SSLObject, ssl.MemoryBIO]:
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    client = client_context.wrap_bio(c_in, c_out)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return server, s_in, s_out, client, c_out


def measure(server_context: ssl.SSLContext, mode: str, requests: int) -> float:
    """Microseconds per request on the server side."""
    server, s_in, s_out, client, c_out = _connected_pair(server_context)
    records = []
    for _ in range(requests):  # records carry sequence numbers: made up front, fed in order
        client.write(REQUEST)
        records.append(c_out.read())
    target = server if mode == "wrapper" else server._sslobj  # type: ignore[attr-defined]
    started = time.perf_counter()
    for record in records:
        s_in.write(record)
        target.read(65536)
        if mode == "wrapper":
            try:
                target.read(65536)
            except ssl.SSLWantReadError:
                pass
        elif s_in.pending:
            raise RuntimeError("a request spanning two records")
        target.write(RESPONSE)
        s_out.read()
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        files = make_tls_files(Path(directory))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)
        for round_no in range(args.rounds):
            for mode in ("wrapper", "direct"):
                print(f"round {round_no + 1}: {mode:7} {measure(context, mode, args.requests):.2f} µs per request")


if __name__ == "__main__":
    main()
