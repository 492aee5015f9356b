"""Extent rules: backing paths, devices, sizes and the identities the LUN reports (NAA, serial).

Stdlib only. The rules here normalise an `Extent` in place (filesize to bytes, File path to its
normal form, Disk/ZVOL path computed under the device root, NAA and serial generated once) and
return the API errors (spec Part A §2.2 and §3.1, Part B §B.2.5-B.2.7): `check_identity` for every
extent, `check_file` and `check_device` for the two kinds, which model/kinds.py's table of kinds
picks between (`kinds.check_extent`). The backing file itself is created by the server when it
applies the configuration; nothing here writes to disk.

Confinement (issue #10 items 1-3): `StoragePolicy` says where extents may live. A path is judged by
what it resolves to with every symlink followed: a File extent must be a regular file under an
extent root, a Disk/ZVOL extent a block device under the device root (a regular file there only
with `--allow-file-devices`), never anything under /proc or /sys; and no two extents may share one
file or device (`storage_identity`: st_dev+st_ino, st_rdev for devices; kinds.shared_with). These checks are by name,
for the API's answer; the server repeats them on the descriptor it opens (server/extents.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .config import EXTENT_DISK, EXTENT_FILE, EXTENT_ZVOL, Config, Extent
from .text import text_problem, unsafe_char

Errors = dict[str, list[str]]

#: FreeNAS's NAA: "0x" + NAA type 6 + iXsystems OUI 589cfc + zeros, then 19 random hex digits,
#: 34 characters in all (spec Part A §2.2; SPC-4 designator NAA IEEE Registered Extended).
NAA_PREFIX = "0x6589cfc000000"
NAA_RANDOM_DIGITS = 19
#: Generated serials: 14 hex digits, the length of FreeNAS's MAC + 2-digit id (spec Part A §2.2).
SERIAL_DIGITS = 14
#: Largest size a file can have on Linux: the maximum of off_t (bytes).
MAX_FILESIZE = 2**63 - 1
#: Longest file name in a path, in bytes (Linux NAME_MAX).
NAME_MAX_BYTES = 255
#: filesize "0" means "use the size of the existing file" (spec Part A §2.2).
FILESIZE_AUTO = "0"
#: 1024-based units accepted after a size (FreeNAS 11.2+, spec Part A §2.2).
SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}

F_NAME = "iscsi_target_extent_name"
F_PATH = "iscsi_target_extent_path"
F_DISK = "iscsi_target_extent_disk"
F_FILESIZE = "iscsi_target_extent_filesize"
F_SERIAL = "iscsi_target_extent_serial"

MSG_QUOTES = "Double quotes are not allowed."
MSG_CONTROL = "Control characters are not allowed."
MSG_REQUIRED = "This field is required."
MSG_FILESIZE = "This value can be a size in bytes, or can be postfixed with KB, MB, GB, TB"
MSG_NOT_DIR = "You need to specify a filepath, not a directory."
MSG_IN_ROOT = "You need to specify a file inside your volume/dataset."
MSG_OUTSIDE = "Your path to the extent must reside inside a volume/dataset mount point."
MSG_MUST_EXIST = "The file must exist if the extent size is set to auto (0)"
MSG_MULTIPLE = "File size must be a multiple of block size"
MSG_NOT_BLOCK = '"{disk}" is not a block device.'
MSG_FILE_DEVICES = ('"{disk}" is a regular file, not a block device (regular files are accepted only '
                    "when the server runs with --allow-file-devices).")
MSG_ESCAPES = '"{disk}" resolves to {real}, which is outside the device root {root}.'
MSG_SHARED = 'This file is already used by extent "{other}".'
MSG_SHRINK = ("The extent's file holds {current} bytes: shrinking it would destroy the data past the new "
              "size. Give at least {current} bytes (or 0 to keep the file's size).")

#: resolved paths that are never storage, whatever the roots say: kernel interfaces, where a
#: "file" is a process's memory, descriptors or environment (issue #10 item 1)
FORBIDDEN_TREES = ("/proc", "/sys")


@dataclass(frozen=True)
class StoragePolicy:
    """Where extents may live (the server's --extent-root, --device-root, --allow-file-devices)
    and how the Ceph cluster of RBD extents is reached (--ceph-conf, --ceph-id)."""

    extent_roots: tuple[str, ...]
    device_root: str = "/dev"
    #: accept regular files as Disk/ZVOL extents (tests and stand-ins; spec Part B §B.2.6 as
    #: issue #10 item 1 restricts it)
    allow_file_devices: bool = False
    #: RBD extents (issue #15): the Ceph configuration file (None: librados's default search,
    #: $CEPH_CONF, /etc/ceph/ceph.conf, ...) and the client name without "client." (None: admin)
    ceph_conf: str | None = None
    ceph_id: str | None = None


def within(path: str, root: str) -> bool:
    """True if `path` lies strictly below `root` (both absolute and normalised)."""
    return path != root and path.startswith(root if root.endswith("/") else root + "/")


_resolving = threading.local()


@contextlib.contextmanager
def resolving() -> Iterator[None]:
    """Within the block, on this thread, `realpath` remembers the folders it resolved: opening or
    indexing N extents of one folder costs N lstat(2) calls, not N walks of every component
    (issue #12: start-up with 10,000 extents). Only for batches: a folder swapped for a symlink
    during the block is not seen (the server's decision is made on the descriptor it opens)."""
    outer = getattr(_resolving, "folders", None)
    if outer is None:
        _resolving.folders = {}
    try:
        yield
    finally:
        if outer is None:
            _resolving.folders = None


def realpath(path: str) -> str:
    """os.path.realpath(path), with what a `resolving()` block resolved remembered."""
    folders: dict[str, str] | None = getattr(_resolving, "folders", None)
    if folders is None:
        return os.path.realpath(path)
    known = folders.get(path)
    if known is not None:
        return known
    head, tail = os.path.split(path)
    if not head or tail in ("", ".", "..") or os.path.normpath(path) != path:
        real = os.path.realpath(path)
    else:
        real_head = folders.get(head)
        if real_head is None:
            real_head = folders[head] = os.path.realpath(head)
        real = os.path.join(real_head, tail)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                real = os.path.realpath(path)
        except (OSError, ValueError):
            pass  # missing (or unreachable): realpath() appends the name to its folder as well
    folders[path] = real
    return real


def forbidden(real: str) -> bool:
    return any(real == t or within(real, t) for t in FORBIDDEN_TREES)


def storage_identity(st: os.stat_result) -> tuple[int, ...]:
    """What makes two paths the same storage: the device number of a block device (aliases,
    partitions' symlinks), else the file system and inode of the file (hard links, symlinks)."""
    if stat.S_ISBLK(st.st_mode):
        return (0, st.st_rdev)
    return (1, st.st_dev, st.st_ino)


def kind_problem(mode: int, disk: bool, allow_file_devices: bool, name: str) -> str | None:
    """Why a file of this type cannot back the extent (None: it can). File extents: regular files;
    Disk/ZVOL: block devices, and regular files with `allow_file_devices`. Never character
    devices, FIFOs, sockets or directories."""
    if not disk:
        return None if stat.S_ISREG(mode) else "The extent must be a regular file."
    if stat.S_ISBLK(mode) or (stat.S_ISREG(mode) and allow_file_devices):
        return None
    if stat.S_ISREG(mode):
        return MSG_FILE_DEVICES.format(disk=name)
    return MSG_NOT_BLOCK.format(disk=name)


_SIZE_RE = re.compile(r"\s*([0-9]{1,25})\s*([A-Za-z]{1,2})?\s*")


def has_control(text: str) -> bool:
    """Whether a path or device name holds a character no configuration value may hold
    (model.text: C0/C1 controls, DEL, line separators, bidi overrides)."""
    return unsafe_char(text) is not None


def parse_filesize(text: str) -> int:
    """Bytes for "0", "10485760", "10MB", "1 GB" ... or ValueError with the FreeNAS message."""
    match = _SIZE_RE.fullmatch(text)
    unit = (match.group(2) or "B").upper() if match else ""
    if not match or unit not in SIZE_UNITS:
        raise ValueError(MSG_FILESIZE)
    size = int(match.group(1)) * SIZE_UNITS[unit]
    if size > MAX_FILESIZE:
        raise ValueError(f"File size must be at most {MAX_FILESIZE} bytes.")
    return size


def new_naa(cfg: Config) -> str:
    while True:
        naa = NAA_PREFIX + secrets.token_hex(NAA_RANDOM_DIGITS // 2 + 1)[:NAA_RANDOM_DIGITS]
        if not cfg.find("extent_naa", naa):
            return naa


def new_serial(cfg: Config) -> str:
    while True:
        serial = secrets.token_hex(SERIAL_DIGITS // 2)
        if not cfg.find("extent_serial", serial):
            return serial


def _others(cfg: Config, index: str, key: str, oid: int) -> bool:
    """True if an extent other than `oid` has `key` in `index`."""
    return any(other != oid for other in cfg.find(index, key))


def _parent_is_file(path: str) -> bool:
    """True if the nearest existing ancestor of `path` is not a directory (creation would fail)."""
    parent = os.path.dirname(path)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    return bool(parent) and not os.path.isdir(parent)


def _file_path_error(path: str, size: int, roots: tuple[str, ...]) -> str | None:
    """The FreeNAS checks for a File extent path, in FreeNAS's order (spec Part A §3.1)."""
    if not path:
        return MSG_REQUIRED
    if has_control(path):
        return MSG_CONTROL
    if not os.path.isabs(path):
        return "Enter an absolute path."
    if any(len(part.encode()) > NAME_MAX_BYTES for part in path.split("/")):
        return f"Each part of the path must be at most {NAME_MAX_BYTES} bytes long."
    real = os.path.realpath(path)
    real_roots = [os.path.realpath(r) for r in roots]
    if real in real_roots:
        return MSG_IN_ROOT
    if path.endswith("/") or os.path.isdir(path):
        return MSG_NOT_DIR
    if not any(within(real, r) for r in real_roots) or forbidden(real):
        return MSG_OUTSIDE
    if not os.path.exists(path):
        if size == 0:
            return MSG_MUST_EXIST
        if _parent_is_file(path):
            return "A parent of this path is a file, not a directory."
    elif not os.path.isfile(path):
        return "The extent must be a regular file."
    return None


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def check_file(cfg: Config, ext: Extent, policy: StoragePolicy) -> Errors:
    """The File kind's rules (model/kinds.py): a regular file under an extent root, its size."""
    roots = policy.extent_roots
    ext.disk = None
    ext.type = EXTENT_FILE
    try:
        size = parse_filesize(ext.filesize)
    except ValueError as exc:
        return {F_FILESIZE: [str(exc)]}
    ext.filesize = str(size)
    problem = _file_path_error(ext.path, size, roots)
    if problem:
        return {F_PATH: [problem]}
    ext.path = os.path.normpath(ext.path)
    if size % ext.blocksize:
        return {F_FILESIZE: [MSG_MULTIPLE]}
    current = _file_size(ext.path)
    if size and size < current:
        # issue #10 item 9: a smaller size would truncate the file under the initiators
        return {F_FILESIZE: [MSG_SHRINK.format(current=current)]}
    return {}


def _disk_name(disk: str, device_root: str) -> str | None:
    """The device name relative to the device root, or None if it is not a plain relative name."""
    disk = disk.strip()
    if disk.startswith("/"):
        if not within(os.path.normpath(disk), os.path.normpath(device_root)):
            return None
        disk = os.path.relpath(os.path.normpath(disk), device_root)
    if not disk or has_control(disk) or any(p in ("", ".", "..") for p in disk.split("/")):
        return None
    return disk


def device_problem(path: str, policy: StoragePolicy, name: str) -> str | None:
    """Why the device path cannot back a Disk/ZVOL extent, judged by what it resolves to (every
    symlink followed, /dev/fd and /proc/self/... included): it must lie under the device root and
    be a block device, or a regular file with `allow_file_devices` (issue #10 item 1)."""
    real = os.path.realpath(path)
    root = os.path.realpath(policy.device_root)
    if not within(real, root) or forbidden(real):
        return MSG_ESCAPES.format(disk=name, real=real, root=policy.device_root)
    try:
        mode = os.stat(real).st_mode
    except (OSError, ValueError):
        return f'"{name}" cannot be examined.'
    return kind_problem(mode, True, policy.allow_file_devices, name)


def check_device(cfg: Config, ext: Extent, policy: StoragePolicy) -> Errors:
    """The Disk/ZVOL kind's rules (model/kinds.py): `zvol/<pool>/<vol>` or `<dev>` under the
    device root (spec Part B §B.2.6)."""
    device_root = policy.device_root
    if not ext.disk:
        return {F_DISK: [MSG_REQUIRED]}
    disk = _disk_name(ext.disk, device_root)
    if disk is None:
        return {F_DISK: [f"Give the device relative to {device_root}, for example zvol/tank/vol1."]}
    is_zvol = disk.split("/")[0] == "zvol"
    full = os.path.join(device_root, disk)
    if not os.path.exists(full):
        return {F_DISK: [f'Zvol "{disk}" does not exist' if is_zvol else f'Disk "{disk}" does not exist']}
    problem = device_problem(full, policy, disk)
    if problem:
        return {F_DISK: [problem]}
    ext.disk, ext.path, ext.filesize = disk, full, FILESIZE_AUTO
    ext.type = EXTENT_ZVOL if is_zvol else EXTENT_DISK
    return {}


def _check_identity(cfg: Config, ext: Extent) -> Errors:
    errors: Errors = {}
    if '"' in ext.name:
        errors[F_NAME] = [MSG_QUOTES]
    elif text_problem(ext.name):  # issue #10: names reach logs and iscsi-ls (model/text.py)
        errors[F_NAME] = [MSG_CONTROL]
    elif _others(cfg, "extent_name", ext.name, ext.id):
        errors[F_NAME] = ["Extent name must be unique."]
    if text_problem(ext.comment):
        errors["iscsi_target_extent_comment"] = [MSG_CONTROL]
    if not ext.serial:
        ext.serial = new_serial(cfg)
    elif '"' in ext.serial:
        errors[F_SERIAL] = [MSG_QUOTES]
    elif not all(" " <= c <= "~" for c in ext.serial):
        # VPD page 0x80 carries ASCII data: graphic characters 20h-7Eh only (SPC-4, ASCII data fields).
        errors[F_SERIAL] = ["Use printable ASCII characters."]
    elif _others(cfg, "extent_serial", ext.serial, ext.id):
        errors[F_SERIAL] = ["Serial must be unique."]
    if not ext.naa:
        ext.naa = new_naa(cfg)
    return errors


def check_identity(cfg: Config, ext: Extent) -> Errors:
    """The rules every extent has, whatever its kind: name, serial, NAA (model/kinds.py
    `check_extent` adds its kind's)."""
    return _check_identity(cfg, ext)
