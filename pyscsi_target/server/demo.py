"""`--demo`: the configuration a first-time user gets (issue #2): one portal, a target named
`demo` without authentication, and a 1 GiB sparse file extent mapped as LUN 0."""

from __future__ import annotations

from pathlib import Path

from ..model import Config, Extent, LunMapping, Portal, PortalAddress, Target, TargetGroup
from ..model.config import EXTENT_FILE
from ..model.extents import new_naa, new_serial
from .options import DEMO_EXTENT_BYTES, split_host_port

DEMO_TARGET = "demo"
DEMO_EXTENT_FILE = "demo.img"


def demo_config(base: Config, portal: str, extent_root: Path) -> Config:
    cfg = base.copy()
    host, port = split_host_port(portal, 3260)
    pid = cfg.new_id("portals")
    cfg.portals[pid] = Portal(id=pid, tag=len(cfg.portals) + 1, ips=[PortalAddress(host, port)],
                              comment="demo portal")
    tid = cfg.new_id("targets")
    cfg.targets[tid] = Target(id=tid, name=DEMO_TARGET)
    gid = cfg.new_id("targetgroups")
    cfg.targetgroups[gid] = TargetGroup(id=gid, target=tid, portalgroup=pid)
    eid = cfg.new_id("extents")
    cfg.extents[eid] = Extent(
        id=eid, name=DEMO_TARGET, type=EXTENT_FILE, path=str(extent_root / DEMO_EXTENT_FILE),
        filesize=str(DEMO_EXTENT_BYTES), naa=new_naa(cfg), serial=new_serial(cfg), comment="demo LUN",
    )
    mid = cfg.new_id("mappings")
    cfg.mappings[mid] = LunMapping(id=mid, target=tid, extent=eid, lunid=0)
    return cfg


def demo_url(cfg: Config) -> str:
    target = next(t for t in cfg.targets.values() if t.name == DEMO_TARGET)
    portal = next(iter(cfg.portals.values()))
    return f"iscsi://{portal.ips[0]}/{cfg.target_iqn(target)}/0"
