"""Write data collection: immediate data, unsolicited Data-Out, R2T generation (RFC 7143 §4.2.5,
§11.7, §11.8) into one buffer per command.

A write command's data arrives as immediate data in the command PDU (ImmediateData=Yes), then
unsolicited Data-Out (TTT 0xffffffff, InitialR2T=No, when the command's F bit is 0) up to
FirstBurstLength, then Data-Out answering our R2Ts of at most MaxBurstLength each, at most
MaxOutstandingR2T at a time. DataPDUInOrder/DataSequenceInOrder are Yes (we negotiate it), so
each sequence must arrive at increasing offsets. Errors carry their answer (target-rules §1.4):
an unknown TTT or ITT is a Reject 0x09 (the connection stays); a DataSN gap, data outside the
R2T or beyond FirstBurstLength is a Reject 0x04 followed by closing the connection: at
ErrorRecoveryLevel 0 the lost data cannot be asked for again, and dropping the connection fails
the command at once instead of leaving it to the initiator's timeout (RFC 7143 §7.1.4.1).

Direct placement (framing.py): before a large data segment has arrived, `command_buffer()` and
`placement()` say where it will go when it is exactly what is expected next (a write command's
immediate data: the start of a new command buffer; a Data-Out: its offset in the task's buffer).
The framing layer receives it there, and `start()`/`data_out()` are then told `placed=True` and
only check and account for it. Anything unexpected gets no destination and takes the normal path
with its normal error.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .limits import ABORTED_TAGS_REMEMBERED, RESERVED_TAG
from .pdu import REJECT_INVALID_FIELD, REJECT_PROTOCOL_ERROR, DataOut, ScsiCommandPdu

Buffer = bytes | bytearray | memoryview


class DataError(Exception):
    """A PDU to reject with `reason` (RFC 7143 §11.17.1); `fatal` closes the connection after.

    `fails_task`: the ASC/ASCQ with which the write command the PDU belongs to ends, as CHECK
    CONDITION / ABORTED COMMAND, while the connection stays up. At ErrorRecoveryLevel 0 a Data-Out
    sequence error cannot be recovered (RFC 7143 §7.1.4: "command failure or connection drop");
    failing only that command keeps the initiator's other commands and its session alive
    (libiscsi iSCSIDataSnInvalid checks that the write fails and the session goes on)."""

    def __init__(self, reason: int, message: str, *, fatal: bool = False,
                 fails_task: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.fatal = fatal
        self.fails_task = fails_task


#: SPC-4 ASC/ASCQ for failed Data-Out sequences (sense key ABORTED COMMAND)
DATA_PHASE_ERROR = (0x4B, 0x00)
TOO_MUCH_WRITE_DATA = (0x4B, 0x02)
DATA_OFFSET_ERROR = (0x4B, 0x05)
#: RFC 7143 §11.4.7.2 iSCSI sense: unexpected unsolicited data
UNEXPECTED_UNSOLICITED_DATA = (0x0C, 0x0C)
#: SAM-5 status CHECK CONDITION; sense key ABORTED COMMAND (SPC-4 §4.5.6)
CHECK_CONDITION = 0x02
SENSE_KEY_ABORTED_COMMAND = 0x0B


def aborted_command_sense(asc: int, ascq: int) -> bytes:
    """Fixed-format sense data (SPC-4 §4.5.3): current error, ABORTED COMMAND, ASC/ASCQ."""
    return bytes([0x70, 0, SENSE_KEY_ABORTED_COMMAND, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


@dataclass(slots=True)
class BurstLimits:
    """The negotiated values that shape write transfers (RFC 7143 §13.10-§13.17)."""

    immediate_data: bool = True
    initial_r2t: bool = True
    first_burst: int = 65536
    max_burst: int = 262144
    max_outstanding_r2t: int = 1


@dataclass(slots=True)
class R2TGrant:
    """One R2T we sent and the Data-Out sequence answering it."""

    itt: int
    lun: int
    ttt: int
    r2tsn: int
    offset: int
    length: int
    next_offset: int = 0
    next_datasn: int = 0


@dataclass(slots=True)
class WriteTask:
    itt: int
    lun: int
    edtl: int
    buffer: bytearray
    received: int = 0
    unsolicited_open: bool = False
    unsolicited_end: int = 0
    unsolicited_datasn: int = 0
    next_r2t_offset: int = 0
    next_r2tsn: int = 0
    grants: dict[int, R2TGrant] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.received >= self.edtl and not self.unsolicited_open and not self.grants


class WriteCollector:
    """The write commands of one connection still waiting for data."""

    def __init__(self) -> None:
        self.limits = BurstLimits()
        self._tasks: dict[int, WriteTask] = {}
        self._grants: dict[int, WriteTask] = {}
        self._next_ttt = 1
        self._aborted: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, itt: int) -> bool:
        return itt in self._tasks

    def command_buffer(self, cmd: ScsiCommandPdu) -> memoryview | None:
        """Where a write command's immediate data should land before it has arrived: the first
        DataSegmentLength bytes of a new command buffer, if `start()` can accept it."""
        dsl, limits = cmd.data_segment_length, self.limits
        if (not cmd.write or not limits.immediate_data or dsl > cmd.edtl or dsl > limits.first_burst
                or cmd.itt in self._tasks):
            return None
        return memoryview(bytearray(cmd.edtl))[:dsl]

    def placement(self, pdu: DataOut) -> memoryview | None:
        """Where a Data-Out's data should land before it has arrived: its place in the task
        buffer when it is the next expected PDU of its sequence, else None (normal path)."""
        offset, end = pdu.buffer_offset, pdu.buffer_offset + pdu.data_segment_length
        if pdu.ttt == RESERVED_TAG:
            task = self._tasks.get(pdu.itt)
            if (task is None or not task.unsolicited_open or pdu.datasn != task.unsolicited_datasn
                    or offset != task.received or end > task.unsolicited_end):
                return None
        else:
            task = self._grants.get(pdu.ttt)
            if task is None or task.itt != pdu.itt:
                return None
            grant = task.grants[pdu.ttt]
            if (pdu.datasn != grant.next_datasn or offset != grant.next_offset
                    or end > grant.offset + grant.length):
                return None
        return memoryview(task.buffer)[offset:end]

    def start(self, cmd: ScsiCommandPdu, immediate: Buffer,
              placed: bool = False) -> tuple[WriteTask | None, list[R2TGrant]]:
        """Check a write command and its immediate data. Returns the task (None when it needs
        no more data: then the caller uses `immediate` directly) and the R2Ts to send.
        `placed`: `immediate` is the start of the buffer `command_buffer()` gave."""
        limits = self.limits
        imm = len(immediate)
        unsolicited = limits.first_burst if cmd.edtl > limits.first_burst else cmd.edtl
        if imm and not limits.immediate_data:
            raise DataError(REJECT_PROTOCOL_ERROR, "immediate data with ImmediateData=No")
        if imm > cmd.edtl or imm > limits.first_burst:
            raise DataError(REJECT_PROTOCOL_ERROR, "immediate data beyond EDTL or FirstBurstLength")
        more_unsolicited = not cmd.final
        if more_unsolicited and (limits.initial_r2t or imm >= unsolicited):
            raise DataError(REJECT_PROTOCOL_ERROR, "unsolicited Data-Out not allowed")
        if imm == cmd.edtl and not more_unsolicited:
            return None, []
        if placed:
            assert isinstance(immediate, memoryview) and isinstance(immediate.obj, bytearray)
            buffer = immediate.obj
        else:
            buffer = bytearray(cmd.edtl)
            buffer[:imm] = immediate
        task = WriteTask(itt=cmd.itt, lun=cmd.lun, edtl=cmd.edtl, buffer=buffer, received=imm,
                         unsolicited_open=more_unsolicited, unsolicited_end=unsolicited,
                         next_r2t_offset=imm)
        self._tasks[cmd.itt] = task
        return task, ([] if more_unsolicited else self._grant(task))

    def data_out(self, pdu: DataOut, data: Buffer,
                 placed: bool = False) -> tuple[WriteTask | None, list[R2TGrant]]:
        """Place one Data-Out. Returns (the task if now complete, new R2Ts to send). Data for a
        recently aborted task is dropped silently (RFC 7143 §11.5.1). `placed`: the data is
        already where `placement()` said."""
        if pdu.ttt == RESERVED_TAG:
            task = self._tasks.get(pdu.itt)
            if task is None:
                return self._unknown(pdu.itt, "unsolicited Data-Out for an unknown ITT")
            self._unsolicited(task, pdu, data, placed)
            grants = [] if task.unsolicited_open else self._grant(task)
        else:
            task = self._grants.get(pdu.ttt)
            if task is None:
                return self._unknown(pdu.itt, "Data-Out with an unknown TTT")
            if task.itt != pdu.itt:
                raise DataError(REJECT_INVALID_FIELD, "Data-Out ITT does not match its TTT")
            grants = self._solicited(task, pdu, data, placed)
        if task.complete:
            del self._tasks[task.itt]
            return task, grants
        return None, grants

    def abort(self, itt: int) -> bool:
        task = self._tasks.pop(itt, None)
        self._aborted[itt] = None
        while len(self._aborted) > ABORTED_TAGS_REMEMBERED:
            self._aborted.popitem(last=False)
        if task is None:
            return False
        for ttt in task.grants:
            self._grants.pop(ttt, None)
        return True

    def clear(self) -> None:
        for itt in list(self._tasks):
            self.abort(itt)

    # ---- internals -----------------------------------------------------------------------------

    def _unknown(self, itt: int, message: str) -> tuple[None, list[R2TGrant]]:
        if itt in self._aborted:
            return None, []
        raise DataError(REJECT_INVALID_FIELD, message)

    def _unsolicited(self, task: WriteTask, pdu: DataOut, data: Buffer, placed: bool) -> None:
        if not task.unsolicited_open:
            raise DataError(REJECT_PROTOCOL_ERROR, "unsolicited Data-Out not expected",
                            fails_task=UNEXPECTED_UNSOLICITED_DATA)
        if pdu.datasn != task.unsolicited_datasn:
            raise DataError(REJECT_PROTOCOL_ERROR, "DataSN out of order", fails_task=DATA_PHASE_ERROR)
        end = pdu.buffer_offset + len(data)
        if pdu.buffer_offset != task.received or end > task.unsolicited_end:
            raise DataError(REJECT_PROTOCOL_ERROR, "unsolicited data outside FirstBurstLength",
                            fails_task=TOO_MUCH_WRITE_DATA if pdu.buffer_offset == task.received
                            else DATA_OFFSET_ERROR)
        if not placed:
            task.buffer[pdu.buffer_offset:end] = data
        task.received = end
        task.unsolicited_datasn += 1
        if pdu.final:
            task.unsolicited_open = False
            task.next_r2t_offset = end

    def _solicited(self, task: WriteTask, pdu: DataOut, data: Buffer, placed: bool) -> list[R2TGrant]:
        grant = task.grants[pdu.ttt]
        if pdu.datasn != grant.next_datasn:
            raise DataError(REJECT_PROTOCOL_ERROR, "DataSN out of order", fails_task=DATA_PHASE_ERROR)
        end = pdu.buffer_offset + len(data)
        if pdu.buffer_offset != grant.next_offset or end > grant.offset + grant.length:
            raise DataError(REJECT_PROTOCOL_ERROR, "Data-Out outside its R2T",
                            fails_task=TOO_MUCH_WRITE_DATA if pdu.buffer_offset == grant.next_offset
                            else DATA_OFFSET_ERROR)
        if not placed:
            task.buffer[pdu.buffer_offset:end] = data
        task.received += len(data)
        grant.next_offset = end
        grant.next_datasn += 1
        if end == grant.offset + grant.length:
            del task.grants[pdu.ttt]
            del self._grants[pdu.ttt]
            return self._grant(task)
        if pdu.final:
            raise DataError(REJECT_PROTOCOL_ERROR, "Data-Out sequence ended early",
                            fails_task=DATA_PHASE_ERROR)
        return []

    def _grant(self, task: WriteTask) -> list[R2TGrant]:
        """New R2Ts up to MaxOutstandingR2T, each at most MaxBurstLength (RFC 7143 §11.8)."""
        out: list[R2TGrant] = []
        limits = self.limits
        while len(task.grants) < limits.max_outstanding_r2t and task.next_r2t_offset < task.edtl:
            length = min(limits.max_burst, task.edtl - task.next_r2t_offset)
            grant = R2TGrant(itt=task.itt, lun=task.lun, ttt=self.new_ttt(), r2tsn=task.next_r2tsn,
                             offset=task.next_r2t_offset, length=length,
                             next_offset=task.next_r2t_offset)
            task.next_r2tsn += 1
            task.next_r2t_offset += length
            task.grants[grant.ttt] = grant
            self._grants[grant.ttt] = task
            out.append(grant)
        return out

    def new_ttt(self) -> int:
        ttt = self._next_ttt
        self._next_ttt = ttt + 1 if ttt + 1 < RESERVED_TAG else 1
        return ttt
