"""READ CAPACITY(10/16), READ and WRITE (6/10/12/16), SYNCHRONIZE CACHE(10/16) (SBC-4 §5)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD
from pyscsi_target.storage import MemoryBackend
from pyscsi_target.storage.base import FlushFailed

from .conftest import BLOCK_SIZE, NUM_BLOCKS
from .util import SparseBackend, cdb6, cdb10, cdb12, cdb16, field_pointer, good, identity, make_lu, run, sense_of

LBA_OOB = (0x05, 0x21, 0x00)
INVALID_FIELD = (0x05, 0x24, 0x00)

READS: dict[str, Callable[[int, int], bytes]] = {
    "read6": lambda lba, n: cdb6(0x08, lba, n),
    "read10": lambda lba, n: cdb10(0x28, lba, n),
    "read12": lambda lba, n: cdb12(0xA8, lba, n),
    "read16": lambda lba, n: cdb16(0x88, lba, n),
}
WRITES: dict[str, Callable[[int, int], bytes]] = {
    "write6": lambda lba, n: cdb6(0x0A, lba, n),
    "write10": lambda lba, n: cdb10(0x2A, lba, n),
    "write12": lambda lba, n: cdb12(0xAA, lba, n),
    "write16": lambda lba, n: cdb16(0x8A, lba, n),
}
PAIRS = list(zip(READS.values(), WRITES.values(), strict=True))


def pattern(nblocks: int, seed: int = 1) -> bytes:
    return bytes((seed + i) % 251 for i in range(nblocks * BLOCK_SIZE))


# ---- READ CAPACITY ---------------------------------------------------------------------------


def rc16(alloc: int = 32) -> bytes:
    return struct.pack(">BBQIBB", 0x9E, 0x10, 0, alloc, 0, 0)


def test_read_capacity10(lu: LogicalUnit) -> None:
    assert good(lu, bytes([0x25]) + bytes(9)) == struct.pack(">II", NUM_BLOCKS - 1, BLOCK_SIZE)


def test_read_capacity10_too_big_and_pmi() -> None:
    lu = make_lu(SparseBackend(1 << 33, 4096), identity())
    assert good(lu, bytes([0x25]) + bytes(9)) == struct.pack(">II", 0xFFFFFFFF, 4096)
    assert sense_of(run(lu, bytes([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]))) == INVALID_FIELD  # LBA without PMI
    good(lu, bytes([0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0]))


def test_read_capacity16(lu: LogicalUnit) -> None:
    data = good(lu, rc16())
    assert data == struct.pack(">QI", NUM_BLOCKS - 1, BLOCK_SIZE) + bytes(20)


def test_read_capacity16_thin_exponent_and_allocation_length(thin_lu: LogicalUnit) -> None:
    thin_lu.identity.physical_block_exponent = 3
    data = good(thin_lu, rc16())
    assert data[12] == 0  # P_TYPE 0, PROT_EN 0
    assert data[13] == 3  # LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT
    assert data[14] == 0xC0  # LBPME, LBPRZ
    assert good(thin_lu, rc16(alloc=12)) == data[:12]
    assert good(thin_lu, rc16(alloc=0)) == b""


def test_read_capacity16_huge() -> None:
    lu = make_lu(SparseBackend(1 << 40), identity())
    assert struct.unpack(">Q", good(lu, rc16())[:8])[0] == (1 << 40) - 1


# ---- READ / WRITE ----------------------------------------------------------------------------


@pytest.mark.parametrize(("read", "write"), PAIRS, ids=list(READS))
def test_write_then_read_back(
    lu: LogicalUnit, read: Callable[[int, int], bytes], write: Callable[[int, int], bytes]
) -> None:
    data = pattern(3)
    good(lu, write(10, 3), data=data)
    assert good(lu, read(10, 3)) == data
    assert good(lu, read(9, 1)) == bytes(BLOCK_SIZE)


def test_read_returns_the_backend_view_without_copy(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x28, 0, 4))
    assert isinstance(res.data, memoryview) and len(res.data) == 4 * BLOCK_SIZE


def test_read6_and_write6_zero_length_mean_256_blocks(lu: LogicalUnit) -> None:
    data = pattern(256, seed=7)
    good(lu, cdb6(0x0A, 0, 0), data=data)
    assert good(lu, cdb6(0x08, 0, 0)) == data


@pytest.mark.parametrize("make", [*READS.values(), *WRITES.values()], ids=[*READS, *WRITES])
def test_beyond_end_of_lun(lu: LogicalUnit, make: Callable[[int, int], bytes]) -> None:
    data = bytes(2 * BLOCK_SIZE)
    assert sense_of(run(lu, make(NUM_BLOCKS - 1, 2), data=data)) == LBA_OOB
    assert sense_of(run(lu, make(NUM_BLOCKS, 1), data=data)) == LBA_OOB
    assert run(lu, make(NUM_BLOCKS - 2, 2), data=data).status == GOOD


@pytest.mark.parametrize(
    "make", [READS["read10"], READS["read16"], WRITES["write10"], WRITES["write16"]], ids=str
)
def test_zero_blocks_are_still_range_checked(lu: LogicalUnit, make: Callable[[int, int], bytes]) -> None:
    assert run(lu, make(0, 0)).status == GOOD
    assert run(lu, make(NUM_BLOCKS, 0)).status == GOOD
    assert sense_of(run(lu, make(NUM_BLOCKS + 1, 0))) == LBA_OOB
    assert sense_of(run(lu, make(0x80000000, 0))) == LBA_OOB
    assert sense_of(run(lu, make(0xFFFFFFFF, 0))) == LBA_OOB


def test_huge_lba_in_16_byte_cdb(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, cdb16(0x88, (1 << 64) - 1, 1))) == LBA_OOB
    assert sense_of(run(lu, cdb16(0x88, 1 << 63, 0xFFFFFFFF))) == LBA_OOB


def test_transfer_beyond_maximum_transfer_length_is_invalid() -> None:
    lu = make_lu(SparseBackend(1 << 20), identity())
    too_many = (8 << 20) // 512 + 1
    res = run(lu, cdb10(0x28, 0, too_many))
    assert sense_of(res) == INVALID_FIELD
    assert field_pointer(res) == (True, 7, None)


def test_dpo_fua_flags_are_accepted_on_reads(lu: LogicalUnit) -> None:
    for flags in (0x10, 0x08, 0x18, 0x02):
        good(lu, cdb10(0x28, 0, 1, flags=flags))


def test_fua_and_write_through_use_write_fua() -> None:
    backend = SparseBackend(64)
    lu = make_lu(backend, identity())
    good(lu, cdb10(0x2A, 0, 1), data=bytes(512))
    assert backend.fua_writes == 0
    good(lu, cdb10(0x2A, 0, 1, flags=0x08), data=bytes(512))
    good(lu, cdb16(0x8A, 0, 1, flags=0x18), data=bytes(512))
    assert backend.fua_writes == 2
    lu.mode.wce = False
    good(lu, cdb10(0x2A, 0, 1), data=bytes(512))
    good(lu, cdb6(0x0A, 0, 1), data=bytes(512))
    assert backend.fua_writes == 4
    assert backend.flushes == [(0, 1)] * 4


def test_short_data_out_writes_only_the_whole_blocks_sent(lu: LogicalUnit) -> None:
    # libiscsi iSCSIResiduals: EDTL < transfer length -> GOOD, overflow residual, only what was
    # sent (in whole blocks) is written
    good(lu, cdb10(0x2A, 0, 2), data=b"a" * 1024)
    for sent in (None, b"b" * 200):
        res = run(lu, cdb10(0x2A, 0, 2), data=sent)
        assert res.status == GOOD and res.transfer_length == 1024
    assert good(lu, cdb10(0x28, 0, 2)) == b"a" * 1024
    res = run(lu, cdb10(0x2A, 0, 2), data=b"b" * 512)
    assert res.status == GOOD and res.transfer_length == 1024
    assert good(lu, cdb10(0x28, 0, 2)) == b"b" * 512 + b"a" * 512


def test_long_data_out_writes_only_the_cdb_blocks(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x2A, 0, 1), data=memoryview(b"c" * 1024))
    assert res.status == GOOD and res.transfer_length == 512
    assert good(lu, cdb10(0x28, 0, 2)) == b"c" * 512 + bytes(512)


def test_write_zero_blocks_is_good_with_no_data(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x2A, 5, 0))
    assert res.status == GOOD and res.transfer_length == 0


def test_write_protect_bits_are_refused(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x2A, 0, 1, flags=0x20), data=bytes(512))  # WRPROTECT=001b
    assert sense_of(res) == INVALID_FIELD


def test_block_size_4096() -> None:
    lu = make_lu(MemoryBackend(16, 4096), identity())
    data = bytes(range(256)) * 32
    good(lu, cdb10(0x2A, 15, 1), data=data[:4096])
    assert good(lu, cdb16(0x88, 15, 1)) == data[:4096]


# ---- SYNCHRONIZE CACHE -----------------------------------------------------------------------


def test_synchronize_cache_flushes_the_range() -> None:
    backend = SparseBackend(64)
    lu = make_lu(backend, identity())
    good(lu, cdb10(0x35, 0, 0))
    good(lu, cdb10(0x35, 8, 4, flags=0x02))  # IMMED accepted, still flushed before status
    good(lu, cdb16(0x91, 60, 4))
    assert backend.flushes == [(0, 0), (8, 4), (60, 4)]


def test_synchronize_cache_range_check(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, cdb10(0x35, NUM_BLOCKS - 1, 2))) == LBA_OOB
    assert sense_of(run(lu, cdb16(0x91, NUM_BLOCKS + 1, 0))) == LBA_OOB
    good(lu, cdb16(0x91, NUM_BLOCKS - 1, 1))


def test_synchronize_cache_failure_is_never_good() -> None:
    backend = SparseBackend(64)
    backend.fail["flush"] = FlushFailed("EIO")
    lu = make_lu(backend, identity())
    for _ in range(2):
        res = run(lu, cdb10(0x35, 0, 0))
        assert res.status == CHECK_CONDITION and sense_of(res) == (0x03, 0x0C, 0x00)
