"""Task management on the wire (RFC 7143 §11.5, §11.6): the function codes of a Task Management
Function Request, the Response codes of its answer, and what a function does to the connection.

The server performs the functions (server/taskmgmt.py: aborting this connection's tasks here in
`Connection`, resetting logical units in the SCSI core) and answers with one of these codes.
"""

from __future__ import annotations

from enum import IntEnum


class TmfFunction(IntEnum):
    """Function, byte 1 of the request (RFC 7143 §11.5.1)."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResponse(IntEnum):
    """Response, byte 2 of the answer (RFC 7143 §11.6.1)."""

    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    TASK_REASSIGNMENT_NOT_SUPPORTED = 4
    FUNCTION_NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    FUNCTION_REJECTED = 255


def closes_connection(function: int) -> bool:
    """True when the target drops the connection once the function's response is sent: after a
    TARGET COLD RESET it drops all of them (RFC 7143 §11.5.1)."""
    return function == TmfFunction.TARGET_COLD_RESET
