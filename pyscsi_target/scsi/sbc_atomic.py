"""SBC-4 writes that are atomic on the LU: ORWRITE(16) and WRITE ATOMIC(16).

ORWRITE and WRITE ATOMIC take `lu.lock` around their read-modify-write / write, so they are
atomic with respect to each other, COMPARE AND WRITE and SANITIZE on the LU (SBC-4 §4.29): the
write is one backend call under that lock. Atomicity across a power loss is the backend's: a
write-back page cache may persist part of a multi-page write, which is why WRITE ATOMIC with
FUA=0 and WCE=1 promises only what WRITE does until SYNCHRONIZE CACHE.
"""

from __future__ import annotations

import numpy as np

from .cdb import check_range, u16, u32, u64
from .command import Task
from .lu import LogicalUnit
from .sense import invalid_cdb
from .types import ScsiResult
from .vpd import max_atomic_transfer_blocks, max_transfer_blocks

#: FUA bit, byte 1 (SBC-4 §5.10 ORWRITE, §5.48 WRITE ATOMIC)
FUA = 0x08


def durable_write(lu: LogicalUnit, lba: int, data: memoryview | bytes, fua: bool) -> None:
    """FUA=1 or WCE=0 (write-through): durable before GOOD (rules §4.1). Shared by the
    read-modify-write commands here and COMPARE AND WRITE / WRITE AND VERIFY (sbc_verify.py)."""
    if fua or not lu.mode.wce:
        lu.backend.write_fua(lba, data)
    else:
        lu.backend.write(lba, data)


# ---- ORWRITE(16) (SBC-4 §5.10) -----------------------------------------------------------------


def orwrite(task: Task) -> ScsiResult:
    """ORWRITE(16): OR the Data-Out into the blocks (BMOP 000b, the only operation of the
    16-byte form), as one read-modify-write under `lu.lock`."""
    cdb = task.cdb
    lba, nblocks = u64(cdb, 2), u32(cdb, 10)
    lu = task.lu
    be = lu.backend
    check_range(lba, nblocks, be.num_blocks)
    if nblocks > max_transfer_blocks(be.block_size):
        raise invalid_cdb(10)
    data = task.data_out(nblocks * be.block_size)
    if nblocks == 0:
        return ScsiResult()
    with lu.lock:
        merged = np.frombuffer(be.read(lba, nblocks), dtype=np.uint8) | np.frombuffer(data, dtype=np.uint8)
        durable_write(lu, lba, merged.tobytes(), bool(cdb[1] & FUA))
    return ScsiResult()


def orwrite_data_length(cdb: bytes, block_size: int) -> int:
    return u32(cdb, 10) * block_size


# ---- WRITE ATOMIC(16) (SBC-4 §5.48) ------------------------------------------------------------


def write_atomic16(task: Task) -> ScsiResult:
    """WRITE ATOMIC(16): at most MAXIMUM ATOMIC TRANSFER LENGTH blocks, no alignment or
    granularity restriction (VPD page B0h reports 0 for both), written by one backend call
    under `lu.lock`. ATOMIC BOUNDARY must be 0 (MAXIMUM ATOMIC BOUNDARY SIZE is 0)."""
    cdb = task.cdb
    lba, nblocks = u64(cdb, 2), u16(cdb, 12)
    lu = task.lu
    be = lu.backend
    check_range(lba, nblocks, be.num_blocks)
    if nblocks > max_atomic_transfer_blocks(be.block_size):
        raise invalid_cdb(12)
    data = task.data_out(nblocks * be.block_size)
    if nblocks == 0:
        return ScsiResult()
    with lu.lock:
        durable_write(lu, lba, data, bool(cdb[1] & FUA))
    return ScsiResult()


def write_atomic_data_length(cdb: bytes, block_size: int) -> int:
    return u16(cdb, 12) * block_size
