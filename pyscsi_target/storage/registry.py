"""The explicit table of backend kinds and `open_backend()`, the one way the server opens extents.

Kinds: "file" (FileBackend: a regular file, mmap), "device" (BlockDeviceBackend: block device,
zvol, or a regular file through pread/pwrite), "memory" (MemoryBackend: RAM, `path` ignored).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ._common import check_block_size
from .base import Backend, StorageError
from .blockdev import BlockDeviceBackend
from .file import FileBackend
from .memory import MemoryBackend

Opener = Callable[[str, int, bool, "int | None", bool, "int | None"], Backend]


def _open_file(path: str, block_size: int, read_only: bool, size_bytes: int | None, create: bool,
               fd: int | None) -> Backend:
    return FileBackend(path, block_size, read_only, size_bytes=size_bytes, create=create, fd=fd)


def _open_device(
    path: str, block_size: int, read_only: bool, size_bytes: int | None, create: bool, fd: int | None
) -> Backend:
    if create or size_bytes:
        if fd is not None:
            os.close(fd)
        if create:
            raise StorageError(f"{path}: a device extent cannot be created, it must exist")
        # None or 0 ("auto", as FreeNAS writes it): the size is the device's
        raise StorageError(f"{path}: a device extent's size is the device's; do not give one")
    return BlockDeviceBackend(path, block_size, read_only, fd=fd)


def _open_memory(
    path: str, block_size: int, read_only: bool, size_bytes: int | None, create: bool, fd: int | None
) -> Backend:
    if fd is not None:
        os.close(fd)  # RAM needs no file
    if size_bytes is None:
        raise StorageError("a memory extent needs size_bytes")
    if not isinstance(size_bytes, int) or size_bytes < 0:
        raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
    return MemoryBackend(size_bytes // block_size, block_size, read_only)


#: kind -> opener; the only place a kind name is decided.
KINDS: dict[str, Opener] = {
    "file": _open_file,
    "device": _open_device,
    "memory": _open_memory,
}


def open_backend(
    kind: str, path: str, *, block_size: int, read_only: bool, size_bytes: int | None, create: bool,
    fd: int | None = None,
) -> Backend:
    """Open an extent's storage. Raises StorageError for an unknown kind or bad arguments.

    `fd`: build the backend on this already-open descriptor instead of opening `path` (the server
    opens extents itself, confined to its roots); the backend owns it, also when this raises."""
    opener = KINDS.get(kind)
    try:
        if opener is None:
            raise StorageError(f"unknown backend kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        check_block_size(block_size)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return opener(path, block_size, read_only, size_bytes, create, fd)
