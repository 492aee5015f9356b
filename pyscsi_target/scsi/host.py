"""`LuHost`: what the SCSI core may ask of the fabric that serves its logical units (issue #14).

LIO's `target_core_fabric_ops` is a typed table of what the core may call in the fabric; this is
ours. Every `LogicalUnit` is given its host when it is built, and asks it only the questions below;
the server (`server/fabric.py`) answers from what it knows (its connections, its extents, its
persistent-reservation store, its nursery). Nothing else of the fabric is reachable from scsi/.

What a command returns to the transport that issued it travels on its `ScsiResult` instead
(`final`, `preempted`): those concern that command's connection (its LUN numbering, its own tasks,
when its response may go), not the fabric as a whole.

The host is also where the core reports to the fabric (the per-LU and per-session statistics of
issue #13 hang here): a method added to `LuHost` is a call every fabric must answer.

`STANDALONE` is the host of a logical unit that no fabric serves (tools, benchmarks): every nexus
is alive, no other LU is reachable, persistent reservations are not kept across restarts, and
background work runs to its end in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .lu import LogicalUnit
    from .types import Nexus

#: PR state as plain JSON-able data (`PrState.to_json`)
PrData = dict[str, object]


class LuHost(Protocol):
    """What the SCSI core may ask of the fabric. Every method may be called from any thread that
    runs `execute()` (the event loop or a worker thread) and must not block for long."""

    def nexus_alive(self, nexus: Nexus) -> bool:
        """Is this I_T nexus still carried by a live connection? Asked before an SPC-2
        reservation held by `nexus` makes another nexus's command conflict (SPC-2 §5.5.1: an I_T
        nexus loss releases it), when the end of its connection may not have been processed yet."""
        ...

    def find_lu(self, designator: bytes) -> LogicalUnit | None:
        """The LU served anywhere by this fabric with this NAA designator (8 or 16 bytes), for an
        EXTENDED COPY naming an LU beyond the session's LUNs (SPC-4 §6.4.5); None if none."""
        ...

    def persists_pr(self, lu: LogicalUnit) -> bool:
        """Can `lu`'s persistent reservations be kept across a restart (PTPL_C, APTPL=1 allowed,
        SPC-4 §5.13.5.4)? When True, `save_pr_state` is called after every change."""
        ...

    def save_pr_state(self, lu: LogicalUnit, state: PrData) -> None:
        """Keep `state` (the LU's new PR state) before the PERSISTENT RESERVE OUT completes; the
        fabric stores it when its APTPL is set and drops its stored copy when not. Raise OSError if
        it cannot be saved: the command then fails and the state stays as it was."""
        ...

    def run_background(self, run: Callable[[], object], stop: Callable[[], None]) -> None:
        """Run blocking `run()` to its end in a thread the fabric owns, apart from the command that
        started it: it outlives that command, resets, aborts, logout and the connection (a sanitize
        operation, SBC-4 §4.11.2). `run` must be called exactly once, also when the fabric is
        shutting down; `stop()` (thread-safe) makes a running or not yet started `run()` end at its
        next step, which is how the fabric ends it when it shuts down or closes the LU."""
        ...


class Standalone:
    """The host of a logical unit that no fabric serves."""

    def nexus_alive(self, nexus: Nexus) -> bool:
        return True  # nothing reports a nexus lost: reservations conflict as long as they are held

    def find_lu(self, designator: bytes) -> LogicalUnit | None:
        return None

    def persists_pr(self, lu: LogicalUnit) -> bool:
        return False

    def save_pr_state(self, lu: LogicalUnit, state: PrData) -> None:
        raise OSError("persistent reservations are not kept for a standalone logical unit")

    def run_background(self, run: Callable[[], object], stop: Callable[[], None]) -> None:
        run()


STANDALONE: LuHost = Standalone()
