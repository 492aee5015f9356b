"""Every command in README.md is run by a test (issue #13 item 9).

The convention (README.md, "How this README is tested"): the word after a block's opening fence
says where it runs.

- `sh`: run here, in document order, in ONE bash (`set -euo pipefail`; variables such as `$PW`,
  `$API`, `$CTL` carry from block to block, as in an administrator's terminal) whose working
  directory is a scratch directory holding `pyscsi-data/` of a `pyscsi-target serve --demo` this
  test started and `.venv` (a link to the running virtualenv). A block fails the test when any of
  its commands fails. Only these strings are replaced (`rewrite`): the ports 3260 and 8080 of
  127.0.0.1 by free ones, the LAN portal 192.0.2.10:3260 by 127.0.0.1 on a third free port (and
  192.0.2.10 elsewhere by 127.0.0.1), the LAN 192.0.2.0/24 by 127.0.0.0/8, `/var/lib/pyscsi-target`
  by the scratch data directory and `/backup` by a scratch directory.
- `sh offline`: the same shell, with the server stopped first and started again after.
- `sh linux-initiator`: run by open-iscsi in the QEMU guest
  (tests/linux_initiator/test_readme_initiator.py).
- `powershell` (Windows) and `sh esxi` (ESXi): NOT executed, there is no Windows or ESXi here. What
  they contain is checked against the configuration the `sh` blocks made: the portal they name is
  one the server listens on, each target IQN exists, the CHAP user and secret (12-16 characters)
  are a credential of that target's auth group with the right auth method, the mutual secrets are
  its peer credentials, the MPIO hardware id is what INQUIRY reports.
- `sh systemd` and `sh make`: NOT executed (no systemd as PID 1; `make test` is what CI runs).
  The unit they install is verified by test_service_unit.py.
- `yaml` (the Prometheus scrape job): its metrics path and user are checked by a scrape.
- `text`: example output.

Inline `code` in the prose is not executed. A block with any other tag fails
`test_every_block_has_a_known_tag`, so a new command cannot go untested unnoticed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from pyscsi_target.protocol import limits
from pyscsi_target.server import connection
from tests.support import free_port, need_tool

from .apiclient import ISCSI, ApiClient
from .reliability import READY_MARKER, REPO, ServerProcess

README = REPO / "README.md"
#: tags whose blocks are run on this host, and the others this module knows
RUN, OFFLINE, GUEST = "sh", "sh offline", "sh linux-initiator"
KNOWN_TAGS = {RUN, OFFLINE, GUEST, "powershell", "sh esxi", "sh systemd", "sh make", "yaml", "text"}
#: the README's LAN portal and network, and the server's default ports
LAN_PORTAL, LAN_HOST, LAN_NET = "192.0.2.10:3260", "192.0.2.10", "192.0.2.0/24"
#: seconds one README block may take (the slowest creates 1 GiB sparse files and runs iscsi-ls)
BLOCK_TIMEOUT_S = 60.0
#: marks the end of a block's output on the shell's stdout
DONE = "@@readme-block-done"

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    tag: str
    body: str
    #: line of the opening fence in README.md (for failure messages)
    line: int


def readme_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    return [Block(" ".join(m["info"].split()), m["body"], text.count("\n", 0, m.start()) + 1)
            for m in _FENCE.finditer(text)]


@dataclass(frozen=True)
class Site:
    """Where the README's commands run: the scratch directory and the three free ports."""

    root: Path
    portal: int
    lan: int
    api: int

    @property
    def data_dir(self) -> Path:
        return self.root / "pyscsi-data"

    def rewrite(self, text: str) -> str:
        for old, new in (
            (LAN_PORTAL, f"127.0.0.1:{self.lan}"), (LAN_NET, "127.0.0.0/8"), (LAN_HOST, "127.0.0.1"),
            ("127.0.0.1:3260", f"127.0.0.1:{self.portal}"), ("127.0.0.1:8080", f"127.0.0.1:{self.api}"),
            ("/var/lib/pyscsi-target", str(self.data_dir)), ("/backup", str(self.root / "backup")),
        ):
            text = text.replace(old, new)
        return text

    @classmethod
    def make(cls, root: Path) -> Site:
        (root / ".venv").symlink_to(Path(sys.prefix))
        return cls(root, free_port(), free_port(), free_port())

    def api_client(self) -> ApiClient:
        return ApiClient("127.0.0.1", self.api, (self.data_dir / "api-password").read_text().strip())


class ReadmeServer(ServerProcess):
    """`pyscsi-target serve --demo` with the API, as `make run` starts it, on the site's ports."""

    def __init__(self, site: Site) -> None:
        super().__init__(site.data_dir, f"127.0.0.1:{site.portal}")
        self.site = site

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "pyscsi_target", "serve", "--demo", "--data-dir", str(self.data_dir),
                "--demo-portal", self.portal, "--api", f"127.0.0.1:{self.site.api}"]


class Shell:
    """One bash, fed the README's blocks one at a time (each sourced from a file, with stdin
    /dev/null so that no command can read the next block); its output is kept per block."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.proc: trio.Process | None = None
        self.buf = ""
        self.count = 0

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = str(REPO)
        self.proc = await trio.lowlevel.open_process(
            ["bash", "--norc", "--noprofile"], cwd=self.site.root, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        await self._send("set -euo pipefail\n")

    async def _send(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.send_all(text.encode())

    async def run(self, block: Block) -> str:
        """Run one block; its output (stdout and stderr). A failing command fails the test."""
        assert self.proc is not None and self.proc.stdout is not None
        self.count += 1
        script = self.site.root / ".readme" / f"block-{self.count}.sh"
        script.parent.mkdir(exist_ok=True)
        script.write_text(self.site.rewrite(block.body))
        marker = f"{DONE} {self.count}\n"
        await self._send(f"source {script} < /dev/null\necho '{marker.strip()}'\n")
        with trio.move_on_after(BLOCK_TIMEOUT_S):
            while marker not in self.buf:
                chunk = await self.proc.stdout.receive_some()
                if not chunk:
                    break
                self.buf += chunk.decode(errors="replace")
        out, sep, self.buf = self.buf.partition(marker)
        if not sep:
            self.buf = ""
            status = "timed out" if self.proc.poll() is None else f"exit status {self.proc.poll()}"
            raise AssertionError(f"README.md block at line {block.line} ({block.tag!r}) failed, {status}:\n"
                                 f"{script.read_text()}\n--- output ---\n{out}")
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def test_every_block_has_a_known_tag() -> None:
    blocks = readme_blocks()
    unknown = [(b.line, b.tag) for b in blocks if b.tag not in KNOWN_TAGS]
    assert not unknown, f"README.md blocks with a tag the README test does not know: {unknown}"
    tags = {b.tag for b in blocks}
    assert {RUN, OFFLINE, GUEST, "powershell", "sh esxi"} <= tags, tags


def test_the_block_parser() -> None:
    text = "x\n```sh\na\nb\n```\n\n```sh  offline\nc\n```\ntext ```not a fence```\n```\nd\n```\n"
    assert readme_blocks(text) == [Block("sh", "a\nb\n", 2), Block("sh offline", "c\n", 7), Block("", "d\n", 11)]
    site = Site(Path("/s"), 1, 2, 3)
    assert site.rewrite("iscsi://127.0.0.1:3260 http://127.0.0.1:8080/api 192.0.2.10:3260 192.0.2.10:8443 "
                        "192.0.2.0/24 /var/lib/pyscsi-target/x /backup/y") == (
        "iscsi://127.0.0.1:1 http://127.0.0.1:3/api 127.0.0.1:2 127.0.0.1:8443 127.0.0.0/8 "
        "/s/pyscsi-data/x /s/backup/y")


# ---- the negotiation table is the code's ---------------------------------------------------------

def _table_value(text: str, key: str) -> str:
    m = re.search(rf"^\| {re.escape(key)} \| ([^|]+) \|", text, re.MULTILINE)
    assert m, f"README.md's negotiation table has no row {key!r}"
    return m[1].strip()


def test_the_negotiation_table_states_the_codes_values() -> None:
    text = README.read_text()
    assert _table_value(text, "MaxRecvDataSegmentLength") == str(limits.TARGET_MRDSL)
    assert _table_value(text, "MaxBurstLength") == str(limits.TARGET_MAX_BURST_LENGTH)
    assert _table_value(text, "FirstBurstLength") == str(limits.TARGET_FIRST_BURST_LENGTH)
    assert _table_value(text, "MaxOutstandingR2T") == str(limits.TARGET_MAX_OUTSTANDING_R2T)
    assert _table_value(text, "MaxConnections") == str(limits.TARGET_MAX_CONNECTIONS)
    assert _table_value(text, "ErrorRecoveryLevel") == str(limits.TARGET_ERROR_RECOVERY_LEVEL)
    assert _table_value(text, "commands in flight (CmdSN window)") == str(limits.COMMAND_WINDOW_DEPTH)
    assert _table_value(text, "login must complete within") == f"{connection.LOGIN_TIMEOUT_S:g} s"
    assert _table_value(text, "idle connection ping (NOP-In)") == (
        f"{connection.NOP_IN_INTERVAL_S:g} s, closed {connection.NOP_IN_RESPONSE_TIMEOUT_S:g} s after an "
        "unanswered ping")


# ---- the commands, run ---------------------------------------------------------------------------

#: output each `sh` block must show, keyed by a line of the block that identifies it
EXPECTED_OUTPUT = {
    "iscsi-readcapacity16": ["iqn.2005-10.org.freenas.ctl:demo", "Lun:0"],
    "# both targets now": ["iqn.2005-10.org.freenas.ctl:second"],
    "CTL=\".venv/bin/pyscsi-targetctl": ["disk1", "first disk"],
    "$CTL portal create": ["lan", "iqn.1993-08.org.debian:01:host1"],
    "$CTL chap create --tag 1": ["iqn.2005-10.org.freenas.ctl:secure"],
    '"iscsi_target_auth_tag": 2': ['"iscsi_target_authtype": "CHAP Mutual"'],
    "/metrics": ["pyscsi_portal_logins_total{", 'result="success"'],
    "system/loglevel/": ['{"level": "DEBUG"}'],
}


async def run_host_blocks(site: Site, server: ReadmeServer, shell: Shell, nursery: trio.Nursery,
                          blocks: list[Block], *, until_tag: str | None = None) -> dict[int, str]:
    """Run the `sh` (and `sh offline`) blocks in order, stopping before the first `until_tag`
    block; the output of each, by its README line."""
    outputs: dict[int, str] = {}
    for block in blocks:
        if block.tag == until_tag:
            break
        if block.tag == RUN:
            outputs[block.line] = await shell.run(block)
        elif block.tag == OFFLINE:
            assert await server.stop() == 0, server.output["stderr"][-2000:]
            outputs[block.line] = await shell.run(block)
            await server.start(nursery, "stderr", READY_MARKER)
    return outputs


async def objects(api: ApiClient, resource: str) -> list[dict[str, Any]]:
    reply = await api.get(f"{ISCSI}/{resource}/?limit=0")
    assert reply.status == 200, reply.body
    got: list[dict[str, Any]] = reply.json()
    return got


async def test_readme_commands_run_against_a_real_server(tmp_path: Path, nursery: trio.Nursery) -> None:
    for tool in ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity16", "curl"):
        need_tool(tool)
    site = Site.make(tmp_path)
    server = ReadmeServer(site)
    shell = Shell(site)
    await server.start(nursery, "stderr", READY_MARKER)
    try:
        await shell.start()
        blocks = readme_blocks()
        api = site.api_client()
        run_blocks = [b for b in blocks if b.tag in (RUN, OFFLINE)]
        before_restore: list[dict[str, Any]] = []
        outputs: dict[int, str] = {}
        for block in run_blocks:
            if block.tag == OFFLINE:
                before_restore = await objects(api, "target")
                assert await server.stop() == 0, server.output["stderr"][-2000:]
                outputs[block.line] = await shell.run(block)
                await server.start(nursery, "stderr", READY_MARKER)
            else:
                outputs[block.line] = await shell.run(block)
        for key, wanted in EXPECTED_OUTPUT.items():
            matching = [b for b in run_blocks if key in b.body]
            assert len(matching) == 1, f"{key!r} should identify one README block, found {len(matching)}"
            out = outputs[matching[0].line]
            for want in wanted:
                assert site.rewrite(want) in out, f"README.md line {matching[0].line}: {want!r} not in\n{out}"
        # the backup was restored: same targets after the restart (the server read the imported db)
        assert before_restore and await objects(api, "target") == before_restore
        assert list((tmp_path / "backup").glob("pyscsi-*.json"))
        await check_windows_and_esxi(site, api, blocks)
        await check_scrape_config(site, api, blocks)
        assert server.problems == []
    finally:
        shell.close()
        server.kill_quietly()


# ---- blocks that cannot run here: their values against the server's configuration ----------------

@dataclass(frozen=True)
class Login:
    iqn: str
    method: str  # "CHAP" or "CHAP Mutual"
    user: str
    secret: str
    peer_secret: str | None = None
    peer_user: str | None = None


async def expect_login(api: ApiClient, login: Login, portal: str) -> None:
    """`login` names a target offered on `portal` whose target group wants login.method, and a
    credential of its auth group matching the user, secret and peer secret/user."""
    assert 12 <= len(login.secret) <= 16, login
    basename = (await api.get("/api/v1.0/services/iscsi/globalconfiguration/")).json()["iscsi_basename"]
    targets = {f"{basename}:{t['iscsi_target_name']}": t for t in await objects(api, "target")}
    assert login.iqn in targets, (login.iqn, sorted(targets))
    portals = {p["id"]: p for p in await objects(api, "portal")}
    groups = [g for g in await objects(api, "targetgroup") if g["iscsi_target"] == targets[login.iqn]["id"]]
    group = next(g for g in groups if portal in portals[g["iscsi_target_portalgroup"]]["iscsi_target_portal_ips"])
    assert group["iscsi_target_authtype"] == login.method, (login, group)
    creds = [c for c in await objects(api, "authcredential")
             if c["iscsi_target_auth_tag"] == group["iscsi_target_authgroup"]]
    match = [c for c in creds
             if (c["iscsi_target_auth_user"], c["iscsi_target_auth_secret"]) == (login.user, login.secret)]
    assert match, (login, creds)
    if login.peer_secret is not None:
        assert match[0]["iscsi_target_auth_peersecret"] == login.peer_secret, (login, match)
    if login.peer_user is not None:
        assert match[0]["iscsi_target_auth_peeruser"] == login.peer_user, (login, match)


def _arg(text: str, name: str) -> str:
    m = re.search(rf"{name}[ =](\"[^\"]*\"|\S+)", text)
    assert m, f"{name} not found in {text!r}"
    return m[1].strip('"')


async def check_windows_and_esxi(site: Site, api: ApiClient, blocks: list[Block]) -> None:
    method = {"ONEWAYCHAP": "CHAP", "MUTUALCHAP": "CHAP Mutual"}
    windows = "\n".join(b.body for b in blocks if b.tag == "powershell")
    portal = site.rewrite(f"{_arg(windows, '-TargetPortalAddress')}:{_arg(windows, '-TargetPortalPortNumber')}")
    chap_secret = _arg(windows, "Set-IscsiChapSecret -ChapSecret")
    connects = [line for line in windows.splitlines() if line.startswith("Connect-IscsiTarget")]
    assert {_arg(c, "-AuthenticationType") for c in connects} == set(method), connects
    for c in connects:
        kind = method[_arg(c, "-AuthenticationType")]
        await expect_login(api, Login(_arg(c, "-NodeAddress"), kind, _arg(c, "-ChapUsername"), _arg(c, "-ChapSecret"),
                                      chap_secret if kind == "CHAP Mutual" else None), portal)
    inq = await trio.run_process(["iscsi-inq", f"iscsi://127.0.0.1:{site.portal}/iqn.2005-10.org.freenas.ctl:demo/0"],
                                 capture_stdout=True)
    text = inq.stdout.decode()
    assert f"Vendor:{_arg(windows, '-VendorId')}" in text.replace(" ", ""), text
    assert f"Product:{_arg(windows, '-ProductId')}".replace(" ", "") in text.replace(" ", ""), text

    esxi = "\n".join(b.body for b in blocks if b.tag == "sh esxi")
    address = site.rewrite(_arg(esxi, "sendtarget add .*--address"))
    assert address == portal
    uni = next(line for line in esxi.splitlines() if "--direction=uni" in line)
    mutual = next(line for line in esxi.splitlines() if "--direction=mutual" in line)
    assert "--level=required" in uni and "--level=required" in mutual
    assert site.rewrite(_arg(uni, "--address")) == site.rewrite(_arg(mutual, "--address")) == portal
    # the adapter-level credentials are inherited by every target discovered there: the mutual one
    await expect_login(api, Login("iqn.2005-10.org.freenas.ctl:vault", "CHAP Mutual", _arg(uni, "--authname"),
                                  _arg(uni, "--secret"), _arg(mutual, "--secret"), _arg(mutual, "--authname")), portal)
    ports = {ip for p in await objects(api, "portal") for ip in p["iscsi_target_portal_ips"]}
    assert portal in ports, (portal, ports)


async def check_scrape_config(site: Site, api: ApiClient, blocks: list[Block]) -> None:
    (yaml,) = [b.body for b in blocks if b.tag == "yaml"]
    path = _arg(yaml, "metrics_path:")
    assert _arg(yaml, "username:") == "root"
    target = _arg(yaml, "- targets:").strip('["]')
    # the scrape target is the TLS API address the README's TLS example serves
    assert f"--api {target} --api-cert" in README.read_text()
    reply = await api.get(path)
    assert reply.status == 200 and b"pyscsi_start_time_seconds" in reply.body, reply.status
