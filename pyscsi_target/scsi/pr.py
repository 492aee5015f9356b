"""PERSISTENT RESERVE IN and OUT (SPC-4 §6.16, §6.17): CDB and parameter-list decoding, the
PRIN parameter data, and committing a PROUT outcome to the logical unit.

The state machine itself is pure (pr_state.py); the conflict table is applied by `execute()`
before dispatch (core.py). A PROUT runs under `lu.pr_lock`: the new state is first handed to
the LU's host (`host.save_pr_state`, when `host.persists_pr(lu)`: the server persists it when
APTPL is set, SPC-4 §5.13.5.4) and only then installed, so a failed save changes nothing and
answers HARDWARE ERROR.

Decisions: SPEC_I_PT=1 is refused (INVALID FIELD IN PARAMETER LIST; SIP_C=0), so the parameter
list is always the 24-byte basic one; ALL_TG_PT=1 registers the initiator port on every target
port (ATP_C=1); only LU_SCOPE exists; REGISTER AND MOVE (07h) is not in the opcode table and
answers INVALID FIELD IN CDB; PREEMPT AND ABORT cannot abort tasks from here (the transport
owns them): the result's `preempted` lists the (initiator port, target port or None) of the
preempted registrations for the transport to abort.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from . import pr_state as prs
from .cdb import allocation_truncate, u16, u32, u64
from .command import Task
from .lu import LogicalUnit
from .pr_state import PrState, PrType, Registration
from .sense import CheckCondition, SenseReason, invalid_cdb, invalid_param
from .types import RESERVATION_CONFLICT, ScsiResult

#: the basic PROUT parameter list is 24 bytes (SPC-4 §6.17.3); with SPEC_I_PT=0 any other
#: PARAMETER LIST LENGTH is a PARAMETER LIST LENGTH ERROR
PROUT_PARAM_LEN = 24
#: PROUT parameter byte 20 bits (SPC-4 §6.17.3, table 178)
SPEC_I_PT = 0x08
ALL_TG_PT = 0x04
APTPL = 0x01
#: PROUT service actions (SPC-4 §6.17.2, table 175)
REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_AND_ABORT, REGISTER_AND_IGNORE = range(7)
#: only LU_SCOPE is defined for persistent reservations (SPC-4 §6.16.3.4)
LU_SCOPE = 0
#: REPORT CAPABILITIES (SPC-4 §6.16.4, table 173): CRH (SPC-2 RESERVE/RELEASE as §5.13.3),
#: ATP_C, TMV and ALLOW COMMANDS 010b: TEST UNIT READY is allowed through WE and EA reservations,
#: MODE SENSE, READ DEFECT DATA, RECEIVE COPY RESULTS, REPORT SUPPORTED OPERATION CODES ... are not
CAPS_LENGTH = 8
CRH, ATP_C, PTPL_C = 0x10, 0x04, 0x01
TMV, ALLOW_COMMANDS_010, PTPL_A = 0x80, 0x20, 0x01
#: PERSISTENT RESERVATION TYPE MASK bits, bytes 4-5 (SPC-4 table 174)
TYPE_MASK = {
    PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x8000,
    PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x4000,
    PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x2000,
    PrType.EXCLUSIVE_ACCESS: 0x0800,
    PrType.WRITE_EXCLUSIVE: 0x0200,
    PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x0001,
}
#: TransportID for iSCSI, FORMAT CODE 01b: initiator port name with ISID (SPC-4 §7.6.4.6)
TRANSPORT_ID_ISCSI_PORT = 0x40 | 0x05
#: a TransportID's ADDITIONAL LENGTH is at least 20 and a multiple of 4 (SPC-4 §7.6.4.6)
TRANSPORT_ID_MIN_ADDITIONAL = 20


# ---- PERSISTENT RESERVE IN (SPC-4 §6.16) ------------------------------------------------------


def _prin(task: Task, body: bytes, with_generation: bool = True) -> ScsiResult:
    state = task.lu.pr
    data = struct.pack(">II", state.generation, len(body)) + body if with_generation else body
    return ScsiResult(data=allocation_truncate(data, u16(task.cdb, 7)))


def read_keys(task: Task) -> ScsiResult:
    """READ KEYS (§6.16.2): every registered key; ADDITIONAL LENGTH is not cut by the
    allocation length."""
    keys = b"".join(struct.pack(">Q", r.key) for r in task.lu.pr.registrations)
    return _prin(task, keys)


def read_reservation(task: Task) -> ScsiResult:
    """READ RESERVATION (§6.16.3): the holder's key (0 for all-registrants types) and type."""
    state = task.lu.pr
    res = state.reservation
    body = b"" if res is None else struct.pack(">Q4xxB2x", state.holder_key(), (LU_SCOPE << 4) | res.type)
    return _prin(task, body)


def report_capabilities(task: Task) -> ScsiResult:
    """REPORT CAPABILITIES (§6.16.4)."""
    lu = task.lu
    caps = CRH | ATP_C | (PTPL_C if lu.host.persists_pr(lu) else 0)
    flags = TMV | ALLOW_COMMANDS_010 | (PTPL_A if lu.pr.aptpl else 0)
    mask = 0
    for bit in TYPE_MASK.values():
        mask |= bit
    body = struct.pack(">HBBH2x", CAPS_LENGTH, caps, flags, mask)
    return _prin(task, body, with_generation=False)


def read_full_status(task: Task) -> ScsiResult:
    """READ FULL STATUS (§6.16.5): one descriptor per registration with its TransportID."""
    state = task.lu.pr
    return _prin(task, b"".join(_full_status(state, r) for r in state.registrations))


def _full_status(state: PrState, reg: Registration) -> bytes:
    res = state.reservation
    holder = res is not None and (res.type.all_registrants or res.holder == reg.ident)
    flags = (0x02 if reg.target_port is None else 0) | (0x01 if holder else 0)
    scope_type = (LU_SCOPE << 4) | res.type if holder and res is not None else 0
    port = 0 if reg.target_port is None else reg.relative_port_id
    tid = transport_id(reg.initiator_port)
    head = struct.pack(">Q4xBB4xHI", reg.key, flags, scope_type, port & 0xFFFF, len(tid))
    return head + tid


def transport_id(initiator_port: str) -> bytes:
    """iSCSI TransportID, FORMAT CODE 01b: "<name>,i,0x<ISID>" null terminated, padded with nulls
    to a multiple of 4 and to at least 20 bytes (SPC-4 §7.6.4.6)."""
    name = initiator_port.encode("utf-8") + b"\0"
    name += b"\0" * (-len(name) % 4)
    if len(name) < TRANSPORT_ID_MIN_ADDITIONAL:
        name = name.ljust(TRANSPORT_ID_MIN_ADDITIONAL, b"\0")
    return struct.pack(">BxH", TRANSPORT_ID_ISCSI_PORT, len(name)) + name


# ---- PERSISTENT RESERVE OUT (SPC-4 §6.17) -----------------------------------------------------


def prout_data_length(cdb: bytes, block_size: int) -> int:
    """PARAMETER LIST LENGTH, CDB bytes 5-8."""
    return u32(cdb, 5)


def _parameters(task: Task) -> bytes:
    length = u32(task.cdb, 5)
    if length != PROUT_PARAM_LEN:
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    return bytes(task.data_out(length))


def _type(cdb: bytes) -> PrType:
    """SCOPE must be LU_SCOPE and TYPE one of the six types (§6.17.2), else INVALID FIELD IN CDB."""
    if cdb[2] >> 4 != LU_SCOPE:
        raise invalid_cdb(2, 7)
    try:
        return PrType(cdb[2] & 0x0F)
    except ValueError:
        raise invalid_cdb(2, 3) from None


def _request(task: Task, data: bytes, sa: int) -> prs.Request:
    flags = data[20]
    if flags & SPEC_I_PT:
        raise invalid_param(20, 3)  # SIP_C=0
    registering = sa in (REGISTER, REGISTER_AND_IGNORE)
    aptpl = registering and bool(flags & APTPL)
    if aptpl and not task.lu.host.persists_pr(task.lu):
        raise invalid_param(20, 0)  # PTPL_C=0: nothing could keep it across a restart
    rtype = _type(task.cdb) if sa in (RESERVE, RELEASE, PREEMPT, PREEMPT_AND_ABORT) else None
    return prs.Request(
        nexus=task.req.nexus,
        key=u64(data, prs.RK_OFFSET),
        sa_key=u64(data, prs.SARK_OFFSET),
        type=rtype,
        aptpl=aptpl,
        all_tg_pt=registering and bool(flags & ALL_TG_PT),
    )


Action = Callable[[PrState, prs.Request], prs.Outcome]

ACTIONS: dict[int, Action] = {
    REGISTER: lambda s, r: prs.register(s, r, ignore_key=False),
    REGISTER_AND_IGNORE: lambda s, r: prs.register(s, r, ignore_key=True),
    RESERVE: prs.reserve,
    RELEASE: prs.release,
    CLEAR: prs.clear,
    PREEMPT: prs.preempt,
    PREEMPT_AND_ABORT: prs.preempt,
}


def persistent_reserve_out(task: Task) -> ScsiResult:
    """PERSISTENT RESERVE OUT: validate, run the service action, persist, install, notify."""
    sa = task.cdb[1] & 0x1F
    lu = task.lu
    data = _parameters(task)
    request = _request(task, data, sa)
    with lu.pr_lock:
        try:
            outcome = ACTIONS[sa](lu.pr, request)
        except prs.ReservationConflict:
            return ScsiResult(status=RESERVATION_CONFLICT)
        commit(lu, outcome, request)
    if sa == PREEMPT_AND_ABORT and outcome.preempted:
        return ScsiResult(preempted=tuple(r.ident for r in outcome.preempted))
    return ScsiResult()


def commit(lu: LogicalUnit, outcome: prs.Outcome, request: prs.Request) -> None:
    """Persist (through the LU's host), install, then establish the unit attentions on every
    nexus each affected registration covers, never on the issuing nexus (SPC-4 §5.13.11)."""
    if outcome.state != lu.pr:
        host = lu.host
        if host.persists_pr(lu):
            try:
                host.save_pr_state(lu, outcome.state.to_json())
            except OSError:
                raise CheckCondition(SenseReason.INTERNAL_TARGET_FAILURE) from None
        lu.pr = outcome.state
    for reg, reason in outcome.attentions:
        lu.add_unit_attention(reason, except_nexus=request.nexus, only=reg.covers)
