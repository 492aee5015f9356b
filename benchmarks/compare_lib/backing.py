"""Identical backing files for both targets, so the comparison reads the same bytes from the same
kind of storage.

Each file gets the same content, written in CHUNK_BYTES pieces: one pseudo-random chunk (fixed
seed) with the chunk's index stamped in its first 8 bytes, so no two chunks are equal and nothing
reads a hole or a run of zeros on one side only. Only the first `span` bytes (the region fio
touches) are written; the rest of the LUN, if any, stays a hole in both files. Both files end
fully written, fsync'd and therefore hot in the page cache: the benchmark compares targets, not
disks.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

#: Size of one prefill write, bytes (1 MiB: large sequential writes, small memory use).
CHUNK_BYTES = 1 << 20
#: Seed of the prefill pattern (any constant: both files must get the same bytes).
PREFILL_SEED = 0x5C51


def _chunk(base: bytes, index: int) -> bytes:
    return index.to_bytes(8, "little") + base[8:]


def prefill(paths: Sequence[Path], size: int, span: int) -> None:
    """Create each path as a `size`-byte file whose first `span` bytes are the same pattern."""
    if size <= 0 or not 0 < span <= size or span % CHUNK_BYTES or size % CHUNK_BYTES:
        raise ValueError(f"size {size} and span {span} must be positive multiples of {CHUNK_BYTES}, span <= size")
    base = random.Random(PREFILL_SEED).randbytes(CHUNK_BYTES)
    fds = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
        for index in range(span // CHUNK_BYTES):
            chunk = _chunk(base, index)
            for fd in fds:
                os.pwrite(fd, chunk, index * CHUNK_BYTES)
        for fd in fds:
            os.ftruncate(fd, size)
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


def same_prefix(a: Path, b: Path, span: int) -> bool:
    """True if the first `span` bytes of a and b are equal (a check of the fairness claim)."""
    with a.open("rb") as fa, b.open("rb") as fb:
        done = 0
        while done < span:
            n = min(CHUNK_BYTES, span - done)
            if fa.read(n) != fb.read(n):
                return False
            done += n
    return True


def warm(path: Path, span: int) -> int:
    """Read the first `span` bytes of `path` (untimed, before a run), so that a page-cache drop
    since the prefill (this shared VM drops caches now and then) does not turn one target's run
    into a disk benchmark: every run starts from the same hot cache. Returns the bytes read."""
    done = 0
    buf = bytearray(CHUNK_BYTES)
    fd = os.open(path, os.O_RDONLY)
    try:
        while done < span:
            got = os.preadv(fd, [buf], done)
            if got <= 0:
                break
            done += got
    finally:
        os.close(fd)
    return done
