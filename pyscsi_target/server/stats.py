"""The server's statistics (issue #13 item 1): per-portal and process counters, and the snapshots
`TargetService` hands the API through `TargetControl` (`sessions()`, `statistics()`).

Where each counter lives (docs/design.md "Statistics"): per LU on the `LogicalUnit`
(`scsi.stats.IoCounters`, counted by the connection that answers the command, in the event loop);
per session on its `ConnectionHandler` (the same `IoCounters`) and in its protocol state (PDUs,
digest errors, R2Ts); per portal here (`PortalCounters`, kept by the service by portal id); process
wide here (`ProcessCounters`). Nothing here runs per command: these functions run when the API
asks, and copy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..model import Config, SessionInfo
from ..model.stats import LuStatistics, PortalStatistics, ProcessStatistics, SessionCounters, Statistics

if TYPE_CHECKING:
    from .connection import ConnectionHandler
    from .extents import LiveExtent
    from .sessions import SessionRecord

#: RFC 7143 §11.13.5: Login Response status (class, detail) -> the `result` label of a refused
#: login; one not listed is shown as "status_0xCCDD"
LOGIN_STATUS_NAMES = {
    (0x02, 0x00): "initiator_error",
    (0x02, 0x01): "authentication_failure",
    (0x02, 0x02): "authorization_failure",
    (0x02, 0x03): "not_found",
    (0x02, 0x04): "target_removed",
    (0x02, 0x05): "unsupported_version",
    (0x02, 0x06): "too_many_connections",
    (0x02, 0x07): "missing_parameter",
    (0x02, 0x08): "cant_include_in_session",
    (0x02, 0x09): "session_type_not_supported",
    (0x02, 0x0A): "session_does_not_exist",
    (0x02, 0x0B): "invalid_during_login",
    (0x03, 0x00): "target_error",
    (0x03, 0x01): "service_unavailable",
    (0x03, 0x02): "out_of_resources",
}
#: results of logins no Login Response ended: completed, the login timer ran out, or the
#: initiator closed the connection first
LOGIN_SUCCESS = "success"
LOGIN_TIMEOUT = "timeout"
LOGIN_ABANDONED = "abandoned"


def login_result(status: tuple[int, int] | None, timed_out: bool) -> str:
    """The `result` of a login that did not complete."""
    if status is not None:
        return LOGIN_STATUS_NAMES.get(status, f"status_0x{status[0]:02x}{status[1]:02x}")
    return LOGIN_TIMEOUT if timed_out else LOGIN_ABANDONED


class PortalCounters:
    """Logins by result and connections of one portal (counted in the event loop)."""

    __slots__ = ("connections", "logins", "open")

    def __init__(self) -> None:
        self.logins: dict[str, int] = {}
        self.connections = 0
        self.open = 0

    def login(self, result: str) -> None:
        self.logins[result] = self.logins.get(result, 0) + 1


class ProcessCounters:
    """Process-wide counters of the service."""

    __slots__ = ("applies", "start_time")

    def __init__(self) -> None:
        self.applies: dict[str, int] = {"applied": 0, "refused": 0}
        self.start_time = time.time()


def session_info(rec: SessionRecord, h: ConnectionHandler) -> SessionInfo:
    """What the API shows of one live session."""
    assert h.login is not None
    io = h.io_snapshot()
    received, sent, digest_errors, r2ts = h.conn.transport_counters()
    params = dict(h.login.params)
    return SessionInfo(
        initiator=h.login.initiator_name,
        initiator_addr=h.peer,
        target=rec.target or "",
        target_portal=f"{h.local},{h.portal.tag}",
        isid=f"{rec.isid:012x}",
        tsih=rec.tsih,
        session_type=h.login.session_type,
        connections=1,
        parameters=params,
        commands=io.commands,
        read_bytes=io.read_bytes,
        written_bytes=io.written_bytes,
        target_alias=h.login.target_alias,
        auth_method=h.login.auth_method,
        header_digest=params.get("HeaderDigest", "None"),
        data_digest=params.get("DataDigest", "None"),
        io=io,
        transport=SessionCounters(pdus_received=received, pdus_sent=sent, digest_errors=digest_errors, r2ts=r2ts),
    )


def lu_statistics(config: Config, extents: Mapping[int, LiveExtent]) -> list[LuStatistics]:
    """Every served LU's totals, labelled with its target and LUN (an extent is mapped at most
    once, model/validation.py)."""
    where: dict[int, tuple[str, int]] = {}
    for m in config.mappings.values():
        t = config.targets.get(m.target)
        if t is not None:
            where[m.extent] = (config.target_iqn(t), m.lunid)
    out = []
    for eid, live in sorted(extents.items()):
        iqn, lun = where.get(eid, ("", None))
        out.append(LuStatistics(extent=live.extent.name, extent_id=eid, target=iqn, lun=lun,
                                io=live.lu.stats.snapshot()))
    return out


def statistics(config: Config, extents: Mapping[int, LiveExtent], portals: Mapping[int, PortalCounters],
               process: ProcessCounters) -> Statistics:
    portal_stats = []
    for pid, c in sorted(portals.items()):
        portal = config.portals.get(pid)
        portal_stats.append(PortalStatistics(portal_id=pid, tag=portal.tag if portal else 0, logins=dict(c.logins),
                                             connections=c.connections, open_connections=c.open))
    return Statistics(
        lus=lu_statistics(config, extents),
        portals=portal_stats,
        process=ProcessStatistics(config_applies=dict(process.applies), start_time=process.start_time),
    )
