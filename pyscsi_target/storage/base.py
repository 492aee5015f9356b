"""The block backend interface every extent implements, and the storage error family.

A backend is a flat array of `num_blocks` blocks of `block_size` bytes. Methods are synchronous
and may block (page faults, msync, fdatasync); the server decides which calls run in a worker
thread. Backends know nothing of SCSI: scsi/ maps `StorageError`s to sense data in one place.

Addresses are in blocks (`lba`, `nblocks`); callers (scsi/) check ranges first, but backends check
again and raise `OutOfRange` rather than touching memory outside the extent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview


class StorageError(Exception):
    """Base of every error a backend raises."""


class OutOfRange(StorageError):
    """The request reaches past the end of the extent."""


class ReadOnly(StorageError):
    """A write to a read-only extent."""


class MediumError(StorageError):
    """The medium failed a read or write (EIO and friends)."""


class FlushFailed(MediumError):
    """msync/fdatasync failed; the backend stays failed until `clear_fault()` (fsyncgate)."""


class NoSpace(StorageError):
    """ENOSPC while allocating blocks of a sparse file."""


class BadLength(StorageError):
    """A data buffer that is not a whole number of blocks (or a WRITE SAME block of the wrong size)."""


class BackendClosed(StorageError):
    """An operation on a backend after `close()`."""


class WouldBlock(Exception):
    """`read_nowait()`: the data is not in memory, reading it means waiting for the medium.
    Not a StorageError (it is no failure and has no sense data): the caller retries with
    `read()` where waiting is acceptable (a worker thread)."""


@dataclass(frozen=True, slots=True)
class Space:
    """The file system (or pool) holding an extent's storage, for the soft thresholds of issue
    #11 items 2 and 4: bytes still free for writing (statvfs f_bavail) and its whole size."""

    free_bytes: int
    total_bytes: int


class Backend(ABC):
    """One extent's storage."""

    block_size: int
    read_only: bool
    #: offers `read_async`/`write_async`: the storage completes I/O on its own threads and calls
    #: back (Ceph RBD's librbd aio, issue #15), so an event loop needs no thread per command
    asynchronous: bool = False

    def read_async(self, lba: int, nblocks: int, done: Callable[[memoryview | StorageError], None]) -> None:
        """Start a read; `done` is called once, from any thread, with the data or the error.
        Range and state errors may also be raised at once. Only when `asynchronous`."""
        raise WouldBlock

    def write_async(self, lba: int, data: Buffer, fua: bool, done: Callable[[StorageError | None], None]) -> None:
        """Start a write (made durable before `done` when `fua`); `done` is called once, from any
        thread, with None or the error. `data` stays unchanged until then. Only when `asynchronous`."""
        raise WouldBlock

    @property
    @abstractmethod
    def num_blocks(self) -> int: ...

    @abstractmethod
    def read(self, lba: int, nblocks: int) -> memoryview:
        """Return the data. May be a view into the backing mapping (valid until the next write/resize
        of those blocks): callers send it or copy it, they never keep it."""

    def read_nowait(self, lba: int, nblocks: int) -> memoryview:
        """`read()` if it can be served from memory without waiting for the medium, else raise
        WouldBlock (an event loop's fast path; docs/performance.md). Default: WouldBlock, so
        that a backend that does not know is read in a worker thread and never blocks the event
        loop (issue #14 item 4); backends that can answer without waiting override it."""
        raise WouldBlock

    @abstractmethod
    def write(self, lba: int, data: Buffer) -> None:
        """Write `len(data)` bytes (a whole number of blocks) at `lba`."""

    def write_nowait(self, lba: int, data: Buffer) -> None:
        """`write()` if it is expected not to wait for the medium, else raise WouldBlock before
        writing anything (an event loop's fast path). Default: `write()`."""
        self.write(lba, data)

    @abstractmethod
    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        """Make every completed write in the range durable (nblocks=0: to the end). Raises FlushFailed."""

    def write_fua(self, lba: int, data: Buffer) -> None:
        """Write and make durable before returning (FUA / write-through)."""
        self.write(lba, data)
        self.flush(lba, len(data) // self.block_size)

    def unmap(self, lba: int, nblocks: int) -> None:
        """Deallocate the blocks; later reads return zeroes. Default: write zeroes."""
        self._check(lba, nblocks)
        chunk = max(1, (1 << 20) // self.block_size)
        zero = bytes(chunk * self.block_size)
        while nblocks > 0:
            n = min(chunk, nblocks)
            self.write(lba, memoryview(zero)[: n * self.block_size])
            lba += n
            nblocks -= n

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        """Write the one block `block` to every block of the range."""
        self._check(lba, nblocks)
        chunk = max(1, min(nblocks, (1 << 20) // self.block_size))
        pattern = bytes(block) * chunk
        while nblocks > 0:
            n = min(chunk, nblocks)
            self.write(lba, memoryview(pattern)[: n * self.block_size])
            lba += n
            nblocks -= n

    def allocation(self, lba: int, nblocks: int) -> Iterator[tuple[int, int, bool]]:
        """Yield (lba, nblocks, mapped) runs covering the range. Default: all mapped.

        The range is checked when called (not when first iterated)."""
        self._check(lba, nblocks)
        return iter([(lba, nblocks, True)] if nblocks else [])

    def allocated_bytes(self) -> int:
        """Bytes of the extent held by allocated (mapped) blocks, for the thin-provisioning
        threshold. Default: the mapped runs of `allocation()` over the whole extent (a fully
        provisioned backend reports its whole size); a backend may answer more cheaply."""
        mapped = sum(n for _, n, is_mapped in self.allocation(0, self.num_blocks) if is_mapped)
        return mapped * self.block_size

    def space(self) -> Space | None:
        """The file system holding the storage (free and total bytes), None when the backend has
        none it can report (memory, a real block device: its device node's file system says
        nothing about the device). Blocking (a statvfs); may raise StorageError."""
        return None

    @property
    def supports_unmap(self) -> bool:
        """True if unmap really deallocates (thin provisioning)."""
        return False

    @property
    def unmap_granularity(self) -> int:
        """Bytes, aligned to this size from LBA 0, that `unmap` deallocates as a whole; a smaller
        piece may be zeroed but stay mapped. Default: one block."""
        return self.block_size

    def resize(self, size_bytes: int) -> None:
        raise StorageError("this backend cannot be resized")

    def clear_fault(self) -> None:  # noqa: B027 - a deliberate no-op for backends that never latch
        """Operator action: forget a failed flush so the extent can be used again."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def size_bytes(self) -> int:
        return self.num_blocks * self.block_size

    def _check(self, lba: int, nblocks: int) -> None:
        if lba < 0 or nblocks < 0 or lba + nblocks > self.num_blocks:
            raise OutOfRange(f"blocks {lba}+{nblocks} outside 0..{self.num_blocks}")
