"""`ServerHost`: the server's answers to what the SCSI core may ask of its fabric (`scsi.LuHost`).

One per `TargetService`, given to every `LogicalUnit` it builds (server/extents.py). It answers
from the server's own knowledge: the live connections (is a nexus still carried by one), the
extents being served (an LU by its NAA designator for EXTENDED COPY), the persistent reservation
store (APTPL, SPC-4 §5.13.5.4), and the service's nursery, which owns every background operation
(a sanitize, SBC-4 §4.11.2): each runs in a trio worker thread under a task of that nursery, so it
is joined before the service closes the extents; when the nursery is cancelled (shutdown) the
operation is stopped at its next step (`stop`), so shutdown is bounded by one step of I/O.

Every method may be called from a worker thread running `scsi.execute()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import trio

from ..scsi.host import PrData
from ..scsi.lu import LogicalUnit
from ..scsi.types import Nexus
from .extents import LiveExtent
from .prstore import PrStore

log = logging.getLogger("pyscsi_target.fabric")


class NexusCarrier(Protocol):
    """What the host needs of a connection: its I_T nexus (None before a normal login) and
    whether its socket is still open (`ConnectionHandler`)."""

    @property
    def nexus(self) -> Nexus | None: ...

    def connection_alive(self) -> bool: ...


class ServerHost:
    """Implements `scsi.host.LuHost` for the LUs of one `TargetService`."""

    def __init__(self, connections: Iterable[NexusCarrier], extents: Mapping[int, LiveExtent],
                 pr_store: PrStore | None) -> None:
        """`connections` and `extents` are the service's live collections (read, never changed)."""
        self._connections = connections
        self._extents = extents
        self._pr_store = pr_store
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    def bind(self, nursery: trio.Nursery) -> None:
        """Background work runs in `nursery` from now on (the service's, while it runs)."""
        self._nursery = nursery
        self._token = trio.lowlevel.current_trio_token()

    # -- scsi.host.LuHost ---------------------------------------------------------------------------
    def nexus_alive(self, nexus: Nexus) -> bool:
        """A connection carries `nexus` and its peer has not closed it (copying the set is
        atomic under the GIL; the handlers change only in the trio thread)."""
        for conn in list(self._connections):
            if conn.nexus == nexus:
                return conn.connection_alive()
        return False

    def find_lu(self, designator: bytes) -> LogicalUnit | None:
        for live in list(self._extents.values()):
            if live.lu.identity.naa_bytes() == designator:
                return live.lu
        return None

    def persists_pr(self, lu: LogicalUnit) -> bool:
        """Kept next to the extent, by NAA, when the server has a store and the LU is served
        (an LU whose saved state could not be read must not overwrite it)."""
        return self._pr_store is not None and bool(lu.identity.naa) and lu.unavailable is None

    def save_pr_state(self, lu: LogicalUnit, state: PrData) -> None:
        assert self._pr_store is not None
        self._pr_store.save(lu.identity.naa, state)

    def run_background(self, run: Callable[[], object], stop: Callable[[], None]) -> None:
        """Start `run` under the service's nursery (from any thread). When that is not possible
        any more (the service has ended), the work is stopped and run at once: it ends without
        doing anything, as the LuHost contract wants every `run` called."""
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self._spawn, run, stop)
                return
            except trio.RunFinishedError:
                pass
        _run_stopped(run, stop)

    # -- background work ----------------------------------------------------------------------------
    def _spawn(self, run: Callable[[], object], stop: Callable[[], None]) -> None:
        try:
            assert self._nursery is not None
            self._nursery.start_soon(_background, run, stop)
        except RuntimeError:  # the nursery is closed: the service is shutting down
            _run_stopped(run, stop)


async def _background(run: Callable[[], object], stop: Callable[[], None]) -> None:
    """Run `run` in a worker thread to its end; cancelled (shutdown), it is stopped and joined."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_when_cancelled, stop)
        try:
            # not abandon_on_cancel: the thread is always joined, the stopper makes that quick
            await trio.to_thread.run_sync(run)
        except Exception:
            log.exception("background operation failed")
        finally:
            nursery.cancel_scope.cancel()


async def _stop_when_cancelled(stop: Callable[[], None]) -> None:
    try:
        await trio.sleep_forever()
    finally:
        stop()


def _run_stopped(run: Callable[[], object], stop: Callable[[], None]) -> None:
    stop()
    try:
        run()
    except Exception:
        log.exception("background operation failed")
