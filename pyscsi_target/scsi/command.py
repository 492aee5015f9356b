"""`CommandSpec` (one row of the opcode table) and `Task` (what a handler receives).

A handler is a plain function `Task -> ScsiResult` that raises `CheckCondition` for every error
it detects. The spec carries everything `execute()` needs to run the fixed check order without
knowing the command: whether it works without a logical unit, whether unit attentions and
reservations apply (SPC-2 RESERVE and the persistent reservation conflict class), whether it
modifies the medium, how much Data-Out it expects, and the CDB usage mask (SPC-4 §6.35.3) that
both validates reserved bits and answers REPORT SUPPORTED OPERATION CODES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .lu import LogicalUnit
from .pr_state import PrAccess
from .sense import CheckCondition, SenseReason
from .types import ScsiRequest, ScsiResult

Handler = Callable[["Task"], ScsiResult]
#: bytes of Data-Out a CDB expects, given the LU's block size
DataOutLength = Callable[[bytes, int], int]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    opcode: int
    #: SERVICE ACTION (CDB byte 1 bits 4-0) for opcodes that multiplex on it, else None
    service_action: int | None
    name: str
    handler: Handler
    #: CDB USAGE DATA: usage[0] is the opcode, then a mask of the bits the command uses per byte;
    #: its length is the CDB length (SPC-4 §6.35.3)
    usage: bytes
    #: may block for long (flush, large or FUA writes ...): True, or a function of the CDB
    blocking: bool | Callable[[bytes], bool] = False
    data_out: DataOutLength | None = None
    #: modifies the medium: refused with DATA PROTECT when the LU is write protected
    writes: bool = False
    #: refused with RESERVATION CONFLICT while another nexus holds a RESERVE (SPC-2 §5.5.1)
    conflicts: bool = True
    #: its row in the persistent reservation conflict table (SPC-4 table 66, SBC-4 table 13),
    #: or a function of the CDB for commands whose row depends on a field (PREVENT ALLOW ...)
    pr_access: PrAccess | Callable[[bytes], PrAccess] = PrAccess.EXCLUSIVE
    #: not answered with a pending unit attention (SAM-5 §5.14: INQUIRY, REPORT LUNS, REQUEST SENSE)
    ua_exempt: bool = False
    #: works on a LUN with no logical unit behind it (SAM-5 "incorrect logical unit selection")
    any_lun: bool = False
    #: whether this LU supports the command (e.g. UNMAP only when thin); None = always.
    #: Unsupported answers INVALID COMMAND OPERATION CODE and is left out of REPORT SUPPORTED
    #: OPERATION CODES.
    available: Callable[[LogicalUnit], bool] | None = None
    #: the handler honours `Task.nowait` by itself (READ, WRITE: backend read_nowait/write_nowait,
    #: raising storage.WouldBlock when it would wait), so execute(nowait=True) runs it instead
    #: of refusing it for being `blocking`
    nowait: bool = False
    #: the CDB bits outside `usage` (byte 0 excluded) as one big-endian integer: execute() tests
    #: a CDB against it with one AND and only then looks for the offending field
    reserved_bits: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        inverted = bytes([0, *(~m & 0xFF for m in self.usage[1:])])
        object.__setattr__(self, "reserved_bits", int.from_bytes(inverted, "big"))

    @property
    def cdb_length(self) -> int:
        return len(self.usage)

    def supported_by(self, lu: LogicalUnit | None) -> bool:
        return self.available is None or lu is None or self.available(lu)

    def is_blocking(self, cdb: bytes) -> bool:
        return self.blocking(cdb) if callable(self.blocking) else self.blocking

    def access(self, cdb: bytes) -> PrAccess:
        return self.pr_access(cdb) if callable(self.pr_access) else self.pr_access

    def touches_medium(self, cdb: bytes) -> bool:
        """Reads or writes the medium: refused while a sanitize operation failed (SBC-4 §4.11)."""
        return self.writes or self.access(cdb) is PrAccess.READ


@dataclass(slots=True)
class Task:
    """One command on its way through a handler."""

    req: ScsiRequest
    lu_or_none: LogicalUnit | None
    luns: Mapping[int, LogicalUnit]
    spec: CommandSpec
    #: running on an event loop: read with `backend.read_nowait()` (execute(nowait=True))
    nowait: bool = False

    @property
    def cdb(self) -> bytes:
        return self.req.cdb

    @property
    def lu(self) -> LogicalUnit:
        """The logical unit; only `any_lun` commands run without one."""
        lu = self.lu_or_none
        if lu is None:
            raise CheckCondition(SenseReason.LOGICAL_UNIT_NOT_SUPPORTED)
        return lu

    def write_blocks(self, nblocks: int, block_size: int) -> memoryview:
        """The whole blocks of Data-Out to write for a WRITE-type command of `nblocks` blocks.

        iSCSI residuals (RFC 7143 §11.4.5.2; libiscsi iSCSIResiduals): when the initiator's
        ExpectedDataTransferLength is larger than the CDB's transfer length only the CDB's amount
        is written (underflow); when it is smaller, only the whole blocks it did send are written
        and the command still ends GOOD, the transport reporting the overflow residual from
        `transfer_length`. A trailing partial block is never written.
        """
        data = self.req.data_out
        if data is None or nblocks == 0:
            return memoryview(b"")
        usable = min(len(data), nblocks * block_size) // block_size * block_size
        view = data if isinstance(data, memoryview) else memoryview(data)
        return view[:usable] if len(view) != usable else view

    def data_out(self, nbytes: int, *, exact: bool = False) -> memoryview:
        """Exactly the first `nbytes` of Data-Out.

        When the initiator's ExpectedDataTransferLength is smaller than what the CDB asks for,
        nothing is written and the command ends with ILLEGAL REQUEST / INVALID FIELD IN COMMAND
        INFORMATION UNIT (05/0E/03): option (b) of FCP-4 §9.4.2 that libiscsi's iSCSIResiduals
        tests accept; the transport reports the overflow residual from `transfer_length`.
        Extra data (EDTL larger) is ignored: only the CDB's amount is used (underflow residual),
        unless `exact` (COMPARE AND WRITE, whose two halves must line up: SBC-4 §5.3).
        """
        data = self.req.data_out
        if exact and data is not None and len(data) != nbytes:
            raise CheckCondition(SenseReason.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
        if nbytes == 0:
            return memoryview(b"")
        if data is None or len(data) < nbytes:
            raise CheckCondition(SenseReason.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT)
        view = data if isinstance(data, memoryview) else memoryview(data)
        return view[:nbytes] if len(view) != nbytes else view
