"""Linux file-system calls the file and device backends share: fallocate (punch hole, reserve) via
ctypes, and allocation maps from lseek SEEK_DATA / SEEK_HOLE.

Only the stdlib: `os` has no fallocate with modes, so libc's is called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from typing import Any

from ._common import Run, merge_runs
from .base import NoSpace

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


def reserve(fd: int, offset: int, length: int) -> None:
    """Make sure the byte range has disk blocks before it is written through a mapping.

    A store into a hole of a shared file mapping allocates at page-fault time; if the file system
    is full the kernel answers with SIGBUS, which kills a Python process. Allocating first with
    fallocate(mode 0) turns that into ENOSPC -> NoSpace. Ranges already backed by data cost one
    lseek(SEEK_HOLE). File systems without fallocate keep the SIGBUS risk (documented in file.py).
    """
    if length <= 0:
        return
    try:
        if os.lseek(fd, offset, os.SEEK_HOLE) >= offset + length:
            return
    except OSError:
        pass
    try:
        fallocate(fd, 0, offset, length)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(f"no space to allocate {length} bytes at offset {offset}") from err
        if not is_unsupported(err):
            raise


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
