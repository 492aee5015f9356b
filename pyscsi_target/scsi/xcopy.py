"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.18): the copy manager.

Supported: identification descriptor CSCD descriptors (E4h) naming a logical unit by its NAA
designator (binary, LU association), and block device to block device segment descriptors
(02h) between LUs of the same logical block length. Every descriptor is checked, and every
copy target resolved and checked (range, write protection, reservations), before any data
moves; then the segments are copied in order, `COPY_CHUNK_BYTES` at a time.

Which LUs a copy may touch: an NAA designator is first looked up among the LUs of the session's
target (the LUNs the initiator can reach: `Task.luns`). Failing that, the LU's host
(`LuHost.find_lu`) finds it anywhere on this server, and it is used only if the extent of the LU
that RECEIVED the EXTENDED COPY has `insecure_tpc` set (FreeNAS: "allow initiators to xcopy without
authenticating to foreign targets"; CTL's ctl_tpc.c reads the flag of the receiving LU only, the
foreign LU's own flag plays no part); otherwise the copy target is unreachable (COPY ABORTED,
UNREACHABLE COPY TARGET). Reservations of a foreign LU apply as if the command came on the
issuing I_T nexus: the source must allow reads, the destination writes.

Sense choices where libiscsi checks them: the SPC-3 LU ID TYPE and NUL fields of a CSCD
descriptor are obsolete in SPC-4 and ignored; an unknown LU and a foreign LU when the
receiving LU lacks insecure_tpc are COPY ABORTED / UNREACHABLE COPY TARGET (0A/08/04); a segment's CSCD
index beyond the list is COPY ABORTED / COPY TARGET DEVICE NOT REACHABLE (0A/0D/02); a segment
beyond the end of a copy target, or a storage error while copying, is COPY ABORTED with no
additional sense (0A/00/00) and a field pointer to the offending segment field. Inline and held
data are not supported (limits 0); RECEIVE DATA and FAILED SEGMENT DETAILS are not in the
opcode table (INVALID FIELD IN CDB).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from ..storage.base import StorageError
from .cdb import allocation_truncate, u16, u32, u64
from .command import Task
from .lu import SANITIZE_IDLE, SANITIZE_RUNNING, CopyRecord, LogicalUnit
from .pr_state import PrAccess
from .sense import CheckCondition, SenseReason, invalid_cdb, invalid_param
from .types import RESERVATION_CONFLICT, Nexus, ScsiResult

# ---- operating parameters (SPC-4 §6.18.4), reported by RECEIVE COPY RESULTS ----------------------
#: CSCD (target) descriptors per command
MAX_TARGET_DESCRIPTORS = 8
#: segment descriptors per command
MAX_SEGMENT_DESCRIPTORS = 64
#: bytes of target + segment descriptors per command; below 16 + 9*32 + 65*28 so that a list
#: that is too long is told apart from one with too many descriptors
MAX_DESCRIPTOR_LIST_LENGTH = 2048
#: bytes one segment may move: more than a block-to-block descriptor's 65535 blocks of 4 KiB
MAX_SEGMENT_BYTES = 1 << 28
#: inline and held data are not supported (bytes)
MAX_INLINE_DATA = 0
HELD_DATA_LIMIT = 0
#: EXTENDED COPY commands with a LIST IDENTIFIER one I_T nexus may have running or held (the
#: one-byte field's maximum; the identifier space has 256 values)
MAX_CONCURRENT_COPIES = 255
#: data moves between copy targets in chunks of this many bytes (bounds the memory of a copy)
COPY_CHUNK_BYTES = 1 << 20

PARAM_HEADER = 16
CSCD_DESCRIPTOR = 32
B2B_SEGMENT = 28
IDENTIFICATION_CSCD = 0xE4
BLOCK_TO_BLOCK = 0x02
IMPLEMENTED_DESCRIPTORS = bytes((BLOCK_TO_BLOCK, IDENTIFICATION_CSCD))
#: designator fields of an identification descriptor (SPC-4 §7.8.6.1)
CODE_SET_BINARY, ASSOCIATION_LU, DESIGNATOR_NAA = 1, 0, 3
NAA_MAX_LENGTH = 16
#: LIST ID USAGE (SPC-4 §6.4.3.2, table 110)
HOLD, RESERVED_USAGE, DISCARD, NO_LIST_ID = range(4)
#: COPY MANAGER STATUS (SPC-4 §6.18.3)
COPY_IN_PROGRESS, COPY_GOOD, COPY_FAILED = 0x00, 0x01, 0x02
#: TRANSFER COUNT UNITS: 00h bytes, then F1h.. for kibibytes, mebibytes ... (SPC-4 table 200)
UNITS_BYTES, UNITS_KIB = 0x00, 0xF1


@dataclass(frozen=True, slots=True)
class Segment:
    offset: int  # of the descriptor in the parameter list, for field pointers
    src: LogicalUnit
    dst: LogicalUnit
    nblocks: int
    src_lba: int
    dst_lba: int


# ---- EXTENDED COPY (LID1) -----------------------------------------------------------------------


def extended_copy_data_length(cdb: bytes, block_size: int) -> int:
    """PARAMETER LIST LENGTH, CDB bytes 10-13."""
    return u32(cdb, 10)


def extended_copy(task: Task) -> ScsiResult:
    length = u32(task.cdb, 10)
    if length == 0:
        return ScsiResult()  # nothing to copy (SPC-4 §6.4.1)
    if length < PARAM_HEADER:
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    data = bytes(task.data_out(length))
    list_id, usage = _header(data, length)
    targets, segment_offsets = _descriptor_lists(data)
    cscds = [_resolve(task, data, off) for off in targets]
    segments = [_segment(task, data, off, cscds) for off in segment_offsets]
    conflict = _conflicts(task.req.nexus, segments)
    if conflict:
        return ScsiResult(status=RESERVATION_CONFLICT)
    return _run(task, list_id if usage != NO_LIST_ID else None, usage == HOLD, segments)


def _header(data: bytes, length: int) -> tuple[int, int]:
    """LIST IDENTIFIER and LIST ID USAGE; lengths against the parameter list and our limits."""
    list_id, flags = data[0], data[1]
    usage = (flags >> 3) & 0x03
    tdl, sdl, inline = u16(data, 2), u32(data, 8), u32(data, 12)
    if PARAM_HEADER + tdl + sdl + inline > length or tdl + sdl > MAX_DESCRIPTOR_LIST_LENGTH:
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    if inline > MAX_INLINE_DATA:
        raise invalid_param(12)
    if usage == RESERVED_USAGE:
        raise invalid_param(1, 4)
    if usage == NO_LIST_ID and list_id != 0:
        raise invalid_param(0)
    return list_id, usage


def _descriptor_lists(data: bytes) -> tuple[list[int], list[int]]:
    """Offsets of the CSCD and segment descriptors, after the count limits (SPC-4 §6.4.3.4/5)."""
    tdl, sdl = u16(data, 2), u32(data, 8)
    if tdl % CSCD_DESCRIPTOR:
        raise invalid_param(2)
    targets = list(range(PARAM_HEADER, PARAM_HEADER + tdl, CSCD_DESCRIPTOR))
    if len(targets) > MAX_TARGET_DESCRIPTORS:
        raise CheckCondition(SenseReason.TOO_MANY_TARGET_DESCRIPTORS)
    segments, off, end = [], PARAM_HEADER + tdl, PARAM_HEADER + tdl + sdl
    while off < end:
        if off + 4 > end or off + 4 + u16(data, off + 2) > end:
            raise invalid_param(off + 2)
        segments.append(off)
        off += 4 + u16(data, off + 2)
    if len(segments) > MAX_SEGMENT_DESCRIPTORS:
        raise CheckCondition(SenseReason.TOO_MANY_SEGMENT_DESCRIPTORS)
    return targets, segments


def _resolve(task: Task, data: bytes, off: int) -> LogicalUnit:
    """An identification descriptor CSCD descriptor (SPC-4 §6.4.5.6) → the LU it names."""
    if data[off] != IDENTIFICATION_CSCD:
        raise CheckCondition(SenseReason.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, field=(off, None), in_cdb=False)
    # byte 1: LU ID TYPE (bits 7-6) and NUL (bit 5) are obsolete in SPC-4 and ignored (libiscsi's
    # ValidTgtDescr expects GOOD from an SPC-4 device); the PERIPHERAL DEVICE TYPE must be 00h
    if data[off + 1] & 0x1F:
        raise CheckCondition(SenseReason.INCORRECT_COPY_TARGET_DEVICE_TYPE, field=(off + 1, 4), in_cdb=False)
    code_set, assoc, dtype = data[off + 4] & 0x0F, (data[off + 5] >> 4) & 0x03, data[off + 5] & 0x0F
    dlen = data[off + 7]
    if dlen > NAA_MAX_LENGTH:
        raise invalid_param(off + 7)
    if (code_set, assoc, dtype) != (CODE_SET_BINARY, ASSOCIATION_LU, DESIGNATOR_NAA):
        raise _unreachable(off + 4)
    lu = _find(task, data[off + 8 : off + 8 + dlen])
    if lu is None:
        raise _unreachable(off + 8)
    if int.from_bytes(data[off + 29 : off + 32], "big") != lu.backend.block_size:
        raise CheckCondition(SenseReason.INCORRECT_COPY_TARGET_DEVICE_TYPE, field=(off + 29, None), in_cdb=False)
    return lu


def _unreachable(byte: int) -> CheckCondition:
    return CheckCondition(SenseReason.UNREACHABLE_COPY_TARGET, field=(byte, None), in_cdb=False)


def _find(task: Task, naa: bytes) -> LogicalUnit | None:
    """The LU with this NAA designator: among the session's LUNs, else, when the receiving LU has
    insecure_tpc, anywhere on this server."""
    for lu in task.luns.values():
        if lu.identity.naa_bytes() == naa:
            return lu
    # CTL (ctl_tpc.c, ctladm(8) "insecure_tpc"): the flag of the LU that RECEIVED the command
    # decides whether it may reach LUs outside its port's mapping; the other LU's flag is not read
    # (issue #11 item 5)
    if not task.lu.identity.insecure_tpc:
        return None
    found = task.lu.host.find_lu(naa)
    if found is not None and found.identity.naa_bytes() == naa:
        return found
    return None


def _segment(task: Task, data: bytes, off: int, cscds: list[LogicalUnit]) -> Segment:
    """A block device to block device segment descriptor (SPC-4 §6.4.6.5)."""
    if data[off] != BLOCK_TO_BLOCK:
        raise CheckCondition(SenseReason.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, field=(off, None), in_cdb=False)
    if u16(data, off + 2) != B2B_SEGMENT - 4:
        raise invalid_param(off + 2)
    src, dst = u16(data, off + 4), u16(data, off + 6)
    for index, at in ((src, off + 4), (dst, off + 6)):
        if index >= len(cscds):
            raise CheckCondition(SenseReason.COPY_TARGET_DEVICE_NOT_REACHABLE, field=(at, None), in_cdb=False)
    seg = Segment(off, cscds[src], cscds[dst], u16(data, off + 10), u64(data, off + 12), u64(data, off + 20))
    if seg.src.backend.block_size != seg.dst.backend.block_size:
        raise CheckCondition(SenseReason.INCORRECT_COPY_TARGET_DEVICE_TYPE, field=(off + 6, None), in_cdb=False)
    if seg.nblocks * seg.src.backend.block_size > MAX_SEGMENT_BYTES:
        raise invalid_param(off + 10)
    for lu, lba, at in ((seg.src, seg.src_lba, off + 12), (seg.dst, seg.dst_lba, off + 20)):
        if lba + seg.nblocks > lu.backend.num_blocks:
            raise CheckCondition(SenseReason.COPY_SEGMENT_FAILED, field=(at, None), in_cdb=False)
    for lu in (seg.src, seg.dst):
        if lu.sanitize_state != SANITIZE_IDLE:  # SBC-4 §4.11: as for a READ or WRITE of that LU
            running = lu.sanitize_state == SANITIZE_RUNNING
            raise CheckCondition(
                SenseReason.SANITIZE_IN_PROGRESS if running else SenseReason.SANITIZE_COMMAND_FAILED
            )
    if seg.nblocks and seg.dst.write_protected:
        raise CheckCondition(SenseReason.WRITE_PROTECTED)
    return seg


def _conflicts(nexus: Nexus, segments: list[Segment]) -> bool:
    """Reservations of the copy targets, as if the reads and writes came on `nexus`."""
    for seg in segments:
        for lu, access in ((seg.src, PrAccess.READ), (seg.dst, PrAccess.EXCLUSIVE)):
            if lu.conflicts(nexus) or lu.pr.conflicts(nexus, access):
                return True
    return False


def _run(task: Task, list_id: int | None, hold: bool, segments: list[Segment]) -> ScsiResult:
    """Copy the segments in order; hold the outcome for RECEIVE COPY RESULTS when asked to."""
    nexus, lu = task.req.nexus, task.lu
    if list_id is not None and not lu.copy_begin(nexus, list_id):
        raise CheckCondition(SenseReason.OPERATION_IN_PROGRESS)
    done, moved = 0, 0
    try:
        for seg in segments:
            moved += _copy(seg)
            done += 1
    finally:
        if list_id is not None:
            record = CopyRecord(done == len(segments), done, moved) if hold else None
            lu.copy_end(nexus, list_id, record)
    return ScsiResult()


def _copy(seg: Segment) -> int:
    """Move one segment's blocks; overlapping ranges on one LU are copied back to front so
    that no block is read after it was overwritten. Returns the bytes moved."""
    src, n = seg.src.backend, seg.nblocks
    if n == 0:
        return 0
    chunk = max(1, COPY_CHUNK_BYTES // src.block_size)
    starts = list(range(0, n, chunk))
    if seg.src is seg.dst and seg.src_lba < seg.dst_lba < seg.src_lba + n:
        starts.reverse()
    try:
        for start in starts:
            count = min(chunk, n - start)
            block = bytes(src.read(seg.src_lba + start, count))
            _write(seg.dst, seg.dst_lba + start, block)
    except StorageError:
        raise CheckCondition(SenseReason.COPY_SEGMENT_FAILED, field=(seg.offset, None), in_cdb=False) from None
    seg.dst.after_write()
    return n * src.block_size


def _write(lu: LogicalUnit, lba: int, data: bytes) -> None:
    if lu.mode.wce:
        lu.backend.write(lba, data)
    else:
        lu.backend.write_fua(lba, data)  # write-through (WCE=0)


# ---- RECEIVE COPY RESULTS (SPC-4 §6.18) -------------------------------------------------------------


def _alloc(task: Task, data: bytes) -> ScsiResult:
    return ScsiResult(data=allocation_truncate(data, u32(task.cdb, 10)))


def copy_status(task: Task) -> ScsiResult:
    """COPY STATUS (§6.18.3) of the EXTENDED COPY with this LIST IDENTIFIER from this nexus;
    INVALID FIELD IN CDB when there is none (never sent, not held, or its nexus was lost)."""
    list_id = task.cdb[2]
    lu, nexus = task.lu, task.req.nexus
    record = lu.copy_record(nexus, list_id)
    if lu.copy_in_progress(nexus, list_id):
        status, segments, units, count = COPY_IN_PROGRESS, 0, UNITS_BYTES, 0
    elif record is None:
        raise invalid_cdb(2)
    else:
        status = COPY_GOOD if record.ok else COPY_FAILED
        segments = record.segments
        units, count = _transfer_count(record.transferred_bytes)
    data = struct.pack(">IBHBI", 8, status, segments, units, count)
    return _alloc(task, data)


def _transfer_count(nbytes: int) -> tuple[int, int]:
    """TRANSFER COUNT in bytes, or in kibibytes and larger units when bytes do not fit 32 bits."""
    units, count = UNITS_BYTES, nbytes
    while count > 0xFFFFFFFF:
        units = UNITS_KIB if units == UNITS_BYTES else units + 1
        count = math.ceil(count / 1024)
    return units, count


def operating_parameters(task: Task) -> ScsiResult:
    """OPERATING PARAMETERS (§6.18.4): the limits above and the implemented descriptor types."""
    granularity = task.lu.backend.block_size.bit_length() - 1  # log2 of the block length
    body = struct.pack(
        ">B3xHHIIIII2xHBBBB3xB",
        0x01,  # SNLID: LIST ID USAGE 11b (no list identifier) is supported
        MAX_TARGET_DESCRIPTORS,
        MAX_SEGMENT_DESCRIPTORS,
        MAX_DESCRIPTOR_LIST_LENGTH,
        MAX_SEGMENT_BYTES,
        MAX_INLINE_DATA,
        HELD_DATA_LIMIT,
        0,  # MAXIMUM STREAM DEVICE TRANSFER SIZE: no stream devices
        MAX_CONCURRENT_COPIES,  # TOTAL CONCURRENT COPIES
        MAX_CONCURRENT_COPIES,  # MAXIMUM CONCURRENT COPIES
        granularity,  # DATA SEGMENT GRANULARITY
        0,  # INLINE DATA GRANULARITY: no inline data
        0,  # HELD DATA GRANULARITY: no held data
        len(IMPLEMENTED_DESCRIPTORS),
    ) + IMPLEMENTED_DESCRIPTORS
    return _alloc(task, struct.pack(">I", len(body)) + body)
