"""The SCSI target core (SAM-5 / SPC-4 / SBC-4): no iSCSI, no trio.

`execute(request, luns)` runs one command against the logical units of a target and returns
its status, Data-In and sense; `is_blocking()` tells the server whether to run it in a worker
thread, `data_out_length()` how much Data-Out a CDB expects.
"""

from .core import data_out_length, execute, is_blocking, storage_reason
from .lu import LogicalUnit, LuIdentity, ModeState
from .sense import CheckCondition, SenseReason, build_sense
from .types import Nexus, ScsiRequest, ScsiResult

__all__ = [
    "CheckCondition",
    "LogicalUnit",
    "LuIdentity",
    "ModeState",
    "Nexus",
    "ScsiRequest",
    "ScsiResult",
    "SenseReason",
    "build_sense",
    "data_out_length",
    "execute",
    "is_blocking",
    "storage_reason",
]
