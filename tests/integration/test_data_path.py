"""Issue #2: data written through iSCSI is byte-identical in the backing file and reads back
identically, also after a restart; a second server on the same data dir serves the same target."""

from __future__ import annotations

import os
import random
from pathlib import Path

import trio

from pyscsi_target.server.options import ServerOptions
from tests.support import DEMO_IQN, Running, demo_options, free_port, start

from .client import Client

BS = 512


def host_port(portal: str) -> tuple[str, int]:
    host, _, port = portal.rpartition(":")
    return host, int(port)


async def session(run: Running) -> Client:
    c = await Client.connect(*host_port(run.portal))
    await c.login(DEMO_IQN)
    await c.ready()
    return c


def pattern(lba: int, nblocks: int, seed: int) -> bytes:
    """Self-describing blocks: each names its LBA and the seed that wrote it."""
    return b"".join(
        (f"lba={lba + i:012d} seed={seed:08d} ".encode() + random.Random(seed * 1_000_003 + lba + i).randbytes(BS))[
            :BS
        ]
        for i in range(nblocks)
    )


async def test_writes_land_in_the_file_and_read_back(demo: Running) -> None:
    c = await session(demo)
    writes = [(0, 1), (7, 3), (2048, 128), (1_000_000, 2048), (2 * 1024 * 1024 - 16, 16)]
    for seed, (lba, n) in enumerate(writes):
        res = await c.write10(lba, pattern(lba, n, seed))
        assert res.status == 0, res.sense_key
    assert (await c.sync_cache()).status == 0
    for seed, (lba, n) in enumerate(writes):
        res = await c.read10(lba, n)
        assert res.status == 0 and res.data == pattern(lba, n, seed)
    with open(demo.extent_file, "rb") as f:
        for seed, (lba, n) in enumerate(writes):
            f.seek(lba * BS)
            assert f.read(n * BS) == pattern(lba, n, seed)
    assert (await c.logout()).response == 0
    await c.aclose()


async def test_data_and_target_survive_a_restart(tmp_path: Path) -> None:
    opts = demo_options(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        first = await start(nursery, opts)
        c = await session(first)
        assert (await c.write10(4096, pattern(4096, 64, 7))).status == 0
        await c.aclose()
        nursery.cancel_scope.cancel()
    # a second server on the same data dir, without --demo, serves the same target and data
    again = ServerOptions(data_dir=opts.data_dir, api=f"127.0.0.1:{free_port()}", api_enabled=False)
    async with trio.open_nursery() as nursery:
        second = await start(nursery, again)
        second.portal = opts.demo_portal
        assert [t.name for t in second.service.config.targets.values()] == ["demo"]
        c = await session(second)
        res = await c.read10(4096, 64)
        assert res.status == 0 and res.data == pattern(4096, 64, 7)
        await c.aclose()
        nursery.cancel_scope.cancel()
    assert os.path.getsize(opts.data_dir / "extents" / "demo.img") == 1 << 30


async def test_sessions_are_independent(demo: Running) -> None:
    """Two initiators interleave writes to different ranges; neither sees the other's data."""
    a = await session(demo)
    b = await Client.connect(*host_port(demo.portal), name="iqn.2026-11.org.example:other", isid=0x80_00_00_00_00_02)
    await b.login(DEMO_IQN)
    await b.ready()
    for i in range(20):
        assert (await a.write10(10_000 + i * 8, pattern(10_000 + i * 8, 8, 1))).status == 0
        assert (await b.write10(20_000 + i * 8, pattern(20_000 + i * 8, 8, 2))).status == 0
    assert (await a.read10(20_000, 160)).data == pattern(20_000, 160, 2)
    assert (await b.read10(10_000, 160)).data == pattern(10_000, 160, 1)
    await a.aclose()
    await b.aclose()


async def test_vpd_83_carries_the_extent_naa_and_80_its_serial(demo: Running) -> None:
    extent = next(iter(demo.service.config.extents.values()))
    c = await session(demo)
    res = await c.command(bytes([0x12, 1, 0x83, 0, 255, 0]), read_len=255)
    page = res.data
    naas, i = [], 4
    while i + 4 <= len(page):
        dlen = page[i + 3]
        if page[i + 1] & 0x0F == 3:  # designator type NAA
            naas.append(page[i + 4:i + 4 + dlen].hex())
        i += 4 + dlen
    assert naas == [extent.naa[2:].lower()]
    res = await c.command(bytes([0x12, 1, 0x80, 0, 255, 0]), read_len=255)
    assert res.data[4:4 + res.data[3]].decode().strip() == extent.serial
    await c.aclose()
