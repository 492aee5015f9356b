"""`execute()`: run one SCSI command through the fixed check order (ARCHITECTURE.md):

    LUN exists → unit attention → CDB valid → reservation conflict → capability → handler

and turn every `CheckCondition` and every `StorageError` into CHECK CONDITION + sense here, in
one place. Nothing an initiator can send makes `execute()` raise.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..storage.base import FlushFailed, MediumError, NoSpace, OutOfRange, ReadOnly, StorageError
from .cdb import check_usage
from .command import CommandSpec, Task
from .lu import LogicalUnit
from .sense import CheckCondition, SenseReason, invalid_cdb
from .table import find, lookup
from .types import CHECK_CONDITION, RESERVATION_CONFLICT, ScsiRequest, ScsiResult


def execute(req: ScsiRequest, luns: Mapping[int, LogicalUnit]) -> ScsiResult:
    """Execute one command; never raises for anything an initiator can send."""
    lu = luns.get(req.lun)
    spec: CommandSpec | None = None
    try:
        spec = _admit(req, lu)
        _validate(req.cdb, spec)
        if lu is not None and spec.conflicts and lu.conflicts(req.nexus):
            result = ScsiResult(status=RESERVATION_CONFLICT)  # SPC-2 §5.5.1
        else:
            if lu is not None and spec.writes and lu.write_protected:
                raise CheckCondition(SenseReason.WRITE_PROTECTED)  # SBC-4 §4.11
            result = spec.handler(Task(req, lu, luns, spec))
    except CheckCondition as cc:
        result = _check_condition(cc, lu)
    except StorageError as exc:
        result = _check_condition(CheckCondition(storage_reason(exc, spec)), lu)
    if result.transfer_length is None and lu is not None:
        result.transfer_length = _data_out_bytes(req.cdb, spec, lu.backend.block_size)
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
        lu.seen(req.nexus)
        if spec is None or not spec.ua_exempt:
            ua = lu.pop_unit_attention(req.nexus)
            if ua is not None:
                raise CheckCondition(ua)  # SAM-5 §5.14
    if spec is None or not spec.supported_by(lu):
        raise error or CheckCondition(SenseReason.INVALID_COMMAND_OPERATION_CODE)
    return spec


def _validate(cdb: bytes, spec: CommandSpec) -> None:
    """CDB valid: long enough, and no bit set outside the command's usage mask."""
    if len(cdb) < spec.cdb_length:
        raise invalid_cdb(len(cdb) - 1)
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


def is_blocking(cdb: bytes, lu: LogicalUnit | None = None) -> bool:
    """True when the command may block for long: flushes, FUA or large writes, large reads,
    and (given the LU) every write while WCE=0 makes them write-through."""
    spec = find(cdb)
    if spec is None:
        return False
    if lu is not None and spec.writes and not lu.mode.wce:
        return True
    return spec.is_blocking(cdb)


def data_out_length(cdb: bytes, block_size: int) -> int | None:
    """Bytes of Data-Out the CDB asks for, or None when it is not a data-out command."""
    return _data_out_bytes(cdb, find(cdb), block_size)
