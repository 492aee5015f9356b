"""SBC-4 logical block provisioning commands (SBC-4 §4.7.3): WRITE SAME(10/16) (which
deallocates with UNMAP=1), UNMAP and GET LBA STATUS. Fills use numpy, never a per-byte loop.
The soft threshold these commands move the allocation against is provisioning.py's.
"""

from __future__ import annotations

import numpy as np

from .cdb import check_range, u16, u32, u64
from .command import Task
from .lu import LogicalUnit
from .sense import CheckCondition, SenseReason, invalid_cdb, invalid_param
from .types import ScsiResult
from .vpd import MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS, MAX_WRITE_SAME_BLOCKS

#: GET LBA STATUS looks at most this many blocks past the starting LBA per command (blocks);
#: the initiator asks again from where the answer stopped (SBC-4 §5.7)
LBA_STATUS_SCAN_BLOCKS = 1 << 24


# ---- WRITE SAME (SBC-4 §5.48-5.50) -----------------------------------------------------------

UNMAP_BIT = 0x08
NDOB = 0x01


def write_same(task: Task) -> ScsiResult:
    """WRITE SAME(10/16): UNMAP=1 deallocates when the block is all zeroes (LBPRZ=1: what an
    unmapped block reads as), else writes; NDOB=1 (16 only) means a block of zeroes. WSNZ=1:
    NUMBER OF LOGICAL BLOCKS 0 is refused."""
    cdb = task.cdb
    ten = task.spec.cdb_length == 10
    lba, nblocks = (u32(cdb, 2), u16(cdb, 7)) if ten else (u64(cdb, 2), u32(cdb, 10))
    lu = task.lu
    be = lu.backend
    unmap = bool(cdb[1] & UNMAP_BIT)
    if unmap and not lu.thin:
        raise invalid_cdb(1, 3)  # LBPWS / LBPWS10 = 0 (SBC-4 §6.6.6)
    if nblocks == 0:
        raise invalid_cdb(7 if ten else 10)  # WSNZ=1 in the Block Limits page
    check_range(lba, nblocks, be.num_blocks)
    if nblocks > MAX_WRITE_SAME_BLOCKS:
        raise invalid_cdb(7 if ten else 10)
    ndob = not ten and bool(cdb[1] & NDOB)
    # exactly one block of Data-Out: more or less is refused (libiscsi WriteSame*.InvalidDataOutSize)
    block = memoryview(bytes(be.block_size)) if ndob else task.data_out(be.block_size, exact=True)
    if unmap and not np.frombuffer(block, dtype=np.uint8).any():
        be.unmap(lba, nblocks)
    else:
        be.write_same(lba, nblocks, block)
    if not lu.mode.wce:
        be.flush(lba, nblocks)
    return ScsiResult()


def write_same_data_length(cdb: bytes, block_size: int) -> int:
    return 0 if cdb[0] == 0x93 and cdb[1] & NDOB else block_size


# ---- UNMAP (SBC-4 §5.32) ---------------------------------------------------------------------

UNMAP_HEADER = 8
UNMAP_DESCRIPTOR = 16


def unmap(task: Task) -> ScsiResult:
    """UNMAP: check every block descriptor (count, range, total) before deallocating any."""
    length = u16(task.cdb, 7)
    data = bytes(task.data_out(length))
    if length == 0:
        return ScsiResult()
    if length < UNMAP_HEADER:
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    extents = _unmap_extents(task.lu, data)
    for lba, nblocks in extents:
        if nblocks:
            task.lu.backend.unmap(lba, nblocks)
    return ScsiResult()


def _unmap_extents(lu: LogicalUnit, data: bytes) -> list[tuple[int, int]]:
    desc_len = u16(data, 2)
    if desc_len % UNMAP_DESCRIPTOR or UNMAP_HEADER + desc_len > len(data):
        raise invalid_param(2)
    count = desc_len // UNMAP_DESCRIPTOR
    if count > MAX_UNMAP_DESCRIPTORS:
        raise invalid_param(2)
    extents, total = [], 0
    for i in range(count):
        off = UNMAP_HEADER + i * UNMAP_DESCRIPTOR
        lba, nblocks = u64(data, off), u32(data, off + 8)
        check_range(lba, nblocks, lu.backend.num_blocks)
        total += nblocks
        extents.append((lba, nblocks))
    if total > MAX_UNMAP_BLOCKS:
        raise invalid_param(UNMAP_HEADER + 8)
    return extents


# ---- GET LBA STATUS (SBC-4 §5.7) -------------------------------------------------------------

MAPPED, DEALLOCATED = 0, 1


def get_lba_status(task: Task) -> ScsiResult:
    cdb = task.cdb
    lba, alloc = u64(cdb, 2), u32(cdb, 10)
    be = task.lu.backend
    if lba >= be.num_blocks:
        raise CheckCondition(SenseReason.LBA_OUT_OF_RANGE)
    room = max(1, (alloc - 8) // 16)
    scan = min(be.num_blocks - lba, LBA_STATUS_SCAN_BLOCKS)
    descs = bytearray()
    for run_lba, run_len, mapped in be.allocation(lba, scan):
        if run_len == 0:
            continue
        if len(descs) // 16 == room:
            break
        descs += run_lba.to_bytes(8, "big") + run_len.to_bytes(4, "big")
        descs += bytes((MAPPED if mapped else DEALLOCATED, 0, 0, 0))
    data = (len(descs) + 4).to_bytes(4, "big") + bytes(4) + bytes(descs)
    return ScsiResult(data=data[:alloc])
