"""SBC-4 commands beyond plain READ/WRITE: VERIFY, WRITE AND VERIFY, COMPARE AND WRITE,
WRITE SAME, UNMAP, GET LBA STATUS and PRE-FETCH. Compares and fills use numpy, never a
per-byte Python loop.
"""

from __future__ import annotations

import numpy as np

from .cdb import check_range, lba_and_length, u16, u32, u64
from .command import Task
from .lu import LogicalUnit
from .sense import CheckCondition, SenseReason, invalid_cdb, invalid_param
from .types import ScsiResult
from .vpd import (
    MAX_COMPARE_AND_WRITE_BLOCKS,
    MAX_UNMAP_BLOCKS,
    MAX_UNMAP_DESCRIPTORS,
    MAX_WRITE_SAME_BLOCKS,
    max_transfer_blocks,
)

#: GET LBA STATUS looks at most this many blocks past the starting LBA per command (blocks);
#: the initiator asks again from where the answer stopped (SBC-4 §5.7)
LBA_STATUS_SCAN_BLOCKS = 1 << 24
#: FUA bit of byte 1 (SBC-4 §5.3, §5.8)
FUA = 0x08
#: BYTCHK (VERIFY, SBC-4 §5.31): 00b medium only, 01b compare all blocks, 11b compare one block
BYTCHK_NONE, BYTCHK_ALL, BYTCHK_RESERVED, BYTCHK_ONE = range(4)
_LENGTH_BYTE = {10: 7, 12: 6, 16: 10}


def _bytchk(cdb: bytes) -> int:
    return (cdb[1] >> 1) & 0x03


def _miscompare(expected: memoryview, actual: memoryview) -> int | None:
    """Byte offset of the first difference, or None when equal."""
    a = np.frombuffer(expected, dtype=np.uint8)
    b = np.frombuffer(actual, dtype=np.uint8)
    diff = np.flatnonzero(a != b)
    return int(diff[0]) if diff.size else None


def _range(task: Task) -> tuple[int, int]:
    lba, nblocks = lba_and_length(task.cdb)
    be = task.lu.backend
    check_range(lba, nblocks, be.num_blocks)
    if nblocks > max_transfer_blocks(be.block_size):
        raise invalid_cdb(_LENGTH_BYTE[task.spec.cdb_length])
    return lba, nblocks


def _durable_write(lu: LogicalUnit, lba: int, data: memoryview, fua: bool) -> None:
    if fua or not lu.mode.wce:
        lu.backend.write_fua(lba, data)
    else:
        lu.backend.write(lba, data)


# ---- VERIFY / WRITE AND VERIFY (SBC-4 §5.31-5.33, §5.43-5.45) --------------------------------


def verify(task: Task) -> ScsiResult:
    """VERIFY(10/12/16): BYTCHK 00b reads the medium; 01b compares every block, 11b compares
    one block with each block; a difference is MISCOMPARE with its offset in INFORMATION."""
    bytchk = _bytchk(task.cdb)
    if bytchk == BYTCHK_RESERVED:
        raise invalid_cdb(1, 2)
    lba, nblocks = _range(task)
    lu = task.lu
    bs = lu.backend.block_size
    if nblocks == 0:
        return ScsiResult()
    if bytchk == BYTCHK_NONE:
        lu.backend.read(lba, nblocks)
        return ScsiResult()
    data = task.data_out(nblocks * bs if bytchk == BYTCHK_ALL else bs)
    medium = lu.backend.read(lba, nblocks)
    if bytchk == BYTCHK_ONE:
        pattern = np.frombuffer(data, dtype=np.uint8)
        rows = np.frombuffer(medium, dtype=np.uint8).reshape(nblocks, bs)
        diff = np.flatnonzero(rows != pattern)
        offset = int(diff[0]) if diff.size else None
    else:
        offset = _miscompare(data, medium)
    if offset is not None:
        raise CheckCondition(SenseReason.MISCOMPARE_DURING_VERIFY, information=offset)
    return ScsiResult()


def verify_data_length(cdb: bytes, block_size: int) -> int:
    nblocks = lba_and_length(cdb)[1]
    bytchk = _bytchk(cdb)
    if bytchk == BYTCHK_ALL:
        return nblocks * block_size
    return block_size if bytchk == BYTCHK_ONE and nblocks else 0


def write_and_verify(task: Task) -> ScsiResult:
    """WRITE AND VERIFY(10/12/16): the write goes to the medium before GOOD (write_fua); what
    was written is what the backend holds, so the verification cannot fail separately."""
    if _bytchk(task.cdb) not in (BYTCHK_NONE, BYTCHK_ALL):
        raise invalid_cdb(1, 2)
    lba, nblocks = _range(task)
    lu = task.lu
    data = task.write_blocks(nblocks, lu.backend.block_size)
    if data:
        lu.backend.write_fua(lba, data)
    return ScsiResult()


# ---- COMPARE AND WRITE (SBC-4 §5.3) ----------------------------------------------------------


def compare_and_write(task: Task) -> ScsiResult:
    """Compare the verify half of the Data-Out with the medium and, if equal, write the write
    half, atomically with respect to other COMPARE AND WRITEs on the LU (`lu.lock`), which is
    what VMware's ATS locking relies on."""
    cdb = task.cdb
    lba, nblocks = u64(cdb, 2), cdb[13]
    lu = task.lu
    be = lu.backend
    check_range(lba, nblocks, be.num_blocks)
    if nblocks > MAX_COMPARE_AND_WRITE_BLOCKS:
        raise invalid_cdb(13)
    size = nblocks * be.block_size
    if nblocks == 0 and task.req.data_out:
        # zero blocks but Data-Out sent: the NUMBER OF LOGICAL BLOCKS disagrees with the data
        # (libiscsi's CompareAndWrite.Simple asks for 256 blocks, which the one-byte field makes 0)
        raise invalid_cdb(13)
    data = task.data_out(2 * size, exact=True)
    if nblocks == 0:
        return ScsiResult()
    with lu.lock:
        offset = _miscompare(data[:size], be.read(lba, nblocks))
        if offset is not None:
            raise CheckCondition(SenseReason.MISCOMPARE_DURING_VERIFY, information=offset)
        _durable_write(lu, lba, data[size:], bool(cdb[1] & FUA))
    return ScsiResult()


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


# ---- PRE-FETCH (SBC-4 §5.11-5.12) ------------------------------------------------------------


def prefetch(task: Task) -> ScsiResult:
    """PRE-FETCH(10/16): the page cache does its own read-ahead; GOOD (not CONDITION MET) says
    the blocks were not all placed in a cache, which SBC-4 allows."""
    lba, nblocks = lba_and_length(task.cdb)
    check_range(lba, nblocks, task.lu.backend.num_blocks)
    return ScsiResult()

