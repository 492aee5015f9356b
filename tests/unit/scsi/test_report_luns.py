"""REPORT LUNS (SPC-4 §6.33) and LUN encoding (SAM-5 §4.7)."""

from __future__ import annotations

import struct

from pyscsi_target.scsi import LogicalUnit, SenseReason
from pyscsi_target.scsi.spc import encode_lun
from pyscsi_target.storage import MemoryBackend

from .util import field_pointer, good, identity, make_lu, run, sense_of


def report_luns(select: int = 0, alloc: int = 4096) -> bytes:
    return struct.pack(">BxBxxxIxx", 0xA0, select, alloc)


def luns_of(*numbers: int) -> dict[int, LogicalUnit]:
    return {n: make_lu(MemoryBackend(8), identity()) for n in numbers}


def test_lun_encoding() -> None:
    assert encode_lun(0) == bytes(8)
    assert encode_lun(5) == bytes([0, 5, 0, 0, 0, 0, 0, 0])
    assert encode_lun(300) == bytes([0x41, 0x2C, 0, 0, 0, 0, 0, 0])  # flat space addressing


def test_report_luns_lists_sorted_luns() -> None:
    luns = luns_of(300, 2, 0)
    data = good(luns, report_luns())
    assert data == struct.pack(">I4x", 24) + encode_lun(0) + encode_lun(2) + encode_lun(300)
    assert good(luns, report_luns(select=2)) == data
    assert good(luns, report_luns(select=1)) == bytes(8)  # no well-known logical units


def test_report_luns_allocation_length() -> None:
    luns = luns_of(0, 1)
    assert good(luns, report_luns(alloc=16)) == struct.pack(">I4x", 16) + encode_lun(0)
    res = run(luns, report_luns(alloc=15))
    assert sense_of(res) == (0x05, 0x24, 0x00) and field_pointer(res) == (True, 6, None)


def test_report_luns_invalid_select_report() -> None:
    res = run(luns_of(0), report_luns(select=3))
    assert sense_of(res) == (0x05, 0x24, 0x00) and field_pointer(res) == (True, 2, None)


def test_report_luns_clears_reported_luns_data_changed() -> None:
    luns = luns_of(0)
    good(luns, bytes(6))
    luns[0].add_unit_attention(SenseReason.REPORTED_LUNS_DATA_CHANGED)
    luns[0].add_unit_attention(SenseReason.CAPACITY_DATA_CHANGED)
    good(luns, report_luns())
    assert sense_of(run(luns, bytes(6))) == (0x06, 0x2A, 0x09)
    good(luns, bytes(6))
