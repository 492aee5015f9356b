"""Extent rules: File paths and sizes, Disk/ZVOL devices, NAA and serial, names and choices."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from pyscsi_target.model.extents import MAX_FILESIZE

from . import builders as b
from .conftest import Api, P

PATH = "iscsi_target_extent_path"
SIZE = "iscsi_target_extent_filesize"
DISK = "iscsi_target_extent_disk"
NAA_RE = re.compile(r"0x6589cfc000000[0-9a-f]{19}")


async def _post(api: Api, **body: Any) -> Any:
    return await api.call("POST", f"{P}/extent/", {"iscsi_target_extent_name": "x", **body})


async def _refused(api: Api, **body: Any) -> dict[str, list[str]]:
    response = await _post(api, **body)
    assert response.status_code == 409, await response.get_data()
    errors: dict[str, list[str]] = await response.get_json()
    assert api.control.applied == []
    return errors


# ---- File extents (spec Part A §3.1, Part B §B.2.5) -------------------------------------------


@pytest.mark.parametrize(
    ("size", "normalised"),
    [("10MB", 10 << 20), ("10 MB", 10 << 20), ("1gb", 1 << 30), ("4096", 4096), ("2TB", 2 << 40),
     ("1PB", 1 << 50), ("512B", 512), (1048576, 1 << 20)],
)
async def test_file_extent_sizes_are_normalised_to_bytes(api: Api, size: object, normalised: int) -> None:
    ext = await api.ok("POST", f"{P}/extent/", b.file_extent_body(api, "sized", size=size), status=201)
    assert ext[SIZE] == str(normalised)
    assert ext["iscsi_target_extent_type"] == "File"
    assert ext[PATH] == str(api.roots / "sized.img")


@pytest.mark.parametrize("size", ["10XB", "ten", "-5", "1.5GB", "10 M B", ""])
async def test_bad_sizes(api: Api, size: str) -> None:
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_path=str(api.roots / "f"),
                            iscsi_target_extent_filesize=size)
    assert errors == {SIZE: ["This value can be a size in bytes, or can be postfixed with KB, MB, GB, TB"]}


async def test_size_beyond_off_t_is_refused(api: Api) -> None:
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_path=str(api.roots / "f"),
                            iscsi_target_extent_filesize=str(MAX_FILESIZE + 1))
    assert errors == {SIZE: [f"File size must be at most {MAX_FILESIZE} bytes."]}


async def test_size_must_be_a_multiple_of_the_block_size(api: Api) -> None:
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_path=str(api.roots / "f"),
                            iscsi_target_extent_filesize="1000")
    assert errors == {SIZE: ["File size must be a multiple of block size"]}
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_path=str(api.roots / "f"),
                            iscsi_target_extent_filesize="1KB", iscsi_target_extent_blocksize=4096)
    assert errors == {SIZE: ["File size must be a multiple of block size"]}


async def test_auto_size_needs_an_existing_file(api: Api, make_file: Callable[..., str]) -> None:
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_path=str(api.roots / "none"))
    assert errors == {PATH: ["The file must exist if the extent size is set to auto (0)"]}
    path = make_file("exists.img")
    ext = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_name": "auto", "iscsi_target_extent_type": "File",
                                              PATH: path}, status=201)
    assert ext[SIZE] == "0"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("{roots}", "You need to specify a file inside your volume/dataset."),
        ("{roots}/", "You need to specify a file inside your volume/dataset."),
        ("{roots}/sub/", "You need to specify a filepath, not a directory."),
        ("{roots}/dir", "You need to specify a filepath, not a directory."),
        ("/etc/passwd", "Your path to the extent must reside inside a volume/dataset mount point."),
        ("{roots}/../escape.img", "Your path to the extent must reside inside a volume/dataset mount point."),
        ("{roots}/link/escape.img", "Your path to the extent must reside inside a volume/dataset mount point."),
        ("relative/file.img", "Enter an absolute path."),
        ("{roots}/bad\x00name", "Control characters are not allowed."),
        ("{roots}/plain.img/inner.img", "A parent of this path is a file, not a directory."),
        ("{roots}/fifo", "The extent must be a regular file."),
        ("{roots}/" + "n" * 256, "Each part of the path must be at most 255 bytes long."),
        ("", "This field is required."),
    ],
)
async def test_file_path_rules(api: Api, tmp_path: Any, path: str, message: str) -> None:
    (api.roots / "dir").mkdir()
    (api.roots / "plain.img").write_bytes(b"")
    os.mkfifo(api.roots / "fifo")
    os.symlink(tmp_path, api.roots / "link")  # a symlink out of the root
    errors = await _refused(api, iscsi_target_extent_type="File", iscsi_target_extent_filesize="1MB",
                            iscsi_target_extent_path=path.format(roots=api.roots))
    assert errors == {PATH: [message]}


async def test_a_missing_path_for_a_file_extent(api: Api) -> None:
    assert await _refused(api, iscsi_target_extent_type="File") == {PATH: ["This field is required."]}


async def test_missing_parent_folders_are_fine_and_paths_are_normalised(api: Api) -> None:
    body = b.file_extent_body(api, "deep", iscsi_target_extent_path=str(api.roots) + "//a/./b/deep.img")
    ext = await api.ok("POST", f"{P}/extent/", body, status=201)
    assert ext[PATH] == str(api.roots / "a" / "b" / "deep.img")
    assert not os.path.exists(ext[PATH])  # the server creates it when it applies the change


async def test_one_file_serves_one_extent(api: Api) -> None:
    await b.extent(api, "first")
    body = b.file_extent_body(api, "second", iscsi_target_extent_path=str(api.roots / "first.img"))
    assert await api.conflict("POST", f"{P}/extent/", body) == {
        PATH: ['This file is already used by extent "first".']
    }


# ---- Disk / ZVOL extents (spec Part B §B.2.6) -------------------------------------------------


async def test_zvol_extent_as_proxmox_and_the_provisioner_create_it(api: Api, make_zvol: Callable[..., str]) -> None:
    disk = make_zvol("vm-100-disk-0")
    ext = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk",
                                              "iscsi_target_extent_name": "tank/vm-100-disk-0", DISK: disk},
                       status=201)
    assert ext["iscsi_target_extent_type"] == "ZVOL"
    assert ext[PATH] == str(api.devices / "zvol" / "tank" / "vm-100-disk-0")
    assert ext[SIZE] == "0"
    assert DISK not in ext
    assert NAA_RE.fullmatch(ext["iscsi_target_extent_naa"])
    found = await api.ok("GET", f"{P}/extent/?limit=0&iscsi_target_extent_path={ext[PATH]}")
    assert found == [ext]


async def test_putting_back_what_get_returned_works_for_a_zvol(api: Api, make_zvol: Callable[..., str]) -> None:
    ext = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk",
                                              "iscsi_target_extent_name": "z", DISK: make_zvol("z")}, status=201)
    again = await api.ok("PUT", f"{P}/extent/{ext['id']}/", {**ext, "iscsi_target_extent_comment": "c"})
    assert again == {**ext, "iscsi_target_extent_comment": "c"}
    only = await api.ok("PUT", f"{P}/extent/{ext['id']}/", {"iscsi_target_extent_ro": True})
    assert only["iscsi_target_extent_type"] == "ZVOL" and only["iscsi_target_extent_ro"] is True


async def test_other_disks_are_type_disk(api: Api) -> None:
    (api.devices / "sdb").write_bytes(b"\0" * 4096)
    ext = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk",
                                              "iscsi_target_extent_name": "d", DISK: "sdb"}, status=201)
    assert ext["iscsi_target_extent_type"] == "Disk"
    assert ext[PATH] == str(api.devices / "sdb")
    absolute = await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk",
                                                   "iscsi_target_extent_name": "d2",
                                                   DISK: str(api.devices / "zvol" / "tank" / "abs")}, status=409)
    assert absolute == {DISK: ['Zvol "zvol/tank/abs" does not exist']}


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        (None, "This field is required."),
        ("zvol/tank/missing", 'Zvol "zvol/tank/missing" does not exist'),
        ("sdz", 'Disk "sdz" does not exist'),
        ("zvol/tank", '"zvol/tank" is not a block device.'),
        ("../etc/passwd", "Give the device relative to {devices}, for example zvol/tank/vol1."),
        ("/etc/passwd", "Give the device relative to {devices}, for example zvol/tank/vol1."),
        ("zvol//tank", "Give the device relative to {devices}, for example zvol/tank/vol1."),
    ],
)
async def test_disk_rules(api: Api, disk: str | None, message: str) -> None:
    body: dict[str, Any] = {"iscsi_target_extent_type": "Disk"}
    if disk is not None:
        body[DISK] = disk
    assert await _refused(api, **body) == {DISK: [message.format(devices=api.devices)]}


async def test_one_device_serves_one_extent(api: Api, make_zvol: Callable[..., str]) -> None:
    disk = make_zvol("shared")
    await api.ok("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk", "iscsi_target_extent_name": "a",
                                        DISK: disk}, status=201)
    assert await api.conflict("POST", f"{P}/extent/", {"iscsi_target_extent_type": "Disk",
                                                     "iscsi_target_extent_name": "b", DISK: disk}) == {
        DISK: ['Disk "zvol/tank/shared" is already used by extent "a".']
    }


async def test_changing_the_type(api: Api, make_zvol: Callable[..., str]) -> None:
    ext = await b.extent(api, "switch")
    url = f"{P}/extent/{ext['id']}/"
    as_disk = await api.ok("PUT", url, {"iscsi_target_extent_type": "Disk", DISK: make_zvol("sw")})
    assert as_disk["iscsi_target_extent_type"] == "ZVOL" and as_disk[SIZE] == "0"
    assert await api.conflict("PUT", url, {"iscsi_target_extent_type": "File"}) == {PATH: ["This field is required."]}
    back = await api.ok("PUT", url, {"iscsi_target_extent_type": "File", PATH: str(api.roots / "back.img"),
                                     SIZE: "1MB"})
    assert back["iscsi_target_extent_type"] == "File" and back[SIZE] == str(1 << 20)
    assert back["iscsi_target_extent_naa"] == ext["iscsi_target_extent_naa"]


# ---- identity: NAA, serial, name (spec Part A §2.2, Part B §B.2.7) -----------------------------


async def test_naa_and_serial_are_generated_once_and_unique(api: Api) -> None:
    one, two = await b.extent(api, "one"), await b.extent(api, "two")
    for ext in (one, two):
        assert NAA_RE.fullmatch(ext["iscsi_target_extent_naa"])
        assert re.fullmatch(r"[0-9a-f]{14}", ext["iscsi_target_extent_serial"])
    assert one["iscsi_target_extent_naa"] != two["iscsi_target_extent_naa"]
    assert one["iscsi_target_extent_serial"] != two["iscsi_target_extent_serial"]
    updated = await api.ok("PUT", f"{P}/extent/{one['id']}/", {"iscsi_target_extent_naa": "0x1", SIZE: "2MB",
                                                              "iscsi_target_extent_comment": "x"})
    assert updated["iscsi_target_extent_naa"] == one["iscsi_target_extent_naa"]  # read-only
    assert updated["iscsi_target_extent_serial"] == one["iscsi_target_extent_serial"]


async def test_serial_can_be_set_and_is_checked(api: Api) -> None:
    ext = await b.extent(api, "s", iscsi_target_extent_serial="ABC123")
    assert ext["iscsi_target_extent_serial"] == "ABC123"
    url = f"{P}/extent/{ext['id']}/"
    assert await api.conflict("PUT", url, {"iscsi_target_extent_serial": 'a"b'}) == {
        "iscsi_target_extent_serial": ["Double quotes are not allowed."]}
    assert await api.conflict("PUT", url, {"iscsi_target_extent_serial": "é1"}) == {
        "iscsi_target_extent_serial": ["Use printable ASCII characters."]}
    assert await api.conflict("PUT", url, {"iscsi_target_extent_serial": "x" * 17}) == {
        "iscsi_target_extent_serial": ["Ensure this value has at most 16 characters (it has 17)."]}
    other = await b.extent(api, "t")
    assert await api.conflict("PUT", f"{P}/extent/{other['id']}/", {"iscsi_target_extent_serial": "ABC123"}) == {
        "iscsi_target_extent_serial": ["Serial must be unique."]}
    regenerated = await api.ok("PUT", url, {"iscsi_target_extent_serial": None})
    assert re.fullmatch(r"[0-9a-f]{14}", regenerated["iscsi_target_extent_serial"])


async def test_extent_names(api: Api) -> None:
    await b.extent(api, "pool/vm-100-disk-0")  # slashes are fine (the Proxmox plugin's names)
    body = b.file_extent_body(api, "other", iscsi_target_extent_name="pool/vm-100-disk-0")
    assert await api.conflict("POST", f"{P}/extent/", body) == {
        "iscsi_target_extent_name": ["Extent name must be unique."]}
    body = b.file_extent_body(api, "q", iscsi_target_extent_name='say "hi"')
    assert await api.conflict("POST", f"{P}/extent/", body) == {
        "iscsi_target_extent_name": ["Double quotes are not allowed."]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("iscsi_target_extent_blocksize", 3000, "Select a valid choice. 3000 is not one of the available choices."),
        ("iscsi_target_extent_rpm", "3600", "Select a valid choice. 3600 is not one of the available choices."),
        ("iscsi_target_extent_type", "HAST", "Select a valid choice. HAST is not one of the available choices."),
        ("iscsi_target_extent_avail_threshold", 0, "Ensure this value is greater than or equal to 1."),
        ("iscsi_target_extent_avail_threshold", 100, "Ensure this value is less than or equal to 99."),
        ("iscsi_target_extent_comment", "c" * 121, "Ensure this value has at most 120 characters (it has 121)."),
    ],
)
async def test_extent_choices_and_ranges(api: Api, field: str, value: object, message: str) -> None:
    body = b.file_extent_body(api, "c", **{field: value})
    assert await api.conflict("POST", f"{P}/extent/", body) == {field: [message]}


async def test_every_extent_setting_round_trips(api: Api) -> None:
    settings = {"iscsi_target_extent_blocksize": 4096, "iscsi_target_extent_pblocksize": True,
                "iscsi_target_extent_avail_threshold": 80, "iscsi_target_extent_insecure_tpc": False,
                "iscsi_target_extent_xen": True, "iscsi_target_extent_rpm": "7200", "iscsi_target_extent_ro": True,
                "iscsi_target_extent_legacy": True, "iscsi_target_extent_enabled": False}
    ext = await b.extent(api, "all", **settings)
    assert {k: ext[k] for k in settings} == settings
    stored = api.control.config.extents[ext["id"]]
    assert (stored.blocksize, stored.pblocksize, stored.rpm, stored.ro, stored.enabled) == (
        4096, True, "7200", True, False)
