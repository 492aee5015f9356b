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
"""

from __future__ import annotations

from collections.abc import Mapping

from ..protocol import Connection
from ..protocol.events import TaskManagement
from ..protocol.tmf import TmfFunction, TmfResponse
from ..scsi.lu import LogicalUnit
from ..scsi.types import Nexus


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
