"""The real Linux initiator against the real target (issue #16): open-iscsi (`iscsi_tcp`) and
dm-multipath in a Debian kernel booted under QEMU (TCG), one boot per scenario.

- basic: discovery, logins without auth / CHAP / mutual CHAP / a wrong secret, the disk's facts and
  queue limits, the negotiated session, O_DIRECT, WRITE SAME zeroing, UNMAP, ext4 + fsck + fstrim,
  logout/login with the data kept;
- restart: the target (a subprocess) stopped with SIGTERM, then killed with SIGKILL, in the middle of
  an O_DIRECT `dd` onto ext4, restarted on the same data; the write finishes, the data verifies;
- multipath: two portals, dm-multipath over both sessions; while a writer runs through the map,
  each portal is deleted through the v1.0 API and added back.

The host acts when the guest prints `SYNC <word>` on the console, never after a fixed sleep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from tests.integration.apiclient import ISCSI, ApiClient
from tests.integration.reliability import READY_MARKER, ServerProcess
from tests.support import DEMO_IQN, free_port

from .build import Guest
from .guest import GUEST_ISCSI_PORT, GUEST_PORTALS, Boot, boot, need_guest

pytestmark = pytest.mark.linux_initiator

BASENAME = "iqn.2005-10.org.freenas.ctl"
INITIATOR = "iqn.2026-12.org.pyscsi.test:linux-guest"
CHAP_USER, CHAP_SECRET = "guest-chap", "guest-secret-01"
MUTUAL_USER, MUTUAL_SECRET = "guest-mutual", "guest-secret-02"
MUTUAL_PEER, MUTUAL_PEER_SECRET = "target-mutual", "target-secret-3"
#: the LUN the file-system checks run on, bytes (small: TCG is slow)
DISK_BYTES = 96 << 20
SMALL_DISK = "8MB"
#: MiB the restart and multipath writers copy per pass
SRC_MB = 8
#: seconds a whole scenario may take in the guest (each check has its own, smaller bound)
SCENARIO_TIMEOUT_S = 420.0
#: dmesg lines that would mean a problem the target caused, outside fault injection
BAD_DMESG = ("Sense Key", "Add. Sense", "Unhandled", "I/O error", "Call Trace", "WARNING", "BUG",
             "detected conn error", "timing out command", "rejected", "unsupported")

#: a summary for the closing report (`-s` shows it): boot and scenario times
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def guest() -> Guest:
    t0 = time.monotonic()
    g = need_guest()
    TIMES["build-or-cache"] = time.monotonic() - t0
    return g


def guest_env(scenario: str, **extra: str) -> dict[str, str]:
    return {"SCENARIO": scenario, "INITIATOR": INITIATOR, "REPLACEMENT_TIMEOUT": "120",
            "PORTAL_A": f"{GUEST_PORTALS[0]}:{GUEST_ISCSI_PORT}",
            "PORTAL_B": f"{GUEST_PORTALS[1]}:{GUEST_ISCSI_PORT}", "SRC_MB": str(SRC_MB), **extra}


def report(name: str, b: Boot, t0: float) -> None:
    """Print the checks, times and dmesg lines of one boot; fail on a failed or missing check."""
    TIMES[f"{name}-boot"] = b.boot_seconds or 0.0
    TIMES[f"{name}-total"] = time.monotonic() - t0
    print(f"\n== scenario {name}: boot {b.boot_seconds:.1f} s, total {TIMES[f'{name}-total']:.1f} s")
    for c in b.checks.values():
        print(f"CHECK {c.name:40} {'PASS' if c.passed else 'FAIL'} {c.seconds:6.1f} s  {c.detail}")
    for line in b.dmesg:
        print(f"  dmesg: {line}")
    for line in b.daemon_log:
        print(f"  {line}")
    failed = [c for c in b.checks.values() if not c.passed]
    assert not failed, f"guest checks failed: {failed}\nconsole:\n{b.console()}"


def expect_checks(b: Boot, names: list[str]) -> None:
    missing = [n for n in names if n not in b.checks]
    assert not missing, f"checks never reported: {missing}\nconsole:\n{b.console()}"


def unexplained_dmesg(b: Boot, allowed: tuple[str, ...] = ()) -> list[str]:
    return [line for line in b.dmesg
            if any(p in line for p in BAD_DMESG) and not any(a in line for a in allowed)]


# ---- the configured server (in this process, with the API) ---------------------------------------


async def start_site(nursery: trio.Nursery, data_dir: Path) -> tuple[ServerOptions, ApiClient]:
    options = ServerOptions(data_dir=data_dir, api=f"127.0.0.1:{free_port()}")
    await nursery.start(serve, options)
    return options, ApiClient.for_server(options)


async def add_target(api: ApiClient, name: str, extent: dict[str, Any], portals: list[dict[str, Any]],
                     acl: dict[str, Any], authtype: str = "None", tag: int | None = None) -> dict[str, Any]:
    target = await api.create("target", {"iscsi_target_name": name})
    for portal in portals:
        await add_group(api, target, portal, acl, authtype, tag)
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": extent["id"],
                                        "iscsi_lunid": 0})
    return target


async def add_group(api: ApiClient, target: dict[str, Any], portal: dict[str, Any], acl: dict[str, Any],
                    authtype: str = "None", tag: int | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal["id"],
                             "iscsi_target_initiatorgroup": acl["id"], "iscsi_target_authtype": authtype}
    if tag is not None:
        group["iscsi_target_authgroup"] = tag
    return await api.create("targetgroup", group)


async def add_extent(api: ApiClient, data_dir: Path, name: str, size: str) -> dict[str, Any]:
    return await api.create("extent", {
        "iscsi_target_extent_name": name, "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(data_dir / "extents" / f"{name}.img"),
        "iscsi_target_extent_filesize": size})


def naa_of(extent: dict[str, Any]) -> str:
    return str(extent["iscsi_target_extent_naa"]).lower().removeprefix("0x")


# ---- scenario 1: one session, the disk, the file system ------------------------------------------

BASIC_CHECKS = ["iscsid", "discovery", "login-none", "login-chap", "login-mutual-chap",
                "login-wrong-secret-refused", "disk-facts", "session-params", "odirect-verify",
                "blkdiscard-z-zeroes", "blkdiscard-unmap", "mkfs-ext4", "fs-write-sync-umount", "e2fsck-fn",
                "fs-remount-verify", "fstrim", "logout-login", "fs-verify-after-relogin",
                "e2fsck-fn-after-relogin"]


async def test_basic(guest: Guest, tmp_path: Path, nursery: trio.Nursery) -> None:
    t0 = time.monotonic()
    options, api = await start_site(nursery, tmp_path / "data")
    port = free_port()
    portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    acl = await api.create("authorizedinitiator", {"iscsi_target_initiator_initiators": "ALL",
                                                   "iscsi_target_initiator_auth_network": "ALL"})
    await api.create("authcredential", {"iscsi_target_auth_tag": 1, "iscsi_target_auth_user": CHAP_USER,
                                        "iscsi_target_auth_secret": CHAP_SECRET})
    await api.create("authcredential", {
        "iscsi_target_auth_tag": 2, "iscsi_target_auth_user": MUTUAL_USER,
        "iscsi_target_auth_secret": MUTUAL_SECRET, "iscsi_target_auth_peeruser": MUTUAL_PEER,
        "iscsi_target_auth_peersecret": MUTUAL_PEER_SECRET})
    disk = await add_extent(api, options.data_dir, "disk", str(DISK_BYTES))
    await add_target(api, "disk", disk, [portal], acl)
    await add_target(api, "chap", await add_extent(api, options.data_dir, "chap", SMALL_DISK), [portal], acl,
                     "CHAP", 1)
    await add_target(api, "mutual", await add_extent(api, options.data_dir, "mutual", SMALL_DISK), [portal],
                     acl, "CHAP Mutual", 2)
    iqns = {n: f"{BASENAME}:{n}" for n in ("disk", "chap", "mutual")}
    env = guest_env("basic", IQN_NONE=iqns["disk"], IQN_CHAP=iqns["chap"], IQN_MUTUAL=iqns["mutual"],
                    DISCOVER=" ".join(iqns.values()), CHAP_USER=CHAP_USER, CHAP_SECRET=CHAP_SECRET,
                    MUTUAL_USER=MUTUAL_USER, MUTUAL_SECRET=MUTUAL_SECRET, MUTUAL_PEER=MUTUAL_PEER,
                    MUTUAL_PEER_SECRET=MUTUAL_PEER_SECRET, DISK_BYTES=str(DISK_BYTES), VENDOR="PYSCSI",
                    MODEL="iSCSI Disk", BLOCK="512", NAA=naa_of(disk))
    async with boot(guest, tmp_path, env, [port]) as b:
        await b.finished(SCENARIO_TIMEOUT_S)
    report("basic", b, t0)
    expect_checks(b, BASIC_CHECKS)
    # the one connection error is the refused login's: after a Login reject (status class 02) both
    # sides close the connection (RFC 7143 §11.13.5), and the kernel reports the close (1020)
    closes = [line for line in b.dmesg if "detected conn error (1020)" in line]
    assert len(closes) <= 1, closes
    assert unexplained_dmesg(b, allowed=("detected conn error (1020)",)) == []


# ---- scenario 2: the target restarted under a running write --------------------------------------


async def test_restart_under_write(guest: Guest, tmp_path: Path, nursery: trio.Nursery) -> None:
    t0 = time.monotonic()
    port = free_port()
    server = ServerProcess(tmp_path / "data", f"127.0.0.1:{port}")
    await server.start(nursery, "stderr", READY_MARKER)
    env = guest_env("restart", IQN_NONE=DEMO_IQN)
    try:
        async with boot(guest, tmp_path, env, [port]) as b:
            for word in ("sigterm", "sigkill"):
                await b.expect(f"SYNC {word}", SCENARIO_TIMEOUT_S)
                if word == "sigterm":
                    assert await server.stop() == 0, server.output["stderr"][-2000:]
                else:
                    await server.kill9()
                await server.start(nursery, "stderr", READY_MARKER)
            await b.finished(SCENARIO_TIMEOUT_S)
    finally:
        server.kill_quietly()
    report("restart", b, t0)
    expect_checks(b, ["iscsid", "login-none", "source-data", "mkfs-ext4", "restart-sigterm-under-dd",
                      "restart-sigkill-under-dd", "fs-remount-verify"])
    assert server.problems == []
    # a SIGTERM is a logout the target asked for (checks.sh verifies it), a SIGKILL the connection
    # closing (1020); a connection may also close at a SIGTERM whose logout raced the close;
    # nothing else went wrong
    assert len([line for line in b.dmesg if "detected conn error (1020)" in line]) <= 2
    assert unexplained_dmesg(b, allowed=("detected conn error (1020)",)) == []


# ---- scenario 3: dm-multipath over two portals, each deleted and restored live ---------------------


async def test_multipath_portal_delete_and_restore(guest: Guest, tmp_path: Path, nursery: trio.Nursery) -> None:
    t0 = time.monotonic()
    options, api = await start_site(nursery, tmp_path / "data")
    ports = [free_port(), free_port()]
    portals = [await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{p}"]}) for p in ports]
    acl = await api.create("authorizedinitiator", {"iscsi_target_initiator_initiators": "ALL",
                                                   "iscsi_target_initiator_auth_network": "ALL"})
    disk = await add_extent(api, options.data_dir, "mp", str(DISK_BYTES))
    target = await add_target(api, "mp", disk, portals, acl)
    env = guest_env("multipath", IQN_NONE=f"{BASENAME}:mp", DISCOVER=f"{BASENAME}:mp", NAA=naa_of(disk),
                    REPLACEMENT_TIMEOUT="5")
    async with boot(guest, tmp_path, env, ports) as b:
        for i, word in enumerate(("a", "b")):
            await b.expect(f"SYNC drop-{word}", SCENARIO_TIMEOUT_S)
            reply = await api.delete(f"{ISCSI}/portal/{portals[i]['id']}/")
            assert reply.status == 204, reply.body
            await b.expect(f"SYNC lost-{word}", SCENARIO_TIMEOUT_S)
            portals[i] = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{ports[i]}"]})
            await add_group(api, target, portals[i], acl)
        await b.finished(SCENARIO_TIMEOUT_S)
    report("multipath", b, t0)
    # a deleted portal fails its path: the connection closes, recovery times out after
    # REPLACEMENT_TIMEOUT, the I/O in flight on that path fails and dm-multipath retries it
    assert unexplained_dmesg(b, allowed=("detected conn error (1020)", "I/O error, dev sd",
                                         "rejecting I/O to offline device")) == []
    expect_checks(b, ["iscsid", "discovery", "login-two-portals", "multipath-two-paths", "source-data",
                      "mp-writer-started", "mp-portal-a-deleted-and-restored",
                      "mp-portal-b-deleted-and-restored", "mp-data-verify"])

