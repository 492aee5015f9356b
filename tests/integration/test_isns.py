"""Issue #11 item 1: `iscsi_isns_servers` registers the target with iSNS (RFC 4171), checked against
a real open-isns server (`isnsd`, Debian's open-isns-server) on a free loopback port, with what
`isnsadm --query` (open-isns-utils) reports after start, after every kind of change, after the iSNS
server restarts, when a server leaves the list and after shutdown; and hostile iSNS peers (garbage,
a huge length, silence) that must not disturb the target or the API.

Synchronisation polls `isnsadm` until the expected state shows, under a bounded deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from pyscsi_target.server.isns import ISNS_DEREGISTER_TIMEOUT_S, entity_identifier
from tests.support import free_port

from .apiclient import ISCSI, ApiClient
from .test_api_e2e import Stack, api_options

#: how long a change may take to show in the iSNS server, seconds (the client acts at once; the
#: reconnect after an iSNS server restart waits ISNS_RETRY_MIN_S first)
SHOW_DEADLINE_S = 20.0
#: an API request while an iSNS peer misbehaves must still answer within this, seconds
API_FAST_S = 2.0


def need_isns() -> tuple[str, str]:
    # Debian installs them in /usr/sbin, which a non-root PATH may lack
    isnsd, isnsadm = (shutil.which(n) or shutil.which(n, path="/usr/sbin:/sbin") for n in ("isnsd", "isnsadm"))
    if isnsd is None or isnsadm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("isnsd/isnsadm missing: `make test` installs Debian's open-isns-server and open-isns-utils")
        pytest.skip("isnsd/isnsadm not installed (Debian packages open-isns-server, open-isns-utils)")
    return isnsd, isnsadm


# ---- a private isnsd ----------------------------------------------------------------------------

@dataclass
class Isnsd:
    """isnsd in the foreground on 127.0.0.1:`port`, database in memory (a restart forgets all),
    no authentication, the default discovery domain so that every node is visible."""

    root: Path
    port: int
    process: trio.Process | None = None
    registration_period: str = "10m"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_configs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "isnsd.conf").write_text(
            f"BindAddress = {self.address}\n"
            "SourceName = isns.test.server\n"
            f"RegistrationPeriod = {self.registration_period}\n"
            "DefaultDiscoveryDomain = 1\n"
            "SLPRegister = 0\n"
            "Security = 0\n"
            f"PIDFile = {self.root}/isnsd.pid\n"
            f"ControlSocket = {self.root}/control\n")
        (self.root / "isnsadm.conf").write_text(
            "SourceName = iqn.2024-01.test.isnsadm\n"
            f"ServerAddress = {self.address}\n"
            "Security = 0\n")

    async def start(self) -> None:
        isnsd, _ = need_isns()
        self.write_configs()
        log = open(self.root / "isnsd.log", "ab")  # noqa: SIM115 - the process owns it
        self.process = await trio.lowlevel.open_process(
            [isnsd, "-f", "-4", "-c", str(self.root / "isnsd.conf")], stdout=log, stderr=log)
        log.close()
        with trio.fail_after(10):
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    assert self.process.poll() is None, (self.root / "isnsd.log").read_text()
                    await trio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.poll() is None:
                self.process.kill()
                await self.process.wait()
            self.process = None

    async def query(self) -> IsnsState:
        """`isnsadm --query iscsi-name`: every storage node with its entity, portals and PGs."""
        _, isnsadm = need_isns()
        with trio.fail_after(30):
            done = await trio.run_process(
                [isnsadm, "-c", str(self.root / "isnsadm.conf"), "--query", "iscsi-name"],
                capture_stdout=True, capture_stderr=True, check=False)
        text = done.stdout.decode(errors="replace")
        return IsnsState.parse(text)

    async def wait_for(self, check: Callable[[IsnsState], bool], what: str) -> IsnsState:
        state = IsnsState()
        try:
            with trio.fail_after(SHOW_DEADLINE_S):
                while True:
                    state = await self.query()
                    if check(state):
                        return state
                    await trio.sleep(0.2)
        except trio.TooSlowError:
            raise AssertionError(f"{what}: isnsadm showed\n{state.text}") from None


@dataclass
class IsnsState:
    text: str = ""
    entities: set[str] = field(default_factory=set)
    nodes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (type, alias)
    portals: set[tuple[str, int]] = field(default_factory=set)
    groups: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (name, ip, port) -> tag

    @classmethod
    def parse(cls, text: str) -> IsnsState:
        st = cls(text=text)
        objects: list[tuple[str, dict[str, str]]] = []
        for line in text.splitlines():
            if m := re.match(r"object\[\d+\] = <(.+)>", line):
                objects.append((m.group(1), {}))
            elif objects and (m := re.match(r"\s+[0-9a-f]{4}\s+\S+\s+: (.+?) = (.*)$", line)):
                objects[-1][1][m.group(1)] = m.group(2).strip('"')
        for kind, a in objects:
            if kind == "Network Entity":
                st.entities.add(a["Entity identifier"])
            elif kind == "iSCSI Storage Node":
                st.nodes[a["iSCSI name"]] = (a.get("iSCSI node type", ""), a.get("iSCSI alias"))
            elif kind == "Portal":
                st.portals.add((a["Portal IP address"], int(a["Portal TCP/UDP port"].split("/")[0])))
            elif kind == "iSCSI Portal Group" and "Portal group tag" in a:
                st.groups[(a["Portal group name"], a["Portal group address"],
                           int(a["Portal group port"].split("/")[0]))] = int(a["Portal group tag"])
        return st

    @property
    def empty(self) -> bool:
        return not (self.entities or self.nodes or self.portals or self.groups)


@asynccontextmanager
async def isnsd_running(root: Path, **kwargs: Any) -> AsyncIterator[Isnsd]:
    daemon = Isnsd(root, free_port(), **kwargs)
    await daemon.start()
    try:
        yield daemon
    finally:
        with trio.CancelScope(shield=True):
            await daemon.stop()


@pytest.fixture
async def isnsd(tmp_path: Path) -> AsyncIterator[Isnsd]:
    need_isns()
    async with isnsd_running(tmp_path / "isnsd") as daemon:
        yield daemon


# ---- helpers --------------------------------------------------------------------------------------

BASE = "iqn.2005-10.org.freenas.ctl"


async def set_isns(api: ApiClient, servers: str) -> None:
    reply = await api.put(f"{ISCSI}/globalconfiguration/", {"iscsi_isns_servers": servers})
    assert reply.status == 200, reply.body


async def target_with_portal(api: ApiClient, name: str, portal_id: int, alias: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"iscsi_target_name": name}
    if alias:
        body["iscsi_target_alias"] = alias
    target = await api.create("target", body)
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal_id})
    return target


@asynccontextmanager
async def server(tmp_path: Path) -> AsyncIterator[Stack]:
    async with trio.open_nursery() as nursery:
        stack = await Stack.start(nursery, api_options(tmp_path))
        yield stack
        nursery.cancel_scope.cancel()


# ---- against the real isnsd -----------------------------------------------------------------------

async def test_registration_follows_every_change(isnsd: Isnsd, tmp_path: Path) -> None:
    eid = entity_identifier()
    async with server(tmp_path) as st:
        api = st.api
        port1 = free_port()
        portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port1}"]})
        tag1 = portal["iscsi_target_portal_tag"]
        await target_with_portal(api, "alpha", portal["id"], alias="first")
        await set_isns(api, isnsd.address)

        # after start: entity, the node (name, type Target, alias), the portal, the PG and its tag
        state = await isnsd.wait_for(lambda s: f"{BASE}:alpha" in s.nodes, "registration")
        assert state.entities == {eid}
        assert state.nodes == {f"{BASE}:alpha": ("Target", "first")}
        assert state.portals == {("127.0.0.1", port1)}
        assert state.groups == {(f"{BASE}:alpha", "127.0.0.1", port1): tag1}

        # target added
        beta = await target_with_portal(api, "beta", portal["id"])
        state = await isnsd.wait_for(lambda s: f"{BASE}:beta" in s.nodes, "target added")
        assert state.nodes[f"{BASE}:beta"] == ("Target", None)
        assert state.groups[(f"{BASE}:beta", "127.0.0.1", port1)] == tag1

        # target renamed
        reply = await api.put(f"{ISCSI}/target/{beta['id']}/", {"iscsi_target_name": "gamma"})
        assert reply.status == 200, reply.body
        state = await isnsd.wait_for(lambda s: f"{BASE}:gamma" in s.nodes, "target renamed")
        assert set(state.nodes) == {f"{BASE}:alpha", f"{BASE}:gamma"}

        # basename changed: every name changes
        reply = await api.put(f"{ISCSI}/globalconfiguration/", {"iscsi_basename": "iqn.2024-01.org.example"})
        assert reply.status == 200, reply.body
        state = await isnsd.wait_for(lambda s: "iqn.2024-01.org.example:alpha" in s.nodes, "basename changed")
        assert set(state.nodes) == {"iqn.2024-01.org.example:alpha", "iqn.2024-01.org.example:gamma"}
        assert set(state.groups) == {("iqn.2024-01.org.example:alpha", "127.0.0.1", port1),
                                     ("iqn.2024-01.org.example:gamma", "127.0.0.1", port1)}

        # portal added (a second portal group, offered to gamma only), then removed
        port2 = free_port()
        portal2 = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port2}"]})
        await api.create("targetgroup", {"iscsi_target": beta["id"], "iscsi_target_portalgroup": portal2["id"]})
        state = await isnsd.wait_for(lambda s: ("127.0.0.1", port2) in s.portals, "portal added")
        assert state.portals == {("127.0.0.1", port1), ("127.0.0.1", port2)}
        assert state.groups[("iqn.2024-01.org.example:gamma", "127.0.0.1", port2)] == portal2["iscsi_target_portal_tag"]
        assert ("iqn.2024-01.org.example:alpha", "127.0.0.1", port2) not in state.groups  # NULL PGT
        assert (await api.delete(f"{ISCSI}/portal/{portal2['id']}/")).status == 204
        state = await isnsd.wait_for(lambda s: ("127.0.0.1", port2) not in s.portals, "portal removed")
        assert state.portals == {("127.0.0.1", port1)}

        # target removed
        assert (await api.delete(f"{ISCSI}/target/{beta['id']}/")).status == 204
        state = await isnsd.wait_for(lambda s: "iqn.2024-01.org.example:gamma" not in s.nodes, "target removed")
        assert set(state.nodes) == {"iqn.2024-01.org.example:alpha"}

        # the iSNS server restarts with an empty database: the target registers again
        await isnsd.stop()
        await isnsd.start()
        assert (await isnsd.query()).empty
        state = await isnsd.wait_for(lambda s: bool(s.nodes), "re-registration after an isnsd restart")
        assert state.entities == {eid}
        assert state.nodes == {"iqn.2024-01.org.example:alpha": ("Target", "first")}
        assert state.portals == {("127.0.0.1", port1)}

        # the server leaves the list: deregistered
        await set_isns(api, "")
        await isnsd.wait_for(lambda s: s.empty, "deregistration when the server leaves the list")

        # back on the list, then the target shuts down: nothing left once it has stopped
        await set_isns(api, isnsd.address)
        await isnsd.wait_for(lambda s: bool(s.nodes), "registration when the server is listed again")
    # the server stopped (the `server` block cancelled it): deregistration finished before it returned
    assert (await isnsd.query()).empty


async def test_last_target_deleted_deregisters_and_service_restart_registers(isnsd: Isnsd, tmp_path: Path) -> None:
    async with server(tmp_path) as st:
        api = st.api
        portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{free_port()}"]})
        await set_isns(api, isnsd.address)
        target = await target_with_portal(api, "only", portal["id"])
        await isnsd.wait_for(lambda s: f"{BASE}:only" in s.nodes, "registration")
        assert (await api.delete(f"{ISCSI}/target/{target['id']}/")).status == 204
        await isnsd.wait_for(lambda s: s.empty, "deregistration with no target left")
    # the configuration persists: a new start registers the (re-created) target again
    async with server(tmp_path) as st:
        portal_id = (await st.api.get(f"{ISCSI}/portal/")).json()[0]["id"]
        await target_with_portal(st.api, "again", portal_id)
        await isnsd.wait_for(lambda s: set(s.nodes) == {f"{BASE}:again"}, "registration after restart")
    assert (await isnsd.query()).empty


async def test_short_registration_period_is_kept_alive(tmp_path: Path) -> None:
    """isnsd grants 12 s (it overrides what we ask for): the client refreshes within that, so the
    registration outlives several periods."""
    need_isns()
    async with isnsd_running(tmp_path / "isnsd", registration_period="12s") as isnsd, server(tmp_path) as st:
        portal = await st.api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{free_port()}"]})
        await target_with_portal(st.api, "kept", portal["id"])
        await set_isns(st.api, isnsd.address)
        await isnsd.wait_for(lambda s: f"{BASE}:kept" in s.nodes, "registration")
        await trio.sleep(30)  # 2.5 registration periods: this is the behaviour under test, not a sync
        state = await isnsd.query()
        assert f"{BASE}:kept" in state.nodes, state.text
        assert st.service.isns is not None
        assert [c.registrations for c in st.service.isns.clients.values()] == [1]  # refreshed, not re-registered


async def test_two_servers_one_dead(isnsd: Isnsd, tmp_path: Path) -> None:
    """A listed server that refuses connections is a warning; the live one still gets everything,
    and the API answers at once."""
    dead = f"127.0.0.1:{free_port()}"
    async with server(tmp_path) as st:
        api = st.api
        portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{free_port()}"]})
        await target_with_portal(api, "t1", portal["id"])
        started = time.monotonic()
        await set_isns(api, f"{dead} {isnsd.address}")
        assert time.monotonic() - started < API_FAST_S
        await isnsd.wait_for(lambda s: f"{BASE}:t1" in s.nodes, "registration beside a dead server")


# ---- hostile iSNS peers ---------------------------------------------------------------------------

async def _hostile_server(listener: trio.SocketListener, behaviour: str,
                          seen: trio.MemorySendChannel[bytes]) -> None:
    """Accepts connections and misbehaves: `garbage` answers random bytes, `huge` a header
    announcing a 65535-byte PDU and then a trickle, `silent` reads and never answers."""
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                data = await stream.receive_some(65536)
                seen.send_nowait(bytes(data))
                if behaviour == "garbage":
                    await stream.send_all(os.urandom(4096))
                elif behaviour == "huge":
                    # version 1, DevAttrRegRsp, length 65535, then a byte every 0.2 s
                    await stream.send_all(struct.pack(">HHHHHH", 1, 0x8001, 0xFFFF, 0x4C00, 1, 0))
                    for _ in range(100):
                        await stream.send_all(b"\0")
                        await trio.sleep(0.2)
                elif behaviour == "badversion":
                    await stream.send_all(struct.pack(">HHHHHH", 7, 0x8001, 4, 0x4C00, 1, 0) + b"\0" * 4)
                await trio.sleep_forever()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    await trio.serve_listeners(handle, [listener])


@pytest.mark.parametrize("behaviour", ["garbage", "huge", "badversion", "silent"])
async def test_hostile_isns_peer_does_not_disturb_the_target(tmp_path: Path, behaviour: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from .test_api_e2e import build, discover
    seen_send, seen = trio.open_memory_channel[bytes](100)
    async with trio.open_nursery() as peers:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        hostile = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        peers.start_soon(_hostile_server, listeners[0], behaviour, seen_send)
        async with server(tmp_path) as st:
            built = await build(st)
            await set_isns(st.api, hostile)
            with trio.fail_after(SHOW_DEADLINE_S):
                first = await seen.receive()
            # the registration reached the peer; while it misbehaves, iSCSI and the API work
            assert struct.unpack(">HH", first[:4]) == (1, 0x0001)
            for _ in range(3):
                started = time.monotonic()
                assert (await st.api.get(f"{ISCSI}/target/")).status == 200
                assert time.monotonic() - started < API_FAST_S
                found = await discover(built.portal)
                assert built.iqn in found
            # the client tries again (a new connection) after logging the failure as a warning
            with trio.fail_after(SHOW_DEADLINE_S):
                again = await seen.receive()
            assert struct.unpack(">HH", again[:4]) == (1, 0x0001)
            assert any(r.name == "pyscsi_target.isns" and r.levelname == "WARNING" and hostile in r.getMessage()
                       for r in caplog.records)
            stop_started = time.monotonic()
        # shutdown waits at most the deregistration bound for a peer that never answers
        assert time.monotonic() - stop_started < ISNS_DEREGISTER_TIMEOUT_S + 5.0
        peers.cancel_scope.cancel()

