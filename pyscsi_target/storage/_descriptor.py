"""`DescriptorBackend`: what the backends built on one POSIX descriptor share (issue #14 item 4).

`FileBackend` (a regular file, plus a mapping for msync and large resident reads) and
`BlockDeviceBackend` (a block device or zvol, or a regular file standing in for one) both keep one
descriptor and do their I/O with pread/pwritev on it. This base holds the part that is the same:
the checks every call starts with, the event loop's `read_nowait()` (preadv2 RWF_NOWAIT) and
`write_nowait()` (StallGuard), `write()` and its pwritev loop, GET LBA STATUS from the hole map,
the fsyncgate latch's `clear_fault()`, and `close()`.

The data path is hot (one `read_nowait()`/`write_nowait()` per 4 KiB command): nothing here adds a
call per I/O over what the two copies did. A subclass that can serve large reads as views of a
mapping sets `_view_min` (bytes; `NO_VIEWS` = never) and implements `_view_read()`, tested with one
comparison in `read_nowait()`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator

from . import _posix
from ._common import ClosedGuard, FaultLatch, Run, StallGuard, blocks_in, byte_view, check_block_size
from .base import Backend, Buffer, MediumError, NoSpace, ReadOnly, Space, WouldBlock

#: `_view_min` of a backend that never serves reads as views of a mapping
NO_VIEWS = sys.maxsize


class DescriptorBackend(Backend):
    """A backend on one descriptor `_fd`, which subclasses open (or adopt) after calling
    `__init__` and close in `close()`. `what` names the backend in messages."""

    _fd: int
    #: reads of at least this many bytes go to `_view_read()` (a subclass with a mapping)
    _view_min: int
    _supports_unmap: bool

    def __init__(self, path: str | os.PathLike[str], block_size: int, read_only: bool, what: str) -> None:
        self.block_size = check_block_size(block_size)
        self.read_only = read_only
        self.path = os.fspath(path)
        self._latch = FaultLatch()
        self._closed = ClosedGuard(f"{what} {self.path}")
        self._nowait = True  # read_nowait() can ask the page cache (until EOPNOTSUPP says no)
        self._stalls = StallGuard()
        self._view_min = NO_VIEWS  # an instance attribute: found first on the hot path

    @property
    def supports_unmap(self) -> bool:
        return self._supports_unmap

    # ---- checks ------------------------------------------------------------------------------

    def _readable(self, lba: int, nblocks: int) -> None:
        self._closed.check()
        self._check(lba, nblocks)

    def _writable(self) -> None:
        self._closed.check()
        if self.read_only:
            raise ReadOnly(f"{self.path} is read-only")
        self._latch.check()

    # ---- data path ---------------------------------------------------------------------------

    def read_nowait(self, lba: int, nblocks: int) -> memoryview:
        """`read()` when every byte is in the page cache (preadv2 RWF_NOWAIT), else WouldBlock: a
        cold random read then waits in a worker thread, not on the event loop."""
        self._readable(lba, nblocks)
        length = nblocks * self.block_size
        if length >= self._view_min:
            return self._view_read(lba * self.block_size, length)
        if not self._nowait:
            return self.read(lba, nblocks)
        try:
            data = _posix.pread_cached(self._fd, length, lba * self.block_size)
        except OSError as err:
            if not _posix.is_unsupported(err):
                raise MediumError(f"{self.path}: read failed: {err.strerror}") from err
            self._nowait = False  # the file system cannot tell: plain reads from now on
            return self.read(lba, nblocks)
        if data is None:
            raise WouldBlock
        return memoryview(data)

    def _view_read(self, start: int, length: int) -> memoryview:
        """A view of `length` bytes from byte `start` without waiting, or WouldBlock (only called
        when `_view_min` says so)."""
        raise NotImplementedError

    def write_nowait(self, lba: int, data: Buffer) -> None:
        """`write()` unless recent writes stalled on the device (StallGuard): then WouldBlock."""
        self._stalls.check()
        self._stalls.timed(self.write, lba, data)

    def write(self, lba: int, data: Buffer) -> None:
        self._writable()
        view = byte_view(data)
        nblocks = blocks_in(view, self.block_size)
        self._check(lba, nblocks)
        self._pwrite(lba * self.block_size, view)

    def _pwrite(self, offset: int, view: memoryview) -> None:
        """pwritev(2) all of `view` at `offset`: ENOSPC/EDQUOT -> NoSpace, other errors -> MediumError."""
        done, total = 0, view.nbytes
        while done < total:
            try:
                done += os.pwritev(self._fd, [view[done:] if done else view], offset + done)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NoSpace(f"{self.path}: no space to write {total} bytes at {offset}") from err
                raise MediumError(f"{self.path}: write failed: {err.strerror}") from err

    # ---- provisioning and faults ---------------------------------------------------------------

    def allocation(self, lba: int, nblocks: int) -> Iterator[Run]:
        """SBC-4 §5.7 GET LBA STATUS: mapped / deallocated runs from the hole map (lseek
        SEEK_DATA/SEEK_HOLE; a block device reports all mapped)."""
        self._readable(lba, nblocks)
        return iter(_posix.allocation_runs(self._fd, lba, nblocks, self.block_size))

    def space(self) -> Space | None:
        """statvfs of the file system holding a regular file (a File extent, or a file standing
        in for a device); None for a real block device (issue #11 item 2)."""
        self._closed.check()
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                return None
            vfs = os.fstatvfs(self._fd)
        except OSError as err:
            raise MediumError(f"{self.path}: statvfs failed: {err.strerror}") from err
        return Space(vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize)

    def clear_fault(self) -> None:
        self._latch.clear()

    def close(self) -> None:
        if self._closed.closed:
            return
        self._closed.closed = True
        os.close(self._fd)
