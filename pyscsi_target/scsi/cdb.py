"""CDB field decoding shared by the handlers: LBA / transfer length per CDB size, allocation
lengths, and the generic reserved-bit check against a command's CDB usage mask.

Layouts are SBC-4 §5 (READ/WRITE 6/10/12/16) and SPC-4 §4.2 (CDB formats). Every helper takes
the CDB as `bytes` already checked to be at least the command's length by `execute()`.
"""

from __future__ import annotations

import struct

from .sense import CheckCondition, SenseReason, invalid_cdb

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
#: (LBA, TRANSFER LENGTH) layouts of the 10/12/16-byte READ/WRITE-style CDBs (SBC-4 §5)
LBA10 = struct.Struct(">2xIxH")  # LBA bytes 2-5, TRANSFER LENGTH bytes 7-8
LBA12 = struct.Struct(">2xII")  # LBA bytes 2-5, TRANSFER LENGTH bytes 6-9
LBA16 = struct.Struct(">2xQI")  # LBA bytes 2-9, TRANSFER LENGTH bytes 10-13


def u16(buf: bytes, offset: int) -> int:
    return int(_U16.unpack_from(buf, offset)[0])


def u32(buf: bytes, offset: int) -> int:
    return int(_U32.unpack_from(buf, offset)[0])


def u64(buf: bytes, offset: int) -> int:
    return int(_U64.unpack_from(buf, offset)[0])


def lba_and_length(cdb: bytes) -> tuple[int, int]:
    """(LBA, TRANSFER LENGTH in blocks) of a 6/10/12/16-byte READ/WRITE-style CDB (SBC-4 §5).

    The 6-byte form has a 21-bit LBA, and a TRANSFER LENGTH of 0 means 256 blocks (SBC-4 §5.15).
    """
    size = cdb_size(cdb[0])
    if size == 6:
        lba = ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3]
        return lba, cdb[4] or 256
    if size == 10:
        lba, n = LBA10.unpack_from(cdb)
    elif size == 12:
        lba, n = LBA12.unpack_from(cdb)
    else:
        lba, n = LBA16.unpack_from(cdb)
    return int(lba), int(n)


def cdb_size(opcode: int) -> int:
    """CDB length from the operation code's group (SPC-4 §4.2.5.1, table 5); 0 if vendor/reserved."""
    group = opcode >> 5
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(group, 0)


def check_range(lba: int, nblocks: int, num_blocks: int) -> None:
    """LBA OUT OF RANGE unless [lba, lba+nblocks) lies inside the medium (SBC-4 §4.5).

    A zero-length transfer is still checked (SBC-4 §4.5: a transfer length of zero is not an
    error, the LBA still is): LBA == capacity with zero blocks is accepted, like LIO and tgt.
    """
    if lba + nblocks > num_blocks:
        raise CheckCondition(SenseReason.LBA_OUT_OF_RANGE)


def check_usage(cdb: bytes, mask: bytes) -> None:
    """INVALID FIELD IN CDB for the first bit set outside the command's CDB usage mask.

    SPC-4 §4.2.5.1 lets a device server reject nonzero reserved fields; the mask is the same CDB
    USAGE DATA that REPORT SUPPORTED OPERATION CODES returns (SPC-4 §6.35.3), so what is reported
    and what is accepted cannot drift apart. Byte 0 (the opcode) is not checked.
    """
    for i in range(1, len(mask)):
        extra = cdb[i] & ~mask[i]
        if extra:
            raise invalid_cdb(i, extra.bit_length() - 1)


def allocation_truncate(data: bytes | bytearray, alloc_len: int) -> bytes | bytearray:
    """Parameter data is cut at the ALLOCATION LENGTH, never an error (SPC-4 §4.2.5.6)."""
    return data if len(data) <= alloc_len else data[:alloc_len]
