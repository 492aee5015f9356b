"""The event loop's fast path into the backends (docs/performance.md): `read_nowait()` serves
data from the page cache (large reads of a file as views of its mapping, trimmed so the resident
set stays bounded) and raises WouldBlock when it would have to wait for the device;
`write_nowait()` writes unless recent writes stalled (StallGuard), then raises WouldBlock."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyscsi_target.storage import (
    Backend,
    BackendClosed,
    BlockDeviceBackend,
    FileBackend,
    MemoryBackend,
    OutOfRange,
    StorageError,
    WouldBlock,
)
from pyscsi_target.storage._common import WRITE_BACKOFF_S, WRITE_STALL_S, StallGuard, voluntary_switches
from pyscsi_target.storage._mapping import is_mapped_view
from pyscsi_target.storage.file import MAPPED_READ_MIN, MAPPED_TRIM_BYTES

BS = 4096
BLOCKS = 256


@pytest.fixture(params=["file", "device"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "extent.img"
    with open(path, "wb") as f:
        f.truncate(BLOCKS * BS)
    b: Backend = FileBackend(path, BS) if request.param == "file" else BlockDeviceBackend(path, BS)
    yield b
    b.close()


def payload(nblocks: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(nblocks * BS))


def evict(path: Path, offset: int) -> bool:
    """Drop the file's clean pages from the page cache; True if the kernel did (probe: a
    RWF_NOWAIT read of the page at `offset` then fails with EAGAIN)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(BS)], offset, os.RWF_NOWAIT)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)


def test_cached_data_is_read_without_waiting(backend: Backend) -> None:
    data = payload(8, seed=3)
    backend.write(16, data)  # now in the page cache
    got = backend.read_nowait(16, 8)
    assert isinstance(got, memoryview) and bytes(got) == data


def test_data_on_the_device_would_block_until_read(backend: Backend, tmp_path: Path) -> None:
    data = payload(4, seed=9)
    backend.write(100, data)
    backend.flush()
    if not evict(tmp_path / "extent.img", 100 * BS):
        pytest.skip("this file system keeps the pages cached (no POSIX_FADV_DONTNEED eviction)")
    with pytest.raises(WouldBlock):
        backend.read_nowait(100, 4)
    assert bytes(backend.read(100, 4)) == data  # the waiting read brings them in ...
    assert bytes(backend.read_nowait(100, 4)) == data  # ... and then they are at hand


def test_read_nowait_checks_like_read(backend: Backend) -> None:
    with pytest.raises(OutOfRange):
        backend.read_nowait(BLOCKS - 1, 2)
    backend.close()
    with pytest.raises(BackendClosed):
        backend.read_nowait(0, 1)


def test_write_nowait_writes(backend: Backend) -> None:
    data = payload(3, seed=5)
    backend.write_nowait(7, data)
    assert bytes(backend.read(7, 3)) == data


def test_memory_backend_never_waits() -> None:
    b = MemoryBackend(8, 512)
    b.write_nowait(1, b"m" * 512)
    assert bytes(b.read_nowait(1, 1)) == b"m" * 512


class PlainFileBackend(Backend):
    """A backend that only implements the interface's required methods (reads with pread, so
    every read may wait for the device), as a new kind starts out (issue #14 item 4)."""

    def __init__(self, path: Path) -> None:
        self.block_size, self.read_only = BS, False
        self._fd = os.open(path, os.O_RDWR)

    @property
    def num_blocks(self) -> int:
        return os.fstat(self._fd).st_size // BS

    def read(self, lba: int, nblocks: int) -> memoryview:
        self._check(lba, nblocks)
        return memoryview(os.pread(self._fd, nblocks * BS, lba * BS))

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        os.pwrite(self._fd, data, lba * BS)

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def test_a_backend_that_does_not_say_it_never_waits_is_read_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "plain.img"
    path.write_bytes(payload(4, seed=11))
    b = PlainFileBackend(path)
    try:
        with pytest.raises(WouldBlock):  # the default read_nowait(): the caller uses a worker thread
            b.read_nowait(0, 1)
        assert bytes(b.read(0, 4)) == payload(4, seed=11)
    finally:
        b.close()


class FakeClock:
    """Time that passes only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSwitches:
    """The thread's voluntary context switches, as a test says they happened."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


def test_stall_guard_backs_off_when_the_device_holds_writes_back_then_tries_again() -> None:
    clock, switches = FakeClock(), FakeSwitches()
    guard = StallGuard(clock, switches)
    writes: list[str] = []

    def quick() -> None:
        writes.append("quick")
        clock.now += WRITE_STALL_S / 2

    def slept() -> None:  # the device made the write wait: the thread slept in the kernel
        writes.append("slept")
        switches.count += 1
        clock.now += WRITE_STALL_S * 3

    guard.check()
    guard.timed(quick)
    guard.check()  # a write within WRITE_STALL_S changes nothing
    guard.timed(slept)
    guard.check()  # one slow write is a suspicion only
    guard.timed(slept)  # the next one confirms it
    with pytest.raises(WouldBlock):
        guard.check()
    clock.now += WRITE_BACKOFF_S * 0.9
    with pytest.raises(WouldBlock):
        guard.check()
    clock.now += WRITE_BACKOFF_S * 0.2
    guard.check()  # backed off long enough: inline again
    assert writes == ["quick", "slept", "slept"]


def test_stall_guard_ignores_writes_the_scheduler_preempted() -> None:
    """Issue #17: on a busy machine the loop is preempted inside a pwrite now and then; that is no
    reason to send a second of writes through the worker threads at twice the CPU each."""
    clock, switches = FakeClock(), FakeSwitches()
    guard = StallGuard(clock, switches)

    def preempted() -> None:  # slow, but the thread never slept: no voluntary switch
        clock.now += WRITE_STALL_S * 3

    def quick() -> None:
        clock.now += WRITE_STALL_S / 2

    for _ in range(5):
        guard.timed(preempted)
        guard.check()
    guard.timed(preempted)
    guard.timed(quick)  # a quick write after a slow one clears the suspicion
    switches.count += 1  # even if the thread sleeps elsewhere (epoll) before the next slow write
    guard.timed(preempted)
    guard.check()


def test_voluntary_switches_counts_this_threads_sleeps() -> None:
    before = voluntary_switches()
    time.sleep(0.01)  # a sleep in the kernel is a voluntary context switch
    assert voluntary_switches() > before


# ---- large reads through the mapping (FileBackend) -------------------------------------------------


def mapped_rss_kib(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    rss, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5:
                inside = line.rstrip().endswith(str(path))
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1])
    return rss


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[FileBackend]:
    path = tmp_path / "big.img"
    b = FileBackend(path, BS, size_bytes=256 << 20, create=True)
    yield b
    b.close()


def test_resident_large_reads_are_views_of_the_mapping(big_file: FileBackend) -> None:
    data = payload(MAPPED_READ_MIN // BS, seed=1)
    big_file.write(10, data)
    view = big_file.read_nowait(10, MAPPED_READ_MIN // BS)
    assert is_mapped_view(view) and bytes(view) == data  # sent without a copy
    small = big_file.read_nowait(10, 1)
    assert not is_mapped_view(small)  # short reads are cheaper to pread
    view.release()


def test_a_large_read_of_pages_on_the_device_would_block(big_file: FileBackend, tmp_path: Path) -> None:
    data = payload(64, seed=2)
    big_file.write(0, data)
    big_file.flush()
    if not evict(tmp_path / "big.img", 0):
        pytest.skip("this file system keeps the pages cached (no POSIX_FADV_DONTNEED eviction)")
    with pytest.raises(WouldBlock):
        big_file.read_nowait(0, 64)
    assert bytes(big_file.read(0, 64)) == data


def test_the_mapping_is_trimmed_so_the_resident_set_stays_bounded(big_file: FileBackend, tmp_path: Path) -> None:
    chunk = (1 << 20) // BS
    big_file.write_same(0, big_file.num_blocks, bytes(range(256)) * (BS // 256))  # 256 MiB, cached
    peak = 0
    for lba in range(0, big_file.num_blocks, chunk):
        view = big_file.read_nowait(lba, chunk)
        assert view[:2] == b"\x00\x01"
        view.release()
        peak = max(peak, mapped_rss_kib(tmp_path / "big.img"))
    assert 0 < peak * 1024 <= MAPPED_TRIM_BYTES + (2 << 20)  # not the 256 MiB that were read


def test_views_keep_their_mapping_through_resize_and_close(big_file: FileBackend) -> None:
    big_file.write(0, payload(16, seed=4))
    view = big_file.read_nowait(0, 16)
    with pytest.raises(StorageError, match="being sent"):
        big_file.resize(16 * BS)  # shrinking under a view being sent would fault
    big_file.resize(512 << 20)  # growing is fine: the old mapping lives on
    assert bytes(view) == payload(16, seed=4)
    big_file.close()
    assert bytes(view) == payload(16, seed=4)
    view.release()
