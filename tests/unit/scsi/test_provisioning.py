"""The thin-provisioning soft threshold (SBC-4 §4.7.3.7): UA 38/07 when the used fraction of a thin
extent reaches `avail_threshold` %, once per upward crossing, measured at most once per
THRESHOLD_CHECK_INTERVAL_S of write activity; and `Backend.allocated_bytes()`."""

from __future__ import annotations

import struct

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.provisioning import THRESHOLD_CHECK_INTERVAL_S, ThresholdMonitor
from pyscsi_target.scsi.types import GOOD
from pyscsi_target.storage import MemoryBackend
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


def thin_lu(threshold: int | None = 50, blocks: int = 16) -> tuple[LogicalUnit, Clock]:
    lu = make_lu(MemoryBackend(blocks), identity(thin=True, avail_threshold=threshold))
    clock = Clock()
    lu.clock = clock
    return lu, clock


def write(lu: LogicalUnit, lba: int, nblocks: int) -> None:
    good(lu, cdb10(0x2A, lba, nblocks), data=b"x" * (nblocks * BS))


def unmap(lu: LogicalUnit, lba: int, nblocks: int) -> None:
    body = struct.pack(">QI4x", lba, nblocks)
    data = struct.pack(">HH4x", 6 + len(body), len(body)) + body
    good(lu, struct.pack(">BB4xBHB", 0x42, 0, 0, len(data), 0), data=data)


def test_crossing_upwards_raises_the_unit_attention_once_for_every_nexus() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 7)  # 7/16 < 50 %
    good(lu, TUR)
    clock.now = 10
    write(lu, 7, 1)  # 8/16 = 50 %: reached
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == SOFT_THRESHOLD  # the writer too
    assert sense_of(run(lu, TUR, nexus=OTHER)) == SOFT_THRESHOLD
    clock.now = 20
    write(lu, 8, 4)  # still above: no new condition
    good(lu, TUR)


def test_measured_at_most_once_per_interval() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 1)  # measured at t=0
    clock.now = THRESHOLD_CHECK_INTERVAL_S / 2
    write(lu, 1, 9)  # 10/16 but not measured yet
    good(lu, TUR)
    clock.now = THRESHOLD_CHECK_INTERVAL_S
    write(lu, 1, 1)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_rearms_after_falling_below() -> None:
    lu, clock = thin_lu()
    write(lu, 0, 10)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    clock.now = 5
    unmap(lu, 0, 8)  # 2/16: below, armed again
    good(lu, TUR)
    clock.now = 10
    write(lu, 0, 8)
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD


def test_no_threshold_no_thin_no_unit_attention() -> None:
    lu, _ = thin_lu(threshold=None)
    write(lu, 0, 16)
    good(lu, TUR)
    thick = make_lu(MemoryBackend(16), identity(avail_threshold=10))  # not thin: not measured
    thick.clock = Clock()
    write(thick, 0, 16)
    good(thick, TUR)
    assert not thick.check_provisioning_threshold()


def test_the_server_may_measure_from_housekeeping() -> None:
    lu, _ = thin_lu(threshold=25)
    lu.backend.write(0, b"y" * (4 * BS))  # written behind the SCSI layer's back
    assert lu.check_provisioning_threshold()
    assert sense_of(run(lu, TUR)) == SOFT_THRESHOLD
    assert not lu.check_provisioning_threshold()


def test_a_failed_measurement_does_not_fail_the_write() -> None:
    class Broken(MemoryBackend):
        def allocation(self, lba: int, nblocks: int):  # type: ignore[no-untyped-def]
            raise MediumError("seek_data failed")

    lu = make_lu(Broken(16), identity(thin=True, avail_threshold=10))
    assert run(lu, cdb10(0x2A, 0, 2), data=bytes(2 * BS)).status == GOOD


def test_allocated_bytes_default() -> None:
    memory = MemoryBackend(8)
    assert memory.allocated_bytes() == 0
    memory.write(2, bytes(3 * BS))
    assert memory.allocated_bytes() == 3 * BS
    assert SparseBackend(8).allocated_bytes() == 8 * BS  # the default allocation(): all mapped


def test_monitor_edges() -> None:
    monitor = ThresholdMonitor(80)
    assert [monitor.crossed(used, 100) for used in (10, 80, 90, 79, 85)] == [False, True, False, False, True]
    assert not ThresholdMonitor(0).enabled and not ThresholdMonitor(101).enabled
    assert not ThresholdMonitor(50).crossed(10, 0)
