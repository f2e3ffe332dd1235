"""What one request costs a pronghorn worker in wake-ups, GIL hand-offs and system calls, inline
(``--threads 1``) against a thread pool (``--threads 4``).

How this works: for each thread count, pronghorn serves ``bench/apps.py`` with 2 workers pinned to
one CPU (``--pin``, as in ``run.py``), is warmed up with wrk (so the pool has started all its
threads), then loaded with wrk for ``--duration`` seconds while ``perf stat --per-thread`` counts,
in every thread of both workers: CPU time, context switches, wake-ups the thread issued
(``sched:sched_wakeup`` fires in the waker), and system calls by kind (tracepoints). With ``--gil``
it also records every call of CPython's ``take_gil`` (a uprobe, added with ``perf probe`` and
removed at the end): each is a thread taking the GIL back after having released it (around every
blocking call, even when no other thread wants it), and each change of the taking thread within a
worker is a GIL hand-off between threads. Context switches
are also split into voluntary and involuntary from ``/proc``. Every count is divided by the number
of requests wrk completed, and split between the event-loop thread (the worker's main thread) and
the application threads.

Needs root, ``perf`` (Debian: linux-perf) and tracefs (mounted at /sys/kernel/tracing if missing).
The counts are exact; the CPU times and requests/s move with the machine's load, and the uprobe
slows the GIL path, so compare requests/s from a run without ``--gil``.

    /tmp/bench-peers/bin/python bench/handoff.py [--threads 1,4] [--workload hello] [--gil]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import WRK_TIMEOUT, Workload, run_wrk, workloads  # noqa: E402
from servers import RunningServer, find_servers, free_port  # noqa: E402

SYSCALLS = ("futex", "epoll_wait", "epoll_pwait", "epoll_pwait2", "read", "recvfrom", "write", "writev", "sendto", "sendmsg", "epoll_ctl")
EVENTS = ("task-clock", "context-switches", "sched:sched_wakeup", "raw_syscalls:sys_enter",
          *(f"syscalls:sys_enter_{name}" for name in SYSCALLS))
GIL_EVENT = "pronghorn_bench:take_gil"  # a group of our own, removed at the end
TRACEFS = Path("/sys/kernel/tracing")

Counts = dict[str, dict[str, float]]  # role ("loop", "app") -> event -> total


def libpython(python: str) -> str:
    """The shared library holding ``take_gil`` for ``python`` (or the executable, if it is static)."""
    out = subprocess.run(["ldd", os.path.realpath(python)], check=False, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libpython" in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip()
    return os.path.realpath(python)


def _ctxt_switches(tid_dirs: list[Path]) -> dict[Path, tuple[int, int]]:
    found = {}
    for task in tid_dirs:
        try:
            fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        found[task] = (int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]))
    return found


def parse_perf(text: str, loop_tids: set[int]) -> Counts:
    """``perf stat -x, --per-thread`` output summed per role."""
    counts: Counts = {"loop": defaultdict(float), "app": defaultdict(float)}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 4 or not fields[1].replace(".", "").isdigit():
            continue
        tid = int(fields[0].rsplit("-", 1)[1])
        counts["loop" if tid in loop_tids else "app"][fields[3]] += float(fields[1])
    return counts


def gil_handoffs(script: str, loop_tids: set[int]) -> dict[str, float]:
    """From ``perf script -F pid,tid`` lines of take_gil calls, in time order: per role, how many
    times a thread took the GIL after another thread of its worker had last taken it."""
    last: dict[int, int] = {}
    handoffs = {"loop": 0.0, "app": 0.0}
    for line in script.splitlines():
        ids = line.split()[0].split("/") if line.strip() else []
        if len(ids) != 2 or not all(i.isdigit() for i in ids):
            continue
        pid, tid = int(ids[0]), int(ids[1])
        if last.get(pid, tid) != tid:
            handoffs["loop" if tid in loop_tids else "app"] += 1
        last[pid] = tid
    return handoffs


def _recording(pids: list[int], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["perf", "record", "-q", "-e", GIL_EVENT, "-o", str(out), "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(threads: int, workload: Workload, args: argparse.Namespace, events: list[str],
            logdir: Path) -> tuple[Counts, int, float]:
    servers, _ = find_servers(["pronghorn"], "", args.python, "gthread")
    server_cpus, client_cpus = args.pin.split(":")
    with RunningServer(servers[0], free_port(), threads, logdir / f"t{threads}.log", cpus=server_cpus) as running:
        running.wait_ready()
        run_wrk(running.port, workload, args.warmup, client_cpus)
        pids = running.worker_pids()
        tasks = [Path(f"/proc/{pid}/task/{tid}") for pid in pids for tid in os.listdir(f"/proc/{pid}/task")]
        before = _ctxt_switches(tasks)
        out = logdir / f"perf-{threads}.csv"
        perf = subprocess.Popen(["perf", "stat", "-x,", "--per-thread", "-o", str(out), "-e", ",".join(events),
                                 "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        recorded = logdir / f"gil-{threads}.data"
        recorder = _recording(pids, recorded) if GIL_EVENT in events else None
        try:
            result = run_wrk(running.port, workload, args.duration, client_cpus)
        finally:
            for watcher in (perf, recorder):
                if watcher is not None:
                    watcher.send_signal(signal.SIGINT)
                    watcher.wait(timeout=60)
        if not out.exists():
            raise RuntimeError(f"perf stat failed: {perf.stderr.read().decode(errors='replace') if perf.stderr else ''}")
        after = _ctxt_switches(tasks)
        counts = parse_perf(out.read_text(), set(pids))
        for task, (vol, invol) in after.items():
            role = "loop" if task.name == task.parent.parent.name else "app"
            counts[role]["voluntary switches"] += vol - before.get(task, (0, 0))[0]
            counts[role]["involuntary switches"] += invol - before.get(task, (0, 0))[1]
        if recorder is not None:
            script = subprocess.run(["perf", "script", "-i", str(recorded), "-F", "pid,tid"], check=False,
                                    capture_output=True, text=True).stdout
            for role, count in gil_handoffs(script, set(pids)).items():
                counts[role]["GIL hand-offs"] = count
        counts["loop"]["threads"] = len(pids)
        counts["app"]["threads"] = len(tasks) - len(pids)
    return counts, int(result["requests"]), float(result["rps"])


def _cell(name: str, value: float) -> str:
    return f"{value * 1000:.1f} µs" if name == "task-clock" else f"{value:.2f}"


LABELS = {"task-clock": "CPU time", "raw_syscalls:sys_enter": "system calls, all",
          GIL_EVENT: "take_gil (GIL taken back)", "GIL hand-offs": "GIL hand-offs (taken from another thread)"}


def table(rows: dict[int, tuple[Counts, int, float]], events: list[str]) -> str:
    """A line per counter, per request; a column per thread count and role."""
    columns = [(threads, role) for threads in rows for role in ("loop", "app")]
    lines = ["| per request | " + " | ".join(f"{'inline' if t == 1 else f'--threads {t}'}, {role} thread"
                                          + ("s" if role == "app" else "s (1/worker)") for t, role in columns) + " |",
             "|---|" + "---:|" * len(columns),
             "| requests/s, whole server | " + " | ".join(f"{rows[t][2]:,.0f}" if role == "loop" else ""
                                                       for t, role in columns) + " |",
             "| threads counted | " + " | ".join(str(int(rows[t][0][role].get("threads", 0))) for t, role in columns) + " |"]
    for name in [*events, "GIL hand-offs", "voluntary switches", "involuntary switches"]:
        values = [rows[t][0][role].get(name, 0.0) / max(rows[t][1], 1) for t, role in columns]
        if not any(values):  # a system call nobody made
            continue
        cells = [_cell(name, value) for value in values]
        lines.append(f"| {LABELS.get(name, name.split(':')[-1])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,4", help="pronghorn --threads values to compare (default 1,4)")
    parser.add_argument("--workload", default="hello", help="a run.py workload: hello, big or upload (default hello)")
    parser.add_argument("--duration", type=int, default=5, help="seconds counted (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before counting (default 2)")
    parser.add_argument("--pin", default="0:1", help="SERVER_CPUS:WRK_CPUS (default 0:1)")
    parser.add_argument("--gil", action="store_true", help="also count take_gil calls (a uprobe on libpython)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pronghorn")
    args = parser.parse_args(argv)
    defaults = argparse.Namespace(sleep_threads=32, idle_count=0)
    workload = next((w for w in workloads(defaults) if w.name == args.workload and not w.idle), None)
    if workload is None:
        parser.error(f"--workload {args.workload!r}: expected hello, sleep, big or upload")
    if not (TRACEFS / "events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=False)
    events = list(EVENTS)
    probe = ""
    if args.gil:
        lib = libpython(args.python)
        added = subprocess.run(["perf", "probe", "-x", lib, "-a", f"{GIL_EVENT}=take_gil"], check=False, capture_output=True, text=True)
        if added.returncode != 0:
            print(f"note: no take_gil probe on {lib}: {added.stderr.strip()}", file=sys.stderr)
        else:
            probe = GIL_EVENT
            events.append(probe)
    rows: dict[int, tuple[Counts, int, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="pronghorn-handoff-") as logdir:
            for threads in (int(t) for t in args.threads.split(",")):
                rows[threads] = measure(threads, workload, args, events, Path(logdir))
    finally:
        if probe:
            subprocess.run(["perf", "probe", "-d", probe], check=False, capture_output=True)
    print(f"{workload.title}, wrk -t2 (timeout {WRK_TIMEOUT}) on CPU {args.pin.split(':')[1]}, "
          f"2 workers on CPU {args.pin.split(':')[0]}, {args.duration} s; counts divided by requests completed:\n")
    print(table(rows, events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
