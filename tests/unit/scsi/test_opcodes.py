"""The opcode table and REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35)."""

from __future__ import annotations

import struct

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.cdb import cdb_size
from pyscsi_target.scsi.table import SPECS, TABLE

from .util import field_pointer, good, run, sense_of


def rsoc(option: int = 0, opcode: int = 0, sa: int = 0, rctd: bool = False, alloc: int = 65535) -> bytes:
    return struct.pack(">BBBBHIxB", 0xA3, 0x0C, (0x80 if rctd else 0) | option, opcode, sa, alloc, 0)


def test_table_is_consistent() -> None:
    assert len(TABLE) == len(SPECS)
    for spec in SPECS:
        assert spec.usage[0] == spec.opcode
        assert spec.cdb_length == cdb_size(spec.opcode), spec.name
        assert spec.usage[-1] == 0, spec.name  # no control byte bits are used (NACA/LINK refused)


def test_all_commands(thin_lu: LogicalUnit) -> None:
    data = good(thin_lu, rsoc())
    length = struct.unpack(">I", data[:4])[0]
    assert length == len(data) - 4 and length % 8 == 0
    descs = [struct.unpack(">BxHxBH", data[4 + 8 * i : 12 + 8 * i]) for i in range(length // 8)]
    assert len(descs) == len(SPECS)
    assert (0x28, 0, 0, 10) in descs
    assert (0x9E, 0x10, 0x01, 16) in descs  # READ CAPACITY(16): SERVACTV
    assert (0x42, 0, 0, 10) in descs  # UNMAP on a thin LU


def test_all_commands_with_timeouts(lu: LogicalUnit) -> None:
    data = good(lu, rsoc(rctd=True))
    length = struct.unpack(">I", data[:4])[0]
    assert length % 20 == 0
    first = data[4:24]
    assert first[5] & 0x02  # CTDP
    assert first[8:10] == b"\x00\x0a"
    opcodes = {data[4 + 20 * i] for i in range(length // 20)}
    assert 0x42 not in opcodes  # no UNMAP without thin provisioning


def test_one_command(lu: LogicalUnit) -> None:
    data = good(lu, rsoc(option=1, opcode=0x28))
    assert data == bytes([0, 0x03, 0, 10]) + TABLE[(0x28, None)].usage
    assert good(lu, rsoc(option=1, opcode=0xC7)) == bytes([0, 0x01, 0, 0])
    data = good(lu, rsoc(option=2, opcode=0x9E, sa=0x10, rctd=True))
    assert data[:4] == bytes([0, 0x83, 0, 16]) and len(data) == 4 + 16 + 12
    assert good(lu, rsoc(option=2, opcode=0x9E, sa=0x11)) == bytes([0, 0x01, 0, 0])


def test_option_errors(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, rsoc(option=1, opcode=0x9E))) == (True, 3, None)
    assert field_pointer(run(lu, rsoc(option=2, opcode=0x28))) == (True, 3, None)
    assert field_pointer(run(lu, rsoc(option=3))) == (True, 2, 2)
    assert sense_of(run(lu, rsoc(), lun=4)) == (0x05, 0x25, 0x00)


def test_allocation_length(lu: LogicalUnit) -> None:
    assert len(good(lu, rsoc(alloc=10))) == 10
