"""SPC-4 primary commands that every device type shares: TEST UNIT READY, INQUIRY, REPORT LUNS,
REQUEST SENSE, and the SPC-2 RESERVE/RELEASE(6/10) reservations.

MODE SENSE/SELECT live in mode.py, REPORT SUPPORTED OPERATION CODES next to the opcode table.
"""

from __future__ import annotations

import struct

from .cdb import allocation_truncate, u16, u32
from .command import Task
from .sense import CheckCondition, SenseReason, build_sense, invalid_cdb
from .types import RESERVATION_CONFLICT, ScsiResult
from .vpd import NO_LU_PERIPHERAL, VPD_PAGES, no_lu_inquiry, standard_inquiry

#: REPORT LUNS ALLOCATION LENGTH must be at least 16 bytes (SPC-4 §6.33)
REPORT_LUNS_MIN_ALLOC = 16
#: LUNs below 256 use peripheral device addressing, up to 16383 flat space (SAM-5 §4.7.2)
PERIPHERAL_LUN_LIMIT = 256
FLAT_LUN_LIMIT = 1 << 14


def test_unit_ready(task: Task) -> ScsiResult:
    """TEST UNIT READY (SPC-4 §6.47): the medium is always ready."""
    return ScsiResult()


# ---- INQUIRY (SPC-4 §6.6) --------------------------------------------------------------------


def inquiry(task: Task) -> ScsiResult:
    cdb = task.cdb
    evpd = cdb[1] & 0x01
    page = cdb[2]
    alloc = u16(cdb, 3)
    if not evpd and page != 0:
        raise invalid_cdb(2)  # PAGE CODE without EVPD (SPC-4 §6.6.1)
    lu = task.lu_or_none
    if lu is None:
        data = _no_lu_vpd(page) if evpd else no_lu_inquiry()
    elif evpd:
        builder = VPD_PAGES.get(page)
        if builder is None:
            raise invalid_cdb(2)
        data = builder(lu, task.req.nexus)
    else:
        data = standard_inquiry(lu)
    return ScsiResult(data=allocation_truncate(data, alloc))


def _no_lu_vpd(page: int) -> bytes:
    """VPD data for a LUN without a logical unit: only page 00h, listing itself, qualifier 011b."""
    if page != 0x00:
        raise invalid_cdb(2)
    return bytes((NO_LU_PERIPHERAL, 0x00, 0x00, 0x01, 0x00))


# ---- REPORT LUNS (SPC-4 §6.33) ---------------------------------------------------------------


def encode_lun(lun: int) -> bytes:
    """An 8-byte LUN: peripheral device addressing below 256, flat space above (SAM-5 §4.7)."""
    if lun < PERIPHERAL_LUN_LIMIT:
        return struct.pack(">BB6x", 0x00, lun)
    return struct.pack(">H6x", 0x4000 | (lun & 0x3FFF))


def report_luns(task: Task) -> ScsiResult:
    cdb = task.cdb
    select = cdb[2]
    alloc = u32(cdb, 6)
    if alloc < REPORT_LUNS_MIN_ALLOC:
        raise invalid_cdb(6)
    if select not in (0x00, 0x01, 0x02):
        raise invalid_cdb(2)
    # 00h all LUs, 02h all LUs and well-known LUs (we have none), 01h well-known only (none)
    luns = [] if select == 0x01 else sorted(n for n in task.luns if 0 <= n < FLAT_LUN_LIMIT)
    body = b"".join(encode_lun(n) for n in luns)
    data = struct.pack(">I4x", len(body)) + body
    # REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED for this nexus (SPC-4 §6.33)
    for lu in task.luns.values():
        lu.clear_unit_attention(task.req.nexus, SenseReason.REPORTED_LUNS_DATA_CHANGED)
    return ScsiResult(data=allocation_truncate(data, alloc))


# ---- REQUEST SENSE (SPC-4 §6.39) -------------------------------------------------------------


def request_sense(task: Task) -> ScsiResult:
    """Return (and clear) a pending unit attention, else the sanitize state (SANITIZE IN PROGRESS
    with its progress, or SANITIZE COMMAND FAILED: SBC-4 §4.11), else NO SENSE. Autosense means
    there is no other saved sense to report. On a LUN with no logical unit the parameter data says
    LOGICAL UNIT NOT SUPPORTED with GOOD status (SPC-4 §6.39.1)."""
    cdb = task.cdb
    descriptor = bool(cdb[1] & 0x01)
    alloc = cdb[4]
    lu = task.lu_or_none
    if lu is None:
        reason = SenseReason.LOGICAL_UNIT_NOT_SUPPORTED
    else:
        reason = lu.pop_unit_attention(task.req.nexus) or SenseReason.NO_SENSE
        sanitizing = lu.sanitize_sense(descriptor) if reason is SenseReason.NO_SENSE else None
        if sanitizing is not None:
            return ScsiResult(data=allocation_truncate(sanitizing, alloc))
    return ScsiResult(data=allocation_truncate(build_sense(reason, descriptor=descriptor), alloc))


# ---- RESERVE / RELEASE (SPC-2 §7.21, §7.17) --------------------------------------------------


def reserve(task: Task) -> ScsiResult:
    """RESERVE(6/10): a logical-unit reservation for this nexus; re-reserving is allowed.
    Third-party and extent reservations are refused by the CDB usage mask (all zero)."""
    if not task.lu.reserve(task.req.nexus):
        return ScsiResult(status=RESERVATION_CONFLICT)
    return ScsiResult()


def release(task: Task) -> ScsiResult:
    """RELEASE(6/10): only the holder's release has an effect; GOOD either way (SPC-2 §7.17.1)."""
    task.lu.release(task.req.nexus)
    return ScsiResult()


# ---- START STOP UNIT (SBC-4 §5.26) / PREVENT ALLOW MEDIUM REMOVAL (SBC-4 §5.13) ----------------


def start_stop_unit(task: Task) -> ScsiResult:
    """The medium cannot stop or leave: GOOD, except an eject (LOEJ=1, START=0) while a nexus
    prevents medium removal: ILLEGAL REQUEST / MEDIUM REMOVAL PREVENTED (05/53/02)."""
    byte4 = task.cdb[4]
    if byte4 & 0x02 and not byte4 & 0x01 and task.lu.prevent:
        raise CheckCondition(SenseReason.MEDIUM_REMOVAL_PREVENTED)
    return ScsiResult()


def prevent_allow(task: Task) -> ScsiResult:
    """PREVENT (01b) or ALLOW (00b) medium removal for this nexus; 10b/11b are obsolete."""
    prevent = task.cdb[4] & 0x03
    if prevent > 1:
        raise invalid_cdb(4, 1)
    task.lu.set_prevent(task.req.nexus, bool(prevent))
    return ScsiResult()
