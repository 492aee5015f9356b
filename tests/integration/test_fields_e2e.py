"""Issue #11 items 3, 5 and 8 end to end: API fields do on the wire what FreeNAS (ctld/CTL) did.

- item 3: `iscsi_target_alias` is sent as TargetAlias in the final login response of a Normal
  session (none when null) and the sessions API shows it;
- item 5: EXTENDED COPY between LUs of two targets follows the `insecure_tpc` flag of the LU that
  received the command (CTL ctl_tpc.c), the 4-way truth table through the real server;
- item 8: SendTargets advertises only addresses of the discovery connection's family, wildcards as
  the address reached, over IPv4 and IPv6 (`::1`), with our client and with libiscsi's iscsi-ls.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.initiator import TEXT_RESPONSE
from tests.support import free_port, run_tool

from . import scsi_cmds as scsi
from .apiclient import ISCSI
from .client import Client
from .test_api_e2e import CLIENT_IQN, Stack, api_options

BASE = "iqn.2005-10.org.freenas.ctl"
BS = 512
UNREACHABLE_COPY_TARGET = (0x0A, 0x08, 0x04)


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    """The real server with its API, from an empty data directory (as test_api_e2e's)."""
    return await Stack.start(nursery, api_options(tmp_path))


async def target_with_lun(st: Stack, name: str, portal_id: int, *, alias: str | None = None) -> dict[str, Any]:
    """A target on `portal_id` with one 1 MiB File extent named like it at LUN 0: the extent."""
    body: dict[str, Any] = {"iscsi_target_name": name}
    if alias is not None:
        body["iscsi_target_alias"] = alias
    target = await st.api.create("target", body)
    await st.api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal_id})
    extent = await st.api.create("extent", {
        "iscsi_target_extent_name": name, "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(st.options.data_dir / "extents" / f"{name}.img"),
        "iscsi_target_extent_filesize": "1MB"})
    await st.api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": extent["id"],
                                           "iscsi_lunid": 0})
    extent["target_id"] = target["id"]
    return extent


async def portal(st: Stack, *ips: str) -> dict[str, Any]:
    return await st.api.create("portal", {"iscsi_target_portal_ips": list(ips)})


async def normal_session(host: str, port: int, iqn: str, isid: int = 0x80_12_34_56_00_01) -> Client:
    c = await Client.connect(host, port, isid=isid)
    await c.login(iqn)
    await scsi.settle(c, 0)
    return c


# -- item 3: TargetAlias -----------------------------------------------------------------------------


async def test_target_alias_is_sent_in_the_final_login_response(stack: Stack) -> None:
    port = free_port()
    p = await portal(stack, f"127.0.0.1:{port}")
    await target_with_lun(stack, "named", p["id"], alias="Fast Disk")
    await target_with_lun(stack, "plain", p["id"])
    c = await Client.connect("127.0.0.1", port)
    final = await c.login(f"{BASE}:named")  # security stage, then operational stage -> FFP
    assert final.final and [v for k, v in final.keys if k == "TargetAlias"] == ["Fast Disk"]
    [info] = (await stack.api.get(f"{ISCSI}/sessions/")).json()
    assert (info["target"], info["target_alias"]) == (f"{BASE}:named", "Fast Disk")
    await c.aclose()
    c = await Client.connect("127.0.0.1", port, isid=0x80_12_34_56_00_02)
    final = await c.login(f"{BASE}:plain")
    assert "TargetAlias" not in final.key_dict  # RFC 7143 §13.6: the key is optional
    sessions = (await stack.api.get(f"{ISCSI}/sessions/?target={BASE}:plain")).json()
    assert [s["target_alias"] for s in sessions] == [None]
    await c.aclose()


async def test_an_alias_change_applies_to_the_next_login(stack: Stack) -> None:
    port = free_port()
    p = await portal(stack, f"127.0.0.1:{port}")
    extent = await target_with_lun(stack, "renamed", p["id"], alias="old")
    reply = await stack.api.put(f"{ISCSI}/target/{extent['target_id']}/", {"iscsi_target_alias": "new"})
    assert reply.status == 200
    c = await Client.connect("127.0.0.1", port)
    assert (await c.login(f"{BASE}:renamed")).key_dict["TargetAlias"] == "new"
    await c.aclose()


# -- item 5: insecure_tpc of the receiving LU ---------------------------------------------------------


def xcopy_params(src_naa: str, dst_naa: str, nblocks: int, src_lba: int, dst_lba: int) -> bytes:
    """EXTENDED COPY (LID1) parameter list (SPC-4 §6.4): two identification descriptor CSCDs
    naming the LUs by NAA, one block-to-block segment from the first to the second."""
    cscds = b""
    for naa in (src_naa, dst_naa):
        d = bytearray(32)
        d[0], d[4], d[5], d[7] = 0xE4, 0x01, 0x03, 16  # binary, LU association, NAA designator
        d[8:24] = bytes.fromhex(naa[2:])
        d[29:32] = BS.to_bytes(3, "big")
        cscds += bytes(d)
    segment = struct.pack(">BBHHH2xHQQ", 0x02, 0, 0x18, 0, 1, nblocks, src_lba, dst_lba)
    return struct.pack(">BBH4xII", 1, 2 << 3, len(cscds), len(segment), 0) + cscds + segment


@pytest.mark.parametrize(
    ("receiver_flag", "other_flag", "allowed"),
    [(True, True, True), (True, False, True), (False, True, False), (False, False, False)],
)
async def test_xcopy_to_another_target_follows_the_receiving_lus_insecure_tpc(
    stack: Stack, receiver_flag: bool, other_flag: bool, allowed: bool
) -> None:
    """The session reaches target "src" only; EXTENDED COPY sent to its LU copies into the LU of
    target "dst" iff the receiving LU has insecure_tpc (CTL ctl_tpc.c; issue #11 item 5)."""
    port = free_port()
    p = await portal(stack, f"127.0.0.1:{port}")
    src = await target_with_lun(stack, "src", p["id"])
    dst = await target_with_lun(stack, "dst", p["id"])
    for extent, flag in ((src, receiver_flag), (dst, other_flag)):
        reply = await stack.api.put(f"{ISCSI}/extent/{extent['id']}/", {"iscsi_target_extent_insecure_tpc": flag})
        assert reply.status == 200 and reply.json()["iscsi_target_extent_insecure_tpc"] is flag
    data = bytes((i * 13 + 5) & 0xFF for i in range(4 * BS))
    c = await normal_session("127.0.0.1", port, f"{BASE}:src")
    assert (await c.write10(8, data)).status == scsi.GOOD
    params = xcopy_params(src["iscsi_target_extent_naa"], dst["iscsi_target_extent_naa"], 4, 8, 16)
    res = await c.command(struct.pack(">BB8xIBB", 0x83, 0, len(params), 0, 0), data=params)
    await c.aclose()
    reader = await normal_session("127.0.0.1", port, f"{BASE}:dst", isid=0x80_12_34_56_00_03)
    copied = (await reader.read10(16, 4)).data
    await reader.aclose()
    if allowed:
        assert res.status == scsi.GOOD and copied == data
    else:
        assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, UNREACHABLE_COPY_TARGET)
        assert copied == bytes(4 * BS)


# -- item 8: SendTargets across address families -----------------------------------------------------


async def send_targets(host: str, port: int) -> list[tuple[str, str]]:
    """A discovery session to host:port: the TargetName/TargetAddress pairs of SendTargets=All."""
    c = await Client.connect(host, port)
    await c.login(None, session_type="Discovery")
    await c.send(c.ini.text([("SendTargets", "All")]))
    rsp = await c.recv_pdu()
    await c.aclose()
    assert rsp.opcode == TEXT_RESPONSE and rsp.final
    return rsp.keys


async def test_send_targets_over_each_family_of_a_dual_wildcard_portal(stack: Stack) -> None:
    """One portal listening on 0.0.0.0:P and [::]:Q: over IPv4 the target is at 127.0.0.1:P, over
    IPv6 at [::1]:Q, never [::1]:P (no IPv6 listener there) nor 127.0.0.1:Q."""
    p4, p6 = free_port(), free_port()
    p = await portal(stack, f"0.0.0.0:{p4}", f"[::]:{p6}")
    await target_with_lun(stack, "dual", p["id"])
    iqn = f"{BASE}:dual"
    assert await send_targets("127.0.0.1", p4) == [("TargetName", iqn), ("TargetAddress", f"127.0.0.1:{p4},1")]
    assert await send_targets("::1", p6) == [("TargetName", iqn), ("TargetAddress", f"[::1]:{p6},1")]


async def test_send_targets_lists_every_portal_group_of_the_right_family(stack: Stack) -> None:
    """Portal 1 = 0.0.0.0:P, portal 2 = 127.0.0.1:Q and [::]:R, the target on both: over IPv4
    through portal 1 it is at 127.0.0.1:P (tag 1, the group reached first) and 127.0.0.1:Q (tag
    2); over IPv6 through portal 2 only at [::1]:R (portal 1 has no IPv6 listener)."""
    p4, q4, r6 = free_port(), free_port(), free_port()
    first = await portal(stack, f"0.0.0.0:{p4}")
    second = await portal(stack, f"127.0.0.1:{q4}", f"[::]:{r6}")
    extent = await target_with_lun(stack, "both", first["id"])
    await stack.api.create("targetgroup", {"iscsi_target": extent["target_id"],
                                           "iscsi_target_portalgroup": second["id"]})
    iqn = f"{BASE}:both"
    assert await send_targets("127.0.0.1", p4) == [
        ("TargetName", iqn), ("TargetAddress", f"127.0.0.1:{p4},1"), ("TargetAddress", f"127.0.0.1:{q4},2")]
    assert await send_targets("127.0.0.1", q4) == [
        ("TargetName", iqn), ("TargetAddress", f"127.0.0.1:{q4},2"), ("TargetAddress", f"127.0.0.1:{p4},1")]
    assert await send_targets("::1", r6) == [("TargetName", iqn), ("TargetAddress", f"[::1]:{r6},2")]


async def test_iscsi_ls_over_ipv6_reaches_the_target(stack: Stack) -> None:
    """libiscsi discovers over [::1] and logs in at the advertised address to list the LUN."""
    p4, p6 = free_port(), free_port()
    p = await portal(stack, f"0.0.0.0:{p4}", f"[::]:{p6}")
    await target_with_lun(stack, "six", p["id"])
    out = (await run_tool("iscsi-ls", "-s", "-i", CLIENT_IQN, f"iscsi://[::1]:{p6}")).stdout.decode()
    assert re.findall(r"Target:(\S+) Portal:(\S+)", out) == [(f"{BASE}:six", f"[::1]:{p6},1")], out
    assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS \(Size:1023k\)", out), out


# -- docs/api.md field audit: fields that had no end-to-end test ---------------------------------------


def t10_vendor_id(page: bytes) -> bytes:
    """The T10 vendor ID designator (type 1) of VPD page 0x83 (SPC-4 §7.8.6.4)."""
    at, end = 4, 4 + struct.unpack_from(">H", page, 2)[0]
    while at < end:
        kind, length = page[at + 1] & 0x0F, page[at + 3]
        if kind == 1:
            return page[at + 4:at + 4 + length]
        at += 4 + length
    raise AssertionError("no T10 vendor ID designator")


async def test_xen_leaves_the_serial_in_the_t10_vendor_id_unpadded(stack: Stack) -> None:
    """FreeNAS's ctl device-id: product + serial padded to 31 characters, unpadded with xen."""
    port = free_port()
    p = await portal(stack, f"127.0.0.1:{port}")
    extent = await target_with_lun(stack, "xen", p["id"])
    serial = extent["iscsi_target_extent_serial"]
    c = await normal_session("127.0.0.1", port, f"{BASE}:xen")
    padded = t10_vendor_id(await scsi.vpd(c, 0, 0x83))
    assert padded[8:24] == b"iSCSI Disk".ljust(16) and padded[24:] == serial.ljust(31).encode()
    reply = await stack.api.put(f"{ISCSI}/extent/{extent['id']}/", {"iscsi_target_extent_xen": True})
    assert reply.status == 200
    await scsi.settle(c, 0)
    assert t10_vendor_id(await scsi.vpd(c, 0, 0x83))[24:] == serial.encode()
    await c.aclose()


async def test_a_disabled_extent_leaves_its_target_and_comes_back(stack: Stack) -> None:
    port = free_port()
    p = await portal(stack, f"127.0.0.1:{port}")
    first = await target_with_lun(stack, "two", p["id"])
    second = await stack.api.create("extent", {
        "iscsi_target_extent_name": "second", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(stack.options.data_dir / "extents" / "second.img"),
        "iscsi_target_extent_filesize": "1MB"})
    await stack.api.create("targettoextent", {"iscsi_target": first["target_id"], "iscsi_extent": second["id"],
                                              "iscsi_lunid": 3})
    c = await normal_session("127.0.0.1", port, f"{BASE}:two")
    assert await scsi.report_luns(c) == [0, 3]
    url = f"{ISCSI}/extent/{second['id']}/"
    assert (await stack.api.put(url, {"iscsi_target_extent_enabled": False})).status == 200
    res = await scsi.tur(c, 0)
    assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, scsi.REPORTED_LUNS_DATA_CHANGED)
    assert await scsi.report_luns(c) == [0]
    assert (await stack.api.put(url, {"iscsi_target_extent_enabled": True})).status == 200
    await scsi.settle(c, 0)
    assert await scsi.report_luns(c) == [0, 3]
    await c.aclose()
