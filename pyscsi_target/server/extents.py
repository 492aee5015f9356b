"""Opening extents: model `Extent` -> storage backend + SCSI logical unit.

The openers of the path-based kinds (File: `open_file`; Disk/ZVOL: `open_device`; server/kinds.py
picks one by the extent's kind), how an extent's settings (filesize strings, rpm choices,
`pblocksize`, the kind's `thin`) turn into an `LuIdentity`, and where extents are opened confined to
the server's roots (issue #10 items 1-2): every open resolves the path, refuses what lies outside
the root or is not a regular file / block device (`model.extents.StoragePolicy`), opens the
resolved path without following a last symlink and without blocking (a FIFO) or taking a terminal,
then checks the DESCRIPTOR: same inode as the checked name, and the kernel's own path of it
(/proc/self/fd) still under the root. So a symlink swapped in after the check cannot make the
target serve a file outside the root. The backend is built on that descriptor.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from ..model import Extent
from ..model.extents import (
    StoragePolicy,
    forbidden,
    kind_problem,
    parse_filesize,
    realpath,
    storage_identity,
    within,
)
from ..model.kinds import kind_for
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit, LuIdentity
from ..storage import Backend, MemoryBackend, open_backend

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


def _thin(ext: Extent) -> bool:
    kind = kind_for(ext.type)
    return kind is not None and kind.thin


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
        thin=_thin(ext),
        insecure_tpc=ext.insecure_tpc,
        xen=ext.xen,
        avail_threshold=ext.avail_threshold,
    )


@dataclass
class LiveExtent:
    """An open extent: what the model says, its backend and its logical unit. `problem` says why
    it is not served (its LU answers NOT READY, issue #10 item 2), None when it is; `identity` is
    the storage_identity() of the open file or device; `created` the paths the open created (a
    refused apply removes them, issue #10 item 10; `undo` the same for storage that is not a path)."""

    extent: Extent
    backend: Backend
    lu: LogicalUnit
    identity: tuple[object, ...] | None = None
    problem: str | None = None
    created: list[str] = field(default_factory=list)
    #: what else undoes the open when a refused apply closes it (an RBD image it created)
    undo: list[Callable[[], None]] = field(default_factory=list)

    def same_storage(self, other: Extent) -> bool:
        """True if `other` can keep using this backend (only identity/size details changed)."""
        e = self.extent
        return (e.path, e.type, e.blocksize, e.ro) == (other.path, other.type, other.blocksize, other.ro)


class ExtentRefused(Exception):
    """The extent's path may not be served (outside its root, wrong kind of file, swapped)."""


def not_ready(ext: Extent, problem: str, host: LuHost) -> LiveExtent:
    """An extent that cannot be served: its LUN exists and answers NOT READY with `problem`."""
    lu = LogicalUnit(MemoryBackend(0, ext.blocksize, read_only=True), identity_of(ext), host=host)
    lu.unavailable = problem
    return LiveExtent(ext, lu.backend, lu, problem=problem)


def remove_created(paths: list[str]) -> None:
    """Undo create_backing_file(): the file, then the folders it made, deepest first."""
    for path in reversed(paths):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass  # not ours any more (a folder something else now uses): leave it


def create_backing_file(path: str, size: int) -> list[str]:
    """Spec Part B.2.5: missing parent folders and a missing file are created (sparse, `size`
    bytes); an existing file is left as it is. Returns what it created (folders top down, then
    the file); on failure removes it again and raises (issue #10 item 10)."""
    created: list[str] = []
    missing = []
    parent = os.path.dirname(path) or "."
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        for folder in reversed(missing):
            os.mkdir(folder)
            created.append(folder)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         BACKING_FILE_MODE)
        except FileExistsError:
            return created
        created.append(path)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
    except BaseException:
        remove_created(created)
        raise
    return created


@dataclass(frozen=True)
class Confinement:
    """Where a path-based kind's storage may be and what it may be: `roots` (resolved), `name`
    (theirs in messages), `devices` (block devices, and regular files with
    --allow-file-devices; else regular files only: `model.extents.kind_problem`)."""

    roots: tuple[str, ...]
    name: str
    devices: bool

    @classmethod
    def files(cls, policy: StoragePolicy) -> Confinement:
        """File extents: regular files under an extent root."""
        return cls(tuple(realpath(r) for r in policy.extent_roots), "an extent root", False)

    @classmethod
    def device_root(cls, policy: StoragePolicy) -> Confinement:
        """Disk/ZVOL extents: block devices under the device root."""
        return cls((realpath(policy.device_root),), f"the device root {policy.device_root}", True)

    def holds(self, real: str) -> bool:
        return any(within(real, r) for r in self.roots) and not forbidden(real)


def resolve_confined(ext: Extent, where: Confinement) -> str:
    """The extent's path with every symlink resolved, or ExtentRefused if that is outside its root."""
    real = realpath(ext.path)
    if not where.holds(real):
        raise ExtentRefused(f"{ext.path} resolves to {real}, outside {where.name}")
    return real


def _kernel_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def open_confined(ext: Extent, policy: StoragePolicy, where: Confinement) -> tuple[int, os.stat_result]:
    """Open the extent's file or device for serving; ExtentRefused (or OSError) if it may not be.

    The checks that decide are made on the opened descriptor (issue #10 item 2)."""
    disk = where.devices
    real = resolve_confined(ext, where)
    named = os.stat(real)
    problem = kind_problem(named.st_mode, disk, policy.allow_file_devices, ext.path)
    if problem:
        raise ExtentRefused(problem)
    flags = (os.O_RDONLY if ext.ro else os.O_RDWR) | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
    fd = os.open(real, flags)
    try:
        st = os.fstat(fd)
        problem = kind_problem(st.st_mode, disk, policy.allow_file_devices, ext.path)
        if problem:
            raise ExtentRefused(problem)
        if storage_identity(st) != storage_identity(named) or stat.S_IFMT(st.st_mode) != stat.S_IFMT(named.st_mode):
            raise ExtentRefused(f"{ext.path} changed while it was being opened")
        opened = _kernel_path(fd)
        if opened is None:  # no /proc: the name must still lead to what was opened
            opened = os.path.realpath(ext.path)
            if storage_identity(os.stat(opened)) != storage_identity(st):
                raise ExtentRefused(f"{ext.path} changed while it was being opened")
        if not where.holds(opened):
            raise ExtentRefused(f"{ext.path} opened {opened}, outside its root")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_file(ext: Extent, policy: StoragePolicy, host: LuHost) -> LiveExtent:
    """The File kind's opener (blocking): create the file (sparse) and missing folders when a
    size is given, open it confined to the extent roots, as an LU served by `host`. Raises
    ExtentRefused, OSError or StorageError, leaving nothing created."""
    where = Confinement.files(policy)
    created: list[str] = []
    try:
        size = parse_filesize(ext.filesize)
        if size:
            created = create_backing_file(resolve_confined(ext, where), size)
        fd, st = open_confined(ext, policy, where)
        backend = open_backend("file", ext.path, block_size=ext.blocksize, read_only=ext.ro,
                               size_bytes=size or None, create=False, fd=fd)
    except BaseException:
        remove_created(created)
        raise
    return LiveExtent(ext, backend, LogicalUnit(backend, identity_of(ext), host=host), storage_identity(st),
                      created=created)


def open_device(ext: Extent, policy: StoragePolicy, host: LuHost) -> LiveExtent:
    """The Disk/ZVOL kind's opener (blocking): open the device confined to the device root, as an
    LU served by `host`. Raises ExtentRefused, OSError or StorageError."""
    fd, st = open_confined(ext, policy, Confinement.device_root(policy))
    backend = open_backend("device", ext.path, block_size=ext.blocksize, read_only=ext.ro,
                           size_bytes=None, create=False, fd=fd)
    return LiveExtent(ext, backend, LogicalUnit(backend, identity_of(ext), host=host), storage_identity(st))
