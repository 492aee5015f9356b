"""Issue #15: libiscsi's suite against an RBD LU on the private Ceph cluster, the same families and
the same scoreboard as the thin file LU of test_full_suite.py (`ALL` with SANITIZE allowed, then
MultipathIO with a second path): 0 real failures. The counts go side by side with the file LU's in
docs/rbd.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from pyscsi_target.model import Extent, LunMapping, Target, TargetGroup
from pyscsi_target.model.extent_rbd import EXTENT_RBD
from pyscsi_target.model.extents import new_naa, new_serial
from tests.rbd.cluster import POOL, CephCluster
from tests.rbd.fixtures import image_name
from tests.support import Running, demo_options, start

from .conftest import run_conformance

pytestmark = pytest.mark.conformance


async def add_rbd_lu(run: Running, name: str, image: str) -> str:
    """A new target `name` with one fresh 256 MiB RBD LU (created by the server), on the demo
    portal; returns its URL. As test_full_suite.add_lu, physical block reporting off."""
    svc = run.service
    cfg = svc.config.copy()
    portal_id = next(iter(cfg.portals))
    tid = cfg.new_id("targets")
    cfg.targets[tid] = Target(id=tid, name=name)
    gid = cfg.new_id("targetgroups")
    cfg.targetgroups[gid] = TargetGroup(id=gid, target=tid, portalgroup=portal_id)
    eid = cfg.new_id("extents")
    cfg.extents[eid] = Extent(id=eid, name=name, type=EXTENT_RBD, path=f"{POOL}/{image}", filesize=str(256 << 20),
                              pblocksize=True, naa=new_naa(cfg), serial=new_serial(cfg))
    mid = cfg.new_id("mappings")
    cfg.mappings[mid] = LunMapping(id=mid, target=tid, extent=eid, lunid=0)
    await svc.apply(cfg)
    return f"iscsi://{run.portal}/{cfg.target_iqn(cfg.targets[tid])}/0"


async def test_full_suite_rbd_lu(nursery: trio.Nursery, tmp_path: Path, ceph_cluster: CephCluster) -> None:
    opts = dataclasses.replace(demo_options(tmp_path / "data"), ceph_conf=str(ceph_cluster.conf))
    run = await start(nursery, opts)
    url = await add_rbd_lu(run, "rbd", image_name("conformance"))
    res = await run_conformance(url, "ALL", allow_sanitize=True)
    assert not res.real_failures() and res.consistent, res.report()
    mp = await run_conformance(url, "ALL.MultipathIO", second_url=url)
    assert not mp.real_failures(), mp.report()
    assert mp.counts["passed"] >= 1 and not mp.counts["skipped"], mp.report()
    print(f"RBD LU: ALL {res.counts}, MultipathIO {mp.counts}")
    assert res.counts["passed"] >= 200, res.report()
