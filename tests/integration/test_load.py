"""Issue #7, load and backpressure: 200 concurrent sessions each doing verified I/O on its own LBA
range, and one reader that stalls while another session keeps working.

Every session comes from its own loopback source address (127.0.1.N), as 200 initiators would;
the target's admission limits per source address (server/admission.py) therefore apply to each
one alone. All 200 are logged in at the same time before any I/O starts, then all write, read
back and compare at once, and a final pass reads every range through one more session to show
that no session's data landed in another's range. Small I/Os keep it well under a minute on two
cores (the server and all clients share this test's trio loop).
"""

from __future__ import annotations

import random
import struct

import trio

from pyscsi_target.protocol.limits import COMMAND_WINDOW_DEPTH
from pyscsi_target.server.connection import RECV_BUFFER_BYTES
from tests.support import DEMO_IQN, Running

from .client import Client
from .reliability import BS, GOOD, decode_blocks, handler_of, make_blocks, open_session, write_and_verify

SESSIONS = 200
#: blocks owned by each session
RANGE_BLOCKS = 64
#: write + read + compare rounds per session
ROUNDS = 8
#: blocks per WRITE
WRITE_BLOCKS = 8
#: first LBA of session 0 (ranges follow each other)
BASE_LBA = 100_000
#: seconds the whole test may take
LOAD_TIMEOUT_S = 60.0
GEN = 0x10AD
STALLED = "iqn.2026-11.org.example:stalled"
STALLED_ISID = 0x80_00_00_CC_00_01
BYSTANDER = "iqn.2026-11.org.example:bystander"
BYSTANDER_ISID = 0x80_00_00_BB_00_01
#: seconds a single wait may take before the test fails
STEP_TIMEOUT_S = 10.0


def seq_of(session: int, round_no: int) -> int:
    return session * ROUNDS + round_no + 1


async def session_io(c: Client, session: int, rng: random.Random) -> dict[int, int]:
    """ROUNDS verified writes at random places of the session's range; what each LBA now holds."""
    first = BASE_LBA + session * RANGE_BLOCKS
    holds: dict[int, int] = {}
    for round_no in range(ROUNDS):
        lba = first + rng.randrange(RANGE_BLOCKS - WRITE_BLOCKS + 1)
        seq = seq_of(session, round_no)
        data = make_blocks(lba, WRITE_BLOCKS, seq, GEN)
        res = await c.write10(lba, data)
        assert res.status == GOOD, (session, res.sense_key)
        res = await c.read10(lba, WRITE_BLOCKS)
        assert res.status == GOOD and res.data == data, f"session {session} read back other data"
        holds.update((lba + i, seq) for i in range(WRITE_BLOCKS))
    assert (await c.sync_cache()).status == GOOD
    return holds


async def test_200_concurrent_sessions_do_verified_io(demo: Running) -> None:
    clients: list[Client | None] = [None] * SESSIONS
    expected: dict[int, int] = {}
    with trio.fail_after(LOAD_TIMEOUT_S):

        async def log_in(i: int) -> None:
            clients[i] = await open_session(demo.portal, DEMO_IQN, name=f"iqn.2026-11.org.example:load-{i}",
                                            isid=0x80_00_00_00_00_00 + i, local_ip=f"127.0.1.{i + 1}")

        async with trio.open_nursery() as nursery:
            for i in range(SESSIONS):
                nursery.start_soon(log_in, i)
        assert len(demo.service.registry) == SESSIONS
        assert len({s.tsih for s in demo.service.sessions()}) == SESSIONS

        async def run(i: int) -> None:
            c = clients[i]
            assert c is not None
            expected.update(await session_io(c, i, random.Random(i)))

        async with trio.open_nursery() as nursery:
            for i in range(SESSIONS):
                nursery.start_soon(run, i)
        assert len(demo.service.handlers) == SESSIONS

        checker = await open_session(demo.portal, DEMO_IQN, name="iqn.2026-11.org.example:load-check",
                                     isid=0x80_00_00_00_FF_FF)
        span = SESSIONS * RANGE_BLOCKS
        res = await checker.read10(BASE_LBA, span)
        assert res.status == GOOD
        found = {f.lba: f.seq for f in decode_blocks(res.data, BASE_LBA, GEN)}
        assert found == {lba: expected.get(lba) for lba in range(BASE_LBA, BASE_LBA + span)}
        await checker.aclose()
        handlers = list(demo.service.handlers)
        for c in clients:
            assert c is not None
            assert (await c.logout()).response == 0
            await c.aclose()
        for h in handlers:
            await h.closed.wait()
    assert not demo.service.handlers
    assert len(demo.service.registry) == 0


# ---- a reader that stalls (target-rules.md §5.2 "slow readers / backpressure") -------------------

#: READs the stalled initiator sends: more than the CmdSN window, so the window is what bounds them
STALL_READS = 4 * COMMAND_WINDOW_DEPTH
#: blocks per READ (256 KiB: what the target queues for the window is 32 MiB of Data-In)
STALL_READ_BLOCKS = 512
#: bytes of ping data per NOP-Out the stalled initiator keeps sending (echoed, so copied, by the target)
PING_BYTES = 65536
#: the client's sends made no progress for this long (real seconds): the target stopped reading
STALL_QUIET_S = 0.5
#: I/O rounds the bystander times before and during the stall
BYSTANDER_ROUNDS = 40
#: the target's own memory (anonymous RSS) may grow at most this much while one reader stalls
MAX_RSS_GROWTH_BYTES = 48 << 20


def kernel_tcp_buffer_max() -> int:
    """Most bytes the kernel may buffer for one direction of a loopback connection (receiver's
    tcp_rmem max + sender's tcp_wmem max)."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            total += int(f.read().split()[2])
    return total


def rss_anon_bytes() -> int:
    """This process' anonymous resident memory (heap: what queued responses would cost; mapped
    extent pages are file-backed and left out)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


async def timed_rounds(c: Client, lba: int, seq: int) -> float:
    """Seconds for BYSTANDER_ROUNDS verified write+read rounds."""
    start = trio.current_time()
    for i in range(BYSTANDER_ROUNDS):
        await write_and_verify(c, lba, seq + i, GEN)
    return trio.current_time() - start


async def test_stalled_reader_is_bounded_and_does_not_slow_others(demo: Running) -> None:
    """One initiator sends READs far past its CmdSN window and then NOP-Outs with data, and never
    reads. The target stops reading from it once its responses cannot be sent (the client's sends
    stall after at most the kernel's buffers plus the target's receive buffers), its memory grows by
    at most the window's worth, and another session keeps its speed. When the stalled one goes,
    its handler goes too."""
    bystander = await open_session(demo.portal, DEMO_IQN, name=BYSTANDER, isid=BYSTANDER_ISID)
    await timed_rounds(bystander, 20_000, 100)  # warm up
    baseline = await timed_rounds(bystander, 20_000, 200)

    stalled = await open_session(demo.portal, DEMO_IQN, name=STALLED, isid=STALLED_ISID)
    handler = handler_of(demo.service, STALLED, STALLED_ISID)
    answered_before = handler.conn.commands
    rss_before = rss_anon_bytes()
    bound = kernel_tcp_buffer_max() + 2 * RECV_BUFFER_BYTES + COMMAND_WINDOW_DEPTH * PING_BYTES
    budget = 4 * bound
    sent = 0
    payload = bytes(PING_BYTES)

    async def flood() -> None:
        nonlocal sent
        read = struct.pack(">BBIBHB", 0x28, 0, 0, 0, STALL_READ_BLOCKS, 0)
        for _ in range(STALL_READS):
            pdu = stalled.ini.scsi_command(read, read=True, edtl=STALL_READ_BLOCKS * BS)
            await stalled.send(pdu)
            sent += len(pdu)
        while sent < budget:
            pdu = stalled.ini.nop_out(data=payload)
            await stalled.send(pdu)
            sent += len(pdu)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        # poll until the client's sends stop making progress: the target stopped reading
        last, quiet_since = -1, trio.current_time()
        with trio.fail_after(60):
            while trio.current_time() - quiet_since < STALL_QUIET_S:
                await trio.sleep(STALL_QUIET_S / 10)
                if sent != last:
                    last, quiet_since = sent, trio.current_time()
        assert sent < budget and sent <= bound, f"the target kept reading from a stalled peer: {sent} bytes"
        growth = rss_anon_bytes() - rss_before
        assert growth <= MAX_RSS_GROWTH_BYTES, f"memory grew by {growth >> 20} MiB for one stalled reader"
        assert handler.conn.commands - answered_before <= COMMAND_WINDOW_DEPTH  # READs past the window: dropped

        during = await timed_rounds(bystander, 30_000, 300)
        assert during <= 5 * baseline + 1.0, (during, baseline)
        assert not handler.closed.is_set()
        nursery.cancel_scope.cancel()
    await stalled.aclose()
    with trio.fail_after(STEP_TIMEOUT_S):
        await handler.closed.wait()
    assert len(demo.service.handlers) == 1
    await write_and_verify(bystander, 40_000, 400, GEN)
    await bystander.aclose()
