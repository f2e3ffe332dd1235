"""When an event-loop worker takes new connections, and taking them.

How this works: the worker watches its listeners with ``add_reader`` and accepts whatever waits, up
to ``worker_connections`` open at once. Accepting never waits on a client: a connection that sends
nothing costs its descriptor and a few hundred bytes, and is closed by the header deadline, so it
never delays anyone else.

Siblings share the listeners, and every one of them is woken for a new connection; the one that calls
``accept()`` first wins, usually the one that just ran, so connections (and the memory each costs)
would pile up on one worker while a sibling has threads to spare. Each worker therefore writes its
open-connection count on a shared ``ConnectionBoard`` while it could serve a new request at once, and
``NOT_ACCEPTING`` while it is busy: its app threads (the loop's own thread, inline) are all taken by
running requests and by connections just accepted whose first request has not come yet (those stop
counting after ``FRESH_GRACE``, so silent connections cannot hold anything up). A busy worker leaves a
new connection to a free sibling for up to ``BUSY_WAIT``, a free one holding clearly more connections
than a free sibling for ``BALANCE_WAIT``; then it takes itself whatever still waits. Without a free
sibling it takes the connection at once. A sibling stuck in a request shows ``NOT_ACCEPTING``, so it
never makes another worker wait.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pronghorn.net.listeners import Listener
from pronghorn.workers.connection_board import NOT_ACCEPTING, BoardSeat

BALANCE_WAIT = 0.002  # a free worker holding more connections leaves a new one to a free sibling this long
BUSY_WAIT = 0.02  # a busy worker leaves a new one to a free sibling this long (its request would wait here)
FRESH_GRACE = 0.1  # a just-accepted connection counts as a request about to come for this long at most
NO_DESCRIPTORS_PAUSE = 0.1  # out of descriptors: stop accepting this long (the listener stays readable)
_GONE_BEFORE_ACCEPT = (errno.ECONNABORTED, errno.EPROTO)
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def balance_slack(load: int) -> int:
    """How many more connections than a free sibling this worker may hold before leaving new ones to
    it: none while there are few (each one's request may need a thread soon), proportionally more
    once there are many (each leave costs two epoll changes)."""
    return load // 16


class FreshClaim:
    """A just-accepted connection's claim on an app thread, until its first request runs (or it closes,
    or ``FRESH_GRACE`` passes)."""

    __slots__ = ("admission",)

    def __init__(self, admission: Admission | None) -> None:
        self.admission = admission

    def settle(self) -> None:
        admission = self.admission
        if admission is not None:
            self.admission = None
            admission.fresh -= 1
            admission.update()


SETTLED = FreshClaim(None)  # what connections get without siblings: nothing to balance
Accepted = Callable[[Listener, socket.socket, Any, FreshClaim], None]


class Admission:
    """Accepts connections for one worker; ``on_accept`` sets each one up, ``released()`` counts it gone."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: Sequence[Listener],
        on_accept: Accepted,
        *,
        max_connections: int,
        threads: int,
        seat: BoardSeat | None,
        log: Any,
    ) -> None:
        self.loop = loop
        self.listeners = list(listeners)
        self.on_accept = on_accept
        self.max_connections = max_connections
        self.seat = seat  # None without siblings (or beyond the board's seats)
        self.log = log
        self.open = 0  # accepted and not yet released
        self.threads = threads
        self.in_use = 0  # app threads running a request (inline: 1 while the app runs on the loop's thread)
        self.fresh = 0  # unsettled FreshClaims
        self.fresh_until: deque[tuple[float, FreshClaim]] = deque()  # in accept order: one timer for all
        self.watching = False
        self.stopped = False
        self.deferred = False  # leaving connections to a sibling: a check is scheduled
        self.paused_until = 0.0  # out of descriptors
        self.published = NOT_ACCEPTING
        # With siblings, one connection per wake-up (they share the rest); alone, several.
        self.batch = 1 if seat is not None else 16

    # --- what the worker tells it ---

    def start(self) -> None:
        for listener in self.listeners:
            listener.socket.setblocking(False)
        self.update()

    def released(self) -> None:
        """A connection ended (closed, or failed to set up)."""
        self.open -= 1
        if not self.watching or self.seat is not None:
            self.update()

    def set_in_use(self, in_use: int) -> None:
        """App threads running a request now (inline: 1 while the app runs on the loop's thread)."""
        self.in_use = in_use
        if self.seat is not None:
            self._publish()

    @property
    def busy(self) -> bool:
        return self.in_use + self.fresh >= self.threads

    def stop(self) -> None:
        self.stopped = True
        self.update()

    def take_backlog(self) -> None:
        """A graceful stop: take the connections already queued, to answer them instead of resetting them."""
        for listener in self.listeners:
            queued = listener.queued_connections()
            self._accept(listener, queued if queued is not None else 64)

    # --- watching ---

    def update(self) -> None:
        want = (
            not self.stopped
            and not self.deferred
            and self.open < self.max_connections
            and self.loop.time() >= self.paused_until
        )
        if want != self.watching:
            self.watching = want
            for listener in self.listeners:
                if want:
                    self.loop.add_reader(listener.fileno(), self._readable, listener)
                else:
                    self.loop.remove_reader(listener.fileno())
        if self.seat is not None:
            self._publish()

    def _publish(self) -> None:
        assert self.seat is not None
        # Leaving connections to a sibling for a moment (not watching) is still free to serve: siblings
        # must see it so, or they would each take the connection the other left them.
        free = not self.stopped and not self.busy and self.open < self.max_connections
        load = self.open if free else NOT_ACCEPTING
        if load != self.published:
            self.published = load
            self.seat.publish(load)

    def _readable(self, listener: Listener) -> None:
        wait = self._leave_to_sibling() if self.seat is not None else 0.0
        if wait:
            self.deferred = True
            self.update()
            self.loop.call_later(wait, self._take_leftovers)
            return
        self._accept(listener, self.batch)

    def _leave_to_sibling(self) -> float:
        """How long to leave a waiting connection to a free sibling (0: take it now)."""
        assert self.seat is not None
        busy = self.busy
        if not busy and self.open == 0:  # nobody can hold fewer: skip reading the board
            return 0.0
        fewest = self.seat.fewest_elsewhere()
        if fewest is None:
            return 0.0
        if busy:
            return BUSY_WAIT
        return BALANCE_WAIT if self.open > fewest + balance_slack(self.open) else 0.0

    def _claim(self) -> FreshClaim:
        claim = FreshClaim(self)
        self.fresh += 1
        self.fresh_until.append((self.loop.time() + FRESH_GRACE, claim))
        if len(self.fresh_until) == 1:  # else the timer for an earlier one is pending
            self.loop.call_later(FRESH_GRACE, self._fresh_expired)
        return claim

    def _fresh_expired(self) -> None:
        now = self.loop.time()
        waiting = self.fresh_until
        while waiting and waiting[0][0] <= now:
            waiting.popleft()[1].settle()
        if waiting:
            self.loop.call_later(waiting[0][0] - now, self._fresh_expired)

    def _take_leftovers(self) -> None:
        """After leaving connections to siblings for a moment: take what none of them took."""
        self.deferred = False
        if self.stopped:
            return
        for listener in self.listeners:
            queued = listener.queued_connections()
            if queued != 0:
                # Leave some for siblings checking too; without a count (unix sockets) take one.
                self._accept(listener, 1 if queued is None else max(1, queued // 2))
        self.update()

    def _accept(self, listener: Listener, limit: int) -> None:
        for _ in range(limit):
            if self.open >= self.max_connections:
                break
            try:
                sock, addr = listener.socket.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _GONE_BEFORE_ACCEPT:
                    continue
                if exc.errno in _NO_DESCRIPTORS:
                    self.log.error("Out of file descriptors accepting a connection: %s", exc)
                    self.paused_until = self.loop.time() + NO_DESCRIPTORS_PAUSE
                    self.loop.call_later(NO_DESCRIPTORS_PAUSE, self.update)
                    break
                raise
            sock.setblocking(False)
            if not listener.is_unix:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.open += 1
            self.on_accept(listener, sock, addr, self._claim() if self.seat is not None else SETTLED)
        self.update()
