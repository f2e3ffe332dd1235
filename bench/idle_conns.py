"""Hold many idle keep-alive connections open on a server, for ``bench/run.py``'s "idle" workload.

How this works: opens ``--count`` TCP connections to 127.0.0.1:PORT one after another, sends one
``GET /`` on each and reads the whole response, then leaves them idle. It prints one line
``ready {"opened": N, "kept": K}`` (K: connections the server did not close after answering) and
waits until a line arrives on stdin, stdin closes, or ``--hold`` seconds pass (so it always stops
by itself). Then it counts how many connections are still open (``alive``), prints
``done {...}``, closes them all and exits.

    python bench/idle_conns.py --port 8000 --count 1000 --hold 120
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"


def _read_response(sock: socket.socket) -> bool:
    """Read one response with a Content-Length body; False if the server closed instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=120.0, help="stop after this many seconds at most")
    args = parser.parse_args()

    deadline = time.monotonic() + args.hold
    socks: list[socket.socket] = []
    kept = 0
    failed = 0
    try:
        for _ in range(args.count):
            if time.monotonic() > deadline:
                break
            try:
                sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
                sock.sendall(REQUEST)
                if _read_response(sock):
                    kept += 1
                socks.append(sock)
            except OSError:
                failed += 1
        print("ready " + json.dumps({"opened": len(socks), "kept": kept, "failed": failed}), flush=True)
        remaining = max(0.0, deadline - time.monotonic())
        select.select([sys.stdin], [], [], remaining)
        alive = sum(1 for sock in socks if not _closed_by_peer(sock))
        print("done " + json.dumps({"opened": len(socks), "kept": kept, "alive": alive}), flush=True)
    finally:
        for sock in socks:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
