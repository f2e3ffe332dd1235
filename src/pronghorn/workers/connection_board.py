"""Open connections per worker, in memory the master shares with its workers.

Every worker watching a shared listener is woken for each new connection, and the one that calls
``accept()`` first wins: usually the one that just ran, so keep-alive connections pile up on one
worker (and with them its memory) while a sibling holds few. With this board a worker that already
holds clearly more connections than an accepting sibling leaves the connection to that sibling.

How this works: the master maps one small anonymous shared page before it forks any worker and gives
each worker a seat (``ConnectionBoard.seat_for``), freed again when the worker is reaped
(``release``). Cell 0 holds the number of seats in use; cell ``n`` holds worker n's open connections
while it watches the listeners, or ``NOT_ACCEPTING``. Each cell has one writer, and a stale read only
makes one accept decision a little less fair, so no lock is needed.
"""

from __future__ import annotations

import mmap

NOT_ACCEPTING = -1
DEFAULT_SEATS = 256  # workers beyond this many get no seat and simply accept as before


class BoardSeat:
    """A worker's view of the board: its own cell, and its siblings' counts."""

    __slots__ = ("_cells", "index")

    def __init__(self, cells: memoryview, index: int) -> None:
        self._cells = cells
        self.index = index

    def publish(self, connections: int) -> None:
        """``connections`` open while watching the listeners; ``NOT_ACCEPTING`` otherwise."""
        self._cells[self.index] = connections

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections any other accepting worker holds; None if no other one accepts."""
        cells = self._cells
        fewest: int | None = None
        for index in range(1, cells[0] + 1):
            count = cells[index]
            if count >= 0 and index != self.index and (fewest is None or count < fewest):
                fewest = count
        return fewest


class ConnectionBoard:
    """Made by the master; each worker writes one cell and reads the others."""

    def __init__(self, seats: int = DEFAULT_SEATS) -> None:
        # An anonymous MAP_SHARED mapping (mmap's default flags): forked workers see the same page.
        self._memory = mmap.mmap(-1, 4 * (seats + 1))
        self._cells = memoryview(self._memory).cast("i")
        self._seats = seats
        self._taken: set[int] = set()

    def seat_for(self) -> BoardSeat | None:
        """A free seat for a worker about to be forked (None when all are taken)."""
        free = next((i for i in range(1, self._seats + 1) if i not in self._taken), None)
        if free is None:
            return None
        self._taken.add(free)
        self._cells[free] = NOT_ACCEPTING
        self._cells[0] = max(self._taken)
        return BoardSeat(self._cells, free)

    def release(self, seat: BoardSeat | None) -> None:
        """The worker holding ``seat`` is gone: its cell no longer counts."""
        if seat is None or seat.index not in self._taken:
            return
        self._cells[seat.index] = NOT_ACCEPTING
        self._taken.discard(seat.index)
        self._cells[0] = max(self._taken, default=0)
