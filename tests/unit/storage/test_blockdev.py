"""BlockDeviceBackend specifics: fresh read buffers, opening rules, the flush latch through the
`sync_fn` hook, and a real block device (a loop device, when the kernel lets us attach one)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pyscsi_target.storage import BlockDeviceBackend, FlushFailed, OutOfRange, StorageError


def _image(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_read_returns_a_fresh_buffer(tmp_path: Path) -> None:
    b = BlockDeviceBackend(_image(tmp_path / "d.img", 8192))
    b.write(0, b"o" * 512)
    view = b.read(0, 1)
    b.write(0, b"n" * 512)
    assert bytes(view) == b"o" * 512  # a snapshot (pread), not a view of the device
    b.close()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        BlockDeviceBackend(tmp_path / "missing")
    with pytest.raises(StorageError, match="neither a block device nor a regular file"):
        BlockDeviceBackend("/dev/null")
    with pytest.raises(StorageError, match="neither"):
        BlockDeviceBackend(tmp_path, read_only=True)
    with pytest.raises(StorageError, match="block size"):
        BlockDeviceBackend(_image(tmp_path / "d.img", 8192), block_size=100)


def test_only_whole_blocks_are_exposed(tmp_path: Path) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(b"t" * 1000)
    b = BlockDeviceBackend(path)
    assert b.num_blocks == 1
    with pytest.raises(OutOfRange):
        b.read(1, 1)
    b.write(0, bytes(512))
    b.flush()
    assert path.read_bytes() == bytes(512) + b"t" * 488
    b.close()


def test_failed_flush_latches_until_cleared(tmp_path: Path) -> None:
    calls: list[int] = []

    def sync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fdatasync(fd)

    b = BlockDeviceBackend(_image(tmp_path / "d.img", 8192), sync_fn=sync)
    b.write(0, b"a" * 512)
    with pytest.raises(FlushFailed):
        b.write_fua(1, b"b" * 512)  # written, but its durability failed
    for call in (
        lambda: b.flush(),
        lambda: b.write(2, b"c" * 512),
        lambda: b.unmap(0, 1),
        lambda: b.write_same(0, 2, bytes(512)),
    ):
        with pytest.raises(FlushFailed):
            call()
    assert len(calls) == 1
    assert bytes(b.read(0, 2)) == b"a" * 512 + b"b" * 512
    b.clear_fault()
    b.flush()
    b.write_fua(2, b"c" * 512)
    assert len(calls) == 3
    b.close()


def test_real_block_device(loop_device: str) -> None:
    b = BlockDeviceBackend(loop_device)
    assert b.num_blocks == (4 << 20) // 512
    b.write(100, b"L" * 4096)
    b.flush()
    assert bytes(b.read(100, 8)) == b"L" * 4096
    assert list(b.allocation(0, b.num_blocks)) == [(0, b.num_blocks, True)]  # devices do not track
    b.unmap(100, 8)  # punched on the device, or written with zeroes
    assert bytes(b.read(100, 8)) == bytes(4096)
    b.close()
    ro = BlockDeviceBackend(loop_device, read_only=True)
    assert not ro.supports_unmap and bytes(ro.read(100, 8)) == bytes(4096)
    ro.close()
