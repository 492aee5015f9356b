"""`ConnectionState`: what one connection knows, shared by its parts (docs/design.md, "The
connection's parts", issue #14).

`Connection` (connection.py) owns one and hands it to `FullFeatureHandler` (ffp.py): the facade
acts on it for login and for the server's answers, the handler for every PDU received in full
feature phase. Neither part touches the other's attributes; this class is the whole contract
between them, so its fields are public. Its methods are what every part does with it: put a PDU
on the wire with the CmdSN window and the next StatSN stamped on it (`emit`, `status_pdu`,
`reject`), end the connection (`close`) and take negotiated values into use (`apply_negotiated`).

The containers (`statsn`, `delivery`, `writes`, `tasks`, `control`, `pings`) are created once and
never replaced, so a part may bind them; `out` is swapped by `Connection.data_to_send()` and the
`negotiator` replaced at the end of login, so those are always read through the state.
"""

from __future__ import annotations

from ..model import SessionType
from .authority import LoginAuthority
from .dataout import WriteCollector
from .events import ConnectionClosed
from .framing import build_pdu
from .limits import BHS_LENGTH, DEFAULT_MRDSL, TARGET_MRDSL
from .negotiation import Negotiator
from .pdu import Pdu, Reject
from .session import CommandWindow, StatusCounter
from .tasks import OrderedDelivery, Slot

Buffer = bytes | bytearray | memoryview


class ConnectionState:
    """The state of one iSCSI connection (MaxConnections=1, so also of its session)."""

    __slots__ = (
        "authority",
        "closed_emitted",
        "closing",
        "commands",
        "control",
        "data_digest",
        "delivery",
        "digest_errors",
        "header_digest",
        "initiator_name",
        "login_status",
        "max_burst",
        "negotiator",
        "out",
        "pdus_received",
        "pdus_sent",
        "peer_mrdsl",
        "pings",
        "r2ts",
        "read_bytes",
        "session_type",
        "statsn",
        "target_name",
        "tasks",
        "writes",
        "written_bytes",
    )

    def __init__(self, authority: LoginAuthority) -> None:
        self.authority = authority
        #: buffers queued for the socket (Connection.data_to_send() takes them)
        self.out: list[Buffer] = []
        self.statsn = StatusCounter(0)
        #: the CmdSN window and the events it releases, in order
        self.delivery = OrderedDelivery(CommandWindow[Slot](0))
        #: write commands still waiting for data (R2T, Data-Out, direct placement)
        self.writes = WriteCollector()
        #: unanswered SCSI commands by ITT
        self.tasks: dict[int, Slot] = {}
        #: TMF and Logout requests awaiting the server, by ITT
        self.control: dict[int, Slot] = {}
        #: TTTs of our NOP-In pings not answered yet
        self.pings: set[int] = set()
        self.negotiator = Negotiator()
        self.header_digest = False
        self.data_digest = False
        #: the initiator's MaxRecvDataSegmentLength: the largest data segment we may send
        self.peer_mrdsl = DEFAULT_MRDSL
        self.max_burst = TARGET_MRDSL
        #: set when the login completes (None before)
        self.session_type: SessionType | None = None
        self.initiator_name = ""
        self.target_name: str | None = None
        self.closing = False  # a ConnectionClosed is queued
        self.closed_emitted = False  # ... and next_event() has returned it
        #: statistics: commands answered, Data-In bytes sent, write data bytes received
        self.commands = 0
        self.read_bytes = 0
        self.written_bytes = 0
        #: statistics (issue #13): PDUs received and sent, PDUs with a wrong header or data digest,
        #: R2Ts sent
        self.pdus_received = 0
        self.pdus_sent = 0
        self.digest_errors = 0
        self.r2ts = 0
        #: (status class, status detail) of the Login Response that refused the login, if one did
        self.login_status: tuple[int, int] | None = None

    def numbers(self, pdu: Pdu) -> None:
        """Stamp ExpCmdSN and MaxCmdSN on a PDU we send."""
        window = self.delivery.window
        pdu.exp_cmdsn = window.exp_cmdsn  # type: ignore[attr-defined]
        pdu.max_cmdsn = window.max_cmdsn  # type: ignore[attr-defined]

    def status_pdu(self, pdu: Pdu, data: Buffer = b"") -> None:
        """Send a PDU that takes the next StatSN."""
        pdu.statsn = self.statsn.take()  # type: ignore[attr-defined]
        self.numbers(pdu)
        self.emit(pdu, data)

    def emit(self, pdu: Pdu, data: Buffer = b"") -> None:
        self.pdus_sent += 1
        self.out.extend(build_pdu(pdu, data, header_digest=self.header_digest, data_digest=self.data_digest))

    def reject(self, reason: int, bhs: bytes) -> None:
        """A Reject carrying the offending header (RFC 7143 §11.17); it advances StatSN."""
        self.status_pdu(Reject(reason=reason), bhs[:BHS_LENGTH])

    def close(self, reason: str, *, error: bool = False) -> None:
        """Queue the one ConnectionClosed event; write data still being collected is dropped."""
        if self.closing or self.closed_emitted:
            return
        self.closing = True
        self.writes.clear()
        self.delivery.events.append(ConnectionClosed(reason=reason, error=error))

    def apply_negotiated(self) -> None:
        """Take the negotiated burst and segment sizes into use (also after a Text exchange)."""
        neg = self.negotiator
        self.peer_mrdsl = neg.int_value("MaxRecvDataSegmentLength")
        self.max_burst = neg.int_value("MaxBurstLength")
        limits = self.writes.limits
        limits.immediate_data = neg.bool_value("ImmediateData")
        limits.initial_r2t = neg.bool_value("InitialR2T")
        limits.first_burst = neg.int_value("FirstBurstLength")
        limits.max_burst = self.max_burst
        limits.max_outstanding_r2t = neg.int_value("MaxOutstandingR2T")
