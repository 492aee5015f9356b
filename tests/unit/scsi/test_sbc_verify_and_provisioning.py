"""VERIFY, WRITE AND VERIFY, COMPARE AND WRITE, WRITE SAME, UNMAP, GET LBA STATUS, PRE-FETCH,
START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL (SBC-4 §5)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.core import data_out_length
from pyscsi_target.scsi.types import GOOD
from pyscsi_target.storage import MemoryBackend

from .conftest import BLOCK_SIZE, NUM_BLOCKS
from .util import OTHER, SparseBackend, cdb10, cdb12, cdb16, field_pointer, good, identity, make_lu, run, sense_of

BS = BLOCK_SIZE
LBA_OOB = (0x05, 0x21, 0x00)
INVALID_FIELD = (0x05, 0x24, 0x00)
INVALID_PARAM = (0x05, 0x26, 0x00)
MISCOMPARE = (0x0E, 0x1D, 0x00)
BYTCHK_ALL, BYTCHK_ONE = 0x02, 0x06


def fill(lu: LogicalUnit, lba: int, data: bytes) -> None:
    good(lu, cdb10(0x2A, lba, len(data) // BS), data=data)


def read(lu: LogicalUnit, lba: int, nblocks: int) -> bytes:
    return good(lu, cdb10(0x28, lba, nblocks))


# ---- VERIFY ----------------------------------------------------------------------------------


def verify10(lba: int, nblocks: int, flags: int) -> bytes:
    return cdb10(0x2F, lba, nblocks, flags)


def verify12(lba: int, nblocks: int, flags: int) -> bytes:
    return cdb12(0xAF, lba, nblocks, flags)


def verify16(lba: int, nblocks: int, flags: int) -> bytes:
    return cdb16(0x8F, lba, nblocks, flags)


@pytest.mark.parametrize("make", [verify10, verify12, verify16])
def test_verify_compares_and_reports_miscompare_offset(
    lu: LogicalUnit, make: Callable[[int, int, int], bytes]
) -> None:
    data = bytes(range(256)) * 4
    fill(lu, 4, data)
    good(lu, make(4, 2, BYTCHK_ALL), data=data)
    good(lu, make(4, 2, 0))  # BYTCHK 00b: medium verification only
    changed = bytearray(data)
    changed[700] ^= 0xFF
    res = run(lu, make(4, 2, BYTCHK_ALL), data=bytes(changed))
    assert sense_of(res) == MISCOMPARE
    assert res.sense is not None and res.sense[0] & 0x80 and struct.unpack(">I", res.sense[3:7])[0] == 700
    assert sense_of(run(lu, make(NUM_BLOCKS - 1, 2, 0))) == LBA_OOB
    good(lu, make(NUM_BLOCKS, 0, BYTCHK_ALL))


def test_verify_bytchk_one_block_against_each(lu: LogicalUnit) -> None:
    block = b"\x5a" * BS
    fill(lu, 0, block * 3)
    good(lu, cdb10(0x2F, 0, 3, BYTCHK_ONE), data=block)
    res = run(lu, cdb10(0x2F, 0, 4, BYTCHK_ONE), data=block)
    assert sense_of(res) == MISCOMPARE
    assert res.sense is not None and struct.unpack(">I", res.sense[3:7])[0] == 3 * BS
    assert field_pointer(run(lu, cdb10(0x2F, 0, 1, 0x04))) == (True, 1, 2)  # BYTCHK 10b reserved


def test_verify_data_out_lengths() -> None:
    assert data_out_length(cdb10(0x2F, 0, 3, BYTCHK_ALL), 512) == 1536
    assert data_out_length(cdb10(0x2F, 0, 3, BYTCHK_ONE), 512) == 512
    assert data_out_length(cdb10(0x2F, 0, 3, 0), 512) == 0
    assert data_out_length(cdb16(0x8E, 0, 3), 4096) == 3 * 4096


def test_write_and_verify_writes_durably() -> None:
    backend = SparseBackend(64)
    lu = make_lu(backend, identity())
    good(lu, cdb10(0x2E, 1, 2, BYTCHK_ALL), data=b"w" * 1024)
    good(lu, cdb16(0x8E, 3, 1), data=b"x" * 512)
    assert backend.fua_writes == 2
    assert read(lu, 1, 3) == b"w" * 1024 + b"x" * 512
    assert sense_of(run(lu, cdb12(0xAE, 63, 2), data=bytes(1024))) == LBA_OOB
    ro = make_lu(SparseBackend(8), identity(read_only=True))
    assert sense_of(run(ro, cdb10(0x2E, 0, 1), data=bytes(512))) == (0x07, 0x27, 0x00)


# ---- COMPARE AND WRITE -----------------------------------------------------------------------


def caw(lba: int, nblocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQxxxBBB", 0x89, flags, lba, nblocks, 0, 0)


def test_compare_and_write(lu: LogicalUnit) -> None:
    fill(lu, 9, b"a" * BS)
    good(lu, caw(9, 1), data=b"a" * BS + b"b" * BS)
    assert read(lu, 9, 1) == b"b" * BS
    res = run(lu, caw(9, 1), data=b"a" * BS + b"c" * BS)
    assert sense_of(res) == MISCOMPARE
    assert res.sense is not None and struct.unpack(">I", res.sense[3:7])[0] == 0
    assert read(lu, 9, 1) == b"b" * BS


def test_compare_and_write_limits(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, caw(0, 2), data=bytes(4 * BS))) == (True, 13, None)
    assert sense_of(run(lu, caw(0, 1), data=bytes(4 * BS))) == (0x05, 0x0E, 0x03)  # EDTL too big
    assert sense_of(run(lu, caw(0, 1), data=bytes(BS))) == (0x05, 0x0E, 0x03)
    assert sense_of(run(lu, caw(NUM_BLOCKS, 1), data=bytes(2 * BS))) == LBA_OOB
    good(lu, caw(0, 0))


def test_compare_and_write_zero_blocks_with_data_is_invalid_field(lu: LogicalUnit) -> None:
    """libiscsi CompareAndWrite.Simple: 256 blocks in the one-byte field read as 0, 256 KiB sent."""
    res = run(lu, caw(0, 0), data=bytes(512 * BS))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 13, None)


def test_compare_and_write_fua() -> None:
    backend = SparseBackend(8)
    lu = make_lu(backend, identity())
    good(lu, caw(0, 1, flags=0x08), data=bytes(BS) + b"z" * BS)
    assert backend.fua_writes == 1


# ---- WRITE SAME ------------------------------------------------------------------------------


def ws10(lba: int, nblocks: int, flags: int = 0) -> bytes:
    return cdb10(0x41, lba, nblocks, flags)


def ws16(lba: int, nblocks: int, flags: int = 0) -> bytes:
    return cdb16(0x93, lba, nblocks, flags)


def test_write_same_fills_the_range(lu: LogicalUnit) -> None:
    good(lu, ws10(2, 5), data=b"\x11" * BS)
    good(lu, ws16(7, 1), data=b"\x22" * BS)
    assert read(lu, 1, 8) == bytes(BS) + b"\x11" * (5 * BS) + b"\x22" * BS + bytes(BS)


def test_write_same_zero_blocks_and_range(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, ws10(0, 0), data=bytes(BS))) == (True, 7, None)  # WSNZ=1
    assert sense_of(run(lu, ws16(NUM_BLOCKS - 1, 2), data=bytes(BS))) == LBA_OOB
    assert sense_of(run(lu, ws10(0, 1), data=bytes(100))) == (0x05, 0x0E, 0x03)


@pytest.mark.parametrize("size", [BS // 2, 2 * BS])
def test_write_same_needs_exactly_one_block_of_data(thin_lu: LogicalUnit, size: int) -> None:
    """libiscsi WriteSame10/16.InvalidDataOutSize: too little or too much Data-Out is refused."""
    for cdb in (ws10(0, 1, flags=0x08), ws16(0, 1, flags=0x08), ws10(0, 1)):
        assert sense_of(run(thin_lu, cdb, data=bytes(size)))[0] == 0x05


def test_maximum_write_same_length(lu: LogicalUnit) -> None:
    big = make_lu(SparseBackend(1 << 20), identity())
    page = good(big, bytes([0x12, 0x01, 0xB0, 0x00, 0xFF, 0]))
    assert struct.unpack(">Q", page[36:44])[0] == 0xFFFF
    good(big, ws16(0, 0xFFFF), data=bytes(BS))
    assert field_pointer(run(big, ws16(0, 0x10000), data=bytes(BS))) == (True, 10, None)


def test_write_same_unmap_needs_thin(lu: LogicalUnit, thin_lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, ws10(0, 1, 0x08), data=bytes(BS))) == (True, 1, 3)
    backend = thin_lu.backend
    assert isinstance(backend, MemoryBackend)
    good(thin_lu, ws16(0, 4), data=b"\x01" * BS)
    good(thin_lu, ws16(0, 2, 0x08), data=bytes(BS))  # zero block + UNMAP: deallocate
    assert list(backend.allocation(0, 4)) == [(0, 2, False), (2, 2, True)]
    good(thin_lu, ws16(2, 1, 0x08 | 0x01))  # NDOB + UNMAP
    good(thin_lu, ws10(3, 1, 0x08), data=b"\x02" * BS)  # non-zero data: written, not unmapped
    assert list(backend.allocation(0, 4)) == [(0, 3, False), (3, 1, True)]
    assert read(thin_lu, 0, 4) == bytes(3 * BS) + b"\x02" * BS


def test_write_same_anchor_and_read_only(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, ws16(0, 1, 0x10), data=bytes(BS))) == (True, 1, 4)
    ro = make_lu(MemoryBackend(8), identity(read_only=True))
    assert sense_of(run(ro, ws10(0, 1), data=bytes(BS))) == (0x07, 0x27, 0x00)


# ---- UNMAP -----------------------------------------------------------------------------------


def unmap_cdb(length: int) -> bytes:
    return struct.pack(">BxxxxxBHB", 0x42, 0, length, 0)


def unmap_params(*extents: tuple[int, int]) -> bytes:
    descs = b"".join(struct.pack(">QI4x", lba, n) for lba, n in extents)
    return struct.pack(">HH4x", len(descs) + 6, len(descs)) + descs


def test_unmap_deallocates_and_reads_zero(thin_lu: LogicalUnit) -> None:
    fill(thin_lu, 0, b"\x07" * (8 * BS))
    params = unmap_params((1, 2), (5, 1))
    good(thin_lu, unmap_cdb(len(params)), data=params)
    kept, gone = b"\x07" * BS, bytes(BS)
    assert read(thin_lu, 0, 8) == kept + gone * 2 + kept * 2 + gone + kept * 2


def test_unmap_is_all_or_nothing(thin_lu: LogicalUnit) -> None:
    fill(thin_lu, 0, b"\x07" * BS)
    params = unmap_params((0, 1), (NUM_BLOCKS, 1))
    assert sense_of(run(thin_lu, unmap_cdb(len(params)), data=params)) == LBA_OOB
    assert read(thin_lu, 0, 1) == b"\x07" * BS


def test_unmap_parameter_errors(thin_lu: LogicalUnit) -> None:
    good(thin_lu, unmap_cdb(0))
    assert sense_of(run(thin_lu, unmap_cdb(4), data=bytes(4))) == (0x05, 0x1A, 0x00)
    bad = struct.pack(">HH4x", 16, 10) + bytes(10)
    assert sense_of(run(thin_lu, unmap_cdb(len(bad)), data=bad)) == INVALID_PARAM
    many = unmap_params(*[(i, 1) for i in range(257)])
    assert sense_of(run(thin_lu, unmap_cdb(len(many)), data=many)) == INVALID_PARAM
    assert field_pointer(run(thin_lu, bytes([0x42, 0x01]) + bytes(8))) == (True, 1, 0)  # ANCHOR


def test_unmap_is_not_supported_on_full_provisioning(lu: LogicalUnit) -> None:
    params = unmap_params((0, 1))
    assert sense_of(run(lu, unmap_cdb(len(params)), data=params)) == (0x05, 0x20, 0x00)


# ---- GET LBA STATUS --------------------------------------------------------------------------


def lba_status(lba: int, alloc: int = 1024) -> bytes:
    return struct.pack(">BBQIBB", 0x9E, 0x12, lba, alloc, 0, 0)


def test_get_lba_status_reports_runs(thin_lu: LogicalUnit) -> None:
    fill(thin_lu, 10, bytes(3 * BS))
    data = good(thin_lu, lba_status(8))
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4
    descs = [struct.unpack(">QIB3x", data[8 + 16 * i : 24 + 16 * i]) for i in range((len(data) - 8) // 16)]
    assert descs == [(8, 2, 1), (10, 3, 0), (13, NUM_BLOCKS - 13, 1)]
    assert len(good(thin_lu, lba_status(8, alloc=24))) == 24
    assert sense_of(run(thin_lu, lba_status(NUM_BLOCKS))) == LBA_OOB


# ---- PRE-FETCH, START STOP UNIT, PREVENT ALLOW ---------------------------------------------------


def test_prefetch(lu: LogicalUnit) -> None:
    assert run(lu, cdb10(0x34, 0, 8, 0x02)).status == GOOD
    assert run(lu, cdb16(0x90, NUM_BLOCKS - 1, 1)).status == GOOD
    assert sense_of(run(lu, cdb16(0x90, NUM_BLOCKS, 1))) == LBA_OOB


def test_start_stop_and_prevent_allow(lu: LogicalUnit) -> None:
    start_stop = bytes([0x1B, 0, 0, 0, 0x02, 0])  # LOEJ=1, START=0: eject
    prevent = bytes([0x1E, 0, 0, 0, 0x01, 0])
    allow = bytes([0x1E, 0, 0, 0, 0x00, 0])
    good(lu, start_stop)
    good(lu, prevent, nexus=OTHER)
    assert sense_of(run(lu, start_stop)) == (0x05, 0x53, 0x02)
    good(lu, bytes([0x1B, 0, 0, 0, 0x01, 0]))  # START=1 is fine
    good(lu, allow, nexus=OTHER)
    good(lu, start_stop)
    good(lu, prevent)
    lu.nexus_gone(OTHER)  # another nexus leaving changes nothing
    assert sense_of(run(lu, start_stop)) == (0x05, 0x53, 0x02)
    lu.reset(None)  # a LU reset forgets every PREVENT (and says so: 29/00)
    assert sense_of(run(lu, bytes(6))) == (0x06, 0x29, 0x00)
    good(lu, start_stop)
    assert field_pointer(run(lu, bytes([0x1E, 0, 0, 0, 0x02, 0]))) == (True, 4, 1)
