"""Extent kinds as data: the model half of the kind table (issue #14 item 4).

Stdlib only. Every extent kind is one `ExtentKind` row in `KINDS`: the API type names it answers
to, its validation (which normalises the extent in place), the model attribute that names its
storage (`path` for File and RBD, `disk` for Disk/ZVOL: the field a refusal about its storage names), the
identity flags the LUN reports (`thin`), whether `filesize` applies (and a change resizes the live
extent), and the names under which two extents are "the same storage" (issue #10 item 3). Nothing
else in model/, api/ or server/ compares `Extent.type` with a type name: they look the row up.

The server half (server/kinds.py) maps each row's `name` to the opener that turns an `Extent`
into a live backend under the server's `StoragePolicy`; a test keeps the two halves' names equal.
How to add a kind: docs/design.md "Extent kinds".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from . import extent_rbd, extents
from .config import EXTENT_DISK, EXTENT_FILE, EXTENT_ZVOL, Config, Extent
from .extents import Errors, StoragePolicy
from .indexes import STORAGE

F_TYPE = "iscsi_target_extent_type"
#: the model attribute of a refusal about the storage itself, per kind (see `ExtentKind.location`)
PATH = "path"
DISK = "disk"


@dataclass(frozen=True)
class ExtentKind:
    """One kind of extent storage."""

    #: joins this row to its opener in server/kinds.py
    name: str
    #: `iscsi_target_extent_type` values of this kind (API input and output)
    api_types: tuple[str, ...]
    #: validate and normalise the extent (already in the configuration); errors by API field
    check: Callable[[Config, Extent, StoragePolicy], Errors]
    #: the model attribute that names the storage on input: refusals about it name this field
    location: str
    #: the LU reports thin provisioning (SBC-4 §4.7; VPD 0xB2)
    thin: bool
    #: `filesize` applies: a changed size resizes the live extent (grow only, issue #10 item 9)
    resizable: bool
    #: the names of the extent's storage: two extents that share one are the same storage
    names: Callable[[Extent], frozenset[Hashable]]
    #: the message when (ext, other, other's kind) would share storage
    used_by: Callable[[Extent, Extent, ExtentKind | None], str]
    #: storage reached over a network that may come back by itself (a Ceph cluster): a NOT READY
    #: LU of this kind is retried on a timer, not only at the next apply
    remote: bool = False


def path_names(ext: Extent) -> frozenset[Hashable]:
    """A file or device by name: its resolved path, and its storage_identity() when it exists
    (hard links, symlinks, device aliases)."""
    names: set[Hashable] = {("path", extents.realpath(ext.path))}
    with contextlib.suppress(OSError, ValueError):
        names.add(extents.storage_identity(os.stat(ext.path)))
    return frozenset(names)


def _file_used_by(ext: Extent, other: Extent, other_kind: ExtentKind | None) -> str:
    return extents.MSG_SHARED.format(other=other.name)


def _device_used_by(ext: Extent, other: Extent, other_kind: ExtentKind | None) -> str:
    if other_kind is not None and other_kind.location == PATH:
        return f'Disk "{ext.disk}" is the file of extent "{other.name}".'
    return f'Disk "{ext.disk}" is already used by extent "{other.name}".'


FILE = ExtentKind(
    name="file", api_types=(EXTENT_FILE,), check=extents.check_file, location=PATH,
    thin=True, resizable=True, names=path_names, used_by=_file_used_by,
)
DEVICE = ExtentKind(
    name="device", api_types=(EXTENT_DISK, EXTENT_ZVOL), check=extents.check_device, location=DISK,
    thin=False, resizable=False, names=path_names, used_by=_device_used_by,
)



def _rbd_used_by(ext: Extent, other: Extent, other_kind: ExtentKind | None) -> str:
    return f'RBD image "{ext.path}" is already used by extent "{other.name}".'


RBD = ExtentKind(
    name="rbd", api_types=(extent_rbd.EXTENT_RBD,), check=extent_rbd.check_rbd, location=PATH,
    thin=True, resizable=True, names=extent_rbd.rbd_names, used_by=_rbd_used_by, remote=True,
)

#: every kind, in the order the API lists their type names
KINDS: tuple[ExtentKind, ...] = (FILE, DEVICE, RBD)
_BY_TYPE = {t: kind for kind in KINDS for t in kind.api_types}

#: the model attribute -> the API field of the errors `check_extent` reports about it, until
#: model validation reports model attributes (issue #14 item 5)
_FIELD_OF = {PATH: extents.F_PATH, DISK: extents.F_DISK}


def api_types() -> tuple[str, ...]:
    """Every `iscsi_target_extent_type` value, in table order."""
    return tuple(_BY_TYPE)


def kind_for(type_name: str | None) -> ExtentKind | None:
    """The kind an API type name belongs to, or None for a name no kind has."""
    return _BY_TYPE.get(type_name) if type_name is not None else None


def shared_with(cfg: Config, ext: Extent) -> Extent | None:
    """Another extent backed by the same storage as `ext` (issue #10 item 3), or None."""
    kind = kind_for(ext.type)
    mine = kind.names(ext) if kind is not None else frozenset()
    ids: set[int] = set()
    for name in mine:  # the storage index (model/indexes.py): no scan of every extent's file
        ids.update(cfg.find(STORAGE, name))
    ids.discard(ext.id)
    return cfg.extents[min(ids)] if ids else None


def check_extent(cfg: Config, ext: Extent, policy: StoragePolicy) -> Errors:
    """Validate and normalise `ext`, which is already in `cfg.extents`: the rules every extent
    has, its kind's, then "one storage, one extent"."""
    errors = extents.check_identity(cfg, ext)
    kind = kind_for(ext.type)
    if kind is None:  # the API's choices stop this; a configuration from elsewhere may not
        errors[F_TYPE] = [f"Select a valid choice. {ext.type} is not one of the available choices."]
        return errors
    problems = kind.check(cfg, ext, policy)
    if not problems:
        other = shared_with(cfg, ext)
        if other is not None:
            problems = {_FIELD_OF[kind.location]: [kind.used_by(ext, other, kind_for(other.type))]}
    errors.update(problems)
    return errors
