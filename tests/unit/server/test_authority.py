"""`PortalAuthority` against real configurations: target visibility per portal, initiator ACLs by
name and network (IPv4, IPv6, IPv4-mapped), CHAP policies of target groups and portals, SendTargets
filtering and the TSIH checks of new_session (RFC 7143 §6.3.1, §11.13.5)."""

from __future__ import annotations

import pytest

from pyscsi_target.model import (
    AuthCredential,
    Config,
    InitiatorGroup,
    Portal,
    PortalAddress,
    Target,
    TargetGroup,
)
from pyscsi_target.protocol.authority import AuthPolicy, ChapSecret, LoginRefused, SendTargetsEntry
from pyscsi_target.protocol.chap import METHOD_CHAP_DERIVED
from pyscsi_target.server.authority import PortalAuthority, initiator_allowed
from pyscsi_target.server.sessions import SessionRegistry

BASE = "iqn.2005-10.org.freenas.ctl"
ALICE = "iqn.2026-11.org.example:alice"
BOB = "iqn.2026-11.org.example:bob"
NOT_FOUND = (2, 0x03)
DENIED = (2, 0x02)


def group(names: str = "ALL", networks: str = "ALL") -> InitiatorGroup:
    return InitiatorGroup(id=1, tag=1, initiators=names, auth_network=networks)


# ---- the ACL check -----------------------------------------------------------------------------


@pytest.mark.parametrize(("names", "networks", "who", "ip", "allowed"), [
    ("ALL", "ALL", ALICE, "192.0.2.1", True),
    ("", "", ALICE, "192.0.2.1", True),  # empty is ALL (FreeNAS)
    (ALICE, "ALL", ALICE, "192.0.2.1", True),
    (ALICE.upper(), "ALL", ALICE, "192.0.2.1", True),  # RFC 3722: names compare case-folded
    (ALICE, "ALL", ALICE.upper(), "192.0.2.1", True),
    (ALICE, "ALL", ALICE + "x", "192.0.2.1", False),  # whole names, never a prefix
    (ALICE, "ALL", ALICE[:-1], "192.0.2.1", False),
    (f"{BOB}, {ALICE}", "ALL", ALICE, "192.0.2.1", True),
    (f"{BOB}\nALL", "ALL", ALICE, "192.0.2.1", True),
    ("ALL", "10.0.0.0/8", ALICE, "10.255.0.1", True),
    ("ALL", "10.0.0.0/8", ALICE, "11.0.0.1", False),
    ("ALL", "10.1.2.3", ALICE, "10.1.2.3", True),  # a single address
    ("ALL", "10.1.2.3", ALICE, "10.1.2.4", False),
    ("ALL", "10.1.2.3/24", ALICE, "10.1.2.200", True),  # host bits tolerated (strict=False)
    ("ALL", "fd00::/8", ALICE, "fd12::1", True),
    ("ALL", "fd00::/8", ALICE, "fe80::1", False),
    ("ALL", "fe80::/10", ALICE, "fe80::1%eth0", True),  # a scope id is not part of the address
    ("ALL", "10.0.0.0/8", ALICE, "::ffff:10.9.9.9", True),  # IPv4-mapped IPv6 is its IPv4 address
    ("ALL", "::ffff:0:0/96", ALICE, "::ffff:10.9.9.9", False),
    ("ALL", "10.0.0.0/8", ALICE, "not-an-address", False),
    ("ALL", "garbage 10.0.0.0/8", ALICE, "10.0.0.1", True),  # unparsable entries never match
    ("ALL", "garbage", ALICE, "10.0.0.1", False),
    (ALICE, "10.0.0.0/8", ALICE, "11.0.0.1", False),  # both must allow
    (BOB, "10.0.0.0/8", ALICE, "10.0.0.1", False),
])
def test_initiator_allowed(names: str, networks: str, who: str, ip: str, allowed: bool) -> None:
    assert initiator_allowed(group(names, networks), who, ip) is allowed


def test_no_group_means_no_restriction() -> None:
    assert initiator_allowed(None, ALICE, "192.0.2.1")


# ---- policies from a configuration ---------------------------------------------------------------


def config() -> Config:
    """Portals 1 (tag 1, 10.0.0.1:3260) and 2 (tag 2, wildcard); targets: open (portal 1, no
    ACL), acl (portal 1, ALICE from 10/8), chap (portals 1 and 2, CHAP tag 5), hidden (portal 2),
    dangling (portal 1, ACL id 99 that does not exist), mutual (portal 1, CHAP Mutual tag 6)."""
    cfg = Config()
    cfg.portals[1] = Portal(id=1, tag=1, ips=[PortalAddress("10.0.0.1", 3260)])
    cfg.portals[2] = Portal(id=2, tag=2, ips=[PortalAddress("0.0.0.0", 3261), PortalAddress("::", 3262)],
                            discoveryauthmethod="CHAP", discoveryauthgroup=6)
    cfg.initiators[1] = InitiatorGroup(id=1, tag=1, initiators=ALICE, auth_network="10.0.0.0/8")
    cfg.auths[1] = AuthCredential(1, 5, "u5", "secret-five-05")
    cfg.auths[2] = AuthCredential(2, 5, "u5b", "secret-five-5b")
    cfg.auths[3] = AuthCredential(3, 6, "u6", "secret-six-006", "peer6", "peer-six-0006")
    for tid, name in enumerate(["open", "acl", "chap", "hidden", "dangling", "mutual"], start=1):
        cfg.targets[tid] = Target(id=tid, name=name)
    groups = [(1, 1, None, "None", None), (2, 1, 1, "None", None), (3, 1, None, "CHAP", 5),
              (3, 2, None, "CHAP", 5), (4, 2, None, "None", None), (5, 1, 99, "None", None),
              (6, 1, None, "CHAP Mutual", 6)]
    for gid, (target, portal, ig, authtype, authgroup) in enumerate(groups, start=1):
        cfg.targetgroups[gid] = TargetGroup(id=gid, target=target, portalgroup=portal, initiatorgroup=ig,
                                            authtype=authtype, authgroup=authgroup)
    return cfg


def authority(portal_id: int = 1, peer_ip: str = "10.1.1.1", cfg: Config | None = None,
              registry: SessionRegistry | None = None) -> PortalAuthority:
    current = cfg or config()
    registry = registry if registry is not None else SessionRegistry()
    return PortalAuthority(lambda: current, portal_id, registry, peer_ip=peer_ip,
                           local_host="10.0.0.1")


def refused(result: object) -> tuple[int, int]:
    assert isinstance(result, LoginRefused), result
    return result.status_class, result.status_detail


def test_open_target_policy() -> None:
    assert authority().target_policy(f"{BASE}:open", BOB) == AuthPolicy(method="None", credentials=(), tpgt=1)


def test_target_names_compare_case_folded() -> None:
    assert isinstance(authority().target_policy(f"{BASE}:OPEN".upper(), BOB), AuthPolicy)


@pytest.mark.parametrize(("portal", "name"), [(1, "nothere"), (1, "hidden"), (2, "open"), (3, "open")])
def test_unknown_or_unreachable_targets_are_not_found(portal: int, name: str) -> None:
    """A target that exists but not behind this portal answers exactly like one that does not."""
    assert refused(authority(portal).target_policy(f"{BASE}:{name}", ALICE)) == NOT_FOUND


@pytest.mark.parametrize(("who", "ip", "status"), [
    (ALICE, "10.1.1.1", None), (BOB, "10.1.1.1", DENIED), (ALICE, "192.0.2.1", DENIED)])
def test_acl_decides_authorization(who: str, ip: str, status: tuple[int, int] | None) -> None:
    result = authority(peer_ip=ip).target_policy(f"{BASE}:acl", who)
    if status is None:
        assert isinstance(result, AuthPolicy)
    else:
        assert refused(result) == status


def test_a_dangling_acl_reference_admits_nobody() -> None:
    assert refused(authority().target_policy(f"{BASE}:dangling", ALICE)) == DENIED


def test_a_user_with_two_different_credentials_in_a_group_logs_in_with_neither(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue #10: a configuration stored before the API refused duplicates fails closed; the same
    credential stored twice stays one credential."""
    cfg = config()
    cfg.auths[4] = AuthCredential(4, 5, "u5", "another-secret")
    cfg.auths[5] = AuthCredential(5, 5, "u5b", "secret-five-5b")
    policy = authority(2, cfg=cfg).target_policy(f"{BASE}:chap", BOB)
    assert policy == AuthPolicy(method="CHAP", credentials=(ChapSecret("u5b", "secret-five-5b"),), tpgt=2)
    assert "auth group 5: users 'u5' have several different credentials" in caplog.text
    assert "another-secret" not in caplog.text and "secret-five" not in caplog.text


def test_chap_policy_carries_exactly_the_credentials_of_its_tag() -> None:
    policy = authority(2).target_policy(f"{BASE}:chap", BOB)
    assert policy == AuthPolicy(method="CHAP", credentials=(ChapSecret("u5", "secret-five-05"),
                                                            ChapSecret("u5b", "secret-five-5b")), tpgt=2)
    mutual = authority().target_policy(f"{BASE}:mutual", BOB)
    assert mutual == AuthPolicy(method="CHAP Mutual", tpgt=1, credentials=(
        ChapSecret("u6", "secret-six-006", "peer6", "peer-six-0006"),))


def test_a_chap_group_whose_credentials_are_gone_has_none() -> None:
    cfg = config()
    del cfg.auths[1], cfg.auths[2]
    policy = authority(cfg=cfg).target_policy(f"{BASE}:chap", BOB)
    assert isinstance(policy, AuthPolicy) and policy.method == "CHAP" and policy.credentials == ()


def test_discovery_policy_comes_from_the_portal() -> None:
    assert authority(1).discovery_policy(BOB) == AuthPolicy(method="None", credentials=(), tpgt=1)
    assert authority(2).discovery_policy(BOB) == AuthPolicy(method="CHAP", tpgt=2, credentials=(
        ChapSecret("u6", "secret-six-006", "peer6", "peer-six-0006"),))
    assert refused(authority(7).discovery_policy(BOB)) == (2, 0x09)  # the portal was deleted


def test_an_auth_group_with_credentials_requires_chap_whatever_the_method() -> None:
    """Issue #11 item 6: ctld derived CHAP from the auth group's credentials; method None with a
    group that holds some (even only ambiguous ones) still requires CHAP. An empty group does not."""
    cfg = config()
    cfg.targetgroups[1].authgroup = 5
    cfg.portals[1].discoveryauthgroup = 6
    auth = authority(cfg=cfg)
    target = auth.target_policy(f"{BASE}:open", BOB)
    assert isinstance(target, AuthPolicy) and target.method == METHOD_CHAP_DERIVED
    assert [c.user for c in target.credentials] == ["u5", "u5b"]
    discovery = auth.discovery_policy(BOB)
    assert isinstance(discovery, AuthPolicy) and discovery.method == METHOD_CHAP_DERIVED
    cfg.auths[4] = AuthCredential(4, 5, "u5", "another-secret-5")  # u5 ambiguous: dropped, still CHAP
    cfg.auths.pop(2)
    target = auth.target_policy(f"{BASE}:open", BOB)
    assert isinstance(target, AuthPolicy) and (target.method, target.credentials) == (METHOD_CHAP_DERIVED, ())
    cfg.targetgroups[1].authgroup = 42  # a tag without credentials: as FreeNAS, no authentication
    assert auth.target_policy(f"{BASE}:open", BOB) == AuthPolicy(method="None", credentials=(), tpgt=1)


def test_changes_apply_to_the_next_question() -> None:
    cfg = config()
    auth = authority(cfg=cfg)
    assert isinstance(auth.target_policy(f"{BASE}:open", BOB), AuthPolicy)
    cfg.targetgroups[1].initiatorgroup = 1
    assert refused(auth.target_policy(f"{BASE}:open", BOB)) == DENIED


# ---- SendTargets -------------------------------------------------------------------------------------


def test_send_targets_lists_what_the_initiator_may_reach_through_this_portal() -> None:
    names = [e.target_name for e in authority(peer_ip="10.1.1.1").send_targets(ALICE, "All")]
    assert names == [f"{BASE}:{n}" for n in ("acl", "chap", "mutual", "open")]
    names = [e.target_name for e in authority(peer_ip="10.1.1.1").send_targets(BOB, "All")]
    assert names == [f"{BASE}:{n}" for n in ("chap", "mutual", "open")]
    names = [e.target_name for e in authority(peer_ip="192.0.2.1").send_targets(ALICE, "All")]
    assert names == [f"{BASE}:{n}" for n in ("chap", "mutual", "open")]


def test_send_targets_of_one_name() -> None:
    assert authority().send_targets(ALICE, f"{BASE}:ACL".upper()) == [
        SendTargetsEntry(f"{BASE}:acl", ("10.0.0.1:3260,1",))]
    assert authority().send_targets(BOB, f"{BASE}:acl") == []  # not allowed: not listed
    assert authority().send_targets(BOB, f"{BASE}:hidden") == []  # not behind this portal


def test_send_targets_lists_every_portal_group_of_the_target() -> None:
    """Issue #11 item 8: the chap target is on portals 1 and 2; discovery through portal 1 lists
    both (its own first), portal 2's IPv4 wildcard as the address reached, not its IPv6 one."""
    assert authority().send_targets(BOB, f"{BASE}:chap") == [
        SendTargetsEntry(f"{BASE}:chap", ("10.0.0.1:3260,1", "10.0.0.1:3261,2"))]


def test_target_policy_carries_the_alias() -> None:
    """Issue #11 item 3: the alias the login sends as TargetAlias."""
    cfg = config()
    cfg.targets[1].alias = "open disk"
    policy = authority(cfg=cfg).target_policy(f"{BASE}:open", BOB)
    assert isinstance(policy, AuthPolicy) and policy.alias == "open disk"
    policy = authority().target_policy(f"{BASE}:open", BOB)
    assert isinstance(policy, AuthPolicy) and policy.alias is None


# ---- new_session: TSIH checks (RFC 7143 §6.3.1) ----------------------------------------------------------


def test_new_session_and_the_tsih_of_someone_else() -> None:
    registry = SessionRegistry()
    auth = authority(registry=registry)
    tsih = auth.new_session(ALICE, 0x1234, f"{BASE}:open", 0)
    assert isinstance(tsih, int) and tsih > 0
    # the same nexus adding a connection: we negotiate MaxConnections=1
    assert refused(auth.new_session(ALICE, 0x1234, f"{BASE}:open", tsih)) == (2, 0x06)
    assert refused(auth.new_session(ALICE.upper(), 0x1234, f"{BASE}:OPEN", tsih)) == (2, 0x06)
    # another initiator, another ISID or another target naming that TSIH: it does not exist for them
    for who, isid, target in ((BOB, 0x1234, "open"), (ALICE, 0x9999, "open"), (ALICE, 0x1234, "acl")):
        assert refused(auth.new_session(who, isid, f"{BASE}:{target}", tsih)) == (2, 0x0A)
    assert refused(auth.new_session(ALICE, 0x1234, f"{BASE}:open", tsih + 1)) == (2, 0x0A)
    assert len(registry) == 1
