"""Fixtures for the SCSI core tests: a 1024-block in-memory LU (512-byte blocks)."""

from __future__ import annotations

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.storage import MemoryBackend

from .util import identity, make_lu

NUM_BLOCKS = 1024
BLOCK_SIZE = 512


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend(NUM_BLOCKS, BLOCK_SIZE)


@pytest.fixture
def lu(backend: MemoryBackend) -> LogicalUnit:
    return make_lu(backend, identity())


@pytest.fixture
def thin_lu(backend: MemoryBackend) -> LogicalUnit:
    return make_lu(backend, identity(thin=True))
