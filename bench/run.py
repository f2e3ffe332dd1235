"""Side-by-side HTTP benchmark: pronghorn next to Gunicorn (gthread), Granian (WSGI) and waitress.

How this works: every server serves the same WSGI app (bench/apps.py) on loopback with 2 worker
processes (waitress: one process). For each workload, each server in turn is started, checked
(every route answers what it should), warmed up with wrk, measured with wrk while the memory of its
worker processes is sampled every 0.2 s, and stopped; workloads are the outer loop, so server A
workload 1, server B workload 1, ... and machine noise is shared fairly. The results are printed
as a markdown table (with pronghorn ÷ peer ratios and the targets), optionally saved as JSON, and
drawn as grouped bars into docs/benchmark.png.

Nothing is installed here: a missing peer is skipped with a note, a missing wrk stops the run,
each saying how to install it (see bench/README.md).

    /tmp/bench-peers/bin/pip install .     # pronghorn as users get it (compiled with mypyc)
    /tmp/bench-peers/bin/python bench/run.py [--duration 10] [--json out.json]

Without that install, pronghorn runs from the checkout's src/ as pure Python (the results say which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402 (after the sys.path line)
from servers import BENCH_DIR, INSTALL_WRK, REPO, SERVERS, RunningServer, Server, find_servers, free_port  # noqa: E402

IDLE_HELPER = BENCH_DIR / "idle_conns.py"
UPLOAD_SCRIPT = BENCH_DIR / "upload.lua"
WRK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    path: str
    connections: int
    threads: int  # application threads per worker (waitress: in its one process)
    pronghorn_threads: int
    script: Path | None = None
    idle: int = 0  # idle keep-alive connections held open during the measurement


def workloads(args: argparse.Namespace) -> list[Workload]:
    peer, mine = args.peer_threads, args.pronghorn_threads
    return [
        Workload("hello", "hello, keep-alive, c=50", "/", 50, peer, mine),
        Workload("sleep", "10 ms app, c=200, 32 threads", "/sleep", 200, 32, 32),
        Workload("big", "1 MiB responses, c=10", "/big", 10, peer, mine),
        Workload("upload", "64 KiB uploads, c=20", "/upload", 20, peer, mine, script=UPLOAD_SCRIPT),
        Workload("idle", f"hello + {args.idle_count:,} idle conns, c=50", "/", 50, peer, mine, idle=args.idle_count),
    ]


# -- wrk ------------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms) and error counts from wrk's text output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not rps:
        raise ValueError("no Requests/sec line in wrk output:\n" + output)
    result: dict[str, Any] = {"rps": float(rps.group(1))}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.MULTILINE)
        result[f"p{pct}_ms"] = _ms(match.group(1)) if match else float("nan")
    requests = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    result["requests"] = int(requests.group(1)) if requests else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counts = [int(n) for n in socket_errors.groups()] if socket_errors else [0, 0, 0, 0]
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), counts))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    result["errors"] = sum(counts) + result["non_2xx"]
    return result


def run_wrk(port: int, workload: Workload, seconds: float, cpus: str = "") -> dict[str, Any]:
    cmd = (["taskset", "-c", cpus] if cpus else []) + ["wrk", "-t2", f"-c{workload.connections}", f"-d{seconds:g}s", "--latency", "--timeout", WRK_TIMEOUT]
    if workload.script:
        cmd += ["-s", str(workload.script)]
    cmd.append(f"http://127.0.0.1:{port}{workload.path}")
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited with {out.returncode}: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


# -- one run --------------------------------------------------------------------------------------


def check_routes(port: int) -> None:
    """Every route answers what the workloads expect, before anything is measured."""
    base = f"http://127.0.0.1:{port}"
    expected = {"/": b"Hello, world!", "/sleep": b"Hello, world!"}
    for path, body in expected.items():
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            if resp.read() != body:
                raise RuntimeError(f"GET {path}: unexpected body")
    with urllib.request.urlopen(base + "/big", timeout=10) as resp:
        if len(resp.read()) != 1 << 20:
            raise RuntimeError("GET /big: body is not 1 MiB")
    request = urllib.request.Request(base + "/upload", data=b"x" * 65536, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        if resp.read() != b"65536":
            raise RuntimeError("POST /upload: the app did not read 65536 bytes")


def _helper_line(helper: subprocess.Popen[str], tag: str) -> dict[str, Any]:
    assert helper.stdout is not None
    line = helper.stdout.readline()
    if not line.startswith(tag + " "):
        raise RuntimeError(f"idle helper said {line!r} instead of {tag!r}")
    return dict(json.loads(line[len(tag) + 1:]))


def measure(server: Server, workload: Workload, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    threads = workload.pronghorn_threads if server.name == "pronghorn" else workload.threads
    if server.name == "pronghorn" and server.worker == "sync":
        threads = 1  # with threads > 1, -k sync means gthread (as in Gunicorn)
    result: dict[str, Any] = {"workload": workload.name, "server": server.name, "label": server.label, "threads": threads}
    log_path = logdir / f"{server.name}-{workload.name}.log"
    server_cpus, client_cpus = args.pin.split(":") if args.pin else ("", "")
    with RunningServer(server, free_port(), threads, log_path, own_session=not args.shared_scheduling,
                       cpus=server_cpus) as running:
        running.wait_ready()
        check_routes(running.port)
        helper: subprocess.Popen[str] | None = None
        try:
            if workload.idle:
                hold = args.warmup + args.duration + 120
                helper = subprocess.Popen([*(["taskset", "-c", client_cpus] if client_cpus else []),
                                           sys.executable, str(IDLE_HELPER), "--port", str(running.port),
                                           "--count", str(workload.idle), "--hold", str(hold)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                result["idle"] = _helper_line(helper, "ready")
            running.start_sampling()
            if args.warmup > 0:
                run_wrk(running.port, workload, args.warmup, client_cpus)
            result.update(run_wrk(running.port, workload, args.duration, client_cpus))
            result["rss_mib"] = running.stop_sampling()
            result["workers"] = len(running.peak_rss)
            if helper is not None:
                result["idle"]["fds"] = running.fd_counts()
                assert helper.stdin is not None
                helper.stdin.write("\n")
                helper.stdin.flush()
                result["idle"].update(_helper_line(helper, "done"))
        finally:
            if helper is not None:
                if helper.poll() is None:
                    helper.kill()
                helper.wait()
        if running.proc is not None and running.proc.poll() is not None:
            result["note"] = f"server exited during the run: {running.log_tail(5)}"
    return result


def median_run(runs: list[dict[str, Any]], workload: str, server: str) -> dict[str, Any]:
    """The run of the median requests/s among the rounds of one cell (a failed run if all failed)."""
    cell = [r for r in runs if r["workload"] == workload and r["server"] == server]
    good = sorted((r for r in cell if "error" not in r), key=lambda r: r["rps"])
    if not good:
        return cell[0]
    chosen = dict(good[(len(good) - 1) // 2])
    if len(cell) > 1:
        chosen["rounds_rps"] = [round(r.get("rps", 0.0)) for r in cell]
        chosen["errors"] = max(r["errors"] for r in good)
        if len(good) < len(cell):
            chosen["note"] = f"{len(cell) - len(good)} of {len(cell)} rounds failed"
    return chosen


# -- main -----------------------------------------------------------------------------------------


def precompile(python: str) -> None:
    """Byte-compile pronghorn's sources and the app, as ``pip install`` does for the peers' packages.

    Where PYTHONDONTWRITEBYTECODE is set, a server run from ``src/`` would otherwise compile every
    module at each start, in the master, and each forked worker inherits the compiler's leftovers
    (~0.5 MiB of RSS) that the peers, installed with their .pyc files, do not have. The files go to
    ``__pycache__`` directories, which git ignores.
    """
    subprocess.run([python, "-m", "compileall", "-q", str(REPO / "src"), str(BENCH_DIR / "apps.py")],
                   check=False, capture_output=True)


def _pronghorn_commit() -> str:
    """The checkout's commit, with "+changes" when src/ differs from it."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, check=False, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + (" +changes" if git("status", "--porcelain", "--", "src") else "")


def environment(servers: list[Server]) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    return {
        "date": datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y"),
        "machine": f"{os.cpu_count()}-core {platform.system()} VM, Python {platform.python_version()}",
        "wrk": (wrk.stdout + wrk.stderr).split("[")[0].replace("wrk", "").strip(),
        "versions": {s.name: s.version for s in servers},
        "pronghorn_commit": _pronghorn_commit(),
    }


def markdown(results: list[dict[str, Any]], env: dict[str, Any], servers: list[Server], notes: list[str],
             loads: list[Workload], args: argparse.Namespace) -> str:
    peers = [(s.name, s.label) for s in servers if s.name != "pronghorn"]
    versions = ", ".join(f"{s.name} {s.version}" + (f" ({env['pronghorn_commit']})" if s.name == "pronghorn" else "")
                         for s in servers)
    lines = [f"Run of {env['date']} on a {env['machine']}; {versions}; wrk {env['wrk']}. "
             f"wrk -t2, {args.duration:g} s per run after a {args.warmup:g} s warm-up; 2 workers each"
             + (f"; median of {args.rounds} interleaved rounds" if args.rounds > 1 else "")
             + ("; servers and wrk in one scheduler group" if args.shared_scheduling else "; each server in a session of its own")
             + (f"; server on CPU {args.pin.split(':')[0]}, wrk on CPU {args.pin.split(':')[1]}." if args.pin else "."), "",
             "Requests/s (in brackets: pronghorn ÷ that server; above 1, pronghorn is faster):", "",
             report.summary_table(results, [(w.name, w.title) for w in loads], [(s.name, s.label) for s in servers]),
             "", "Every run:", "",
             report.results_table(results, {w.name: w.title for w in loads}), "",
             "pronghorn ÷ peer, requests/s (above 1: pronghorn is faster):", "",
             report.ratio_table(results, [w.name for w in loads], peers), "",
             "Targets:", "", report.targets_table(results), ""]
    extra = [s.note and f"{s.label}: {s.note}" for s in servers] + report.idle_notes(results) + report.tail_notes(results) + notes
    extra += [f"{r['label']} / {r['workload']}: {r['note']}" for r in results if r.get("note")]
    lines += [f"- {n}" for n in extra if n]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="whole seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each measurement (default 2)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--workloads", default="hello,sleep,big,upload,idle", help="comma-separated subset")
    parser.add_argument("--pronghorn-worker", default="gthread", help="pronghorn's -k (default gthread; e.g. sync)")
    parser.add_argument("--pronghorn-threads", type=int, default=1, help="pronghorn --threads for every workload but sleep (default 1: apps that do not wait run inline)")
    parser.add_argument("--peer-threads", type=int, default=4, help="peers' threads for every workload but sleep (default 4)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole matrix; each cell reports its median-rps run (default 1)")
    parser.add_argument("--shared-scheduling", action="store_true",
                        help="start servers in this session, so they and wrk share one scheduler autogroup")
    parser.add_argument("--pin", metavar="SERVER_CPUS:WRK_CPUS", default="",
                        help="confine the server and wrk to CPU lists with taskset, e.g. 0:1")
    parser.add_argument("--idle-count", type=int, default=1000, help="idle keep-alive connections (default 1000)")
    parser.add_argument("--peers-bin", default=os.environ.get("PRONGHORN_BENCH_PEERS", "/tmp/bench-peers/bin"),
                        help="directory holding gunicorn, granian and waitress-serve (then PATH)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pronghorn")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--chart", default=str(REPO / "docs" / "benchmark.png"), help="PNG to write ('' for none)")
    parser.add_argument("--update-docs", action="store_true", help="put the tables into docs/benchmark.md")
    args = parser.parse_args(argv)
    if args.pin and not re.fullmatch(r"[\d,-]+:[\d,-]+", args.pin):
        parser.error(f"--pin {args.pin!r}: expected SERVER_CPUS:WRK_CPUS, e.g. 0:1")

    if not shutil.which("wrk"):
        print(f"wrk is not installed; install it with: {INSTALL_WRK}", file=sys.stderr)
        return 2
    names = [n for n in args.servers.split(",") if n]
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    loads = [w for w in workloads(args) if w.name in args.workloads.split(",")]
    servers, notes = find_servers(names, args.peers_bin, args.python, args.pronghorn_worker)
    for note in notes:
        print("note: " + note, file=sys.stderr)
    if any(s.from_src for s in servers):
        precompile(args.python)
    env = environment(servers)
    runs: list[dict[str, Any]] = []
    total = len(loads) * len(servers) * args.rounds
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pronghorn-bench-") as logdir:
        for round_no in range(args.rounds):
            for workload in loads:
                for server in servers:
                    tag = f"[{len(runs) + 1}/{total}] {server.label} / {workload.name}"
                    try:
                        result = measure(server, workload, args, Path(logdir))
                        print(f"{tag}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms, "
                              f"{result['errors']} errors, {result['rss_mib']:.1f} MiB", file=sys.stderr)
                    except Exception as exc:  # one failed run must not stop the matrix
                        result = {"workload": workload.name, "server": server.name, "label": server.label,
                                  "error": str(exc).splitlines()[0][:120]}
                        print(f"{tag}: FAILED: {exc}", file=sys.stderr)
                    result["round"] = round_no + 1
                    runs.append(result)
    results = [median_run(runs, w.name, s.name) for w in loads for s in servers]
    env["wall_seconds"] = round(time.monotonic() - started, 1)
    text = markdown(results, env, servers, notes, loads, args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "results": results, "runs": runs, "notes": notes}, indent=2))
    if args.chart:
        title = f"requests/s relative to pronghorn ({args.pronghorn_worker} worker) — {env['machine']}, {env['date']}"
        problem = report.chart(results, [(w.name, f"{w.name}\n{w.title}") for w in loads], [(s.name, s.label) for s in servers], title, Path(args.chart))
        if problem:
            print("note: " + problem, file=sys.stderr)
    if args.update_docs and not report.update_docs(REPO / "docs" / "benchmark.md", text):
        print("note: docs/benchmark.md has no results markers; not updated", file=sys.stderr)
    print(f"wall time {env['wall_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
