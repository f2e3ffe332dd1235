"""The event-loop worker's application threads: jobs in, outcomes back on the loop, threads woken
only as needed (a real asyncio loop and real threads; no sockets)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from pronghorn.workers.app_threads import AppThreads


class Job:
    def __init__(self, work: Callable[[], None], finished: list[Job]) -> None:
        self.work = work
        self.finished = finished
        self.thread = ""

    def run_on_thread(self) -> bool:
        self.thread = threading.current_thread().name
        self.work()
        return True

    def finished_on_loop(self, result: bool) -> None:
        assert result
        self.finished.append(self)


def run_jobs(count: int, jobs: int, work: Callable[[], None], timeout: float = 10.0) -> tuple[list[Job], float, AppThreads]:
    """Submit ``jobs`` jobs at once to a pool of ``count`` threads; wait until all came back."""
    loop = asyncio.new_event_loop()
    pool = AppThreads(count, "test-app", loop)
    finished: list[Job] = []
    submitted = [Job(work, finished) for _ in range(jobs)]

    async def main() -> float:
        started = time.monotonic()
        for job in submitted:
            pool.submit(job)
        while len(finished) < jobs and time.monotonic() - started < timeout:
            await asyncio.sleep(0.005)
        return time.monotonic() - started

    try:
        elapsed = loop.run_until_complete(main())
    finally:
        pool.shutdown()
        loop.close()
    assert sorted(map(id, finished)) == sorted(map(id, submitted)), "every job came back once"
    return submitted, elapsed, pool


def test_jobs_that_do_not_block_are_run_by_one_thread() -> None:
    # 200 quick jobs at once: the thread that is awake takes one after another; waking others would
    # only make them contend for the GIL.
    # (A thread that has not run for a whole WAKE_INTERVAL, on a busy machine, looks blocked and
    # gets help: allow one more, but the first one runs nearly all.)
    jobs, _, pool = run_jobs(4, 200, lambda: None)
    assert len(pool.threads) <= 2, [thread.name for thread in pool.threads]
    assert sum(job.thread == pool.threads[0].name for job in jobs) >= 180


def test_blocked_threads_get_help_until_every_thread_works() -> None:
    # 8 jobs sleeping 0.2 s on 4 threads: in two rounds (about 0.4 s), not one after another (1.6 s).
    jobs, elapsed, pool = run_jobs(4, 8, lambda: time.sleep(0.2))
    assert len(pool.threads) == 4
    assert len({job.thread for job in jobs}) == 4
    assert elapsed < 1.2, elapsed


def test_shutdown_ends_parked_threads() -> None:
    _, _, pool = run_jobs(3, 6, lambda: time.sleep(0.05))
    for thread in pool.threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
