"""What the transport hands the SCSI core and what it gets back (SAM-5 §5: execute command).

The iSCSI layer builds a `ScsiRequest` once all of a command's Data-Out has arrived, calls
`scsi.execute(request, luns)` and turns the `ScsiResult` into Data-In / SCSI Response PDUs. What a
command asks of its own transport beyond its status is a typed field of the result (`final`,
`preempted`, `pending`; None on every other command, so the hot path allocates nothing for them); what the
core asks of the fabric as a whole goes through the LU's host (scsi/host.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview

# SAM status codes (SAM-5 §5.3)
GOOD = 0x00
CHECK_CONDITION = 0x02
CONDITION_MET = 0x04
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
ACA_ACTIVE = 0x30
TASK_ABORTED = 0x40


@dataclass(frozen=True, slots=True)
class Nexus:
    """An I_T nexus: SCSI initiator port and target port names (RFC 7143 §4.4.1 / SPC-4 7.6.4.4).

    initiator_port: "<initiator name>,i,0x<ISID hex>"; target_port: "<target name>,t,0x<TPGT hex>".
    """

    initiator_port: str
    target_port: str
    relative_port_id: int = 1


@dataclass(slots=True)
class Pending:
    """A command whose I/O completes on the storage's own threads (a backend that is
    `asynchronous`: Ceph RBD's aio, issue #15). The transport calls `start(done)` once; the
    backend calls `done(outcome)` once, from any thread; the transport then calls
    `finish(outcome)` in its own thread (never the storage's: it may take the LU's locks and
    block briefly) and answers with the `ScsiResult` it returns, which is never an exception."""

    start: Callable[[Callable[[object], None]], None]
    finish: Callable[[object], ScsiResult]


@dataclass(slots=True)
class ScsiRequest:
    cdb: bytes
    lun: int
    nexus: Nexus
    #: the write data the initiator sent (ExpectedDataTransferLength bytes, or fewer), or None
    data_out: Buffer | None = None
    #: the transport's tag for the command (iSCSI ITT), to answer it with
    task_tag: int = 0


@dataclass(slots=True)
class ScsiResult:
    status: int = GOOD
    #: Data-In; may be longer than the initiator's ExpectedDataTransferLength (the transport
    #: truncates it and reports the overflow residual)
    data: Buffer = b""
    #: sense data (fixed or descriptor format), only with CHECK_CONDITION
    sense: bytes | None = None
    #: bytes the CDB asked to transfer in its data direction, when that differs from len(data)
    #: (used by the transport to compute residuals for writes); None = len(data)
    transfer_length: int | None = None
    #: not the command's status yet (SANITIZE with IMMED=0, SBC-4 §5.30.1): blocking, returns the
    #: status to send once the background operation the command started has ended; the
    #: transport sends nothing for the command until then
    final: Callable[[], ScsiResult] | None = None
    #: PREEMPT AND ABORT (SPC-4 §5.13.11.2.5): (initiator port, target port or None for every
    #: port) of each preempted registration; the transport aborts their I_T nexuses' tasks on
    #: this LUN before it sends this command's status
    preempted: tuple[tuple[str, str | None], ...] | None = None
    #: not the command's status yet: its I/O was started on an asynchronous backend and the
    #: status comes from `pending.finish` once it completes (only with execute(nowait=True))
    pending: Pending | None = None
