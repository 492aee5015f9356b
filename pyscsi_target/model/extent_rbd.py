"""The RBD kind's model rules (issue #15 item 2): an extent that is a Ceph RBD image.

`"iscsi_target_extent_type": "RBD"` with the image named in `iscsi_target_extent_path` as
`pool/image` (the pool and the image of the cluster the server reaches with `--ceph-conf` and
`--ceph-id`). Stdlib only: whether the image exists is the cluster's to say, and the server's
opener asks it when the change is applied (a missing image without a size is then refused, 409
on the path; with `iscsi_target_extent_filesize` it is created, as a File extent's file is).

Names: both parts from `[A-Za-z0-9._-]`, starting with a letter or digit, at most 100
characters. Ceph itself allows more (any byte but `/` and `@` in image names, pool names with
spaces); the narrower set keeps names safe in logs, in the `rbd` tool's `pool/image@snap` syntax
and in URLs, and is what ceph-iscsi's gateway accepts for its disks (`[\\w.-]`).
"""

from __future__ import annotations

import re
from collections.abc import Hashable

from .config import Config, Extent
from .extents import F_FILESIZE, F_PATH, MSG_MULTIPLE, MSG_REQUIRED, Errors, StoragePolicy, parse_filesize

#: `iscsi_target_extent_type` of RBD extents
EXTENT_RBD = "RBD"
#: longest pool or image name we accept, characters
RBD_NAME_MAX = 100
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{RBD_NAME_MAX - 1}}}")
MSG_NAME = ('Name the image as pool/image: letters, digits, ".", "_" and "-", each part starting with a '
            f"letter or digit, at most {RBD_NAME_MAX} characters.")


def split_image(name: str) -> tuple[str, str] | None:
    """(pool, image) of a valid `pool/image` name, else None."""
    parts = name.split("/")
    if len(parts) != 2 or not all(_NAME.fullmatch(p) for p in parts):
        return None
    return parts[0], parts[1]


def check_rbd(cfg: Config, ext: Extent, policy: StoragePolicy) -> Errors:
    """The RBD kind's rules (model/kinds.py): a `pool/image` name and a size that is 0 (the
    image's own) or whole blocks."""
    ext.disk = None
    ext.type = EXTENT_RBD
    name = ext.path.strip()
    if not name:
        return {F_PATH: [MSG_REQUIRED]}
    if split_image(name) is None:
        return {F_PATH: [MSG_NAME]}
    ext.path = name
    try:
        size = parse_filesize(ext.filesize)
    except ValueError as exc:
        return {F_FILESIZE: [str(exc)]}
    ext.filesize = str(size)
    if size % ext.blocksize:
        return {F_FILESIZE: [MSG_MULTIPLE]}
    return {}


def rbd_names(ext: Extent) -> frozenset[Hashable]:
    """An image by name; the server compares (pool id, image id) of what it opened as well."""
    parts = split_image(ext.path)
    return frozenset({("rbd", *parts)}) if parts else frozenset()
