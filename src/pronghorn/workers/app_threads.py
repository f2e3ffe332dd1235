"""The application threads of an event-loop worker (``threads > 1``).

How this works: the loop appends jobs to a queue; threads take them in order. Handing work to a
thread costs a wake-up and, because of the GIL, a switch to that thread and back, which is more
than a hello-world request itself. So the pool crosses between threads sparingly:

* A job submitted while some thread is awake is left for it: an awake thread takes the next job as
  soon as it is done with its current one, without sleeping in between. Under load a burst of
  requests read in one pass of the loop is run by one thread, one after the other, at the cost of
  one wake-up, and the loop collects the answers at the cost of one more. Both wake-ups are
  eventfd writes made with the GIL released, so the woken thread finds the GIL free.
* A thread blocked in the app (waiting on a database, sleeping) must not hold up the jobs behind it,
  so while jobs are out, a check every ``WAKE_INTERVAL`` wakes one more thread (up to ``count``) if
  jobs wait and none finished since the last check: the awake threads are all blocked. Apps that
  block get all their threads within a few milliseconds of a burst; apps that do not are run by as
  few threads as keep up, instead of several contending for the GIL.
* A finished job goes on a done list. A thread tells the loop once it finds no job left, not after
  each job: woken earlier, the loop would only wait for the GIL the thread holds. Finished jobs of a
  thread that went on into a job that blocks are collected by the same check, so an answer waits at
  most ``WAKE_INTERVAL`` for the loop. A job is collected behind what it handed over to the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Protocol

WAKE_INTERVAL = 0.001  # while jobs are out, finished ones are collected and blocked threads helped this often


class PoolJob(Protocol):
    def run_on_thread(self) -> bool:
        """On a pool thread: do the work; the result goes to ``finished_on_loop``."""

    def finished_on_loop(self, result: bool) -> None:
        """Back on the loop thread, with what ``run_on_thread`` returned."""


class _Parking:
    """Where one idle thread waits until a waker lets it go (a wake before the wait is not lost)."""

    __slots__ = ("lock", "fd")

    def __init__(self) -> None:
        # Linux: a blocking eventfd, written with the GIL released. Woken while the waker holds the
        # GIL (a lock's release), the thread would run at once on a shared core, find the GIL taken
        # and sleep again, and the two would trade the core a few times per hand-over (perf sched
        # showed 4-5 switches of 3-5 microseconds each; half the switches per request without them).
        self.fd = os.eventfd(0, os.EFD_CLOEXEC) if hasattr(os, "eventfd") else -1
        self.lock: threading.Lock | None = None
        if self.fd < 0:
            self.lock = threading.Lock()
            self.lock.acquire()

    def wait(self) -> None:
        if self.lock is None:
            os.eventfd_read(self.fd)
        else:
            self.lock.acquire()

    def wake(self) -> None:
        if self.lock is None:
            os.eventfd_write(self.fd, 1)
        else:
            self.lock.release()

    def close(self) -> None:
        """By its thread on the way out (only parked places are woken: no waker holds it any more), or
        at shutdown if no thread took it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AppThreads:
    """Up to ``count`` threads, started as needed."""

    def __init__(self, count: int, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.count = count
        self.name = name
        self.loop = loop
        # Plain lists, not deques: compiled, their append and pop(0) are direct calls (a deque's are
        # method look-ups); pop(0) moves the rest, at most ``worker_connections`` pointers.
        self.jobs: list[PoolJob] = []
        self.lock = threading.Lock()  # guards ``awake`` and ``parked`` (a thread parking vs. a waker)
        self.awake = 0  # threads running or about to take a job
        self.parked: list[_Parking] = []
        # Every thread's place, made now by the loop: a worker's descriptors stay the same from its start
        # on, a thread started while clients hold every descriptor the worker may open still has one,
        # and a thread does not begin by letting go of the GIL to make one.
        self.places = [_Parking() for _ in range(count)]
        self.threads: list[threading.Thread] = []
        self.stopping = False
        self.out = 0  # jobs submitted and not collected yet (the loop's count)
        self.check_scheduled = False
        self.wake_scheduled = False  # a _wake_after_pass is scheduled on the loop
        self.finished = 0  # jobs finished (by the threads; a lost increment only delays a wake-up)
        self.finished_at_check = 0
        self.done: list[tuple[PoolJob, bool]] = []
        self.collected = 0  # jobs taken off ``done`` so far (the loop's count; ``done`` is in order)
        self.told = False  # the loop has been told of finished jobs and has not collected them yet
        # Where threads tell the loop: an eventfd, written with the GIL released (see the module doc).
        self.doorbell = -1
        if hasattr(os, "eventfd"):
            self.doorbell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            loop.add_reader(self.doorbell, self._answer_doorbell)

    # --- the loop's side ---

    def submit(self, job: PoolJob) -> None:
        self.jobs.append(job)
        self.out += 1
        if self.awake == 0:
            # Woken once the loop's pass is over: a thread woken now would take the GIL whenever the
            # loop releases it (around each read of the pass) and the loop would wait to get it back.
            if not self.wake_scheduled:
                self.wake_scheduled = True
                self.loop.call_soon(self._wake_after_pass)
        if not self.check_scheduled:
            self._schedule_check()

    def _wake_after_pass(self) -> None:
        self.wake_scheduled = False
        if self.jobs and self.awake == 0 and not self.stopping:
            self._wake_one()

    def _schedule_check(self) -> None:
        self.check_scheduled = True
        self.finished_at_check = self.finished
        self.loop.call_later(WAKE_INTERVAL, self._check)

    def _check(self) -> None:
        """While jobs are out: collect what finished, and help threads that are all blocked."""
        self.check_scheduled = False
        if self.stopping:
            return
        if self.done:  # finished before its thread went on into a job that is still running
            self._collect_soon()
        if self.jobs and self.finished == self.finished_at_check:
            self._wake_one()  # jobs wait and none finished meanwhile: the awake threads are blocked
        if self.out:
            self._schedule_check()

    def _wake_one(self) -> None:
        with self.lock:
            if self.parked:
                parking = self.parked.pop()
                self.awake += 1
            elif len(self.threads) < self.count:
                parking = None
                self.awake += 1
            else:
                return  # every thread is awake already
        if parking is not None:
            parking.wake()
            return
        name = f"{self.name}_{len(self.threads)}"
        thread = threading.Thread(target=self._run, args=(self.places.pop(),), name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _answer_doorbell(self) -> None:
        if self.doorbell >= 0:
            try:
                os.eventfd_read(self.doorbell)
            except BlockingIOError:
                pass
        self._collect_soon()

    def _collect_soon(self) -> None:
        """Collect the jobs finished by now, through the ready queue: behind what their threads handed
        over before with call_soon_threadsafe (a streamed response's chunks), which their ends follow.
        Only those: a job finishing later may have handed something over behind this call."""
        self.loop.call_soon(self._collect, self.collected + len(self.done))

    def _collect(self, upto: int) -> None:
        # Cleared before taking the list: a job finishing from here on tells the loop again.
        self.told = False
        done = self.done
        while self.collected < upto:
            job, result = done.pop(0)
            self.collected += 1
            self.out -= 1
            job.finished_on_loop(result)
        if done:  # finished meanwhile, perhaps without telling (the loop had been told, not yet here)
            self._collect_soon()

    def shutdown(self) -> None:
        """Queued jobs are dropped; threads end once their current job returns."""
        self.stopping = True
        self.jobs.clear()
        with self.lock:
            parked, self.parked = self.parked, []
            running = self.awake
        if self.doorbell >= 0:
            self.loop.remove_reader(self.doorbell)
            if not running:  # else a thread still in a job may ring it: it closes with the process
                os.close(self.doorbell)
            self.doorbell = -1
        for parking in parked:
            parking.wake()
        for place in self.places:  # never taken by a thread
            place.close()
        self.places = []

    # --- a thread's side ---

    def _park(self, parking: _Parking) -> bool:
        """No job: register as parked, unless one came in meanwhile (then False: take it)."""
        with self.lock:
            if self.jobs or self.stopping:
                return False
            self.awake -= 1
            self.parked.append(parking)
            return True

    def _tell_loop(self) -> bool:
        """Finished jobs wait: wake the loop (False if it is closed, the worker exiting)."""
        self.told = True
        doorbell = self.doorbell
        try:
            if doorbell >= 0:
                os.eventfd_write(doorbell, 1)  # releases the GIL: the woken loop can run at once
            else:
                self.loop.call_soon_threadsafe(self._answer_doorbell)
        except (OSError, RuntimeError):  # closed: the worker is exiting
            return False
        return True

    def _run(self, parking: _Parking) -> None:
        try:
            self._take_jobs(parking)
        finally:
            parking.close()

    def _take_jobs(self, parking: _Parking) -> None:
        jobs = self.jobs
        done = self.done
        while not self.stopping:
            try:
                job = jobs.pop(0)
            except IndexError:
                if done and not self.told and not self._tell_loop():
                    return
                if self._park(parking):
                    parking.wait()  # until a waker (or shutdown) lets it go
                continue
            result = job.run_on_thread()
            self.finished += 1
            done.append((job, result))
            del job
