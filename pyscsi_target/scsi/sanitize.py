"""SANITIZE (SBC-4 §5.30, model §4.11): OVERWRITE on every LU, BLOCK ERASE on thin LUs (the
whole extent is deallocated: holes punched, reads return zeroes), EXIT FAILURE MODE.

The handler validates the command, records the operation on the LU (`start_sanitize`) and hands
it to the LU's host (`host.run_background`): the I/O runs in the background, in chunks at a
bounded rate (scsi/sanitize_job.py), in a thread the fabric owns. IMMED=0: status when the
operation ends (`ScsiResult.final`); IMMED=1: status at once, progress through REQUEST SENSE.

CRYPTOGRAPHIC ERASE (03h) is not in the opcode table, so it answers INVALID FIELD IN CDB and
REPORT SUPPORTED OPERATION CODES leaves it out (WACEREQ is 0). ZNR applies to zoned devices only
and is refused by the CDB usage mask (INVALID FIELD IN CDB).

While the operation runs, `lu.sanitize_state` makes `execute()` answer NOT READY, SANITIZE IN
PROGRESS with the progress indication to everything but INQUIRY, REPORT LUNS and REQUEST SENSE
(core._sanitize_gate). A storage failure leaves the LU in sanitize failure mode (MEDIUM ERROR,
SANITIZE COMMAND FAILED for medium access) until a sanitize succeeds, or EXIT FAILURE MODE when
the failed one had AUSE=1 (SBC-4 §4.11.4).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..storage.base import Backend
from .cdb import u16
from .command import Task
from .lu import SANITIZE_FAILED, SANITIZE_FAILED_AUSE, SANITIZE_IDLE
from .sanitize_job import SANITIZE_CHUNK_BYTES, SanitizeJob, Steps
from .sense import invalid_cdb, invalid_param
from .types import ScsiResult

OVERWRITE, BLOCK_ERASE, CRYPTOGRAPHIC_ERASE, EXIT_FAILURE_MODE = 0x01, 0x02, 0x03, 0x1F
IMMED, AUSE = 0x80, 0x20  # CDB byte 1 (SBC-4 §5.30.1)
#: OVERWRITE parameter list: 4-byte header + INITIALIZATION PATTERN (SBC-4 §5.30.3)
OVERWRITE_HEADER = 4
INVERT = 0x80
TEST_MASK = 0x60
OVERWRITE_COUNT_MASK = 0x1F

#: an operation's I/O, not started yet, and the bytes it will write or deallocate in all
Operation = tuple[Steps, int]


def sanitize_data_length(cdb: bytes, block_size: int) -> int:
    """PARAMETER LIST LENGTH, CDB bytes 7-8."""
    return u16(cdb, 7)


def sanitize(task: Task) -> ScsiResult:
    """One of OVERWRITE, BLOCK ERASE (table rows), or EXIT FAILURE MODE."""
    cdb = task.cdb
    sa = cdb[1] & 0x1F
    ause = bool(cdb[1] & AUSE)
    lu = task.lu
    if sa == EXIT_FAILURE_MODE:
        return _exit_failure_mode(task)
    steps, total = _overwrite(task) if sa == OVERWRITE else _block_erase(task)
    if lu.sanitize_state == SANITIZE_FAILED and ause:
        raise invalid_cdb(1, 5)  # a restricted-mode failure is not exited with AUSE=1 (§5.30.1)
    immed = bool(cdb[1] & IMMED)
    length = u16(cdb, 7)
    job = SanitizeJob(steps, total, ause=ause, immed=immed, transfer_length=length)
    lu.start_sanitize(job)  # SANITIZE IN PROGRESS from here on (§4.11.2)
    lu.host.run_background(lu.run_sanitize, job.stop)
    # IMMED=0: the status comes once the operation completed (§5.30.1)
    return ScsiResult(transfer_length=length, final=None if immed else job.wait)


def _exit_failure_mode(task: Task) -> ScsiResult:
    """EXIT FAILURE MODE (§5.30.5): PARAMETER LIST LENGTH 0; leaves failure mode only when the
    failed sanitize had AUSE=1; outside failure mode there is nothing to exit (GOOD)."""
    if u16(task.cdb, 7):
        raise invalid_cdb(7)
    lu = task.lu
    if lu.sanitize_state == SANITIZE_FAILED:
        raise invalid_cdb(1, 4)
    if lu.sanitize_state == SANITIZE_FAILED_AUSE:
        lu.sanitize_state = SANITIZE_IDLE
    return ScsiResult()


def _chunks(be: Backend) -> Iterator[tuple[int, int]]:
    """(lba, nblocks) over the whole medium, SANITIZE_CHUNK_BYTES at a time, or the backend's
    unmap granularity when that is larger (an RBD object: a smaller piece is zeroed, not
    deallocated, and BLOCK ERASE must leave every block deallocated, SBC-4 §5.30.4)."""
    per_chunk = max(1, max(SANITIZE_CHUNK_BYTES, be.unmap_granularity) // be.block_size)
    total = be.num_blocks
    for lba in range(0, total, per_chunk):
        yield lba, min(per_chunk, total - lba)


def _block_erase(task: Task) -> Operation:
    """BLOCK ERASE (§5.30.4): PARAMETER LIST LENGTH 0; every block deallocated."""
    if u16(task.cdb, 7):
        raise invalid_cdb(7)
    be = task.lu.backend

    def erase() -> Steps:
        for lba, n in _chunks(be):
            be.unmap(lba, n)
            yield n * be.block_size

    return erase(), be.size_bytes


def _overwrite(task: Task) -> Operation:
    """OVERWRITE (§5.30.3): PARAMETER LIST LENGTH in 5 .. block length + 4; OVERWRITE COUNT
    passes of the INITIALIZATION PATTERN repeated over each block, inverted between passes when
    INVERT=1 so that the last pass writes the pattern itself. TEST (vendor specific) must be 0."""
    length = u16(task.cdb, 7)
    be = task.lu.backend
    bs = be.block_size
    if not OVERWRITE_HEADER < length <= bs + OVERWRITE_HEADER:
        raise invalid_cdb(7)
    data = bytes(task.data_out(length))
    count = data[0] & OVERWRITE_COUNT_MASK
    if data[0] & TEST_MASK:
        raise invalid_param(0, 6)
    if count == 0:
        raise invalid_param(0, 4)
    if data[1]:
        raise invalid_param(1)
    plen = u16(data, 2)
    if plen == 0 or plen > bs or plen > length - OVERWRITE_HEADER:
        raise invalid_param(2)
    pattern = np.frombuffer(data, dtype=np.uint8, count=plen, offset=OVERWRITE_HEADER)
    block = np.resize(pattern, bs)  # the pattern repeated to fill a block
    blocks = [block.tobytes(), (~block).tobytes()]
    invert = bool(data[0] & INVERT)

    def overwrite() -> Steps:
        for done in range(count):
            inverted = invert and (count - 1 - done) % 2 == 1
            for lba, n in _chunks(be):
                be.write_same(lba, n, blocks[inverted])
                yield n * bs

    return overwrite(), count * be.size_bytes
