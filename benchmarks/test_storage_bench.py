"""Micro-benchmarks of the storage data path (pytest-benchmark): read/write and the event loop's
read_nowait/write_nowait, file and device backends.

Outside `testpaths`, so `pytest tests/` never runs them; run them with
`.venv/bin/pytest benchmarks/test_storage_bench.py`. The extent is pre-filled so reads and writes
measure the steady state (page cache resident, blocks allocated), not first-touch allocation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from itertools import cycle
from pathlib import Path

import pytest

from pyscsi_target.storage import Backend, BlockDeviceBackend, FileBackend

#: Extent size for the benchmarks, in bytes.
EXTENT_BYTES = 64 << 20
#: Logical block size, in bytes (4 KiB: the common initiator I/O size).
BLOCK = 4096
#: Random offsets drawn per benchmark (cycled).
OFFSETS = 4096


@pytest.fixture(scope="module")
def extent_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "extent.img"
    prefill = FileBackend(path, block_size=BLOCK, size_bytes=EXTENT_BYTES, create=True)
    prefill.write_same(0, prefill.num_blocks, bytes(range(256)) * (BLOCK // 256))
    prefill.flush()
    prefill.close()
    return path


@pytest.fixture(params=["file", "device"])
def backend(request: pytest.FixtureRequest, extent_path: Path) -> Iterator[Backend]:
    b: Backend
    if request.param == "file":
        b = FileBackend(extent_path, BLOCK)
    else:
        b = BlockDeviceBackend(extent_path, BLOCK)
    yield b
    b.close()


def _lbas(backend: Backend, nblocks: int) -> Iterator[int]:
    rng = random.Random(1)
    return cycle([rng.randrange(0, backend.num_blocks - nblocks + 1) for _ in range(OFFSETS)])


def _bench(benchmark: Callable[..., object], op: Callable[[int], object], lbas: Iterator[int]) -> None:
    benchmark(lambda: op(next(lbas)))


def test_random_read_4k(benchmark: Callable[..., object], backend: Backend) -> None:
    _bench(benchmark, lambda lba: backend.read(lba, 1), _lbas(backend, 1))


def test_random_write_4k(benchmark: Callable[..., object], backend: Backend) -> None:
    data = b"w" * BLOCK
    _bench(benchmark, lambda lba: backend.write(lba, data), _lbas(backend, 1))


def test_read_1m(benchmark: Callable[..., object], backend: Backend) -> None:
    n = (1 << 20) // BLOCK
    _bench(benchmark, lambda lba: backend.read(lba, n), _lbas(backend, n))


def test_read_1m_to_bytes(benchmark: Callable[..., object], backend: Backend) -> None:
    """Reading and touching every byte (what a socket send does), for a fair file/device comparison."""
    n = (1 << 20) // BLOCK
    _bench(benchmark, lambda lba: bytes(backend.read(lba, n)), _lbas(backend, n))


def test_write_1m(benchmark: Callable[..., object], backend: Backend) -> None:
    n = (1 << 20) // BLOCK
    data = b"W" * (1 << 20)
    _bench(benchmark, lambda lba: backend.write(lba, data), _lbas(backend, n))


def test_random_read_nowait_4k(benchmark: Callable[..., object], backend: Backend) -> None:
    """The event loop's read (preadv2 RWF_NOWAIT from the page cache; the extent is hot here)."""
    _bench(benchmark, lambda lba: backend.read_nowait(lba, 1), _lbas(backend, 1))


def test_read_nowait_1m(benchmark: Callable[..., object], backend: Backend) -> None:
    n = (1 << 20) // BLOCK
    _bench(benchmark, lambda lba: backend.read_nowait(lba, n), _lbas(backend, n))


def test_random_write_nowait_4k(benchmark: Callable[..., object], backend: Backend) -> None:
    """The event loop's write: pwrite timed by the StallGuard."""
    data = b"n" * BLOCK
    _bench(benchmark, lambda lba: backend.write_nowait(lba, data), _lbas(backend, 1))
