"""`pyscsi-target config export|import` (issue #10 item 12), in-process through the CLI's `main`:
what is refused is refused with `field: message` lines and exit status 1, and nothing is written."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pyscsi_target.__main__ import main
from pyscsi_target.model import Config, ConfigStore, Extent, Portal, PortalAddress, Target
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.server.datadir import DataDirLock


def saved(data: Path, cfg: Config) -> None:
    store = ConfigStore(data / "config.db")
    store.save(cfg)
    store.close()


def small_config(extent_root: Path) -> Config:
    cfg = Config()
    cfg.portals[1] = Portal(id=1, tag=1, ips=[PortalAddress("127.0.0.1", 3260)])
    cfg.targets[1] = Target(id=1, name="t1")
    cfg.extents[1] = Extent(id=1, name="e1", type=EXTENT_FILE, path=str(extent_root / "e1.img"),
                            filesize="1048576", naa="0x6589cfc000000" + "1" * 19, serial="S1")
    return cfg


def export(data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["config", "export", "--data-dir", str(data)]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def run_import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    status = main(["config", "import", *args])
    return status, capsys.readouterr().err.splitlines()


def test_export_then_import_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = tmp_path / "extents"
    saved(tmp_path / "old", small_config(roots))
    doc = export(tmp_path / "old", capsys)
    (tmp_path / "backup.json").write_text(json.dumps(doc))
    new = tmp_path / "new"
    status, err = run_import(capsys, "--data-dir", str(new), "--extent-root", str(roots), str(tmp_path / "backup.json"))
    assert (status, err) == (0, [f"pyscsi-target: configuration imported into {new}"])
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in new.iterdir()} == {"config.db": 0o600, "lock": 0o600}
    assert export(new, capsys) == doc


def test_export_of_a_directory_without_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "export", "--data-dir", str(tmp_path / "none")]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "no configuration database" in out.err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(("text", "line"), [
    ("{not json", "__all__: Not a JSON document: "),
    ("[]", "__all__: The file must hold one JSON object"),
    (b"\xff\xfe".decode("latin-1"), "__all__: Not a JSON document"),
])
def test_bad_files_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str) -> None:
    backup = tmp_path / "backup.json"
    backup.write_bytes(text.encode("latin-1"))
    status, err = run_import(capsys, "--data-dir", str(tmp_path / "data"), str(backup))
    assert status == 1 and len(err) == 1 and err[0].startswith(line), err
    assert not (tmp_path / "data").exists()


def test_an_invalid_configuration_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved(tmp_path / "old", small_config(tmp_path / "somewhere-else"))
    doc = export(tmp_path / "old", capsys)
    doc["target"].append({**doc["target"][0], "id": 2})  # a second target of the same name
    (tmp_path / "backup.json").write_text(json.dumps(doc))
    data = tmp_path / "data"
    status, err = run_import(capsys, "--data-dir", str(data), str(tmp_path / "backup.json"))
    assert status == 1
    assert sorted(err) == [
        "extent/1/iscsi_target_extent_path: Your path to the extent must reside inside a volume/dataset mount point.",
        'globalconfiguration/iscsi_basename: Target "t1": A target with that name already exists.',
        'globalconfiguration/iscsi_basename: Target "t1": A target with that name already exists.',
        "target/1/iscsi_target_name: A target with that name already exists.",
        "target/2/iscsi_target_name: A target with that name already exists.",
    ]
    assert not data.exists()


def test_a_configured_directory_needs_replace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = tmp_path / "extents"
    data = tmp_path / "data"
    saved(data, small_config(roots))
    doc = export(data, capsys)
    doc["target"][0]["iscsi_target_alias"] = "new alias"
    (tmp_path / "backup.json").write_text(json.dumps(doc))
    args = ("--data-dir", str(data), "--extent-root", str(roots), str(tmp_path / "backup.json"))
    status, err = run_import(capsys, *args)
    assert status == 1 and len(err) == 1 and "already holds a configuration (3 objects)" in err[0]
    assert export(data, capsys)["target"][0]["iscsi_target_alias"] is None
    assert run_import(capsys, "--replace", *args)[0] == 0
    assert export(data, capsys)["target"][0]["iscsi_target_alias"] == "new alias"


def test_import_is_refused_while_the_directory_is_locked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roots = tmp_path / "extents"
    saved(tmp_path / "old", small_config(roots))
    (tmp_path / "backup.json").write_text(json.dumps(export(tmp_path / "old", capsys)))
    data = tmp_path / "data"
    lock = DataDirLock.acquire(data)
    try:
        status, err = run_import(capsys, "--data-dir", str(data), "--extent-root", str(roots),
                                 str(tmp_path / "backup.json"))
    finally:
        lock.release()
    assert status == 1 and err == [f"pyscsi-target: data directory {data} is in use by pid {os.getpid()} "
                                   f"(lock {data}/lock); stop that server first"]
    assert not (data / "config.db").exists()


def test_a_file_standing_in_for_a_disk_needs_allow_file_devices(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A backup of a server run with --allow-file-devices restores only with the same flag (issue #10
    item 1): import validates like the server that will serve it."""
    devices = tmp_path / "dev"
    devices.mkdir()
    (devices / "standin").write_bytes(b"\0" * 4096)
    cfg = small_config(tmp_path / "extents")
    cfg.extents[2] = Extent(id=2, name="d1", type="Disk", disk="standin", path=str(devices / "standin"),
                            filesize="0", naa="0x6589cfc000000" + "2" * 19, serial="S2")
    saved(tmp_path / "old", cfg)
    doc = export(tmp_path / "old", capsys)
    (tmp_path / "backup.json").write_text(json.dumps(doc))
    common = ["--extent-root", str(tmp_path / "extents"), "--device-root", str(devices), str(tmp_path / "backup.json")]
    status, err = run_import(capsys, "--data-dir", str(tmp_path / "a"), *common)
    assert status == 1 and any("iscsi_target_extent_disk" in line for line in err), err
    assert not (tmp_path / "a" / "config.db").exists()
    status, err = run_import(capsys, "--data-dir", str(tmp_path / "b"), "--allow-file-devices", *common)
    assert status == 0, err
    assert export(tmp_path / "b", capsys) == doc
