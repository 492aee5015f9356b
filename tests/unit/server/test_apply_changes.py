"""The O(change) apply path (server/apply.py, issue #12) keeps what the full apply did for
statistics (issue #13: an LU's totals outlive a reopen of its extent) and thresholds (issue #11
item 2: every LU follows the global pool threshold), when a change is a draft that touches only
some ids. A real `TargetService` (not listening) with file extents under a temporary root."""

from __future__ import annotations

from pathlib import Path

import trio

from pyscsi_target.model import Extent, LunMapping
from pyscsi_target.model.config import EXTENT_FILE
from pyscsi_target.model.extents import StoragePolicy, new_naa, new_serial
from pyscsi_target.server.demo import demo_config
from pyscsi_target.server.service import TargetService

SIZE = str(1 << 20)


async def test_a_reopened_extent_keeps_its_totals_and_new_lus_follow_the_pool_threshold(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = TargetService(None, policy=StoragePolicy((str(tmp_path),)))
    await nursery.start(service.run)
    cfg = demo_config(service.snapshot(), "127.0.0.1:3260", tmp_path)
    cfg.service.enabled = False  # no listener: the test looks at the LUs only
    await service.apply(cfg)
    [eid] = service.extents
    first = service.extents[eid]
    first.lu.stats.commands[0] = 7

    draft = service.snapshot().draft()  # a change of the extent's storage: it is opened again
    draft.extents[eid].path = str(tmp_path / "moved.img")
    await service.apply(draft)
    assert service.extents[eid] is not first
    assert service.extents[eid].lu.stats.commands[0] == 7

    draft = service.snapshot().draft()  # the global threshold reaches the LUs the change did not touch
    draft.global_config.pool_avail_threshold = 40
    await service.apply(draft)
    assert service.extents[eid].lu.pool_avail_threshold == 40

    draft = service.snapshot().draft()  # and a new LU starts with it
    [tid] = draft.targets
    new = draft.new_id("extents")
    draft.extents[new] = Extent(id=new, name="second", type=EXTENT_FILE, path=str(tmp_path / "second.img"),
                                filesize=SIZE, naa=new_naa(draft), serial=new_serial(draft))
    mid = draft.new_id("mappings")
    draft.mappings[mid] = LunMapping(id=mid, target=tid, extent=new, lunid=1)
    await service.apply(draft)
    assert service.extents[new].lu.pool_avail_threshold == 40
    assert set(service.lun_map(tid)) == {0, 1}
