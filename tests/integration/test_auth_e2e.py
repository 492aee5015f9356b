"""Issue #4 end to end: CHAP, mutual CHAP, discovery auth and initiator ACLs, configured through
the REST API and exercised with libiscsi's own tools (iscsi-inq, iscsi-ls, iscsi-test-cu).

The real server runs in the test's trio loop from an empty data directory with its API on a free
loopback port; every object is created over HTTP. libiscsi takes CHAP credentials from the URL
(`iscsi://user%secret@host:port/iqn/lun`) and the target's credentials for mutual CHAP from the
URL arguments `target_user` / `target_password` (libiscsi 1.19 `iscsi_parse_url`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.server import admission
from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from pyscsi_target.server.service import TargetService
from tests.support import free_port, run_tool

from .apiclient import ISCSI, ApiClient

BASENAME = "iqn.2005-10.org.freenas.ctl"
ALLOWED_IQN = "iqn.2026-11.org.example:allowed"
STRANGER_IQN = "iqn.2026-11.org.example:stranger"
ALICE, ALICE_SECRET = "alice", "alice-secret-01"
BOB, BOB_SECRET = "bob", "bob-secret-0002"
TARGET_BOB, TARGET_BOB_SECRET = "target-bob", "tgt-bob-secret3"
CAROL, CAROL_SECRET = "carol", "carol-secret-04"
#: target name -> how its target group is configured (authtype, auth tag, ACL key)
TARGETS = {
    "open": ("None", None, "all"),
    "chap": ("CHAP", 1, "all"),
    "mutual": ("CHAP Mutual", 2, "all"),
    "named": ("None", None, "named"),
    "netdeny": ("None", None, "netdeny"),
    "netallow": ("None", None, "netallow"),
    "v6only": ("None", None, "v6only"),
}
#: authorizedinitiator bodies by ACL key
ACLS = {
    "all": {"iscsi_target_initiator_initiators": "ALL", "iscsi_target_initiator_auth_network": "ALL"},
    "named": {"iscsi_target_initiator_initiators": ALLOWED_IQN.upper(),  # names compare case-folded
              "iscsi_target_initiator_auth_network": "ALL"},
    "netdeny": {"iscsi_target_initiator_auth_network": "10.0.0.0/8 192.168.0.0/16 fd00::/8"},
    "netallow": {"iscsi_target_initiator_auth_network": "10.0.0.0/8 127.0.0.0/8"},
    "v6only": {"iscsi_target_initiator_auth_network": "::1/128"},
}
#: iscsi-inq exits 0 and prints the standard INQUIRY data of the LUN
INQUIRY_OK = "Peripheral Device Type"


@dataclass
class Site:
    service: TargetService
    options: ServerOptions
    api: ApiClient
    host: str
    port: int
    port6: int
    objects: dict[str, dict[str, Any]]

    @property
    def portal(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def portal6(self) -> str:
        return f"[::1]:{self.port6}"

    def url(self, target: str, user: str = "", secret: str = "", *, portal: str | None = None,
            target_user: str = "", target_secret: str = "") -> str:
        cred = f"{user}%{secret}@" if user else ""
        args = f"?target_user={target_user}&target_password={target_secret}" if target_user else ""
        return f"iscsi://{cred}{portal or self.portal}/{BASENAME}:{target}/0{args}"

    def discovery_url(self, user: str = "", secret: str = "", *, target_user: str = "",
                      target_secret: str = "") -> str:
        cred = f"{user}%{secret}@" if user else ""
        args = f"?target_user={target_user}&target_password={target_secret}" if target_user else ""
        return f"iscsi://{cred}{self.portal}{args}"


async def build(api: ApiClient, data_dir: Path) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """Two portals (IPv4 and IPv6 loopback), three credentials, one ACL per kind, a target per
    case, all sharing one small File extent as LUN 0."""
    port, port6 = free_port(), free_port()
    o: dict[str, dict[str, Any]] = {}
    o["portal"] = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    o["portal6"] = await api.create("portal", {"iscsi_target_portal_ips": [f"[::1]:{port6}"]})
    o["alice"] = await api.create("authcredential", {
        "iscsi_target_auth_tag": 1, "iscsi_target_auth_user": ALICE, "iscsi_target_auth_secret": ALICE_SECRET})
    o["bob"] = await api.create("authcredential", {
        "iscsi_target_auth_tag": 2, "iscsi_target_auth_user": BOB, "iscsi_target_auth_secret": BOB_SECRET,
        "iscsi_target_auth_peeruser": TARGET_BOB, "iscsi_target_auth_peersecret": TARGET_BOB_SECRET})
    o["carol"] = await api.create("authcredential", {
        "iscsi_target_auth_tag": 3, "iscsi_target_auth_user": CAROL, "iscsi_target_auth_secret": CAROL_SECRET})
    for key, body in ACLS.items():
        o[f"acl-{key}"] = await api.create("authorizedinitiator", body)
    o["extent"] = await api.create("extent", {
        "iscsi_target_extent_name": "authlun", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(data_dir / "extents" / "authlun.img"),
        "iscsi_target_extent_filesize": "4MB"})
    for name, (authtype, tag, acl) in TARGETS.items():
        target = o[name] = await api.create("target", {"iscsi_target_name": name})
        for portal in ("portal", "portal6"):
            group = {"iscsi_target": target["id"], "iscsi_target_portalgroup": o[portal]["id"],
                     "iscsi_target_initiatorgroup": o[f"acl-{acl}"]["id"], "iscsi_target_authtype": authtype}
            if tag is not None:
                group["iscsi_target_authgroup"] = tag
            o[f"group-{name}-{portal}"] = await api.create("targetgroup", group)
        await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": o["extent"]["id"],
                                            "iscsi_lunid": 0})
    return port, port6, o


@pytest.fixture
async def site(nursery: trio.Nursery, tmp_path: Path) -> Site:
    options = ServerOptions(data_dir=tmp_path / "data", api=f"127.0.0.1:{free_port()}")
    service = await nursery.start(serve, options)
    api = ApiClient.for_server(options)
    port, port6, objects = await build(api, options.data_dir)
    return Site(service, options, api, "127.0.0.1", port, port6, objects)


async def inq(url: str, initiator: str = ALLOWED_IQN) -> tuple[bool, str]:
    """iscsi-inq: (logged in and read INQUIRY data, all its output)."""
    res = await run_tool("iscsi-inq", "-i", initiator, url, check=False)
    out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    return res.returncode == 0 and INQUIRY_OK in out, out


async def listed(url: str, initiator: str = ALLOWED_IQN) -> tuple[int, list[str]]:
    """iscsi-ls: (exit status, the target names listed)."""
    res = await run_tool("iscsi-ls", "-i", initiator, url, check=False)
    out = res.stdout.decode(errors="replace")
    return res.returncode, sorted(m.group(1) for m in re.finditer(r"Target:(\S+) Portal:", out))


def iqns(*names: str) -> list[str]:
    return sorted(f"{BASENAME}:{n}" for n in names)


def login_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the target logged about logins and connections (the records an operator reads)."""
    return "\n".join(r.getMessage() for r in caplog.records
                     if r.name in ("pyscsi_target.login", "pyscsi_target.connection"))


AUTH_FAILURE = "Status: Authentication failure(513)"  # libiscsi's text for 0x0201
AUTHORIZATION_FAILURE = "Status: Authorization failure(514)"  # 0x0202


# ---- CHAP and mutual CHAP ----------------------------------------------------------------------


async def test_chap_admits_the_right_credentials_only(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyscsi_target")
    ok, out = await inq(site.url("chap", ALICE, ALICE_SECRET))
    assert ok, out
    # the success line names the method and the CHAP user (issue #13 item 5)
    assert re.search(rf"login: {re.escape(ALLOWED_IQN)} \(127\.0\.0\.1:\d+\) -> {re.escape(BASENAME)}:chap, "
                     rf"Normal session, TSIH \d+, auth CHAP as '{ALICE}'", login_log(caplog)), login_log(caplog)
    for url in (site.url("chap"),  # no credentials: the security stage cannot be skipped
                site.url("chap", ALICE, "wrong-secret-00"),
                site.url("chap", ALICE + "x", ALICE_SECRET),  # user names match exactly
                ):
        ok, out = await inq(url)
        assert not ok and AUTH_FAILURE in out, (url, out)
    logged = login_log(caplog)
    failures = re.findall(r"login failed: initiator (\S+) at (\S+), target (\S+): status 0x0201", logged)
    assert len(failures) == 3, logged
    assert {f[0] for f in failures} == {ALLOWED_IQN}
    assert all(f[1].startswith("127.0.0.1:") and f[2] == f"{BASENAME}:chap" for f in failures)
    for secret in (ALICE_SECRET, "wrong-secret-00"):
        assert secret not in caplog.text


async def test_a_credential_of_another_auth_group_is_refused(site: Site) -> None:
    ok, out = await inq(site.url("chap", CAROL, CAROL_SECRET))  # valid, but in auth group 3
    assert not ok and AUTH_FAILURE in out, out


async def test_mutual_chap(site: Site) -> None:
    ok, out = await inq(site.url("mutual", BOB, BOB_SECRET, target_user=TARGET_BOB,
                                 target_secret=TARGET_BOB_SECRET))
    assert ok, out
    # the target proves itself with the peer secret: libiscsi refuses a target it cannot verify
    ok, out = await inq(site.url("mutual", BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret="not-the-peer-1"))
    assert not ok and "Invalid CHAP_R response from the target" in out, out
    # CHAP Mutual on the target group: one-way CHAP is not enough
    ok, out = await inq(site.url("mutual", BOB, BOB_SECRET))
    assert not ok and AUTH_FAILURE in out, out
    ok, out = await inq(site.url("mutual", BOB, "bad-bob-secret", target_user=TARGET_BOB,
                                 target_secret=TARGET_BOB_SECRET))
    assert not ok and AUTH_FAILURE in out, out


async def test_a_one_way_chap_target_refuses_a_mutual_request(site: Site) -> None:
    """Issue #11 item 6 (docs/api.md): method CHAP is one-way, as ctld had it (FreeNAS gave a CHAP
    group's credentials no peer secret): an initiator asking the target to authenticate itself is
    refused (0x0201), even when the credential has a peer user; one-way logs in."""
    await site.api.put(f"{ISCSI}/targetgroup/{site.objects['group-chap-portal']['id']}/",
                       {"iscsi_target_authgroup": 2})
    ok, out = await inq(site.url("chap", BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret=TARGET_BOB_SECRET))
    assert not ok and AUTH_FAILURE in out, out
    ok, out = await inq(site.url("chap", BOB, BOB_SECRET))
    assert ok, out


async def test_an_auth_group_with_credentials_requires_chap_whatever_the_method(site: Site) -> None:
    """Issue #11 item 6: ctld derived CHAP from the auth group's credentials, so method "None" with
    an auth group holding credentials required CHAP (one-way, or mutual where the credential has a
    peer user). Fail closed: no login without them, for targets and for discovery."""
    group = f"{ISCSI}/targetgroup/{site.objects['group-open-portal']['id']}/"
    reply = await site.api.put(group, {"iscsi_target_authtype": "None", "iscsi_target_authgroup": 2})
    assert reply.status == 200, reply.body
    ok, out = await inq(site.url("open"))
    assert not ok and AUTH_FAILURE in out, out
    ok, out = await inq(site.url("open", CAROL, CAROL_SECRET))  # a credential of another group
    assert not ok and AUTH_FAILURE in out, out
    ok, out = await inq(site.url("open", BOB, BOB_SECRET))
    assert ok, out
    ok, out = await inq(site.url("open", BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret=TARGET_BOB_SECRET))
    assert ok, out
    portal = f"{ISCSI}/portal/{site.objects['portal']['id']}/"
    reply = await site.api.put(portal, {"iscsi_target_portal_discoveryauthmethod": "None",
                                        "iscsi_target_portal_discoveryauthgroup": 1})
    assert reply.status == 200, reply.body
    status, names = await listed(site.discovery_url())
    assert status != 0 and names == []
    assert await listed(site.discovery_url(ALICE, ALICE_SECRET)) == (
        0, iqns("chap", "mutual", "named", "netallow", "open"))


# ---- initiator ACLs ----------------------------------------------------------------------------


async def test_initiator_name_acl(site: Site) -> None:
    ok, out = await inq(site.url("named"), ALLOWED_IQN)  # the ACL spells it in capitals
    assert ok, out
    ok, out = await inq(site.url("named"), STRANGER_IQN)
    assert not ok and AUTHORIZATION_FAILURE in out, out
    ok, out = await inq(site.url("named"), ALLOWED_IQN + "x")  # no prefix match
    assert not ok and AUTHORIZATION_FAILURE in out, out


async def test_network_acl_ipv4_and_ipv6(site: Site) -> None:
    """The kernel picks 127.0.0.1 (or ::1) as our source address: an ACL without 127.0.0.0/8 refuses
    us, one with it admits us, and an IPv6-only ACL admits us only over the IPv6 portal."""
    ok, out = await inq(site.url("netallow"))
    assert ok, out
    ok, out = await inq(site.url("netdeny"))
    assert not ok and AUTHORIZATION_FAILURE in out, out
    ok, out = await inq(site.url("v6only"))
    assert not ok and AUTHORIZATION_FAILURE in out, out
    ok, out = await inq(site.url("v6only", portal=site.portal6))
    assert ok, out
    ok, out = await inq(site.url("netallow", portal=site.portal6))
    assert not ok and AUTHORIZATION_FAILURE in out, out


async def test_discovery_lists_only_the_targets_the_initiator_may_reach(site: Site) -> None:
    assert await listed(site.discovery_url(), ALLOWED_IQN) == (
        0, iqns("chap", "mutual", "named", "netallow", "open"))
    assert await listed(site.discovery_url(), STRANGER_IQN) == (0, iqns("chap", "mutual", "netallow", "open"))
    assert await listed(f"iscsi://{site.portal6}", ALLOWED_IQN) == (0, iqns("chap", "mutual", "named", "open",
                                                                             "v6only"))


# ---- discovery authentication ------------------------------------------------------------------


async def test_discovery_chap(site: Site) -> None:
    portal = f"{ISCSI}/portal/{site.objects['portal']['id']}/"
    reply = await site.api.put(portal, {"iscsi_target_portal_discoveryauthmethod": "CHAP",
                                        "iscsi_target_portal_discoveryauthgroup": 1})
    assert reply.status == 200, reply.body
    everything = iqns("chap", "mutual", "named", "netallow", "open")
    assert await listed(site.discovery_url(ALICE, ALICE_SECRET)) == (0, everything)
    for url in (site.discovery_url(), site.discovery_url(ALICE, "wrong-secret-00"),
                site.discovery_url(CAROL, CAROL_SECRET)):
        status, names = await listed(url)
        assert status != 0 and names == [], url


async def test_discovery_mutual_chap(site: Site) -> None:
    portal = f"{ISCSI}/portal/{site.objects['portal']['id']}/"
    reply = await site.api.put(portal, {"iscsi_target_portal_discoveryauthmethod": "CHAP Mutual",
                                        "iscsi_target_portal_discoveryauthgroup": 2})
    assert reply.status == 200, reply.body
    everything = iqns("chap", "mutual", "named", "netallow", "open")
    url = site.discovery_url(BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret=TARGET_BOB_SECRET)
    assert await listed(url) == (0, everything)
    for url in (site.discovery_url(BOB, BOB_SECRET),  # one-way is not enough
                site.discovery_url(BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret="not-the-peer-1")):
        status, names = await listed(url)
        assert status != 0 and names == [], url


# ---- changes through the API apply to the next login -------------------------------------------


async def test_credential_and_auth_changes_apply_to_the_next_login(site: Site) -> None:
    alice = f"{ISCSI}/authcredential/{site.objects['alice']['id']}/"
    assert (await site.api.put(alice, {"iscsi_target_auth_secret": "alice-new-0001"})).status == 200
    ok, out = await inq(site.url("chap", ALICE, "alice-new-0001"))
    assert ok, out
    ok, out = await inq(site.url("chap", ALICE, ALICE_SECRET))
    assert not ok and AUTH_FAILURE in out, out
    group = f"{ISCSI}/targetgroup/{site.objects['group-open-portal']['id']}/"
    reply = await site.api.put(group, {"iscsi_target_authtype": "CHAP", "iscsi_target_authgroup": 3})
    assert reply.status == 200, reply.body
    ok, out = await inq(site.url("open", CAROL, CAROL_SECRET))
    assert ok, out
    ok, out = await inq(site.url("open"))
    assert not ok and AUTH_FAILURE in out, out


async def test_deleting_the_credentials_of_a_chap_group_locks_it(site: Site) -> None:
    """FreeNAS cascades nothing from a credential: the group keeps a tag without secrets, and no
    CHAP login can succeed against it (fail closed)."""
    assert (await site.api.delete(f"{ISCSI}/authcredential/{site.objects['alice']['id']}/")).status == 204
    ok, out = await inq(site.url("chap", ALICE, ALICE_SECRET))
    assert not ok and AUTH_FAILURE in out, out


async def test_deleting_an_acl_in_use_is_refused_and_leaves_it_enforced(site: Site) -> None:
    named = site.objects["acl-named"]["id"]
    reply = await site.api.delete(f"{ISCSI}/authorizedinitiator/{named}/")
    assert reply.status == 409, reply.body
    assert "would open their targets to every initiator" in reply.json()["__all__"][0]
    ok, out = await inq(site.url("named"), STRANGER_IQN)
    assert not ok and AUTHORIZATION_FAILURE in out, out
    for portal in ("portal", "portal6"):  # move the groups to another ACL, then the delete works
        group = f"{ISCSI}/targetgroup/{site.objects[f'group-named-{portal}']['id']}/"
        reply = await site.api.put(group, {"iscsi_target_initiatorgroup": site.objects["acl-netallow"]["id"]})
        assert reply.status == 200, reply.body
    assert (await site.api.delete(f"{ISCSI}/authorizedinitiator/{named}/")).status == 204
    ok, out = await inq(site.url("named"), STRANGER_IQN)
    assert ok, out


# ---- libiscsi's conformance suite over CHAP ----------------------------------------------------

#: libiscsi 1.19's iscsi-test-cu has no CHAP-specific test (`iscsi-test-cu -l | grep -i chap` is
#: empty): every test logs in afresh with the URL's credentials, so its iSCSI family and a SCSI
#: suite run over one-way and mutual CHAP must give exactly the results they give without.
CONFORMANCE_FAMILIES = ("iSCSI", "SCSI.TestUnitReady", "SCSI.Read10", "SCSI.Write10")


@pytest.mark.conformance
@pytest.mark.parametrize("family", CONFORMANCE_FAMILIES)
async def test_libiscsi_suite_over_chap_matches_no_auth(site: Site, family: str) -> None:
    from tests.conformance.conftest import run_conformance

    urls = {"none": site.url("open"), "chap": site.url("chap", ALICE, ALICE_SECRET),
            "mutual": site.url("mutual", BOB, BOB_SECRET, target_user=TARGET_BOB, target_secret=TARGET_BOB_SECRET)}
    runs = {name: await run_conformance(url, family) for name, url in urls.items()}
    baseline, one_way, mutual = runs["none"], runs["chap"], runs["mutual"]
    assert baseline.counts["passed"] > 0, baseline.summary()
    for run in (one_way, mutual):
        assert run.results == baseline.results, (run.summary(), run.output[-4000:])



# ---- the login slow-down punishes the failing initiator only (issue #10) ------------------------


async def test_an_initiator_failing_chap_does_not_slow_down_its_neighbour(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """libiscsi from one host: one initiator name keeps failing CHAP; it is answered late, and
    another initiator name from the same address logs in without waiting, with the right secret
    and after protocol errors of its own (an unknown target)."""
    caplog.set_level(logging.INFO, logger="pyscsi_target")
    for _ in range(admission.FAILURES_BEFORE_DELAY + 2):
        ok, out = await inq(site.url("chap", ALICE, "wrong-secret-00"), initiator=STRANGER_IQN)
        assert not ok and AUTH_FAILURE in out, out
        ok, out = await inq(site.url("nothere", ALICE, ALICE_SECRET))
        assert not ok, out
    ok, out = await inq(site.url("chap", ALICE, ALICE_SECRET))
    assert ok, out
    delayed = re.findall(r"login of (\S+) from 127\.0\.0\.1:\d+ answered after ([0-9.]+) s", login_log(caplog))
    assert [float(s) for name, s in delayed if name == STRANGER_IQN] == [
        admission.FIRST_FAILURE_DELAY_S, 2 * admission.FIRST_FAILURE_DELAY_S], delayed
    assert all(name == STRANGER_IQN for name, _ in delayed), delayed
