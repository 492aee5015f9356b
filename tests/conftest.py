"""Fixtures shared by the integration, conformance and fuzz suites."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.rbd.fixtures import ceph_cluster, rbd_cluster  # noqa: F401 - session fixtures for every suite
from tests.support import Running, demo_options, start


@pytest.fixture
async def demo(nursery: trio.Nursery, tmp_path: Path) -> Running:
    """The real server with the --demo configuration on free loopback ports (API off)."""
    return await start(nursery, demo_options(tmp_path / "data"))
