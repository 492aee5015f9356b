"""`scsi.stats`: what one answered command adds to the LU's and the session's counters."""

from __future__ import annotations

from time import perf_counter_ns

from pyscsi_target.model.stats import LATENCY_BUCKETS
from pyscsi_target.scsi.sense import SenseReason, build_sense
from pyscsi_target.scsi.stats import OPCODE_KIND, OTHER, READ, WRITE, IoCounters, account, sense_key
from pyscsi_target.scsi.types import CHECK_CONDITION, RESERVATION_CONFLICT, Nexus, ScsiRequest, ScsiResult

NEXUS = Nexus("iqn.i,i,0x1", "iqn.t,t,0x1")


def test_opcode_classes() -> None:
    assert [OPCODE_KIND[op] for op in (0x08, 0x28, 0xA8, 0x88)] == [READ] * 4
    assert [OPCODE_KIND[op] for op in (0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E, 0x9C)] == [WRITE] * 8
    assert [OPCODE_KIND[op] for op in (0x00, 0x12, 0x41, 0x93, 0x89, 0x42, 0x35)] == [OTHER] * 7


def test_sense_key_of_both_formats() -> None:
    reason = SenseReason.LBA_OUT_OF_RANGE
    assert sense_key(build_sense(reason)) == sense_key(build_sense(reason, descriptor=True)) == 5
    assert sense_key(None) == sense_key(b"") == 0


def test_account_counts_one_command_once() -> None:
    c = IoCounters()
    read = ScsiRequest(bytes([0x28]) + bytes(9), 0, NEXUS, None, 1)
    write = ScsiRequest(bytes([0x2A]) + bytes(9), 0, NEXUS, b"w" * 1024, 2)
    account(c, read, ScsiResult(data=b"r" * 4096), perf_counter_ns())
    account(c, write, ScsiResult(), perf_counter_ns())
    bad = ScsiResult(status=CHECK_CONDITION, sense=build_sense(SenseReason.LBA_OUT_OF_RANGE, descriptor=True))
    account(c, read, bad, perf_counter_ns())
    account(c, read, ScsiResult(status=RESERVATION_CONFLICT), perf_counter_ns())
    s = c.snapshot()
    assert (s.read_commands, s.write_commands, s.read_bytes, s.written_bytes) == (3, 1, 4096, 1024)
    assert s.errors == {"ILLEGAL REQUEST": 1} and s.other_status == 1
    assert sum(s.latency_buckets) == 4 and s.latency_seconds > 0


def test_parts_show_in_the_totals_live_and_after_they_end() -> None:
    """An LU's totals are what ended sessions counted plus the live sessions' parts; a session's
    part counts each command once and becomes part of the totals when it detaches."""
    totals = IoCounters()
    a, b = object(), object()
    part_a, part_b = totals.attach(a), totals.attach(b)
    assert totals.attach(a) is part_a and part_a is not part_b
    part_a.record(READ, 4096, 1000, 0, None)
    part_b.record(WRITE, 512, 1000, 0, None)
    part_b.record(WRITE, 512, 1000, CHECK_CONDITION, build_sense(SenseReason.LBA_OUT_OF_RANGE))
    live = totals.snapshot()
    assert (live.read_commands, live.write_commands, live.read_bytes, live.written_bytes) == (1, 2, 4096, 1024)
    assert live.errors == {"ILLEGAL REQUEST": 1}
    totals.detach(a)
    totals.detach(a)  # twice: nothing counted twice
    assert totals.snapshot() == live and list(totals.parts) == [b]
    totals.detach(b)
    assert totals.snapshot() == live and not totals.parts
    again = totals.attach(a)  # a new part for an owner that came back
    again.record(OTHER, 0, 10, 0, None)
    assert totals.snapshot().other_commands == 1 and totals.snapshot().read_commands == 1


def test_latency_buckets_are_log2_microseconds() -> None:
    c = IoCounters()
    for ns in (0, 999, 1000, 1999, 2000, 3_999_999, 10**12):
        c.record(OTHER, 0, ns, 0, None)
    buckets = c.snapshot().latency_buckets
    assert len(buckets) == LATENCY_BUCKETS
    # < 1 us: bucket 0; 1 us: bucket 1 (< 2 us); 2..3.99 ms: bucket 12 (< 4096 us); 1000 s: the last
    assert (buckets[0], buckets[1], buckets[2], buckets[12], buckets[-1]) == (2, 2, 1, 1, 1)


def test_add_aggregates() -> None:
    a, b = IoCounters(), IoCounters()
    a.record(READ, 10, 5000, 0, None)
    b.record(READ, 5, 5000, CHECK_CONDITION, build_sense(SenseReason.LBA_OUT_OF_RANGE))
    a.add(b)
    snap = a.snapshot()
    assert (snap.read_commands, snap.read_bytes, snap.errors) == (2, 15, {"ILLEGAL REQUEST": 1})
