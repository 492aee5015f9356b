"""`FileBackend`: an extent stored in a regular (usually sparse) file, served through `mmap`.

Data path: `read()` returns a memoryview slice of the shared mapping (zero copy: the transport
sends it straight from the page cache); `write()` copies once, into the mapping; WRITE SAME fills
with numpy. Durability: `flush()` is msync(MS_SYNC) of the page-aligned range, plus fdatasync when
the file's block map changed (hole punched, size changed); a failed flush latches (fsyncgate,
target-rules.md §4.1): every later flush, write, unmap and resize raises FlushFailed until
`clear_fault()`. UNMAP punches holes (fallocate(2) PUNCH_HOLE|KEEP_SIZE) and GET LBA STATUS reads
the hole map with lseek(2) SEEK_DATA/SEEK_HOLE.

Risks of a shared file mapping, and what this module does about them:
- a store into a hole when the file system is full raises SIGBUS (kills the process), not ENOSPC:
  every write first reserves the range with fallocate(2) unless lseek says it is already data, so
  it becomes `NoSpace`. File systems without fallocate, and copy-on-write file systems (btrfs, ZFS)
  where overwriting allocated blocks needs new space, keep that risk.
- a read error of the medium, or another process truncating the file, also arrives as SIGBUS.
- write-back errors are reported by msync -> `FlushFailed`.

Threads: read/write/flush/unmap/write_same/allocation may run concurrently in worker threads;
`resize()` and `close()` must not run concurrently with other calls (the server quiesces the LU).
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable, Iterator

import numpy as np

from . import _posix
from ._common import (
    ClosedGuard,
    FaultLatch,
    Run,
    blocks_in,
    byte_view,
    check_block_size,
    check_pattern,
)
from .base import Backend, Buffer, MediumError, ReadOnly, StorageError

#: Default logical block size, in bytes (SBC-4 §4.5).
DEFAULT_BLOCK_SIZE = 512
#: Permissions of a file created by the backend (owner only: extents hold initiators' data).
CREATE_MODE = 0o600

#: Makes a byte range of a shared mapping durable; raises OSError on failure.
FlushFn = Callable[[mmap.mmap, int, int], None]


def msync_range(mapping: mmap.mmap, offset: int, length: int) -> None:
    """msync(MS_SYNC): on Linux this writes back the range's dirty pages and waits for them,
    including the block-map updates needed to read them back (vfs_fsync_range, datasync)."""
    mapping.flush(offset, length)


def _open_fd(path: str, read_only: bool, create: bool) -> int:
    flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
    if create and not read_only:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, CREATE_MODE)
    except FileNotFoundError as err:
        raise StorageError(f"{path}: no such file (create=True creates it)") from err
    except OSError as err:
        raise StorageError(f"{path}: cannot open: {err.strerror}") from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{path}: not a regular file (use the device backend for devices)")
    return fd


class FileBackend(Backend):
    """A regular file as an extent. Only whole blocks are exposed (a tail shorter than one block
    is ignored). `size_bytes` (None or 0: keep the file's size) grows a smaller file, sparsely;
    a larger existing file is never shrunk on open. `create` makes a missing file (ignored when
    `read_only`). `flush_fn` is the fault-injection hook: the call that syncs a mapped range."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_size: int = DEFAULT_BLOCK_SIZE,
        read_only: bool = False,
        size_bytes: int | None = None,
        create: bool = False,
        flush_fn: FlushFn = msync_range,
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.read_only = read_only
        self.path = os.fspath(path)
        self._flush_fn = flush_fn
        self._latch = FaultLatch()
        self._closed = ClosedGuard(f"file backend {self.path}")
        self._mm: mmap.mmap | None = None
        self._view = memoryview(bytearray())
        self._retired: list[mmap.mmap] = []  # mappings replaced while read() views were alive
        self._meta_dirty = False
        if size_bytes is not None and (not isinstance(size_bytes, int) or size_bytes < 0):
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        self._fd = _open_fd(self.path, read_only, create)
        try:
            self._grow_to(size_bytes)
            size = os.fstat(self._fd).st_size
            self._supports_unmap = not read_only and _posix.can_punch_holes(self._fd, size, block_size)
            self._map()
        except BaseException:
            os.close(self._fd)
            raise

    # ---- geometry and mapping ----------------------------------------------------------------

    @property
    def num_blocks(self) -> int:
        return len(self._view) // self.block_size

    @property
    def supports_unmap(self) -> bool:
        return self._supports_unmap

    def _grow_to(self, size_bytes: int | None) -> None:
        if not size_bytes:
            return
        if os.fstat(self._fd).st_size >= size_bytes:
            return
        if self.read_only:
            raise StorageError(f"{self.path}: smaller than {size_bytes} bytes and opened read-only")
        self._truncate(size_bytes)

    def _truncate(self, size_bytes: int) -> None:
        try:
            os.ftruncate(self._fd, size_bytes)  # growing makes a hole: sparse, nothing allocated
        except OSError as err:
            raise StorageError(f"{self.path}: cannot set size to {size_bytes}: {err.strerror}") from err
        self._meta_dirty = True

    def _map(self) -> None:
        length = os.fstat(self._fd).st_size // self.block_size * self.block_size
        if length == 0:  # mmap cannot map zero bytes: an empty extent needs no mapping
            self._mm, self._view = None, memoryview(bytearray())
            return
        prot = mmap.PROT_READ if self.read_only else mmap.PROT_READ | mmap.PROT_WRITE
        try:
            self._mm = mmap.mmap(self._fd, length, flags=mmap.MAP_SHARED, prot=prot)
        except OSError as err:
            raise StorageError(f"{self.path}: cannot map {length} bytes: {err.strerror}") from err
        self._view = memoryview(self._mm)

    def _retire_mapping(self) -> bool:
        """Drop the current mapping and close every old one that no read() view still uses.
        True if none is left open."""
        self._view.release()
        if self._mm is not None:
            self._retired.append(self._mm)
        self._mm, self._view = None, memoryview(bytearray())
        still_used = []
        for old in self._retired:
            try:
                old.close()
            except BufferError:  # a read() view is still alive: unmapped when it goes
                still_used.append(old)
        self._retired = still_used
        return not still_used

    # ---- checks ------------------------------------------------------------------------------

    def _readable(self, lba: int, nblocks: int) -> None:
        self._closed.check()
        self._check(lba, nblocks)

    def _writable(self) -> None:
        self._closed.check()
        if self.read_only:
            raise ReadOnly(f"{self.path} is read-only")
        self._latch.check()

    def _reserve(self, offset: int, length: int) -> None:
        try:
            _posix.reserve(self._fd, offset, length)
        except OSError as err:
            raise MediumError(f"{self.path}: cannot allocate: {err.strerror}") from err

    # ---- data path ---------------------------------------------------------------------------

    def read(self, lba: int, nblocks: int) -> memoryview:
        self._readable(lba, nblocks)
        bs = self.block_size
        return self._view[lba * bs : (lba + nblocks) * bs]

    def write(self, lba: int, data: Buffer) -> None:
        self._writable()
        view = byte_view(data)
        nblocks = blocks_in(view, self.block_size)
        self._check(lba, nblocks)
        start = lba * self.block_size
        self._reserve(start, view.nbytes)
        self._view[start : start + view.nbytes] = view

    def write_fua(self, lba: int, data: Buffer) -> None:
        """SBC-4 §5.40 FUA: the data is durable before this returns."""
        self.write(lba, data)
        nblocks = byte_view(data).nbytes // self.block_size
        if nblocks:
            self.flush(lba, nblocks)

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self._writable()
        pattern = check_pattern(block, self.block_size)
        self._check(lba, nblocks)
        if nblocks == 0:
            return
        self._fill(lba * self.block_size, nblocks, np.frombuffer(pattern, dtype=np.uint8))

    def _fill(self, start: int, nblocks: int, pattern: np.ndarray | int) -> None:
        assert self._mm is not None  # nblocks > 0 implies a mapping
        self._reserve(start, nblocks * self.block_size)
        rows = np.frombuffer(self._mm, dtype=np.uint8, count=nblocks * self.block_size, offset=start)
        rows.reshape(nblocks, self.block_size)[:] = pattern  # numpy broadcasts the block
        del rows  # release the export at once so resize/close can unmap

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        """SBC-4 §5.26 SYNCHRONIZE CACHE: the range (nblocks=0: to the end) is durable on return."""
        self._readable(lba, nblocks)
        count = nblocks or self.num_blocks - lba
        self._latch.run(lambda: self._sync(lba, count))

    def _sync(self, lba: int, nblocks: int) -> None:
        if self._mm is not None and nblocks:
            start = lba * self.block_size // mmap.PAGESIZE * mmap.PAGESIZE  # msync wants page alignment
            self._flush_fn(self._mm, start, (lba + nblocks) * self.block_size - start)
        if self._meta_dirty:  # holes punched or size changed: make the block map durable too
            os.fdatasync(self._fd)
            self._meta_dirty = False

    def clear_fault(self) -> None:
        self._latch.clear()

    # ---- provisioning ------------------------------------------------------------------------

    def unmap(self, lba: int, nblocks: int) -> None:
        """SBC-4 §5.31 UNMAP: deallocate; reads return zeroes (LBPRZ). Where the file system cannot
        punch holes, the blocks are zero-filled and `supports_unmap` becomes False."""
        self._writable()
        self._check(lba, nblocks)
        if nblocks == 0:
            return
        start, length = lba * self.block_size, nblocks * self.block_size
        if self._supports_unmap:
            try:
                _posix.punch_hole(self._fd, start, length)
            except OSError as err:
                if not _posix.is_unsupported(err):
                    raise MediumError(f"{self.path}: cannot punch a hole: {err.strerror}") from err
                self._supports_unmap = False
            else:
                self._meta_dirty = True
                return
        self._fill(start, nblocks, 0)

    def allocation(self, lba: int, nblocks: int) -> Iterator[Run]:
        """SBC-4 §5.7 GET LBA STATUS: mapped / deallocated runs from the file's hole map."""
        self._readable(lba, nblocks)
        return iter(_posix.allocation_runs(self._fd, lba, nblocks, self.block_size))

    def resize(self, size_bytes: int) -> None:
        """Set the file size (growing is sparse) and map it anew. Earlier read() views stay valid
        while growing (the old mapping lives until they are released). Shrinking below the mapped
        length while such views exist raises StorageError (reading them would fault): retry."""
        self._writable()
        if not isinstance(size_bytes, int) or size_bytes < 0:
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        shrinking = size_bytes < len(self._view)
        all_closed = self._retire_mapping()
        try:
            if shrinking and not all_closed:
                raise StorageError(f"{self.path}: cannot shrink while read() views are outstanding")
            self._truncate(size_bytes)
        finally:
            self._map()

    def close(self) -> None:
        if self._closed.closed:
            return
        self._closed.closed = True
        self._retire_mapping()
        self._retired.clear()  # any left are unmapped when their last view goes
        os.close(self._fd)
