"""The RBD kind's opener (issue #15): a model `Extent` of type RBD -> an `RbdBackend` LU.

One `storage.RbdCluster` (one `rados.Rados`) per process and cluster (`--ceph-conf`,
`--ceph-id`), connected on the first open, in the worker thread that opens. When the cluster cannot
be reached the open fails with the reason (never a key: librados reads the keyring itself, from
the conf's `keyring` or the usual /etc/ceph/$cluster.$name.keyring), and a later open within
CONNECT_RETRY_S fails at once with the same reason instead of waiting for the monitors again, so
that a start-up with many RBD extents on an unreachable cluster costs one connection timeout.
The service retries NOT READY extents (service.py `_retry_not_ready`).

Each RBD LU watches its image's events object and announces its resets there, so that every
gateway serving the image raises a reset's unit attention (storage/rbd_events.py, taskmgmt.py).
"""

from __future__ import annotations

import threading
import time

from ..model import Extent
from ..model.extent_rbd import split_image
from ..model.extents import MSG_SHRINK, StoragePolicy, parse_filesize
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit
from ..storage import ClusterUnavailable, ImageMissing, RbdCluster
from .extents import ExtentRefused, LiveExtent, identity_of

#: after a failed connection, seconds during which opens fail at once with its reason
CONNECT_RETRY_S = 5.0

_clusters: dict[tuple[str | None, str | None], RbdCluster] = {}
_failed: dict[tuple[str | None, str | None], tuple[float, str]] = {}
_lock = threading.Lock()


def cluster_for(policy: StoragePolicy) -> RbdCluster:
    """The process's connected cluster for `policy`; ClusterUnavailable with the reason."""
    key = (policy.ceph_conf, policy.ceph_id)
    with _lock:
        cluster = _clusters.get(key)
        if cluster is None:
            cluster = _clusters[key] = RbdCluster(policy.ceph_conf, policy.ceph_id)
        if cluster.connected:
            return cluster
        failed = _failed.get(key)
        if failed is not None and time.monotonic() - failed[0] < CONNECT_RETRY_S:
            raise ClusterUnavailable(failed[1])
        try:
            cluster.connect()
        except ClusterUnavailable as exc:
            _failed[key] = (time.monotonic(), str(exc))
            raise
        _failed.pop(key, None)
        return cluster


def close_clusters() -> None:
    """End every connection (the server's shutdown, after the extents are closed)."""
    with _lock:
        for cluster in _clusters.values():
            cluster.close()
        _clusters.clear()
        _failed.clear()


def open_rbd(ext: Extent, policy: StoragePolicy, host: LuHost) -> LiveExtent:
    """The RBD kind's opener (blocking): open `pool/image` (creating it, thin, when it does not
    exist and a size is given; growing it to a larger size given), as an LU served by `host`.
    Raises ExtentRefused or StorageError (ClusterUnavailable, ImageMissing), leaving nothing
    created."""
    parts = split_image(ext.path)
    if parts is None:
        raise ExtentRefused(f"{ext.path!r} is not an RBD image name (pool/image)")
    pool, image = parts
    size = parse_filesize(ext.filesize)
    cluster = cluster_for(policy)
    created = False
    if size and not cluster.image_exists(pool, image):
        cluster.create_image(pool, image, size)
        created = True
    try:
        try:
            backend = cluster.open(pool, image, ext.blocksize, ext.ro)
        except ImageMissing as exc:
            raise ExtentRefused(f"{exc}; give a size (iscsi_target_extent_filesize) to create it") from exc
        try:
            current = backend.size_bytes
            if size and size < current:
                raise ExtentRefused(MSG_SHRINK.format(current=current))
            if size > current:
                backend.resize(size)
        except BaseException:
            backend.close()
            raise
    except BaseException:
        if created:
            cluster.remove_image(pool, image)
        raise
    undo = [lambda: cluster.remove_image(pool, image)] if created else []
    lu = LogicalUnit(backend, identity_of(ext), host=host)
    # other gateways may serve the image as the same LU: resets go both ways (docs/scale-out.md §3)
    backend.watch_resets(lu.reset)
    lu.announce_reset = backend.announce_reset
    return LiveExtent(ext, backend, lu, ("rbd", *backend.identity), undo=undo)
