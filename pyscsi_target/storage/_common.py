"""Helpers the concrete backends share: argument checks, buffer normalisation, the fsyncgate latch.

Nothing here is part of the public storage API; `base.py` is the interface.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterable, Iterator

from .base import BackendClosed, BadLength, Buffer, FlushFailed, StorageError, WouldBlock

#: Smallest logical block size a backend accepts, in bytes (SBC-4 §4.5: 512 is the classic sector).
MIN_BLOCK_SIZE = 512
#: Largest logical block size a backend accepts, in bytes (bounds one WRITE SAME pattern buffer).
MAX_BLOCK_SIZE = 1 << 20
#: Chunk used for zero fills and pattern fills done with write(), in bytes.
FILL_CHUNK_BYTES = 1 << 20

#: seconds; a write into the page cache that took longer either waited for the device (dirty-page
#: throttling, block allocation) or was preempted by the scheduler (a busy machine); ~20x a 1 MiB
#: pwrite on the development VM (docs/performance.md). StallGuard tells the two apart.
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


def voluntary_switches() -> int:
    """Voluntary context switches of the calling thread so far (getrusage RUSAGE_THREAD): a thread
    that slept in the kernel (dirty-page throttling, a page under writeback, a lock) counts one; a
    thread the scheduler preempted counts an involuntary one instead."""
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


#: RUSAGE_THREAD is Linux's; elsewhere the process's figure (any switch then counts as a wait)
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


class StallGuard:
    """`write_nowait()` for backends that write through the page cache, which has no non-blocking
    write (ext4 answers RWF_NOWAIT buffered writes with EOPNOTSUPP): write inline, but once the
    device makes writes wait refuse with WouldBlock for WRITE_BACKOFF_S, so that while the device
    is the bottleneck writes wait in worker threads, not on an event loop.

    A write slower than WRITE_STALL_S is only a suspicion: on a busy machine the scheduler
    preempts the loop in the middle of a 4 KiB pwrite every second or so, and backing off for
    that sent a second of writes through the worker threads at about twice the CPU per command
    (issue #17: that was most of why a 4 KiB write cost more than a read). The next write then
    confirms it: it too must be slow, and the thread must have slept in it (a voluntary context
    switch, getrusage) rather than been preempted. A device that holds writes back does so to
    every write for a while; a preemption hits one. The check costs nothing on fast writes.
    Racy by design between threads: a stale reading only moves one write to the other side."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 switches: Callable[[], int] = voluntary_switches) -> None:
        self._clock = clock
        self._switches = switches
        self._until = 0.0
        self._suspect = False

    def check(self) -> None:
        """WouldBlock while backing off."""
        if self._until and self._clock() < self._until:
            raise WouldBlock

    def timed(self, write: Callable[..., None], *args: object) -> None:
        """Run `write(*args)`; a slow one makes the next write a test, which starts the back-off
        when it too is slow and slept."""
        if self._suspect:
            self._confirm(write, args)
            return
        start = self._clock()
        write(*args)
        if self._clock() - start > WRITE_STALL_S:
            self._suspect = True

    def _confirm(self, write: Callable[..., None], args: tuple[object, ...]) -> None:
        self._suspect = False
        switches = self._switches()
        start = self._clock()
        write(*args)
        end = self._clock()
        if end - start > WRITE_STALL_S and self._switches() != switches:
            self._until = end + WRITE_BACKOFF_S
