"""The event-loop worker's application threads: jobs in, outcomes back on the loop, threads woken
only as needed (real event loops, asyncio's and uvloop, and real threads; no sockets)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from pronghorn.workers.app_threads import AppThreads
from pronghorn.workers.gthread import new_event_loop

T = TypeVar("T")
# Tests that depend on the order of callbacks run on asyncio's loop and on the one workers run (uvloop).
ON_BOTH_LOOPS = pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, new_event_loop], ids=["asyncio", "worker's loop"])


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


def run_then_shut_down(loop: asyncio.AbstractEventLoop, pool: AppThreads, main: Coroutine[Any, Any, T]) -> T:
    try:
        return loop.run_until_complete(main)
    finally:
        pool.shutdown()
        loop.close()


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

    elapsed = run_then_shut_down(loop, pool, main())
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


@pytest.mark.parametrize("eventfd", [True, False], ids=["eventfd", "without eventfd (not Linux)"])
def test_blocked_threads_get_help_until_every_thread_works(eventfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # 8 jobs sleeping 0.2 s on 4 threads: in two rounds (about 0.4 s), not one after another (1.6 s).
    # Without eventfd, threads park on locks and tell the loop with call_soon_threadsafe.
    if not eventfd:
        monkeypatch.delattr(os, "eventfd", raising=False)
    loop = asyncio.new_event_loop()
    probe = AppThreads(1, "probe", loop)
    assert (probe.doorbell >= 0, probe.places[0].lock is None) == (eventfd, eventfd)
    probe.shutdown()
    loop.close()
    jobs, elapsed, pool = run_jobs(4, 8, lambda: time.sleep(0.2))
    assert len(pool.threads) == 4
    assert len({job.thread for job in jobs}) == 4
    assert elapsed < 1.2, elapsed


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def test_shutdown_ends_parked_threads_and_closes_what_they_waited_on() -> None:
    for thread in threading.enumerate():  # earlier tests' threads close their descriptors on the way out
        if thread.name.startswith("test-app"):
            thread.join(timeout=5)
    before = open_descriptors()
    _, _, pool = run_jobs(3, 6, lambda: time.sleep(0.05))
    assert len(pool.threads) == 3
    for thread in pool.threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert open_descriptors() == before  # the loop's doorbell and each thread's place to wait


def test_an_answer_does_not_wait_for_the_blocking_job_its_thread_took_next() -> None:
    # One thread, a quick job then one that blocks for 0.5 s: the thread goes on into the second
    # without waking the loop, and the loop's check still collects the first within milliseconds.
    loop = asyncio.new_event_loop()
    pool = AppThreads(1, "test-app", loop)
    finished: list[Job] = []
    quick, slow = Job(lambda: None, finished), Job(lambda: time.sleep(0.5), finished)
    collected_after: list[float] = []

    async def main() -> None:
        started = time.monotonic()
        pool.submit(quick)
        pool.submit(slow)
        while quick not in finished and time.monotonic() - started < 5:
            await asyncio.sleep(0.001)
        collected_after.append(time.monotonic() - started)
        while slow not in finished and time.monotonic() - started < 5:
            await asyncio.sleep(0.005)

    run_then_shut_down(loop, pool, main())
    assert finished == [quick, slow]
    assert collected_after[0] < 0.25, collected_after


class HandingJob:
    """Hands something to the loop with call_soon_threadsafe while it runs, as a streamed response does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, events: list[str], index: int) -> None:
        self.loop, self.events, self.index = loop, events, index

    def run_on_thread(self) -> bool:
        self.loop.call_soon_threadsafe(self.events.append, f"handed {self.index}")
        return True

    def finished_on_loop(self, result: bool) -> None:
        self.events.append(f"finished {self.index}")


@ON_BOTH_LOOPS
def test_a_job_comes_back_after_what_it_handed_over(make_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    # A streamed response's last bytes come back with its job: they must follow the chunks it handed
    # over before, whichever way the loop is woken.
    loop = make_loop()
    pool = AppThreads(2, "test-app", loop)
    events: list[str] = []

    async def main() -> None:
        for index in range(1000):
            pool.submit(HandingJob(loop, events, index))
            started = time.monotonic()
            while f"finished {index}" not in events and time.monotonic() - started < 5:
                await asyncio.sleep(0)

    run_then_shut_down(loop, pool, main())
    assert events == [event for index in range(1000) for event in (f"handed {index}", f"finished {index}")]


class ChainedJob(HandingJob):
    """Like a pipelined connection: back on the loop, it submits the next request's job itself."""

    def __init__(self, pool: AppThreads, loop: asyncio.AbstractEventLoop, events: list[str], index: int, last: int) -> None:
        super().__init__(loop, events, index)
        self.pool, self.last = pool, last

    def run_on_thread(self) -> bool:
        if self.index % 2 == 0:
            time.sleep(0.002)  # long enough for the pool's check to see it finished, as well as its thread
        return super().run_on_thread()  # the next one quick: done before a second call to collect runs

    def finished_on_loop(self, result: bool) -> None:
        super().finished_on_loop(result)
        if self.index < self.last:
            self.pool.submit(ChainedJob(self.pool, self.loop, self.events, self.index + 1, self.last))


@ON_BOTH_LOOPS
def test_a_job_submitted_from_a_collected_one_still_comes_back_after_what_it_handed_over(
    make_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # The loop may be asked to collect twice for one job (by the thread's eventfd and by its check);
    # the second request must not take the next job ahead of what that job handed over meanwhile.
    loop = make_loop()
    pool = AppThreads(2, "test-app", loop)
    events: list[str] = []
    last = 599

    async def main() -> None:
        pool.submit(ChainedJob(pool, loop, events, 0, last))
        started = time.monotonic()
        while f"finished {last}" not in events and time.monotonic() - started < 20:
            await asyncio.sleep(0.01)

    run_then_shut_down(loop, pool, main())
    assert events == [event for index in range(last + 1) for event in (f"handed {index}", f"finished {index}")]


class Finishing:
    def __init__(self, events: list[str], index: int) -> None:
        self.events, self.index = events, index

    def run_on_thread(self) -> bool:
        return True

    def finished_on_loop(self, result: bool) -> None:
        self.events.append(f"finished {self.index}")


@ON_BOTH_LOOPS
def test_a_call_to_collect_takes_only_the_jobs_finished_when_it_was_made(
    make_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # The same race as above, laid out step by step on the loop's thread: job 1 finished and the loop
    # was asked twice to collect (its check and the thread's eventfd); then job 2 handed something
    # over and finished before either ran. Job 2 comes back after what it handed over.
    loop = make_loop()
    pool = AppThreads(1, "test-app", loop)
    events: list[str] = []
    pool.out = 2  # as if both had been submitted
    pool.done.append((Finishing(events, 1), True))
    pool._collect_soon()
    pool._collect_soon()
    loop.call_soon_threadsafe(events.append, "handed 2")  # what a thread does, in the order it does it
    pool.done.append((Finishing(events, 2), True))
    pool._collect_soon()
    run_then_shut_down(loop, pool, asyncio.sleep(0.05))
    assert events == ["finished 1", "handed 2", "finished 2"]
    assert pool.out == 0 and not pool.done

