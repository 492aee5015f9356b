"""Fixtures that need root: a tiny tmpfs (a file system that really fills up) and a loop device
(a real block device). Tests using them are skipped where the kernel refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Size of the tmpfs used to exhaust space, in bytes (16 pages of 4 KiB).
TINY_FS_BYTES = 64 * 1024


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _need(tool: str) -> None:
    if os.geteuid() != 0 or shutil.which(tool) is None:
        pytest.skip(f"needs root and {tool}")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A mounted tmpfs of TINY_FS_BYTES."""
    _need("mount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", f"size={TINY_FS_BYTES},mode=0700", "tmpfs", str(mnt))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        _run("umount", str(mnt))


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop block device over a sparse 4 MiB file."""
    _need("losetup")
    image = tmp_path / "loop.img"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    done = _run("losetup", "--find", "--show", str(image))
    if done.returncode:
        pytest.skip(f"cannot attach a loop device: {done.stderr.strip()}")
    device = done.stdout.strip()
    try:
        yield device
    finally:
        _run("losetup", "--detach", device)
