"""Mode parameters: MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11-6.14, §7.5) over the
pages we keep: Read-Write Error Recovery (01h, SBC-4 §6.5.10), Caching (08h, SBC-4 §6.5.5) and
Control (0Ah, SPC-4 §7.5.8). Changeable: WCE, D_SENSE and SWP; nothing can be saved.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

from .cdb import allocation_truncate, u16
from .command import Task
from .lu import LogicalUnit, ModeState
from .sense import CheckCondition, SenseReason, invalid_cdb, invalid_param
from .types import ScsiResult

PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = range(4)
ALL_PAGES = 0x3F
ALL_SUBPAGES = 0xFF
#: device-specific parameter (SBC-4 §6.5.1): WP and DPOFUA (DPO and FUA bits are supported)
DSP_WP = 0x80
DSP_DPOFUA = 0x10
#: MODE SENSE(10) BUSY TIMEOUT PERIOD FFFFh: unlimited (SPC-4 §7.5.8)
BUSY_TIMEOUT_UNLIMITED = 0xFFFF

# bit masks of the changeable fields: (byte offset in the page, mask)
WCE = (2, 0x04)  # Caching page
D_SENSE = (2, 0x04)  # Control page
SWP = (4, 0x08)  # Control page


def _error_recovery(state: ModeState, pc: int) -> bytes:
    page = bytearray(12)
    page[0:2] = b"\x01\x0a"
    if pc != PC_CHANGEABLE:
        page[2] = 0xC0  # AWRE, ARRE: reallocation is the file system's business, reported on
    return bytes(page)


def _set(page: bytearray, field: tuple[int, int], on: bool) -> None:
    if on:
        page[field[0]] |= field[1]


def _caching(state: ModeState, pc: int) -> bytes:
    page = bytearray(20)
    page[0:2] = b"\x08\x12"
    wce = {PC_CURRENT: state.wce, PC_CHANGEABLE: True, PC_DEFAULT: ModeState().wce}[pc]
    _set(page, WCE, wce)
    return bytes(page)


def _control(state: ModeState, pc: int) -> bytes:
    page = bytearray(12)
    page[0:2] = b"\x0a\x0a"
    values = {PC_CURRENT: state, PC_DEFAULT: ModeState()}.get(pc)
    if values is None:  # changeable
        _set(page, D_SENSE, True)
        _set(page, SWP, True)
        return bytes(page)
    _set(page, D_SENSE, values.d_sense)
    _set(page, SWP, values.swp)
    page[3] = 0x10  # QUEUE ALGORITHM MODIFIER 1: unrestricted reordering allowed
    struct.pack_into(">H", page, 8, BUSY_TIMEOUT_UNLIMITED)
    return bytes(page)


PageBuilder = Callable[[ModeState, int], bytes]
MODE_PAGES: dict[int, PageBuilder] = {0x01: _error_recovery, 0x08: _caching, 0x0A: _control}


def _pages(state: ModeState, page_code: int, subpage: int, pc: int) -> bytes:
    if page_code == ALL_PAGES:
        if subpage not in (0x00, ALL_SUBPAGES):
            raise invalid_cdb(3)
        return b"".join(MODE_PAGES[code](state, pc) for code in sorted(MODE_PAGES))
    builder = MODE_PAGES.get(page_code)
    if builder is None:
        raise invalid_cdb(2, 5)
    if subpage != 0x00:
        raise invalid_cdb(3)
    return builder(state, pc)


def _block_descriptor(lu: LogicalUnit, long_lba: bool) -> bytes:
    """Mode parameter block descriptor (SBC-4 §6.5.2): short (8) or long LBA (16) format."""
    blocks, bs = lu.backend.num_blocks, lu.backend.block_size
    if long_lba:
        return struct.pack(">Q4xI", blocks, bs)
    return struct.pack(">IxBH", min(blocks, 0xFFFFFFFF), bs >> 16, bs & 0xFFFF)


def _device_specific(lu: LogicalUnit) -> int:
    return (DSP_WP if lu.write_protected else 0) | DSP_DPOFUA


def _sense_common(task: Task, ten: bool) -> tuple[bytes, bytes]:
    cdb = task.cdb
    pc = cdb[2] >> 6
    if pc == PC_SAVED:
        raise CheckCondition(SenseReason.SAVING_PARAMETERS_NOT_SUPPORTED, field=(2, 7))
    lu = task.lu
    pages = _pages(lu.mode, cdb[2] & 0x3F, cdb[3], pc)
    dbd = cdb[1] & 0x08
    llbaa = ten and bool(cdb[1] & 0x10)
    bd = b"" if dbd else _block_descriptor(lu, llbaa)
    return pages, bd


def mode_sense6(task: Task) -> ScsiResult:
    """MODE SENSE(6) (SPC-4 §6.11)."""
    pages, bd = _sense_common(task, ten=False)
    lu = task.lu
    length = 3 + len(bd) + len(pages)
    header = struct.pack(">BBBB", min(length, 0xFF), 0, _device_specific(lu), len(bd))
    return ScsiResult(data=allocation_truncate(header + bd + pages, task.cdb[4]))


def mode_sense10(task: Task) -> ScsiResult:
    """MODE SENSE(10) (SPC-4 §6.12); LLBAA=1 returns the 16-byte block descriptor."""
    pages, bd = _sense_common(task, ten=True)
    lu = task.lu
    length = 6 + len(bd) + len(pages)
    longlba = 0x01 if len(bd) == 16 else 0
    header = struct.pack(">HBBBxH", length, 0, _device_specific(lu), longlba, len(bd))
    return ScsiResult(data=allocation_truncate(header + bd + pages, u16(task.cdb, 7)))


# ---- MODE SELECT -----------------------------------------------------------------------------


def mode_select6(task: Task) -> ScsiResult:
    """MODE SELECT(6) (SPC-4 §6.9)."""
    return _select(task, task.cdb[4], header_len=4)


def mode_select10(task: Task) -> ScsiResult:
    """MODE SELECT(10) (SPC-4 §6.10)."""
    return _select(task, u16(task.cdb, 7), header_len=8)


def _select(task: Task, length: int, header_len: int) -> ScsiResult:
    if task.cdb[1] & 0x01:
        raise invalid_cdb(1, 0)  # SP: saving parameters is not supported
    data = bytes(task.data_out(length))
    if not data:
        return ScsiResult()
    if len(data) < header_len:
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    lu = task.lu
    bd_len = data[3] if header_len == 4 else u16(data, 6)
    offset = header_len + bd_len
    if offset > len(data):
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    if bd_len:
        _check_block_descriptor(lu, data, header_len, bd_len)
    new = dataclasses.replace(lu.mode)
    while offset < len(data):
        offset = _select_page(new, lu.mode, data, offset)
    _apply(task, new)
    return ScsiResult()


def _check_block_descriptor(lu: LogicalUnit, data: bytes, start: int, bd_len: int) -> None:
    """One block descriptor, short or (MODE SELECT(10) with LONGLBA) long; only the current
    LOGICAL BLOCK LENGTH, or 0 to keep it, may be selected (SBC-4 §6.5.2)."""
    long_lba = start == 8 and bool(data[4] & 0x01)
    if bd_len != (16 if long_lba else 8):
        raise invalid_param(3 if start == 4 else 6)
    field = start + 12 if long_lba else start + 5  # LOGICAL BLOCK LENGTH: 4 or 3 bytes
    block_len = int.from_bytes(data[field : start + bd_len], "big")
    if block_len not in (0, lu.backend.block_size):
        raise invalid_param(field)


def _select_page(new: ModeState, current: ModeState, data: bytes, offset: int) -> int:
    """Check one page against the current values and changeable mask; record its changes."""
    if offset + 2 > len(data):
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    code = data[offset] & 0x3F
    if data[offset] & 0x40:
        raise invalid_param(offset, 6)  # SPF: no subpages
    builder = MODE_PAGES.get(code)
    if builder is None:
        raise invalid_param(offset, 5)
    cur = builder(current, PC_CURRENT)
    mask = builder(current, PC_CHANGEABLE)
    end = offset + 2 + data[offset + 1]
    if data[offset + 1] != cur[1]:
        raise invalid_param(offset + 1)
    if end > len(data):
        raise CheckCondition(SenseReason.PARAMETER_LIST_LENGTH_ERROR)
    page = data[offset:end]
    for i in range(2, len(cur)):
        if (page[i] ^ cur[i]) & ~mask[i] & 0xFF:
            raise invalid_param(offset + i)
    if code == 0x08:
        new.wce = bool(page[WCE[0]] & WCE[1])
    elif code == 0x0A:
        new.d_sense = bool(page[D_SENSE[0]] & D_SENSE[1])
        new.swp = bool(page[SWP[0]] & SWP[1])
    return end


def _apply(task: Task, new: ModeState) -> None:
    """Install the new values; other nexuses get MODE PARAMETERS CHANGED (SPC-4 §7.5.1)."""
    lu = task.lu
    if new == lu.mode:
        return
    lu.mode = new
    lu.add_unit_attention(SenseReason.MODE_PARAMETERS_CHANGED, except_nexus=task.req.nexus)
