"""`FileBackend`: an extent stored in a regular (usually sparse) file.

Data path (measured, docs/performance.md "Storage"): `read()` is one pread(2) into a fresh
buffer and `write()` one pwritev(2) from the caller's buffer, through the page cache. The file is
also mapped (MAP_SHARED through `_mapping.Mapping`, which needs no second descriptor) to make
ranges durable with msync(MS_SYNC) through the `flush_fn` hook,
and the event loop's large reads (`read_nowait()` of MAPPED_READ_MIN or more, every page resident
by mincore) are views of it, sent without a copy; the entries those reads add to the page tables
are dropped every MAPPED_TRIM_BYTES. Nothing else is loaded or stored through the mapping, so:
- a random 4 KiB read of a cold region or a hole costs one page, not a whole read-around window
  (a fault on a shared mapping reads `read_ahead_kb` around it: 8 MiB on the development VM, which
  made a never-written region of a sparse LUN serve about 100 reads/s); the kernel's readahead
  for pread still follows sequential streams;
- the target's resident set does not grow with the extent (every touched mapped page counted in
  RSS; the extent's page cache now stays outside it, as with tgtd);
- a full file system answers ENOSPC (`NoSpace`), an I/O error EIO (`MediumError`): a store into a
  mapped hole or a failing page would have been a SIGBUS that kills the process.

Durability: `flush()` is msync(MS_SYNC) of the page-aligned range (on Linux, vfs_fsync_range of
the file: it writes back pages dirtied by pwrite too), plus fdatasync when the file's block map
changed (hole punched, size changed); a failed flush latches (fsyncgate, target-rules.md §4.1):
every later flush, write, unmap and resize raises FlushFailed until `clear_fault()`. UNMAP
punches holes (fallocate(2) PUNCH_HOLE|KEEP_SIZE) and GET LBA STATUS reads the hole map with
lseek(2) SEEK_DATA/SEEK_HOLE. WRITE SAME builds one chunk of the pattern with numpy and pwrites it.

Threads: read/write/flush/unmap/write_same/allocation may run concurrently in worker threads;
`resize()` and `close()` must not run concurrently with other calls (the server quiesces the LU).
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable

import numpy as np

from . import _posix
from ._common import FILL_CHUNK_BYTES, byte_view, check_pattern
from ._descriptor import NO_VIEWS, DescriptorBackend
from ._mapping import Mapping
from .base import Buffer, MediumError, OutOfRange, StorageError, WouldBlock

#: Default logical block size, in bytes (SBC-4 §4.5).
DEFAULT_BLOCK_SIZE = 512
#: Permissions of a file created by the backend (owner only: extents hold initiators' data).
CREATE_MODE = 0o600

#: bytes; a `read_nowait()` this long or longer whose pages are all resident (mincore) is a view
#: of the shared mapping: the socket send copies straight from the page cache, which saves a
#: 1 MiB read a 100 us pread copy (docs/performance.md); shorter ones are cheaper to pread
MAPPED_READ_MIN = 64 * 1024
#: bytes served through the mapping after which its page-table entries are dropped
#: (madvise MADV_DONTNEED: the page cache keeps the data), bounding the target's resident set
MAPPED_TRIM_BYTES = 64 * 1024 * 1024

#: Makes a byte range of a shared mapping durable; raises OSError on failure.
FlushFn = Callable[[Mapping, int, int], None]


def msync_range(mapping: Mapping, offset: int, length: int) -> None:
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


def _adopt_fd(path: str, fd: int) -> int:
    """Take over an open descriptor; it must be a regular file (closed if not)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StorageError(f"{path}: not a regular file (use the device backend for devices)")
    except BaseException:
        os.close(fd)
        raise
    return fd


class FileBackend(DescriptorBackend):
    """A regular file as an extent. Only whole blocks are exposed (a tail shorter than one block
    is ignored). `size_bytes` (None or 0: keep the file's size) grows a smaller file, sparsely;
    a larger existing file is never shrunk on open. `create` makes a missing file (ignored when
    `read_only`). `flush_fn` is the fault-injection hook: the call that syncs a mapped range.
    `fd`: an already-open descriptor of the file (the backend owns it from now on, also when
    this raises); `path` then only names it in messages. The backend holds one descriptor."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_size: int = DEFAULT_BLOCK_SIZE,
        read_only: bool = False,
        size_bytes: int | None = None,
        create: bool = False,
        flush_fn: FlushFn = msync_range,
        fd: int | None = None,
    ) -> None:
        super().__init__(path, block_size, read_only, "file backend")
        self._flush_fn = flush_fn
        self._mm: Mapping | None = None  # for msync and resident large reads
        self._view = memoryview(b"")
        self._address = 0  # where the mapping starts, for mincore
        self._retired: list[Mapping] = []  # mappings replaced while read_nowait() views were alive
        self._mapped_reads = 0  # bytes served through the mapping since it was last trimmed
        self._length = 0  # bytes exposed: whole blocks of the file
        self._meta_dirty = False
        if size_bytes is not None and (not isinstance(size_bytes, int) or size_bytes < 0):
            if fd is not None:
                os.close(fd)
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        self._fd = _open_fd(self.path, read_only, create) if fd is None else _adopt_fd(self.path, fd)
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
        return self._length // self.block_size

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
        self._length = length
        if length == 0:  # mmap cannot map zero bytes: an empty extent needs no mapping
            self._mm = None
            return
        try:
            self._mm = Mapping(self._fd, length, writable=not self.read_only)
        except OSError as err:
            raise StorageError(f"{self.path}: cannot map {length} bytes: {err.strerror}") from err
        self._view = self._mm.view
        self._address = self._mm.address
        self._view_min = MAPPED_READ_MIN  # read_nowait()'s large resident reads: _view_read()

    def _unmap_file(self) -> bool:
        """Drop the mapping; closes every old one no read_nowait() view still uses. True if none
        is left open (views of a closed mapping would fault, so the others wait for their views)."""
        if self._mm is not None:
            self._retired.append(self._mm)
        self._mm, self._view, self._length = None, memoryview(b""), 0
        self._view_min = NO_VIEWS
        # a mapping a view still being sent uses is unmapped when that view goes
        self._retired = [old for old in self._retired if not old.close()]
        return not self._retired

    # ---- data path ---------------------------------------------------------------------------

    def read(self, lba: int, nblocks: int) -> memoryview:
        """A private copy of the blocks (one pread(2); bytes are not zero-filled first)."""
        self._readable(lba, nblocks)
        bs = self.block_size
        length = nblocks * bs
        try:
            data = os.pread(self._fd, length, lba * bs)
        except OSError as err:
            raise MediumError(f"{self.path}: read failed: {err.strerror}") from err
        if len(data) != length:  # only at end of file: another process truncated it
            raise OutOfRange(f"{self.path}: end of file at block {lba + len(data) // bs}")
        return memoryview(data)

    def _view_read(self, start: int, length: int) -> memoryview:
        """A view of the mapping when every page of the range is resident, else WouldBlock (a
        fault would wait for the disk on the event loop; the worker thread's read() preads)."""
        page = start - start % _posix.PAGE_BYTES
        try:
            if not _posix.resident(self._address + page, start + length - page):
                raise WouldBlock
        except OSError:  # no mincore here: a copy it is
            return self.read(start // self.block_size, length // self.block_size)
        self._mapped_reads += length
        if self._mapped_reads >= MAPPED_TRIM_BYTES:
            self._mapped_reads = 0
            assert self._mm is not None
            self._mm.madvise(mmap.MADV_DONTNEED)  # page tables only: the page cache keeps the data
        return self._view[start:start + length]

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
        """Write `pattern` (one block, or a byte value) to `nblocks` blocks from byte `start`:
        numpy broadcasts it into one chunk of at most FILL_CHUNK_BYTES, pwritten repeatedly."""
        bs = self.block_size
        per_chunk = max(1, min(nblocks, FILL_CHUNK_BYTES // bs))
        chunk = np.empty((per_chunk, bs), dtype=np.uint8)
        chunk[:] = pattern  # numpy broadcasts the block
        view = memoryview(chunk.reshape(-1).data)
        while nblocks > 0:
            n = min(per_chunk, nblocks)
            self._pwrite(start, view[: n * bs])
            start += n * bs
            nblocks -= n

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

    def resize(self, size_bytes: int) -> None:
        """Set the file size (growing is sparse) and map it anew. read() returns copies; views
        from read_nowait() stay valid while growing (the old mapping lives until they are
        released), and shrinking while such a view exists raises StorageError (reading it
        would fault): retry."""
        self._writable()
        if not isinstance(size_bytes, int) or size_bytes < 0:
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        shrinking = size_bytes < self._length
        all_closed = self._unmap_file()
        try:
            if shrinking and not all_closed:
                raise StorageError(f"{self.path}: cannot shrink while reads are being sent")
            self._truncate(size_bytes)
        finally:
            self._map()

    def close(self) -> None:
        if self._closed.closed:
            return
        self._closed.closed = True
        self._unmap_file()
        self._retired.clear()  # any left are unmapped when their last view goes
        os.close(self._fd)
