"""Runtime statistics as plain data: what `TargetControl.statistics()` returns (issue #13 item 1).

Snapshots, copied at the moment they are asked for; the live counters are elsewhere (the SCSI
core's `scsi.stats.IoCounters` on each logical unit and session, the protocol's per-connection
counters, the server's per-portal and process counters). Every number is monotonic for the life of
the object it describes: an LU's totals survive the sessions that used it, a session's end with it.
The API renders them (api/metrics.py: Prometheus; the sessions list).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: latency histogram buckets: bucket i counts latencies below 2**i µs, for i in
#: 0..LATENCY_BUCKETS-2; the last one is unbounded. 2**25 µs = 33.6 s: past it a command has timed
#: out at any initiator (Linux's default SCSI command timeout is 30 s), one bucket is enough.
LATENCY_BUCKETS = 27
#: upper bounds of the bounded buckets in seconds (Prometheus `le`)
LATENCY_BOUNDS_S = tuple((1 << i) / 1e6 for i in range(LATENCY_BUCKETS - 1))

#: SPC-4 §4.5.6 table 49: the sense keys by value (0x0C and 0x0F are reserved/obsolete)
SENSE_KEY_NAMES = (
    "NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR", "ILLEGAL REQUEST",
    "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED",
    "ABORTED COMMAND", "KEY 0x0C", "VOLUME OVERFLOW", "MISCOMPARE", "KEY 0x0F",
)


@dataclass(frozen=True)
class IoSnapshot:
    """SCSI command counters of one LU or one session."""

    read_commands: int = 0
    write_commands: int = 0
    other_commands: int = 0
    read_bytes: int = 0
    written_bytes: int = 0
    #: CHECK CONDITIONs by sense key name (only the keys that occurred)
    errors: dict[str, int] = field(default_factory=dict)
    #: answers with another non-GOOD status (RESERVATION CONFLICT, BUSY, ...)
    other_status: int = 0
    #: per-bucket latency counts, not cumulative (LATENCY_BUCKETS; bounds LATENCY_BOUNDS_S)
    latency_buckets: tuple[int, ...] = (0,) * LATENCY_BUCKETS
    latency_seconds: float = 0.0

    @property
    def commands(self) -> int:
        return self.read_commands + self.write_commands + self.other_commands


@dataclass(frozen=True)
class SessionCounters:
    """A session's transport counters, besides its `IoSnapshot`."""

    pdus_received: int = 0
    pdus_sent: int = 0
    digest_errors: int = 0
    r2ts: int = 0


@dataclass(frozen=True)
class LuStatistics:
    """One served LU (an enabled extent): its mapping, if any, and its totals."""

    extent: str
    extent_id: int
    target: str  # the target IQN it is mapped to ("" when not mapped)
    lun: int | None
    io: IoSnapshot


@dataclass(frozen=True)
class PortalStatistics:
    portal_id: int
    tag: int
    #: login attempts by result ("success", "authentication_failure", "timeout", ...)
    logins: dict[str, int]
    #: TCP connections accepted on its addresses (after admission), and open now
    connections: int
    open_connections: int


@dataclass(frozen=True)
class ProcessStatistics:
    #: configuration applies by result ("applied", "refused")
    config_applies: dict[str, int]
    #: seconds since the epoch the service started
    start_time: float


@dataclass(frozen=True)
class Statistics:
    lus: list[LuStatistics]
    portals: list[PortalStatistics]
    process: ProcessStatistics
