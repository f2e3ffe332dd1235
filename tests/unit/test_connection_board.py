"""The connection board: seats handed out and freed by the master, counts read across a fork."""

from __future__ import annotations

import os

from pronghorn.workers.connection_board import NOT_ACCEPTING, ConnectionBoard


def test_a_seat_sees_the_fewest_connections_of_the_other_accepting_seats() -> None:
    board = ConnectionBoard(seats=4)
    a, b, c = board.seat_for(), board.seat_for(), board.seat_for()
    assert a is not None and b is not None and c is not None
    assert a.fewest_elsewhere() is None  # nobody publishes yet: a new seat is not accepting
    a.publish(40)
    b.publish(12)
    c.publish(30)
    assert a.fewest_elsewhere() == 12
    assert b.fewest_elsewhere() == 30  # its own count is not a sibling's
    b.publish(NOT_ACCEPTING)
    assert a.fewest_elsewhere() == 30
    c.publish(NOT_ACCEPTING)
    assert a.fewest_elsewhere() is None


def test_a_released_seat_stops_counting_and_is_given_again() -> None:
    board = ConnectionBoard(seats=2)
    a, b = board.seat_for(), board.seat_for()
    assert a is not None and b is not None
    assert board.seat_for() is None  # full: such a worker just accepts as before
    b.publish(3)
    board.release(b)
    board.release(b)  # twice (reaped, then killed again) changes nothing
    assert a.fewest_elsewhere() is None
    again = board.seat_for()
    assert again is not None and again.index == b.index
    assert a.fewest_elsewhere() is None  # a new worker starts as not accepting, not with the old count


def test_only_seats_in_use_are_read() -> None:
    board = ConnectionBoard(seats=8)
    seats = [board.seat_for() for _ in range(3)]
    assert all(seat is not None for seat in seats)
    seats[2].publish(5)  # type: ignore[union-attr]
    board.release(seats[2])
    seats[1].publish(7)  # type: ignore[union-attr]
    assert seats[0].fewest_elsewhere() == 7  # type: ignore[union-attr]


def test_counts_published_in_a_forked_child_are_seen_by_the_parent() -> None:
    board = ConnectionBoard(seats=2)
    parent, child = board.seat_for(), board.seat_for()
    assert parent is not None and child is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        child.publish(123)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.fewest_elsewhere() == 123
