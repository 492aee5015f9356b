"""`TargetControl`: the seam between the management API (api/) and the running target (server/).

The API never touches sockets or sessions. It reads `snapshot()`, builds a new `Config`, validates
it (model/validation) and calls `await apply(new_config)`. `server.TargetService` implements this:
it persists the configuration and makes the live target match it (portals listen, LUNs appear,
sessions of deleted targets end). If the live change cannot be made, it raises `ApplyError`
naming the object and model attribute, and neither the database nor the running target changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from .config import Config
from .stats import IoSnapshot, SessionCounters, Statistics


class ConfigError(Exception):
    """A configuration change was refused. `errors` maps API field names to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class ApplyError(Exception):
    """The change was valid but could not be applied live (port in use, device missing).

    It names what it is about in model terms (issue #14 item 5): the `Config` collection
    ("extents", "portals"), the object's id and the model attribute (`Extent.filesize`,
    `Portal.ips`); None for a refusal of the change as a whole. The API maps the attribute to its
    wire field name through its field tables (api/refusals.py)."""

    def __init__(self, message: str, collection: str | None = None, oid: int | None = None,
                 attr: str | None = None) -> None:
        where = f"{collection} {oid} {attr}: " if collection is not None else ""
        super().__init__(where + message)
        self.message = message
        self.collection = collection
        self.oid = oid
        self.attr = attr


class SessionType(StrEnum):
    """An iSCSI session's SessionType (RFC 7143 §13.21). The values are the key's values on the
    wire, and what the API shows (`GET /services/iscsi/sessions/` `session_type`)."""

    NORMAL = "Normal"
    DISCOVERY = "Discovery"


@dataclass
class SessionInfo:
    """One live iSCSI session, as `GET /services/iscsi/sessions/` shows it."""

    initiator: str
    initiator_addr: str
    target: str
    target_portal: str
    isid: str
    tsih: int
    session_type: SessionType
    connections: int
    parameters: dict[str, str] = field(default_factory=dict)
    commands: int = 0
    read_bytes: int = 0
    written_bytes: int = 0
    #: the TargetAlias the target sent in this session's final login response (None: none sent)
    target_alias: str | None = None
    #: how the initiator authenticated: "None", "CHAP" or "CHAP Mutual"
    auth_method: str = "None"
    header_digest: str = "None"
    data_digest: str = "None"
    #: SCSI command counters and transport counters of this session (issue #13)
    io: IoSnapshot = field(default_factory=IoSnapshot)
    transport: SessionCounters = field(default_factory=SessionCounters)

    @property
    def id(self) -> int:
        """The session's id in the API (`DELETE /services/iscsi/sessions/<id>/`): its TSIH,
        unique among the live sessions of this server (RFC 7143 §11.12.6)."""
        return self.tsih


class TargetControl(Protocol):
    def snapshot(self) -> Config:
        """The configuration currently served (do not mutate it; `copy()` it)."""
        ...

    async def apply(self, new: Config) -> None:
        """Persist `new` and make the live target match it, or raise `ApplyError`."""
        ...

    def sessions(self) -> list[SessionInfo]:
        ...

    def statistics(self) -> Statistics:
        """Per-LU, per-portal and process counters (model/stats.py); per-session ones come with
        `sessions()`."""
        ...

    async def end_session(self, session_id: int) -> bool:
        """End the live session with this id (`SessionInfo.id`): the target asks the initiator to
        log out (AsyncEvent 1), waits a moment, then closes it. False when there is none."""
        ...

    def extent_problems(self) -> dict[int, str]:
        """Extent id -> why that enabled extent is not served (its LUN answers NOT READY): its
        storage was refused or cannot be opened, or its persistent reservations cannot be read."""
        ...
