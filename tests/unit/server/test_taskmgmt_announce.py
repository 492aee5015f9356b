"""Which resets are told to other gateways, and how long a TMF response may wait for that
(server/taskmgmt.py, issue #15): a LOGICAL UNIT RESET announces its LU, a target reset every LU of
the target that has an `announce_reset`, other functions nothing; `announce` runs the calls at
once and gives up after RESET_ANNOUNCE_TIMEOUT_S on one that does not return."""

from __future__ import annotations

import threading

import pytest
import trio

from pyscsi_target.protocol.events import TaskManagement
from pyscsi_target.protocol.tmf import TmfFunction
from pyscsi_target.scsi.host import STANDALONE
from pyscsi_target.scsi.lu import LogicalUnit, LuIdentity
from pyscsi_target.server import taskmgmt
from pyscsi_target.storage import MemoryBackend


def lu(shared: bool, told: list[int], n: int) -> LogicalUnit:
    unit = LogicalUnit(MemoryBackend(8), LuIdentity(serial=f"s{n}", naa=""), host=STANDALONE)
    if shared:
        unit.announce_reset = lambda: told.append(n)
    return unit


def tmf(function: int, lun: int = 0) -> TaskManagement:
    return TaskManagement(itt=1, function=function, lun=lun, referenced_itt=0, ref_cmdsn=0, cmdsn=0)


def test_which_resets_are_announced() -> None:
    told: list[int] = []
    luns = {0: lu(True, told, 0), 1: lu(False, told, 1), 2: lu(True, told, 2)}
    for call in taskmgmt.announcements(tmf(TmfFunction.LOGICAL_UNIT_RESET, 2), luns):
        call()
    assert told == [2]
    assert taskmgmt.announcements(tmf(TmfFunction.LOGICAL_UNIT_RESET, 1), luns) == []  # not shared
    assert taskmgmt.announcements(tmf(TmfFunction.LOGICAL_UNIT_RESET, 7), luns) == []  # no such LUN
    for function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
        told.clear()
        for call in taskmgmt.announcements(tmf(function), luns):
            call()
        assert sorted(told) == [0, 2]
    for function in (TmfFunction.ABORT_TASK, TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET):
        assert taskmgmt.announcements(tmf(function), luns) == []


async def test_announce_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taskmgmt, "RESET_ANNOUNCE_TIMEOUT_S", 0.2)
    release, done = threading.Event(), []
    try:
        t0 = trio.current_time()
        await taskmgmt.announce([lambda: release.wait(30), lambda: done.append(1)])
        assert trio.current_time() - t0 < 5 and done == [1]  # the quick one ran, the stuck one was left
    finally:
        release.set()
