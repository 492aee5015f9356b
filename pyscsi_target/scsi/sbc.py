"""SBC-4 block commands of the data path: READ CAPACITY(10/16), READ and WRITE (6/10/12/16),
SYNCHRONIZE CACHE(10/16) and PRE-FETCH(10/16); and READ DEFECT DATA(10/12), which describes the
medium as READ CAPACITY does.

READ hands the backend's buffer straight to the transport (no copy); WRITE passes a memoryview
slice of exactly the CDB's blocks. With `Task.nowait` (on the event loop) both only proceed when
they need not wait for the medium, else they raise storage.WouldBlock before anything changed:
a READ of data outside the page cache, a synchronous (FUA or WCE=0) WRITE, a WRITE while
recent writes stalled. On an `asynchronous` backend (Ceph RBD) both start the backend's
asynchronous I/O instead and return a `Pending` result (FUA or WCE=0: the write, then a flush,
before the completion). Durability follows rules §4.1: FUA=1, or WCE=0
(write-through), writes with `write_fua`; SYNCHRONIZE CACHE flushes the range.
"""

from __future__ import annotations

import functools
import struct

from ..storage.base import StorageError, WouldBlock
from .cdb import LBA10, LBA12, LBA16, allocation_truncate, check_range, lba_and_length, u16, u32, u64
from .command import Task
from .sense import invalid_cdb
from .types import Pending, ScsiResult
from .vpd import MAX_TRANSFER_BYTES, max_transfer_blocks

#: READ CAPACITY(10) RETURNED LOGICAL BLOCK ADDRESS when the capacity needs READ CAPACITY(16)
RC10_TOO_BIG = 0xFFFFFFFF
#: READ CAPACITY(16) parameter data length (SBC-4 §5.21.2)
RC16_LEN = 32
#: FUA bit, byte 1 of the 10/12/16-byte READ/WRITE CDBs (SBC-4 §5.8); WRITE(6) has none
FUA = 0x08
#: SYNCHRONIZE CACHE IMMED bit, byte 1 (SBC-4 §5.24)
IMMED = 0x02


def read_capacity10(task: Task) -> ScsiResult:
    """READ CAPACITY(10) (SBC-4 §5.20). PMI=0 with a nonzero LBA is an error."""
    cdb = task.cdb
    if not cdb[8] & 0x01 and u32(cdb, 2):
        raise invalid_cdb(2)
    be = task.lu.backend
    last = be.num_blocks - 1
    returned = RC10_TOO_BIG if last >= RC10_TOO_BIG else max(last, 0)
    return ScsiResult(data=struct.pack(">II", returned, be.block_size))


def read_capacity16(task: Task) -> ScsiResult:
    """READ CAPACITY(16) (SBC-4 §5.21): P_TYPE 0 (no protection), LBPPBE, LBPME/LBPRZ if thin."""
    cdb = task.cdb
    if not cdb[14] & 0x01 and u64(cdb, 2):
        raise invalid_cdb(2)
    lu = task.lu
    be = lu.backend
    out = bytearray(RC16_LEN)
    struct.pack_into(">QI", out, 0, max(be.num_blocks - 1, 0), be.block_size)
    out[13] = lu.identity.physical_block_exponent & 0x0F
    if lu.thin:
        out[14] = 0x80 | 0x40  # LBPME, LBPRZ: unmapped blocks read as zeroes
    alloc = u32(cdb, 10)
    return ScsiResult(data=bytes(out[:alloc]))


#: cdb's (LBA, TRANSFER LENGTH) layouts of the 10/12/16-byte READ and WRITE CDBs (SBC-4
#: §5.15-5.42) by operation code: one dict lookup and one unpack per command, without
#: lba_and_length's group decoding (the 6-byte forms go through it)
_LBA_LENGTH = {
    **dict.fromkeys((0x28, 0x2A), LBA10),
    **dict.fromkeys((0xA8, 0xAA), LBA12),
    **dict.fromkeys((0x88, 0x8A), LBA16),
}


def rw_lba_and_length(cdb: bytes) -> tuple[int, int]:
    """(LBA, TRANSFER LENGTH in blocks) of a READ/WRITE-style CDB: cdb.lba_and_length, with the
    data-path opcodes decoded by one precompiled struct."""
    layout = _LBA_LENGTH.get(cdb[0])
    if layout is None:
        return lba_and_length(cdb)
    lba, nblocks = layout.unpack_from(cdb)
    return lba, nblocks


def _transfer(task: Task, length_byte: int) -> tuple[int, int]:
    """(LBA, blocks) after the range and MAXIMUM TRANSFER LENGTH checks (SBC-4 §4.5, §6.6.4)."""
    lba, nblocks = rw_lba_and_length(task.cdb)
    be = task.lu.backend
    check_range(lba, nblocks, be.num_blocks)
    # the product first: a data-path transfer is far below the limit (one multiplication, no call)
    if nblocks * be.block_size > MAX_TRANSFER_BYTES and nblocks > max_transfer_blocks(be.block_size):
        raise invalid_cdb(length_byte)
    return lba, nblocks


#: byte offset of TRANSFER LENGTH per CDB length, for the field pointer
_LENGTH_BYTE = {6: 4, 10: 7, 12: 6, 16: 10}


def read(task: Task) -> ScsiResult:
    """READ(6/10/12/16) (SBC-4 §5.15-5.18). DPO/FUA need nothing: the page cache is coherent."""
    lba, nblocks = _transfer(task, _LENGTH_BYTE[task.spec.cdb_length])
    if nblocks == 0:
        return ScsiResult()
    backend = task.lu.backend
    if task.nowait and backend.asynchronous:
        return ScsiResult(pending=Pending(functools.partial(backend.read_async, lba, nblocks), _read_done))
    # on the event loop only from the page cache: WouldBlock sends the command to a thread
    return ScsiResult(data=backend.read_nowait(lba, nblocks) if task.nowait else backend.read(lba, nblocks))


def write(task: Task) -> ScsiResult:
    """WRITE(6/10/12/16) (SBC-4 §5.38-5.42)."""
    size = task.spec.cdb_length
    lba, nblocks = _transfer(task, _LENGTH_BYTE[size])
    lu = task.lu
    block_size = lu.backend.block_size
    data = task.write_blocks(nblocks, block_size)
    if data and task.nowait and lu.backend.asynchronous:
        fua = bool(size != 6 and task.cdb[1] & FUA) or not lu.mode.wce
        return ScsiResult(pending=Pending(functools.partial(lu.backend.write_async, lba, data, fua),
                                          functools.partial(_write_done, nblocks * block_size)))
    if data:
        if (size != 6 and task.cdb[1] & FUA) or not lu.mode.wce:
            if task.nowait:
                raise WouldBlock  # a synchronous write: in a worker thread
            lu.backend.write_fua(lba, data)
        elif task.nowait:
            lu.backend.write_nowait(lba, data)
        else:
            lu.backend.write(lba, data)
    return ScsiResult(transfer_length=nblocks * block_size)  # = write_data_length(), for residuals


def _read_done(outcome: object) -> ScsiResult:
    """The completion of an asynchronous READ: the data, or the backend's StorageError."""
    if isinstance(outcome, StorageError):
        raise outcome
    assert isinstance(outcome, memoryview)
    return ScsiResult(data=outcome)


def _write_done(transfer_length: int, outcome: object) -> ScsiResult:
    """The completion of an asynchronous WRITE: None, or the backend's StorageError."""
    if isinstance(outcome, StorageError):
        raise outcome
    return ScsiResult(transfer_length=transfer_length)


def synchronize_cache(task: Task) -> ScsiResult:
    """SYNCHRONIZE CACHE(10/16) (SBC-4 §5.24/5.25). NUMBER OF LOGICAL BLOCKS 0 = to the end.

    IMMED=1 is accepted and the flush still completes before the status: IMMED allows early
    status, it does not require it, and a GOOD that means "durable" is the stronger promise.
    """
    cdb = task.cdb
    if task.spec.cdb_length == 10:
        lba, nblocks = u32(cdb, 2), int.from_bytes(cdb[7:9], "big")
    else:
        lba, nblocks = u64(cdb, 2), u32(cdb, 10)
    be = task.lu.backend
    check_range(lba, nblocks, be.num_blocks)
    be.flush(lba, nblocks)
    return ScsiResult()


# ---- PRE-FETCH (SBC-4 §5.11-5.12) ------------------------------------------------------------


def prefetch(task: Task) -> ScsiResult:
    """PRE-FETCH(10/16): the page cache does its own read-ahead; GOOD (not CONDITION MET) says
    the blocks were not all placed in a cache, which SBC-4 allows."""
    lba, nblocks = lba_and_length(task.cdb)
    check_range(lba, nblocks, task.lu.backend.num_blocks)
    return ScsiResult()


def write_data_length(cdb: bytes, block_size: int) -> int:
    """Data-Out bytes of a WRITE(6/10/12/16)."""
    return rw_lba_and_length(cdb)[1] * block_size


def has_fua(cdb: bytes) -> bool:
    return len(cdb) >= 2 and cdb[0] != 0x0A and bool(cdb[1] & FUA)


# ---- READ DEFECT DATA(10/12) (SBC-4 §5.19, §5.20) ------------------------------------------------

#: DEFECT LIST FORMAT codes defined by SBC-4 (table 46): short block, extended bytes from index,
#: extended physical sector, long block, bytes from index, physical sector. 110b is vendor
#: specific (we have none) and 111b reserved: both INVALID FIELD IN CDB.
DEFECT_LIST_FORMATS = frozenset(range(6))
REQ_PLIST, REQ_GLIST = 0x10, 0x08


def _defect_flags(byte: int, field_byte: int) -> int:
    """PLISTV/GLISTV echo what was asked for (our lists exist and are empty) with the format."""
    fmt = byte & 0x07
    if fmt not in DEFECT_LIST_FORMATS:
        raise invalid_cdb(field_byte, 2)
    return byte & (REQ_PLIST | REQ_GLIST | 0x07)


def read_defect_data10(task: Task) -> ScsiResult:
    """READ DEFECT DATA(10): a 4-byte header with DEFECT LIST LENGTH 0: a file has no defects
    the initiator could act on (the file system remaps them)."""
    flags = _defect_flags(task.cdb[2], 2)
    data = struct.pack(">xBH", flags, 0)
    return ScsiResult(data=allocation_truncate(data, u16(task.cdb, 7)))


def read_defect_data12(task: Task) -> ScsiResult:
    """READ DEFECT DATA(12): an 8-byte header (GENERATION CODE 0, DEFECT LIST LENGTH 0)."""
    flags = _defect_flags(task.cdb[1], 1)
    data = struct.pack(">xBHI", flags, 0, 0)
    return ScsiResult(data=allocation_truncate(data, u32(task.cdb, 6)))
