"""Block backends (no SCSI): the `Backend` interface and its errors, the file (pread/pwrite, mmap
for large resident reads and msync), device (pread/pwrite) and memory backends, the Ceph RBD backend (rbd.py), and
`open_backend()`, the explicit registry of kinds."""

from .base import (
    Backend,
    BackendClosed,
    BadLength,
    Buffer,
    FlushFailed,
    MediumError,
    NoSpace,
    OutOfRange,
    ReadOnly,
    Space,
    StorageError,
    WouldBlock,
)
from .blockdev import BlockDeviceBackend
from .file import FileBackend
from .memory import MemoryBackend
from .rbd import ClusterUnavailable, ImageMissing, RbdBackend, RbdCluster
from .registry import KINDS, open_backend

__all__ = [
    "KINDS",
    "Backend",
    "BackendClosed",
    "BadLength",
    "BlockDeviceBackend",
    "ClusterUnavailable",
    "Buffer",
    "FileBackend",
    "FlushFailed",
    "ImageMissing",
    "MediumError",
    "MemoryBackend",
    "NoSpace",
    "OutOfRange",
    "RbdBackend",
    "RbdCluster",
    "ReadOnly",
    "Space",
    "StorageError",
    "WouldBlock",
    "open_backend",
]
