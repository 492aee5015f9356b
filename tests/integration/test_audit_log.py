"""Issue #13 item 5 end to end, against a server process: the audit lines an operator relies on,
`--log-format json`, timezone-aware timestamps, the run-time log level (`PUT /system/loglevel/`)
and SIGHUP, which resets that level and does not stop the server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from tests.support import DEMO_IQN, free_port

from .apiclient import API, ISCSI, ApiClient
from .client import Client

REPO = Path(__file__).resolve().parents[2]
SECRET, NEW_SECRET = "first-secret-1", "second-secret-2"
LOGLEVEL = f"{API}/system/loglevel/"


class Server:
    """`pyscsi-target serve --log-format json` in a subprocess, its stderr kept line by line."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api = f"127.0.0.1:{free_port()}"
        self.portal = f"127.0.0.1:{free_port()}"
        self.text = ""
        self.changed = trio.Event()
        self.proc: trio.Process | None = None

    async def start(self, nursery: trio.Nursery) -> ApiClient:
        argv = [sys.executable, "-m", "pyscsi_target", "serve", "--data-dir", str(self.data_dir), "--demo",
                "--demo-portal", self.portal, "--api", self.api, "--log-format", "json"]
        self.proc = await trio.lowlevel.open_process(argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        nursery.start_soon(self._drain)
        await self.wait_for(lambda r: "ready" in r["message"])
        host, port = self.api.split(":")
        return ApiClient(host, int(port), (self.data_dir / "api-password").read_text().strip())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async with self.proc.stderr:
            while chunk := await self.proc.stderr.receive_some():
                self.text += chunk.decode()
                self.changed.set()
                self.changed = trio.Event()

    def records(self) -> list[dict[str, Any]]:
        """Every complete line, each one JSON object (a line that is not fails the test)."""
        return [json.loads(line) for line in self.text.split("\n")[:-1]]

    async def wait_for(self, match: Any) -> dict[str, Any]:
        with trio.fail_after(20):
            while True:
                for rec in self.records():
                    if match(rec):
                        return rec
                assert self.proc is not None and self.proc.returncode is None, self.text[-2000:]
                await self.changed.wait()


async def test_audit_lines_json_format_loglevel_and_sighup(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = Server(tmp_path / "data")
        api = await server.start(nursery)
        assert server.proc is not None

        # a configuration change: who, from where, what, old -> new, the secret masked
        created = (await api.post(f"{ISCSI}/authcredential/", {
            "iscsi_target_auth_tag": 7, "iscsi_target_auth_user": "alice",
            "iscsi_target_auth_secret": SECRET})).json()
        oid = created["id"]
        assert (await api.put(f"{ISCSI}/authcredential/{oid}/",
                              {"iscsi_target_auth_secret": NEW_SECRET, "iscsi_target_auth_user": "bob"})).status == 200
        rec = await server.wait_for(lambda r: r.get("event") == "config_change" and r.get("action") == "updated")
        assert rec["logger"] == "pyscsi_target.audit" and rec["level"] == "INFO"
        assert rec["user"] == "root" and rec["address"] == "127.0.0.1"
        assert rec["collection"] == "auths" and rec["id"] == oid
        assert rec["changes"]["user"] == ["alice", "bob"]
        assert rec["changes"]["secret"] == ["********", "********"]
        made = await server.wait_for(lambda r: r.get("event") == "config_change" and r.get("action") == "created")
        assert made["changes"]["tag"] == [None, 7]

        # a failed API login names the address and the user, never the password
        assert (await ApiClient(api.host, api.port, "wrong-password").get(f"{API}/system/version/")).status == 401
        failed = await server.wait_for(lambda r: r.get("event") == "api_login_failed")
        assert failed["address"] == "127.0.0.1" and failed["user"] == "root"

        # iSCSI login and logout at INFO, with initiator, address and target
        host, port = server.portal.split(":")
        client = await Client.connect(host, int(port))
        await client.login(DEMO_IQN)
        await client.logout()
        await client.aclose()
        logout = await server.wait_for(lambda r: r["message"].startswith("logout:"))
        assert client.ini.name in logout["message"] and DEMO_IQN in logout["message"]
        assert "127.0.0.1" in logout["message"] and logout["message"].endswith(": logout")

        # the level at run time: DEBUG lines appear only once it is DEBUG
        assert not any(r["level"] == "DEBUG" for r in server.records())
        assert (await api.get(LOGLEVEL)).json() == {"level": "INFO"}
        assert (await api.put(LOGLEVEL, {"level": "verbose"})).status == 409
        assert (await api.put(LOGLEVEL, {"level": "DEBUG"})).json() == {"level": "DEBUG"}
        client = await Client.connect(host, int(port))
        await client.login(DEMO_IQN)
        await client.logout()
        await client.aclose()
        await server.wait_for(lambda r: r["level"] == "DEBUG")

        # SIGHUP: back to --log-level, and the server keeps serving
        server.proc.send_signal(signal.SIGHUP)
        await server.wait_for(lambda r: r["message"].startswith("SIGHUP received"))
        assert server.proc.returncode is None
        assert (await api.get(LOGLEVEL)).json() == {"level": "INFO"}

        # every line was JSON with a timezone-aware timestamp; no secret anywhere
        for r in server.records():
            assert datetime.fromisoformat(r["ts"]).tzinfo is not None, r
        assert SECRET not in server.text and NEW_SECRET not in server.text
        server.proc.terminate()
        with trio.fail_after(20):
            await server.proc.wait()
        nursery.cancel_scope.cancel()
