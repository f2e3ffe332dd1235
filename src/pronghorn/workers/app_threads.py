"""The application threads of an event-loop worker (``threads > 1``).

The loop hands a job to the pool (``submit``); a thread runs it and puts the outcome on a done queue;
the loop picks outcomes up in batches: a thread wakes the loop only if no wake-up is already on its
way, so under load one wake-up returns many finished jobs.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from typing import Protocol


class PoolJob(Protocol):
    def run_on_thread(self) -> bool:
        """On a pool thread: do the work; the result goes to ``finished_on_loop``."""

    def finished_on_loop(self, result: bool) -> None:
        """Back on the loop thread, with what ``run_on_thread`` returned."""


class AppThreads:
    """Up to ``count`` threads, started as needed, fed by one queue."""

    def __init__(self, count: int, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.count = count
        self.name = name
        self.loop = loop
        self.jobs: queue.SimpleQueue[PoolJob | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.done: deque[tuple[PoolJob, bool]] = deque()
        self.wake_pending = False  # a call to _collect is already scheduled on the loop

    def submit(self, busy: int, job: PoolJob) -> None:
        """Queue a job; ``busy`` counts the jobs queued or running, this one included."""
        if len(self.threads) < min(busy, self.count):
            thread = threading.Thread(target=self._run, name=f"{self.name}_{len(self.threads)}", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.jobs.put(job)

    def _run(self) -> None:
        done = self.done
        while (job := self.jobs.get()) is not None:
            result = job.run_on_thread()
            done.append((job, result))
            if not self.wake_pending:
                self.wake_pending = True
                try:
                    self.loop.call_soon_threadsafe(self._collect)
                except RuntimeError:  # the loop is closed: the worker is exiting
                    return
            del job

    def _collect(self) -> None:
        # Cleared before draining: a job finishing from here on schedules another call.
        self.wake_pending = False
        done = self.done
        while done:
            job, result = done.popleft()
            job.finished_on_loop(result)

    def shutdown(self) -> None:
        """Queued jobs are dropped; threads end once their current job returns."""
        try:
            while True:
                self.jobs.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self.jobs.put(None)
