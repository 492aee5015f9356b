"""Full feature phase: what each received PDU does (RFC 7143 §11, target-rules §1.4).

One handler per initiator opcode. SCSI Commands and their Data-Out become `ScsiCommand` events
(CmdSN order, data complete); TMF and Logout Requests become events the server answers;
NOP-Out and Text are answered here. Rejects, with the reason the RFC or target-rules assign:
unknown or target-side opcode 0x04, data digest error 0x02, SNACK (ERL 0) and Login 0x04, an
opcode a discovery session may not use 0x05, malformed commands 0x09/0x04. A rejected request
that carried a CmdSN still consumes it, so later commands are not stuck behind a gap.

The handler acts on the `ConnectionState` its `Connection` owns (state.py) and on nothing else;
the one thing it asks of the connection is `respond`, its `send_scsi_response` (a write whose
Data-Out sequence broke is answered at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..model import SessionType
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
from .state import ConnectionState
from .tasks import Slot
from .textreq import TextContext, TextExchange

_NUMBERED = (NopOut, ScsiCommandPdu, TaskMgmtRequest, TextRequest, LogoutRequest)
_DISCOVERY_ALLOWED = (TextRequest, LogoutRequest)
#: the members bound once: an enum attribute lookup costs ~0.1 us on Python 3.11, `is` on a global
#: a tenth of that, and `_data_path()` tests the session type for every command
_DISCOVERY = SessionType.DISCOVERY
_NORMAL = SessionType.NORMAL


class Respond(Protocol):
    """`Connection.send_scsi_response`."""

    def __call__(self, itt: int, status: int, data: bytes = b"", sense: bytes | None = None) -> None: ...


class FullFeatureHandler:
    def __init__(self, state: ConnectionState, respond: Respond) -> None:
        self.state = state
        self.respond = respond
        self.text = TextExchange()
        #: (BHS, decoded PDU) of the last PDU whose data `placement()` gave a destination: the
        #: Frame that then carries it has this very BHS object (framing.py keeps it) and is not
        #: decoded a second time. The reference keeps that object alive, so no other BHS can be it.
        self._placed_data_out: tuple[bytes, DataOut] | None = None
        self._placed_command: tuple[bytes, ScsiCommandPdu] | None = None
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
            self.state.reject(REJECT_PROTOCOL_ERROR, frame.bhs)  # unknown opcode
            return
        if not frame.data_digest_ok:
            self.reject_pdu(frame.bhs, REJECT_DATA_DIGEST)  # RFC 7143 §7.8: discard, Reject
            return
        handler = self._handlers.get(type(pdu))
        if handler is None:  # SNACK at ERL 0, Login in FFP, target opcodes
            self.reject_pdu(frame.bhs, REJECT_PROTOCOL_ERROR)
            return
        if self.state.session_type is _DISCOVERY and not isinstance(pdu, _DISCOVERY_ALLOWED):
            self.reject_pdu(frame.bhs, REJECT_NOT_SUPPORTED)  # RFC 7143 §4.3 (target-rules §1.4)
            return
        handler(pdu, frame)

    def _data_path(self, opcode: int, frame: Frame) -> None:
        """SCSI Command and Data-Out, with the checks of frame() in the same order, minus the
        generic decode: these two opcodes always decode and always have a handler."""
        if not frame.data_digest_ok:
            self.reject_pdu(frame.bhs, REJECT_DATA_DIGEST)
        elif self.state.session_type is _DISCOVERY:
            self.reject_pdu(frame.bhs, REJECT_NOT_SUPPORTED)
        elif opcode == OP_SCSI_COMMAND:
            if not self._common_command(frame):
                placed_cmd = self._placed_command
                if placed_cmd is not None and placed_cmd[0] is frame.bhs:
                    self._placed_command = None
                    self._scsi_command(placed_cmd[1], frame)
                else:
                    self._scsi_command(decode_scsi_command(frame.bhs), frame)
        else:
            placed = self._placed_data_out
            if placed is not None and placed[0] is frame.bhs:
                self._placed_data_out = None
                self._data_out(placed[1], frame)
            else:
                self._data_out(decode_data_out(frame.bhs), frame)

    def placement(self, bhs: bytes, ahs: bytes) -> memoryview | None:
        """framing.Placement: where the large data segment of this PDU should be received."""
        if self.state.session_type is not _NORMAL:
            return None
        opcode = bhs[0] & 0x3F
        if opcode == OP_DATA_OUT:
            pdu = decode_data_out(bhs)
            self._placed_data_out = (bhs, pdu)
            return self.state.writes.placement(pdu)
        if opcode == OP_SCSI_COMMAND:
            cmd = decode_scsi_command(bhs)
            self._placed_command = (bhs, cmd)
            return self.state.writes.command_buffer(cmd)
        return None

    def reject_pdu(self, bhs: bytes, reason_code: int | None) -> None:
        """Reject a PDU (default reason: protocol error) and consume its CmdSN if it has one."""
        if reason_code == REJECT_DATA_DIGEST:
            self.state.digest_errors += 1
        self.state.reject(REJECT_PROTOCOL_ERROR if reason_code is None else reason_code, bhs)
        try:
            pdu = decode_bhs(bhs)
        except CodecError:
            return
        self._consume(pdu)

    def _consume(self, pdu: Pdu) -> None:
        if isinstance(pdu, _NUMBERED) and not pdu.immediate:
            self.state.delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True))

    def _refuse(self, reason: int, pdu: Pdu, frame: Frame) -> None:
        self.state.reject(reason, frame.bhs)
        self._consume(pdu)

    # ---- SCSI commands and their data ----------------------------------------------------------

    def _scsi_command(self, cmd: ScsiCommandPdu, frame: Frame) -> None:
        s = self.state
        if not cmd.immediate and not s.delivery.window.in_window(cmd.cmdsn):
            s.writes.abort(cmd.itt)  # silently ignored, and so is its unsolicited data
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
                task, grants = s.writes.start(cmd, frame.data, frame.placed)
            except DataError as exc:
                self._refuse(exc.reason, cmd, frame)
                return
        data = frame.data if cmd.write and cmd.edtl and task is None else None
        if data is not None:
            s.written_bytes += len(data)
        event = ScsiCommand(itt=cmd.itt, lun=lun_to_int(cmd.lun), cdb=cdb, cmdsn=cmd.cmdsn, attr=cmd.attr,
                            read=cmd.read, write=cmd.write, expected_length=cmd.edtl, data=data,
                            immediate=cmd.immediate)
        slot = Slot(cmd.itt, event, ready=task is None, raw_lun=cmd.lun, edtl=cmd.edtl, read=cmd.read,
                    write=cmd.write)
        s.tasks[cmd.itt] = slot
        self._send_r2ts(grants)
        if cmd.immediate:
            s.delivery.immediate(slot)
        else:
            s.delivery.offer(cmd.cmdsn, slot)

    def _common_command(self, frame: Frame) -> bool:
        """The data path's command: non-immediate, in the CmdSN window, no AHS, a new ITT, and
        either reading (or moving no data) or writing all its data as immediate data. Handled
        here from one struct unpack, without building the PDU object, with exactly the outcome
        `_scsi_command()` has for it (and its checks); False: anything else, for that one."""
        b0, b1, _, _, lun, itt, edtl, cmdsn, _, cdb = SCSI_COMMAND_STRUCT.unpack_from(frame.bhs)
        s = self.state
        data = frame.data
        write = bool(b1 & 0x20)
        if b0 & 0x40 or frame.ahs or itt == RESERVED_TAG or itt in s.tasks:
            return False
        if write:  # WriteCollector.start() would need no task: all of it is immediate data
            limits, length = s.writes.limits, len(data)
            if not (b1 & 0x80 and length == edtl and length and limits.immediate_data
                    and length <= limits.first_burst):
                return False
        elif data or (edtl and not b1 & 0x40):
            return False
        if not s.delivery.window.in_window(cmdsn):
            return False
        if write:
            s.written_bytes += len(data)
        read = bool(b1 & 0x40)
        # positional: (itt, lun, cdb, cmdsn, attr, read, write, expected_length, data, immediate)
        event = ScsiCommand(itt, lun_to_int(lun), cdb, cmdsn, b1 & 0x07, read, write, edtl,
                            data if write else None, False)
        # positional: (itt, event, ready, counted, delivered, answered, raw_lun, edtl, read, write)
        slot = Slot(itt, event, True, False, False, False, lun, edtl, read, write)
        s.tasks[itt] = slot
        s.delivery.offer(cmdsn, slot)
        return True

    def _command_error(self, cmd: ScsiCommandPdu, frame: Frame) -> int | None:
        if cmd.itt == RESERVED_TAG:
            return REJECT_INVALID_FIELD
        if cmd.itt in self.state.tasks:
            return REJECT_TASK_IN_PROGRESS  # ITTs must be unique among active tasks
        if cmd.edtl and not (cmd.read or cmd.write):
            return REJECT_INVALID_FIELD  # EDTL without a direction (SPDK does the same)
        if frame.data and not cmd.write:
            return REJECT_PROTOCOL_ERROR  # immediate data on a command that writes nothing
        return None

    def _data_out(self, pdu: DataOut, frame: Frame) -> None:
        s = self.state
        try:
            task, grants = s.writes.data_out(pdu, frame.data, frame.placed)
        except DataError as exc:
            s.reject(exc.reason, frame.bhs)
            if exc.fatal:
                s.close(f"Data-Out error: {exc}", error=True)
            elif exc.fails_task is not None:
                self._fail_write(pdu.itt, exc.fails_task)
            return
        self._send_r2ts(grants)
        if task is None:
            return
        slot = s.tasks.get(task.itt)
        if slot is None or not isinstance(slot.event, ScsiCommand):
            return
        slot.event.data = task.buffer
        s.written_bytes += task.received
        s.delivery.became_ready(slot)

    def _fail_write(self, itt: int, asc_ascq: tuple[int, int]) -> None:
        """End a write whose Data-Out sequence broke: CHECK CONDITION / ABORTED COMMAND; later
        Data-Out PDUs of that task are dropped quietly (the collector remembers aborted tags)."""
        s = self.state
        s.writes.abort(itt)
        if itt in s.tasks:
            self.respond(itt, CHECK_CONDITION, sense=aborted_command_sense(*asc_ascq))

    def _send_r2ts(self, grants: list[R2TGrant]) -> None:
        s = self.state
        for g in grants:
            pdu = R2T(lun=g.lun, itt=g.itt, ttt=g.ttt, statsn=s.statsn.next, r2tsn=g.r2tsn,
                      buffer_offset=g.offset, desired_length=g.length)
            s.numbers(pdu)
            s.emit(pdu)
        s.r2ts += len(grants)

    # ---- requests the connection answers itself ------------------------------------------------

    def _nop_out(self, pdu: NopOut, frame: Frame) -> None:
        s = self.state
        if pdu.ttt != RESERVED_TAG:
            s.pings.discard(pdu.ttt)  # the answer to our NOP-In ping
        if pdu.itt == RESERVED_TAG:
            if not pdu.immediate:  # RFC 7143 §11.18.1: ITT 0xffffffff needs I=1
                self._refuse(REJECT_PROTOCOL_ERROR, pdu, frame)
            return
        if not pdu.immediate and not s.delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True)):
            return
        # RFC 7143 §11.19: echo the ping data (up to what the initiator accepts), advance StatSN
        reply = NopIn(lun=pdu.lun, itt=pdu.itt, ttt=RESERVED_TAG)
        s.status_pdu(reply, bytes(frame.data[:s.peer_mrdsl]))

    def _text(self, pdu: TextRequest, frame: Frame) -> None:
        s = self.state
        if not pdu.immediate and not s.delivery.offer(pdu.cmdsn, Slot(pdu.itt, answered=True)):
            return
        ctx = TextContext(session_type=s.session_type or _NORMAL, initiator_name=s.initiator_name,
                          target_name=s.target_name, authority=s.authority, negotiator=s.negotiator,
                          max_segment=s.peer_mrdsl, new_ttt=s.writes.new_ttt)
        try:
            response, data = self.text.handle(pdu, bytes(frame.data), ctx)
        except DataError as exc:
            s.reject(exc.reason, frame.bhs)
            return
        s.status_pdu(response, data)
        s.apply_negotiated()  # a Text exchange may declare a new MaxRecvDataSegmentLength

    # ---- requests the server answers -----------------------------------------------------------

    def _logout(self, pdu: LogoutRequest, frame: Frame) -> None:
        if self.state.session_type is _DISCOVERY and pdu.reason != 0:
            self._refuse(REJECT_NOT_SUPPORTED, pdu, frame)  # discovery: close the session only
            return
        self._control(pdu, LogoutRequested(itt=pdu.itt, reason=pdu.reason, cid=pdu.cid))

    def _tmf(self, pdu: TaskMgmtRequest, frame: Frame) -> None:
        event = TaskManagement(itt=pdu.itt, function=pdu.function, lun=lun_to_int(pdu.lun),
                               referenced_itt=pdu.referenced_itt, ref_cmdsn=pdu.ref_cmdsn,
                               cmdsn=pdu.cmdsn)
        self._control(pdu, event)

    def _control(self, pdu: TaskMgmtRequest | LogoutRequest, event: TaskManagement | LogoutRequested) -> None:
        s = self.state
        slot = Slot(pdu.itt, event)
        if pdu.immediate:
            s.control[pdu.itt] = slot
            s.delivery.immediate(slot)
        elif s.delivery.offer(pdu.cmdsn, slot):
            s.control[pdu.itt] = slot
