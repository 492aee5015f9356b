"""Session fixtures for the tests that need a Ceph cluster (issue #15 item 3).

`ceph_cluster` starts one private single-node cluster (tests/rbd/cluster.py) for the whole test
session, on first use, and stops it at the end (`cephx_cluster` another, with cephx);
`rbd_cluster` is the target's own connection to it (`storage.RbdCluster`). Where Ceph is missing
or the cluster does not start, the tests that use them are skipped, except under `CI=true`, where
they fail: CI must prove RBD, not skip it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from pyscsi_target.storage import RbdCluster, StorageError

from .cluster import POOL, CephCluster


def unavailable(why: str) -> None:
    """Skip, or under CI=true fail: the RBD tests must run in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Ceph cluster unavailable under CI=true: {why}", pytrace=False)
    pytest.skip(f"Ceph cluster unavailable: {why}")


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    try:
        cluster = CephCluster(tmp_path_factory.mktemp("ceph")).start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cephx_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    """A second cluster, with cephx (tests/rbd/test_cephx.py; about 8 s more, only when used)."""
    try:
        cluster = CephCluster(tmp_path_factory.mktemp("cephx"), cephx=True).start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(str(exc))
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def rbd_cluster(ceph_cluster: CephCluster) -> Iterator[RbdCluster]:
    conn = RbdCluster(str(ceph_cluster.conf))
    try:
        conn.connect()
    except StorageError as exc:
        unavailable(str(exc))
    yield conn
    conn.close()


def image_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


__all__ = ["POOL", "ceph_cluster", "cephx_cluster", "image_name", "rbd_cluster", "unavailable"]
