"""Issue #3 end to end: the v1.0 API drives the live target (spec Part B §B.2).

The real server runs in the test's trio loop with its API on a free loopback port, starting from an
empty data directory. Everything the target serves is created through HTTP, and checked from the
initiator side with libiscsi's `iscsi-ls` and the small client in `client.py`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from pyscsi_target.server.service import TargetService
from tests.initiator import ASYNC
from tests.support import free_port, run_tool

from . import scsi_cmds as scsi
from .apiclient import API, ISCSI, ApiClient
from .client import Client, LoginError

CLIENT_IQN = "iqn.2026-11.org.example:test-client"  # Client.connect's default name
STRANGER_IQN = "iqn.2026-11.org.example:stranger"
MIB = 1 << 20
FILE_BYTES = 32 * MIB
ZVOL_BYTES = 64 * MIB
BS = 512
FILE_SERIAL = "E2EFILE0001"
ZVOL = "zvol/tank/vol1"
SERVICE = f"{API}/services/services/iscsitarget/"
ASYNC_EVENT_LOGOUT_REQUEST = 1
#: seconds the target waits for a requested logout (server/connection.py LOGOUT_REQUEST_DEADLINE_S)
LOGOUT_GRACE_S = 3


@dataclass
class Stack:
    """A running server with its API client, and where its storage lives."""

    service: TargetService
    options: ServerOptions
    api: ApiClient
    zvol: Path  # the regular file standing in for zvol/tank/vol1

    @classmethod
    async def start(cls, nursery: trio.Nursery, options: ServerOptions) -> Stack:
        service = await nursery.start(serve, options)
        return cls(service, options, ApiClient.for_server(options), options.device_root / ZVOL)

    @property
    def extent_file(self) -> Path:
        return self.options.data_dir / "extents" / "lun0.img"


@dataclass
class Built:
    """What `build` created, as the API answered it."""

    portal: str
    iqn: str
    objects: dict[str, dict[str, Any]]

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.objects[name]


def api_options(root: Path) -> ServerOptions:
    """An empty data dir, the API on a free loopback port, and a device root holding a regular
    file that stands in for the zvol (spec Part B §B.2.6, with --allow-file-devices)."""
    zvol = root / "dev" / ZVOL
    zvol.parent.mkdir(parents=True, exist_ok=True)
    if not zvol.exists():
        with open(zvol, "wb") as f:
            f.truncate(ZVOL_BYTES)
    return ServerOptions(data_dir=root / "data", api=f"127.0.0.1:{free_port()}", device_root=root / "dev",
                         allow_file_devices=True)


@asynccontextmanager
async def running(options: ServerOptions) -> AsyncIterator[Stack]:
    """The server on `options` for the duration of the block; stopped (as by Ctrl-C) after it."""
    async with trio.open_nursery() as nursery:
        yield await Stack.start(nursery, options)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: Path) -> Stack:
    return await Stack.start(nursery, api_options(tmp_path))


async def build(st: Stack) -> Built:
    """Portal, ACL, target, group, a File and a zvol extent, and two LUN mappings, all via the API."""
    api = st.api
    port = free_port()
    o: dict[str, dict[str, Any]] = {}
    o["portal"] = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    o["initiator"] = await api.create("authorizedinitiator", {
        "iscsi_target_initiator_initiators": CLIENT_IQN, "iscsi_target_initiator_auth_network": "127.0.0.0/8"})
    o["target"] = await api.create("target", {"iscsi_target_name": "e2e"})
    o["group"] = await api.create("targetgroup", {
        "iscsi_target": o["target"]["id"], "iscsi_target_portalgroup": o["portal"]["id"],
        "iscsi_target_initiatorgroup": o["initiator"]["id"]})
    o["file"] = await api.create("extent", {
        "iscsi_target_extent_name": "lun0", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(st.extent_file), "iscsi_target_extent_filesize": "32MB",
        "iscsi_target_extent_serial": FILE_SERIAL})
    o["zvol"] = await api.create("extent", {
        "iscsi_target_extent_name": "tank/vol1", "iscsi_target_extent_type": "Disk",
        "iscsi_target_extent_disk": ZVOL})
    o["map0"] = await api.create("targettoextent", {
        "iscsi_target": o["target"]["id"], "iscsi_extent": o["file"]["id"], "iscsi_lunid": 0})
    o["map1"] = await api.create("targettoextent", {"iscsi_target": o["target"]["id"], "iscsi_extent": o["zvol"]["id"]})
    return Built(f"127.0.0.1:{port}", "iqn.2005-10.org.freenas.ctl:e2e", o)


async def discover(portal: str, initiator: str = CLIENT_IQN) -> dict[str, list[tuple[int, str]]]:
    """`iscsi-ls -s`: target IQN -> [(LUN, size as printed)]."""
    out = (await run_tool("iscsi-ls", "-s", "-i", initiator, f"iscsi://{portal}")).stdout.decode()
    found: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] = []
    for line in out.splitlines():
        if m := re.match(r"Target:(\S+) Portal:(\S+)", line):
            assert m.group(2) == f"{portal},1", out
            current = found.setdefault(m.group(1), [])
        elif m := re.match(r"Lun:(\d+)\s+Type:DIRECT_ACCESS \(Size:(\S+)\)", line):
            current.append((int(m.group(1)), m.group(2)))
    return found


async def session(built: Built, name: str = CLIENT_IQN, isid: int = 0x80_12_34_56_00_01) -> Client:
    host, _, port = built.portal.rpartition(":")
    c = await Client.connect(host, int(port), name=name, isid=isid)
    await c.login(built.iqn)
    for lun in await scsi.report_luns(c):  # past the power-on/nexus unit attentions (SAM-5 §6.3)
        await scsi.settle(c, lun)
    return c


async def asked_to_log_out(c: Client) -> None:
    """The target asks this session to log out: Async Message, AsyncEvent 1 (RFC 7143 §11.9.1)."""
    pdu = await c.recv_pdu()
    assert (pdu.opcode, pdu.bhs[36]) == (ASYNC, ASYNC_EVENT_LOGOUT_REQUEST), (pdu.opcode, pdu.bhs[36])


async def assert_closed(c: Client) -> None:
    with pytest.raises((EOFError, trio.BrokenResourceError, ConnectionResetError)):
        await c.recv_pdu(timeout=LOGOUT_GRACE_S + 5)
    await c.aclose()


async def logs_out_cleanly(c: Client) -> None:
    """A session of a deleted target: asked to log out, it does, and the connection closes."""
    await asked_to_log_out(c)
    assert (await c.logout()).response == 0
    await assert_closed(c)


def pattern(seed: int, nbytes: int) -> bytes:
    block = f"seed={seed:06d} ".encode()
    return (block * (nbytes // len(block) + 1))[:nbytes]


# -- the configuration built through the API is what initiators see ------------------------------


async def test_built_configuration_is_served(stack: Stack) -> None:
    built = await build(stack)
    assert built["map1"]["iscsi_lunid"] == 1  # lowest free LUN (Part B §B.2.4)
    assert built["zvol"]["iscsi_target_extent_type"] == "ZVOL"
    assert built["zvol"]["iscsi_target_extent_path"] == str(stack.zvol)
    assert built["zvol"]["iscsi_target_extent_filesize"] == "0"
    assert await discover(built.portal) == {built.iqn: [(0, "31M"), (1, "63M")]}
    # the ACL: another initiator neither sees nor reaches the target (RFC 7143 §11.13.5 0x0202)
    assert await discover(built.portal, STRANGER_IQN) == {}
    with pytest.raises(LoginError) as refused:
        await session(built, STRANGER_IQN, isid=0x80_00_00_00_00_09)
    assert (refused.value.status_class, refused.value.status_detail) == (2, 2)


async def test_data_lands_in_each_backing_file(stack: Stack) -> None:
    built = await build(stack)
    c = await session(built)
    for lun, lba in ((0, 100), (1, 2000)):
        assert (await c.write10(lba, pattern(lun, 8 * BS), lun=lun)).status == scsi.GOOD
        assert (await c.sync_cache(lun=lun)).status == scsi.GOOD
    await c.aclose()
    with open(stack.extent_file, "rb") as f:
        f.seek(100 * BS)
        assert f.read(8 * BS) == pattern(0, 8 * BS)
    with open(stack.zvol, "rb") as f:
        f.seek(2000 * BS)
        assert f.read(8 * BS) == pattern(1, 8 * BS)
    assert stack.extent_file.stat().st_size == FILE_BYTES


async def test_vpd_reports_the_api_serial_and_naa(stack: Stack) -> None:
    built = await build(stack)
    c = await session(built)
    for lun, name in ((0, "file"), (1, "zvol")):
        assert await scsi.unit_serial(c, lun) == built[name]["iscsi_target_extent_serial"]
        assert await scsi.naa_designators(c, lun) == [built[name]["iscsi_target_extent_naa"]]
    assert built["file"]["iscsi_target_extent_serial"] == FILE_SERIAL
    await c.aclose()


# -- deletes and changes reach discovery and live sessions at once -------------------------------


async def test_deleting_mapping_then_target_leaves_discovery_at_once(stack: Stack) -> None:
    built = await build(stack)
    c = await session(built)
    assert (await scsi.tur(c, 0)).status == scsi.GOOD
    assert (await stack.api.delete(f"{ISCSI}/targettoextent/{built['map1']['id']}/")).status == 204
    assert await discover(built.portal) == {built.iqn: [(0, "31M")]}
    res = await scsi.tur(c, 0)  # the session that used LUN 0 is told its LUN set changed
    assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, scsi.REPORTED_LUNS_DATA_CHANGED)
    assert await scsi.report_luns(c) == [0]
    assert (await stack.api.delete(f"{ISCSI}/target/{built['target']['id']}/")).status == 204
    assert await discover(built.portal) == {}
    await logs_out_cleanly(c)
    # the cascade (Part B §B.2.3) took the group and the other mapping; the extents stay
    assert (await stack.api.get(f"{ISCSI}/targetgroup/")).json() == []
    assert (await stack.api.get(f"{ISCSI}/targettoextent/")).json() == []
    assert len((await stack.api.get(f"{ISCSI}/extent/")).json()) == 2
    assert stack.extent_file.exists() and stack.zvol.exists()


async def test_mapping_change_and_resize_raise_unit_attentions(stack: Stack) -> None:
    built = await build(stack)
    c = await session(built)
    await scsi.settle(c, 0)
    extra = await stack.api.create("extent", {
        "iscsi_target_extent_name": "extra", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(stack.options.data_dir / "extents" / "extra.img"),
        "iscsi_target_extent_filesize": "1MB"})
    await stack.api.create("targettoextent", {"iscsi_target": built["target"]["id"], "iscsi_extent": extra["id"]})
    res = await scsi.tur(c, 0)
    assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, scsi.REPORTED_LUNS_DATA_CHANGED)
    assert await scsi.report_luns(c) == [0, 1, 2]
    assert (await scsi.tur(c, 0)).status == scsi.GOOD
    reply = await stack.api.put(f"{ISCSI}/extent/{built['file']['id']}/", {"iscsi_target_extent_filesize": "48MB"})
    assert reply.status == 200 and reply.json()["iscsi_target_extent_filesize"] == str(48 * MIB)
    res = await scsi.tur(c, 0)
    assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, scsi.CAPACITY_DATA_CHANGED)
    assert await scsi.read_capacity10(c, 0) == (48 * MIB // BS - 1, BS)
    assert stack.extent_file.stat().st_size == 48 * MIB
    await c.aclose()


async def test_extent_settings_take_effect_on_the_scsi_side(stack: Stack) -> None:
    built = await build(stack)
    tid = built["target"]["id"]
    big = await stack.api.create("extent", {
        "iscsi_target_extent_name": "big", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(stack.options.data_dir / "extents" / "big.img"),
        "iscsi_target_extent_filesize": "16MB", "iscsi_target_extent_blocksize": 4096,
        "iscsi_target_extent_rpm": "7200"})
    big_url = f"{ISCSI}/extent/{big['id']}/"
    assert (await stack.api.put(big_url, {"iscsi_target_extent_ro": True})).status == 200
    await stack.api.create("targettoextent", {"iscsi_target": tid, "iscsi_extent": big["id"], "iscsi_lunid": 5})
    c = await session(built)
    await scsi.settle(c, 5)
    assert await scsi.read_capacity10(c, 5) == (16 * MIB // 4096 - 1, 4096)
    assert await scsi.read_capacity16(c, 5) == (16 * MIB // 4096 - 1, 4096, 0)
    assert await scsi.rotation_rate(c, 5) == 7200
    res = await c.write10(0, bytes(4096), block_size=4096, lun=5)
    assert (res.status, res.sense_key) == (scsi.CHECK_CONDITION, scsi.WRITE_PROTECTED)
    # LUN 0: 512-byte blocks with physical block reporting (pblocksize false) -> 2^3 per 4 KiB
    assert await scsi.read_capacity16(c, 0) == (FILE_BYTES // BS - 1, BS, 3)
    assert await scsi.rotation_rate(c, 0) == 1  # SSD: non-rotating
    file_url = f"{ISCSI}/extent/{built['file']['id']}/"
    assert (await stack.api.put(file_url, {"iscsi_target_extent_pblocksize": True,
                                           "iscsi_target_extent_rpm": "Unknown"})).status == 200
    assert await scsi.read_capacity16(c, 0) == (FILE_BYTES // BS - 1, BS, 0)
    assert await scsi.rotation_rate(c, 0) == 0
    # ro switched off live: the same session may now write LUN 5
    assert (await stack.api.put(big_url, {"iscsi_target_extent_ro": False})).status == 200
    await scsi.settle(c, 5)
    assert (await c.write10(0, pattern(5, 4096), block_size=4096, lun=5)).status == scsi.GOOD
    await c.aclose()


# -- refusals commit nothing --------------------------------------------------------------------


async def test_busy_port_is_a_409_and_nothing_changes(tmp_path: Path) -> None:
    options = api_options(tmp_path)
    with trio.socket.socket() as squatter:
        await squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        busy = f"127.0.0.1:{squatter.getsockname()[1]}"
        async with running(options) as st:
            built = await build(st)
            before = (await st.api.get(f"{ISCSI}/portal/")).json()
            reply = await st.api.post(f"{ISCSI}/portal/", {"iscsi_target_portal_ips": [busy]})
            assert reply.status == 409
            assert reply.json() == {"iscsi_target_portal_ips": [f"Cannot listen on {busy}: Address already in use"]}
            portal_url = f"{ISCSI}/portal/{built['portal']['id']}/"
            reply = await st.api.put(portal_url, {"iscsi_target_portal_ips": [built.portal, busy]})
            assert reply.status == 409 and list(reply.json()) == ["iscsi_target_portal_ips"]
            assert (await st.api.get(f"{ISCSI}/portal/")).json() == before
            assert await discover(built.portal) == {built.iqn: [(0, "31M"), (1, "63M")]}
        async with running(options) as st:
            assert (await st.api.get(f"{ISCSI}/portal/")).json() == before
            assert await discover(built.portal) == {built.iqn: [(0, "31M"), (1, "63M")]}


# -- sessions, the service switch, restarts ------------------------------------------------------


async def test_sessions_endpoint_shows_a_live_session_with_counters(stack: Stack) -> None:
    built = await build(stack)
    assert (await stack.api.get(f"{ISCSI}/sessions/")).json() == []
    c = await session(built)
    [info] = (await stack.api.get(f"{ISCSI}/sessions/")).json()
    before = (info["commands"], info["written_bytes"], info["read_bytes"])
    assert (await c.write10(0, pattern(7, 16 * BS))).status == scsi.GOOD
    assert (await c.read10(0, 4)).data == pattern(7, 4 * BS)
    [info] = (await stack.api.get(f"{ISCSI}/sessions/")).json()
    assert info["initiator"] == CLIENT_IQN and info["target"] == built.iqn
    assert info["session_type"] == "Normal" and info["connections"] == 1
    assert info["tsih"] == c.tsih and info["isid"] == "801234560001"
    assert info["initiator_addr"].startswith("127.0.0.1:")
    after = (info["commands"], info["written_bytes"], info["read_bytes"])
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 16 * BS, 4 * BS]
    assert info["parameters"]["MaxBurstLength"] == c.params["MaxBurstLength"]
    await c.aclose()


async def test_service_disable_stops_portals_and_enable_starts_them(stack: Stack) -> None:
    built = await build(stack)
    c = await session(built)
    host, _, port = built.portal.rpartition(":")
    reply = await stack.api.put(SERVICE, {"srv_enable": False})
    assert reply.status == 200 and reply.json()["srv_state"] == "STOPPED"
    await asked_to_log_out(c)  # and ignores it: the target ends the session after the grace time
    await assert_closed(c)
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, int(port))
    assert len((await stack.api.get(f"{ISCSI}/portal/")).json()) == 1  # the configuration stays
    reply = await stack.api.put(SERVICE, {"srv_enable": True})
    assert reply.status == 200 and reply.json() == {
        "srv_enable": True, "srv_service": "iscsitarget", "srv_state": "RUNNING"}
    assert await discover(built.portal) == {built.iqn: [(0, "31M"), (1, "63M")]}
    c = await session(built)
    assert (await scsi.tur(c, 0)).status == scsi.GOOD
    await c.aclose()


async def test_configuration_and_data_survive_a_restart(tmp_path: Path) -> None:
    options = api_options(tmp_path)
    names = ("portal", "authorizedinitiator", "target", "targetgroup", "extent", "targettoextent")
    async with running(options) as st:
        built = await build(st)
        c = await session(built)
        assert (await c.write10(300, pattern(3, 4 * BS), lun=1)).status == scsi.GOOD
        await c.aclose()
        before = {n: (await st.api.get(f"{ISCSI}/{n}/")).json() for n in names}
        assert (await st.api.put(SERVICE, {"srv_enable": False})).status == 200
    async with running(options) as st:  # same data dir: the service comes back disabled
        assert {n: (await st.api.get(f"{ISCSI}/{n}/")).json() for n in names} == before
        assert (await st.api.get(SERVICE)).json()["srv_state"] == "STOPPED"
        assert list(st.service.addresses()) == []
        assert (await st.api.put(SERVICE, {"srv_enable": True})).status == 200
        assert await discover(built.portal) == {built.iqn: [(0, "31M"), (1, "63M")]}
        c = await session(built)
        assert (await c.read10(300, 4, lun=1)).data == pattern(3, 4 * BS)
        assert await scsi.naa_designators(c, 0) == [built["file"]["iscsi_target_extent_naa"]]
        await c.aclose()
