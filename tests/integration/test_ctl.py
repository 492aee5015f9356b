"""Issue #13 item 4: `pyscsi-targetctl` against a real server with the API on.

The CLI runs in-process with click's CliRunner (in a worker thread: the server runs in this test's
trio loop) and once as a real subprocess (`python -m pyscsi_target.ctl`). Every noun and verb; with
`--json` the output is exactly the API's JSON (compared with what tests' own API client reads);
exit statuses 0, 1 (the field on stderr), 2 (usage) and 3 (nothing listening).
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from pyscsi_target.ctl.cli import cli
from tests.support import DEMO_IQN, Running, demo_options, free_port, start

from .apiclient import API, ISCSI, ApiClient
from .reliability import REPO, open_session

#: seconds one CLI invocation may take
CLI_TIMEOUT_S = 60


@dataclass
class Ctl:
    run: Running
    api: ApiClient
    base: list[str]
    tmp: Path

    async def __call__(self, *args: str, stdin: str | None = None) -> Result:
        runner = CliRunner()
        with trio.fail_after(CLI_TIMEOUT_S):
            return await trio.to_thread.run_sync(lambda: runner.invoke(cli, [*self.base, *args], input=stdin))

    async def ok(self, *args: str, stdin: str | None = None) -> Result:
        result = await self(*args, stdin=stdin)
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self.ok("--json", *args)).stdout)

    async def api_get(self, path: str) -> Any:
        reply = await self.api.request("GET", path)
        assert reply.status == 200, reply
        return reply.json()


@pytest.fixture
async def ctl(nursery: trio.Nursery, tmp_path: Path) -> Ctl:
    options = demo_options(tmp_path / "data", api=True)
    (tmp_path / "extents").mkdir()
    options.extent_roots = [tmp_path / "extents"]
    run = await start(nursery, options)
    base = ["--api", f"http://{options.api}", "--password-file", str(options.data_dir / "api-password")]
    return Ctl(run, ApiClient.for_server(options), base, tmp_path)


async def test_status(ctl: Ctl) -> None:
    human = (await ctl.ok("status")).stdout
    assert "pyscsi-target-" in human and "RUNNING (enabled)" in human and ctl.run.portal in human
    data = await ctl.json("status")
    assert data["version"] == await ctl.api_get(f"{API}/system/version/")
    assert data["service"] == await ctl.api_get(f"{API}/services/services/iscsitarget/")
    assert data["portals"] == await ctl.api_get(f"{ISCSI}/portal/")
    assert data["counts"] == {"targets": 1, "extents": 1, "sessions": 0}


async def test_list_json_is_the_apis_json(ctl: Ctl) -> None:
    for noun, resource in [("target", "target"), ("extent", "extent"), ("lun", "targettoextent"),
                           ("portal", "portal"), ("chap", "authcredential"), ("initiator", "authorizedinitiator"),
                           ("session", "sessions")]:
        assert await ctl.json(noun, "list") == await ctl.api_get(f"{ISCSI}/{resource}/?limit=0"), noun
    human = (await ctl.ok("target", "list")).stdout.splitlines()
    assert human[0].split() == ["ID", "NAME", "ALIAS", "IQN"]
    assert human[1].split() == ["1", "demo", "-", "iqn.2005-10.org.freenas.ctl:demo"]


async def test_target_extent_lun_lifecycle(ctl: Ctl) -> None:
    path = ctl.tmp / "extents" / "disk1.img"
    target = await ctl.json("target", "create", "disk1", "--alias", "first disk")
    assert target == await ctl.api_get(f"{ISCSI}/target/{target['id']}/")
    groups = await ctl.api_get(f"{ISCSI}/targetgroup/?iscsi_target={target['id']}")
    assert [(g["iscsi_target_portalgroup"], g["iscsi_target_authtype"]) for g in groups] == [(1, "None")]
    extent = await ctl.json("extent", "create", "disk1", "--path", str(path), "--size", "10M")
    assert extent == await ctl.api_get(f"{ISCSI}/extent/{extent['id']}/")
    assert extent["iscsi_target_extent_filesize"] == str(10 << 20) and path.stat().st_size == 10 << 20
    mapping = await ctl.json("lun", "map", "disk1", str(extent["id"]), "--lun", "3")  # by name and by id
    assert (mapping["iscsi_target"], mapping["iscsi_extent"], mapping["iscsi_lunid"]) == (target["id"], extent["id"], 3)
    assert await ctl.json("lun", "list", "disk1") == [mapping]
    assert "disk1" in (await ctl.ok("lun", "list")).stdout
    grown = await ctl.json("extent", "resize", "disk1", "12M")  # live, as the API's PUT
    assert grown["iscsi_target_extent_filesize"] == str(12 << 20) and path.stat().st_size == 12 << 20
    shrink = await ctl("extent", "resize", str(extent["id"]), "1M")
    assert shrink.exit_code == 1 and shrink.stderr.startswith("iscsi_target_extent_filesize: ")
    assert path.stat().st_size == 12 << 20
    assert (await ctl.ok("lun", "unmap", "disk1", "--lun", "3")).stdout == "unmapped LUN 3 of target disk1\n"
    assert await ctl.api_get(f"{ISCSI}/targettoextent/?iscsi_target={target['id']}") == []
    await ctl.ok("lun", "map", "disk1", "disk1")
    await ctl.ok("lun", "unmap", "disk1", "disk1")
    await ctl.ok("extent", "delete", "disk1")
    assert path.exists()  # backing files are never removed
    await ctl.ok("target", "delete", str(target["id"]))
    assert [t["iscsi_target_name"] for t in await ctl.api_get(f"{ISCSI}/target/")] == ["demo"]


async def test_lun_stats_count_exactly_what_an_initiator_did(ctl: Ctl) -> None:
    """`lun stats` (tgtadm --op stat's counterpart) reads /metrics: after 3 writes of 8 blocks and 2
    reads of 4 through the demo LUN, exactly those commands and bytes; a second target's LUN is
    listed beside it and left out when the demo target is named."""
    path = ctl.tmp / "extents" / "other.img"
    await ctl.ok("extent", "create", "other", "--path", str(path), "--size", "1M")
    await ctl.ok("target", "create", "other")
    await ctl.ok("lun", "map", "other", "other")
    await ctl.ok("extent", "create", "spare", "--path", str(ctl.tmp / "extents" / "spare.img"), "--size", "1M")
    client = await open_session(ctl.run.portal, DEMO_IQN, name="iqn.2026-12.org.example:stats", isid=8)
    before = {r["target"]: r for r in await ctl.json("lun", "stats")}
    for lba in (0, 8, 16):
        assert (await client.write10(lba, bytes(range(256)) * 16)).status == 0
    for lba in (0, 100):
        assert (await client.read10(lba, 4)).status == 0
    await client.aclose()
    rows = await ctl.json("lun", "stats")
    assert [(r["target"], r["lun"], r["extent"]) for r in rows] == [
        (DEMO_IQN, 0, "demo"), ("iqn.2005-10.org.freenas.ctl:other", 0, "other"), ("", None, "spare")]
    demo, other, _ = rows
    was = before[DEMO_IQN]
    moved = {k: demo[k] - was[k] for k in ("write_commands", "written_bytes", "read_commands", "read_bytes")}
    assert moved == {"write_commands": 3, "written_bytes": 3 * 4096, "read_commands": 2, "read_bytes": 2 * 2048}
    assert demo["other_commands"] >= 1 and demo["errors"].get("UNIT ATTENTION", 0) >= 1  # ready()
    assert demo["mean_latency_us"] > 0
    assert (other["read_commands"], other["write_commands"], other["mean_latency_us"]) == (0, 0, None)
    assert [r["target"] for r in await ctl.json("lun", "stats", "demo")] == [DEMO_IQN]
    assert (await ctl.ok("lun", "stats")).stdout.splitlines()[3].split()[:3] == ["-", "-", "spare"]
    human = (await ctl.ok("lun", "stats", "demo")).stdout.splitlines()
    assert human[0].split() == ["TARGET", "LUN", "EXTENT", "READS", "WRITES", "OTHER", "READ", "WRITTEN", "ERRORS",
                                "MEAN-LAT-US"]
    assert human[1].split()[:8] == [DEMO_IQN, "0", "demo", str(demo["read_commands"]), str(demo["write_commands"]),
                                    str(demo["other_commands"]), str(demo["read_bytes"]), str(demo["written_bytes"])]


async def test_portal_chap_initiator_and_a_chap_target(ctl: Ctl) -> None:
    addr = f"127.0.0.1:{free_port()}"
    portal = await ctl.json("portal", "create", addr, "--comment", "second")
    assert portal == await ctl.api_get(f"{ISCSI}/portal/{portal['id']}/")
    secret = ctl.tmp / "secret"
    secret.write_text("twelve-chars-ok\n")
    cred = await ctl.json("chap", "create", "--tag", "5", "--user", "bob", "--secret-file", str(secret))
    assert cred["iscsi_target_auth_secret"] == "twelve-chars-ok"  # the line ending is not part of it
    table = (await ctl.ok("chap", "list")).stdout
    assert "bob" in table and "twelve-chars-ok" not in table  # tables never show secrets
    peer = ctl.tmp / "peer"
    peer.write_text("peer-secret-456\n")
    mutual = json.loads((await ctl.ok("--json", "chap", "create", "--tag", "6", "--user", "al", "--secret-file", "-",
                                      "--peer-user", "tgt", "--peer-secret-file", str(peer),
                                      stdin="stdin-secret-12\n")).stdout)
    assert mutual == await ctl.api_get(f"{ISCSI}/authcredential/{mutual['id']}/")
    assert (mutual["iscsi_target_auth_secret"], mutual["iscsi_target_auth_peeruser"],
            mutual["iscsi_target_auth_peersecret"]) == ("stdin-secret-12", "tgt", "peer-secret-456")
    acl = await ctl.json("initiator", "create", "--name", "iqn.2020-01.org.example:host", "--network", "10.0.0.0/8")
    assert acl == await ctl.api_get(f"{ISCSI}/authorizedinitiator/{acl['id']}/")
    target = await ctl.json("target", "create", "locked", "--portal-group", str(portal["id"]),
                            "--initiator-group", str(acl["id"]), "--auth-method", "CHAP", "--auth-group", "5")
    (group,) = await ctl.api_get(f"{ISCSI}/targetgroup/?iscsi_target={target['id']}")
    assert (group["iscsi_target_portalgroup"], group["iscsi_target_initiatorgroup"], group["iscsi_target_authtype"],
            group["iscsi_target_authgroup"]) == (portal["id"], acl["id"], "CHAP", 5)
    # two portals now: the portal group must be chosen (usage, nothing created)
    refused = await ctl("target", "create", "unplaced")
    assert refused.exit_code == 2 and "--portal-group" in refused.stderr
    await ctl.ok("target", "delete", "locked")
    await ctl.ok("initiator", "delete", str(acl["id"]))
    await ctl.ok("chap", "delete", str(cred["id"]))
    await ctl.ok("portal", "delete", str(portal["id"]))
    assert await ctl.api_get(f"{ISCSI}/portal/") == await ctl.json("portal", "list")
    assert len(await ctl.json("portal", "list")) == 1


async def test_chap_secret_from_stdin(ctl: Ctl) -> None:
    cred = json.loads((await ctl.ok("--json", "chap", "create", "--tag", "2", "--user", "u", "--secret-file", "-",
                                    stdin="from-stdin-123\n")).stdout)
    assert cred["iscsi_target_auth_secret"] == "from-stdin-123"


async def test_sessions_list_and_drop(ctl: Ctl) -> None:
    client = await open_session(ctl.run.portal, ctl.run.lun_url.split("/")[3], name="iqn.2026-01.test:ctl", isid=7)
    try:
        sessions = await ctl.json("session", "list")
        assert sessions == await ctl.api_get(f"{ISCSI}/sessions/?limit=0")
        assert [s["initiator"] for s in sessions] == ["iqn.2026-01.test:ctl"]
        assert "iqn.2026-01.test:ctl" in (await ctl.ok("session", "list")).stdout
        assert (await ctl.json("status"))["counts"]["sessions"] == 1
        # DELETE .../sessions/<id>/ (issue #13 item 3): the session ends; an unknown id is refused
        dropped = await ctl("session", "drop", str(sessions[0]["tsih"]))
        assert dropped.exit_code == 0, dropped.stderr
        assert await ctl.json("session", "list") == []
        again = await ctl("session", "drop", str(sessions[0]["tsih"]))
        assert again.exit_code == 1
        assert "not dropped: the API answered HTTP 404" in again.stderr
    finally:
        await client.aclose()


async def test_refusals_exit_1_with_the_field_on_stderr(ctl: Ctl) -> None:
    dup = await ctl("target", "create", "demo")
    assert dup.exit_code == 1 and dup.stdout == ""
    assert dup.stderr == "iscsi_target_name: A target with that name already exists.\n"
    outside = await ctl("extent", "create", "x", "--path", "/etc/x.img", "--size", "1M")
    assert outside.exit_code == 1 and outside.stderr.startswith("iscsi_target_extent_path: ")
    short = await ctl("chap", "create", "--tag", "1", "--user", "u", "--secret-file", "-", stdin="short\n")
    assert short.exit_code == 1 and short.stderr.startswith("iscsi_target_auth_secret: ")
    # a target group refused: the target created just before is removed again (nothing half-made)
    nogroup = await ctl("target", "create", "half", "--auth-method", "CHAP", "--auth-group", "9")
    assert nogroup.exit_code == 1 and nogroup.stderr.startswith("iscsi_target_authgroup: ")
    assert [t["iscsi_target_name"] for t in await ctl.api_get(f"{ISCSI}/target/")] == ["demo"]
    missing = await ctl("target", "delete", "nosuch")
    assert missing.exit_code == 1 and missing.stderr == "no target named 'nosuch'\n"
    gone = await ctl("portal", "delete", "99")
    assert gone.exit_code == 1 and gone.stderr == "no portal with id 99\n"
    wrong = ctl.tmp / "wrong-password"
    wrong.write_text("not-the-password\n")
    denied = await ctl("--password-file", str(wrong), "status")
    assert denied.exit_code == 1 and denied.stderr == "authentication failed (check --password-file)\n"


async def test_usage_errors_exit_2(ctl: Ctl) -> None:
    for args in (["target", "frob"], ["extent", "create", "x"], ["lun", "unmap", "demo"], ["portal", "delete", "one"],
                 ["--password-file", str(ctl.tmp / "none"), "status"], ["chap", "create", "--tag", "1"]):
        result = await ctl(*args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "Usage:" in result.stderr or "Error:" in result.stderr


async def test_nothing_listening_exits_3(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("whatever\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["--api", f"http://127.0.0.1:{free_port()}", "--password-file", str(password),
                                 "status"])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "cannot reach the API" in result.stderr
    unknown = runner.invoke(cli, ["--api", "http://no-such-host.invalid:8080", "--password-file", str(password),
                                  "target", "list"])
    assert unknown.exit_code == 3 and "unknown host" in unknown.stderr


async def test_as_a_real_subprocess(ctl: Ctl) -> None:
    argv = [sys.executable, "-m", "pyscsi_target.ctl", *ctl.base, "--json", "target", "list"]
    with trio.fail_after(CLI_TIMEOUT_S):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False,
                                      env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == await ctl.api_get(f"{ISCSI}/target/?limit=0")
    with trio.fail_after(CLI_TIMEOUT_S):
        refused = await trio.run_process([*argv[:-1], "create", "demo"], capture_stdout=True, capture_stderr=True,
                                         check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert refused.returncode == 1
    assert refused.stderr.decode() == "iscsi_target_name: A target with that name already exists.\n"


def test_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["pyscsi-targetctl"].partition(":")
    assert module == "pyscsi_target.ctl.cli" and func == "main"


async def test_https_api_with_cacert_or_insecure(nursery: trio.Nursery, tmp_path: Path) -> None:
    from .test_api_tls import make_certificate, tls_options

    cert, key = await make_certificate(tmp_path)
    options = tls_options(tmp_path, cert, key)
    await start(nursery, options)
    base = ["--api", f"https://{options.api}", "--password-file", str(options.data_dir / "api-password")]
    runner = CliRunner()

    async def invoke(*args: str) -> Result:
        return await trio.to_thread.run_sync(lambda: runner.invoke(cli, [*base, *args]))

    untrusted = await invoke("status")  # a self-signed certificate the system does not trust
    assert untrusted.exit_code == 3 and "--cacert FILE" in untrusted.stderr
    trusted = await invoke("--cacert", str(cert), "--json", "target", "list")
    assert trusted.exit_code == 0 and json.loads(trusted.stdout) == []
    assert (await invoke("--insecure", "status")).exit_code == 0
