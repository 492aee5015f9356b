"""Extent kinds are data (issue #14 item 4): one row per kind, looked up by API type name."""

from __future__ import annotations

from pathlib import Path

from pyscsi_target.model import Config, Extent
from pyscsi_target.model.extents import StoragePolicy
from pyscsi_target.model.kinds import DEVICE, FILE, KINDS, RBD, api_types, check_extent, kind_for


def test_the_api_type_names_come_from_the_rows_in_order() -> None:
    assert api_types() == ("File", "Disk", "ZVOL", "RBD")
    assert [kind_for(t) for t in api_types()] == [FILE, DEVICE, DEVICE, RBD]
    assert len({k.name for k in KINDS}) == len(KINDS)


def test_the_rows_carry_what_used_to_be_decided_by_comparing_type_names() -> None:
    assert (FILE.thin, FILE.resizable, FILE.location) == (True, True, "path")
    assert (DEVICE.thin, DEVICE.resizable, DEVICE.location) == (False, False, "disk")
    assert (RBD.thin, RBD.resizable, RBD.location, RBD.remote) == (True, True, "path", True)


def test_a_type_no_kind_has_is_refused_not_taken_for_a_device(tmp_path: Path) -> None:
    """Before, anything but "File" was validated as a Disk (a configuration from elsewhere)."""
    cfg = Config()
    ext = cfg.extents[1] = Extent(1, name="e", type="HAST", path="", disk="sda")
    errors = check_extent(cfg, ext, StoragePolicy((str(tmp_path),), device_root=str(tmp_path)))
    assert kind_for("HAST") is None and kind_for(None) is None
    assert errors == {"iscsi_target_extent_type": ["Select a valid choice. HAST is not one of the available choices."]}
    assert ext.type == "HAST"  # nothing normalised it into a Disk


def test_one_storage_one_extent_goes_through_each_rows_names(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.img").write_bytes(bytes(4096))
    (root / "b.img").hardlink_to(root / "a.img")
    policy = StoragePolicy((str(root),), device_root=str(tmp_path / "dev"))
    cfg = Config()
    cfg.extents[1] = Extent(1, name="first", type="File", path=str(root / "a.img"))
    assert check_extent(cfg, cfg.extents[1], policy) == {}
    second = cfg.extents[2] = Extent(2, name="second", type="File", path=str(root / "b.img"))
    assert check_extent(cfg, second, policy) == {
        "iscsi_target_extent_path": ['This file is already used by extent "first".']}
