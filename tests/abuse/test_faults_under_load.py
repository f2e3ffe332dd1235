"""Faults while ordinary load runs: a worker crashing or hanging, HUP, USR2 then TERM, TERM.

Each case starts a real server, runs client threads against it (half on kept-alive connections,
half on a new connection per request), causes one fault, keeps the load on until the server has
recovered, and prints what the clients saw. A reload, an upgrade and a graceful stop must cost no
request at all; a worker that dies or hangs may cost only the requests that were on its connections.

"Retried" counts requests sent on a kept-alive connection that the server closed without a byte of
answer, sent again on a new connection, as HTTP clients (and nginx) do for idempotent requests
(RFC 9112, 9.3.1). A client that sees more than that sees a failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serving import children_of, process_alive, wait_until

from abuse.clients import LoadResult, RequestLoad, ms
from abuse.harness import AbuseServer, CaseFigures, abuse_server, fd_count

pytestmark = pytest.mark.slow

WORKERS = ["gthread", "gthread-t4", "sync", "gevent", "asgi"]
TIMEOUT = 2  # the master's worker ``timeout`` in these cases: a hung worker is killed after it
SETTLE = 1.0  # seconds of load before the fault, and after the server has recovered
CLIENTS = 8


def _connections_held(server: AbuseServer, pid: int) -> int:
    """Accepted connections a worker holds now (its descriptors above its baseline)."""
    return max(0, fd_count(pid) - server.fd_baseline.get(pid, fd_count(pid)))


def _replaced(server: AbuseServer, gone: set[int]) -> Callable[[], bool]:
    """True once the master runs its full count of workers again, none of them in ``gone``."""
    def check() -> bool:
        pids = set(server.current_workers())
        return len(pids) == server.workers and not pids & gone and all(process_alive(pid) for pid in pids)
    return check


class Timeline:
    """Moments of one case, to report the load's rate before, during and after the fault."""

    def __init__(self) -> None:
        self.fault = 0.0
        self.recovered = 0.0

    def report(self, figures: CaseFigures, result: LoadResult, what: str) -> None:
        before = result.rate_between(self.fault - SETTLE, self.fault)
        during = result.rate_between(self.fault, self.recovered) if self.recovered > self.fault else 0.0
        after = result.rate_between(self.recovered, self.recovered + SETTLE)
        figures.note(f"{what}: {result.summary()}")
        figures.note(f"req/s before {before:.0f}, during {during:.0f} ({ms(self.recovered - self.fault)}), "
                     f"after {after:.0f}")


def _crash(server: AbuseServer, figures: CaseFigures, timeline: Timeline) -> int:
    victim = server.pids[0]
    held = _connections_held(server, victim)
    timeline.fault = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    recovered = wait_until(_replaced(server, {victim}), 10)
    timeline.recovered = time.monotonic()
    figures.check(recovered and timeline.recovered - timeline.fault < 2.0,
                  f"the killed worker replaced within 2 s (took {ms(timeline.recovered - timeline.fault)})")
    figures.note(f"the killed worker held {held} connection(s)")
    return held + 1  # and one being accepted at that moment


def _hang(server: AbuseServer, figures: CaseFigures, timeline: Timeline) -> int:
    victim = server.pids[0]
    held = _connections_held(server, victim)
    timeline.fault = time.monotonic()
    os.kill(victim, signal.SIGSTOP)  # a hung process: no heartbeat, no accept, no answer
    try:
        recovered = wait_until(_replaced(server, {victim}), TIMEOUT + 10)
    finally:
        if process_alive(victim):
            os.kill(victim, signal.SIGCONT)
    timeline.recovered = time.monotonic()
    took = timeline.recovered - timeline.fault
    figures.check(recovered and took < TIMEOUT + 3,
                  f"the hung worker killed and replaced within timeout + 3 s (took {ms(took)}, timeout {TIMEOUT} s)")
    figures.check("WORKER TIMEOUT" in server.log(), "the master logged the worker timeout")
    figures.note(f"the hung worker held {held} connection(s)")
    return held + 1


def _hup(server: AbuseServer, figures: CaseFigures, timeline: Timeline) -> int:
    old = set(server.pids)
    timeline.fault = time.monotonic()
    server.server.signal(signal.SIGHUP)
    recovered = wait_until(_replaced(server, old), 20)
    timeline.recovered = time.monotonic()
    figures.check(recovered, f"every worker replaced by the reload (took {ms(timeline.recovered - timeline.fault)})")
    return 0


def _usr2_then_term(server: AbuseServer, figures: CaseFigures, timeline: Timeline) -> int:
    pidfile = server.workdir / "master.pid"
    old_master = server.server.pid
    timeline.fault = time.monotonic()
    server.server.signal(signal.SIGUSR2)
    started = wait_until(lambda: Path(f"{pidfile}.2").exists(), 20)
    new_master = int(Path(f"{pidfile}.2").read_text()) if started else 0
    try:
        ready = started and wait_until(lambda: len(_workers_of(new_master)) == server.workers, 20)
        time.sleep(0.3)  # the new workers take their first connections
        os.kill(old_master, signal.SIGTERM)
        code = server.server.wait(timeout=30)
        timeline.recovered = time.monotonic()
        figures.check(ready, f"the new master's {server.workers} workers started")
        figures.check(code == 0, f"the old master exited 0 after TERM (exit {code}, "
                                 f"{ms(timeline.recovered - timeline.fault)} after USR2)")
        figures.check(process_alive(new_master), "the new master serves on")
    finally:
        server.extra_pids.append(new_master)
    return 0


def _workers_of(master: int) -> list[int]:
    return [pid for pid in children_of(master) if process_alive(pid)] if master else []


def _term(server: AbuseServer, figures: CaseFigures, timeline: Timeline) -> int:
    timeline.fault = time.monotonic()
    server.server.signal(signal.SIGTERM)
    code = server.server.wait(timeout=30)
    timeline.recovered = time.monotonic()
    figures.check(code == 0, f"the master exited 0 (exit {code}, {ms(timeline.recovered - timeline.fault)} after TERM)")
    return 0


FAULTS: dict[str, Callable[[AbuseServer, CaseFigures, Timeline], int]] = {
    "worker-crash": _crash,
    "worker-hang": _hang,
    "hup": _hup,
    "usr2-then-term": _usr2_then_term,
    "term": _term,
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("worker", WORKERS)
def test_fault_under_load(workdir: Path, worker: str, fault: str, figures: CaseFigures) -> None:
    extra = ["--timeout", str(TIMEOUT), "--graceful-timeout", "10"]
    if fault == "usr2-then-term":
        extra += ["-p", str(workdir / "master.pid")]
    with abuse_server(workdir, worker, *extra) as server, server.on_its_own_core():
        load = RequestLoad(server.port, threads=CLIENTS, mode="mixed", duration=60, timeout=TIMEOUT + 8,
                           refused_ends=fault == "term")
        timeline = Timeline()
        load.start()
        try:
            time.sleep(SETTLE)
            allowed = FAULTS[fault](server, figures, timeline)
            if fault != "term":
                time.sleep(SETTLE)
        finally:
            result = load.stop()
        timeline.report(figures, result, f"{CLIENTS} clients")
        lost = result.failed + result.retried
        if allowed:
            figures.check(lost <= allowed, f"requests lost or retried: {lost} (at most the {allowed} the fault may cost)")
        else:
            figures.check(result.failed == 0 and result.retried == 0,
                          f"no request failed ({result.failed}) or needed a retry ({result.retried})")
        if fault != "term":
            figures.check(result.rate_between(timeline.recovered, timeline.recovered + SETTLE) > 0,
                          "requests answered after the recovery")
        figures.check(result.completed > 100, f"{result.completed} requests answered in all")
    figures.assert_all()
