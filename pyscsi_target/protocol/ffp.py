"""Full feature phase: what each received PDU does (RFC 7143 §11, target-rules §1.4).

One handler per initiator opcode. SCSI Commands and their Data-Out become `ScsiCommand` events
(CmdSN order, data complete); TMF and Logout Requests become events the server answers;
NOP-Out and Text are answered here. Rejects, with the reason the RFC or target-rules assign:
unknown or target-side opcode 0x04, data digest error 0x02, SNACK (ERL 0) and Login 0x04, an
opcode a discovery session may not use 0x05, malformed commands 0x09/0x04. A rejected request
that carried a CmdSN still consumes it, so later commands are not stuck behind a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .codec import CodecError, decode_bhs
from .dataout import CHECK_CONDITION, DataError, R2TGrant, WriteTask, aborted_command_sense
from .events import LogoutRequested, ScsiCommand, TaskManagement
from .fastpath import SCSI_COMMAND_STRUCT, decode_data_out, decode_scsi_command
from .framing import Frame
from .limits import RESERVED_TAG
from .pdu import (
    OP_DATA_OUT,
    OP_SCSI_COMMAND,
    R2T,
    REJECT_DATA_DIGEST,
    REJECT_INVALID_FIELD,
    REJECT_NOT_SUPPORTED,
    REJECT_PROTOCOL_ERROR,
    REJECT_TASK_IN_PROGRESS,
    DataOut,
    LogoutRequest,
    NopIn,
    NopOut,
    Pdu,
    ScsiCommandPdu,
    TaskMgmtRequest,
    TextRequest,
    lun_to_int,
)
from .responses import AhsError, extended_cdb
from .tasks import Slot
from .textreq import TextContext, TextExchange

if TYPE_CHECKING:
    from .connection import Connection

_NUMBERED = (NopOut, ScsiCommandPdu, TaskMgmtRequest, TextRequest, LogoutRequest)
_DISCOVERY_ALLOWED = (TextRequest, LogoutRequest)


class FullFeatureHandler:
    def __init__(self, conn: Connection) -> None:
        self.c = conn
        self.text = TextExchange()
        self._handlers: dict[type[Pdu], Callable[[Any, Frame], None]] = {
            ScsiCommandPdu: self._scsi_command, DataOut: self._data_out, NopOut: self._nop_out,
            TextRequest: self._text, LogoutRequest: self._logout, TaskMgmtRequest: self._tmf,
        }

    def frame(self, frame: Frame) -> None:
        opcode = frame.bhs[0] & 0x3F
        if opcode in (OP_SCSI_COMMAND, OP_DATA_OUT):
            self._data_path(opcode, frame)
            return
        try:
            pdu = decode_bhs(frame.bhs)
        except CodecError:
            self.c._reject(REJECT_PROTOCOL_ERROR, frame.bhs)  # unknown opcode
            return
        if not frame.data_digest_ok:
            self.reject_pdu(frame.bhs, REJECT_DATA_DIGEST)  # RFC 7143 §7.8: discard, Reject
            return
        handler = self._handlers.get(type(pdu))
        if handler is None:  # SNACK at ERL 0, Login in FFP, target opcodes
            self.reject_pdu(frame.bhs, REJECT_PROTOCOL_ERROR)
            return
        if self.c.session_type == "Discovery" and not isinstance(pdu, _DISCOVERY_ALLOWED):
            self.reject_pdu(frame.bhs, REJECT_NOT_SUPPORTED)  # RFC 7143 §4.3 (target-rules §1.4)
            return
        handler(pdu, frame)

    def _data_path(self, opcode: int, frame: Frame) -> None:
        """SCSI Command and Data-Out, with the checks of frame() in the same order, minus the
        generic decode: these two opcodes always decode and always have a handler."""
        if not frame.data_digest_ok:
            self.reject_pdu(frame.bhs, REJECT_DATA_DIGEST)
        elif self.c.session_type == "Discovery":
            self.reject_pdu(frame.bhs, REJECT_NOT_SUPPORTED)
        elif opcode == OP_SCSI_COMMAND:
            if not self._common_command(frame):
                self._scsi_command(decode_scsi_command(frame.bhs), frame)
        else:
            self._data_out(decode_data_out(frame.bhs), frame)

    def placement(self, bhs: bytes, ahs: bytes) -> memoryview | None:
        """framing.Placement: where the large data segment of this PDU should be received."""
        if self.c.session_type != "Normal":
            return None
        opcode = bhs[0] & 0x3F
        if opcode == OP_DATA_OUT:
            return self.c._writes.placement(decode_data_out(bhs))
        if opcode == OP_SCSI_COMMAND:
            return self.c._writes.command_buffer(decode_scsi_command(bhs))
        return None

    def reject_pdu(self, bhs: bytes, reason_code: int | None) -> None:
        """Reject a PDU (default reason: protocol error) and consume its CmdSN if it has one."""
        self.c._reject(REJECT_PROTOCOL_ERROR if reason_code is None else reason_code, bhs)
        try:
            pdu = decode_bhs(bhs)
        except CodecError:
            return
        self._consume(pdu)

    def _consume(self, pdu: Pdu) -> None:
        if isinstance(pdu, _NUMBERED) and not pdu.immediate:
            self.c._delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True))

    def _refuse(self, reason: int, pdu: Pdu, frame: Frame) -> None:
        self.c._reject(reason, frame.bhs)
        self._consume(pdu)

    # ---- SCSI commands and their data ----------------------------------------------------------

    def _scsi_command(self, cmd: ScsiCommandPdu, frame: Frame) -> None:
        c = self.c
        if not cmd.immediate and not c._delivery.window.in_window(cmd.cmdsn):
            c._writes.abort(cmd.itt)  # silently ignored, and so is its unsolicited data
            return
        reason = self._command_error(cmd, frame)
        if reason is not None:
            self._refuse(reason, cmd, frame)
            return
        cdb = cmd.cdb
        if frame.ahs:
            try:
                cdb = cdb + extended_cdb(frame.ahs)
            except AhsError:
                self._refuse(REJECT_PROTOCOL_ERROR, cmd, frame)
                return
        task: WriteTask | None = None
        grants: list[R2TGrant] = []
        if cmd.write:
            try:
                task, grants = c._writes.start(cmd, frame.data, frame.placed)
            except DataError as exc:
                self._refuse(exc.reason, cmd, frame)
                return
        data = frame.data if cmd.write and cmd.edtl and task is None else None
        if data is not None:
            c.written_bytes += len(data)
        event = ScsiCommand(itt=cmd.itt, lun=lun_to_int(cmd.lun), cdb=cdb, cmdsn=cmd.cmdsn, attr=cmd.attr,
                            read=cmd.read, write=cmd.write, expected_length=cmd.edtl, data=data,
                            immediate=cmd.immediate)
        slot = Slot(cmd.itt, event, ready=task is None, raw_lun=cmd.lun, edtl=cmd.edtl, read=cmd.read,
                    write=cmd.write)
        c._tasks[cmd.itt] = slot
        self._send_r2ts(grants)
        if cmd.immediate:
            c._delivery.immediate(slot)
        else:
            c._delivery.offer(cmd.cmdsn, slot)

    def _common_command(self, frame: Frame) -> bool:
        """The data path's command: non-immediate, in the CmdSN window, no AHS, a new ITT, and
        either reading (or moving no data) or writing all its data as immediate data. Handled
        here from one struct unpack, without building the PDU object, with exactly the outcome
        `_scsi_command()` has for it (and its checks); False: anything else, for that one."""
        b0, b1, _, _, lun, itt, edtl, cmdsn, _, cdb = SCSI_COMMAND_STRUCT.unpack_from(frame.bhs)
        c = self.c
        data = frame.data
        write = bool(b1 & 0x20)
        if b0 & 0x40 or frame.ahs or itt == RESERVED_TAG or itt in c._tasks:
            return False
        if write:  # WriteCollector.start() would need no task: all of it is immediate data
            limits, length = c._writes.limits, len(data)
            if not (b1 & 0x80 and length == edtl and length and limits.immediate_data
                    and length <= limits.first_burst):
                return False
        elif data or (edtl and not b1 & 0x40):
            return False
        if not c._delivery.window.in_window(cmdsn):
            return False
        if write:
            c.written_bytes += len(data)
        read = bool(b1 & 0x40)
        # positional: (itt, lun, cdb, cmdsn, attr, read, write, expected_length, data, immediate)
        event = ScsiCommand(itt, lun_to_int(lun), cdb, cmdsn, b1 & 0x07, read, write, edtl,
                            data if write else None, False)
        slot = Slot(itt, event, True, raw_lun=lun, edtl=edtl, read=read, write=write)
        c._tasks[itt] = slot
        c._delivery.offer(cmdsn, slot)
        return True

    def _command_error(self, cmd: ScsiCommandPdu, frame: Frame) -> int | None:
        if cmd.itt == RESERVED_TAG:
            return REJECT_INVALID_FIELD
        if cmd.itt in self.c._tasks:
            return REJECT_TASK_IN_PROGRESS  # ITTs must be unique among active tasks
        if cmd.edtl and not (cmd.read or cmd.write):
            return REJECT_INVALID_FIELD  # EDTL without a direction (SPDK does the same)
        if frame.data and not cmd.write:
            return REJECT_PROTOCOL_ERROR  # immediate data on a command that writes nothing
        return None

    def _data_out(self, pdu: DataOut, frame: Frame) -> None:
        c = self.c
        try:
            task, grants = c._writes.data_out(pdu, frame.data, frame.placed)
        except DataError as exc:
            c._reject(exc.reason, frame.bhs)
            if exc.fatal:
                c._close(f"Data-Out error: {exc}", error=True)
            elif exc.fails_task is not None:
                self._fail_write(pdu.itt, exc.fails_task)
            return
        self._send_r2ts(grants)
        if task is None:
            return
        slot = c._tasks.get(task.itt)
        if slot is None or not isinstance(slot.event, ScsiCommand):
            return
        slot.event.data = task.buffer
        c.written_bytes += task.received
        c._delivery.became_ready(slot)

    def _fail_write(self, itt: int, asc_ascq: tuple[int, int]) -> None:
        """End a write whose Data-Out sequence broke: CHECK CONDITION / ABORTED COMMAND; later
        Data-Out PDUs of that task are dropped quietly (the collector remembers aborted tags)."""
        c = self.c
        c._writes.abort(itt)
        if itt in c._tasks:
            c.send_scsi_response(itt, CHECK_CONDITION, sense=aborted_command_sense(*asc_ascq))

    def _send_r2ts(self, grants: list[R2TGrant]) -> None:
        c = self.c
        for g in grants:
            pdu = R2T(lun=g.lun, itt=g.itt, ttt=g.ttt, statsn=c._statsn.next, r2tsn=g.r2tsn,
                      buffer_offset=g.offset, desired_length=g.length)
            c._numbers(pdu)
            c._emit(pdu)

    # ---- requests the connection answers itself ------------------------------------------------

    def _nop_out(self, pdu: NopOut, frame: Frame) -> None:
        c = self.c
        if pdu.ttt != RESERVED_TAG:
            c._pings.discard(pdu.ttt)  # the answer to our NOP-In ping
        if pdu.itt == RESERVED_TAG:
            if not pdu.immediate:  # RFC 7143 §11.18.1: ITT 0xffffffff needs I=1
                self._refuse(REJECT_PROTOCOL_ERROR, pdu, frame)
            return
        if not pdu.immediate and not c._delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True)):
            return
        # RFC 7143 §11.19: echo the ping data (up to what the initiator accepts), advance StatSN
        reply = NopIn(lun=pdu.lun, itt=pdu.itt, ttt=RESERVED_TAG)
        c._status_pdu(reply, bytes(frame.data[:c._peer_mrdsl]))

    def _text(self, pdu: TextRequest, frame: Frame) -> None:
        c = self.c
        if not pdu.immediate and not c._delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True)):
            return
        ctx = TextContext(session_type=c.session_type or "Normal", initiator_name=c.initiator_name,
                          target_name=c.target_name, authority=c.authority, negotiator=c._negotiator,
                          max_segment=c._peer_mrdsl, new_ttt=c._writes.new_ttt)
        try:
            response, data = self.text.handle(pdu, bytes(frame.data), ctx)
        except DataError as exc:
            c._reject(exc.reason, frame.bhs)
            return
        c._status_pdu(response, data)
        c.apply_negotiated()  # a Text exchange may declare a new MaxRecvDataSegmentLength

    # ---- requests the server answers -----------------------------------------------------------

    def _logout(self, pdu: LogoutRequest, frame: Frame) -> None:
        if self.c.session_type == "Discovery" and pdu.reason != 0:
            self._refuse(REJECT_NOT_SUPPORTED, pdu, frame)  # discovery: close the session only
            return
        self._control(pdu, LogoutRequested(itt=pdu.itt, reason=pdu.reason, cid=pdu.cid))

    def _tmf(self, pdu: TaskMgmtRequest, frame: Frame) -> None:
        event = TaskManagement(itt=pdu.itt, function=pdu.function, lun=lun_to_int(pdu.lun),
                               referenced_itt=pdu.referenced_itt, ref_cmdsn=pdu.ref_cmdsn,
                               cmdsn=pdu.cmdsn)
        self._control(pdu, event)

    def _control(self, pdu: TaskMgmtRequest | LogoutRequest, event: TaskManagement | LogoutRequested) -> None:
        c = self.c
        slot = Slot(pdu.itt, event)
        if pdu.immediate:
            c._control[pdu.itt] = slot
            c._delivery.immediate(slot)
        elif c._delivery.offer(pdu.cmdsn, slot):
            c._control[pdu.itt] = slot
