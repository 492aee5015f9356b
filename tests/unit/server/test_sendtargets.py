"""TargetAddress values of SendTargets (RFC 7143 §13.8, Appendix C; issue #11 item 8): only the
discovery connection's address family, wildcards as the local address reached, every portal
group through which the initiator may reach the target."""

from __future__ import annotations

import pytest

from pyscsi_target.model import Config, InitiatorGroup, Portal, PortalAddress, Target, TargetGroup
from pyscsi_target.server.sendtargets import portal_addresses, target_addresses

DUAL = Portal(id=2, tag=2, ips=[PortalAddress("0.0.0.0", 3261), PortalAddress("::", 3262)])
MIXED = Portal(id=3, tag=3, ips=[PortalAddress("127.0.0.1", 3263), PortalAddress("::1", 3264),
                                 PortalAddress("::", 3265)])


@pytest.mark.parametrize(("portal", "local", "expected"), [
    (DUAL, "192.0.2.7", ("192.0.2.7:3261,2",)),
    (DUAL, "fd00::7", ("[fd00::7]:3262,2",)),
    (DUAL, "::ffff:192.0.2.7", ("192.0.2.7:3261,2",)),  # an IPv4-mapped address is IPv4
    (MIXED, "127.0.0.1", ("127.0.0.1:3263,3",)),
    (MIXED, "::1", ("[::1]:3264,3", "[::1]:3265,3")),
    (MIXED, "fd00::7", ("[::1]:3264,3", "[fd00::7]:3265,3")),
])
def test_portal_addresses_of_the_connections_family(portal: Portal, local: str, expected: tuple[str, ...]) -> None:
    assert portal_addresses(portal, local) == expected


def test_a_wildcard_and_its_own_address_on_one_port_are_listed_once() -> None:
    portal = Portal(id=1, tag=1, ips=[PortalAddress("::", 3260), PortalAddress("::1", 3260)])
    assert portal_addresses(portal, "::1") == ("[::1]:3260,1",)


def config() -> Config:
    """Target 1 on portals 1 (10.0.0.1, ::1), 2 (wildcards) and 3 (ACL: ALICE only)."""
    cfg = Config()
    cfg.portals[1] = Portal(id=1, tag=1, ips=[PortalAddress("10.0.0.1", 3260), PortalAddress("::1", 3260)])
    cfg.portals[2] = DUAL
    cfg.portals[3] = Portal(id=3, tag=3, ips=[PortalAddress("10.0.0.3", 3260)])
    cfg.targets[1] = Target(id=1, name="t")
    cfg.initiators[1] = InitiatorGroup(id=1, tag=1, initiators="iqn.2026-11.org.example:alice")
    cfg.targetgroups[1] = TargetGroup(id=1, target=1, portalgroup=3, initiatorgroup=1)
    cfg.targetgroups[2] = TargetGroup(id=2, target=1, portalgroup=1)
    cfg.targetgroups[3] = TargetGroup(id=3, target=1, portalgroup=2)
    return cfg


def test_every_reachable_portal_group_this_portal_first() -> None:
    cfg = config()

    def everyone(g: TargetGroup) -> bool:
        return True

    def not_through_acl(g: TargetGroup) -> bool:
        return g.initiatorgroup is None

    assert target_addresses(cfg, 1, 2, "10.0.0.1", everyone) == (
        "10.0.0.1:3261,2", "10.0.0.1:3260,1", "10.0.0.3:3260,3")
    assert target_addresses(cfg, 1, 1, "10.0.0.1", not_through_acl) == ("10.0.0.1:3260,1", "10.0.0.1:3261,2")
    assert target_addresses(cfg, 1, 1, "::1", everyone) == ("[::1]:3260,1", "[::1]:3262,2")
