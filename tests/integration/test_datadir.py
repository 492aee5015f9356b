"""Issue #10 "Safe to run as a service", items 4, 8, 11 (start-up) and 12, against real server
subprocesses (`python -m pyscsi_target serve`) and the real `config export/import` commands.

- 4: the data directory is 0700 and every file in it 0600 (config.db and its WAL hold CHAP secrets);
  files left world-readable by older versions are tightened at start-up, and the log says so.
- 8: a second server on a data directory in use exits at once, with one line naming the holder's
  pid and the directory, having written nothing.
- 11: the soft RLIMIT_NOFILE is raised to the hard limit and the budget logged.
- 12: export is a consistent snapshot that includes changes still in the WAL; import into a fresh
  directory gives a server with the same objects and a LUN that serves; import is refused while a
  server holds the directory.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from pyscsi_target.model import ConfigStore, Target
from tests.support import DEMO_IQN, free_port

from .apiclient import ISCSI, ApiClient
from .reliability import GOOD, READY_MARKER, REPO, STARTUP_TIMEOUT_S, ServerProcess, open_session

#: the soft open-files limit the fd test starts the server with (well below any hard limit)
LOW_SOFT_NOFILE = 256
#: the API resources, in export order
RESOURCES = ("extent", "authorizedinitiator", "authcredential", "target", "targetgroup", "targettoextent", "portal")


class Server(ServerProcess):
    """The demo server with the API on, File extents under `extent_root`."""

    def __init__(self, data_dir: Path, extent_root: Path, *, demo: bool = True) -> None:
        super().__init__(data_dir, f"127.0.0.1:{free_port()}")
        self.api = f"127.0.0.1:{free_port()}"
        self.extent_root = extent_root
        extent_root.mkdir(parents=True, exist_ok=True)  # serve refuses a missing --extent-root (issue #13 item 6)
        self.demo = demo

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "pyscsi_target", "serve", "--data-dir", str(self.data_dir),
                "--api", self.api, "--extent-root", str(self.extent_root), "--log-level", self.log_level]
        return argv + (["--demo", "--demo-portal", self.portal] if self.demo else [])

    def client(self) -> ApiClient:
        host, _, port = self.api.rpartition(":")
        return ApiClient(host, int(port), (self.data_dir / "api-password").read_text().strip())


@asynccontextmanager
async def running(server: Server, **start: Any) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        try:
            await server.start(nursery, "stderr", READY_MARKER, **start)
            yield server
            assert await server.stop() == 0
        finally:
            server.kill_quietly()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`pyscsi-target <args>` as an operator runs it (blocking: the server runs in its own process)."""
    return subprocess.run([sys.executable, "-m", "pyscsi_target", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---- item 8: one server per data directory ---------------------------------------------------------


async def test_second_server_on_the_same_data_dir_exits_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(Server(data, tmp_path / "extents")) as first:
        assert first.proc is not None
        db_before = (data / "config.db").read_bytes()
        # Another API port and portal: on the old code this second server started and ran.
        second = await trio.run_process(Server(data, tmp_path / "extents").argv(), cwd=REPO,
                                        capture_stdout=True, capture_stderr=True, check=False)
        assert second.returncode != 0
        lines = second.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert f"pid {first.proc.pid}" in lines[0] and str(data) in lines[0]
        assert second.stdout == b""  # no demo line, no generated password
        assert (data / "config.db").read_bytes() == db_before
        assert (data / "lock").read_text().strip() == str(first.proc.pid)


# ---- item 4: private modes -------------------------------------------------------------------------


async def test_data_dir_is_private_and_old_modes_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # What an older version left behind: config.db 0644 in a 0755 directory, a 0644 extents/.
    old_umask = os.umask(0o022)
    try:
        (data / "extents").mkdir(parents=True)
        ConfigStore(data / "config.db").close()
        (data / "notes.txt").write_text("operator's file\n")
    finally:
        os.umask(old_umask)
    os.chmod(data, 0o755)
    os.chmod(data / "extents", 0o755)
    os.chmod(data / "config.db", 0o644)
    async with running(Server(data, data / "extents")) as server:
        reply = await server.client().put(f"{ISCSI}/globalconfiguration/", {"iscsi_alua": True})
        assert reply.status == 200  # a write, so that config.db-wal holds data
        for old in ("data", "data/extents", "data/config.db", "data/notes.txt"):
            assert any(old in line and "WARNING" in line for line in server.output["stderr"].splitlines()), old
        assert mode(data) == 0o700 and mode(data / "extents") == 0o700
        files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
        for name in ("api-password", "config.db", "config.db-wal", "config.db-shm", "lock", "extents/demo.img"):
            assert name in files
        assert {f: oct(mode(data / f)) for f in files} == {f: oct(0o600) for f in files}


# ---- item 11: the descriptor budget ----------------------------------------------------------------


async def test_soft_fd_limit_is_raised_to_the_hard_limit_and_logged(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > LOW_SOFT_NOFILE

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_NOFILE, hard))

    async with running(Server(tmp_path / "data", tmp_path / "extents"), preexec_fn=low_soft_limit) as server:
        assert server.proc is not None
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text().splitlines()
        soft_now, hard_now = next(line.split()[3:5] for line in limits if line.startswith("Max open files"))
        assert (int(soft_now), int(hard_now)) == (hard, hard)
        logged = [line for line in server.output["stderr"].splitlines() if "file descriptors available" in line]
        assert len(logged) == 1 and " INFO " in logged[0] and str(hard) in logged[0], logged


# ---- item 12: export, import ------------------------------------------------------------------------


async def add_chap_target(api: ApiClient, extent_root: Path) -> None:
    """A second target with CHAP and its own LUN, all through the API (secrets included)."""
    await api.create("authcredential", {"iscsi_target_auth_tag": 3, "iscsi_target_auth_user": "alice",
                                        "iscsi_target_auth_secret": "s3cret-secret"})
    target = await api.create("target", {"iscsi_target_name": "second"})
    extent = await api.create("extent", {
        "iscsi_target_extent_name": "second", "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(extent_root / "second.img"), "iscsi_target_extent_filesize": "8MB"})
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": 1,
                                     "iscsi_target_authtype": "CHAP", "iscsi_target_authgroup": 3})
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": extent["id"]})


async def api_view(api: ApiClient) -> dict[str, Any]:
    """The configuration as the API shows it, less the running target's facts (extent state)."""
    view = {name: [{k: v for k, v in obj.items() if k != "iscsi_target_extent_state"}
                   for obj in (await api.get(f"{ISCSI}/{name}/")).json()] for name in RESOURCES}
    view["globalconfiguration"] = (await api.get(f"{ISCSI}/globalconfiguration/")).json()
    return view


async def test_export_while_running_includes_changes_still_in_the_wal(tmp_path: Path) -> None:
    data, extents = tmp_path / "data", tmp_path / "extents"
    async with running(Server(data, extents)) as server:
        api = server.client()
        await add_chap_target(api, extents)
        # The change is committed but still only in the WAL: a copy of config.db would miss it.
        assert b'"second"' in (data / "config.db-wal").read_bytes()
        assert b'"second"' not in (data / "config.db").read_bytes()
        out = await trio.to_thread.run_sync(cli, "config", "export", "--data-dir", str(data))
        assert out.returncode == 0 and out.stderr == "", out.stderr
        doc = json.loads(out.stdout)
        view = await api_view(api)
    assert doc["format_version"] == 1
    assert doc["globalconfiguration"] == view.pop("globalconfiguration")
    assert {name: doc[name] for name in RESOURCES} == view
    assert [t["iscsi_target_name"] for t in doc["target"]] == ["demo", "second"]
    assert doc["authcredential"][0]["iscsi_target_auth_secret"] == "s3cret-secret"


async def test_import_into_a_fresh_dir_serves_the_same_configuration(tmp_path: Path) -> None:
    extents = tmp_path / "extents"
    async with running(Server(tmp_path / "old", extents)) as server:
        await add_chap_target(server.client(), extents)
        exported = (await trio.to_thread.run_sync(cli, "config", "export", "--data-dir", str(tmp_path / "old"))).stdout
        before = await api_view(server.client())
    new = tmp_path / "new"
    imported = await trio.to_thread.run_sync(
        lambda: cli("config", "import", "--data-dir", str(new), "--extent-root", str(extents), "-", stdin=exported))
    assert imported.returncode == 0, imported.stderr
    again = await trio.to_thread.run_sync(cli, "config", "export", "--data-dir", str(new))
    assert again.stdout == exported  # the round trip is exact
    restored = Server(new, extents, demo=False)
    async with running(restored) as server:
        assert await api_view(server.client()) == before
        portal = before["portal"][0]["iscsi_target_portal_ips"][0]
        client = await open_session(portal, DEMO_IQN, name="iqn.2026-12.org.example:restore", isid=0x1)
        try:
            assert (await client.read10(0, 8)).status == GOOD
        finally:
            await client.aclose()


async def test_import_is_refused_while_a_server_holds_the_dir(tmp_path: Path) -> None:
    data, extents = tmp_path / "data", tmp_path / "extents"
    async with running(Server(data, extents)) as server:
        assert server.proc is not None
        exported = (await trio.to_thread.run_sync(cli, "config", "export", "--data-dir", str(data))).stdout
        doc = json.loads(exported)
        doc["target"][0]["iscsi_target_alias"] = "changed"
        args = ("config", "import", "--replace", "--data-dir", str(data), "--extent-root", str(extents), "-")
        refused = await trio.to_thread.run_sync(lambda: cli(*args, stdin=json.dumps(doc)))
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [refused.stderr.strip()]
        assert f"pid {server.proc.pid}" in refused.stderr and str(data) in refused.stderr
        target = (await server.client().get(f"{ISCSI}/target/1/")).json()
        assert target["iscsi_target_alias"] is None
    store = ConfigStore(data / "config.db")
    try:
        assert store.load().targets[1] == Target(id=1, name="demo")
    finally:
        store.close()
