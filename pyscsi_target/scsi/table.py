"""The opcode table: one `CommandSpec` per supported (operation code, service action), with
its CDB usage mask (SPC-4 §6.35.3), and the lookups `execute()`, `is_blocking()` and
`data_out_length()` share.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import mode, pr, sanitize, sbc, sbc_atomic, sbc_provisioning, sbc_verify, spc, xcopy
from .cdb import allocation_truncate, u16, u32
from .command import CommandSpec, Handler, Task
from .lu import LogicalUnit
from .pr_state import PrAccess
from .rsoc import supported_opcodes_data
from .sense import CheckCondition, SenseReason, invalid_cdb
from .types import ScsiResult

#: transfers of at least this many blocks may block for long (is_blocking(): cold reads, large
#: writes); on the event loop READ and WRITE (`nowait=True`) still run when the data is in the
#: page cache (docs/performance.md): 256 blocks = 128 KiB at 512 B, 1 MiB at 4 KiB
BLOCKING_TRANSFER_BLOCKS = 256

_RW_FLAGS = 0x1E  # DPO, FUA, RARC (reads) / reserved (writes), FUA_NV: accepted, hints only
_GROUP = 0x1F  # GROUP NUMBER: accepted, ignored
_VERIFY = 0x16  # DPO, BYTCHK (VERIFY / WRITE AND VERIFY)


def _usage(opcode: int, *mask: int) -> bytes:
    return bytes((opcode, *mask))


def _large(cdb: bytes) -> bool:
    return sbc.rw_lba_and_length(cdb)[1] >= BLOCKING_TRANSFER_BLOCKS


def _thin(lu: LogicalUnit) -> bool:
    return lu.thin


def _write_blocking(cdb: bytes) -> bool:
    return sbc.has_fua(cdb) or _large(cdb)


# persistent reservation conflict classes (SPC-4 §5.13.1 table 66, SBC-4 §4.17 table 13)
ALLOWED, READ, SPC2 = PrAccess.ALLOWED, PrAccess.READ, PrAccess.SPC2


def _start_stop_access(cdb: bytes) -> PrAccess:
    """START STOP UNIT: allowed with START=1 and POWER CONDITION 0h, else a conflict."""
    return ALLOWED if cdb[4] & 0x01 and not cdb[4] & 0xF0 else PrAccess.EXCLUSIVE


def _prevent_access(cdb: bytes) -> PrAccess:
    """PREVENT ALLOW MEDIUM REMOVAL: allowed with PREVENT=0, else a conflict."""
    return PrAccess.EXCLUSIVE if cdb[4] & 0x03 else ALLOWED


def _spec(
    opcode: int,
    name: str,
    handler: Handler,
    mask: Iterable[int],
    *,
    sa: int | None = None,
    **kw: object,
) -> CommandSpec:
    return CommandSpec(opcode, sa, name, handler, _usage(opcode, *mask), **kw)  # type: ignore[arg-type]


_FF4 = (0xFF,) * 4
_FF8 = (0xFF,) * 8


def report_supported_opcodes(task: Task) -> ScsiResult:
    """REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) over the commands this LU supports: the
    table it reports is `SPECS`, read when the command runs, so its own row is an ordinary one."""
    specs = [s for s in SPECS if s.supported_by(task.lu)]
    data = supported_opcodes_data(specs, task.cdb)
    return ScsiResult(data=allocation_truncate(data, u32(task.cdb, 6)))

SPECS: list[CommandSpec] = [
    # ---- SPC-4 --------------------------------------------------------------------------
    _spec(0x00, "TEST UNIT READY", spc.test_unit_ready, (0, 0, 0, 0, 0), pr_access=ALLOWED),
    _spec(0x03, "REQUEST SENSE", spc.request_sense, (0x01, 0, 0, 0xFF, 0),
          ua_exempt=True, any_lun=True, conflicts=False, pr_access=ALLOWED),
    _spec(0x12, "INQUIRY", spc.inquiry, (0x01, 0xFF, 0xFF, 0xFF, 0),
          ua_exempt=True, any_lun=True, conflicts=False, pr_access=ALLOWED),
    _spec(0xA0, "REPORT LUNS", spc.report_luns, (0, 0xFF, 0, 0, 0, *_FF4, 0, 0),
          ua_exempt=True, any_lun=True, conflicts=False, pr_access=ALLOWED),
    _spec(0x1A, "MODE SENSE(6)", mode.mode_sense6, (0x08, 0xFF, 0xFF, 0xFF, 0)),
    _spec(0x5A, "MODE SENSE(10)", mode.mode_sense10, (0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0)),
    _spec(0x15, "MODE SELECT(6)", mode.mode_select6, (0x11, 0, 0, 0xFF, 0),
          data_out=lambda cdb, bs: cdb[4]),
    _spec(0x55, "MODE SELECT(10)", mode.mode_select10, (0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0),
          data_out=lambda cdb, bs: u16(cdb, 7)),
    _spec(0x16, "RESERVE(6)", spc.reserve, (0, 0, 0, 0, 0), pr_access=SPC2),
    _spec(0x17, "RELEASE(6)", spc.release, (0, 0, 0, 0, 0), conflicts=False, pr_access=SPC2),
    _spec(0x56, "RESERVE(10)", spc.reserve, (0,) * 9, pr_access=SPC2),
    _spec(0x57, "RELEASE(10)", spc.release, (0,) * 9, conflicts=False, pr_access=SPC2),
    _spec(0xA3, "REPORT SUPPORTED OPERATION CODES", report_supported_opcodes,
          (0x1F, 0x87, 0xFF, 0xFF, 0xFF, *_FF4, 0, 0), sa=0x0C, conflicts=False),
    # ---- SBC-4: capacity and data path --------------------------------------------------
    _spec(0x25, "READ CAPACITY(10)", sbc.read_capacity10, (0, *_FF4, 0, 0, 0x01, 0), pr_access=ALLOWED),
    _spec(0x9E, "READ CAPACITY(16)", sbc.read_capacity16, (0x1F, *_FF8, *_FF4, 0x01, 0), sa=0x10,
          pr_access=ALLOWED),
    _spec(0x08, "READ(6)", sbc.read, (0x1F, 0xFF, 0xFF, 0xFF, 0), blocking=_large, pr_access=READ, nowait=True),
    _spec(0x28, "READ(10)", sbc.read, (_RW_FLAGS, *_FF4, _GROUP, 0xFF, 0xFF, 0), blocking=_large,
          pr_access=READ, nowait=True),
    _spec(0xA8, "READ(12)", sbc.read, (_RW_FLAGS, *_FF4, *_FF4, _GROUP, 0), blocking=_large, pr_access=READ,
          nowait=True),
    _spec(0x88, "READ(16)", sbc.read, (_RW_FLAGS, *_FF8, *_FF4, _GROUP, 0), blocking=_large, pr_access=READ,
          nowait=True),
    _spec(0x0A, "WRITE(6)", sbc.write, (0x1F, 0xFF, 0xFF, 0xFF, 0),
          blocking=_large, data_out=sbc.write_data_length, writes=True, nowait=True),
    _spec(0x2A, "WRITE(10)", sbc.write, (0x1A, *_FF4, _GROUP, 0xFF, 0xFF, 0),
          blocking=_write_blocking, data_out=sbc.write_data_length, writes=True, nowait=True),
    _spec(0xAA, "WRITE(12)", sbc.write, (0x1A, *_FF4, *_FF4, _GROUP, 0),
          blocking=_write_blocking, data_out=sbc.write_data_length, writes=True, nowait=True),
    _spec(0x8A, "WRITE(16)", sbc.write, (0x1A, *_FF8, *_FF4, _GROUP, 0),
          blocking=_write_blocking, data_out=sbc.write_data_length, writes=True, nowait=True),
    _spec(0x35, "SYNCHRONIZE CACHE(10)", sbc.synchronize_cache, (0x06, *_FF4, _GROUP, 0xFF, 0xFF, 0),
          blocking=True),
    _spec(0x91, "SYNCHRONIZE CACHE(16)", sbc.synchronize_cache, (0x06, *_FF8, *_FF4, _GROUP, 0),
          blocking=True),
    _spec(0x1B, "START STOP UNIT", spc.start_stop_unit, (0x01, 0, 0x0F, 0xF7, 0),
          pr_access=_start_stop_access),
    _spec(0x1E, "PREVENT ALLOW MEDIUM REMOVAL", spc.prevent_allow, (0, 0, 0, 0x03, 0),
          pr_access=_prevent_access),
    # ---- SBC-4: verify, compare, provisioning -------------------------------------------
    _spec(0x2F, "VERIFY(10)", sbc_verify.verify, (_VERIFY, *_FF4, _GROUP, 0xFF, 0xFF, 0),
          blocking=True, data_out=sbc_verify.verify_data_length, pr_access=READ),
    _spec(0xAF, "VERIFY(12)", sbc_verify.verify, (_VERIFY, *_FF4, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc_verify.verify_data_length, pr_access=READ),
    _spec(0x8F, "VERIFY(16)", sbc_verify.verify, (_VERIFY, *_FF8, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc_verify.verify_data_length, pr_access=READ),
    _spec(0x2E, "WRITE AND VERIFY(10)", sbc_verify.write_and_verify, (_VERIFY, *_FF4, _GROUP, 0xFF, 0xFF, 0),
          blocking=True, data_out=sbc.write_data_length, writes=True),
    _spec(0xAE, "WRITE AND VERIFY(12)", sbc_verify.write_and_verify, (_VERIFY, *_FF4, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc.write_data_length, writes=True),
    _spec(0x8E, "WRITE AND VERIFY(16)", sbc_verify.write_and_verify, (_VERIFY, *_FF8, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc.write_data_length, writes=True),
    _spec(0x89, "COMPARE AND WRITE", sbc_verify.compare_and_write, (0x1A, *_FF8, 0, 0, 0, 0xFF, _GROUP, 0),
          blocking=True, data_out=lambda cdb, bs: 2 * cdb[13] * bs, writes=True),
    _spec(0x41, "WRITE SAME(10)", sbc_provisioning.write_same, (0x08, *_FF4, _GROUP, 0xFF, 0xFF, 0),
          blocking=True, data_out=sbc_provisioning.write_same_data_length, writes=True),
    _spec(0x93, "WRITE SAME(16)", sbc_provisioning.write_same, (0x09, *_FF8, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc_provisioning.write_same_data_length, writes=True),
    _spec(0x42, "UNMAP", sbc_provisioning.unmap, (0, 0, 0, 0, 0, _GROUP, 0xFF, 0xFF, 0),
          blocking=True, data_out=lambda cdb, bs: u16(cdb, 7), writes=True, available=_thin),
    _spec(0x9E, "GET LBA STATUS", sbc_provisioning.get_lba_status, (0x1F, *_FF8, *_FF4, 0, 0), sa=0x12,
          pr_access=READ),
    _spec(0x34, "PRE-FETCH(10)", sbc.prefetch, (0x02, *_FF4, _GROUP, 0xFF, 0xFF, 0), pr_access=READ),
    _spec(0x90, "PRE-FETCH(16)", sbc.prefetch, (0x02, *_FF8, *_FF4, _GROUP, 0), pr_access=READ),
    _spec(0x8B, "ORWRITE(16)", sbc_atomic.orwrite, (0x1A, *_FF8, *_FF4, _GROUP, 0),
          blocking=True, data_out=sbc_atomic.orwrite_data_length, writes=True),
    _spec(0x9C, "WRITE ATOMIC(16)", sbc_atomic.write_atomic16, (0x18, *_FF8, 0, 0, 0xFF, 0xFF, _GROUP, 0),
          blocking=True, data_out=sbc_atomic.write_atomic_data_length, writes=True),
    _spec(0x37, "READ DEFECT DATA(10)", sbc.read_defect_data10, (0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0)),
    _spec(0xB7, "READ DEFECT DATA(12)", sbc.read_defect_data12, (0x1F, *_FF4, *_FF4, 0, 0)),
    # ---- SANITIZE (SBC-4 §5.30): IMMED and AUSE; ZNR refused by the mask; no CRYPTOGRAPHIC ERASE row ----
    *(
        _spec(0x48, f"SANITIZE ({name})", sanitize.sanitize, (0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0), sa=sa,
              blocking=True, data_out=sanitize.sanitize_data_length, writes=writes, available=available)
        for sa, name, writes, available in (
            (sanitize.OVERWRITE, "OVERWRITE", True, None),
            (sanitize.BLOCK_ERASE, "BLOCK ERASE", True, _thin),
            (sanitize.EXIT_FAILURE_MODE, "EXIT FAILURE MODE", False, None),
        )
    ),
    # ---- persistent reservations (SPC-4 §6.16, §6.17) ----------------------------------------
    *(
        _spec(0x5E, f"PERSISTENT RESERVE IN ({name})", handler, (0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0), sa=sa,
              pr_access=ALLOWED)
        for sa, name, handler in (
            (0x00, "READ KEYS", pr.read_keys),
            (0x01, "READ RESERVATION", pr.read_reservation),
            (0x02, "REPORT CAPABILITIES", pr.report_capabilities),
            (0x03, "READ FULL STATUS", pr.read_full_status),
        )
    ),
    *(
        _spec(0x5F, f"PERSISTENT RESERVE OUT ({name})", pr.persistent_reserve_out,
              (0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0), sa=sa, blocking=True,
              data_out=pr.prout_data_length, pr_access=ALLOWED)
        for sa, name in (
            (pr.REGISTER, "REGISTER"),
            (pr.RESERVE, "RESERVE"),
            (pr.RELEASE, "RELEASE"),
            (pr.CLEAR, "CLEAR"),
            (pr.PREEMPT, "PREEMPT"),
            (pr.PREEMPT_AND_ABORT, "PREEMPT AND ABORT"),
            (pr.REGISTER_AND_IGNORE, "REGISTER AND IGNORE EXISTING KEY"),
        )
    ),
    # ---- third-party copy (SPC-4 §6.4, §6.18) ------------------------------------------------
    _spec(0x83, "EXTENDED COPY(LID1)", xcopy.extended_copy, (0x1F, *(0,) * 8, *_FF4, 0, 0), sa=0x00,
          blocking=True, data_out=xcopy.extended_copy_data_length),
    _spec(0x84, "RECEIVE COPY RESULTS (COPY STATUS)", xcopy.copy_status, (0x1F, 0xFF, *(0,) * 7, *_FF4, 0, 0),
          sa=0x00),
    _spec(0x84, "RECEIVE COPY RESULTS (OPERATING PARAMETERS)", xcopy.operating_parameters,
          (0x1F, 0xFF, *(0,) * 7, *_FF4, 0, 0), sa=0x03),
]


TABLE: dict[tuple[int, int | None], CommandSpec] = {(s.opcode, s.service_action): s for s in SPECS}
#: opcodes whose CDB byte 1 bits 4-0 select a service action (SPC-4 §4.2.5.1)
SERVICE_ACTION_OPCODES = frozenset(s.opcode for s in SPECS if s.service_action is not None)


def lookup(cdb: bytes) -> CommandSpec:
    """The spec for a CDB, or CheckCondition: INVALID COMMAND OPERATION CODE for an unknown
    opcode, INVALID FIELD IN CDB for an unknown service action (SPC-4 §4.2.5.1)."""
    if not cdb:
        raise CheckCondition(SenseReason.INVALID_COMMAND_OPERATION_CODE)
    opcode = cdb[0]
    if opcode in SERVICE_ACTION_OPCODES:
        sa = cdb[1] & 0x1F if len(cdb) > 1 else -1
        spec = TABLE.get((opcode, sa))
        if spec is None:
            raise invalid_cdb(1, 4)
        return spec
    spec = TABLE.get((opcode, None))
    if spec is None:
        raise CheckCondition(SenseReason.INVALID_COMMAND_OPERATION_CODE)
    return spec


def find(cdb: bytes) -> CommandSpec | None:
    """The spec for a well-formed CDB of a supported command, else None."""
    try:
        spec = lookup(cdb)
    except CheckCondition:
        return None
    return spec if len(cdb) >= spec.cdb_length else None

