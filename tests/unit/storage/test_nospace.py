"""A full file system must give NoSpace, never SIGBUS: stores into holes of a shared mapping fault
with SIGBUS when no block can be allocated, so FileBackend reserves the range first (file.py).

The scenario runs in a child process so that a regression kills the child, not the test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .privileged import TINY_FS_BYTES

SCENARIO = """
import sys
from pyscsi_target.storage import FileBackend, NoSpace

b = FileBackend(sys.argv[1], block_size=4096, size_bytes=1 << 20, create=True)
written = 0
try:
    for lba in range(256):
        b.write(lba, bytes([lba % 250 + 1]) * 4096)
        written += 1
except NoSpace:
    pass
print("written", written)
try:
    b.write_same(100, 100, b"s" * 4096)
except NoSpace:
    print("write_same refused")
assert all(bytes(b.read(lba, 1)) == bytes([lba % 250 + 1]) * 4096 for lba in range(written))
b.unmap(0, 2)
b.write(200, b"r" * 4096)
b.flush()
assert bytes(b.read(200, 1)) == b"r" * 4096
print("recovered")
b.close()
"""


def test_full_file_system_gives_nospace(tiny_fs: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(tiny_fs / "extent.img")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # -7 would be SIGBUS
    lines = done.stdout.split("\n")
    written = int(lines[0].split()[1])
    assert 0 < written < TINY_FS_BYTES // 4096 + 1
    assert lines[1:3] == ["write_same refused", "recovered"]
