"""A live refusal at start-up (the configuration's portal cannot listen) is one clear line naming
the API field, as the 409 would, and exit status 1 (issue #14 item 5: the refusal is raised in
model terms and named by the API's field tables)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pyscsi_target.__main__ import main
from pyscsi_target.model import Config, ConfigStore, Portal, PortalAddress


def test_a_portal_that_cannot_listen_stops_the_start_with_the_field_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        data.mkdir()
        (tmp_path / "extents").mkdir()  # a missing --extent-root is refused before anything else
        cfg = Config()
        cfg.portals[1] = Portal(id=1, tag=1, ips=[PortalAddress("127.0.0.1", port)])
        store = ConfigStore(data / "config.db")
        store.save(cfg)
        store.close()
        status = main(["serve", "--data-dir", str(data), "--no-api", "--extent-root", str(tmp_path / "extents")])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert f"pyscsi-target: iscsi_target_portal_ips: Cannot listen on 127.0.0.1:{port}: Address already in use" in err
