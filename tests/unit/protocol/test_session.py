"""CmdSN window: serial arithmetic, in-order release, silent drops, re-opening on answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyscsi_target.protocol.session import CommandWindow, StatusCounter, serial_add, serial_distance


def test_in_order_release_and_window_accounting() -> None:
    w: CommandWindow[str] = CommandWindow(10, depth=4)
    assert w.max_cmdsn == 13
    assert w.offer(10, "a") == ["a"]
    assert (w.exp_cmdsn, w.max_cmdsn) == (11, 13)  # MaxCmdSN holds while "a" is unanswered
    assert w.offer(12, "c") == []  # waits for 11
    assert w.held == 1
    assert w.offer(11, "b") == ["b", "c"]
    assert (w.exp_cmdsn, w.max_cmdsn) == (13, 13)
    w.answered(3)
    assert w.max_cmdsn == 16


def test_out_of_window_and_duplicates_are_dropped() -> None:
    w: CommandWindow[str] = CommandWindow(5, depth=2)
    assert w.offer(4, "old") is None  # below ExpCmdSN
    assert w.offer(7, "far") is None  # above MaxCmdSN
    assert w.offer(6, "x") == []
    assert w.offer(6, "dup") is None  # duplicate inside the window
    assert w.offer(5, "y") == ["y", "x"]
    assert w.offer(7, "closed") is None  # window is full until something is answered
    w.answered()
    assert w.offer(7, "z") == ["z"]


def test_window_wraps_around_2_32() -> None:
    w: CommandWindow[int] = CommandWindow(0xFFFFFFFE, depth=4)
    assert w.max_cmdsn == 1
    assert w.offer(0, 0) == []
    assert w.offer(0xFFFFFFFF, 1) == []
    assert w.offer(0xFFFFFFFE, 2) == [2, 1, 0]
    assert w.exp_cmdsn == 1


@given(st.integers(0, 2**32 - 1), st.permutations(range(8)))
def test_any_arrival_order_is_released_in_cmdsn_order(start: int, order: list[int]) -> None:
    w: CommandWindow[int] = CommandWindow(start, depth=8)
    released: list[int] = []
    for i in order:
        out = w.offer(serial_add(start, i), i)
        assert out is not None
        released += out
    assert released == list(range(8))
    assert w.offer(serial_add(start, 8), 8) is None  # all 8 slots busy: window closed


def test_serial_helpers_and_statsn() -> None:
    assert serial_add(0xFFFFFFFF, 1) == 0
    assert serial_distance(0xFFFFFFFF, 1) == 2
    counter = StatusCounter(0xFFFFFFFF)
    assert (counter.take(), counter.take(), counter.next) == (0xFFFFFFFF, 0, 1)
