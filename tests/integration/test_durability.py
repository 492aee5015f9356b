"""Issue #7, durability: what GOOD promises (target-rules.md §4).

- kill -9: the server runs as a subprocess; thousands of self-describing blocks are written and
  synced, more are written (plain, FUA, or with WCE=0 set by MODE SELECT) from several sessions,
  the server is SIGKILLed mid-stream and restarted, and every block is checked.
- the promise behind GOOD, in-process: a FUA write, a write with WCE=0 and a SYNCHRONIZE CACHE
  answer GOOD only after the backend synced the blocks, in a worker thread (never on the event
  loop); a plain write with WCE=1 does not sync (so the test can tell the cases apart).
- a flush that fails: MEDIUM ERROR, and no false GOOD afterwards (fsyncgate, §4.1).
"""

from __future__ import annotations

import dataclasses
import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.support import DEMO_IQN, free_port

from .client import Client, Result
from .reliability import (
    CHECK_CONDITION,
    DEMO_MARKER,
    GOOD,
    READY_MARKER,
    BadBlock,
    FlushHook,
    ServerProcess,
    decode_blocks,
    hooked_server,
    make_blocks,
    open_session,
)

#: blocks written and synced before the crash (LBAs 0 .. SYNCED_BLOCKS-1, 2 MiB)
SYNCED_BLOCKS = 4096
#: sessions writing at once; each owns one stripe of SYNCED_BLOCKS // WRITERS LBAs
WRITERS = 4
#: blocks per WRITE while filling (phase A)
FILL_BLOCKS = 16
#: phase B writes are 1..MAX_WRITE_BLOCKS blocks at random LBAs of the writer's stripe
MAX_WRITE_BLOCKS = 16
#: the kill comes after this many acknowledged phase B writes (a random number in the range)
KILL_AFTER_WRITES = (100, 400)
#: crash, restart and verify this many times per test
KILL_ROUNDS = 3
#: blocks per READ when verifying
VERIFY_READ_BLOCKS = 256
#: sense (key, ASC, ASCQ) of a failed flush: MEDIUM ERROR / WRITE ERROR (SPC-4 Annex D 0C/00;
#: tgt answers MEDIUM ERROR too, target-rules.md §4.2)
WRITE_ERROR = (0x03, 0x0C, 0x00)
FUA = 0x08


# ---- what was written, per LBA -------------------------------------------------------------------------


@dataclass
class Version:
    seq: int
    acked: bool = False


@dataclass
class Ledger:
    """Every write sent, per LBA, in the order its (only) writer sent them."""

    gen: int
    history: dict[int, list[Version]] = field(default_factory=dict)
    next_seq: int = 1

    def sent(self, lba: int, nblocks: int) -> list[Version]:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        out = []
        for i in range(nblocks):
            v = Version(seq)
            self.history.setdefault(lba + i, []).append(v)
            out.append(v)
        return out

    def allowed(self, lba: int) -> set[int | None]:
        """What the block may hold after the crash: the last acknowledged version (the target
        buffers nothing of its own, so an acknowledged write is in the kernel and survives kill -9)
        or a later one that was in flight; zeroes only if nothing was ever acknowledged there."""
        versions = self.history.get(lba, [])
        acked = [i for i, v in enumerate(versions) if v.acked]
        if not acked:
            return {None} | {v.seq for v in versions}
        return {v.seq for v in versions[acked[-1]:]}

    def restart_from(self, found: dict[int, int]) -> None:
        """After a verified crash: what each block holds now is its one acknowledged version."""
        self.history = {lba: [Version(seq, acked=True)] for lba, seq in found.items()}


async def mode_select_wce(c: Client, wce: bool) -> None:
    """MODE SENSE the Caching page (SBC-4 §6.5.5), flip WCE, MODE SELECT(6) it back (PF=1)."""
    sense = await c.command(bytes([0x1A, 0x08, 0x08, 0, 255, 0]), read_len=255)
    assert sense.status == GOOD, sense.sense_key
    page = bytearray(sense.data[4:4 + 2 + sense.data[5]])
    assert page[0] & 0x3F == 0x08
    page[0] &= 0x3F  # PS is reserved in MODE SELECT
    page[2] = (page[2] | 0x04) if wce else (page[2] & ~0x04)
    params = bytes(4) + bytes(page)
    res = await c.command(bytes([0x15, 0x10, 0, 0, len(params), 0]), data=params)
    assert res.status == GOOD, res.sense_key
    check = await c.command(bytes([0x1A, 0x08, 0x08, 0, 255, 0]), read_len=255)
    assert bool(check.data[4 + 2] & 0x04) == wce


async def fill(c: Client, ledger: Ledger, start: int, count: int) -> None:
    for lba in range(start, start + count, FILL_BLOCKS):
        versions = ledger.sent(lba, FILL_BLOCKS)
        res = await c.write10(lba, make_blocks(lba, FILL_BLOCKS, versions[0].seq, ledger.gen))
        assert res.status == GOOD, res.sense_key
        for v in versions:
            v.acked = True


async def read_all(c: Client, gen: int) -> list[tuple[int, int | None]]:
    found = []
    for lba in range(0, SYNCED_BLOCKS, VERIFY_READ_BLOCKS):
        res = await c.read10(lba, VERIFY_READ_BLOCKS)
        assert res.status == GOOD, res.sense_key
        found += [(f.lba, f.seq) for f in decode_blocks(res.data, lba, gen)]
    return found


# ---- kill -9 ------------------------------------------------------------------------------------------


async def writers_until_killed(server: ServerProcess, sessions: list[Client], ledger: Ledger, mode: str,
                               rng: random.Random) -> int:
    """Every session overwrites random runs of its stripe until the server is SIGKILLed after a
    random number of acknowledged writes; returns how many were acknowledged."""
    stripe = SYNCED_BLOCKS // len(sessions)
    kill_after = rng.randint(*KILL_AFTER_WRITES)
    acked = 0
    enough = trio.Event()

    async def writer(c: Client, first: int, wrng: random.Random) -> None:
        nonlocal acked
        while True:
            n = wrng.randint(1, MAX_WRITE_BLOCKS)
            lba = first + wrng.randrange(stripe - n + 1)
            versions = ledger.sent(lba, n)
            data = make_blocks(lba, n, versions[0].seq, ledger.gen)
            try:
                res = await c.write10(lba, data, fua=mode == "fua")
            except (EOFError, trio.BrokenResourceError, OSError):
                return  # the server is gone: this write may or may not have landed
            assert res.status == GOOD, res.sense_key
            for v in versions:
                v.acked = True
            acked += 1
            if acked >= kill_after:
                enough.set()

    async with trio.open_nursery() as nursery:
        for i, c in enumerate(sessions):
            nursery.start_soon(writer, c, i * stripe, random.Random(rng.random()))
        await enough.wait()
        await server.kill9()
    return acked


async def writer_sessions(server: ServerProcess, mode: str, round_no: int) -> list[Client]:
    sessions = [await open_session(server.portal, DEMO_IQN, name=f"iqn.2026-11.org.example:w{i}",
                                   isid=0x80_00_00_00_00_00 + (round_no << 8) + i) for i in range(WRITERS)]
    if mode == "wce0":  # the mode page is not saved: every start begins with WCE=1
        await mode_select_wce(sessions[0], False)
        for c in sessions[1:]:
            await c.ready()  # MODE PARAMETERS CHANGED
    return sessions


@pytest.mark.parametrize("mode", ["sync", "fua", "wce0"])
async def test_kill9_loses_no_acknowledged_write_and_tears_no_block(tmp_path: Path, mode: str) -> None:
    """kill -9 of the server mid-write, restart, and every block is checked; KILL_ROUNDS times.

    Fill LBAs 0..4095 with self-describing blocks (LBA, write sequence number, generation, CRC32C)
    and SYNCHRONIZE CACHE; then WRITERS sessions overwrite random runs of their stripes, plain
    (mode "sync"), with FUA=1 ("fua"), or after MODE SELECT cleared WCE ("wce0"), until the
    server is SIGKILLed after a random number of acknowledged writes. After a restart every block
    is intact (right LBA, right generation, CRC good: nothing torn or garbage), every synced block
    is there or was overwritten by a later write, and each block holds its last acknowledged
    version or the one write that was in flight to it (old or new, never mixed). The verified
    state is the starting point of the next round.

    kill -9 leaves the kernel's page cache intact, so this tests the target's *own* buffering (an
    acknowledged write must already be in the kernel: target-rules.md §4.3), not power loss: that
    FUA / WCE=0 / SYNCHRONIZE CACHE really sync before GOOD is what
    `test_good_means_synced_and_syncs_run_off_the_event_loop` checks.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    ledger = Ledger(gen=rng.getrandbits(32))
    server = ServerProcess(tmp_path / "data", f"127.0.0.1:{free_port()}")
    try:
        async with trio.open_nursery() as nursery:
            await server.start(nursery, "stdout", DEMO_MARKER)
            for round_no in range(KILL_ROUNDS):
                sessions = await writer_sessions(server, mode, round_no)
                if round_no == 0:
                    stripe = SYNCED_BLOCKS // WRITERS
                    async with trio.open_nursery() as fillers:
                        for i, c in enumerate(sessions):
                            fillers.start_soon(fill, c, ledger, i * stripe, stripe)
                assert (await sessions[0].sync_cache()).status == GOOD
                acked = await writers_until_killed(server, sessions, ledger, mode, rng)
                assert acked >= KILL_AFTER_WRITES[0]
                for c in sessions:
                    await c.aclose()
                await server.start(nursery, "stderr", READY_MARKER)
                found = await verify(server, ledger, f"mode {mode}, seed {seed:#x}, round {round_no}")
                ledger.restart_from(found)
            nursery.cancel_scope.cancel()
    finally:
        server.kill_quietly()


async def verify(server: ServerProcess, ledger: Ledger, context: str) -> dict[int, int]:
    """Read every block back through a fresh session; each must be in an allowed state."""
    c = await open_session(server.portal, DEMO_IQN, name="iqn.2026-11.org.example:verify", isid=0x80_01)
    try:
        found = await read_all(c, ledger.gen)
    except BadBlock as exc:
        raise AssertionError(f"{exc} ({context})") from exc
    finally:
        await c.aclose()
    wrong = [(lba, seq, sorted(ledger.allowed(lba), key=str)) for lba, seq in found if seq not in ledger.allowed(lba)]
    assert not wrong, f"{context}: blocks not in an allowed state (LBA, found, allowed): {wrong[:10]}"
    assert [lba for lba, _ in found] == list(range(SYNCED_BLOCKS))
    out = {lba: seq for lba, seq in found if seq is not None}
    assert len(out) == SYNCED_BLOCKS, f"{context}: synced blocks read back as zeroes"
    return out


# ---- GOOD means synced, and syncing never blocks the event loop (in-process) --------------------------


async def test_good_means_synced_and_syncs_run_off_the_event_loop(tmp_path: Path) -> None:
    hook = FlushHook()
    async with hooked_server(tmp_path / "data", hook) as run:
        c = await open_session(run.portal, DEMO_IQN, name="iqn.2026-11.org.example:promise", isid=0x80_2)
        # WCE=1, plain WRITE: GOOD once the data is in the cache; nothing synced
        mark = hook.mark()
        assert (await c.write10(1000, make_blocks(1000, 8, 1, 1))).status == GOOD
        assert not hook.covers(1000, 8, since=mark)
        # FUA=1: synced before GOOD (SBC-4 §5.40)
        mark = hook.mark()
        assert (await c.write10(2000, make_blocks(2000, 8, 2, 1), fua=True)).status == GOOD
        assert hook.covers(2000, 8, since=mark)
        assert not hook.covers(1000, 8, since=mark)
        # SYNCHRONIZE CACHE covers the earlier plain write (SBC-4 §5.24)
        mark = hook.mark()
        assert (await c.sync_cache()).status == GOOD
        assert hook.covers(1000, 8, since=mark)
        # WCE=0: every WRITE is write-through (SBC-4 §6.5.5)
        await mode_select_wce(c, False)
        mark = hook.mark()
        assert (await c.write10(3000, make_blocks(3000, 8, 3, 1))).status == GOOD
        assert hook.covers(3000, 8, since=mark)
        # WCE back on: plain writes are cached again
        await mode_select_wce(c, True)
        mark = hook.mark()
        assert (await c.write10(4000, make_blocks(4000, 8, 4, 1))).status == GOOD
        assert not hook.covers(4000, 8, since=mark)
        on_loop = [(off, length) for off, length, loop in hook.synced if loop]
        assert not on_loop, f"msync ran on the event loop's thread: {on_loop}"
        await c.aclose()


# ---- a flush that fails ---------------------------------------------------------------------------------


def write16_cdb(lba: int, nblocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, flags, lba, nblocks, 0, 0)


def sync16_cdb() -> bytes:
    return bytes([0x91]) + bytes(15)


def refused(res: Result) -> None:
    assert res.status == CHECK_CONDITION and res.sense_key == WRITE_ERROR, (res.status, res.sense_key)


async def test_failed_flush_is_medium_error_and_no_false_good_follows(tmp_path: Path) -> None:
    """The backend's sync fails once, as a disk whose write-back failed (EIO), and then "works"
    again: a retried fsync would now succeed although the data is gone (fsyncgate). The target
    answers MEDIUM ERROR and keeps refusing every flush and write on that LU, from every session,
    without retrying the sync; reads still work. Re-opening the extent (an operator disabling and
    re-enabling it) clears the fault."""
    hook = FlushHook()
    async with hooked_server(tmp_path / "data", hook) as run:
        c = await open_session(run.portal, DEMO_IQN, name="iqn.2026-11.org.example:fsyncgate", isid=0x80_3)
        assert (await c.write10(100, make_blocks(100, 8, 1, 1))).status == GOOD
        assert (await c.sync_cache()).status == GOOD
        hook.fail = True
        assert (await c.write10(200, make_blocks(200, 8, 2, 1))).status == GOOD  # cached, not yet synced
        refused(await c.sync_cache())
        hook.fail = False

        other = await open_session(run.portal, DEMO_IQN, name="iqn.2026-11.org.example:other", isid=0x80_4)
        data = make_blocks(300, 8, 3, 1)
        for s in (c, other):
            refused(await s.sync_cache())
            refused(await s.command(sync16_cdb()))
            refused(await s.write10(300, data))
            refused(await s.write10(300, data, fua=True))
            refused(await s.command(write16_cdb(300, 8, FUA), data=data))
            res = await s.read10(100, 8)
            assert res.status == GOOD and res.data == make_blocks(100, 8, 1, 1)
        assert hook.failures == 1, "the target retried a failed sync"

        (ext,) = run.service.config.extents.values()
        for enabled in (False, True):
            cfg = run.service.config.copy()
            cfg.extents[ext.id] = dataclasses.replace(ext, enabled=enabled)
            await run.service.apply(cfg)
        await other.ready()
        assert (await other.sync_cache()).status == GOOD
        assert (await other.write10(300, data, fua=True)).status == GOOD
        await c.aclose()
        await other.aclose()


# ---- the checker itself ---------------------------------------------------------------------------------


def test_block_checker_tells_torn_misdirected_and_stale_blocks_apart() -> None:
    """The verification above is only as good as `decode_block`: it must reject what a crash or a
    wrong write could leave behind, and accept exactly the intact block and zeroes."""
    gen = 0xABCD
    old, new = make_blocks(7, 1, 1, gen), make_blocks(7, 1, 2, gen)
    assert decode_blocks(old, 7, gen)[0].seq == 1
    assert decode_blocks(bytes(len(old)), 7, gen)[0].seq is None
    torn = new[:256] + old[256:]  # half of each version: a torn sector
    for bad, lba, g in ((torn, 7, gen), (old, 8, gen), (old, 7, gen + 1), (os.urandom(len(old)), 7, gen)):
        with pytest.raises(BadBlock):
            decode_blocks(bad, lba, g)
