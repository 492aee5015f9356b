"""Fixtures shared by the integration, conformance and fuzz suites."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.rbd.fixtures import ceph_cluster, rbd_cluster  # noqa: F401 - session fixtures for every suite
from tests.support import Running, demo_options, start


@pytest.fixture
async def demo(nursery: trio.Nursery, tmp_path: Path) -> Running:
    """The real server with the --demo configuration on free loopback ports (API off)."""
    return await start(nursery, demo_options(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs `pyscsi_target.__main__.main()` in-process configures the root logger
    (a stderr handler bound to that test's captured stream, its level); later tests must not log
    into that closed stream, so the root logger's handlers and level are put back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
