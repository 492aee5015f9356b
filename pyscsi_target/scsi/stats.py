"""`IoCounters`: the monotonic I/O counters of one logical unit or one session (issue #13 item 1).

Counted once per answered command, by the transport, in one thread (the server's event loop: a
command run in a worker thread is counted when its result comes back there), so the counters are
plain ints and preallocated lists incremented with `+=`, without a lock and without a lookup by
label: `record()` costs a few attribute increments (docs/design.md "Statistics"). Readers
(`snapshot()`, from the same thread) copy them; aggregation, names and labels are the scrape's
business (server/stats.py, api/metrics.py).

What is counted, per command:
- its class by operation code (`OPCODE_KIND`): READ(6/10/12/16) are reads; WRITE(6/10/12/16),
  WRITE AND VERIFY(10/12/16) and WRITE ATOMIC(16) are writes (SBC-4 §5); everything else
  (WRITE SAME, UNMAP, COMPARE AND WRITE, INQUIRY ...) is "other";
- bytes: Data-In bytes of a read (what the command returned), Data-Out bytes of a write (what the
  initiator sent);
- a CHECK CONDITION by its sense key (SPC-4 §4.5.6: 16 keys, by index), any other non-GOOD status
  (RESERVATION CONFLICT, BUSY, ...) by nothing but `other_status`;
- its latency from its arrival (when the receive that completed its PDUs returned; one clock
  read per wake-up of the connection, shared by the commands it brought) to its answer, in a log2
  histogram of microseconds: bucket i counts durations below 2**i µs (bucket 0: under 1 µs); the
  last bucket takes everything longer (`LATENCY_BUCKETS`, docs/limits.md). It includes the time
  a command waited behind the others of its wake-up and in a worker thread.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import TYPE_CHECKING

from ..model.stats import LATENCY_BUCKETS, SENSE_KEY_NAMES, IoSnapshot

if TYPE_CHECKING:
    from .types import ScsiRequest, ScsiResult

#: command classes (index into `IoCounters.commands` / `.bytes`)
READ, WRITE, OTHER = 0, 1, 2
KIND_NAMES = ("read", "write", "other")

#: SBC-4 §5: READ(6) 08h, READ(10) 28h, READ(12) A8h, READ(16) 88h
READ_OPCODES = (0x08, 0x28, 0xA8, 0x88)
#: SBC-4 §5: WRITE(6) 0Ah, WRITE(10) 2Ah, WRITE(12) AAh, WRITE(16) 8Ah, WRITE AND VERIFY(10/12/16)
#: 2Eh/AEh/8Eh, WRITE ATOMIC(16) 9Ch
WRITE_OPCODES = (0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E, 0x9C)


def _kinds() -> tuple[int, ...]:
    table = [OTHER] * 256
    for op in READ_OPCODES:
        table[op] = READ
    for op in WRITE_OPCODES:
        table[op] = WRITE
    return tuple(table)


#: operation code -> READ / WRITE / OTHER (one tuple index per command)
OPCODE_KIND = _kinds()

_LAST = LATENCY_BUCKETS - 1


def sense_key(sense: bytes | None) -> int:
    """The sense key of fixed (response code 70h/71h, byte 2) or descriptor (72h/73h, byte 1)
    sense data (SPC-4 §4.5.2, §4.5.3); 0 if there is none."""
    if not sense or len(sense) < 3:
        return 0
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F
    return sense[2] & 0x0F


class IoCounters:
    """Monotonic counters of commands; only ever incremented, in one thread.

    An LU's counters (`LogicalUnit.stats`) are its totals: what ended sessions counted into it,
    plus the live `parts` of the sessions using it now. A session counts each command into one
    object only, its part of the LU the command went to (`attach`; or its own counters when the
    command had no LU), and folds its parts into the LUs' totals when it ends (`detach`): one
    set of increments per command instead of two (issue #13: the counters' cost on the data path).
    Readers add the parts up (`snapshot`)."""

    __slots__ = ("bytes", "commands", "errors", "latency", "latency_ns", "other_status", "parts")

    def __init__(self) -> None:
        #: commands by class, bytes by class (READ: Data-In, WRITE: Data-Out; OTHER stays 0)
        self.commands = [0, 0, 0]
        self.bytes = [0, 0, 0]
        #: CHECK CONDITIONs by sense key
        self.errors = [0] * 16
        #: other non-GOOD statuses (RESERVATION CONFLICT, BUSY, TASK SET FULL ...)
        self.other_status = 0
        #: latency histogram (not cumulative) and the sum of all latencies, nanoseconds
        self.latency = [0] * LATENCY_BUCKETS
        self.latency_ns = 0
        #: the live sessions' parts of these totals, by owner (empty but on an LU's totals)
        self.parts: dict[object, IoCounters] = {}

    def record(self, kind: int, nbytes: int, ns: int, status: int, sense: bytes | None) -> None:
        """Count one answered command: its class, bytes, status and latency in nanoseconds."""
        self.commands[kind] += 1
        self.bytes[kind] += nbytes
        self.latency_ns += ns
        b = (ns // 1000).bit_length()
        self.latency[b if b < _LAST else _LAST] += 1
        if status:
            self.count_status(status, sense)

    def count_status(self, status: int, sense: bytes | None) -> None:
        """A non-GOOD answer: by sense key when it carries sense data."""
        if sense is not None:
            self.errors[sense_key(sense)] += 1
        else:
            self.other_status += 1

    def add(self, other: IoCounters) -> None:
        """Add `other`'s own counts (not its parts) to these."""
        for mine, theirs in ((self.commands, other.commands), (self.bytes, other.bytes),
                             (self.errors, other.errors), (self.latency, other.latency)):
            for i, v in enumerate(theirs):
                mine[i] += v
        self.other_status += other.other_status
        self.latency_ns += other.latency_ns

    def attach(self, owner: object) -> IoCounters:
        """`owner`'s part of these totals (created on its first command): what it counts there
        shows in the totals at once."""
        part = self.parts.get(owner)
        if part is None:
            part = self.parts[owner] = IoCounters()
        return part

    def detach(self, owner: object) -> None:
        """`owner` ended: its part becomes part of the totals themselves."""
        part = self.parts.pop(owner, None)
        if part is not None:
            self.add(part)

    def snapshot(self) -> IoSnapshot:
        """The totals, with every live part added."""
        c = self
        if self.parts:
            c = IoCounters()
            c.add(self)
            for part in self.parts.values():
                c.add(part)
        return IoSnapshot(
            read_commands=c.commands[READ], write_commands=c.commands[WRITE],
            other_commands=c.commands[OTHER], read_bytes=c.bytes[READ],
            written_bytes=c.bytes[WRITE],
            errors={SENSE_KEY_NAMES[k]: n for k, n in enumerate(c.errors) if n},
            other_status=c.other_status, latency_buckets=tuple(c.latency),
            latency_seconds=c.latency_ns / 1e9,
        )


def account(c: IoCounters, req: ScsiRequest, res: ScsiResult, t0: int) -> None:
    """Count one answered command on `c` (the transport calls this in its one counting thread,
    with the session's part of the command's LU, `IoCounters.attach`); `t0` is
    `time.perf_counter_ns()` when it arrived. `IoCounters.record` written out."""
    ns = perf_counter_ns() - t0
    kind = OPCODE_KIND[req.cdb[0]]
    if kind == READ:
        n = len(res.data)
    elif kind == WRITE:
        data = req.data_out
        n = len(data) if data is not None else 0
    else:
        n = 0
    b = (ns // 1000).bit_length()
    c.commands[kind] += 1
    c.bytes[kind] += n
    c.latency_ns += ns
    c.latency[b if b < _LAST else _LAST] += 1
    status = res.status
    if status:
        c.count_status(status, res.sense)
