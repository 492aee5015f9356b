"""Linux file-system calls the file and device backends share: fallocate (punch hole) and mincore
(page residency) via ctypes, preadv2 RWF_NOWAIT, and allocation maps from lseek SEEK_DATA /
SEEK_HOLE.

Only the stdlib: `os` has no fallocate with modes, so libc's is called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from collections.abc import Iterator
from typing import Any

from ._common import Run, merge_runs

# linux/falloc.h (fallocate(2)): deallocate a range, keep the file size.
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
#: errnos meaning "this file system / file type cannot do that fallocate mode" (fallocate(2)).
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.ENODEV})


def _load_fallocate() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        func.restype = ctypes.c_int
    return func


_FALLOCATE = _load_fallocate()


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2); raises OSError (EOPNOTSUPP where libc has no fallocate)."""
    if _FALLOCATE is None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not available")
    if _FALLOCATE(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate a byte range; later reads return zeroes (fallocate(2) FALLOC_FL_PUNCH_HOLE)."""
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def can_punch_holes(fd: int, file_size: int, probe_len: int) -> bool:
    """Probe hole punching without touching data: punch `probe_len` bytes past end of file (a no-op
    with KEEP_SIZE on file systems that support it; EOPNOTSUPP where they do not)."""
    try:
        punch_hole(fd, file_size, probe_len)
    except OSError:
        return False
    return True


def is_unsupported(err: OSError) -> bool:
    return err.errno in _UNSUPPORTED


def _load_mincore() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    func = getattr(libc, "mincore", None)
    if func is not None:
        func.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        func.restype = ctypes.c_int
    return func


_MINCORE = _load_mincore()
#: bytes of a page (mincore(2) reports per page; its address must be page aligned)
PAGE_BYTES = mmap.PAGESIZE
#: mincore(2) sets bit 0 of a page's byte when it is resident; the other bits are reserved
_RESIDENT_BIT = bytes(b & 1 for b in range(256))


def can_tell_residency() -> bool:
    return _MINCORE is not None


def resident(address: int, length: int) -> bool:
    """True if every page of the mapped range [address, address + length) is in memory
    (mincore(2); `address` page aligned). Raises OSError where mincore fails."""
    pages = -(-length // PAGE_BYTES)
    vec = (ctypes.c_ubyte * pages)()
    if _MINCORE is None:
        raise OSError(errno.ENOSYS, "mincore is not available")
    if _MINCORE(address, length, vec) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return 0 not in bytes(vec).translate(_RESIDENT_BIT)


#: preadv2(2) flag (Linux >= 4.14): fail with EAGAIN rather than wait for data that is not in the
#: page cache; 0 where Python or the platform lacks it
RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


def pread_cached(fd: int, length: int, offset: int) -> bytearray | None:
    """`length` bytes at `offset` if all of them are in the page cache (one preadv2 RWF_NOWAIT,
    never waits for the device), None if reading would wait. Raises OSError: EOPNOTSUPP when the
    file (system) cannot tell, or a real read error."""
    if not RWF_NOWAIT:
        raise OSError(errno.EOPNOTSUPP, "RWF_NOWAIT is not available")
    buf = bytearray(length)
    try:
        got = os.preadv(fd, (buf,), offset, RWF_NOWAIT)
    except BlockingIOError:
        return None
    return buf if got == length else None  # short: partly cached (or end of file): the slow path


def _byte_segments(fd: int, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
    """(first byte, end byte, is data) segments of [start, end), from SEEK_DATA / SEEK_HOLE."""
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno != errno.ENXIO:  # no SEEK_DATA support: report everything as data
                yield (pos, end, True)
                return
            data = end  # ENXIO: no data after pos
        data = min(data, end)
        if data > pos:
            yield (pos, data, False)
        if data >= end:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        yield (data, hole, True)
        pos = hole


def allocation_runs(fd: int, lba: int, nblocks: int, block_size: int) -> list[Run]:
    """(lba, nblocks, mapped) runs of the block range: a block is mapped if any byte of it is data
    (SBC-4 §5.7 GET LBA STATUS reports per logical block)."""
    runs: list[Run] = []
    cursor = lba
    for first, last, is_data in _byte_segments(fd, lba * block_size, (lba + nblocks) * block_size):
        if is_data:  # a block holding any data byte is mapped: round outwards
            b0, b1 = first // block_size, -(-last // block_size)
        else:  # a block is deallocated only if wholly inside the hole: round inwards
            b0, b1 = -(-first // block_size), last // block_size
        b0 = max(b0, cursor)
        if b1 > b0:
            runs.append((b0, b1 - b0, is_data))
            cursor = b1
    return list(merge_runs(runs))
