"""The contract every block backend keeps (storage/base.py), run against memory, file, device and
Ceph RBD (an image on the session's private cluster, tests/rbd/cluster.py).

Geometry, round trips at the edges, range/length/read-only refusals, flush and FUA, unmap and
allocation maps (exact against a reference model, at the file system's allocation unit), WRITE
SAME, resize, close, and Hypothesis sequences of writes/unmaps compared with a bytearray model.
"""

from __future__ import annotations

import array
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyscsi_target.storage import (
    Backend,
    BackendClosed,
    BadLength,
    OutOfRange,
    ReadOnly,
    StorageError,
)

from .conftest import Make, allocation_unit, open_kind
from .reference import Reference

BLOCK_SIZES = (512, 4096)
RESIZABLE = {"memory", "file", "rbd"}
PERSISTENT = ("file", "device")


@pytest.fixture(params=BLOCK_SIZES)
def bs(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def payload(nbytes: int, seed: int = 1) -> bytes:
    """Bytes that differ from block to block (251 is prime, block sizes are powers of two)."""
    return ((np.arange(nbytes, dtype=np.uint32) * 7 + seed) % 251).astype(np.uint8).tobytes()


def check_runs(backend: Backend, ref: Reference, lba: int, nblocks: int) -> None:
    """Runs tile the range in order; exact for thin backends, else at least every written block mapped."""
    runs = list(backend.allocation(lba, nblocks))
    if backend.supports_unmap:
        assert runs == ref.runs(lba, nblocks)
        return
    pos = lba
    for start, count, mapped in runs:
        assert start == pos and count > 0
        assert mapped or not any(ref.block_mapped(b) for b in range(start, start + count))
        pos += count
    assert pos == lba + nblocks


# ---- geometry and round trips ------------------------------------------------------------------


def test_geometry(make: Make, bs: int) -> None:
    b = make(10, bs)
    assert (b.num_blocks, b.block_size, b.size_bytes, b.read_only) == (10, bs, 10 * bs, False)


def test_new_extent_reads_zeroes(make: Make, bs: int) -> None:
    b = make(8, bs)
    assert bytes(b.read(0, 8)) == bytes(8 * bs)


@pytest.mark.parametrize(("lba", "nblocks"), [(0, 1), (63, 1), (0, 64), (17, 5), (62, 2)])
def test_round_trip_at_boundaries(make: Make, bs: int, lba: int, nblocks: int) -> None:
    b = make(64, bs)
    data = payload(nblocks * bs, seed=lba)
    b.write(lba, data)
    got = b.read(lba, nblocks)
    assert isinstance(got, memoryview)
    assert len(got) == nblocks * bs and bytes(got) == data
    expected = bytearray(64 * bs)
    expected[lba * bs : (lba + nblocks) * bs] = data
    assert bytes(b.read(0, 64)) == expected


def test_write_accepts_any_contiguous_buffer(make: Make) -> None:
    b = make(8)
    words = array.array("I", range(128))  # 512 bytes, item format "I", not "B"
    b.write(0, memoryview(words))  # a view whose format is "I"
    b.write(1, bytearray(b"\x01" * 512))
    b.write(2, memoryview(b"\x02" * 1024)[512:])
    b.write(3, np.full(512, 3, dtype=np.uint8).data)
    assert bytes(b.read(0, 1)) == words.tobytes()
    assert bytes(b.read(1, 3)) == b"\x01" * 512 + b"\x02" * 512 + b"\x03" * 512


def test_empty_transfers_are_no_ops(make: Make) -> None:
    b = make(8)
    assert bytes(b.read(0, 0)) == b"" and bytes(b.read(8, 0)) == b""
    b.write(8, b"")
    b.unmap(3, 0)
    b.write_same(3, 0, bytes(512))
    assert list(b.allocation(8, 0)) == []
    assert bytes(b.read(0, 8)) == bytes(8 * 512)


def test_zero_block_extent(make: Make, bs: int) -> None:
    b = make(0, bs)
    assert b.num_blocks == 0 and b.size_bytes == 0
    assert bytes(b.read(0, 0)) == b""
    b.flush()
    with pytest.raises(OutOfRange):
        b.read(0, 1)
    with pytest.raises(OutOfRange):
        b.write(0, bytes(bs))


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("lba", "nblocks"), [(64, 1), (63, 2), (-1, 1), (0, -1), (0, 65), (65, 0)])
def test_out_of_range_is_refused_everywhere(make: Make, lba: int, nblocks: int) -> None:
    b = make(64)
    calls = [
        lambda: b.read(lba, nblocks),
        lambda: b.flush(lba, nblocks),
        lambda: b.unmap(lba, nblocks),
        lambda: b.write_same(lba, nblocks, bytes(512)),
        lambda: b.allocation(lba, nblocks),  # checked on call, not on first iteration
    ]
    if nblocks >= 0:  # a buffer cannot hold a negative number of blocks
        calls.append(lambda: b.write(lba, bytes(nblocks * 512)))
    for call in calls:
        with pytest.raises(OutOfRange):
            call()
    assert bytes(b.read(0, 64)) == bytes(64 * 512)


def test_partial_blocks_are_refused(make: Make, bs: int) -> None:
    b = make(8, bs)
    with pytest.raises(BadLength):
        b.write(0, bytes(bs + 1))
    with pytest.raises(BadLength):
        b.write_same(0, 2, bytes(bs - 1))
    with pytest.raises(BadLength):
        b.write_same(0, 2, bytes(2 * bs))
    assert issubclass(BadLength, StorageError)
    assert bytes(b.read(0, 8)) == bytes(8 * bs)


def test_read_only_refuses_every_change(make: Make, bs: int) -> None:
    b = make(8, bs, read_only=True)
    assert b.read_only
    for call in (
        lambda: b.write(0, bytes(bs)),
        lambda: b.write_fua(0, bytes(bs)),
        lambda: b.unmap(0, 1),
        lambda: b.write_same(0, 2, bytes(bs)),
    ):
        with pytest.raises(ReadOnly):
            call()
    assert bytes(b.read(0, 8)) == bytes(8 * bs)
    b.flush()


# ---- durability --------------------------------------------------------------------------------


def test_flush_ranges(make: Make, bs: int) -> None:
    b = make(16, bs)
    b.write(3, payload(2 * bs))
    b.flush(3, 2)
    b.flush(15, 1)
    b.flush(5, 0)  # to the end
    b.flush()
    assert bytes(b.read(3, 2)) == payload(2 * bs)


@pytest.mark.parametrize("kind", PERSISTENT)
def test_flushed_data_survives_reopen(kind: str, tmp_path: Path, bs: int) -> None:
    path = tmp_path / "extent.img"
    b = open_kind(kind, path, 16, bs, False)
    b.write(5, payload(3 * bs))
    b.flush()
    b.close()
    again = open_kind(kind, path, 16, bs, True)
    assert bytes(again.read(5, 3)) == payload(3 * bs)
    again.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_write_fua_lands_in_the_file(kind: str, tmp_path: Path, bs: int) -> None:
    path = tmp_path / "extent.img"
    b = open_kind(kind, path, 16, bs, False)
    b.write_fua(7, payload(2 * bs, seed=3))
    with open(path, "rb") as f:
        f.seek(7 * bs)
        assert f.read(2 * bs) == payload(2 * bs, seed=3)
    b.close()


def test_write_fua_round_trip(make: Make) -> None:
    b = make(8)
    b.write_fua(2, payload(1024))
    assert bytes(b.read(2, 2)) == payload(1024)


# ---- provisioning ------------------------------------------------------------------------------


def test_unmap_then_read_zeroes(make: Make, bs: int) -> None:
    b = make(16, bs)
    data = payload(16 * bs)
    b.write(0, data)
    b.unmap(4, 3)
    expected = bytearray(data)
    expected[4 * bs : 7 * bs] = bytes(3 * bs)
    assert bytes(b.read(0, 16)) == expected


def test_allocation_after_writes_and_unmaps(make: Make, kind: str, tmp_path: Path, bs: int) -> None:
    n = 64
    b = make(n, bs)
    ref = Reference(n, bs, allocation_unit(kind, tmp_path, bs))
    check_runs(b, ref, 0, n)
    for lba, count in ((3, 2), (20, 10), (63, 1), (40, 16)):
        b.write(lba, payload(count * bs, seed=lba))
        ref.write(lba, payload(count * bs, seed=lba))
    check_runs(b, ref, 0, n)
    for lba, count in ((22, 3), (40, 16), (0, 8)):
        b.unmap(lba, count)
        ref.unmap(lba, count)
    check_runs(b, ref, 0, n)
    check_runs(b, ref, 5, 30)
    check_runs(b, ref, 63, 1)
    assert bytes(b.read(0, n)) == ref.data


def test_thin_backends_report_deallocated_extent(make: Make, kind: str) -> None:
    b = make(32)
    if b.supports_unmap:
        assert list(b.allocation(0, 32)) == [(0, 32, False)]
    b.write(0, bytes(32 * 512))
    assert list(b.allocation(0, 32)) == [(0, 32, True)]


def test_write_same(make: Make, bs: int) -> None:
    b = make(16, bs)
    block = payload(bs, seed=9)
    b.write_same(2, 5, block)
    assert bytes(b.read(2, 5)) == block * 5
    assert bytes(b.read(0, 2)) == bytes(2 * bs) and bytes(b.read(7, 9)) == bytes(9 * bs)
    b.write_same(3, 2, bytes(bs))
    assert bytes(b.read(2, 5)) == block + bytes(2 * bs) + block * 2


def test_write_same_larger_than_one_fill_chunk(make: Make) -> None:
    b = make(3000)  # 1.5 MiB: crosses the 1 MiB fill chunk
    block = payload(512, seed=4)
    b.write_same(1, 2999, block)
    assert bytes(b.read(0, 1)) == bytes(512)
    assert bytes(b.read(1, 2999)) == block * 2999


# ---- resize and close --------------------------------------------------------------------------


def test_resize(make: Make, kind: str, bs: int) -> None:
    b = make(8, bs)
    data = payload(8 * bs)
    b.write(0, data)
    if kind not in RESIZABLE:
        with pytest.raises(StorageError):
            b.resize(16 * bs)
        assert b.num_blocks == 8
        return
    b.resize(16 * bs)
    assert b.num_blocks == 16
    assert bytes(b.read(0, 8)) == data and bytes(b.read(8, 8)) == bytes(8 * bs)
    b.write(15, payload(bs, seed=5))
    b.resize(4 * bs)
    assert b.num_blocks == 4 and bytes(b.read(0, 4)) == data[: 4 * bs]
    with pytest.raises(OutOfRange):
        b.read(4, 1)
    b.resize(8 * bs)
    assert bytes(b.read(0, 8)) == data[: 4 * bs] + bytes(4 * bs)
    b.resize(5 * bs + 100)  # only whole blocks are exposed
    assert b.num_blocks == 5
    with pytest.raises(StorageError):
        b.resize(-1)


def test_resize_read_only_is_refused(make: Make, kind: str) -> None:
    b = make(8, read_only=True)
    with pytest.raises(ReadOnly if kind in RESIZABLE else StorageError):
        b.resize(16 * 512)
    assert b.num_blocks == 8


def test_close(make: Make) -> None:
    b = make(8)
    b.close()
    b.close()  # idempotent
    for call in (
        lambda: b.read(0, 1),
        lambda: b.write(0, bytes(512)),
        lambda: b.flush(),
        lambda: b.unmap(0, 1),
        lambda: b.write_same(0, 1, bytes(512)),
        lambda: b.allocation(0, 1),
    ):
        with pytest.raises(BackendClosed):
            call()


# ---- random sequences against the reference model ------------------------------------------------

N_BLOCKS = 24
_op = st.tuples(
    st.sampled_from(("write", "unmap", "same", "fua")),
    st.integers(0, N_BLOCKS - 1),
    st.integers(1, 9),
    st.integers(0, 250),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=16))
def test_random_operations_match_reference(
    make: Make, kind: str, tmp_path: Path, bs: int, ops: list[tuple[str, int, int, int]]
) -> None:
    b = make(N_BLOCKS, bs)
    ref = Reference(N_BLOCKS, bs, allocation_unit(kind, tmp_path, bs))
    try:
        for name, lba, count, seed in ops:
            count = min(count, N_BLOCKS - lba)
            if name == "unmap":
                b.unmap(lba, count)
                ref.unmap(lba, count)
                continue
            data = payload(bs, seed) * count if name == "same" else payload(count * bs, seed)
            if name == "same":
                b.write_same(lba, count, data[:bs])
            elif name == "fua":
                b.write_fua(lba, data)
            else:
                b.write(lba, data)
            ref.write(lba, data)
        assert bytes(b.read(0, N_BLOCKS)) == ref.data
        check_runs(b, ref, 0, N_BLOCKS)
    finally:
        b.close()
