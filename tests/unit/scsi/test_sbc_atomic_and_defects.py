"""ORWRITE(16), WRITE ATOMIC(16) and READ DEFECT DATA(10/12) (SBC-4 §5.10, §5.48, §5.19-5.20),
with the VPD fields that advertise them."""

from __future__ import annotations

import struct

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.core import data_out_length
from pyscsi_target.scsi.vpd import max_atomic_transfer_blocks, max_transfer_blocks
from pyscsi_target.storage import MemoryBackend

from .conftest import NUM_BLOCKS
from .util import SparseBackend, cdb10, cdb16, field_pointer, good, identity, make_lu, run, sense_of

BS = 512
LBA_OOB = (0x05, 0x21, 0x00)
INVALID_FIELD = (0x05, 0x24, 0x00)
WRITE_PROTECTED = (0x07, 0x27, 0x00)


def read(lu: LogicalUnit, lba: int, nblocks: int) -> bytes:
    return good(lu, cdb10(0x28, lba, nblocks))


# ---- ORWRITE(16) -------------------------------------------------------------------------------------


def orwrite(lba: int, nblocks: int, flags: int = 0) -> bytes:
    return cdb16(0x8B, lba, nblocks, flags)


def test_orwrite_golden_and_or_semantics(lu: LogicalUnit) -> None:
    """libiscsi OrWrite.Verify: zeroes | A5 = A5, then A5 | 5A = FF."""
    assert orwrite(8, 2) == bytes.fromhex("8b000000000000000008000000020000")
    good(lu, cdb10(0x2A, 8, 2), data=bytes(2 * BS))
    good(lu, orwrite(8, 2), data=b"\xa5" * (2 * BS))
    assert read(lu, 8, 2) == b"\xa5" * (2 * BS)
    good(lu, orwrite(8, 2, flags=0x08), data=b"\x5a" * (2 * BS))  # FUA
    assert read(lu, 8, 2) == b"\xff" * (2 * BS)


def test_orwrite_fua_and_write_through_reach_the_medium() -> None:
    backend = SparseBackend(64)
    lu = make_lu(backend, identity())
    good(lu, orwrite(0, 1, flags=0x08), data=bytes(BS))
    assert backend.fua_writes == 1
    lu.mode.wce = False
    good(lu, orwrite(0, 1), data=bytes(BS))
    assert backend.fua_writes == 2


def test_orwrite_errors(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, orwrite(NUM_BLOCKS - 1, 2), data=bytes(2 * BS))) == LBA_OOB
    res = run(lu, orwrite(0, 1, flags=0x20), data=bytes(BS))  # ORPROTECT: no protection information
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 5)
    good(lu, orwrite(NUM_BLOCKS, 0))  # zero blocks at the end: nothing, GOOD
    big = make_lu(SparseBackend(1 << 20), identity())
    res = run(big, orwrite(0, max_transfer_blocks(BS) + 1))
    assert field_pointer(res) == (True, 10, None)
    ro = make_lu(MemoryBackend(8), identity(read_only=True))
    assert sense_of(run(ro, orwrite(0, 1), data=bytes(BS))) == WRITE_PROTECTED
    assert data_out_length(orwrite(0, 3), 4096) == 3 * 4096


# ---- WRITE ATOMIC(16) --------------------------------------------------------------------------------


def write_atomic(lba: int, nblocks: int, flags: int = 0, boundary: int = 0) -> bytes:
    return struct.pack(">BBQHHBB", 0x9C, flags, lba, boundary, nblocks, 0, 0)


def test_write_atomic_golden_and_data(lu: LogicalUnit) -> None:
    assert write_atomic(3, 2) == bytes.fromhex("9c000000000000000003" "0000" "0002" "0000")
    good(lu, write_atomic(3, 2, flags=0x18), data=b"\x42" * (2 * BS))  # DPO, FUA
    assert read(lu, 3, 2) == b"\x42" * (2 * BS)
    assert data_out_length(write_atomic(0, 7), 512) == 7 * 512


def test_write_atomic_limits(lu: LogicalUnit) -> None:
    limit = max_atomic_transfer_blocks(BS)
    assert 256 <= limit <= max_transfer_blocks(BS)  # libiscsi WriteAtomic16.Simple writes 1..256
    big = make_lu(SparseBackend(1 << 20), identity())
    res = run(big, write_atomic(0, limit + 1))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 12, None)
    assert field_pointer(run(lu, write_atomic(0, 1, boundary=1), data=bytes(BS))) == (True, 11, 0)
    assert sense_of(run(lu, write_atomic(NUM_BLOCKS - 1, 2), data=bytes(2 * BS))) == LBA_OOB
    assert field_pointer(run(lu, write_atomic(0, 1, flags=0x20), data=bytes(BS))) == (True, 1, 5)
    good(lu, write_atomic(0, 0))
    ro = make_lu(MemoryBackend(8), identity(read_only=True))
    assert sense_of(run(ro, write_atomic(0, 1), data=bytes(BS))) == WRITE_PROTECTED


@pytest.mark.parametrize("block_size", [512, 4096])
def test_block_limits_advertise_atomic_writes(block_size: int) -> None:
    lu = make_lu(MemoryBackend(64, block_size), identity())
    page = good(lu, bytes([0x12, 0x01, 0xB0, 0x00, 0xFF, 0]))
    max_transfer, = struct.unpack(">I", page[8:12])
    max_atomic, alignment, granularity, with_boundary, boundary = struct.unpack(">5I", page[44:64])
    assert max_atomic == max_atomic_transfer_blocks(block_size) and 256 <= max_atomic <= max_transfer
    assert (alignment, granularity, with_boundary, boundary) == (0, 0, 0, 0)


# ---- READ DEFECT DATA(10/12) -------------------------------------------------------------------------


def rdd10(flags: int, alloc: int = 32) -> bytes:
    return struct.pack(">BBB4xHB", 0x37, 0, flags, alloc, 0)


def rdd12(flags: int, alloc: int = 32, index: int = 0) -> bytes:
    return struct.pack(">BBIIBB", 0xB7, flags, index, alloc, 0, 0)


def test_read_defect_data10_golden(lu: LogicalUnit) -> None:
    assert rdd10(0) == bytes.fromhex("37000000000000002000")
    assert good(lu, rdd10(0)) == bytes.fromhex("00000000")
    assert good(lu, rdd10(0x18 | 0x03)) == bytes.fromhex("001b0000")  # PLISTV, GLISTV, long block
    assert good(lu, rdd10(0x10 | 0x05, alloc=2)) == bytes.fromhex("0015")


def test_read_defect_data12_golden(lu: LogicalUnit) -> None:
    assert good(lu, rdd12(0x08 | 0x04, index=7)) == bytes.fromhex("000c000000000000")
    assert good(lu, rdd12(0, alloc=0)) == b""


@pytest.mark.parametrize("fmt", [6, 7])
def test_read_defect_data_unknown_formats(lu: LogicalUnit, fmt: int) -> None:
    assert field_pointer(run(lu, rdd10(fmt))) == (True, 2, 2)
    assert field_pointer(run(lu, rdd12(fmt))) == (True, 1, 2)
