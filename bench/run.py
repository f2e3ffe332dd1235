"""Side-by-side HTTP benchmark: pronghorn next to Gunicorn (gthread), Granian (WSGI) and waitress,
and, for ASGI apps, next to uvicorn, Granian (ASGI) and Gunicorn (-k asgi).

How this works: every server serves the same WSGI app (bench/apps.py) on loopback with 2 worker
processes (waitress: one process). A row of the matrix is a variant, a server with a thread count
(``--variants``; by default pronghorn inline and with 4 threads, Granian with 1 and 4 blocking
threads, Gunicorn gthread and waitress with 4). The ASGI workloads serve the same routes as an
ASGI app (``apps:asgi_app``) with every server that serves ASGI once (pronghorn -k asgi, Granian
--interface asgi, Gunicorn -k asgi, uvicorn with httptools and uvloop; no threads, no waitress);
uvicorn serves only those. For each workload, each row in turn is started,
checked (every route answers what it should), warmed up with wrk, measured with wrk while the memory
of its worker processes is sampled every 0.2 s, and stopped. Workloads are the outer loop and each
round starts the rows one place further along, so machine noise is shared fairly; a cell reports the
median of its rounds. By default the server runs on CPU 0 and wrk on CPU 1 (``--pin``; ``--unpinned``
lets the scheduler place them), and every process and thread of the server is checked to be pinned.

The results are printed as markdown (a table per workload with ratios to each Granian row, a
summary, and the issue's targets met or not per pronghorn row), optionally saved as JSON, and drawn
into docs/benchmark.png. Nothing is installed here: a missing peer is skipped with a note, a missing
wrk stops the run, each saying how to install it (see bench/README.md).

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
import statistics
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
import targets  # noqa: E402
from servers import (  # noqa: E402
    BENCH_DIR,
    DEFAULT_VARIANTS,
    INSTALL_WRK,
    REPO,
    SERVERS,
    UNVERIFIED,
    WORKERS,
    RunningServer,
    Server,
    Variant,
    find_servers,
    free_port,
    make_tls_files,
    parse_variants,
    serves,
)

IDLE_HELPER = BENCH_DIR / "idle_conns.py"
UPLOAD_SCRIPT = BENCH_DIR / "upload.lua"
WRK_TIMEOUT = "5s"
DEFAULT_PIN = "0:1"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    path: str
    connections: int
    threads: int | None = None  # application threads per worker for every row; None: each variant's own
    script: Path | None = None
    idle: int = 0  # idle keep-alive connections held open during the measurement
    tls: bool = False  # HTTPS, with a certificate made for the run (servers that do not serve TLS sit out)
    asgi: bool = False  # apps:asgi_app; each server that serves ASGI once, without application threads


WORKLOADS = ("hello", "https", "sleep", "big", "upload", "idle", "asgi", "asgi-sleep")


def workloads(args: argparse.Namespace) -> list[Workload]:
    return [
        Workload("hello", "hello, keep-alive, c=50", "/", 50),
        Workload("https", "hello over HTTPS (TLS 1.3), keep-alive, c=50", "/", 50, tls=True),
        Workload("sleep", f"10 ms app, c=200, {args.sleep_threads} threads for every server", "/sleep", 200,
                 threads=args.sleep_threads),
        Workload("big", "1 MiB responses, c=10", "/big", 10),
        Workload("upload", "64 KiB uploads, c=20", "/upload", 20, script=UPLOAD_SCRIPT),
        Workload("idle", f"hello + {args.idle_count:,} idle conns, c=50", "/", 50, idle=args.idle_count),
        Workload("asgi", "ASGI hello, keep-alive, c=50", "/", 50, asgi=True),
        Workload("asgi-sleep", "ASGI 10 ms app (asyncio.sleep), c=200", "/sleep", 200, asgi=True),
    ]


@dataclass(frozen=True)
class Row:
    """What one cell runs: a server with its threads, standing for the configured variant ``slot``."""

    slot: int
    server: Server
    threads: int
    asgi: bool = False

    @property
    def variant(self) -> str:
        return f"{self.server.name}-asgi" if self.asgi else f"{self.server.name}-{self.threads}"

    @property
    def label(self) -> str:
        return self.server.label(self.threads, asgi=self.asgi)


def needed_variants(variants: list[Variant], loads: list[Workload]) -> list[Variant]:
    """The variants whose server has a row in at least one of ``loads`` (uvicorn only with an ASGI
    workload, waitress only with a WSGI one): the others would be empty columns."""
    return [v for v in variants if any(serves(v.server, w.asgi) for w in loads)]


def summary_columns(variants: list[Variant], servers: dict[str, Server], asgi: bool) -> list[tuple[int, str, str]]:
    """The summary table's columns for the WSGI or the ASGI workloads, as (slot, server, header):
    every variant of a server that serves WSGI; for ASGI, the first variant of each server that serves
    it (the one its row stands under). A server that could not run keeps its column (shown "—")."""
    columns: list[tuple[int, str, str]] = []
    for slot, variant in enumerate(variants):
        name = variant.server
        if not serves(name, asgi) or (asgi and any(c[1] == name for c in columns)):
            continue
        server = servers.get(name)
        if server is None:
            header = name if asgi else f"{name} {variant.threads}t"
        else:
            header = server.label(1 if asgi else server.effective_threads(variant.threads), asgi=asgi)
        columns.append((slot, name, header))
    return columns


def matrix_rows(workload: Workload, variants: list[Variant], servers: dict[str, Server]) -> list[Row]:
    """The rows of one workload; variants that come to the same server and threads there run once.
    An ASGI workload has no application threads, so each server serving ASGI runs once there, under
    its first variant; a WSGI workload leaves out the servers that serve only ASGI, and vice versa."""
    rows: dict[tuple[str, int], Row] = {}
    for slot, variant in enumerate(variants):
        server = servers.get(variant.server)
        if server is None or (workload.tls and not server.serves_tls):
            continue
        if not (server.serves_asgi if workload.asgi else server.serves_wsgi):
            continue
        threads = 1 if workload.asgi else server.effective_threads(workload.threads or variant.threads)
        rows.setdefault((server.name, threads), Row(slot, server, threads, asgi=workload.asgi))
    return list(rows.values())


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


def _pinned(cpus: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def run_wrk(base_url: str, workload: Workload, seconds: float, cpus: str = "") -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{workload.connections}", f"-d{seconds:g}s", "--latency", "--timeout", WRK_TIMEOUT]
    if workload.script:
        cmd += ["-s", str(workload.script)]
    cmd.append(base_url + workload.path)
    out = subprocess.run(_pinned(cpus, cmd), check=False, capture_output=True, text=True, timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited with {out.returncode}: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


# -- one cell -------------------------------------------------------------------------------------


def check_routes(base: str) -> None:
    """Every route answers what the workloads expect, before anything is measured."""
    if base.startswith("https:"):  # the HTTPS workload asks for / only
        with urllib.request.urlopen(base + "/", timeout=10, context=UNVERIFIED) as resp:
            if resp.read() != b"Hello, world!":
                raise RuntimeError("GET / over HTTPS: unexpected body")
        return
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


def _cpus(args: argparse.Namespace) -> tuple[str, str]:
    """The server's and wrk's CPU lists ("" each when unpinned)."""
    if args.unpinned:
        return "", ""
    server, client = args.pin.split(":")
    return server, client


def identity(row: Row, workload: Workload) -> dict[str, Any]:
    """The fields that name a result's cell (see report.py)."""
    return {"workload": workload.name, "server": row.server.name, "threads": row.threads, "variant": row.variant,
            "label": row.label, "slot": row.slot, "interface": "asgi" if row.asgi else "wsgi"}


def measure(row: Row, workload: Workload, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    server = row.server
    result = identity(row, workload)
    log_path = logdir / f"{row.variant}-{workload.name}.log"
    server_cpus, client_cpus = _cpus(args)
    with RunningServer(server, free_port(), row.threads, log_path, own_session=not args.shared_scheduling,
                       cpus=server_cpus, tls=args.tls_files if workload.tls else None, asgi=row.asgi) as running:
        running.wait_ready()
        check_routes(running.base_url)
        helper: subprocess.Popen[str] | None = None
        try:
            if workload.idle:
                hold = args.warmup + args.duration + 120
                command = [sys.executable, str(IDLE_HELPER), "--port", str(running.port),
                           "--count", str(workload.idle), "--hold", str(hold)]
                helper = subprocess.Popen(_pinned(client_cpus, command), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
                result["idle"] = _helper_line(helper, "ready")
            running.start_sampling()
            if args.warmup > 0:
                run_wrk(running.base_url, workload, args.warmup, client_cpus)
            cpu_before = running.cpu_seconds()
            result.update(run_wrk(running.base_url, workload, args.duration, client_cpus))
            cpu = running.cpu_seconds() - cpu_before
            # Load-robust figures: what a request costs the server, and how much CPU it got.
            result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
            result["cpu_share"] = cpu / args.duration
            result["rss_mib"] = running.stop_sampling()
            result["workers"] = len(running.peak_rss)
            stray = running.stray_cpus()  # after the load, when every thread the server starts is there
            if stray:  # a server that re-pins itself would make the pinned figures meaningless
                raise RuntimeError(f"server threads may run on CPUs {sorted(stray)} outside --pin {server_cpus}")
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


MEDIAN_FIELDS = ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request", "cpu_share")


def combine_rounds(cell: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell over its rounds: the median of each rate and percentile, errors summed, the highest RSS.

    The other fields (idle counts, socket error kinds) come from the round of the median rate.
    """
    good = sorted((r for r in cell if "error" not in r), key=lambda r: r["rps"])
    if not good:
        return cell[0]
    combined = dict(good[(len(good) - 1) // 2])
    if len(cell) == 1:
        return combined
    for name in MEDIAN_FIELDS:
        combined[name] = statistics.median(r[name] for r in good)
    combined["errors"] = sum(r["errors"] for r in good)
    combined["rss_mib"] = max(r["rss_mib"] for r in good)
    combined["rounds_rps"] = [round(r.get("rps", 0.0)) for r in cell]
    combined["rounds_p99_ms"] = [round(r.get("p99_ms", 0.0), 2) for r in cell]
    combined["rounds_cpu_share"] = [round(r.get("cpu_share", 0.0), 2) for r in cell]
    if len(good) < len(cell):
        combined["note"] = f"{len(cell) - len(good)} of {len(cell)} rounds failed"
    return combined


def run_matrix(loads: list[Workload], variants: list[Variant], servers: dict[str, Server],
               args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every round of every cell, workloads outermost; each round rotates the order of the rows.
    Returns the cells (rounds combined) and every run."""
    plan = [(workload, matrix_rows(workload, variants, servers)) for workload in loads]
    total = sum(len(rows) for _, rows in plan) * args.rounds
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pronghorn-bench-") as logdir:
        args.tls_files = make_tls_files(Path(logdir)) if any(w.tls for w in loads) else None
        for round_no in range(args.rounds):
            for workload, rows in plan:
                shift = round_no % len(rows) if rows else 0
                for row in rows[shift:] + rows[:shift]:
                    tag = f"[{len(runs) + 1}/{total}] {row.label} / {workload.name} (round {round_no + 1})"
                    try:
                        result = measure(row, workload, args, Path(logdir))
                        print(f"{tag}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms, "
                              f"{result['errors']} errors, {result['rss_mib']:.1f} MiB, "
                              f"{result['cpu_us_per_request']:.1f} CPU µs/request, CPU {result['cpu_share']:.0%}",
                              file=sys.stderr)
                    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the matrix
                        result = {**identity(row, workload), "error": str(exc).splitlines()[0][:160]}
                        print(f"{tag}: FAILED: {exc}", file=sys.stderr)
                    result["round"] = round_no + 1
                    runs.append(result)
    cells = [combine_rounds([r for r in runs if r["workload"] == workload.name and r["variant"] == row.variant])
             for workload, rows in plan for row in rows]
    return cells, runs


# -- output ---------------------------------------------------------------------------------------


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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def environment(servers: list[Server]) -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
    return {
        "date": datetime.now(timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y"),
        "machine": f"{os.cpu_count()}-core {platform.system()} VM ({_cpu_model()}), Python {platform.python_version()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "wrk": (wrk.stdout + wrk.stderr).split("[")[0].replace("wrk", "").strip(),
        "versions": {s.name: s.version for s in servers},
        "pronghorn_commit": _pronghorn_commit(),
    }


def _header(env: dict[str, Any], servers: list[Server], args: argparse.Namespace) -> str:
    versions = ", ".join(f"{s.name} {s.version}" + (f" ({env['pronghorn_commit']})" if s.name == "pronghorn" else "")
                         for s in servers)
    server_cpus, client_cpus = _cpus(args)
    placement = (f"server pinned to CPU {server_cpus}, wrk to CPU {client_cpus} (taskset; every server thread checked)"
                 if server_cpus else "unpinned (the scheduler places server and wrk)")
    return (f"Run of {env['date']} on a {env['machine']}; {versions}; wrk {env['wrk']}. "
            f"wrk -t2, {args.duration:g} s per run after a {args.warmup:g} s warm-up; {WORKERS} workers each "
            f"(waitress: 1 process); {placement}"
            + (f"; median of {args.rounds} interleaved rounds" if args.rounds > 1 else "")
            + ("; servers and wrk in one scheduler group" if args.shared_scheduling else "")
            + f". Load average before/after: {env['load_before'][0]:.2f}/{env['load_after'][0]:.2f}.")


def markdown(results: list[dict[str, Any]], checks: list[targets.Check], env: dict[str, Any], servers: list[Server],
             variants: list[Variant], notes: list[str], loads: list[Workload], args: argparse.Namespace) -> str:
    titles = [(w.name, w.title) for w in loads]
    found = {s.name: s for s in servers}
    summaries: list[str] = []
    wsgi = [(w.name, w.title) for w in loads if not w.asgi]
    asgi = [(w.name, w.title) for w in loads if w.asgi]
    if wsgi:
        summaries += ["Requests/s and p99 latency per row (the 10 ms app runs every server with the same threads, "
                      "so it has one row per server):", "",
                      report.summary_table(results, wsgi, summary_columns(variants, found, asgi=False)), ""]
    if asgi:
        summaries += ["ASGI apps (`apps:asgi_app`, the same routes; no application threads, so one row per "
                      "server): requests/s and p99 latency:", "",
                      report.summary_table(results, asgi, summary_columns(variants, found, asgi=True)), ""]
    every_row = ("Every row (÷: this row's figure divided by that Granian row's; for req/s above 1 is faster, "
                 "for p99 and CPU per request below 1 is better). CPU µs/req is the server's CPU time (all its "
                 "processes and threads) per request served, and CPU the share of a core it used: pinned to one "
                 "core, a share well below 100 % means other work took the core, and CPU per request is then "
                 "the steadier comparison:")
    lines = [_header(env, servers, args), "", *summaries,
             "Targets, per pronghorn row:", "", targets.table(results, checks, dict(titles)), "",
             every_row, "", report.workload_tables(results, titles), ""]
    extra = [s.note and f"{s.name}: {s.note}" for s in servers] + report.idle_notes(results) + report.tail_notes(results) + notes
    extra += [f"{r['label']} / {r['workload']}: {r['note']}" for r in results if r.get("note")]
    lines += [f"- {n}" for n in extra if n]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="whole seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each measurement (default 2)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"rows as SERVER:THREADS, comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="keep only the variants of these servers (comma-separated subset of " + ",".join(SERVERS) + ")")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    parser.add_argument("--sleep-threads", type=int, default=32,
                        help="threads per worker of every server for the 10 ms app (default 32)")
    parser.add_argument("--pronghorn-worker", default="gthread", help="pronghorn's -k (default gthread; e.g. sync)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole matrix; each cell reports the median of its rounds (default 1)")
    parser.add_argument("--pin", metavar="SERVER_CPUS:WRK_CPUS", default=DEFAULT_PIN,
                        help=f"CPU lists (taskset) for the server with all its processes, and for wrk (default {DEFAULT_PIN})")
    parser.add_argument("--unpinned", action="store_true", help="do not pin: the scheduler places server and wrk")
    parser.add_argument("--shared-scheduling", action="store_true",
                        help="start servers in this session, so they and wrk share one scheduler autogroup")
    parser.add_argument("--idle-count", type=int, default=1000, help="idle keep-alive connections (default 1000)")
    parser.add_argument("--peers-bin", default=os.environ.get("PRONGHORN_BENCH_PEERS", "/tmp/bench-peers/bin"),
                        help="directory holding gunicorn, granian, waitress-serve and uvicorn (then PATH)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pronghorn")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--chart", default=str(REPO / "docs" / "benchmark.png"), help="PNG to write ('' for none)")
    parser.add_argument("--update-docs", action="store_true",
                        help="put the results into docs/benchmark.md (the pinned or the unpinned section)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[\d,-]+:[\d,-]+", args.pin):
        parser.error(f"--pin {args.pin!r}: expected SERVER_CPUS:WRK_CPUS, e.g. 0:1")
    unknown = set(args.servers.split(",")) - set(SERVERS) - {""}
    if unknown:
        parser.error(f"--servers: unknown servers: {', '.join(sorted(unknown))}")
    unknown = set(args.workloads.split(",")) - set(WORKLOADS) - {""}
    if unknown:
        parser.error(f"--workloads: unknown workloads: {', '.join(sorted(unknown))} (known: {', '.join(WORKLOADS)})")
    try:
        args.variant_list = [v for v in parse_variants(args.variants) if v.server in args.servers.split(",")]
    except ValueError as exc:
        parser.error(f"--variants {args.variants!r}: {exc}")
    if not args.variant_list:
        parser.error("--variants and --servers leave no row to run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print(f"wrk is not installed; install it with: {INSTALL_WRK}", file=sys.stderr)
        return 2
    loads = [w for w in workloads(args) if w.name in args.workloads.split(",")]
    variants = needed_variants(args.variant_list, loads)
    if not variants:
        print("the variants left by --variants and --servers have no row in these workloads", file=sys.stderr)
        return 2
    found, notes = find_servers(list(dict.fromkeys(v.server for v in variants)), args.peers_bin, args.python,
                                args.pronghorn_worker, asgi=any(w.asgi for w in loads))
    for note in notes:
        print("note: " + note, file=sys.stderr)
    servers = {s.name: s for s in found}
    if any(s.from_src for s in found):
        precompile(args.python)
    env = environment(found)
    started = time.monotonic()
    results, runs = run_matrix(loads, variants, servers, args)
    env["wall_seconds"] = round(time.monotonic() - started, 1)
    env["load_after"] = [round(x, 2) for x in os.getloadavg()]
    slots = [(v.server, servers[v.server].label(servers[v.server].effective_threads(v.threads)) if v.server in servers
              else f"{v.server} {v.threads}t") for v in variants]
    checks = targets.check(results)
    text = markdown(results, checks, env, found, variants, notes, loads, args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "options": {k: v for k, v in vars(args).items()
                                                                              if k not in ("variant_list", "tls_files")},
                                               "results": results, "runs": runs,
                                               "targets": [c.as_json() for c in checks],
                                               "notes": notes}, indent=2))
    if args.chart:
        placement = "unpinned" if args.unpinned else f"pinned {args.pin}"
        title = f"relative to granian's row with the most threads (= 1.0); {placement}; {env['machine']}, {env['date']}"
        if any(w.asgi for w in loads):
            title += "\nASGI workloads: each server's one row, in the colour of its first variant"
        problem = report.chart(results, [(w.name, f"{w.name}\n{w.title}") for w in loads], slots, title, Path(args.chart))
        if problem:
            print("note: " + problem, file=sys.stderr)
    mode = "unpinned" if args.unpinned else "pinned"
    if args.update_docs and not report.update_docs(REPO / "docs" / "benchmark.md", text, mode):
        print(f"note: docs/benchmark.md has no {mode} results markers; not updated", file=sys.stderr)
    print(f"wall time {env['wall_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
