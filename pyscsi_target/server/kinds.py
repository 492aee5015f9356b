"""Extent kinds as data: the server half of the kind table (issue #14 item 4).

model/kinds.py holds each kind's model row (API type names, validation, flags); this table maps
the row's `name` to its opener: the blocking call that turns a model `Extent` into a
`LiveExtent` (backend + logical unit + the storage identity for "one storage, one extent")
under the server's `StoragePolicy`. `open_extent` is the one entry point the service uses.
"""

from __future__ import annotations

from collections.abc import Callable

from ..model import Extent
from ..model.extents import StoragePolicy
from ..model.kinds import DEVICE, FILE, RBD, kind_for
from ..scsi.host import LuHost
from .extents import ExtentRefused, LiveExtent, open_device, open_file
from .rbd import open_rbd

Opener = Callable[[Extent, StoragePolicy, LuHost], LiveExtent]

#: model kind name -> opener; every row of model.kinds.KINDS has one (tests/unit/server/test_kinds.py)
OPENERS: dict[str, Opener] = {
    FILE.name: open_file,
    DEVICE.name: open_device,
    RBD.name: open_rbd,
}


def open_extent(ext: Extent, policy: StoragePolicy, host: LuHost) -> LiveExtent:
    """Blocking: open the extent's storage the way its kind does, confined to `policy`, as an LU
    served by `host`. Raises
    ExtentRefused (also for a type no kind has), OSError or StorageError, leaving nothing created."""
    kind = kind_for(ext.type)
    if kind is None:
        raise ExtentRefused(f"no extent kind is called {ext.type!r}")
    return OPENERS[kind.name](ext, policy, host)
