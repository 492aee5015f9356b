"""`PortalAuthority`: answers the login state machine's questions from the live configuration.

One per connection: it knows the portal the initiator connected to and its address, so target
visibility (target groups on this portal), initiator ACLs (names and networks) and CHAP settings are
decided here, at the moment of each login (API changes apply to the next login, spec Part B.2.1).

Everything fails closed (target-rules §5.4): a target group whose authorized-initiator id names
no object admits nobody, an authentication method other than "None" means CHAP (protocol/chap.py),
so does an auth group holding credentials whatever the method (`effective_method`), and an auth
tag without credentials lets no CHAP login succeed. A target the initiator may not
reach through this portal is "not found" (0x0203) whether it exists elsewhere or not; one it may
not reach from its name or address is "authorization failure" (0x0202). SendTargets lists exactly
the targets a login would not refuse with either of those.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..model import Config, InitiatorGroup, Portal, TargetGroup
from ..model.config import AUTH_NONE
from ..protocol.authority import AuthPolicy, ChapSecret, LoginRefused, SendTargetsEntry
from ..protocol.chap import METHOD_CHAP_DERIVED
from .sendtargets import target_addresses

if TYPE_CHECKING:
    from .sessions import SessionRegistry

log = logging.getLogger("pyscsi_target.login")

# RFC 7143 §11.13.5 status classes/details used here
NOT_FOUND = LoginRefused(2, 0x03, "target not found")
AUTHORIZATION_FAILURE = LoginRefused(2, 0x02, "initiator not authorized")
SESSION_TYPE_UNSUPPORTED = LoginRefused(2, 0x09, "discovery not available on this portal")
SESSION_DOES_NOT_EXIST = LoginRefused(2, 0x0A, "session does not exist")


def initiator_allowed(group: InitiatorGroup | None, initiator_name: str, peer_ip: str) -> bool:
    """The ACL check (spec Part A §2.3): names (RFC 3722 case-folded, compared whole) and networks
    (IPv4, IPv6, IPv4-mapped IPv6 as IPv4), or ALL. No group at all means no restriction."""
    if group is None:
        return True
    names = group.initiator_names()
    if names is not None and initiator_name.lower() not in names:
        return False
    nets = group.networks()
    if nets is None:
        return True
    try:
        addr = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for net in nets:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def chap_secrets(cfg: Config, tag: int | None) -> tuple[ChapSecret, ...]:
    """The credentials of auth group `tag`. A user holding two different credentials in one group
    (a configuration stored before the API refused that, issue #10) is ambiguous: neither may log
    in (fail closed), and each login that meets it says so in the log."""
    creds = [ChapSecret(a.user, a.secret, a.peeruser, a.peersecret) for a in cfg.credentials_with_tag(tag)]
    variants: dict[str, set[ChapSecret]] = {}
    for c in creds:
        variants.setdefault(c.user, set()).add(c)
    ambiguous = sorted(user for user, found in variants.items() if len(found) > 1)
    if ambiguous:
        log.warning("auth group %s: users %s have several different credentials; none of them may log "
                    "in until the duplicates are deleted", tag, ", ".join(repr(u) for u in ambiguous))
    out: list[ChapSecret] = []
    for c in creds:
        if len(variants[c.user]) == 1 and c not in out:
            out.append(c)
    return tuple(out)


def effective_method(cfg: Config, method: str | None, tag: int | None) -> str:
    """The authentication a login must pass (issue #11 item 6). ctld derived CHAP from the
    credentials of the auth group, whatever the method said: an auth group holding credentials
    with method "None" still required CHAP (one-way, or mutual when the credential has a peer
    user). We fail closed the same way: any credential in the group, even one `chap_secrets`
    drops as ambiguous, means CHAP."""
    method = method or AUTH_NONE
    if method == AUTH_NONE and cfg.credentials_with_tag(tag):
        return METHOD_CHAP_DERIVED
    return method


class PortalAuthority:
    def __init__(
        self,
        get_config: Callable[[], Config],
        portal_id: int,
        registry: SessionRegistry,
        *,
        peer_ip: str,
        local_host: str,
    ) -> None:
        self._get_config = get_config
        self.portal_id = portal_id
        self.registry = registry
        self.peer_ip = peer_ip
        self.local_host = local_host

    # -- helpers --------------------------------------------------------------------------------
    @property
    def cfg(self) -> Config:
        """The configuration at this moment (API changes apply to the next login)."""
        return self._get_config()

    @property
    def portal(self) -> Portal:
        p = self.cfg.portals.get(self.portal_id)
        return p if p is not None else Portal(id=self.portal_id, tag=1)

    def _group_on_portal(self, target_id: int) -> TargetGroup | None:
        for g in self.cfg.groups_of_target(target_id):
            if g.portalgroup == self.portal.id:
                return g
        return None

    def _visible(self, group: TargetGroup, initiator_name: str) -> bool:
        if group.initiatorgroup is None:
            return True  # FreeNAS: a target group without an authorized initiator is open
        ig = self.cfg.initiators.get(group.initiatorgroup)
        if ig is None:
            return False  # a dangling reference admits nobody (fail closed)
        return initiator_allowed(ig, initiator_name, self.peer_ip)

    # -- LoginAuthority ---------------------------------------------------------------------------
    def discovery_policy(self, initiator_name: str) -> AuthPolicy | LoginRefused:
        if self.portal_id not in self.cfg.portals:
            return SESSION_TYPE_UNSUPPORTED
        group = self.portal.discoveryauthgroup
        return AuthPolicy(
            method=effective_method(self.cfg, self.portal.discoveryauthmethod, group),
            credentials=chap_secrets(self.cfg, group),
            tpgt=self.portal.tag,
        )

    def target_policy(self, target_name: str, initiator_name: str) -> AuthPolicy | LoginRefused:
        target = self.cfg.target_by_iqn(target_name)
        if target is None or self.portal_id not in self.cfg.portals:
            return NOT_FOUND
        group = self._group_on_portal(target.id)
        if group is None:
            return NOT_FOUND
        if not self._visible(group, initiator_name):
            return AUTHORIZATION_FAILURE
        return AuthPolicy(
            method=effective_method(self.cfg, group.authtype, group.authgroup),
            credentials=chap_secrets(self.cfg, group.authgroup),
            tpgt=self.portal.tag,
            alias=target.alias,
        )

    def send_targets(self, initiator_name: str, which: str) -> list[SendTargetsEntry]:
        entries = []
        for target in sorted(self.cfg.targets.values(), key=lambda t: t.name):
            iqn = self.cfg.target_iqn(target)
            if which not in ("All", "") and which.lower() != iqn.lower():
                continue
            group = self._group_on_portal(target.id)
            if group is None or not self._visible(group, initiator_name):
                continue
            addresses = target_addresses(self.cfg, target.id, self.portal_id, self.local_host,
                                         lambda g: self._visible(g, initiator_name))
            entries.append(SendTargetsEntry(iqn, addresses))
        return entries

    def new_session(self, initiator_name: str, isid: int, target_name: str | None, tsih: int) -> int | LoginRefused:
        if tsih:
            # RFC 7143 §6.3.1: a TSIH names a session of this initiator (same name and ISID) to
            # this target; someone else's TSIH is "session does not exist", not a way to probe it
            rec = self.registry.get(tsih)
            if rec is None or not _same_nexus(rec.initiator, rec.isid, rec.target,
                                              initiator_name, isid, target_name):
                return SESSION_DOES_NOT_EXIST
        return self.registry.login(initiator_name, isid, target_name, tsih)


def _same_nexus(initiator: str, isid: int, target: str | None, other_initiator: str, other_isid: int,
                other_target: str | None) -> bool:
    return (initiator.lower(), isid, (target or "").lower()) == (
        other_initiator.lower(), other_isid, (other_target or "").lower())
