"""FileBackend specifics: sparse creation, byte placement, reads that are private copies and never
fault through the mapping, opening rules, the fsyncgate latch through the `flush_fn` hook, resize
with outstanding reads, hole punching."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pyscsi_target.storage import FileBackend, FlushFailed, MediumError, StorageError
from pyscsi_target.storage._mapping import Mapping, is_mapped_view
from pyscsi_target.storage.file import msync_range

MiB = 1 << 20


def test_creation_is_sparse(tmp_path: Path) -> None:
    path = tmp_path / "thin.img"
    b = FileBackend(path, size_bytes=64 * MiB, create=True)
    st = os.stat(path)
    assert st.st_size == 64 * MiB and st.st_blocks == 0
    assert b.num_blocks == 64 * MiB // 512
    assert oct(st.st_mode & 0o777) == oct(0o600)
    b.close()


def test_data_lands_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    b = FileBackend(path, block_size=512, size_bytes=8192, create=True)
    b.write(5, b"A" * 512 + b"B" * 512)
    b.flush()
    raw = path.read_bytes()
    assert raw[2560:3584] == b"A" * 512 + b"B" * 512
    assert raw[:2560] == bytes(2560) and raw[3584:] == bytes(8192 - 3584)
    b.close()


def test_read_is_a_private_copy(tmp_path: Path) -> None:
    b = FileBackend(tmp_path / "x.img", size_bytes=8192, create=True)
    b.write(2, b"y" * 512)
    view = b.read(2, 1)
    assert not is_mapped_view(view)
    b.write(2, b"z" * 512)
    assert bytes(view) == b"y" * 512  # a snapshot: later writes do not show through
    assert bytes(b.read(2, 1)) == b"z" * 512
    b.close()


def test_reads_and_writes_leave_the_mapping_untouched(tmp_path: Path) -> None:
    """No page of the extent enters the process's resident set (mincore-free check: /proc's
    per-mapping Rss of the extent's mapping stays 0 kB after I/O through the backend)."""
    path = tmp_path / "x.img"
    b = FileBackend(path, block_size=4096, size_bytes=4 * MiB, create=True)
    b.write(0, b"w" * MiB)
    b.write_same(256, 256, b"s" * 4096)
    assert bytes(b.read(0, 512))[:4] == b"wwww"
    assert _mapped_rss_kib(path) == 0
    b.close()


def _mapped_rss_kib(path: Path) -> int:
    """Rss of the mapping of `path` in this process, from /proc/self/smaps."""
    rss, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5:
                inside = line.rstrip().endswith(str(path))
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1])
    return rss


def test_never_written_regions_read_fast(tmp_path: Path) -> None:
    """Reading holes of a sparse file behind a written region costs one page per read, not a
    read-around window per page fault (the 100-reads/s problem of a mapped sparse LUN)."""
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.write(b"d" * MiB)
        f.truncate(256 * MiB)
    b = FileBackend(path, block_size=4096)
    for i in range(2000):
        assert bytes(b.read(256 + (i * 7919) % (b.num_blocks - 256), 1)) == bytes(4096)
    assert _mapped_rss_kib(path) == 0
    b.close()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such file"):
        FileBackend(tmp_path / "missing.img")
    with pytest.raises(StorageError, match="no such file"):
        FileBackend(tmp_path / "missing.img", read_only=True, create=True)  # read-only never creates
    with pytest.raises(StorageError):
        FileBackend(tmp_path)  # a directory
    with pytest.raises(StorageError, match="not a regular file"):
        FileBackend(tmp_path, read_only=True)
    with pytest.raises(StorageError, match="not a regular file"):
        FileBackend("/dev/null")
    for bad in (0, 256, 1000, 1 << 21):
        with pytest.raises(StorageError, match="block size"):
            FileBackend(tmp_path / "x.img", block_size=bad, create=True)
    with pytest.raises(StorageError, match="non-negative"):
        FileBackend(tmp_path / "y.img", size_bytes=-1, create=True)
    assert list(tmp_path.iterdir()) == []  # arguments are checked before anything is created


def test_only_whole_blocks_are_exposed(tmp_path: Path) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(b"t" * 1000)
    b = FileBackend(path)
    assert b.num_blocks == 1
    b.write(0, bytes(512))
    b.flush()
    assert path.read_bytes() == bytes(512) + b"t" * 488  # the partial tail is never touched
    b.close()


def test_zero_length_file(tmp_path: Path) -> None:
    b = FileBackend(tmp_path / "empty.img", create=True)
    assert b.num_blocks == 0
    b.flush()
    b.resize(4096)
    b.write(7, b"q" * 512)
    assert b.num_blocks == 8 and bytes(b.read(7, 1)) == b"q" * 512
    b.close()


def test_size_on_open_grows_but_never_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(b"d" * 4096)
    b = FileBackend(path, size_bytes=2048)
    assert b.num_blocks == 8 and os.path.getsize(path) == 4096
    b.close()
    b = FileBackend(path, size_bytes=8192)
    assert b.num_blocks == 16 and bytes(b.read(0, 8)) == b"d" * 4096 and bytes(b.read(8, 8)) == bytes(4096)
    b.close()
    with pytest.raises(StorageError, match="read-only"):
        FileBackend(path, read_only=True, size_bytes=1 << 20)
    assert os.path.getsize(path) == 8192


class FailingFlush:
    """A flush_fn that fails with EIO the first `failures` times, then does the real msync."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[int, int]] = []

    def __call__(self, mapping: Mapping, offset: int, length: int) -> None:
        self.calls.append((offset, length))
        if len(self.calls) <= self.failures:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        msync_range(mapping, offset, length)


def test_failed_flush_latches_until_cleared(tmp_path: Path) -> None:
    hook = FailingFlush(failures=1)
    b = FileBackend(tmp_path / "x.img", size_bytes=8192, create=True, flush_fn=hook)
    b.write(0, b"a" * 512)
    with pytest.raises(FlushFailed) as info:
        b.flush()
    assert isinstance(info.value, MediumError) and isinstance(info.value.__cause__, OSError)
    # the hook would now succeed, but fsyncgate says the failed data may be gone: stay failed
    for call in (
        lambda: b.flush(),
        lambda: b.write(1, b"b" * 512),
        lambda: b.write_fua(1, b"b" * 512),
        lambda: b.unmap(0, 1),
        lambda: b.write_same(0, 2, bytes(512)),
        lambda: b.resize(16384),
    ):
        with pytest.raises(FlushFailed):
            call()
    assert len(hook.calls) == 1  # no retry happened behind our back
    assert bytes(b.read(0, 1)) == b"a" * 512  # reads still work
    b.clear_fault()
    b.write(1, b"b" * 512)
    b.flush()
    assert len(hook.calls) == 2
    b.close()


def test_fua_syncs_the_page_aligned_range(tmp_path: Path) -> None:
    hook = FailingFlush(failures=0)
    b = FileBackend(tmp_path / "x.img", size_bytes=64 * 512, create=True, flush_fn=hook)
    b.write_fua(9, b"f" * 1024)  # bytes 4608..5632
    assert hook.calls == [(4096, 5632 - 4096)]
    b.flush(0, 0)
    assert hook.calls[-1] == (0, 64 * 512)
    b.close()


def test_resize_with_outstanding_reads(tmp_path: Path) -> None:
    b = FileBackend(tmp_path / "x.img", size_bytes=8192, create=True)
    b.write(15, b"e" * 512)
    view = b.read(15, 1)
    b.resize(4096)  # reads are copies: shrinking never waits for them
    assert b.num_blocks == 8 and os.path.getsize(tmp_path / "x.img") == 4096
    assert bytes(view) == b"e" * 512
    b.resize(16384)
    assert b.num_blocks == 32 and bytes(b.read(15, 1)) == bytes(512)  # grown sparse: zeroes
    b.write(31, b"g" * 512)
    b.flush()
    assert bytes(b.read(31, 1)) == b"g" * 512
    b.close()


def test_close_with_an_outstanding_read(tmp_path: Path) -> None:
    b = FileBackend(tmp_path / "x.img", size_bytes=4096, create=True)
    b.write(0, b"c" * 512)
    view = b.read(0, 1)
    b.close()
    assert bytes(view) == b"c" * 512


def test_unmap_frees_disk_space_and_resize_stays_sparse(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    b = FileBackend(path, block_size=4096, size_bytes=MiB, create=True)
    assert b.supports_unmap
    b.write(0, b"\x01" * MiB)
    b.flush()
    assert os.stat(path).st_blocks >= MiB // 512
    b.unmap(0, 128)
    b.flush()
    assert os.stat(path).st_blocks == 128 * 4096 // 512  # 128 of 256 blocks freed
    b.resize(64 * MiB)
    assert os.stat(path).st_blocks == 128 * 4096 // 512
    assert list(b.allocation(0, b.num_blocks)) == [(0, 128, False), (128, 128, True), (256, 16128, False)]
    b.close()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_mapped_file_extent_holds_one_descriptor(tmp_path: Path) -> None:
    """Issue #10 item 11: mmap.mmap dup()ed the descriptor, so each File extent held two."""
    before = _open_descriptors()
    backends = [FileBackend(tmp_path / f"{i}.img", size_bytes=1 << 20, create=True) for i in range(8)]
    assert all(b._mm is not None for b in backends)  # mapped, for msync and large reads
    assert _open_descriptors() - before == len(backends)
    for b in backends:
        b.close()
    assert _open_descriptors() == before


def test_a_backend_built_on_an_open_descriptor_owns_it(tmp_path: Path) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(b"\0" * 4096)
    fd = os.open(path, os.O_RDWR)
    b = FileBackend("named only in messages", fd=fd)
    b.write(0, b"\1" * 512)
    assert path.read_bytes()[:512] == b"\1" * 512
    b.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the backend
    not_regular = os.open(tmp_path, os.O_RDONLY)
    with pytest.raises(StorageError, match="not a regular file"):
        FileBackend("dir", fd=not_regular)
    with pytest.raises(OSError):
        os.fstat(not_regular)  # closed on refusal too
