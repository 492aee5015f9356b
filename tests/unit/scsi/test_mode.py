"""MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.9-6.12, §7.5; SBC-4 §6.5)."""

from __future__ import annotations

import struct

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.storage import MemoryBackend

from .conftest import BLOCK_SIZE, NUM_BLOCKS
from .util import OTHER, cdb10, field_pointer, good, identity, make_lu, run, sense_of

INVALID_FIELD = (0x05, 0x24, 0x00)
INVALID_PARAM = (0x05, 0x26, 0x00)
CACHING = bytes.fromhex("0812") + bytes([0x04]) + bytes(17)
CONTROL = bytes.fromhex("0a0a001000000000ffff0000")
ERROR_RECOVERY = bytes.fromhex("010ac0") + bytes(9)


def sense6(page: int = 0x3F, pc: int = 0, dbd: bool = False, alloc: int = 255, sub: int = 0) -> bytes:
    return bytes([0x1A, 0x08 if dbd else 0, (pc << 6) | page, sub, alloc, 0])


def sense10(
    page: int = 0x3F, pc: int = 0, dbd: bool = False, llbaa: bool = False, alloc: int = 1024
) -> bytes:
    flags = (0x08 if dbd else 0) | (0x10 if llbaa else 0)
    return struct.pack(">BBBBxxxHB", 0x5A, flags, (pc << 6) | page, 0, alloc, 0)


def test_mode_sense6_all_pages_golden(lu: LogicalUnit) -> None:
    data = good(lu, sense6())
    bd = struct.pack(">IxBH", NUM_BLOCKS, 0, BLOCK_SIZE)
    body = bd + ERROR_RECOVERY + CACHING + CONTROL
    assert data == bytes([len(body) + 3, 0, 0x10, 8]) + body  # DPOFUA set, WP clear


def test_mode_sense6_single_pages_match_all_pages(lu: LogicalUnit) -> None:
    assert good(lu, sense6(0x08, dbd=True)) == bytes([3 + 20, 0, 0x10, 0]) + CACHING
    assert good(lu, sense6(0x0A, dbd=True))[4:] == CONTROL
    assert good(lu, sense6(0x01, dbd=True))[4:] == ERROR_RECOVERY
    assert good(lu, sense6(0x3F, dbd=True, sub=0xFF))[4:] == ERROR_RECOVERY + CACHING + CONTROL


def test_mode_sense_write_protect_bit() -> None:
    lu = make_lu(MemoryBackend(8), identity(read_only=True))
    assert good(lu, sense6())[2] == 0x90
    assert good(lu, sense10())[3] == 0x90


def test_mode_sense_changeable_and_default_values(lu: LogicalUnit) -> None:
    lu.mode.wce = False
    changeable = good(lu, sense6(0x3F, pc=1, dbd=True))[4:]
    assert changeable == bytes.fromhex("010a") + bytes(10) + bytes.fromhex("0812") + bytes([4]) + bytes(
        17
    ) + bytes.fromhex("0a0a04000800000000000000")
    current = good(lu, sense6(0x08, pc=0, dbd=True))[4:]
    default = good(lu, sense6(0x08, pc=2, dbd=True))[4:]
    assert current[2] == 0 and default[2] == 0x04


def test_mode_sense_saved_values_are_not_supported(lu: LogicalUnit) -> None:
    res = run(lu, sense6(pc=3))
    assert sense_of(res) == (0x05, 0x39, 0x00)
    assert sense_of(run(lu, sense10(pc=3))) == (0x05, 0x39, 0x00)


def test_mode_sense_unknown_page_and_subpage(lu: LogicalUnit) -> None:
    res = run(lu, sense6(0x1C))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 2, 5)
    assert field_pointer(run(lu, sense6(0x08, sub=1))) == (True, 3, None)
    assert field_pointer(run(lu, sense6(0x3F, sub=2))) == (True, 3, None)


@pytest.mark.parametrize("alloc", [0, 4, 12, 255])
def test_mode_sense6_allocation_length(lu: LogicalUnit, alloc: int) -> None:
    full = good(lu, sense6())
    assert good(lu, sense6(alloc=alloc)) == full[:alloc]


def test_mode_sense10_header_and_long_lba_descriptor(lu: LogicalUnit) -> None:
    data = good(lu, sense10(0x08))
    assert data[:8] == struct.pack(">HBBBxH", 6 + 8 + 20, 0, 0x10, 0, 8)
    assert data[8:16] == struct.pack(">IxBH", NUM_BLOCKS, 0, BLOCK_SIZE)
    data = good(lu, sense10(0x08, llbaa=True))
    assert data[:8] == struct.pack(">HBBBxH", 6 + 16 + 20, 0, 0x10, 1, 16)
    assert data[8:24] == struct.pack(">Q4xI", NUM_BLOCKS, BLOCK_SIZE)
    assert good(lu, sense10(0x08, dbd=True))[8:] == CACHING
    assert len(good(lu, sense10(alloc=9))) == 9


# ---- MODE SELECT -----------------------------------------------------------------------------


def select6(params: bytes, sp: bool = False) -> bytes:
    return bytes([0x15, 0x10 | (1 if sp else 0), 0, 0, len(params), 0])


def select10(params: bytes) -> bytes:
    return struct.pack(">BBxxxxxHB", 0x55, 0x10, len(params), 0)


def with_bit(page: bytes, byte: int, mask: int, on: bool) -> bytes:
    out = bytearray(page)
    out[byte] = out[byte] | mask if on else out[byte] & ~mask
    return bytes(out)


def test_mode_select_clears_wce_and_notifies_other_nexuses(lu: LogicalUnit) -> None:
    good(lu, bytes(6), nexus=OTHER)
    params = bytes(4) + with_bit(CACHING, 2, 0x04, False)
    good(lu, select6(params), data=params)
    assert lu.mode.wce is False
    assert good(lu, sense6(0x08, dbd=True))[6] == 0
    good(lu, bytes(6))  # the selecting nexus gets no unit attention
    assert sense_of(run(lu, bytes(6), nexus=OTHER)) == (0x06, 0x2A, 0x01)


def test_mode_select_same_values_is_not_a_change(lu: LogicalUnit) -> None:
    good(lu, bytes(6), nexus=OTHER)
    params = bytes(4) + CACHING
    good(lu, select6(params), data=params)
    good(lu, bytes(6), nexus=OTHER)


def test_mode_select10_d_sense_switches_to_descriptor_sense(lu: LogicalUnit) -> None:
    params = bytes(8) + with_bit(CONTROL, 2, 0x04, True)
    good(lu, select10(params), data=params)
    res = run(lu, cdb10(0x28, NUM_BLOCKS, 1))
    assert res.sense is not None and res.sense[0] == 0x72


def test_mode_select_swp_write_protects(lu: LogicalUnit) -> None:
    params = bytes(4) + with_bit(CONTROL, 4, 0x08, True)
    good(lu, select6(params), data=params)
    assert sense_of(run(lu, cdb10(0x2A, 0, 1), data=bytes(512))) == (0x07, 0x27, 0x00)
    assert good(lu, sense6())[2] & 0x80


def test_mode_select_with_block_descriptor(lu: LogicalUnit) -> None:
    bd = struct.pack(">IxBH", 0, 0, BLOCK_SIZE)
    params = bytes([0, 0, 0, 8]) + bd + CACHING
    good(lu, select6(params), data=params)
    bad = bytes([0, 0, 0, 8]) + struct.pack(">IxBH", 0, 0, 4096) + CACHING
    res = run(lu, select6(bad), data=bad)
    assert sense_of(res) == INVALID_PARAM and field_pointer(res) == (False, 9, None)


def test_mode_select_refuses_unchangeable_bits(lu: LogicalUnit) -> None:
    params = bytes(4) + with_bit(CACHING, 2, 0x01, True)  # RCD is not changeable
    res = run(lu, select6(params), data=params)
    assert sense_of(res) == INVALID_PARAM and field_pointer(res) == (False, 6, None)
    params = bytes(4) + with_bit(CONTROL, 3, 0xF0, False)  # QUEUE ALGORITHM MODIFIER
    assert sense_of(run(lu, select6(params), data=params)) == INVALID_PARAM
    params = bytes(4) + bytes([0x1C, 0x0A]) + bytes(10)  # a page we do not have
    assert sense_of(run(lu, select6(params), data=params)) == INVALID_PARAM
    params = bytes(4) + bytes([0x08, 0x10]) + CACHING[2:18]  # wrong page length
    assert sense_of(run(lu, select6(params), data=params)) == INVALID_PARAM
    assert lu.mode.wce is True


def test_mode_select_truncated_parameter_list(lu: LogicalUnit) -> None:
    for params in (bytes(2), bytes(4) + CACHING[:10], bytes([0, 0, 0, 8, 0, 0])):
        assert sense_of(run(lu, select6(params), data=params)) == (0x05, 0x1A, 0x00)


def test_mode_select_save_pages_and_empty_list(lu: LogicalUnit) -> None:
    params = bytes(4) + CACHING
    assert field_pointer(run(lu, select6(params, sp=True), data=params)) == (True, 1, 0)
    good(lu, select6(b""))


def test_mode_select_without_enough_data_out(lu: LogicalUnit) -> None:
    params = bytes(4) + CACHING
    res = run(lu, select6(params), data=params[:10])
    assert sense_of(res) == (0x05, 0x0E, 0x03)
    assert res.transfer_length == len(params)
