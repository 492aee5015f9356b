"""`execute()`: run one SCSI command through the fixed check order (ARCHITECTURE.md):

    LUN exists → unit attention → CDB valid → LU ready → sanitize state → reservation conflict
    → capability (write protection) → handler → thin-provisioning threshold

and turn every `CheckCondition` and every `StorageError` into CHECK CONDITION + sense here, in
one place (for a command on an asynchronous backend, in its `Pending.finish`). Nothing an
initiator can send makes `execute()` raise. `reservation_conflict()` is the
one place where both reservation models are applied: SPC-2 RESERVE (SPC-2 §5.5.1) and the
persistent reservation conflict table (SPC-4 §5.13.1 table 66, SBC-4 §4.17 table 13), including
the SPC-4 §5.13.3 exceptions for RESERVE/RELEASE while registrations exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from ..storage.base import FlushFailed, MediumError, NoSpace, OutOfRange, ReadOnly, StorageError, WouldBlock
from .cdb import check_usage
from .command import CommandSpec, Task
from .lu import SANITIZE_IDLE, SANITIZE_RUNNING, LogicalUnit
from .sanitize_job import SanitizeInProgress
from .sense import CheckCondition, SenseReason, invalid_cdb
from .table import find, lookup
from .types import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT, Pending, ScsiRequest, ScsiResult


def execute(req: ScsiRequest, luns: Mapping[int, LogicalUnit], *, nowait: bool = False) -> ScsiResult:
    """Execute one command; never raises for anything an initiator can send.

    `nowait` (a caller on an event loop): a command that may block (`is_blocking()`) raises
    storage.WouldBlock before anything changed, and the caller runs it again where it may wait
    (a worker thread); READ and WRITE (`CommandSpec.nowait`) run, whatever their size, unless
    their data is not in the page cache, the write would go through to the medium (FUA, WCE=0)
    or recent writes stalled (backend read_nowait/write_nowait). Every check before the handler
    is free of side effects when it lets a command through, so running it twice is running it
    once; this also spares the caller a separate `is_blocking()` lookup per command."""
    lu = luns.get(req.lun)
    spec: CommandSpec | None = None
    try:
        spec = _admit(req, lu)
        _validate(req.cdb, spec)
        # The gates below call out only when their state is not the common one (issue #17: the
        # data path pays a few attribute reads per command, not a function call per check).
        if lu is not None:
            if lu.unavailable is not None:
                _ready_gate(lu, spec)
            if lu.sanitize_state != SANITIZE_IDLE:
                _sanitize_gate(lu, spec, req.cdb)
            pr = lu.pr  # an immutable snapshot: one read is consistent
            if (lu.reserved_by is not None or pr.reservation is not None or pr.registrations) \
                    and reservation_conflict(lu, spec, req):
                result = ScsiResult(status=RESERVATION_CONFLICT)
                return _with_transfer_length(result, req, spec, lu)
            if spec.writes and lu.write_protected:
                raise CheckCondition(SenseReason.WRITE_PROTECTED)  # SBC-4 §4.11
        if nowait and not spec.nowait and _may_block(spec, req.cdb, lu):
            raise WouldBlock  # the handler has not run: nothing changed
        result = spec.handler(Task(req, lu, luns, spec, nowait))
        if result.pending is not None:  # asynchronous I/O started: its end is mapped by _finish
            pending = result.pending
            result.pending = Pending(functools.partial(_start, pending.start),
                                     functools.partial(_finish, pending.finish, req.cdb, spec, lu))
            return result
        if lu is not None and spec.writes and result.status == GOOD:
            lu.after_write()
    except CheckCondition as cc:
        result = _check_condition(cc, lu)
    except StorageError as exc:
        result = _check_condition(CheckCondition(storage_reason(exc, spec)), lu)
    return _with_transfer_length(result, req, spec, lu)


def _with_transfer_length(result: ScsiResult, req: ScsiRequest, spec: CommandSpec | None,
                          lu: LogicalUnit | None) -> ScsiResult:
    """The result, with what the CDB asked to write when the handler did not say (residuals)."""
    if result.transfer_length is None and lu is not None and spec is not None and spec.data_out is not None:
        result.transfer_length = _data_out_bytes(req.cdb, spec, lu.backend.block_size)
    return result


def _start(start: Callable[[Callable[[object], None]], None], done: Callable[[object], None]) -> None:
    """Start a Pending command's I/O; a StorageError raised at once is its outcome."""
    try:
        start(done)
    except StorageError as exc:
        done(exc)


def _finish(finish: Callable[[object], ScsiResult], cdb: bytes, spec: CommandSpec, lu: LogicalUnit | None,
            outcome: object) -> ScsiResult:
    """The end of a Pending command, as execute() ends every other one: its handler's result, or
    the sense of its StorageError (mapped here too, in the one place), then the write's upkeep."""
    try:
        result = finish(outcome)
        if lu is not None and spec.writes and result.status == GOOD:
            lu.after_write()
    except CheckCondition as cc:
        result = _check_condition(cc, lu)
    except StorageError as exc:
        result = _check_condition(CheckCondition(storage_reason(exc, spec)), lu)
    if result.transfer_length is None and lu is not None:
        result.transfer_length = _data_out_bytes(cdb, spec, lu.backend.block_size)
    return result


def _data_out_bytes(cdb: bytes, spec: CommandSpec | None, block_size: int) -> int | None:
    """What the CDB asks to write, for the transport's residuals; None if not a data-out command."""
    if spec is None or spec.data_out is None or len(cdb) < spec.cdb_length:
        return None
    return spec.data_out(cdb, block_size)


def _admit(req: ScsiRequest, lu: LogicalUnit | None) -> CommandSpec:
    """LUN exists → unit attention → known command; returns the spec or raises CheckCondition."""
    spec: CommandSpec | None
    error: CheckCondition | None = None
    try:
        spec = lookup(req.cdb)
    except CheckCondition as cc:
        spec, error = None, cc
    if lu is None:
        if spec is None or not spec.any_lun:
            # SAM-5 "incorrect logical unit selection": every command to a LUN with no LU
            # but INQUIRY (SPC-4 §6.6.1), REPORT LUNS (§6.33) and REQUEST SENSE (§6.39)
            raise CheckCondition(SenseReason.LOGICAL_UNIT_NOT_SUPPORTED)
    else:
        ua = lu.attend(req.nexus, spec is None or not spec.ua_exempt)  # seen, then the oldest UA
        if ua is not None:
            raise CheckCondition(ua)  # SAM-5 §5.14
    if spec is None:
        raise error or CheckCondition(SenseReason.INVALID_COMMAND_OPERATION_CODE)
    if not spec.supported_by(lu):
        # a service action this LU lacks is a field of the CDB (SPC-4 §4.2.5.1), a whole
        # command it lacks an unsupported operation code
        if spec.service_action is not None:
            raise invalid_cdb(1, 4)
        raise CheckCondition(SenseReason.INVALID_COMMAND_OPERATION_CODE)
    return spec


def reservation_conflict(lu: LogicalUnit, spec: CommandSpec, req: ScsiRequest) -> bool:
    """RESERVATION CONFLICT for this command from this nexus: an SPC-2 RESERVE held by another
    nexus (SPC-2 §5.5.1), or the persistent reservation conflict table (PrState.conflicts)."""
    if spec.conflicts and lu.conflicts(req.nexus):
        return True
    return lu.pr.conflicts(req.nexus, spec.access(req.cdb))


def _ready_gate(lu: LogicalUnit, spec: CommandSpec) -> None:
    """An LU whose storage cannot be served (`LogicalUnit.unavailable`) answers like a disk that is
    not ready: INQUIRY, REPORT LUNS and REQUEST SENSE work (SPC-4 §6.6.1, §6.33, §6.39: they answer
    whatever the state of the medium; `any_lun`), every other command gets NOT READY, LOGICAL UNIT
    NOT READY, MANUAL INTERVENTION REQUIRED (SPC-4 Annex D, 02/04/03). Reservation commands
    included: without its persistent reservation state the LU must not answer as if it had none
    (issue #10 item 11)."""
    if lu.unavailable is not None and not spec.any_lun:
        raise CheckCondition(SenseReason.NOT_READY_MANUAL_INTERVENTION)


def _sanitize_gate(lu: LogicalUnit, spec: CommandSpec, cdb: bytes) -> None:
    """While a sanitize operation runs, only INQUIRY, REPORT LUNS and REQUEST SENSE are served
    (NOT READY, SANITIZE IN PROGRESS); after one failed, commands that read or write the medium
    get MEDIUM ERROR, SANITIZE COMMAND FAILED until a sanitize succeeds (SBC-4 §4.11.2, §4.11.4)."""
    state = lu.sanitize_state
    if state == SANITIZE_IDLE or spec.any_lun:
        return
    if state == SANITIZE_RUNNING:
        raise SanitizeInProgress(lu.sanitize_progress())  # with its progress (SPC-4 §4.5.2.4.4)
    if spec.touches_medium(cdb) and spec.opcode != SANITIZE_OPCODE:
        raise CheckCondition(SenseReason.SANITIZE_COMMAND_FAILED)


#: SANITIZE (SBC-4 §5.30) is what leaves the failed sanitize state
SANITIZE_OPCODE = 0x48


def _validate(cdb: bytes, spec: CommandSpec) -> None:
    """CDB valid: long enough, and no bit set outside the command's usage mask."""
    length = len(spec.usage)
    if len(cdb) < length:
        raise invalid_cdb(len(cdb) - 1)
    if int.from_bytes(cdb[:length], "big") & spec.reserved_bits:  # one AND; the loop only on error
        check_usage(cdb, spec.usage)


def _check_condition(cc: CheckCondition, lu: LogicalUnit | None) -> ScsiResult:
    descriptor = lu is not None and lu.mode.d_sense  # Control page D_SENSE (SPC-4 §7.5.8)
    return ScsiResult(status=CHECK_CONDITION, sense=cc.sense(descriptor))


def storage_reason(exc: StorageError, spec: CommandSpec | None) -> SenseReason:
    """The one mapping of backend errors to sense (ARCHITECTURE.md "errors carry their answer").

    A failed flush is a WRITE ERROR (03/0C/00): the data written earlier may not be durable;
    tgt answers MEDIUM ERROR too. Other medium errors are read or write errors by command.
    An unexpected StorageError is a HARDWARE ERROR / INTERNAL TARGET FAILURE (04/44/00).
    """
    if isinstance(exc, OutOfRange):
        return SenseReason.LBA_OUT_OF_RANGE
    if isinstance(exc, ReadOnly):
        return SenseReason.WRITE_PROTECTED
    if isinstance(exc, NoSpace):
        return SenseReason.SPACE_ALLOCATION_FAILED_WRITE_PROTECT
    if isinstance(exc, FlushFailed):
        return SenseReason.WRITE_ERROR
    if isinstance(exc, MediumError):
        writes = spec is not None and spec.writes
        return SenseReason.WRITE_ERROR if writes else SenseReason.UNRECOVERED_READ_ERROR
    return SenseReason.INTERNAL_TARGET_FAILURE


# ---- the table's answers for one CDB outside execute() -----------------------------------------
# Not the server's seam (execute(nowait=True) answers both questions on the way): these name what
# execute() decides from the opcode table, for tests and tools that ask it of a CDB alone.


def is_blocking(cdb: bytes, lu: LogicalUnit | None = None) -> bool:
    """True when the command may block for long: flushes, FUA or large writes, large reads,
    and (given the LU) every write while WCE=0 makes them write-through (what execute(nowait=True)
    sends to a thread, READ and WRITE excepted: they try the page cache first)."""
    spec = find(cdb)
    return spec is not None and _may_block(spec, cdb, lu)


def _may_block(spec: CommandSpec, cdb: bytes, lu: LogicalUnit | None) -> bool:
    if lu is not None and spec.writes and not lu.mode.wce:
        return True
    return spec.is_blocking(cdb)


def data_out_length(cdb: bytes, block_size: int) -> int | None:
    """Bytes of Data-Out the CDB asks for, or None when it is not a data-out command (what
    execute() reports as `ScsiResult.transfer_length` when the handler did not)."""
    return _data_out_bytes(cdb, find(cdb), block_size)
