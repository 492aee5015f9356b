"""`TargetService`: the running target, and the `TargetControl` the API drives.

It holds the configuration being served, the open extents, the portal listeners and the session
registry, and makes the live target match each new configuration (spec Part B.2):
1. open what the new configuration needs (extents, listening sockets); on failure undo and raise
   `ApplyError` naming the object and model attribute (the API names the field), changing nothing;
   (an extent whose storage is refused or whose persistent reservations cannot be read is kept
   as a NOT READY LU with the reason, `extent_problems()`, and retried at every later apply);
2. persist it (one SQLite transaction);
3. switch over: start new listeners, stop removed ones, end sessions of deleted targets/portals,
   raise unit attentions (REPORTED LUNS DATA HAS CHANGED, CAPACITY DATA HAS CHANGED), close
   extents no longer used.
Every step runs under one lock, so changes apply one at a time and in order.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from ..model import ApplyError, Config, ConfigStore, Extent, Portal, SessionInfo
from ..model.extents import MSG_SHRINK, StoragePolicy, parse_filesize
from ..model.kinds import kind_for
from ..model.stats import Statistics
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit
from ..scsi.sense import SenseReason
from .admission import Admission
from .connection import LOGIN_TIMEOUT_REASON, ConnectionHandler, tune_socket
from .extents import LiveExtent, identity_of, not_ready, remove_created
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

Address = tuple[str, int]


@dataclass
class Listener:
    address: Address
    sock: trio.socket.SocketType
    cancel: trio.CancelScope


def desired_addresses(cfg: Config) -> dict[Address, int]:
    """(host, port) -> portal id, for every portal address that should be listening."""
    if not cfg.service.enabled:
        return {}
    out: dict[Address, int] = {}
    for portal in cfg.portals.values():
        for a in portal.ips:
            out[(a.host, a.port)] = portal.id
    return out


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


class TargetService:
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
        self.config = Config()
        self.extents: dict[int, LiveExtent] = {}
        self.listeners: dict[Address, Listener] = {}
        self._portal_of: dict[Address, int] = {}
        self.registry = SessionRegistry()
        self._lun_maps: dict[int, dict[int, LogicalUnit]] = {}
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
                await self._apply(new, persist=True)
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
        return {eid: live.problem for eid, live in self.extents.items() if live.problem is not None}

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
                        cfg = await trio.to_thread.run_sync(self.store.load)
                        async with self._lock:
                            await self._apply(cfg, persist=False, initial=True)
                    task_status.started(self)
                    await self._retry_not_ready()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._end_connections()
        finally:
            self._connections = None
            with trio.CancelScope(shield=True):
                await self._close_extents()

    async def _retry_not_ready(self) -> None:
        """Runs for the life of the service: while an extent of a `remote` kind (RBD: a cluster
        that could not be reached, issue #15) is NOT READY, the configuration is applied again
        after NOT_READY_RETRY_S, doubling to NOT_READY_RETRY_MAX_S while it stays so; an extent
        that opens replaces its NOT READY LU (the apply's usual switch-over)."""
        delay = NOT_READY_RETRY_S
        while True:
            await trio.sleep(delay)
            if not any(live.problem is not None and _remote(live.extent) for live in self.extents.values()):
                delay = NOT_READY_RETRY_S
                continue
            async with self._lock:
                await self._apply(self.config, persist=False, initial=True)
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
        for live in self.extents.values():
            await trio.to_thread.run_sync(_flush_and_close, live)
        self.extents.clear()
        self._lun_maps.clear()

    # -- applying a configuration ---------------------------------------------------------------------
    async def _apply(self, new: Config, *, persist: bool, initial: bool = False) -> None:
        old = self.config
        opened: dict[int, LiveExtent] = {}
        resized: list[LiveExtent] = []
        bound: dict[Address, trio.socket.SocketType] = {}
        try:
            await self._open_extents(new, opened, resized, strict=not initial)
            want = desired_addresses(new)
            for addr in want:
                if addr not in self.listeners:
                    bound[addr] = await self._bind(addr, want[addr], strict=not initial)
            if persist and self.store is not None:
                await trio.to_thread.run_sync(self.store.save, new)
        except BaseException:
            for live in opened.values():  # nothing of a refused change stays (spec Part B §B.2.2)
                await trio.to_thread.run_sync(_close_and_undo, live)
            for s in bound.values():
                s.close()
            raise
        self._switch(old, new, opened, resized, bound, want)

    def _open_confined(self, ext: Extent, host: LuHost) -> LiveExtent:
        return open_extent(ext, self.policy, host)

    async def _open_extents(
        self, new: Config, opened: dict[int, LiveExtent], resized: list[LiveExtent], *, strict: bool
    ) -> None:
        """Open what `new` needs. A new or changed extent that cannot be opened refuses the change
        when `strict` (an API apply); at start-up, and for an unchanged extent that was not
        served, it becomes a NOT READY LU with the reason (issue #10 item 2)."""
        refusing: set[int] = set()
        for eid, ext in new.extents.items():
            if not ext.enabled:
                continue
            live = self.extents.get(eid)
            unchanged = live is not None and live.same_storage(ext)
            if live is not None and unchanged and live.problem is None:
                if _resizable(ext) and ext.filesize != live.extent.filesize:
                    await self._resize(live, ext, resized)
                continue
            if strict and not unchanged:
                refusing.add(eid)
            fresh = await self._open_one(ext, strict=eid in refusing)
            if live is not None and unchanged and fresh.problem is not None:
                # still not servable: keep the LU the initiators know (no REPORTED LUNS DATA
                # HAS CHANGED at every apply), with the latest reason
                await trio.to_thread.run_sync(_close_and_undo, fresh)
                live.problem = live.lu.unavailable = fresh.problem
                continue
            opened[eid] = fresh
        await self._refuse_shared(new, opened, refusing)

    async def _resize(self, live: LiveExtent, ext: Extent, resized: list[LiveExtent]) -> None:
        """Growing is live (CAPACITY DATA HAS CHANGED); shrinking would destroy the data past the
        new end under the initiators, so it is refused (issue #10 item 9)."""
        size = parse_filesize(ext.filesize)
        current = live.backend.size_bytes
        if not size or size == current:
            return
        if size < current:
            raise ApplyError(MSG_SHRINK.format(current=current), "extents", ext.id, "filesize")
        try:
            await trio.to_thread.run_sync(live.backend.resize, size)
        except Exception as exc:
            raise ApplyError(f"Cannot resize: {exc}", "extents", ext.id, "filesize") from exc
        resized.append(live)

    async def _open_one(self, ext: Extent, *, strict: bool) -> LiveExtent:
        try:
            live = await trio.to_thread.run_sync(self._extent_opener, ext, self.host)
        except Exception as exc:
            if strict:
                raise ApplyError(f"Cannot open {ext.path}: {exc}", "extents", ext.id, _location(ext)) from exc
            live = not_ready(ext, f"cannot open {ext.path}: {exc}", self.host)
        else:
            problem = await trio.to_thread.run_sync(self._load_pr_state, live)
            if problem is not None:
                live.problem = live.lu.unavailable = problem
        if live.problem is not None:
            log.error("extent %r is not served (LUN not ready): %s", ext.name, live.problem)
        return live

    def _load_pr_state(self, live: LiveExtent) -> str | None:
        """Install the saved persistent reservations (APTPL); the reason when they cannot be read:
        serving the LU as if it had none would break a cluster's fencing (issue #10 item 11)."""
        store, naa = self.pr_store, live.extent.naa
        if store is None or not naa:
            return None
        try:
            saved = store.load(naa)
            if saved is not None:
                live.lu.load_pr_state(saved)
        except Exception as exc:
            return f"cannot read its persistent reservations: {exc}"
        return None

    async def _refuse_shared(self, new: Config, opened: dict[int, LiveExtent], refusing: set[int]) -> None:
        """No two served extents on one file or device (issue #10 item 3): an opened extent whose
        storage an extent already served (or opened earlier, lower id first) uses is refused."""
        served: dict[tuple[object, ...], str] = {}
        for eid, live in self.extents.items():
            ext = new.extents.get(eid)
            if eid not in opened and ext is not None and ext.enabled and live.identity is not None:
                served[live.identity] = ext.name
        for eid in sorted(opened):
            live = opened[eid]
            if live.identity is None:
                continue
            other = served.setdefault(live.identity, live.extent.name)
            if other == live.extent.name:
                continue
            reason = f'{live.extent.path} is the file or device of extent "{other}"'
            if eid in refusing:
                raise ApplyError(f'This file is already used by extent "{other}".', "extents", eid,
                                 _location(live.extent))
            await trio.to_thread.run_sync(_close_and_undo, live)
            opened[eid] = not_ready(live.extent, reason, self.host)
            log.error("extent %r is not served (LUN not ready): %s", live.extent.name, reason)

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

    def _switch(
        self,
        old: Config,
        new: Config,
        opened: dict[int, LiveExtent],
        resized: list[LiveExtent],
        bound: dict[Address, trio.socket.SocketType],
        want: dict[Address, int],
    ) -> None:
        old_maps = {tid: dict(m) for tid, m in self._lun_maps.items()}
        retired: list[LiveExtent] = []
        for eid, live in list(self.extents.items()):
            ext = new.extents.get(eid)
            if ext is None or not ext.enabled or eid in opened:
                retired.append(self.extents.pop(eid))
            else:
                live.extent = ext
                live.lu.identity = identity_of(ext)
        for eid, live in opened.items():  # an LU's totals outlive a reopen of its extent
            old_live = next((r for r in retired if r.extent.id == eid), None)
            if old_live is not None:
                live.lu.stats = old_live.lu.stats
        self.extents.update(opened)
        _follow_pool_threshold(self.extents.values(), new)
        self.config = new
        self._portal_of = dict(want)
        self._lun_maps = self._build_lun_maps(new)
        if self.isns is not None:
            self.isns.configure(new)
        # listeners
        for addr in [a for a in self.listeners if a not in want]:
            lst = self.listeners.pop(addr)
            lst.cancel.cancel()
            lst.sock.close()
        for addr, sock in bound.items():
            self._start_listener(addr, sock)
        # sessions whose target or portal is gone end now; others see their LUN changes
        self._end_sessions_no_longer_allowed(new)
        for tid, luns in self._lun_maps.items():
            before = old_maps.get(tid)
            if before is not None and {n: id(lu) for n, lu in before.items()} != {n: id(lu) for n, lu in luns.items()}:
                for lu in luns.values():
                    lu.add_unit_attention(SenseReason.REPORTED_LUNS_DATA_CHANGED)
        for live in resized:
            live.lu.capacity_changed()
        for live in retired:
            if self._nursery is not None:
                self._nursery.start_soon(trio.to_thread.run_sync, _flush_and_close, live)

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

    def _build_lun_maps(self, cfg: Config) -> dict[int, dict[int, LogicalUnit]]:
        maps: dict[int, dict[int, LogicalUnit]] = {}
        for tid in cfg.targets:
            luns = {}
            for lun, ext in cfg.luns_of_target(tid).items():
                live = self.extents.get(ext.id)
                if live is not None:
                    luns[lun] = live.lu
            maps[tid] = luns
        return maps

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


def _follow_pool_threshold(lives: Iterable[LiveExtent], cfg: Config) -> None:
    """Every LU measures against the current `iscsi_pool_avail_threshold` (issue #11 item 2); the
    extent's own `avail_threshold` travels in its identity, which `_switch` replaces."""
    percent = cfg.global_config.pool_avail_threshold
    for live in lives:
        live.lu.pool_avail_threshold = percent


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


def _resizable(ext: Extent) -> bool:
    """`filesize` applies to the extent's kind (a change resizes it live)."""
    kind = kind_for(ext.type)
    return kind is not None and kind.resizable


def _location(ext: Extent) -> str | None:
    """The model attribute that names the extent's storage (refusals about it name that field);
    None for a type no kind has (the refusal is then about the extent as a whole)."""
    kind = kind_for(ext.type)
    return kind.location if kind is not None else None


def _close_and_undo(live: LiveExtent) -> None:
    """Close an extent a refused change opened, and remove what opening it created."""
    live.backend.close()
    remove_created(live.created)
    for undo in live.undo:
        undo()


def _flush_and_close(live: LiveExtent) -> None:
    """Blocking: end the LU's background work (a sanitize of an extent no longer served: it stops
    at its next step) before the backend is flushed and closed under it."""
    live.lu.stop_sanitize()
    try:
        if not live.backend.read_only:
            live.backend.flush()
    except Exception as exc:
        log.error("extent %r: flush on close failed: %s", live.extent.name, exc)
    finally:
        live.backend.close()
