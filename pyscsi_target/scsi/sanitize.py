"""SANITIZE (SBC-4 §5.30, model §4.11): OVERWRITE on every LU, BLOCK ERASE on thin LUs (the
whole extent is deallocated: holes punched, reads return zeroes), EXIT FAILURE MODE.

CRYPTOGRAPHIC ERASE (03h) is not in the opcode table, so it answers INVALID FIELD IN CDB and
REPORT SUPPORTED OPERATION CODES leaves it out (WACEREQ is 0). IMMED=1 is refused by the CDB
usage mask (INVALID FIELD IN CDB): there is no background worker in the SCSI core to finish
the operation after status, so status always follows completion (IMMED=0), and REQUEST SENSE
cannot report progress. ZNR applies to zoned devices only and is refused the same way.

While the operation runs, `lu.sanitize_state` makes `execute()` answer NOT READY, SANITIZE IN
PROGRESS to everything but INQUIRY, REPORT LUNS and REQUEST SENSE (core._sanitize_gate). A
storage failure leaves the LU in sanitize failure mode (MEDIUM ERROR, SANITIZE COMMAND FAILED
for medium access) until a sanitize succeeds, or EXIT FAILURE MODE when the failed one had
AUSE=1 (SBC-4 §4.11.4).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .cdb import u16
from .command import Task
from .lu import (
    SANITIZE_FAILED,
    SANITIZE_FAILED_AUSE,
    SANITIZE_IDLE,
    SANITIZE_RUNNING,
    LogicalUnit,
)
from .sense import invalid_cdb, invalid_param
from .types import ScsiResult

OVERWRITE, BLOCK_ERASE, CRYPTOGRAPHIC_ERASE, EXIT_FAILURE_MODE = 0x01, 0x02, 0x03, 0x1F
AUSE = 0x20
#: OVERWRITE parameter list: 4-byte header + INITIALIZATION PATTERN (SBC-4 §5.30.3)
OVERWRITE_HEADER = 4
INVERT = 0x80
TEST_MASK = 0x60
OVERWRITE_COUNT_MASK = 0x1F

Operation = Callable[[LogicalUnit], None]


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
    operation = _overwrite(task) if sa == OVERWRITE else _block_erase(task)
    if lu.sanitize_state == SANITIZE_FAILED and ause:
        raise invalid_cdb(1, 5)  # a restricted-mode failure is not exited with AUSE=1 (§5.30.1)
    _run(lu, operation, ause)
    return ScsiResult()


def _run(lu: LogicalUnit, operation: Operation, ause: bool) -> None:
    with lu.lock:
        lu.sanitize_state = SANITIZE_RUNNING
        try:
            operation(lu)
            lu.backend.flush(0, 0)  # the sanitized medium is durable before GOOD
        except BaseException:  # StorageError (mapped to sense by execute) or worse: not sanitized
            lu.sanitize_state = SANITIZE_FAILED_AUSE if ause else SANITIZE_FAILED
            raise
        lu.sanitize_state = SANITIZE_IDLE
    lu.check_provisioning_threshold()


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


def _block_erase(task: Task) -> Operation:
    """BLOCK ERASE (§5.30.4): PARAMETER LIST LENGTH 0; every block deallocated."""
    if u16(task.cdb, 7):
        raise invalid_cdb(7)

    def erase(lu: LogicalUnit) -> None:
        be = lu.backend
        if be.num_blocks:
            be.unmap(0, be.num_blocks)

    return erase


def _overwrite(task: Task) -> Operation:
    """OVERWRITE (§5.30.3): PARAMETER LIST LENGTH in 5 .. block length + 4; OVERWRITE COUNT
    passes of the INITIALIZATION PATTERN repeated over each block, inverted between passes when
    INVERT=1 so that the last pass writes the pattern itself. TEST (vendor specific) must be 0."""
    length = u16(task.cdb, 7)
    bs = task.lu.backend.block_size
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
    blocks = [block, ~block]
    invert = bool(data[0] & INVERT)

    def overwrite(lu: LogicalUnit) -> None:
        be = lu.backend
        for done in range(count):
            inverted = invert and (count - 1 - done) % 2 == 1
            if be.num_blocks:
                be.write_same(0, be.num_blocks, blocks[inverted].tobytes())

    return overwrite

