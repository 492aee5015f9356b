"""The event-loop data path end to end (docs/performance.md): reads of data that is not in the
page cache are answered from a worker thread (storage.WouldBlock), large transfers that are run
inline and large writes received straight into their command buffers keep every byte, and
several sessions interleaving such commands do not mix them up."""

from __future__ import annotations

import os
import random

import trio

from tests.support import DEMO_IQN, Running

from .client import Client

BS = 512


def host_port(portal: str) -> tuple[str, int]:
    host, _, port = portal.rpartition(":")
    return host, int(port)


async def session(run: Running, isid: int = 0x80_00_00_00_00_01) -> Client:
    c = await Client.connect(*host_port(run.portal), isid=isid)
    await c.login(DEMO_IQN)
    await c.ready()
    return c


def blocks(lba: int, nblocks: int, seed: int) -> bytes:
    rng = random.Random(seed * 7919 + lba)
    return rng.randbytes(nblocks * BS)


def evicted(path: os.PathLike[str], offset: int) -> bool:
    """Write back and drop the extent's pages; True if the page at `offset` really left the cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(4096)], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)


async def test_reads_from_the_device_are_answered(demo: Running) -> None:
    c = await session(demo)
    spots = [(4096, 8), (300_000, 2048), (1_500_000, 1)]
    for seed, (lba, n) in enumerate(spots):
        assert (await c.write10(lba, blocks(lba, n, seed))).status == 0
    assert (await c.sync_cache()).status == 0
    cold = evicted(demo.extent_file, spots[0][0] * BS)
    for seed, (lba, n) in enumerate(spots):
        res = await c.read10(lba, n)
        assert res.status == 0 and res.data == blocks(lba, n, seed), (lba, n, cold)
    await c.aclose()


async def test_interleaved_large_transfers_of_several_sessions(demo: Running) -> None:
    clients = [await session(demo, isid=0x80_00_00_00_01_00 + i) for i in range(3)]

    async def worker(i: int, c: Client) -> None:
        for round_ in range(4):
            lba = (i * 8 + round_) * 2048
            data = blocks(lba, 2048, seed=100 + i)  # 1 MiB: immediate data, then R2T'd Data-Out
            assert (await c.write10(lba, data)).status == 0
            res = await c.read10(lba, 2048)
            assert res.status == 0 and res.data == data

    async with trio.open_nursery() as nursery:
        for i, c in enumerate(clients):
            nursery.start_soon(worker, i, c)
    with open(demo.extent_file, "rb") as f:
        for i in range(3):
            for round_ in range(4):
                lba = (i * 8 + round_) * 2048
                f.seek(lba * BS)
                assert f.read(2048 * BS) == blocks(lba, 2048, seed=100 + i)
    for c in clients:
        await c.aclose()
