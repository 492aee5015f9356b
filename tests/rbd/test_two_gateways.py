"""Two gateways, one image (issue #15 item 4): two pyscsi-target processes on different portals
serve the same RBD image as the same LU (same NAA and serial: the second gateway's configuration
is the first's, exported and imported with its own portal, `config import` keeping NAAs). Data
written through one is read through the other, both ways, and libiscsi's whole MultipathIO family
passes with `--second-url` on the other gateway, Reset included: a LOGICAL UNIT RESET through one
gateway raises 29/00 on the other's nexuses too, told over RADOS watch/notify on the image's events
object (storage/rbd_events.py, docs/scale-out.md §3), and is not echoed back to the gateway that
made it.

What this does not prove yet (docs/scale-out.md): ALUA (both ports are active/optimized and
report no target port groups), and the rest of the SCSI state shared between gateways (SPC-2 and
persistent reservations are each gateway's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from pyscsi_target.server.options import ServerOptions
from tests.conformance.conftest import run_conformance
from tests.integration.apiclient import ApiClient
from tests.integration.client import Client
from tests.integration.reliability import READY_MARKER, REPO, STARTUP_TIMEOUT_S, ServerProcess
from tests.support import free_port

from .cluster import POOL, CephCluster
from .fixtures import image_name

BS = 512
IQN = "iqn.2005-10.org.freenas.ctl:shared"
LOGICAL_UNIT_RESET = 5  # TMF function (RFC 7143 §11.5.1)
FUNCTION_COMPLETE = 0
CHECK_CONDITION = 0x02
POWER_ON_RESET = (0x06, 0x29, 0x00)
TUR = bytes(6)


class Gateway(ServerProcess):
    """`serve` with the API and the cluster of the tests, no demo."""

    def __init__(self, data_dir: Path, conf: Path) -> None:
        super().__init__(data_dir, "")
        self.api = f"127.0.0.1:{free_port()}"
        self.conf = conf

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "pyscsi_target", "serve", "--data-dir", str(self.data_dir), "--api", self.api,
                "--ceph-conf", str(self.conf), "--log-level", "INFO"]

    def client(self) -> ApiClient:
        return ApiClient.for_server(ServerOptions(data_dir=self.data_dir, api=self.api))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyscsi_target", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=STARTUP_TIMEOUT_S, env=os.environ.copy(), check=False)


async def configure(api: ApiClient, port: int, image: str) -> dict[str, object]:
    portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    target = await api.create("target", {"iscsi_target_name": "shared"})
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal["id"]})
    ext = await api.create("extent", {"iscsi_target_extent_name": "shared", "iscsi_target_extent_type": "RBD",
                                      "iscsi_target_extent_path": f"{POOL}/{image}",
                                      "iscsi_target_extent_filesize": "256MB"})
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": ext["id"], "iscsi_lunid": 0})
    return ext


def with_portal(document: str, port: int) -> str:
    """The exported configuration with its one portal moved to `port`."""
    doc = json.loads(document)
    portals = [obj for key, objs in doc.items() if "portal" in key and isinstance(objs, list) for obj in objs]
    assert len(portals) == 1, doc.keys()
    portals[0]["iscsi_target_portal_ips"] = [f"127.0.0.1:{port}"]
    return json.dumps(doc)


async def session(port: int, name: str) -> Client:
    c = await Client.connect("127.0.0.1", port, name=name)
    await c.login(IQN)
    await c.ready()
    return c


def blocks(n: int, seed: int) -> bytes:
    return bytes((i * 13 + seed) % 251 for i in range(n * BS))


@asynccontextmanager
async def two_gateways(tmp_path: Path, cluster: CephCluster) -> AsyncIterator[tuple[int, int]]:
    """Gateways A and B serving one new image as LUN 0 of IQN; their portals' ports. At the end
    both must stop cleanly, having logged no ERROR."""
    image = image_name("shared")
    a = Gateway(tmp_path / "a", cluster.conf)
    b = Gateway(tmp_path / "b", cluster.conf)
    port_a, port_b = free_port(), free_port()
    async with trio.open_nursery() as nursery:
        try:
            await a.start(nursery, "stderr", READY_MARKER)
            ext_a = await configure(a.client(), port_a, image)
            exported = cli("config", "export", "--data-dir", str(a.data_dir))
            assert exported.returncode == 0, exported.stderr
            doc = tmp_path / "b.json"
            doc.write_text(with_portal(exported.stdout, port_b))
            imported = cli("config", "import", "--data-dir", str(b.data_dir), str(doc))
            assert imported.returncode == 0, imported.stderr
            await b.start(nursery, "stderr", READY_MARKER)
            (ext_b,) = (await b.client().get("/api/v1.0/services/iscsi/extent/")).json()
            for key in ("iscsi_target_extent_naa", "iscsi_target_extent_serial", "iscsi_target_extent_path"):
                assert ext_b[key] == ext_a[key], key
            yield port_a, port_b
            assert not a.problems and not b.problems, (a.problems, b.problems)
            assert await a.stop() == 0 and await b.stop() == 0
        finally:
            a.kill_quietly()
            b.kill_quietly()


async def one_reset_attention(c: Client) -> None:
    """The next command gets 29/00 (SAM-5 §6.3.3), exactly once: the one after it is GOOD."""
    res = await c.command(TUR)
    assert res.status == CHECK_CONDITION and res.sense_key == POWER_ON_RESET, (res.status, res.sense_key)
    res = await c.command(TUR)
    assert res.status == 0, (res.status, res.sense_key)


@pytest.mark.conformance
async def test_two_gateways_serve_one_image(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    async with two_gateways(tmp_path, ceph_cluster) as (port_a, port_b):
        ca = await session(port_a, "iqn.2026-11.org.example:host-a")
        cb = await session(port_b, "iqn.2026-11.org.example:host-b")
        assert (await ca.write10(100, blocks(16, 1))).status == 0
        got = await cb.read10(100, 16)
        assert got.status == 0 and got.data == blocks(16, 1)  # A's write, read through B
        assert (await cb.write10(100, blocks(4, 2), fua=True)).status == 0
        assert (await ca.read10(100, 16)).data == blocks(4, 2) + blocks(16, 1)[4 * BS:]  # and back
        await ca.logout()
        await cb.logout()

        url_a, url_b = f"iscsi://127.0.0.1:{port_a}/{IQN}/0", f"iscsi://127.0.0.1:{port_b}/{IQN}/0"
        mp = await run_conformance(url_a, "ALL.MultipathIO", second_url=url_b)
        print(f"two gateways, MultipathIO: {mp.counts}")
        # Simple, Reset, CompareAndWrite and CompareAndWriteAsync, across the gateways
        assert not mp.real_failures(), mp.report()
        assert mp.counts["passed"] == 4 and not mp.counts["skipped"], mp.report()


async def test_lun_reset_through_one_gateway_reaches_the_other(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    """A LOGICAL UNIT RESET through A: B's nexus gets 29/00 on its next command (the TMF response
    comes once B has it pending), and A's nexus gets it once, not once more echoed back from the
    events object; the same the other way round."""
    async with two_gateways(tmp_path, ceph_cluster) as (port_a, port_b):
        ca = await session(port_a, "iqn.2026-11.org.example:host-a")
        cb = await session(port_b, "iqn.2026-11.org.example:host-b")
        for resetter, other in ((ca, cb), (cb, ca)):
            assert await resetter.tmf(LOGICAL_UNIT_RESET) == FUNCTION_COMPLETE
            await one_reset_attention(other)
            await one_reset_attention(resetter)
        await ca.logout()
        await cb.logout()
