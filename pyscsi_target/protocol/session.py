"""Session sequence numbers: the CmdSN window, in-order command delivery and StatSN.

RFC 7143 §4.2.2.1: non-immediate commands carry CmdSN and must be delivered to execution in
CmdSN order; ExpCmdSN is the next expected one and MaxCmdSN the last one the target will accept.
A non-immediate command outside [ExpCmdSN, MaxCmdSN], or a duplicate within it, is silently
ignored (target-rules §1.4). Immediate commands bypass ordering and the window. All comparisons
use 32-bit serial number arithmetic (RFC 1982). The window closes as commands are accepted and
re-opens as they are answered: MaxCmdSN = ExpCmdSN + depth - 1 - (accepted, unanswered).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .limits import COMMAND_WINDOW_DEPTH, SERIAL_MODULUS

T = TypeVar("T")
_MASK = SERIAL_MODULUS - 1
_HALF = SERIAL_MODULUS // 2


def serial_add(a: int, n: int) -> int:
    return (a + n) & _MASK


def serial_distance(a: int, b: int) -> int:
    """How far b is ahead of a, in 0 .. 2**32-1."""
    return (b - a) & _MASK


class CommandWindow(Generic[T]):
    """Accepts numbered items in any order within the window and releases them in CmdSN order."""

    def __init__(self, exp_cmdsn: int, depth: int = COMMAND_WINDOW_DEPTH) -> None:
        self.exp_cmdsn = exp_cmdsn & _MASK
        self.depth = depth
        self.outstanding = 0  # accepted (in order), not yet answered
        self._held: dict[int, T] = {}

    @property
    def max_cmdsn(self) -> int:
        return (self.exp_cmdsn + self.depth - 1 - self.outstanding) & _MASK

    def in_window(self, cmdsn: int) -> bool:
        """ExpCmdSN <= cmdsn <= MaxCmdSN in serial arithmetic, and not already held."""
        span = (self.depth - 1 - self.outstanding) & _MASK  # serial_distance(exp_cmdsn, max_cmdsn)
        if span >= _HALF:  # window closed (MaxCmdSN = ExpCmdSN - 1)
            return False
        return (cmdsn - self.exp_cmdsn) & _MASK <= span and cmdsn not in self._held

    def offer(self, cmdsn: int, item: T) -> list[T] | None:
        """Accept `item` numbered `cmdsn`: returns the items now deliverable in order (possibly
        empty, when it waits for a gap), or None when it must be silently dropped."""
        if cmdsn == self.exp_cmdsn and not self._held and self.outstanding < self.depth:
            # the common case, in order with nothing held: what in_window() and the loop do
            self.exp_cmdsn = (cmdsn + 1) & _MASK
            self.outstanding += 1
            return [item]
        if not self.in_window(cmdsn):
            return None
        self._held[cmdsn] = item
        ready: list[T] = []
        while self.exp_cmdsn in self._held:
            ready.append(self._held.pop(self.exp_cmdsn))
            self.exp_cmdsn = serial_add(self.exp_cmdsn, 1)
            self.outstanding += 1
        return ready

    def answered(self, count: int = 1) -> None:
        """`count` accepted commands were answered (or forgotten): the window re-opens."""
        self.outstanding = max(0, self.outstanding - count)

    @property
    def held(self) -> int:
        """Commands received ahead of a gap in CmdSN."""
        return len(self._held)


class StatusCounter:
    """StatSN: the next value to assign (RFC 7143 §4.2.2.2); advanced by status-carrying PDUs."""

    def __init__(self, start: int = 0) -> None:
        self.next = start & _MASK

    def take(self) -> int:
        value = self.next
        self.next = serial_add(value, 1)
        return value
