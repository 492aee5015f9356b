"""The TargetAddress values a SendTargets answer gives for one target (RFC 7143 §13.8, Appendix C).

Issue #11 item 8. A TargetAddress is `ip:port,tpgt` or `[ipv6]:port,tpgt`. What we advertise:

- every portal group (portal) through which this initiator may reach the target: a target group
  links the target to that portal and its authorized-initiator ACL admits the initiator's name and
  address (as a login there would check it), the portal the discovery connection came through
  first, the others by tag, as ctld lists every portal of every portal group of the target;
- of each such portal, only the addresses of the discovery connection's address family: the
  initiator reached us over that family, and an address of the other one may be unreachable from it
  (`[::1]` told to an IPv4 initiator, `127.0.0.1` to an IPv6-only one). Our listeners are
  single-family (IPV6_V6ONLY), so the connection's family is its listener's;
- a wildcard address (`0.0.0.0`, `::`) of that family stands for every local address: it is
  advertised as the local address the discovery connection reached, with the wildcard's port
  (ctld skips wildcards, which leaves a wildcard-only target with no address at all); a wildcard
  of the other family is not advertised, like any address of that family.

The portal the connection came through always has an address of its family, so a listed target
always has at least one address. Addresses come from the configuration: a portal address that
failed to bind at start-up is still advertised (the failure was logged then).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from ..model import Config, Portal, TargetGroup

WILDCARDS = {4: "0.0.0.0", 6: "::"}


def _family(host: str) -> tuple[int, str]:
    """(4 or 6, the host as advertised); an IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return (6 if ":" in host else 4), host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return 4, str(addr.ipv4_mapped)
    return addr.version, host


def portal_addresses(portal: Portal, local_host: str) -> tuple[str, ...]:
    """This portal's TargetAddress values for a discovery connection whose local address is
    `local_host`: its addresses of that family, wildcards answered with `local_host`."""
    family, local = _family(local_host)
    out: list[str] = []
    for a in portal.ips:
        if _family(a.host)[0] != family:
            continue
        host = local if a.host == WILDCARDS[family] else a.host
        hostpart = f"[{host}]" if family == 6 else host
        out.append(f"{hostpart}:{a.port},{portal.tag}")
    return tuple(dict.fromkeys(out))


def target_addresses(
    cfg: Config, target_id: int, portal_id: int, local_host: str, visible: Callable[[TargetGroup], bool]
) -> tuple[str, ...]:
    """Every TargetAddress of the target for this initiator (see the module docstring);
    `visible(group)` is the ACL check of a target group for the initiator asking."""
    portals = []
    for g in cfg.groups_of_target(target_id):
        portal = cfg.portals.get(g.portalgroup)
        if portal is not None and visible(g):
            portals.append(portal)
    portals.sort(key=lambda p: (p.id != portal_id, p.tag, p.id))
    out: list[str] = []
    for portal in portals:
        out.extend(portal_addresses(portal, local_host))
    return tuple(dict.fromkeys(out))
