"""Bookkeeping of the commands a connection has received and not yet answered.

A `Slot` is one numbered request: a SCSI command (its `ScsiCommand` event is emitted once its
data is complete *and* every earlier CmdSN has been emitted), a TMF or Logout (emitted in CmdSN
order, answered by the server), or a request the connection answered by itself (NOP-Out, Text,
rejected PDUs), which only occupies its CmdSN. A non-immediate slot holds a place in the CmdSN
window from the moment it is delivered in order until it is answered (RFC 7143 §4.2.2.1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .events import Event
from .session import CommandWindow


@dataclass(slots=True, eq=False)
class Slot:
    itt: int
    event: Event | None = None
    ready: bool = True  # the command's data is complete
    counted: bool = False  # non-immediate: occupies the CmdSN window
    delivered: bool = False  # reached in CmdSN order
    answered: bool = False  # answered, aborted or handled internally
    raw_lun: int = 0
    edtl: int = 0
    read: bool = False
    write: bool = False


class OrderedDelivery:
    """Turns window deliveries and data completion into events, in CmdSN order."""

    def __init__(self, window: CommandWindow[Slot]) -> None:
        self.window = window
        self._queue: deque[Slot] = deque()
        self.events: deque[Event] = deque()

    def offer(self, cmdsn: int, slot: Slot) -> bool:
        """A non-immediate request: False if it was dropped (outside the window, duplicate)."""
        slot.counted = True
        ready = self.window.offer(cmdsn, slot)
        if ready is None:
            return False
        self._deliver(ready)
        return True

    def immediate(self, slot: Slot) -> None:
        """An immediate request: emitted as soon as it is ready, no window slot."""
        if slot.ready and slot.event is not None and not slot.answered:
            self.events.append(slot.event)

    def became_ready(self, slot: Slot) -> None:
        slot.ready = True
        if slot.counted:
            self._drain()
        else:
            self.immediate(slot)

    def answer(self, slot: Slot) -> None:
        """The slot was answered (or aborted): re-open its window place once delivered."""
        if slot.answered:
            return
        slot.answered = True
        if slot.counted and slot.delivered:
            self.window.answered()
        self._drain()

    def _deliver(self, slots: list[Slot]) -> None:
        if len(slots) == 1 and not self._queue:  # the common case: one command, nothing waiting
            slot = slots[0]
            slot.delivered = True
            if slot.answered:
                self.window.answered()
            elif slot.event is not None:
                if slot.ready:
                    self.events.append(slot.event)
                else:
                    self._queue.append(slot)
            return
        for slot in slots:
            slot.delivered = True
            if slot.answered:
                self.window.answered()
            elif slot.event is not None:
                self._queue.append(slot)
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue and (queue[0].ready or queue[0].answered):
            slot = queue.popleft()
            if not slot.answered and slot.event is not None:
                self.events.append(slot.event)
