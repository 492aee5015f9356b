"""Issue #12: a change costs its objects, not the configuration (model/draft.py, model/indexes.py).

- a draft reads through to its base, writes only to itself, and its base changes only at
  commit(), in place, with its indexes kept;
- indexed lookups give the answers of a scan after any sequence of random changes;
- the store writes a draft's changed rows only (one transaction), and the result loads back equal.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from pyscsi_target.model import (
    Config,
    ConfigStore,
    Draft,
    Extent,
    LunMapping,
    Portal,
    PortalAddress,
    Target,
    TargetGroup,
    committed,
)
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.edits import delete
from pyscsi_target.model.indexes import SPECS


def volumes(n: int, root: Path) -> Config:
    cfg = Config()
    cfg.portals[1] = Portal(1, tag=1, ips=[PortalAddress("127.0.0.1", 3260)])
    for i in range(1, n + 1):
        cfg.targets[i] = Target(i, name=f"pvc-{i}")
        cfg.extents[i] = Extent(i, name=f"pvc-{i}", type=EXTENT_FILE, path=str(root / f"pvc-{i}.img"),
                                filesize="1048576", serial=f"s{i:013d}", naa=f"0x6589cfc000000{i:019x}")
        cfg.targetgroups[i] = TargetGroup(i, target=i, portalgroup=1)
        cfg.mappings[i] = LunMapping(i, target=i, extent=i, lunid=0)
    return cfg.indexed()


def test_a_draft_leaves_its_base_alone_until_commit(tmp_path: Path) -> None:
    base = volumes(3, tmp_path)
    draft = base.draft()
    draft.targets[2].name = "renamed"  # the draft's own copy
    del draft.extents[3]
    draft.targets[9] = Target(9, name="new")
    assert base.targets[2].name == "pvc-2" and 3 in base.extents and 9 not in base.targets
    assert [t.name for t in draft.targets.values()] == ["pvc-1", "renamed", "pvc-3", "new"]
    assert len(draft.extents) == 2 and 3 not in draft.extents
    assert set(draft.changes("targets")) == {2, 9} and draft.changes("extents") == {3: None}
    old_target = base.targets[2]
    assert committed(draft, base) is base
    assert base.targets[2].name == "renamed" and base.targets[9].name == "new" and 3 not in base.extents
    assert old_target.name == "pvc-2"  # objects are replaced, never changed
    assert base.target_by_iqn("iqn.2005-10.org.freenas.ctl:renamed") is base.targets[2]
    assert base.target_by_iqn("iqn.2005-10.org.freenas.ctl:pvc-2") is None
    assert list(base.find("mapping_extent", 3)) == [3]  # the mapping stays until a cascade drops it


def test_a_read_alone_is_no_change(tmp_path: Path) -> None:
    base = volumes(2, tmp_path)
    draft = base.draft()
    assert draft.targets[1].name == "pvc-1" and draft.luns_of_target(2)[0].name == "pvc-2"
    assert draft.changed_collections() == {}


def test_a_basename_change_renames_every_target_in_the_index(tmp_path: Path) -> None:
    base = volumes(3, tmp_path)
    draft = base.draft()
    draft.global_config.basename = "iqn.2026-12.org.example"
    assert draft.target_by_iqn("iqn.2026-12.org.example:pvc-2") == base.targets[2]
    committed(draft, base)
    assert base.target_by_iqn("iqn.2026-12.org.example:pvc-2") is base.targets[2]
    assert base.target_by_iqn("iqn.2005-10.org.freenas.ctl:pvc-2") is None
    assert base.find("extent_name", "pvc-3") == {3}  # the other indexes are kept


def _scan(cfg: Config, index: str, key: object) -> set[int]:
    spec = SPECS[index]
    return {o.id for o in getattr(cfg, spec.collection).values() if key in spec.keys(cfg, o)}


def test_indexed_lookups_agree_with_scans_after_random_changes(tmp_path: Path) -> None:
    rng = random.Random(12)
    cfg = volumes(40, tmp_path)
    for _ in range(150):
        draft = cfg.draft()
        roll = rng.random()
        tid = rng.choice(list(draft.targets)) if draft.targets else None
        if roll < 0.3 and tid is not None:
            delete(draft, "targets", tid)
        elif roll < 0.5 and draft.extents:
            delete(draft, "extents", rng.choice(list(draft.extents)))
        elif roll < 0.7 and tid is not None:
            draft.targets[tid].name = f"n{rng.randrange(30)}"
            draft.targets[tid].alias = rng.choice([None, "a", "b"])
        elif roll < 0.85 and tid is not None and draft.extents:
            mid = draft.new_id("mappings")
            draft.mappings[mid] = LunMapping(mid, tid, rng.choice(list(draft.extents)), rng.randrange(4))
        else:
            nid = draft.new_id("targets")
            draft.targets[nid] = Target(nid, name=f"n{rng.randrange(30)}")
            gid = draft.new_id("targetgroups")
            draft.targetgroups[gid] = TargetGroup(gid, target=nid, portalgroup=1)
        probes = {
            "target_iqn": [f"iqn.2005-10.org.freenas.ctl:n{i}" for i in range(30)],
            "target_alias": ["a", "b"],
            "mapping_target": list(range(60)),
            "mapping_extent": list(range(60)),
            "group_target": list(range(60)),
            "extent_name": [f"pvc-{i}" for i in range(45)],
        }
        for index, keys in probes.items():  # the draft, before commit: base index + touched objects
            for key in keys:
                assert set(draft.find(index, key)) == _scan(draft, index, key), (index, key)
        cfg = committed(draft, cfg)
        for index, keys in probes.items():  # the committed configuration's own indexes
            for key in keys:
                assert set(cfg.find(index, key)) == _scan(cfg, index, key), (index, key)


def test_the_store_writes_only_the_rows_a_draft_changes(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.db")
    base = volumes(500, tmp_path)
    store.save(base)
    draft = base.draft()
    assert isinstance(draft, Draft)
    draft.targets[7].alias = "seven"
    delete(draft, "targets", 8)
    eid = draft.new_id("extents")
    draft.extents[eid] = Extent(eid, name="new", type=EXTENT_FILE, path=str(tmp_path / "new.img"))
    before = store._db.total_changes
    store.save(draft)
    # target 7 updated, target 8 with its group and mapping deleted, one extent inserted, and the
    # three singletons (global, service, id counters): nothing else is rewritten
    assert store._db.total_changes - before == 1 + 3 + 1 + 3
    expected = committed(draft, base).copy()
    store.close()
    db = sqlite3.connect(tmp_path / "config.db")
    assert db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1 + 4 * 500 - 3 + 1
    db.close()
    assert ConfigStore(tmp_path / "config.db").load() == expected
