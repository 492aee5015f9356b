"""Task management functions of one connection (RFC 7143 §11.5, SAM-5 §7): what each function
does, and the Response code (protocol/tmf.py) its outcome is answered with.

The tasks are this connection's (one connection per session, and we keep no task set across
nexuses): aborting them is `protocol.Connection`'s (`abort_task`, `abort_tasks`: forgotten, Data-Out
included, never answered, before the TMF response, RFC 7143 §11.5.1); resetting a logical unit is
the SCSI core's (`LogicalUnit.reset`). Commands already running in worker threads finish, and
their answers are dropped.

| function | does | answers |
|---|---|---|
| ABORT TASK | forget the referenced command | FUNCTION COMPLETE, or TASK DOES NOT EXIST |
| ABORT TASK SET, CLEAR TASK SET | forget this session's commands on the LUN (SAM-5 §7.3, §7.4) | FUNCTION COMPLETE |
| LOGICAL UNIT RESET | forget them, reset the LU (SAM-5 §6.3.3) | FUNCTION COMPLETE, or LUN DOES NOT EXIST |
| TARGET WARM / COLD RESET | forget every command, reset every LU of the target | FUNCTION COMPLETE |
| CLEAR ACA, TASK REASSIGN | (no ACA; ErrorRecoveryLevel=0) | FUNCTION NOT SUPPORTED |

After a TARGET COLD RESET's response the connection closes (`protocol.tmf.closes_connection`).

An LU that other processes also serve (an RBD image behind several gateways, issue #15) has an
`announce_reset`: the resets above tell the other gateways, which raise the same unit attention on
their own nexuses. The response then waits for them (`announcements`, `announce`; the connection
answers after), so the initiator's next command through any path sees the unit attention. The
wait is bounded by RESET_ANNOUNCE_TIMEOUT_S; an announcement that fails or times out is logged
by the storage and the function still completes: the reset is done here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio

from ..protocol import Connection
from ..protocol.events import TaskManagement
from ..protocol.tmf import TmfFunction, TmfResponse
from ..scsi.lu import LogicalUnit
from ..scsi.types import Nexus

#: longest wait of a reset's response for the other gateways to hear of it, seconds: above the
#: storage's own notify timeout (storage.rbd_events.RESET_NOTIFY_TIMEOUT_S, which reports a
#: gateway that does not answer), for a cluster that does not answer the notify at all
RESET_ANNOUNCE_TIMEOUT_S = 6.0


def task_management(conn: Connection, ev: TaskManagement, luns: Mapping[int, LogicalUnit],
                    nexus: Nexus | None) -> TmfResponse:
    """Perform `ev` on `conn`'s tasks and the target's LUs `luns` for the I_T nexus `nexus`."""
    function = ev.function
    if function == TmfFunction.ABORT_TASK:
        found = conn.abort_task(ev.referenced_itt)
        return TmfResponse.FUNCTION_COMPLETE if found else TmfResponse.TASK_DOES_NOT_EXIST
    if function in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET):
        conn.abort_tasks(ev.lun)
        return TmfResponse.FUNCTION_COMPLETE
    if function == TmfFunction.LOGICAL_UNIT_RESET:
        lu = luns.get(ev.lun)
        if lu is None:
            return TmfResponse.LUN_DOES_NOT_EXIST
        conn.abort_tasks(ev.lun)
        lu.reset(nexus)
        return TmfResponse.FUNCTION_COMPLETE
    if function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
        conn.abort_tasks(None)
        for lu in luns.values():
            lu.reset(nexus)
        return TmfResponse.FUNCTION_COMPLETE
    return TmfResponse.FUNCTION_NOT_SUPPORTED


def announcements(ev: TaskManagement, luns: Mapping[int, LogicalUnit]) -> list[Callable[[], object]]:
    """What tells other processes serving the LUs that `ev` reset (`LogicalUnit.announce_reset`):
    empty for functions that reset nothing and for LUs only this process serves."""
    if ev.function == TmfFunction.LOGICAL_UNIT_RESET:
        reset = [luns[ev.lun]] if ev.lun in luns else []
    elif ev.function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
        reset = list(luns.values())
    else:
        return []
    return [lu.announce_reset for lu in reset if lu.announce_reset is not None]


async def announce(calls: list[Callable[[], object]]) -> None:
    """Run the blocking `calls` at once in worker threads; return when all have, or after
    RESET_ANNOUNCE_TIMEOUT_S (a call still waiting then is left to end on its own)."""
    with trio.move_on_after(RESET_ANNOUNCE_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(_in_thread, call)


async def _in_thread(call: Callable[[], object]) -> None:
    await trio.to_thread.run_sync(call, abandon_on_cancel=True)
