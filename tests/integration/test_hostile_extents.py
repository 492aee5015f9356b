"""Hostile extent paths through the real API (issue #10 items 1-3, 9, 10): a real server over
loopback HTTP and iSCSI. Every refused change answers 409 naming the field, and leaves nothing
behind: no file or folder on disk, no extent in the configuration, also after a restart."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from pyscsi_target.server.service import TargetService
from tests.support import free_port

from .apiclient import ISCSI, ApiClient
from .client import Client

DISK = "iscsi_target_extent_disk"
PATH = "iscsi_target_extent_path"
FILESIZE = "iscsi_target_extent_filesize"
STATE = "iscsi_target_extent_state"
IQN = "iqn.2005-10.org.freenas.ctl:hostile"
CLIENT_IQN = "iqn.2026-11.org.example:test-client"
NOT_READY_MANUAL = (0x2, 0x04, 0x03)
MIB = 1 << 20


def options(root: Path, *, device_root: Path | None = None, allow_file_devices: bool = False) -> ServerOptions:
    (root / "dev").mkdir(exist_ok=True)  # serve refuses a device root that does not exist
    return ServerOptions(data_dir=root / "data", api=f"127.0.0.1:{free_port()}",
                         device_root=device_root or root / "dev", allow_file_devices=allow_file_devices)


@asynccontextmanager
async def running(opts: ServerOptions) -> AsyncIterator[tuple[TargetService, ApiClient]]:
    async with trio.open_nursery() as nursery:
        service = await nursery.start(serve, opts)
        yield service, ApiClient.for_server(opts)
        nursery.cancel_scope.cancel()


async def extents(api: ApiClient) -> list[dict[str, Any]]:
    reply = await api.get(f"{ISCSI}/extent/")
    assert reply.status == 200
    found: list[dict[str, Any]] = reply.json()
    return found


async def refused(api: ApiClient, body: dict[str, Any], field: str, status: int = 409) -> str:
    before = await extents(api)
    reply = await api.post(f"{ISCSI}/extent/", {"iscsi_target_extent_name": "hostile", **body})
    assert reply.status == status, (reply.status, reply.body)
    assert field in reply.json(), reply.json()
    assert await extents(api) == before  # nothing changed
    message: str = " ".join(reply.json()[field])
    return message


async def still_empty_after_restart(opts: ServerOptions) -> None:
    again = options(opts.data_dir.parent, device_root=opts.device_root, allow_file_devices=opts.allow_file_devices)
    async with running(again) as (_, api):
        assert await extents(api) == []


def disk(name: str) -> dict[str, Any]:
    return {"iscsi_target_extent_type": "Disk", DISK: name}


def file_extent(path: Path, size: str = "1MB", name: str = "hostile") -> dict[str, Any]:
    return {"iscsi_target_extent_name": name, "iscsi_target_extent_type": "File", PATH: str(path), FILESIZE: size}


def descriptor_of(path: Path) -> int:
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") == str(path):
                return int(entry)
        except OSError:
            continue
    raise AssertionError(f"{path} is not open")


# ---- item 1: what a Disk extent may be ------------------------------------------------------------


async def test_fd_paths_to_the_servers_own_files_are_refused(tmp_path: Path) -> None:
    """The issue's reproduction: with the default device root, fd/N served config.db."""
    opts = options(tmp_path, device_root=Path("/dev"))
    async with running(opts) as (_, api):
        fd = descriptor_of((opts.data_dir / "config.db").resolve())
        message = await refused(api, disk(f"fd/{fd}"), DISK)
        assert "outside the device root" in message
        await refused(api, disk("/dev/fd/0"), DISK)
        await refused(api, disk("stderr"), DISK)  # a terminal or pipe: never a block device
        await refused(api, disk("null"), DISK)  # a character device under the root
    await still_empty_after_restart(opts)


async def test_char_devices_fifos_and_escaping_symlinks_are_refused(tmp_path: Path) -> None:
    devices = tmp_path / "dev"
    devices.mkdir()
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"secret" * 100)
    (devices / "null").symlink_to("/dev/null")  # points out of the root, at a char device
    (devices / "escape").symlink_to(outside)
    (devices / "up").symlink_to("..")
    os.mkfifo(devices / "fifo")  # opening it for reading would block: it must never be opened
    opts = options(tmp_path, allow_file_devices=True)
    async with running(opts) as (_, api):
        assert "outside the device root" in await refused(api, disk("null"), DISK)
        assert "outside the device root" in await refused(api, disk("escape"), DISK)
        assert "outside the device root" in await refused(api, disk("up/outside.img"), DISK)
        assert "not a block device" in await refused(api, disk("fifo"), DISK)
        await refused(api, disk("/proc/self/root" + str(outside)), DISK)
    assert outside.read_bytes() == b"secret" * 100
    await still_empty_after_restart(opts)


async def test_regular_files_are_disks_only_with_allow_file_devices(tmp_path: Path) -> None:
    devices = tmp_path / "dev"
    devices.mkdir()
    with open(devices / "stand-in", "wb") as f:
        f.truncate(MIB)
    opts = options(tmp_path)
    async with running(opts) as (_, api):
        assert "--allow-file-devices" in await refused(api, disk("stand-in"), DISK)
    async with running(options(tmp_path, allow_file_devices=True)) as (_, api):
        created = await api.create("extent", {"iscsi_target_extent_name": "ok", **disk("stand-in")})
        assert created[STATE] is None


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop device on a sparse file of ours (never a real disk), or skip when there is none."""
    image = tmp_path / "loop.img"
    with open(image, "wb") as f:
        f.truncate(4 * MIB)
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed")
    made = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"no loop device here: {made.stderr.strip()}")
    device = made.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


async def test_block_devices_are_accepted_and_their_aliases_refused(tmp_path: Path, loop_device: str) -> None:
    """A block device needs no flag; another name of the same device (st_rdev) is refused."""
    name = os.path.basename(loop_device)
    st = os.stat(loop_device)
    alias = f"block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    opts = options(tmp_path, device_root=Path("/dev"))
    async with running(opts) as (service, api):
        created = await api.create("extent", {"iscsi_target_extent_name": "loop", **disk(name)})
        assert created[STATE] is None
        assert service.extents[created["id"]].backend.size_bytes == 4 * MIB
        if os.path.exists(f"/dev/{alias}"):
            assert 'already used by extent "loop"' in await refused(api, disk(alias), DISK)


# ---- item 3: one file, one extent --------------------------------------------------------------


async def test_aliases_of_another_extents_file_are_refused(tmp_path: Path) -> None:
    opts = options(tmp_path, allow_file_devices=True)
    roots = opts.resolved_extent_roots()[0]
    roots.mkdir(parents=True)
    first = roots / "a.img"
    async with running(opts) as (_, api):
        await api.create("extent", file_extent(first, name="a"))
        (roots / "alias.img").symlink_to(first)
        (roots / "dir").symlink_to(roots)
        os.link(first, roots / "hard.img")
        for path in (roots / "alias.img", roots / "dir" / "a.img", roots / "hard.img",
                     Path("/proc/self/root" + str(first))):
            assert 'already used by extent "a"' in await refused(api, file_extent(path), PATH)
        # a device root that holds the same file: a Disk extent on it is the same storage
        shutil.rmtree(opts.device_root, ignore_errors=True)
        opts.device_root.mkdir()
        os.link(first, opts.device_root / "same")
        assert 'file of extent "a"' in await refused(api, disk("same"), DISK)
        outside = tmp_path / "outside.img"
        outside.write_bytes(bytes(MIB))
        (roots / "out.img").symlink_to(outside)  # out of the extent root
        assert "must reside inside" in await refused(api, file_extent(roots / "out.img"), PATH)
        assert [e["iscsi_target_extent_name"] for e in await extents(api)] == ["a"]


async def test_concurrent_creates_of_one_file_make_one_extent(tmp_path: Path) -> None:
    opts = options(tmp_path)
    target = opts.resolved_extent_roots()[0] / "new" / "one.img"
    async with running(opts) as (_, api):
        statuses: list[int] = []

        async def post(name: str) -> None:
            reply = await api.post(f"{ISCSI}/extent/", file_extent(target, name=name))
            statuses.append(reply.status)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, "first")
            nursery.start_soon(post, "second")
        assert sorted(statuses) == [201, 409]
        assert len(await extents(api)) == 1


# ---- item 2: confinement on every open ------------------------------------------------------------


async def map_lun(api: ApiClient, extent_id: int) -> str:
    port = free_port()
    portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    initiator = await api.create("authorizedinitiator", {"iscsi_target_initiator_initiators": "ALL"})
    target = await api.create("target", {"iscsi_target_name": "hostile"})
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal["id"],
                                     "iscsi_target_initiatorgroup": initiator["id"]})
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": extent_id, "iscsi_lunid": 0})
    return f"127.0.0.1:{port}"


async def session(portal: str) -> Client:
    host, _, port = portal.rpartition(":")
    c = await Client.connect(host, int(port))
    await c.login(IQN)
    return c


async def test_a_symlink_swapped_out_of_the_root_is_not_served_after_restart(tmp_path: Path) -> None:
    devices = tmp_path / "dev"
    devices.mkdir()
    inside = devices / "real.img"
    with open(inside, "wb") as f:
        f.truncate(MIB)
    outside = tmp_path / "secret.db"
    outside.write_bytes(b"SQLite format 3\0" + bytes(MIB - 16))
    (devices / "disk0").symlink_to(inside)
    opts = options(tmp_path, allow_file_devices=True)
    async with running(opts) as (_, api):
        ext = await api.create("extent", {"iscsi_target_extent_name": "d0", **disk("disk0")})
        portal = await map_lun(api, ext["id"])
    (devices / "disk0").unlink()
    (devices / "disk0").symlink_to(outside)  # swapped while the server was down
    again = options(tmp_path, allow_file_devices=True)
    async with running(again) as (service, api):
        portal = f"127.0.0.1:{service.config.portals[1].ips[0].port}"
        shown = (await api.get(f"{ISCSI}/extent/{ext['id']}/")).json()
        assert "outside" in shown[STATE], shown
        c = await session(portal)
        inquiry = await c.command(bytes([0x12, 0, 0, 0, 96, 0]), read_len=96)
        assert inquiry.status == 0  # the LUN is there ...
        read = await c.command(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), read_len=512)
        while read.status == 2 and read.sense_key[0] == 6:  # unit attentions of a new nexus first
            read = await c.command(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), read_len=512)
        assert (read.status, read.sense_key) == (2, NOT_READY_MANUAL)  # ... but not ready
        assert b"SQLite" not in read.data
        write = await c.command(bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]), data=bytes(512))
        assert (write.status, write.sense_key) == (2, NOT_READY_MANUAL)
        await c.aclose()
        lu = service.extents[ext["id"]].lu
        # editing the extent itself is refused by name; an unrelated apply retries it, in vain
        assert (await api.put(f"{ISCSI}/extent/{ext['id']}/", {"iscsi_target_extent_comment": "x"})).status == 409
        [tid] = service.config.targets
        assert (await api.put(f"{ISCSI}/target/{tid}/", {"iscsi_target_alias": "retry"})).status == 200
        assert "outside" in (await api.get(f"{ISCSI}/extent/{ext['id']}/")).json()[STATE]
        assert service.extents[ext["id"]].lu is lu  # the same LU: no REPORTED LUNS DATA HAS CHANGED
        # put right and re-enabled (any apply retries): served again
        (devices / "disk0").unlink()
        (devices / "disk0").symlink_to(inside)
        reply = await api.put(f"{ISCSI}/extent/{ext['id']}/", {"iscsi_target_extent_comment": "fixed"})
        assert reply.status == 200, reply.body
        assert reply.json()[STATE] is None
        c = await session(portal)
        await c.ready()
        assert (await c.read10(0, 1)).status == 0
        await c.aclose()
    assert outside.read_bytes()[:16] == b"SQLite format 3\0"


# ---- items 9 and 10: no shrinking, nothing half-applied ---------------------------------------------


async def test_shrinking_a_file_extent_is_refused(tmp_path: Path) -> None:
    opts = options(tmp_path)
    path = opts.resolved_extent_roots()[0] / "grow.img"
    async with running(opts) as (service, api):
        ext = await api.create("extent", file_extent(path, size="8MB", name="g"))
        url = f"{ISCSI}/extent/{ext['id']}/"
        reply = await api.put(url, {FILESIZE: "4MB"})
        assert reply.status == 409 and FILESIZE in reply.json(), reply.body
        assert path.stat().st_size == 8 * MIB
        assert service.extents[ext["id"]].backend.size_bytes == 8 * MIB
        assert (await api.put(url, {FILESIZE: "16MB"})).status == 200  # growing stays live
        assert path.stat().st_size == 16 * MIB


async def test_a_refused_create_leaves_nothing_on_disk(tmp_path: Path) -> None:
    """The issue's "File too large": the new folders and the 0-byte file stayed behind."""
    opts = options(tmp_path)
    root = opts.resolved_extent_roots()[0]
    async with running(opts) as (_, api):
        body = file_extent(root / "new" / "deeper" / "huge.img", size=str(2**62))
        reply = await api.post(f"{ISCSI}/extent/", body)
        assert reply.status == 409, reply.body
        assert list(reply.json()) == [FILESIZE], reply.body  # the field that can fix it: EFBIG is the size's
        assert not (root / "new").exists()
        assert await extents(api) == []
    await still_empty_after_restart(opts)
