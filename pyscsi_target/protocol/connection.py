"""`Connection`: the sans-IO facade of one iSCSI connection (h11 style).

The server feeds received bytes to `receive_data()`, pulls `Event`s with `next_event()` until
`NEED_DATA`, answers SCSI commands, TMFs and Logouts with the `send_*` methods and writes out
`data_to_send()`. Everything that needs no other layer happens here: login (login.py),
NOP-Out/NOP-In, Text/SendTargets (textreq.py), R2T and Data-Out reassembly (dataout.py), CmdSN
ordering (tasks.py/session.py), Data-In splitting (responses.py) and Rejects. Nothing raises out
of `receive_data()`/`next_event()`: every malformed input becomes a Reject, a Login reject
and/or `ConnectionClosed(error=True)`. `ConnectionClosed` is emitted once; afterwards
`next_event()` returns NEED_DATA and received bytes are ignored.

The connection's parts (docs/design.md): this facade owns one `ConnectionState` (state.py), the
state every part acts on; `LoginMachine` (login.py) runs the login, `FullFeatureHandler` (ffp.py)
handles each PDU received in full feature phase, and the `send_*` methods here are the server's
answers. Imports go one way (connection -> ffp -> state), never back.

A failed login is logged (logger `pyscsi_target.login`, WARNING) with the initiator's name and
address, the target asked for and the status sent, never a key value: no secret and no CHAP_R
can reach the log (issue #4).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from ..model import SessionType
from .authority import LoginAuthority
from .codec import CodecError, decode_bhs
from .events import NEED_DATA, ConnectionClosed, Event, LoginComplete, LogoutRequested, ScsiCommand, _NeedData
from .ffp import FullFeatureHandler
from .framing import (
    JOIN_BELOW,
    LOGIN_MIN_FREE,
    LOGIN_RECEIVE_BUFFER_BYTES,
    PADDING,
    Frame,
    FrameError,
    FrameReader,
    frame_pdu,
)
from .limits import (
    COMMAND_WINDOW_DEPTH,
    DEFAULT_MRDSL,
    MAX_LOGIN_AHS_WORDS,
    MAX_TOTAL_AHS_WORDS,
    RESERVED_TAG,
    TARGET_MRDSL,
)
from .login import INITIATOR_ERROR, INVALID_DURING_LOGIN, LoginFailed, LoginMachine
from .pdu import (
    OP_LOGIN_REQUEST,
    AsyncMessage,
    LoginRequest,
    LogoutResponse,
    NopIn,
    TaskMgmtResponse,
    lun_to_int,
)
from .responses import response_pdus, single_response
from .state import ConnectionState

Buffer = bytes | bytearray | memoryview

log = logging.getLogger("pyscsi_target.login")


class ConnectionPhase(StrEnum):
    """`Connection.state`: where the connection is in its life (RFC 7143 §6, §11.14)."""

    LOGIN = "login"
    FULL_FEATURE = "full_feature"
    LOGOUT = "logout"  # a Logout Request was delivered: everything after it is ignored
    CLOSED = "closed"  # ConnectionClosed was returned


#: the members bound once: `next_event()` tests the phase for every PDU, and an enum attribute
#: lookup costs ~0.1 us on Python 3.11 where `is` on a global costs a tenth of that
STATE_LOGIN = ConnectionPhase.LOGIN
STATE_FULL_FEATURE = ConnectionPhase.FULL_FEATURE
STATE_LOGOUT = ConnectionPhase.LOGOUT
STATE_CLOSED = ConnectionPhase.CLOSED


class Connection:
    """One iSCSI connection (MaxConnections=1, so also its session), without I/O."""

    def __init__(self, authority: LoginAuthority, *, portal_tpgt: int = 1, peer: str = "",
                 local: str = "") -> None:
        self.authority = authority
        self.portal_tpgt = portal_tpgt
        self.peer = peer
        self.local = local
        s = self._s = ConnectionState(authority)
        # the state's containers the server's calls use, bound once (state.py: never replaced)
        self._tasks, self._statsn, self._delivery, self._writes = s.tasks, s.statsn, s.delivery, s.writes
        # before login: the RFC 7143 §13.12 default 8192-byte data segment, no AHS at all and a
        # small receive buffer (target-rules §5.2: bounded memory before authentication)
        self._reader = FrameReader(max_data_segment=DEFAULT_MRDSL, max_ahs_words=MAX_LOGIN_AHS_WORDS,
                                   buffer_bytes=LOGIN_RECEIVE_BUFFER_BYTES, min_free=LOGIN_MIN_FREE)
        self._state = STATE_LOGIN
        self._eof = False
        self._login: LoginMachine | None = LoginMachine(authority, portal_tpgt)
        self.tsih = 0
        self.isid = 0
        self.cid = 0
        self._ffp = FullFeatureHandler(s, self.send_scsi_response)

    # ---- the h11-style interface ---------------------------------------------------------------

    @property
    def state(self) -> ConnectionPhase:
        return self._state

    @property
    def wants_close(self) -> bool:
        return self._s.closing or self._s.closed_emitted

    @property
    def session_type(self) -> SessionType | None:
        return self._s.session_type

    @property
    def initiator_name(self) -> str:
        return self._s.initiator_name

    @property
    def target_name(self) -> str | None:
        return self._s.target_name

    @property
    def commands(self) -> int:
        """Statistics: commands answered."""
        return self._s.commands

    @property
    def read_bytes(self) -> int:
        """Statistics: Data-In bytes sent."""
        return self._s.read_bytes

    @property
    def written_bytes(self) -> int:
        """Statistics: write data bytes received."""
        return self._s.written_bytes

    @property
    def login_status(self) -> tuple[int, int] | None:
        """(status class, detail) of the Login Response that refused this login, or None."""
        return self._s.login_status

    def transport_counters(self) -> tuple[int, int, int, int]:
        """Statistics: PDUs received, PDUs sent, digest errors, R2Ts sent."""
        s = self._s
        return s.pdus_received, s.pdus_sent, s.digest_errors, s.r2ts

    @property
    def login_target_name(self) -> str | None:
        """The TargetName of the login in progress, or of the completed login."""
        if self._login is not None:
            return self._login.target_name
        return self._s.target_name

    @property
    def login_initiator_name(self) -> str:
        """The InitiatorName of the login in progress ("" until its first request is read)."""
        if self._login is not None:
            return self._login.initiator_name
        return self._s.initiator_name

    @property
    def negotiated(self) -> dict[str, str]:
        return self._s.negotiator.session_params() if self._state is not STATE_LOGIN else {}

    @property
    def exp_cmdsn(self) -> int:
        return self._delivery.window.exp_cmdsn

    @property
    def max_cmdsn(self) -> int:
        return self._delivery.window.max_cmdsn

    def receive_data(self, data: Buffer) -> None:
        """Bytes from the socket; b"" means the peer closed its side (EOF)."""
        if self._s.closing or self._s.closed_emitted:
            return
        if not data:
            self._eof = True
            return
        self._reader.feed(data)

    def receive_buffer(self) -> memoryview:
        """The zero-copy form of receive_data(): where the server should recv_into() next (a
        part of the receive buffer, or the place in a command buffer that the data segment
        being received belongs to); then report the byte count with `received()`."""
        return self._reader.receive_buffer()

    def received(self, count: int) -> None:
        """`count` bytes were received into `receive_buffer()`; 0 means EOF."""
        s = self._s
        if s.closing or s.closed_emitted:
            return
        if not count:
            self._eof = True
            return
        self._reader.received(count)

    def next_event(self) -> Event | _NeedData:
        s = self._s
        events = self._delivery.events
        while True:
            if events:
                event = events.popleft()
                if isinstance(event, ConnectionClosed):
                    s.closed_emitted = True
                    self._state = STATE_CLOSED
                    events.clear()
                elif isinstance(event, LogoutRequested) and self._state is STATE_FULL_FEATURE:
                    self._state = STATE_LOGOUT
                return event
            if s.closing or s.closed_emitted:
                return NEED_DATA
            frame = self._reader.next_frame()
            if frame is None:
                if not self._eof:
                    return NEED_DATA
                self._close("eof", error=self._reader.buffered > 0)
            elif isinstance(frame, FrameError):
                s.pdus_received += 1
                if frame.kind == "header_digest":
                    s.digest_errors += 1
                self._frame_error(frame)
            elif self._state is STATE_LOGIN:
                s.pdus_received += 1
                self._login_frame(frame)
            elif self._state is STATE_FULL_FEATURE:
                s.pdus_received += 1
                self._ffp.frame(frame)
            # STATE_LOGOUT: everything after a Logout Request is ignored (RFC 7143 §11.14)

    def data_to_send(self) -> list[Buffer]:
        s = self._s
        out, s.out = s.out, []
        return out

    # ---- full feature phase: calls from the server ---------------------------------------------

    def send_scsi_response(self, itt: int, status: int, data: Buffer = b"", sense: bytes | None = None,
                           transfer_length: int | None = None) -> None:
        """Answer a ScsiCommand (ignored for a task that was aborted or is unknown)."""
        slot = self._tasks.pop(itt, None)
        s = self._s
        if slot is None or s.closed_emitted:
            return
        self._delivery.answer(slot)  # MaxCmdSN re-opens with this response
        window = self._delivery.window
        is_read = slot.read and not slot.write
        if sense is None and not (s.header_digest or s.data_digest):
            length = len(data)
            header = single_response(itt, slot.raw_lun, slot.edtl, is_read, status, length, transfer_length,
                                     min(s.peer_mrdsl, s.max_burst), self._statsn.next,
                                     window.exp_cmdsn, window.max_cmdsn)
            if header is not None:  # the common case: one PDU (docs/performance.md)
                self._statsn.take()
                if not is_read or not length:
                    s.out.append(header)
                elif length & 3 or length < JOIN_BELOW:
                    s.out.append(b"".join((header, data, PADDING[length & 3])))
                else:
                    s.out += (header, data)
                s.commands += 1
                s.pdus_sent += 1
                if is_read:
                    s.read_bytes += length
                return
        pdus, sent = response_pdus(itt=itt, lun=slot.raw_lun, edtl=slot.edtl,
                                   is_read=is_read, status=status, data=data,
                                   sense=sense, transfer_length=transfer_length,
                                   max_segment=s.peer_mrdsl, max_burst=s.max_burst,
                                   statsn=self._statsn.take(), exp_cmdsn=window.exp_cmdsn,
                                   max_cmdsn=window.max_cmdsn)
        out = s.out
        if s.header_digest or s.data_digest:
            for header, chunk in pdus:
                out.extend(frame_pdu(header, chunk, s.header_digest, s.data_digest))
        else:  # lengths are multiples of 4 on the data path; frame_pdu pads the others
            for header, chunk in pdus:
                if len(chunk) & 3 or len(chunk) < JOIN_BELOW:
                    out.extend(frame_pdu(header, chunk, False, False))
                else:
                    out.append(header)
                    out.append(chunk)
        s.commands += 1
        s.read_bytes += sent
        s.pdus_sent += len(pdus)

    def send_tmf_response(self, itt: int, response: int) -> None:
        slot = self._s.control.pop(itt, None)
        if slot is not None:
            self._delivery.answer(slot)
        self._s.status_pdu(TaskMgmtResponse(response=response, itt=itt))

    def send_logout_response(self, itt: int, response: int = 0) -> None:
        """Answer the LogoutRequested; the connection then reports ConnectionClosed("logout")."""
        slot = self._s.control.pop(itt, None)
        if slot is not None:
            self._delivery.answer(slot)
        # Time2Wait/Time2Retain are only meaningful at ErrorRecoveryLevel 2 (RFC 7143 §11.15.4)
        self._s.status_pdu(LogoutResponse(response=response, itt=itt))
        self._s.close("logout")

    def send_async_event(self, event: int, param1: int = 0, param2: int = 0, param3: int = 0) -> None:
        """An Async Message (RFC 7143 §11.9), e.g. event 1: the target requests a logout."""
        if self._state is not STATE_FULL_FEATURE:
            return
        self._s.status_pdu(AsyncMessage(event=event, param1=param1 & 0xFFFF, param2=param2 & 0xFFFF,
                                      param3=param3 & 0xFFFF))

    def send_nop_in_ping(self) -> None:
        """A target-initiated NOP-In asking for a NOP-Out (keepalive, RFC 7143 §11.19.3).
        StatSN is not advanced by it (RFC 7143 §11.19.4)."""
        if self._state is not STATE_FULL_FEATURE:
            return
        ttt = self._writes.new_ttt()
        self._s.pings.add(ttt)
        pdu = NopIn(itt=RESERVED_TAG, ttt=ttt, statsn=self._statsn.next)
        self._s.numbers(pdu)
        self._s.emit(pdu)

    def abort_task(self, itt: int) -> bool:
        """Forget a command (its R2Ts and Data-Out) without answering it; True if it existed."""
        slot = self._tasks.pop(itt, None)
        had_data = self._writes.abort(itt)
        if slot is None:
            return had_data
        self._delivery.answer(slot)
        return True

    def abort_tasks(self, lun: int | None = None) -> list[int]:
        """Forget every unanswered SCSI command, or those of LUN number `lun` (ABORT TASK SET,
        CLEAR TASK SET, LOGICAL UNIT RESET: RFC 7143 §11.5.1 wants them ended, Data-Out included,
        before the TMF response). Returns their ITTs; none of them will be answered."""
        itts = [itt for itt, slot in self._tasks.items()
                if lun is None or lun_to_int(slot.raw_lun) == lun]
        for itt in itts:
            self.abort_task(itt)
        # aborting a command that held up the CmdSN queue (waiting for its Data-Out) releases
        # the ready commands behind it as events before they are aborted in turn: drop those
        aborted = set(itts)
        events = self._delivery.events
        if any(isinstance(e, ScsiCommand) and e.itt in aborted for e in events):
            kept = [e for e in events if not (isinstance(e, ScsiCommand) and e.itt in aborted)]
            events.clear()
            events.extend(kept)
        return itts

    @property
    def outstanding_pings(self) -> int:
        return len(self._s.pings)

    # ---- errors --------------------------------------------------------------------------------

    def _close(self, reason: str, *, error: bool = False) -> None:
        self._s.close(reason, error=error)

    def _frame_error(self, err: FrameError) -> None:
        if self._state is STATE_LOGIN:
            itt = int.from_bytes(err.bhs[16:20], "big")
            if err.bhs[0] & 0x3F != OP_LOGIN_REQUEST:  # whatever its framing: not a login (0x020b)
                self._login_reject(itt, INVALID_DURING_LOGIN, f"non-login PDU during login ({err.kind})")
            else:  # data segment over 8192 bytes or an AHS (RFC 7143 §13.12, §11.12)
                req = decode_bhs(err.bhs)  # a login opcode always decodes
                if isinstance(req, LoginRequest) and self._login is not None:
                    self._login.echo_ids(req)
                self._login_reject(itt, INITIATOR_ERROR, f"login PDU {err.kind}")
            return
        if err.fatal:
            self._close(err.kind, error=True)  # RFC 7143 §7.8: framing lost
            return
        self._ffp.reject_pdu(err.bhs, reason_code=None)

    # ---- login phase ---------------------------------------------------------------------------

    def _login_frame(self, frame: Frame) -> None:
        machine = self._login
        assert machine is not None
        itt = int.from_bytes(frame.bhs[16:20], "big")
        if frame.bhs[0] & 0x3F != OP_LOGIN_REQUEST:
            self._login_reject(itt, INVALID_DURING_LOGIN, "non-login PDU during login")
            return
        try:
            req = decode_bhs(frame.bhs)
        except CodecError:  # pragma: no cover - a login opcode always decodes
            self._login_reject(itt, INITIATOR_ERROR, "undecodable login")
            return
        assert isinstance(req, LoginRequest)
        try:
            step = machine.handle(req, bytes(frame.data))
        except LoginFailed as exc:
            self._login_reject(itt, (exc.status_class, exc.status_detail), exc.reason, req.cmdsn)
            return
        window = self._delivery.window
        window.exp_cmdsn = req.cmdsn  # login requests are immediate (RFC 7143 §11.12.8)
        self._s.status_pdu(step.response, step.data)
        if step.complete:
            self._enter_full_feature(machine)

    def _login_reject(self, itt: int, status: tuple[int, int], reason: str, cmdsn: int | None = None) -> None:
        machine = self._login
        assert machine is not None
        if cmdsn is not None:
            self._delivery.window.exp_cmdsn = cmdsn
        log.warning("login failed: initiator %s at %s, target %s: status 0x%02x%02x (%s)",
                    machine.initiator_name or "(unknown)", self.peer or "(unknown)",
                    machine.target_name or "(none)", status[0], status[1], reason)
        self._s.login_status = status
        self._s.status_pdu(machine.failure_response(itt, status))
        self._close(f"login failed: {reason}", error=True)

    def _enter_full_feature(self, machine: LoginMachine) -> None:
        neg = machine.negotiator
        s = self._s
        s.negotiator = neg
        self._state = STATE_FULL_FEATURE
        self._login = None
        s.session_type = machine.session_type
        s.initiator_name = machine.initiator_name
        s.target_name = machine.target_name
        self.tsih, self.isid, self.cid = machine.tsih, machine.isid, machine.cid
        # RFC 7143 §13.1: digests apply to every PDU after the final Login Response
        s.header_digest = neg.values["HeaderDigest"] == "CRC32C"
        s.data_digest = neg.values["DataDigest"] == "CRC32C"
        self._reader.header_digest = s.header_digest
        self._reader.data_digest = s.data_digest
        self._reader.max_data_segment = TARGET_MRDSL
        self._reader.max_ahs_words = MAX_TOTAL_AHS_WORDS
        if machine.session_type is SessionType.NORMAL:  # a discovery session only exchanges small
            self._reader.enlarge()  # Text PDUs: it keeps the pre-login buffer, grown only by what it sends
        self._reader.placement = self._ffp.placement  # write data straight into command buffers
        s.apply_negotiated()
        info = machine.complete_info()
        self._delivery.events.append(LoginComplete(**info))  # type: ignore[arg-type]
        self._delivery.window.depth = COMMAND_WINDOW_DEPTH
