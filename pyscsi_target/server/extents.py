"""Opening extents: model `Extent` -> storage backend + SCSI logical unit.

The only place that knows how an API extent (File / Disk / ZVOL, filesize strings, rpm choices,
`pblocksize`) turns into a backend and an `LuIdentity`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..model import Extent
from ..model.config import EXTENT_FILE
from ..model.extents import parse_filesize
from ..scsi.lu import LogicalUnit, LuIdentity
from ..storage import Backend, open_backend

#: physical block size we report when pblocksize reporting is enabled for file extents, bytes
#: (FreeNAS/ctld reported the ZFS recordsize; 4 KiB matches modern disks and page size)
REPORTED_PHYSICAL_BLOCK = 4096
#: permissions of backing files the target creates (owner only: they hold the initiators' data)
BACKING_FILE_MODE = 0o600


def rpm_value(rpm: str) -> int:
    """VPD 0xB1 MEDIUM ROTATION RATE (SBC-4 §6.6.2): 0 not reported, 1 non-rotating, else rpm."""
    if rpm == "SSD":
        return 1
    if rpm.isdigit():
        return int(rpm)
    return 0


def identity_of(ext: Extent) -> LuIdentity:
    exponent = 0
    if not ext.pblocksize and ext.blocksize < REPORTED_PHYSICAL_BLOCK:
        exponent = (REPORTED_PHYSICAL_BLOCK // ext.blocksize).bit_length() - 1
    return LuIdentity(
        serial=ext.serial,
        naa=ext.naa,
        rpm=rpm_value(ext.rpm),
        physical_block_exponent=exponent,
        read_only=ext.ro,
        thin=ext.type == EXTENT_FILE,
        insecure_tpc=ext.insecure_tpc,
        xen=ext.xen,
        avail_threshold=ext.avail_threshold,
    )


@dataclass
class LiveExtent:
    """An open extent: what the model says, its backend and its logical unit."""

    extent: Extent
    backend: Backend
    lu: LogicalUnit

    def same_storage(self, other: Extent) -> bool:
        """True if `other` can keep using this backend (only identity/size details changed)."""
        e = self.extent
        return (e.path, e.type, e.blocksize, e.ro) == (other.path, other.type, other.blocksize, other.ro)


def create_backing_file(path: str, size: int) -> None:
    """Spec Part B.2.5: missing parent folders and a missing file are created (sparse, `size`
    bytes); an existing file is left as it is."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BACKING_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def open_extent(ext: Extent) -> LiveExtent:
    """Blocking: open (and for File extents create, sparse) the extent's backing store."""
    if ext.type == EXTENT_FILE:
        size = parse_filesize(ext.filesize)
        if size:
            create_backing_file(ext.path, size)
        backend = open_backend(
            "file", ext.path, block_size=ext.blocksize, read_only=ext.ro,
            size_bytes=size or None, create=not ext.ro,
        )
    else:
        backend = open_backend(
            "device", ext.path, block_size=ext.blocksize, read_only=ext.ro, size_bytes=None, create=False
        )
    return LiveExtent(ext, backend, LogicalUnit(backend, identity_of(ext)))
