"""Helpers the concrete backends share: argument checks, buffer normalisation, the fsyncgate latch.

Nothing here is part of the public storage API; `base.py` is the interface.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from .base import BackendClosed, BadLength, Buffer, FlushFailed, StorageError, WouldBlock

#: Smallest logical block size a backend accepts, in bytes (SBC-4 §4.5: 512 is the classic sector).
MIN_BLOCK_SIZE = 512
#: Largest logical block size a backend accepts, in bytes (bounds one WRITE SAME pattern buffer).
MAX_BLOCK_SIZE = 1 << 20
#: Chunk used for zero fills and pattern fills done with write(), in bytes.
FILL_CHUNK_BYTES = 1 << 20

#: seconds; a write into the page cache that took longer waited for the device (dirty-page
#: throttling, block allocation): ~20x a 1 MiB pwrite on the development VM (docs/performance.md)
WRITE_STALL_S = 0.005
#: seconds during which `write_nowait()` sends writes to worker threads after such a stall,
#: before writing inline is tried again
WRITE_BACKOFF_S = 1.0

Run = tuple[int, int, bool]


def check_block_size(block_size: int) -> int:
    """A block size must be a power of two in [MIN_BLOCK_SIZE, MAX_BLOCK_SIZE]."""
    if (
        not isinstance(block_size, int)
        or block_size < MIN_BLOCK_SIZE
        or block_size > MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise StorageError(
            f"block size {block_size!r} is not a power of two in {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE}"
        )
    return block_size


def byte_view(data: Buffer) -> memoryview:
    """A flat unsigned-byte view of any contiguous buffer (no copy)."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise BadLength("data buffer is not contiguous")
        view = view.cast("B")
    return view


def blocks_in(data: memoryview, block_size: int) -> int:
    """How many whole blocks `data` holds; BadLength if it is not a whole number."""
    nbytes = data.nbytes
    if nbytes % block_size:
        raise BadLength(f"{nbytes} bytes is not a whole number of {block_size}-byte blocks")
    return nbytes // block_size


def check_pattern(block: Buffer, block_size: int) -> memoryview:
    """The WRITE SAME pattern must be exactly one block (SBC-4 §5.50: one logical block of data)."""
    view = byte_view(block)
    if view.nbytes != block_size:
        raise BadLength(f"WRITE SAME pattern is {view.nbytes} bytes, the block size is {block_size}")
    return view


def merge_runs(runs: Iterable[Run]) -> Iterator[Run]:
    """Join adjacent runs with the same state and drop empty ones."""
    pending: Run | None = None
    for lba, count, mapped in runs:
        if count <= 0:
            continue
        if pending is not None and pending[2] == mapped and pending[0] + pending[1] == lba:
            pending = (pending[0], pending[1] + count, mapped)
            continue
        if pending is not None:
            yield pending
        pending = (lba, count, mapped)
    if pending is not None:
        yield pending


class FaultLatch:
    """The fsyncgate rule (target-rules.md §4.1): once a flush failed, the data the failed flush
    covered may be lost and a retried flush may falsely succeed, so every later flush and write
    raises FlushFailed until an operator calls `clear()`. Never retry and report success."""

    def __init__(self) -> None:
        self._cause: BaseException | None = None

    @property
    def tripped(self) -> bool:
        return self._cause is not None

    def check(self) -> None:
        """Raise FlushFailed if a flush failed earlier."""
        if self._cause is not None:
            raise FlushFailed(f"an earlier flush failed ({self._cause}); clear_fault() to resume")

    def run(self, sync: Callable[[], None]) -> None:
        """Call `sync`; an OSError trips the latch and becomes FlushFailed."""
        self.check()
        try:
            sync()
        except OSError as err:
            self._cause = err
            raise FlushFailed(f"flush failed: {err}") from err

    def clear(self) -> None:
        self._cause = None


class ClosedGuard:
    """Remembers whether a backend was closed; `check()` raises BackendClosed afterwards."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.closed = False

    def check(self) -> None:
        if self.closed:
            raise BackendClosed(f"{self._what} is closed")


class StallGuard:
    """`write_nowait()` for backends that write through the page cache, which has no non-blocking
    write (ext4 answers RWF_NOWAIT buffered writes with EOPNOTSUPP): write inline, but after a
    write that took longer than WRITE_STALL_S refuse with WouldBlock for WRITE_BACKOFF_S, so
    that while the device is the bottleneck writes wait in worker threads, not on an event loop.
    Racy by design between threads: a stale reading only moves one write to the other side."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def check(self) -> None:
        """WouldBlock while backing off."""
        if self._until and self._clock() < self._until:
            raise WouldBlock

    def timed(self, write: Callable[[], None]) -> None:
        """Run `write`, and start backing off when it stalled."""
        start = self._clock()
        write()
        end = self._clock()
        if end - start > WRITE_STALL_S:
            self._until = end + WRITE_BACKOFF_S
