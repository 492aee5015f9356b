"""The server half of the kind table (issue #14 item 4): every model kind has an opener."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyscsi_target.model import Extent
from pyscsi_target.model.extents import StoragePolicy
from pyscsi_target.model.kinds import KINDS
from pyscsi_target.scsi.host import STANDALONE
from pyscsi_target.server.extents import ExtentRefused
from pyscsi_target.server.kinds import OPENERS, open_extent


def test_every_kind_has_an_opener_and_every_opener_a_kind() -> None:
    assert set(OPENERS) == {kind.name for kind in KINDS}


def test_an_extent_of_a_type_no_kind_has_is_refused(tmp_path: Path) -> None:
    """Before, anything but "File" was opened as a device."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "sda").write_bytes(bytes(4096))
    policy = StoragePolicy((str(tmp_path),), device_root=str(dev), allow_file_devices=True)
    with pytest.raises(ExtentRefused, match="no extent kind is called 'HAST'"):
        open_extent(Extent(1, name="e", type="HAST", path=str(dev / "sda")), policy, STANDALONE)


def test_each_kind_opens_through_its_own_row(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "sda").write_bytes(bytes(8192))
    policy = StoragePolicy((str(tmp_path / "files"),), device_root=str(dev), allow_file_devices=True)
    live = open_extent(Extent(1, name="d", type="Disk", path=str(dev / "sda")), policy, STANDALONE)
    try:
        assert (live.backend.num_blocks, live.lu.identity.thin) == (16, False)
    finally:
        live.backend.close()
    (tmp_path / "files").mkdir()
    live = open_extent(Extent(2, name="f", type="File", path=str(tmp_path / "files" / "f.img"),
                              filesize="1MB"), policy, STANDALONE)
    try:
        assert (live.backend.size_bytes, live.lu.identity.thin, live.created) == (
            1 << 20, True, [str(tmp_path / "files" / "f.img")])
    finally:
        live.backend.close()
