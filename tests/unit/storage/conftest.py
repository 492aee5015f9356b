"""Fixtures for the storage tests: a factory that opens any backend kind on a fresh extent (an
RBD image on the test session's Ceph cluster for "rbd": tests/rbd/fixtures.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyscsi_target.storage import Backend, BlockDeviceBackend, FileBackend, MemoryBackend, RbdCluster
from tests.rbd.fixtures import POOL, image_name

from .privileged import loop_device, tiny_fs

__all__ = ["loop_device", "tiny_fs"]  # root-only fixtures, shared by the storage tests

BACKEND_KINDS = ("memory", "file", "device", "rbd")
#: object size of the RBD images the contract suite creates (order 12): the allocation unit
RBD_TEST_ORDER = 12
Make = Callable[..., Backend]


def open_kind(kind: str, path: Path, num_blocks: int, block_size: int, read_only: bool) -> Backend:
    """Open a `kind` backend of `num_blocks` zeroed blocks; files are created sparse at `path`."""
    if kind == "memory":
        return MemoryBackend(num_blocks, block_size, read_only)
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(num_blocks * block_size)
    if kind == "file":
        return FileBackend(path, block_size, read_only)
    return BlockDeviceBackend(path, block_size, read_only)


def allocation_unit(kind: str, directory: Path, block_size: int) -> int:
    """Bytes a backend allocates at once: a block in memory, a file-system block in files."""
    if kind == "memory":
        return block_size
    if kind == "rbd":
        return max(block_size, 1 << RBD_TEST_ORDER)
    return max(block_size, os.statvfs(directory).f_frsize)


@pytest.fixture(params=BACKEND_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Make]:
    """make(num_blocks=64, block_size=512, read_only=False) -> a new backend; all closed at the end."""
    names = itertools.count()
    opened: list[Backend] = []
    images: list[str] = []
    ceph: RbdCluster | None = request.getfixturevalue("rbd_cluster") if kind == "rbd" else None

    def _make(num_blocks: int = 64, block_size: int = 512, read_only: bool = False) -> Backend:
        if ceph is not None:  # a fresh thin image with 4 KiB objects, opened by name
            images.append(image_name("contract"))
            ceph.create_image(POOL, images[-1], num_blocks * block_size, order=RBD_TEST_ORDER)
            backend: Backend = ceph.open(POOL, images[-1], block_size, read_only)
        else:
            backend = open_kind(kind, tmp_path / f"extent{next(names)}.img", num_blocks, block_size, read_only)
        opened.append(backend)
        return backend

    yield _make
    for backend in opened:
        backend.close()
    for name in images:
        assert ceph is not None
        ceph.remove_image(POOL, name)
