"""iSCSI (RFC 7143), sans-IO: PDUs and codec, framing, text keys and negotiation, CHAP, the login
state machine, CmdSN/StatSN, and `Connection`, the facade that turns bytes into events and calls
into bytes. No sockets, no trio, no SCSI: the server drives it."""

from .connection import Connection
from .events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    LoginComplete,
    LogoutRequested,
    ScsiCommand,
    TaskManagement,
)

__all__ = [
    "NEED_DATA",
    "Connection",
    "ConnectionClosed",
    "Event",
    "LoginComplete",
    "LogoutRequested",
    "ScsiCommand",
    "TaskManagement",
]
