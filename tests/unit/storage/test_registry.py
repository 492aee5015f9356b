"""`open_backend`: the explicit table of kinds and the arguments each kind refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyscsi_target.storage import (
    KINDS,
    BlockDeviceBackend,
    FileBackend,
    MemoryBackend,
    StorageError,
    open_backend,
)


def test_kinds_are_explicit() -> None:
    assert sorted(KINDS) == ["device", "file", "memory"]


def test_file_kind_creates_sparse_file(tmp_path: Path) -> None:
    b = open_backend(
        "file", str(tmp_path / "f.img"), block_size=4096, read_only=False, size_bytes=1 << 20, create=True
    )
    assert isinstance(b, FileBackend) and b.num_blocks == 256 and b.block_size == 4096
    b.close()


def test_device_kind(tmp_path: Path) -> None:
    path = tmp_path / "d.img"
    path.write_bytes(bytes(8192))
    for size in (None, 0):  # "0" is FreeNAS's "auto": the device's size
        b = open_backend("device", str(path), block_size=512, read_only=True, size_bytes=size, create=False)
        assert isinstance(b, BlockDeviceBackend) and b.num_blocks == 16 and b.read_only
        b.close()
    with pytest.raises(StorageError, match="cannot be created"):
        open_backend("device", str(path), block_size=512, read_only=False, size_bytes=None, create=True)
    with pytest.raises(StorageError, match="size is the device's"):
        open_backend("device", str(path), block_size=512, read_only=False, size_bytes=4096, create=False)


def test_memory_kind() -> None:
    b = open_backend("memory", "ignored", block_size=512, read_only=False, size_bytes=5000, create=False)
    assert isinstance(b, MemoryBackend) and b.num_blocks == 9  # whole blocks only
    b.close()
    with pytest.raises(StorageError, match="needs size_bytes"):
        open_backend("memory", "", block_size=512, read_only=False, size_bytes=None, create=False)
    with pytest.raises(StorageError, match="non-negative"):
        open_backend("memory", "", block_size=512, read_only=False, size_bytes=-1, create=False)
    for bad in (0, 3, -512):
        with pytest.raises(StorageError, match="block size"):
            open_backend("memory", "", block_size=bad, read_only=False, size_bytes=4096, create=False)


def test_unknown_kind() -> None:
    with pytest.raises(StorageError, match="unknown backend kind 'zvol'; known: device, file, memory"):
        open_backend("zvol", "/x", block_size=512, read_only=False, size_bytes=None, create=False)
