"""Events `protocol.Connection.next_event()` returns to the server (h11-style, sans-IO).

The connection handles by itself everything that needs no other layer: login and negotiation
(asking its `LoginAuthority` for policy), NOP-Out/NOP-In, Text/SendTargets, R2T generation and
Data-Out reassembly, CmdSN ordering, Reject of malformed PDUs. What needs the SCSI core or the
session registry comes out as one of these events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import SessionType


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: returned by next_event() when more bytes must be received first
NEED_DATA = _NeedData()


@dataclass(slots=True)
class Event:
    pass


@dataclass(slots=True)
class LoginComplete(Event):
    """The final Login Response (T=1, NSG=FullFeature) has been queued in data_to_send()."""

    session_type: SessionType
    initiator_name: str
    initiator_alias: str | None
    target_name: str | None  # the target's iqn as the initiator sent it (Normal sessions)
    isid: int
    tsih: int
    cid: int
    tpgt: int
    #: every negotiated operational key with its final value, as strings ("MaxBurstLength": "262144")
    params: dict[str, str] = field(default_factory=dict)
    auth_user: str | None = None
    #: the TargetAlias sent in the final login response (None: not sent)
    target_alias: str | None = None
    #: how the initiator authenticated: "None", "CHAP" or "CHAP Mutual"
    auth_method: str = "None"


@dataclass(slots=True)
class ScsiCommand(Event):
    """A SCSI command whose data (immediate, unsolicited and solicited) has fully arrived.
    Emitted in CmdSN order (immediate commands at once). Answer with send_scsi_response()."""

    itt: int
    lun: int
    cdb: bytes
    cmdsn: int
    attr: int
    read: bool
    write: bool
    expected_length: int
    data: bytes | bytearray | memoryview | None = None
    immediate: bool = False


@dataclass(slots=True)
class TaskManagement(Event):
    """A Task Management Function Request (RFC 7143 §11.5). Answer with send_tmf_response()."""

    itt: int
    function: int  # 1 ABORT TASK ... 8 TASK REASSIGN
    lun: int
    referenced_itt: int
    ref_cmdsn: int
    cmdsn: int


@dataclass(slots=True)
class LogoutRequested(Event):
    """A Logout Request (RFC 7143 §11.14). The server ends the connection's tasks, then calls
    send_logout_response(); the connection then reports ConnectionClosed once it is flushed."""

    itt: int
    reason: int  # 0 close session, 1 close connection, 2 remove connection for recovery
    cid: int


@dataclass(slots=True)
class ConnectionClosed(Event):
    """The connection is finished: send what data_to_send() still holds, then close the socket.
    `reason` is for the log; `error` is True for protocol errors and login failures."""

    reason: str
    error: bool = False
