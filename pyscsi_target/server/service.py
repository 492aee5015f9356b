"""`TargetService`: the running target, and the `TargetControl` the API drives.

It holds the configuration being served, the open extents, the portal listeners and the session
registry, and makes the live target match each change (spec Part B.2) through the apply path of
server/apply.py (`ChangeApplier`: open, persist, switch over, in O(change)); this module keeps
the listeners and connections (in their own nursery, ended only by the shutdown, issue #16),
the sessions' end when their target or portal goes or is renamed, the retry of NOT READY remote
extents (issue #15), the statistics (issue #13) and the queries connections make. Every apply
runs under one lock, so changes apply one at a time and in order.
"""

from __future__ import annotations

import errno
import gc
import logging
import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from ..model import ApplyError, Config, ConfigStore, Extent, Portal, SessionInfo, as_change
from ..model.extents import StoragePolicy
from ..model.kinds import kind_for
from ..model.stats import Statistics
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit
from .admission import Admission
from .apply import Address, ChangeApplier, flush_and_close_all
from .connection import LOGIN_TIMEOUT_REASON, ConnectionHandler, tune_socket
from .extents import LiveExtent
from .fabric import ServerHost
from .isns import IsnsManager
from .kinds import open_extent
from .prstore import PrStore
from .sessions import SessionRegistry
from .stats import LOGIN_SUCCESS, PortalCounters, ProcessCounters, login_result, session_info, statistics

log = logging.getLogger("pyscsi_target.service")

#: listen() backlog per portal socket
LISTEN_BACKLOG = 128
#: at shutdown, initiators get this long to log out after the target asks them to, seconds
SHUTDOWN_LOGOUT_GRACE_S = 2.0
#: first wait before a NOT READY extent of a remote kind (RBD) is opened again, seconds; it
#: doubles while the extent stays NOT READY, up to the maximum (ceph-iscsi's gateway retries its
#: cluster connection on a comparable scale; one ERROR line per attempt)
NOT_READY_RETRY_S = 5.0
NOT_READY_RETRY_MAX_S = 60.0


@dataclass
class Listener:
    address: Address
    sock: trio.socket.SocketType
    cancel: trio.CancelScope


async def bind_listener(address: Address) -> trio.socket.SocketType:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class TargetService(ChangeApplier):
    """Implements `model.TargetControl`."""

    def __init__(self, store: ConfigStore | None, *,
                 extent_opener: Callable[[Extent, LuHost], LiveExtent] | None = None,
                 pr_store: PrStore | None = None,
                 policy: StoragePolicy | None = None) -> None:
        """`policy`: where extents may live (--extent-root, --device-root, --allow-file-devices;
        without one no File extent is served and Disk extents only from /dev). `extent_opener`
        (blocking, run in a worker thread) turns a model Extent into a live one, by default
        `open_extent` under `policy`; tests pass one that builds backends with fault-injection
        hooks (FileBackend `flush_fn`); it must build the LU with the host it is given."""
        self.store = store
        self.policy = policy if policy is not None else StoragePolicy(())
        self._extent_opener = extent_opener or self._open_confined
        if pr_store is None and store is not None:
            pr_store = PrStore(store.path.parent)
        self.pr_store = pr_store
        self.config = Config().indexed()
        self.extents: dict[int, LiveExtent] = {}
        self.listeners: dict[Address, Listener] = {}
        self._portal_of: dict[Address, int] = {}
        self.registry = SessionRegistry()
        self._lun_maps: dict[int, dict[int, LogicalUnit]] = {}
        self._identities: dict[tuple[object, ...], int] = {}
        self._failing: set[int] = set()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        #: the nursery of listeners and connections (`run`), and the scope that ends it
        self._connections: trio.Nursery | None = None
        self._connections_scope = trio.CancelScope()
        self.handlers: set[ConnectionHandler] = set()
        #: what the SCSI core of every LU served here may ask of the server (fabric.py)
        self.host = ServerHost(self.handlers, self.extents, pr_store)
        self.admission = Admission()
        self._last_refusal_log = -math.inf
        self.isns: IsnsManager | None = None  # iSNS registration (server/isns.py), while running
        #: statistics (server/stats.py): per portal id, and of the process
        self.portal_counters: dict[int, PortalCounters] = {}
        self.process_counters = ProcessCounters()

    # -- TargetControl ------------------------------------------------------------------------------
    def snapshot(self) -> Config:
        return self.config

    async def apply(self, new: Config) -> None:
        async with self._lock:
            try:
                await self._apply(as_change(new, self.config), persist=True)
            except BaseException:
                self.process_counters.applies["refused"] += 1
                raise
            self.process_counters.applies["applied"] += 1

    def sessions(self) -> list[SessionInfo]:
        return [session_info(rec, rec.handler) for rec in self.registry
                if isinstance(rec.handler, ConnectionHandler) and rec.handler.login is not None]

    def statistics(self) -> Statistics:
        return statistics(self.config, self.extents, self.portal_counters, self.process_counters)

    async def end_session(self, session_id: int) -> bool:
        """Ask the session's initiator to log out (AsyncEvent 1) and close its connection after
        the grace deleted targets get (`request_logout`); returns once it has ended."""
        rec = self.registry.get(session_id)
        h = rec.handler if rec is not None else None
        if not isinstance(h, ConnectionHandler) or h.login is None:
            return False
        await h.request_logout("ended through the API")
        await h.closed.wait()
        return True

    def extent_problems(self) -> dict[int, str]:
        """Extent id -> why that enabled extent is not served (its LU answers NOT READY)."""
        out = {}
        for eid in self._failing:
            problem = self.extents[eid].problem if eid in self.extents else None
            if problem is not None:
                out[eid] = problem
        return out

    # -- queries used by connections ------------------------------------------------------------------
    def lun_map(self, target_id: int) -> dict[int, LogicalUnit]:
        return self._lun_maps.get(target_id, {})

    # -- running --------------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[TargetService] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled, then shut down (`_end_connections`, `_close_extents`).

        Listeners and connections run in their own nursery, shielded from the cancellation of
        this one: when the service is cancelled (SIGTERM/SIGINT, a test's nursery), they are
        still there to be asked to log out, and only `_end_connections` ends them (issue #16)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.host.bind(nursery)  # background operations (SANITIZE) belong to this nursery
                self.isns = IsnsManager(nursery)
                self._connections_scope = trio.CancelScope(shield=True)
                self._connections = await nursery.start(self._hold_connections, self._connections_scope)
                try:
                    if self.store is not None:
                        await self._start_from(self.store)
                    task_status.started(self)
                    await self._retry_not_ready()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._end_connections()
        finally:
            self._connections = None
            with trio.CancelScope(shield=True):
                await self._close_extents()

    async def _start_from(self, store: ConfigStore) -> None:
        """Serve the stored configuration: start-up is an apply of everything. Its objects (N
        volumes' configuration and logical units: ~40 tracked objects each) live until shutdown,
        so the cyclic collector is paused while they are made (each full collection on the way
        scanned all made so far: quadratic) and they are frozen out of later full collections
        (0.7 s each at 10,000 volumes otherwise; issue #12)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            cfg = await trio.to_thread.run_sync(lambda: store.load().indexed())
            async with self._lock:
                await self._apply(cfg, persist=False, initial=True)
            indexes = self.config.indexes
            if indexes is not None and indexes.unresolved:  # files the start-up just created
                await trio.to_thread.run_sync(indexes.refresh_storage, self.config)
        finally:
            gc.freeze()
            if collecting:
                gc.enable()

    async def _retry_not_ready(self) -> None:
        """Runs for the life of the service: while an extent of a `remote` kind (RBD: a cluster
        that could not be reached, issue #15) is NOT READY, the configuration is applied again
        after NOT_READY_RETRY_S, doubling to NOT_READY_RETRY_MAX_S while it stays so; an extent
        that opens replaces its NOT READY LU (the apply's usual switch-over). The retry is an
        empty change: it looks at the NOT READY extents only (`_failing`), O(change) (issue #12)."""
        delay = NOT_READY_RETRY_S
        while True:
            await trio.sleep(delay)
            if not any(eid in self.extents and _remote(self.extents[eid].extent) for eid in self._failing):
                delay = NOT_READY_RETRY_S
                continue
            async with self._lock:
                await self._apply(self.config.draft(), persist=False, initial=True)
            delay = min(delay * 2, NOT_READY_RETRY_MAX_S)

    @staticmethod
    async def _hold_connections(scope: trio.CancelScope, *,
                                task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
        """The nursery of the accept loops and connections; it ends when `scope` is cancelled."""
        with scope:
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                await trio.sleep_forever()

    async def _end_connections(self) -> None:
        """Planned shutdown (RFC 7143 §11.9.1): stop accepting, ask every logged-in initiator to
        log out (AsyncEvent 1, Parameter3 = the grace), wait until their connections have ended
        or the grace is over (an idle server, or initiators that log out at once, stop at once),
        then close what is left and end the connections' nursery."""
        for lst in self.listeners.values():
            lst.cancel.cancel()
            lst.sock.close()
        self.listeners.clear()
        async with trio.open_nursery() as nursery:
            for h in list(self.handlers):
                nursery.start_soon(h.request_logout, "shutdown", SHUTDOWN_LOGOUT_GRACE_S)
        left = list(self.handlers)
        for h in left:
            h.terminate("shutdown")
        for h in left:  # each ends as it would when deleted (its audit line, commands drained)
            await h.closed.wait()
        self._connections_scope.cancel()

    async def _close_extents(self) -> None:
        """After every connection and background operation has ended: flush and close the extents."""
        lives = list(self.extents.values())
        await trio.to_thread.run_sync(flush_and_close_all, lives)  # one thread round trip for all
        self.extents.clear()
        self._identities.clear()
        self._failing.clear()
        self._lun_maps.clear()

    # -- applying a configuration (server/apply.py) -----------------------------------------------------
    def _open_confined(self, ext: Extent, host: LuHost) -> LiveExtent:
        return open_extent(ext, self.policy, host)

    async def _bind(self, addr: Address, portal_id: int, *, strict: bool) -> trio.socket.SocketType:
        try:
            return await bind_listener(addr)
        except OSError as exc:
            text = {
                errno.EADDRINUSE: "Address already in use",
                errno.EADDRNOTAVAIL: "Address not available on this host",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            host, port = addr
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ApplyError(f"Cannot listen on {shown}: {text}", "portals", portal_id, "ips") from exc

    def abort_preempted(self, preempted: tuple[tuple[str, str | None], ...], lun: int,
                        issuer: ConnectionHandler) -> None:
        """PREEMPT AND ABORT (SPC-4 §5.13.11.2.5): the preempted I_T nexuses' tasks on that LU are
        aborted; commands still waiting for data or for an earlier CmdSN are dropped unanswered."""
        for h in list(self.handlers):
            if h is issuer or h.nexus is None:
                continue
            for initiator_port, target_port in preempted:
                if h.nexus.initiator_port.lower() == initiator_port.lower() and (
                    target_port is None or h.nexus.target_port.lower() == target_port.lower()
                ):
                    h.abort_tasks(lun)
                    break

    def _end_sessions_no_longer_allowed(self, cfg: Config) -> None:
        for h in list(self.handlers):
            reason = ""
            if h.portal.id not in cfg.portals or not cfg.service.enabled:
                reason = "portal removed"
            elif h.target_id is not None and h.target_id not in cfg.targets:
                reason = "target removed"
            elif h.target_id is not None and not any(
                g.portalgroup == h.portal.id for g in cfg.groups_of_target(h.target_id)
            ):
                reason = "target no longer reachable through this portal"
            elif _target_renamed(h, cfg):
                reason = "target renamed"
            if reason and self._connections is not None:
                self._connections.start_soon(h.request_logout, reason)

    # -- listeners -----------------------------------------------------------------------------------
    def _switch_listeners(self, want: dict[Address, int], bound: dict[Address, trio.socket.SocketType]) -> None:
        self._portal_of = dict(want)
        for addr in [a for a in self.listeners if a not in want]:
            lst = self.listeners.pop(addr)
            lst.cancel.cancel()
            lst.sock.close()
        for addr, sock in bound.items():
            self._start_listener(addr, sock)

    def _start_listener(self, addr: Address, sock: trio.socket.SocketType) -> None:
        assert self._connections is not None
        scope = trio.CancelScope()
        self.listeners[addr] = Listener(addr, sock, scope)
        self._connections.start_soon(self._accept_loop, addr, sock, scope)
        host, port = addr
        log.info("portal listening on %s", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    async def _accept_loop(self, addr: Address, sock: trio.socket.SocketType, scope: trio.CancelScope) -> None:
        assert self._connections is not None
        with scope:
            while True:
                try:
                    conn, _ = await sock.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.warning("accept on %s: %s; pausing", addr, exc)
                        await trio.sleep(0.1)
                        continue
                    raise
                portal = self.config.portals.get(self._portal_of.get(addr, -1))
                try:
                    source = conn.getpeername()[0]
                except OSError:
                    conn.close()
                    continue
                if portal is None or not self.admission.admit(source):
                    if portal is not None:
                        self._log_refused(source)
                    conn.close()
                    continue
                tune_socket(conn)
                self._connections.start_soon(self._serve_connection, conn, portal, source)

    def _log_refused(self, source: str) -> None:
        now = trio.current_time()
        if now - self._last_refusal_log >= 10:
            self._last_refusal_log = now
            log.warning("refusing connections from %s: too many logins in progress", source)

    async def _serve_connection(self, sock: trio.socket.SocketType, portal: Portal, source: str) -> None:
        released = False

        counters = self.portal_counters.setdefault(portal.id, PortalCounters())

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admission.release(source)

        def logged_in() -> None:
            counters.login(LOGIN_SUCCESS)
            release()

        try:
            try:
                handler = ConnectionHandler(self, sock, portal, on_login=logged_in)
            except OSError:
                sock.close()
                return
            self.handlers.add(handler)
            counters.connections += 1
            counters.open += 1
            try:
                await handler.run()
            finally:
                counters.open -= 1
                if handler.login is None:
                    counters.login(login_result(handler.conn.login_status, handler.end_reason == LOGIN_TIMEOUT_REASON))
                self.handlers.discard(handler)
                if handler.auth_failed:  # only credentials and identities count (issue #10)
                    self.admission.auth_failed(source, handler.login_initiator_name, trio.current_time())
        finally:
            release()

    def addresses(self) -> Iterable[Address]:
        return [lst.sock.getsockname()[:2] for lst in self.listeners.values()]


def _target_renamed(h: ConnectionHandler, cfg: Config) -> bool:
    """The session's target now has another IQN (its name changed, or `iscsi_basename` did, which
    renames every target without an iqn./eui./naa. name): the session ends as for a deleted
    target (issue #11 item 7); a new login uses the new name. IQNs compare case-insensitively
    (RFC 3722)."""
    if h.target_id is None or h.login is None or h.login.target_name is None:
        return False
    target = cfg.targets.get(h.target_id)
    return target is not None and cfg.target_iqn(target).lower() != h.login.target_name.lower()


def _remote(ext: Extent) -> bool:
    """The extent's kind is reached over a network (retried while NOT READY)."""
    kind = kind_for(ext.type)
    return kind is not None and kind.remote
