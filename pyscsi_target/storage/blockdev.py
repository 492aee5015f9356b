"""`BlockDeviceBackend`: an extent on a block device or zvol (or a regular file standing in for one),
through positional I/O on a file descriptor.

No mmap: devices may be larger than the address space is comfortable with, and a failing device
then answers EIO instead of SIGBUS. `read()` returns a fresh buffer (pread), `write()` is one
pwritev, `flush()` is fdatasync (latched on failure: fsyncgate, target-rules.md §4.1).

UNMAP: on a regular file, punch a hole; on a block device, fallocate(2) PUNCH_HOLE|KEEP_SIZE, which
Linux (>= 4.9, blkdev_fallocate) turns into a write-zeroes request that may deallocate, so reads
return zeroes afterwards as LBPRZ promises. BLKDISCARD is not used: since Linux 4.12 the kernel no
longer promises that discarded blocks read back as zeroes. Where neither works, zeroes are written.
GET LBA STATUS uses lseek SEEK_DATA/SEEK_HOLE, which reports a block device as wholly mapped.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from . import _posix
from ._common import check_pattern
from ._descriptor import DescriptorBackend
from .base import Buffer, MediumError, OutOfRange, StorageError

#: Default logical block size, in bytes (SBC-4 §4.5).
DEFAULT_BLOCK_SIZE = 512
#: sysfs attribute that is non-zero when a block device accepts discard requests (in bytes).
_SYSFS_DISCARD = "/sys/dev/block/{major}:{minor}/{queue}/discard_max_bytes"

#: Makes every completed write on the descriptor durable; raises OSError on failure.
SyncFn = Callable[[int], None]


def _device_discards(st: os.stat_result) -> bool:
    """True if the block device (or the disk a partition belongs to) advertises discard support."""
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    for queue in ("queue", "../queue"):  # partitions keep the queue in the parent disk's directory
        try:
            with open(_SYSFS_DISCARD.format(major=major, minor=minor, queue=queue)) as f:
                return int(f.read().strip() or 0) > 0
        except (OSError, ValueError):
            continue
    return False


class BlockDeviceBackend(DescriptorBackend):
    """A block device, zvol or regular file, addressed with preadv/pwritev. Only whole blocks are
    exposed. `sync_fn` is the fault-injection hook for flush (default os.fdatasync). `fd`: an
    already-open descriptor of the device or file (the backend owns it from now on, also when this
    raises); `path` then only names it in messages."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_size: int = DEFAULT_BLOCK_SIZE,
        read_only: bool = False,
        sync_fn: SyncFn = os.fdatasync,
        fd: int | None = None,
    ) -> None:
        super().__init__(path, block_size, read_only, "device backend")
        self._sync_fn = sync_fn
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        if fd is not None:
            self._fd = fd
        else:
            try:
                self._fd = os.open(self.path, flags)
            except OSError as err:
                raise StorageError(f"{self.path}: cannot open: {err.strerror}") from err
        try:
            self._setup()
        except BaseException:
            os.close(self._fd)
            raise

    def _setup(self) -> None:
        st = os.fstat(self._fd)
        self._is_device = stat.S_ISBLK(st.st_mode)
        if not (self._is_device or stat.S_ISREG(st.st_mode)):
            raise StorageError(f"{self.path}: neither a block device nor a regular file")
        size = os.lseek(self._fd, 0, os.SEEK_END)  # a device's size, without BLKGETSIZE64
        self._num_blocks = size // self.block_size
        if self.read_only:
            self._supports_unmap = False
        elif self._is_device:
            self._supports_unmap = _device_discards(st)
        else:
            self._supports_unmap = _posix.can_punch_holes(self._fd, size, self.block_size)

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def read(self, lba: int, nblocks: int) -> memoryview:
        self._readable(lba, nblocks)
        length, offset = nblocks * self.block_size, lba * self.block_size
        parts: list[bytes] = []
        done = 0
        while done < length:  # pread(2) returns a fresh, not zero-filled buffer; short only at the end
            try:
                got = os.pread(self._fd, length - done, offset + done)
            except OSError as err:
                raise MediumError(f"{self.path}: read failed: {err.strerror}") from err
            if not got:  # the device or file shrank under us
                raise OutOfRange(f"{self.path}: end of medium at byte {offset + done}")
            parts.append(got)
            done += len(got)
        return memoryview(parts[0] if len(parts) == 1 else b"".join(parts))

    def write_fua(self, lba: int, data: Buffer) -> None:
        """SBC-4 §5.40 FUA: write, then fdatasync before returning."""
        self.write(lba, data)
        self._latch.run(lambda: self._sync_fn(self._fd))

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        """SBC-4 §5.26 SYNCHRONIZE CACHE: fdatasync (the whole device; a range cannot be synced)."""
        self._readable(lba, nblocks)
        self._latch.run(lambda: self._sync_fn(self._fd))

    def unmap(self, lba: int, nblocks: int) -> None:
        """SBC-4 §5.31 UNMAP: deallocate where possible; later reads return zeroes either way."""
        self._writable()
        self._check(lba, nblocks)
        if nblocks == 0:
            return
        if self._supports_unmap:
            try:
                _posix.punch_hole(self._fd, lba * self.block_size, nblocks * self.block_size)
                return
            except OSError as err:
                if not (_posix.is_unsupported(err) or err.errno == errno.EINVAL):
                    raise MediumError(f"{self.path}: cannot deallocate: {err.strerror}") from err
                self._supports_unmap = False
        super().unmap(lba, nblocks)  # write zeroes

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self._writable()
        check_pattern(block, self.block_size)
        super().write_same(lba, nblocks, block)  # pwritev of a pattern repeated up to 1 MiB
