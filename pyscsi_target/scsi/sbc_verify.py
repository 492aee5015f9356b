"""SBC-4 commands that compare Data-Out with the medium: VERIFY(10/12/16), WRITE AND
VERIFY(10/12/16) and COMPARE AND WRITE. Compares use numpy, never a per-byte Python loop.
"""

from __future__ import annotations

import numpy as np

from .cdb import check_range, lba_and_length, u64
from .command import Task
from .sbc_atomic import durable_write
from .sense import CheckCondition, SenseReason, invalid_cdb
from .types import ScsiResult
from .vpd import MAX_COMPARE_AND_WRITE_BLOCKS, max_transfer_blocks

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
        durable_write(lu, lba, data[size:], bool(cdb[1] & FUA))
    return ScsiResult()
