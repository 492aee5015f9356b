"""The SCSI target core (SAM-5 / SPC-4 / SBC-4): no iSCSI, no trio.

`execute(request, luns, nowait=...)` runs one command against the logical units of a target and
returns its status, Data-In, sense and the transfer length for residuals; with `nowait=True` a
command that would wait raises storage.WouldBlock before anything changed, and the server runs it
again in a worker thread. That is the whole seam the server uses to run commands; the other
way, what the core may ask of the server, is the `LuHost` every `LogicalUnit` is built with
(host.py).
"""

from .core import execute, storage_reason
from .host import STANDALONE, LuHost
from .lu import LogicalUnit, LuIdentity, ModeState
from .sense import CheckCondition, SenseReason, build_sense
from .types import Nexus, ScsiRequest, ScsiResult

__all__ = [
    "CheckCondition",
    "STANDALONE",
    "LogicalUnit",
    "LuHost",
    "LuIdentity",
    "ModeState",
    "Nexus",
    "ScsiRequest",
    "ScsiResult",
    "SenseReason",
    "build_sense",
    "execute",
    "storage_reason",
]
