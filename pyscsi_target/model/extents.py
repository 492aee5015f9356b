"""Extent rules: backing paths, devices, sizes and the identities the LUN reports (NAA, serial).

Stdlib only. `check_extent` normalises an `Extent` in place (filesize to bytes, File path to its
normal form, Disk/ZVOL path computed under the device root, NAA and serial generated once) and
returns the API errors (spec Part A §2.2 and §3.1, Part B §B.2.5-B.2.7). The backing file itself is
created by the server when it applies the configuration; nothing here writes to disk.
"""

from __future__ import annotations

import os
import re
import secrets
import stat

from .config import EXTENT_DISK, EXTENT_FILE, EXTENT_ZVOL, Config, Extent
from .text import text_problem

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

_SIZE_RE = re.compile(r"\s*([0-9]{1,25})\s*([A-Za-z]{1,2})?\s*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    return bool(_CONTROL_RE.search(text))


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
    used = {e.naa for e in cfg.extents.values()}
    while True:
        naa = NAA_PREFIX + secrets.token_hex(NAA_RANDOM_DIGITS // 2 + 1)[:NAA_RANDOM_DIGITS]
        if naa not in used:
            return naa


def new_serial(cfg: Config) -> str:
    used = {e.serial for e in cfg.extents.values()}
    while True:
        serial = secrets.token_hex(SERIAL_DIGITS // 2)
        if serial not in used:
            return serial


def _within(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


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
    if not any(_within(real, r) for r in real_roots):
        return MSG_OUTSIDE
    if not os.path.exists(path):
        if size == 0:
            return MSG_MUST_EXIST
        if _parent_is_file(path):
            return "A parent of this path is a file, not a directory."
    elif not os.path.isfile(path):
        return "The extent must be a regular file."
    return None


def _check_file(cfg: Config, ext: Extent, roots: tuple[str, ...]) -> Errors:
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
    for other in cfg.extents.values():
        if other.id != ext.id and other.type == EXTENT_FILE and other.path == ext.path:
            return {F_PATH: [f'This file is already used by extent "{other.name}".']}
    return {}


def _disk_name(disk: str, device_root: str) -> str | None:
    """The device name relative to the device root, or None if it is not a plain relative name."""
    disk = disk.strip()
    if disk.startswith("/"):
        if not _within(os.path.normpath(disk), os.path.normpath(device_root)):
            return None
        disk = os.path.relpath(os.path.normpath(disk), device_root)
    if not disk or has_control(disk) or any(p in ("", ".", "..") for p in disk.split("/")):
        return None
    return disk


def _check_disk(cfg: Config, ext: Extent, device_root: str) -> Errors:
    """Disk/ZVOL: `zvol/<pool>/<vol>` or `<dev>` under the device root (spec Part B §B.2.6)."""
    if not ext.disk:
        return {F_DISK: [MSG_REQUIRED]}
    disk = _disk_name(ext.disk, device_root)
    if disk is None:
        return {F_DISK: [f"Give the device relative to {device_root}, for example zvol/tank/vol1."]}
    is_zvol = disk.split("/")[0] == "zvol"
    full = os.path.join(device_root, disk)
    try:
        mode = os.stat(full).st_mode
    except OSError:
        return {F_DISK: [f'Zvol "{disk}" does not exist' if is_zvol else f'Disk "{disk}" does not exist']}
    if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
        return {F_DISK: [f'"{disk}" is not a block device.']}
    ext.disk, ext.path, ext.filesize = disk, full, FILESIZE_AUTO
    ext.type = EXTENT_ZVOL if is_zvol else EXTENT_DISK
    for other in cfg.extents.values():
        if other.id != ext.id and other.type != EXTENT_FILE and other.path == full:
            return {F_DISK: [f'Disk "{disk}" is already used by extent "{other.name}".']}
    return {}


def _check_identity(cfg: Config, ext: Extent) -> Errors:
    errors: Errors = {}
    if '"' in ext.name:
        errors[F_NAME] = [MSG_QUOTES]
    elif text_problem(ext.name):  # issue #10: names reach logs and iscsi-ls (model/text.py)
        errors[F_NAME] = [MSG_CONTROL]
    elif any(o.id != ext.id and o.name == ext.name for o in cfg.extents.values()):
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
    elif any(o.id != ext.id and o.serial == ext.serial for o in cfg.extents.values()):
        errors[F_SERIAL] = ["Serial must be unique."]
    if not ext.naa:
        ext.naa = new_naa(cfg)
    return errors


def check_extent(cfg: Config, ext: Extent, extent_roots: tuple[str, ...], device_root: str) -> Errors:
    """Validate and normalise `ext`, which is already in `cfg.extents`."""
    errors = _check_identity(cfg, ext)
    if ext.type == EXTENT_FILE:
        errors.update(_check_file(cfg, ext, extent_roots))
    else:
        errors.update(_check_disk(cfg, ext, device_root))
    return errors
