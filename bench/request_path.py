"""CPU cost of one request on the gthread worker's inline path, in-process (no load generator).

How this works: a ``ThreadWorker`` is built without forking, given the attributes its ``run()`` sets
(threads=1, so the app runs inline), and one ``HttpConnection`` whose "socket" is one end of a
socketpair. Each iteration feeds a whole request to ``data_received`` (parse, environ, the app in
``bench/apps.py``, response), runs the end-of-pass flush the loop would run, and drains the other
end. Printed: microseconds per request (wall clock, so run it on an idle machine).

For figures that do not move with machine noise, count instructions instead: run it twice under
``valgrind --tool=callgrind`` with different ``--requests`` and divide the difference:

    PYTHONPATH=src python bench/request_path.py [--workload hello|upload] [--requests 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps import app  # noqa: E402

from pronghorn.apps.cycle import CycleSettings, RequestCycle  # noqa: E402
from pronghorn.config import Config  # noqa: E402
from pronghorn.logs import Logger  # noqa: E402
from pronghorn.workers.gthread import ThreadWorker  # noqa: E402
from pronghorn.workers.http_connection import HttpConnection  # noqa: E402

REQUESTS = {
    "hello": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",  # what wrk sends
    "upload": b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 65536\r\n\r\n" + b"x" * 65536,
}


class _App:
    def wsgi(self) -> Any:
        return app


class _Listener:
    server_name = ("127.0.0.1", 8000)


class _Transport:
    """What HttpConnection and its LoopOutput ask of a transport on this path."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        raise RuntimeError("the socket was full: drain it faster")

    def close(self) -> None:
        raise RuntimeError("the connection was closed: the request was not answered with keep-alive")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Loop:
    """The end-of-pass flush is run by hand after each request instead of by a running loop."""

    def call_soon(self, callback: Any, *args: Any) -> None:
        pass


def build(ours: socket.socket) -> tuple[ThreadWorker, HttpConnection]:
    cfg = Config()
    cfg.set("workers", 2)  # siblings: the admission policy publishes around each inline request
    worker = ThreadWorker(1, os.getppid(), [], _App(), 30, cfg, Logger(cfg))  # type: ignore[arg-type]
    worker.wsgi = app
    worker.cycle = RequestCycle(app, CycleSettings(cfg), worker.log, worker.cycle_hooks())
    worker.prepare(_Loop())  # type: ignore[arg-type]
    conn = HttpConnection(worker.worker_loop, _Listener(), ("127.0.0.1", 5555), ours.fileno())  # type: ignore[arg-type]
    conn.connection_made(_Transport(ours))  # type: ignore[arg-type]
    return worker, conn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=sorted(REQUESTS), default="hello")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the run")
    args = parser.parse_args(argv)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    worker, conn = build(ours)
    request = REQUESTS[args.workload]
    scratch = bytearray(1 << 22)

    def run(count: int) -> None:
        for _ in range(count):
            conn.data_received(request)
            worker.worker_loop.flush_held()
            try:
                while theirs.recv_into(scratch):
                    pass
            except BlockingIOError:
                pass

    run(1000)  # warm the caches (status lines, header lines, the date)
    started = time.perf_counter()
    run(args.requests)
    elapsed = time.perf_counter() - started
    print(f"{args.workload}: {elapsed / args.requests * 1e6:.2f} µs per request ({args.requests} requests)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, args.requests)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
