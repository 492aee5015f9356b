"""RBD extents in the real server over loopback (issue #15 items 1-2), against the private Ceph
cluster: configured through the API, written and read over iSCSI (the asynchronous path), the data
in the image as librbd reads it; a missing image is a 409 on the path (or created with a size);
an unreachable cluster at start-up leaves the LU NOT READY while the rest serves, and it is
retried until the cluster answers."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from pyscsi_target.ctl.cli import cli
from pyscsi_target.scsi import execute
from pyscsi_target.scsi.host import STANDALONE
from pyscsi_target.scsi.lu import LogicalUnit, LuIdentity
from pyscsi_target.scsi.types import Nexus, ScsiRequest
from pyscsi_target.server.options import ServerOptions
from pyscsi_target.server.serve import serve
from pyscsi_target.storage import RbdCluster
from tests.integration.apiclient import ISCSI, ApiClient
from tests.integration.client import Client
from tests.support import free_port

from .cluster import POOL, CephCluster
from .fixtures import image_name

BS = 512
CLIENT_IQN = "iqn.2026-11.org.example:rbd-client"


def options(root: Path, conf: Path | str) -> ServerOptions:
    return ServerOptions(data_dir=root / "data", api=f"127.0.0.1:{free_port()}", ceph_conf=str(conf))


async def build(api: ApiClient, image: str, **extent: Any) -> tuple[int, str, dict[str, Any]]:
    """Portal, target, group and one RBD extent as LUN 0, through the API; (port, iqn, extent)."""
    port = free_port()
    portal = await api.create("portal", {"iscsi_target_portal_ips": [f"127.0.0.1:{port}"]})
    target = await api.create("target", {"iscsi_target_name": "rbd"})
    await api.create("targetgroup", {"iscsi_target": target["id"], "iscsi_target_portalgroup": portal["id"]})
    ext = await api.create("extent", {"iscsi_target_extent_name": "rbd0", "iscsi_target_extent_type": "RBD",
                                      "iscsi_target_extent_path": f"{POOL}/{image}", **extent})
    await api.create("targettoextent", {"iscsi_target": target["id"], "iscsi_extent": ext["id"], "iscsi_lunid": 0})
    return port, "iqn.2005-10.org.freenas.ctl:rbd", ext


async def session(port: int, iqn: str) -> Client:
    c = await Client.connect("127.0.0.1", port, name=CLIENT_IQN)
    await c.login(iqn)
    await c.ready()
    return c


def blocks(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n * BS))


async def test_data_written_over_iscsi_is_in_the_image(nursery: trio.Nursery, tmp_path: Path,
                                                       ceph_cluster: CephCluster, rbd_cluster: RbdCluster) -> None:
    opts = options(tmp_path, ceph_cluster.conf)
    await nursery.start(serve, opts)
    image = image_name("srv")
    port, iqn, ext = await build(ApiClient.for_server(opts), image, iscsi_target_extent_filesize="64MB")
    assert ext["iscsi_target_extent_filesize"] == str(64 << 20)
    c = await session(port, iqn)
    assert (await c.write10(10, blocks(8, 1))).status == 0
    assert (await c.write10(4096, blocks(256, 2), fua=True)).status == 0  # write, then flush
    got = await c.read10(10, 8)
    assert got.status == 0 and got.data == blocks(8, 1)
    assert (await c.read10(4096, 256)).data == blocks(256, 2)
    assert (await c.sync_cache()).status == 0
    direct = await trio.to_thread.run_sync(rbd_cluster.open, POOL, image, BS, True)
    try:
        assert bytes(direct.read(10, 8)) == blocks(8, 1) and bytes(direct.read(4096, 256)) == blocks(256, 2)
        assert direct.size_bytes == 64 << 20
    finally:
        direct.close()
    await c.logout()


async def test_a_missing_image_is_a_409_on_the_path(nursery: trio.Nursery, tmp_path: Path,
                                                    ceph_cluster: CephCluster, rbd_cluster: RbdCluster) -> None:
    opts = options(tmp_path, ceph_cluster.conf)
    await nursery.start(serve, opts)
    api = ApiClient.for_server(opts)
    missing = image_name("missing")
    reply = await api.post(f"{ISCSI}/extent/", {"iscsi_target_extent_name": "m", "iscsi_target_extent_type": "RBD",
                                                 "iscsi_target_extent_path": f"{POOL}/{missing}"})
    assert reply.status == 409, reply.body
    (message,) = reply.json()["iscsi_target_extent_path"]
    assert f"RBD image {POOL}/{missing} does not exist" in message and "iscsi_target_extent_filesize" in message
    assert not rbd_cluster.image_exists(POOL, missing)
    reply = await api.post(f"{ISCSI}/extent/", {"iscsi_target_extent_name": "p", "iscsi_target_extent_type": "RBD",
                                                 "iscsi_target_extent_path": "nopool/x",
                                                 "iscsi_target_extent_filesize": "1MB"})
    assert reply.status == 409 and "pool 'nopool' does not exist" in reply.json()["iscsi_target_extent_path"][0]


async def test_the_cli_creates_an_rbd_extent(nursery: trio.Nursery, tmp_path: Path,
                                            ceph_cluster: CephCluster, rbd_cluster: RbdCluster) -> None:
    """`pyscsi-targetctl extent create NAME --rbd POOL/IMAGE --size S`: the image is created and the
    extent listed as RBD; a refusal names the API's field (exit 1), and two places are a usage error."""
    opts = options(tmp_path, ceph_cluster.conf)
    await nursery.start(serve, opts)
    base = ["--api", f"http://{opts.api}", "--password-file", str(opts.data_dir / "api-password")]
    runner = CliRunner()

    async def ctl(*args: str) -> Result:
        return await trio.to_thread.run_sync(lambda: runner.invoke(cli, [*base, *args]))

    image = image_name("cli")
    made = await ctl("--json", "extent", "create", "vol", "--rbd", f"{POOL}/{image}", "--size", "16M")
    assert made.exit_code == 0, (made.stdout, made.stderr)
    ext = json.loads(made.stdout)
    assert (ext["iscsi_target_extent_type"], ext["iscsi_target_extent_path"]) == ("RBD", f"{POOL}/{image}")
    assert ext["iscsi_target_extent_filesize"] == str(16 << 20) and rbd_cluster.image_exists(POOL, image)
    missing = await ctl("extent", "create", "m", "--rbd", f"{POOL}/{image_name('missing')}")
    assert missing.exit_code == 1 and missing.stderr.startswith("iscsi_target_extent_path: "), missing.stderr
    assert "does not exist; give a size" in missing.stderr
    both = await ctl("extent", "create", "b", "--rbd", f"{POOL}/x", "--path", str(tmp_path / "b.img"))
    assert both.exit_code == 2 and "--rbd" in both.stderr


def test_reads_and_writes_on_the_event_loop_are_asynchronous(rbd_cluster: RbdCluster) -> None:
    """execute(nowait=True) starts librbd aio and returns a Pending result (before issue #15 an
    RBD read raised WouldBlock: a worker thread per command); its completion comes back on a
    librbd thread and `finish` makes the status there is to send."""
    image = image_name("aio")
    rbd_cluster.create_image(POOL, image, 1 << 20)
    backend = rbd_cluster.open(POOL, image, BS, False)
    lu = LogicalUnit(backend, LuIdentity(serial="s", naa="0x6589cfc000000aaaaaaaaaaaaaaaaaaa"), host=STANDALONE)
    nexus = Nexus("iqn.i,i,0x1", "iqn.t,t,0x1")
    outcomes: list[object] = []
    arrived = threading.Event()

    def complete(o: object) -> None:
        outcomes.append(o)
        arrived.set()

    try:
        execute(ScsiRequest(bytes(6), 0, nexus), {0: lu})  # TEST UNIT READY: the UA of a new LU
        write = ScsiRequest(bytes([0x2A, 0, 0, 0, 0, 3, 0, 0, 1, 0]), 0, nexus, blocks(1, 5), 1)
        res = execute(write, {0: lu}, nowait=True)
        assert res.pending is not None and res.status == 0
        res.pending.start(complete)
        assert arrived.wait(30)
        assert res.pending.finish(outcomes.pop()).transfer_length == BS
        arrived.clear()
        res = execute(ScsiRequest(bytes([0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0]), 0, nexus, None, 2), {0: lu}, nowait=True)
        assert res.pending is not None
        res.pending.start(complete)
        assert arrived.wait(30)
        assert bytes(res.pending.finish(outcomes.pop()).data) == blocks(1, 5)
    finally:
        backend.close()
        rbd_cluster.remove_image(POOL, image)


async def test_an_unreachable_cluster_leaves_the_lu_not_ready_and_is_retried(
        tmp_path: Path, ceph_cluster: CephCluster, rbd_cluster: RbdCluster, caplog: pytest.LogCaptureFixture) -> None:
    good = ceph_cluster.conf.read_text()
    conf = tmp_path / "ceph.conf"
    conf.write_text(good)
    opts = options(tmp_path, conf)
    image = image_name("retry")
    async with trio.open_nursery() as nursery:  # configure it while the cluster is reachable
        await nursery.start(serve, opts)
        port, iqn, _ = await build(ApiClient.for_server(opts), image, iscsi_target_extent_filesize="8MB")
        nursery.cancel_scope.cancel()
    # restarted with a conf whose monitor address leads nowhere (another file: the process keeps
    # one connection per cluster conf), start-up cannot reach the cluster
    conf = tmp_path / "unreachable.conf"
    conf.write_text(good.replace(f"127.0.0.1:{ceph_cluster.port}", f"127.0.0.1:{free_port()}"))
    opts = dataclasses.replace(opts, ceph_conf=str(conf))
    caplog.set_level(logging.ERROR)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            service = await nursery.start(serve, opts)
            (problem,) = service.extent_problems().values()
            assert "cannot reach the Ceph cluster" in problem
            assert any("is not served (LUN not ready)" in r.getMessage() for r in caplog.records)
            c = await Client.connect("127.0.0.1", port, name=CLIENT_IQN)  # the portal serves
            await c.login(iqn)
            res = await c.command(bytes(6))  # TEST UNIT READY: after the power-on UNIT ATTENTION,
            if res.status == 2 and res.sense_key[0] == 6:
                res = await c.command(bytes(6))
            assert res.status == 2 and res.sense_key == (2, 4, 3)  # NOT READY, MANUAL INTERVENTION
            await c.aclose()
            conf.write_text(good)  # the cluster is back: the retry loop opens it
            # the behaviour under test is a timer's (NOT_READY_RETRY_S, doubling): watch its effect
            while service.extent_problems():  # noqa: ASYNC110 - no event to wait for: the timer is the subject
                await trio.sleep(0.5)
            c = await session(port, iqn)
            assert (await c.write10(0, blocks(1, 9))).status == 0
            assert (await c.read10(0, 1)).data == blocks(1, 9)
            await c.logout()
            nursery.cancel_scope.cancel()
    assert "key" not in " ".join(r.getMessage().lower() for r in caplog.records)

