"""execute(nowait=True), the event loop's way in (docs/performance.md): commands that may block
raise storage.WouldBlock before anything changed, READ and WRITE run whatever their size unless
the backend says they would wait (read_nowait/write_nowait) or the write is synchronous (FUA,
WCE=0); and a command refused with WouldBlock, run again without nowait, does what it would
have done the first time."""

from __future__ import annotations

import pytest

from pyscsi_target.scsi import LogicalUnit, ScsiRequest, SenseReason, execute
from pyscsi_target.scsi.types import GOOD
from pyscsi_target.storage import MemoryBackend, WouldBlock
from pyscsi_target.storage.base import Buffer

from .util import NEXUS, cdb6, cdb10, cdb16, identity, make_lu, sense_of

BS = 512
BLOCKS = 8192


class TieredBackend(MemoryBackend):
    """A MemoryBackend whose blocks from `cold_from` on are "on the device": read_nowait refuses
    them; `stalled` makes write_nowait refuse (what StallGuard does after a stall)."""

    def __init__(self, num_blocks: int, block_size: int, cold_from: int) -> None:
        super().__init__(num_blocks, block_size)
        self.cold_from = cold_from
        self.stalled = False

    def read_nowait(self, lba: int, nblocks: int) -> memoryview:
        if lba + nblocks > self.cold_from:
            raise WouldBlock
        return self.read(lba, nblocks)

    def write_nowait(self, lba: int, data: Buffer) -> None:
        if self.stalled:
            raise WouldBlock
        self.write(lba, data)


@pytest.fixture
def tiered() -> TieredBackend:
    return TieredBackend(BLOCKS, BS, cold_from=BLOCKS // 2)


@pytest.fixture
def tlu(tiered: TieredBackend) -> LogicalUnit:
    return make_lu(tiered, identity())


def req(cdb: bytes, data: bytes | None = None) -> ScsiRequest:
    return ScsiRequest(cdb=cdb, lun=0, nexus=NEXUS, data_out=data)


def test_reads_of_cached_blocks_run_inline_whatever_their_size(tlu: LogicalUnit, tiered: TieredBackend) -> None:
    tiered.write(0, b"h" * (2048 * BS))
    res = execute(req(cdb16(0x88, 0, 2048)), {0: tlu}, nowait=True)  # 1 MiB: is_blocking(), yet inline
    assert res.status == GOOD and bytes(res.data) == b"h" * (2048 * BS)


@pytest.mark.parametrize("make_cdb", [cdb6, cdb10, cdb16])
def test_a_cold_read_would_block_and_then_runs_in_full(tlu: LogicalUnit, tiered: TieredBackend,
                                                       make_cdb: object) -> None:
    lba = BLOCKS // 2 + 10
    tiered.write(lba, b"c" * (4 * BS))
    cdb = make_cdb(0x08 if make_cdb is cdb6 else 0x28 if make_cdb is cdb10 else 0x88, lba, 4)  # type: ignore[operator]
    with pytest.raises(WouldBlock):
        execute(req(cdb), {0: tlu}, nowait=True)
    res = execute(req(cdb), {0: tlu})
    assert res.status == GOOD and bytes(res.data) == b"c" * (4 * BS)


def test_a_pending_unit_attention_is_reported_not_refused(tlu: LogicalUnit) -> None:
    tlu.add_unit_attention(SenseReason.CAPACITY_DATA_CHANGED)
    cold = cdb16(0x88, BLOCKS - 4, 4)
    res = execute(req(cold), {0: tlu}, nowait=True)  # the UA check comes first and needs no wait
    assert sense_of(res) == (0x06, 0x2A, 0x09)
    with pytest.raises(WouldBlock):  # then the read itself is refused, and no UA was lost on the way
        execute(req(cold), {0: tlu}, nowait=True)
    assert tlu.pending_unit_attentions(NEXUS) == []


def test_commands_that_may_block_are_refused_before_they_run(tlu: LogicalUnit, tiered: TieredBackend) -> None:
    sync = cdb10(0x35, 0, 0)
    with pytest.raises(WouldBlock):
        execute(req(sync), {0: tlu}, nowait=True)
    assert execute(req(sync), {0: tlu}).status == GOOD
    ws = cdb10(0x41, 0, 16)  # WRITE SAME(10): blocking=True
    with pytest.raises(WouldBlock):
        execute(req(ws, b"w" * BS), {0: tlu}, nowait=True)
    assert bytes(tiered.read(0, 1)) == bytes(BS)  # nothing written


def test_synchronous_writes_go_to_a_thread(tlu: LogicalUnit, tiered: TieredBackend) -> None:
    fua = cdb10(0x2A, 3, 1, flags=0x08)
    with pytest.raises(WouldBlock):
        execute(req(fua, b"f" * BS), {0: tlu}, nowait=True)
    assert bytes(tiered.read(3, 1)) == bytes(BS)
    assert execute(req(fua, b"f" * BS), {0: tlu}).status == GOOD
    tlu.mode.wce = False  # write-through: every write syncs
    plain = cdb10(0x2A, 4, 1)
    with pytest.raises(WouldBlock):
        execute(req(plain, b"p" * BS), {0: tlu}, nowait=True)
    assert bytes(tiered.read(4, 1)) == bytes(BS)


def test_writes_run_inline_unless_the_backend_backs_off(tlu: LogicalUnit, tiered: TieredBackend) -> None:
    big = cdb10(0x2A, 0, 2048)  # 1 MiB: is_blocking(), yet inline
    res = execute(req(big, b"b" * (2048 * BS)), {0: tlu}, nowait=True)
    assert res.status == GOOD and res.transfer_length == 2048 * BS
    assert bytes(tiered.read(2047, 1)) == b"b" * BS
    tiered.stalled = True
    with pytest.raises(WouldBlock):
        execute(req(cdb10(0x2A, 9, 1), b"s" * BS), {0: tlu}, nowait=True)
    assert bytes(tiered.read(9, 1)) == b"b" * BS  # unchanged until run where it may wait
    assert execute(req(cdb10(0x2A, 9, 1), b"s" * BS), {0: tlu}).status == GOOD
    assert bytes(tiered.read(9, 1)) == b"s" * BS


def test_errors_are_answered_not_refused(tlu: LogicalUnit) -> None:
    beyond = cdb16(0x88, BLOCKS, 1)
    assert sense_of(execute(req(beyond), {0: tlu}, nowait=True)) == (0x05, 0x21, 0x00)  # LBA OUT OF RANGE
    reserved = bytearray(cdb10(0x35, 0, 0))
    reserved[1] |= 0x01  # a reserved bit of SYNCHRONIZE CACHE: INVALID FIELD IN CDB, no thread needed
    assert sense_of(execute(req(bytes(reserved)), {0: tlu}, nowait=True))[:2] == (0x05, 0x24)
