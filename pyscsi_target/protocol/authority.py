"""What the login state machine asks the rest of the target (implemented by server/).

Pure data in and out, no I/O: the connection stays sans-IO. Policies are computed by the server
from the model configuration at the moment of the login, so API changes apply to the next login.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChapSecret:
    user: str
    secret: str
    peeruser: str = ""
    peersecret: str = ""


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """How an initiator must authenticate to reach a target (or discovery) through this portal."""

    #: "None" (no authentication), "CHAP", or "CHAP Mutual"
    method: str = "None"
    #: CHAP credentials any of which may log in (the auth group)
    credentials: tuple[ChapSecret, ...] = ()
    #: Target Portal Group Tag to report (RFC 7143 §13.9)
    tpgt: int = 1
    #: the target's alias, sent as TargetAlias in the final login response of a Normal session
    #: (RFC 7143 §13.6; None: the key is not sent)
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class LoginRefused:
    """The login must fail with this Status-Class/Status-Detail (RFC 7143 §11.13.5)."""

    status_class: int
    status_detail: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SendTargetsEntry:
    target_name: str
    #: "ip:port,tpgt" or "[ipv6]:port,tpgt"
    addresses: tuple[str, ...] = field(default_factory=tuple)


class LoginAuthority(Protocol):
    def discovery_policy(self, initiator_name: str) -> AuthPolicy | LoginRefused:
        """Policy for a discovery session through this connection's portal."""
        ...

    def target_policy(self, target_name: str, initiator_name: str) -> AuthPolicy | LoginRefused:
        """Policy for a normal session to `target_name`; LoginRefused(2, 3) if unknown,
        (2, 2) if the initiator's name or address is not allowed."""
        ...

    def send_targets(self, initiator_name: str, which: str) -> list[SendTargetsEntry]:
        """SendTargets=All (which="All") or SendTargets=<iqn> through this portal, filtered by ACL."""
        ...

    def new_session(
        self, initiator_name: str, isid: int, target_name: str | None, tsih: int
    ) -> int | LoginRefused:
        """Called before the final login response. tsih=0: a new session, return its TSIH (nonzero).
        tsih!=0: the initiator adds a connection to / reinstates that session; return it or refuse."""
        ...
