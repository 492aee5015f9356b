"""The thin-provisioning soft thresholds (SBC-4 §4.7.3.7, issue #11 items 2 and 4): UA 38/07 when
the space AVAILABLE to an LU drops below `avail_threshold` % of its size (free space of its file
system, or size - allocated for a thin LU, the lower), or the free space of its file system drops
below `pool_avail_threshold` % of that file system; once per downward crossing, re-armed when the
space recovers, measured at most once per THRESHOLD_CHECK_INTERVAL_S of write activity, thresholds
read at each measurement (a change applies without a reopen); and `Backend.allocated_bytes()` /
`Backend.space()`."""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
from pathlib import Path

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.provisioning import THRESHOLD_CHECK_INTERVAL_S, ThresholdMonitor, available_bytes
from pyscsi_target.scsi.types import GOOD
from pyscsi_target.storage import FileBackend, MemoryBackend, Space
from pyscsi_target.storage.base import MediumError

from .util import NEXUS, OTHER, SparseBackend, cdb10, good, identity, make_lu, run, sense_of

BS = 512
SOFT_THRESHOLD = (0x06, 0x38, 0x07)
TUR = bytes(6)


class Clock:
    """Monotonic seconds the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += THRESHOLD_CHECK_INTERVAL_S


class FsBackend(MemoryBackend):
    """A memory backend whose file system reports the free and total bytes the test sets (what
    a FileBackend reads with statvfs)."""

    def __init__(self, blocks: int, free: int, total: int, *, thin: bool = True) -> None:
        super().__init__(blocks)
        self.fs = Space(free, total)
        self._thin = thin

    def space(self) -> Space | None:
        return self.fs

    @property
    def supports_unmap(self) -> bool:
        return self._thin


def with_clock(lu: LogicalUnit) -> tuple[LogicalUnit, Clock]:
    clock = Clock()
    lu.clock = clock
    return lu, clock


def thin_lu(threshold: int | None = 50, blocks: int = 16) -> tuple[LogicalUnit, Clock]:
    return with_clock(make_lu(MemoryBackend(blocks), identity(thin=True, avail_threshold=threshold)))


def write(lu: LogicalUnit, lba: int, nblocks: int) -> None:
    good(lu, cdb10(0x2A, lba, nblocks), data=b"x" * (nblocks * BS))


def unmap(lu: LogicalUnit, lba: int, nblocks: int) -> None:
    body = struct.pack(">QI4x", lba, nblocks)
    data = struct.pack(">HH4x", 6 + len(body), len(body)) + body
    good(lu, struct.pack(">BB4xBHB", 0x42, 0, 0, len(data), 0), data=data)


# -- the extent's avail_threshold: available space below size x pct / 100 (item 4) ------------------


def test_available_space_dropping_below_raises_the_unit_attention_once_for_every_nexus() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 8)  # 8/16 available: at the threshold, not below
    good(lu, TUR)
    clock.tick()
    write(lu, 8, 1)  # 7/16 available < 50 %: crossed
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == SOFT_THRESHOLD  # the writer too
    assert sense_of(run(lu, TUR, nexus=OTHER)) == SOFT_THRESHOLD
    clock.tick()
    write(lu, 9, 4)  # still below: no new condition
    good(lu, TUR)


def test_the_percentage_is_of_the_space_left_not_of_the_space_used() -> None:
    """FreeNAS wrote avail-threshold = size x pct / 100 and CTL compared the AVAILABLE space with it:
    80 % means "warn when less than 80 % is left", i.e. already at a quarter used."""
    lu, _ = thin_lu(threshold=80)
    write(lu, 0, 4)  # 12/16 = 75 % available < 80 %
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_measured_at_most_once_per_interval() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 1)  # measured at t=0
    clock.now = THRESHOLD_CHECK_INTERVAL_S / 2
    write(lu, 1, 9)  # 6/16 available but not measured yet
    good(lu, TUR)
    clock.now = THRESHOLD_CHECK_INTERVAL_S
    write(lu, 1, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_rearms_when_the_space_is_back_at_the_threshold() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 10)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    clock.tick()
    unmap(lu, 2, 2)  # 8/16 available: back at the threshold, armed again
    good(lu, TUR)
    clock.tick()
    write(lu, 2, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_a_changed_threshold_applies_without_a_reopen() -> None:
    """The server replaces `identity` on a PUT of the live extent; the next measurement uses it."""
    lu, clock = thin_lu(threshold=None)
    write(lu, 0, 8)
    good(lu, TUR)
    lu.identity = dataclasses.replace(lu.identity, avail_threshold=60)
    clock.tick()
    write(lu, 8, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    lu.identity = dataclasses.replace(lu.identity, avail_threshold=None)  # off: no measurement fires
    clock.tick()
    write(lu, 9, 7)
    good(lu, TUR)


def test_the_file_systems_free_space_counts_when_it_is_lower() -> None:
    """A file-backed LU can take no more than its file system has free, even where its own
    allocation leaves room (item 4: the lower of the two)."""
    backend = FsBackend(16, free=10 * BS, total=1000 * BS)
    lu, clock = with_clock(make_lu(backend, identity(thin=True, avail_threshold=50)))
    write(lu, 0, 1)  # 15/16 unallocated, 10 blocks free on the file system: 10/16 >= 50 %
    good(lu, TUR)
    backend.fs = Space(7 * BS, 1000 * BS)  # something else filled the file system
    clock.tick()
    write(lu, 1, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    # a fully provisioned (not thin) LU is measured by its file system alone
    thick = FsBackend(16, free=9 * BS, total=1000 * BS, thin=False)
    lu2, _ = with_clock(make_lu(thick, identity(avail_threshold=50)))
    write(lu2, 0, 16)
    good(lu2, TUR)
    thick.fs = Space(7 * BS, 1000 * BS)
    assert lu2.check_provisioning_threshold()


def test_no_threshold_or_nothing_to_measure_no_unit_attention() -> None:
    lu, _ = thin_lu(threshold=None)
    write(lu, 0, 16)
    good(lu, TUR)
    thick, _ = with_clock(make_lu(MemoryBackend(16), identity(avail_threshold=10)))  # no file system, not thin
    write(thick, 0, 16)
    good(thick, TUR)
    assert not thick.check_provisioning_threshold()


def test_the_server_may_measure_from_housekeeping() -> None:
    lu, _ = thin_lu(threshold=75)
    lu.backend.write(0, b"y" * (5 * BS))  # written behind the SCSI layer's back: 11/16 available
    assert lu.check_provisioning_threshold()
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    assert not lu.check_provisioning_threshold()


def test_a_failed_measurement_does_not_fail_the_write() -> None:
    class Broken(MemoryBackend):
        def allocation(self, lba: int, nblocks: int):  # type: ignore[no-untyped-def]
            raise MediumError("seek_data failed")

    class NoStatvfs(MemoryBackend):
        def space(self) -> Space | None:
            raise MediumError("statvfs failed")

    for backend in (Broken(16), NoStatvfs(16)):
        lu = make_lu(backend, identity(thin=True, avail_threshold=10))
        lu.pool_avail_threshold = 10
        assert run(lu, cdb10(0x2A, 0, 2), data=bytes(2 * BS)).status == GOOD
        assert not lu.check_provisioning_threshold()


# -- the global pool_avail_threshold: the file system's free space below pct % of it (item 2) ---------


def test_pool_threshold_fires_once_per_crossing_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyscsi_target.scsi")
    backend = FsBackend(16, free=60, total=100, thin=False)
    lu, clock = with_clock(make_lu(backend, identity()))
    lu.pool_avail_threshold = 50
    write(lu, 0, 1)
    good(lu, TUR)
    backend.fs = Space(49, 100)
    clock.tick()
    write(lu, 0, 1)
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == SOFT_THRESHOLD
    assert sense_of(run(lu, TUR, nexus=OTHER)) == SOFT_THRESHOLD
    assert "49 of 100 bytes free, below the pool threshold of 50 %" in caplog.text
    clock.tick()
    write(lu, 0, 1)  # still below: once per crossing
    good(lu, TUR)
    backend.fs = Space(50, 100)  # recovered: re-armed
    clock.tick()
    write(lu, 0, 1)
    good(lu, TUR)
    backend.fs = Space(10, 100)
    clock.tick()
    write(lu, 0, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_pool_threshold_follows_the_setting() -> None:
    backend = FsBackend(16, free=30, total=100)
    lu, clock = with_clock(make_lu(backend, identity()))
    write(lu, 0, 1)
    good(lu, TUR)  # no pool threshold set
    lu.pool_avail_threshold = 40
    clock.tick()
    write(lu, 0, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


# -- pieces ----------------------------------------------------------------------------------------


def test_allocated_bytes_default() -> None:
    memory = MemoryBackend(8)
    assert memory.allocated_bytes() == 0
    memory.write(2, bytes(3 * BS))
    assert memory.allocated_bytes() == 3 * BS
    assert SparseBackend(8).allocated_bytes() == 8 * BS  # the default allocation(): all mapped


def test_a_memory_backend_has_no_file_system() -> None:
    assert MemoryBackend(8).space() is None


def test_file_backend_space_is_statvfs(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "lun.img", size_bytes=8 * BS, create=True)
    try:
        space = backend.space()
        vfs = os.statvfs(tmp_path)
        assert space is not None and space.total_bytes == vfs.f_blocks * vfs.f_frsize
        assert 0 < space.free_bytes <= space.total_bytes
    finally:
        backend.close()


def test_monitor_edges() -> None:
    monitor = ThresholdMonitor(80)
    # available bytes of 100: below 80 fires once, back at 80 re-arms
    assert [monitor.crossed(avail, 100) for avail in (90, 79, 10, 80, 70)] == [False, True, False, False, True]
    assert not ThresholdMonitor(0).enabled and not ThresholdMonitor(101).enabled
    assert not ThresholdMonitor(50).crossed(10, 0)
    assert available_bytes(100, None, None) is None
    assert available_bytes(100, Space(30, 1000), 50) == 30
    assert available_bytes(100, Space(90, 1000), 50) == 50
    assert available_bytes(100, None, 120) == 0
