"""Two pronghorn installs side by side on the hello route: is a change faster, and by how much?

Each install is a ``pronghorn`` program (the ``bin/pronghorn`` of a virtual environment with that
version installed). Rounds alternate the order of the installs; each round starts the server with 2
workers pinned to CPU 0, warms it up with wrk on CPU 1 for 1 s, then measures 5 s, and reads the
CPU time of the master and its workers from /proc. It prints req/s and server CPU per request for
every round and the medians; CPU per request is the steadier figure on a shared machine.

    python bench/ab_installs.py old=/tmp/old/bin/pronghorn new=/tmp/bench-peers/bin/pronghorn \\
        [--tls] [--threads 4] [--rounds 4]

A program may carry arguments of its own, to compare settings of one install:
``off=/tmp/bench-peers/bin/pronghorn "on=/tmp/bench-peers/bin/pronghorn --metrics-bind 127.0.0.1:9109"``.

``--tls`` serves HTTPS with a self-signed certificate made for the run (as ``run.py`` does).
"""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers import BENCH_DIR, _children, _cpu_seconds, make_tls_files

WRK = ["taskset", "-c", "1", "wrk", "-t2", "-c50"]


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(program: list[str], port: int, threads: int, tls_args: list[str], url: str) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one 5 s run."""
    server = subprocess.Popen(["taskset", "-c", "0", *program, "apps:app", "-b", f"127.0.0.1:{port}", "-w", "2",
                               "--threads", str(threads), *tls_args], cwd=BENCH_DIR,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, 20)
        subprocess.run([*WRK, "-d1", url], capture_output=True, check=True)
        pids = [server.pid, *_children(server.pid)]
        before = sum(map(_cpu_seconds, pids))
        out = subprocess.run([*WRK, "-d5", url], capture_output=True, text=True, check=True).stdout
        used = sum(map(_cpu_seconds, pids)) - before
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        return rate, used / total * 1e6
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("installs", nargs=2, metavar="NAME=PROGRAM")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--port", type=int, default=8611)
    args = parser.parse_args()
    installs = [(name, shlex.split(program)) for name, program in (spec.split("=", 1) for spec in args.installs)]
    with tempfile.TemporaryDirectory() as directory:
        tls_args: list[str] = []
        if args.tls:
            files = make_tls_files(Path(directory))
            tls_args = ["--certfile", str(files.cert), "--keyfile", str(files.key)]
        url = f"{'https' if args.tls else 'http'}://127.0.0.1:{args.port}/"
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in installs}
        for round_number in range(args.rounds):
            for name, program in installs if round_number % 2 == 0 else installs[::-1]:
                rate, cpu = measure(program, args.port, args.threads, tls_args, url)
                results[name].append((rate, cpu))
                print(f"round {round_number + 1} {name}: {rate:,.0f} req/s, {cpu:.1f} µs CPU/request", flush=True)
    for name, runs in results.items():
        rates = sorted(rate for rate, _ in runs)
        cpus = sorted(cpu for _, cpu in runs)
        print(f"{name}: median {rates[len(rates) // 2]:,.0f} req/s, {cpus[len(cpus) // 2]:.1f} µs CPU/request")


if __name__ == "__main__":
    main()
