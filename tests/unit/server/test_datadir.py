"""server/datadir.py: the data directory lock (issue #10 item 8) and private modes (item 4)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pyscsi_target.server.datadir import DataDirInUse, DataDirLock, private_umask, tighten_modes


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DataDirLock.acquire(data)
    assert mode(data) == 0o700 and mode(data / "lock") == 0o600
    assert (data / "lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(DataDirInUse, match=f"data directory {data} is in use by pid {os.getpid()}"):
        DataDirLock.acquire(data)  # flock: even the same process, through another open file
    first.release()
    DataDirLock.acquire(data).release()  # released: free again


def test_modes_are_tightened_never_widened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    (data / "extents").mkdir(parents=True)
    for name, wanted in (("config.db", 0o644), ("extents/a.img", 0o666), ("readonly", 0o400), ("ok", 0o600)):
        (data / name).write_text("x")
        os.chmod(data / name, wanted)
    outside = tmp_path / "outside"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    os.symlink(outside, data / "link")
    os.chmod(data, 0o755)
    os.chmod(data / "extents", 0o775)
    changed = tighten_modes(data)
    assert sorted((p.relative_to(tmp_path).as_posix(), old, new) for p, old, new in changed) == [
        ("data", 0o755, 0o700), ("data/config.db", 0o644, 0o600),
        ("data/extents", 0o775, 0o700), ("data/extents/a.img", 0o666, 0o600)]
    assert mode(data / "readonly") == 0o400 and mode(data / "ok") == 0o600
    assert mode(outside) == 0o644  # a link is not followed
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 4
    assert tighten_modes(data) == []


def test_private_umask_is_restored(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        with private_umask():
            (tmp_path / "f").write_text("x")
            (tmp_path / "d").mkdir()
        (tmp_path / "g").write_text("x")
        assert (mode(tmp_path / "f"), mode(tmp_path / "d"), mode(tmp_path / "g")) == (0o600, 0o700, 0o644)
    finally:
        os.umask(before)


def test_overlapping_private_umasks_restore_the_original(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        first, second = private_umask(), private_umask()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # not nested: the first user leaves first
        (tmp_path / "during").write_text("x")
        second.__exit__(None, None, None)
        (tmp_path / "after").write_text("x")
        assert (mode(tmp_path / "during"), mode(tmp_path / "after")) == (0o600, 0o644)
    finally:
        os.umask(before)
