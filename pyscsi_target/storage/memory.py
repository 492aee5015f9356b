"""`MemoryBackend`: an extent held in process memory (a numpy byte array), thin-provisioned.

It keeps one allocation flag per block so GET LBA STATUS and UNMAP can be tested without a file
system: a new backend is wholly deallocated (reads zeroes), writes map blocks, unmap zeroes them
and deallocates them again. Nothing is durable, so flush only checks its arguments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._common import ClosedGuard, Run, blocks_in, byte_view, check_block_size, check_pattern
from .base import Backend, Buffer, ReadOnly, StorageError

#: Default logical block size, in bytes (SBC-4 §4.5, the classic 512-byte sector).
DEFAULT_BLOCK_SIZE = 512


class MemoryBackend(Backend):
    """`num_blocks` blocks of `block_size` bytes in RAM; contents are lost on close."""

    def __init__(
        self, num_blocks: int, block_size: int = DEFAULT_BLOCK_SIZE, read_only: bool = False
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.read_only = read_only
        if not isinstance(num_blocks, int) or num_blocks < 0:
            raise StorageError(f"number of blocks {num_blocks!r} must be a non-negative integer")
        self._data = np.zeros(num_blocks * block_size, dtype=np.uint8)
        self._mapped = np.zeros(num_blocks, dtype=np.bool_)
        self._closed = ClosedGuard("memory backend")

    @property
    def num_blocks(self) -> int:
        return len(self._mapped)

    @property
    def supports_unmap(self) -> bool:
        return True

    def _span(self, lba: int, nblocks: int) -> slice:
        self._closed.check()
        self._check(lba, nblocks)
        return slice(lba * self.block_size, (lba + nblocks) * self.block_size)

    def _writable(self) -> None:
        self._closed.check()
        if self.read_only:
            raise ReadOnly("memory backend is read-only")

    def read(self, lba: int, nblocks: int) -> memoryview:
        return self._data[self._span(lba, nblocks)].data

    def read_nowait(self, lba: int, nblocks: int) -> memoryview:
        """RAM never waits: `read()`."""
        return self._data[self._span(lba, nblocks)].data

    def write(self, lba: int, data: Buffer) -> None:
        self._writable()
        view = byte_view(data)
        nblocks = blocks_in(view, self.block_size)
        self._data[self._span(lba, nblocks)] = np.frombuffer(view, dtype=np.uint8)
        self._mapped[lba : lba + nblocks] = True

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        self._closed.check()
        self._check(lba, nblocks)

    def unmap(self, lba: int, nblocks: int) -> None:
        self._writable()
        self._data[self._span(lba, nblocks)] = 0
        self._mapped[lba : lba + nblocks] = False

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self._writable()
        pattern = np.frombuffer(check_pattern(block, self.block_size), dtype=np.uint8)
        target = self._data[self._span(lba, nblocks)].reshape(nblocks, self.block_size)
        target[:] = pattern  # numpy broadcasts the one block over every row
        self._mapped[lba : lba + nblocks] = True

    def allocation(self, lba: int, nblocks: int) -> Iterator[Run]:
        self._span(lba, nblocks)
        flags = self._mapped[lba : lba + nblocks]
        if nblocks == 0:
            return iter([])
        edges = np.flatnonzero(flags[1:] != flags[:-1]) + 1  # first block of each new run
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [nblocks]))
        return iter(
            [(lba + int(s), int(e - s), bool(flags[s])) for s, e in zip(starts, ends, strict=True)]
        )

    def resize(self, size_bytes: int) -> None:
        """Grow (new blocks deallocated) or shrink to `size_bytes // block_size` blocks. Earlier
        read() views stay valid: they keep the old array alive."""
        self._writable()
        if not isinstance(size_bytes, int) or size_bytes < 0:
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        count = size_bytes // self.block_size
        keep = min(count, self.num_blocks)
        data = np.zeros(count * self.block_size, dtype=np.uint8)
        data[: keep * self.block_size] = self._data[: keep * self.block_size]
        mapped = np.zeros(count, dtype=np.bool_)
        mapped[:keep] = self._mapped[:keep]
        self._data, self._mapped = data, mapped

    def close(self) -> None:
        self._closed.closed = True
