"""`TargetService`: the running target, and the `TargetControl` the API drives.

It holds the configuration being served, the open extents, the portal listeners and the session
registry, and makes the live target match each change (spec Part B.2) through the apply path of
server/apply.py (`ChangeApplier`: open, persist, switch over, in O(change)); this module keeps
the listeners, the sessions' end when their target or portal goes, and the queries connections
make. Every apply runs under one lock, so changes apply one at a time and in order.
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
from ..scsi.host import LuHost
from ..scsi.lu import LogicalUnit
from .admission import Admission
from .apply import Address, ChangeApplier, flush_and_close_all
from .connection import ConnectionHandler, tune_socket
from .extents import LiveExtent
from .fabric import ServerHost
from .isns import IsnsManager
from .kinds import open_extent
from .prstore import PrStore
from .sessions import SessionRegistry

log = logging.getLogger("pyscsi_target.service")

#: listen() backlog per portal socket
LISTEN_BACKLOG = 128
#: at shutdown, initiators get this long to log out after the target asks them to, seconds
SHUTDOWN_LOGOUT_GRACE_S = 2.0


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
        self._identities: dict[tuple[int, ...], int] = {}
        self._failing: set[int] = set()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.handlers: set[ConnectionHandler] = set()
        #: what the SCSI core of every LU served here may ask of the server (fabric.py)
        self.host = ServerHost(self.handlers, self.extents, pr_store)
        self.admission = Admission()
        self._last_refusal_log = -math.inf
        self.isns: IsnsManager | None = None  # iSNS registration (server/isns.py), while running

    # -- TargetControl ------------------------------------------------------------------------------
    def snapshot(self) -> Config:
        return self.config

    async def apply(self, new: Config) -> None:
        async with self._lock:
            await self._apply(as_change(new, self.config), persist=True)

    def sessions(self) -> list[SessionInfo]:
        out = []
        for rec in self.registry:
            h = rec.handler
            if not isinstance(h, ConnectionHandler) or h.login is None:
                continue
            c = h.counters()
            out.append(
                SessionInfo(
                    initiator=h.login.initiator_name,
                    initiator_addr=h.peer,
                    target=rec.target or "",
                    target_portal=f"{h.local},{h.portal.tag}",
                    isid=f"{rec.isid:012x}",
                    tsih=rec.tsih,
                    session_type=h.login.session_type,
                    connections=1,
                    parameters=dict(h.login.params),
                    commands=c["commands"],
                    read_bytes=c["read_bytes"],
                    written_bytes=c["written_bytes"],
                    target_alias=h.login.target_alias,
                )
            )
        return out

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
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.host.bind(nursery)  # background operations (SANITIZE) belong to this nursery
                self.isns = IsnsManager(nursery)
                if self.store is not None:
                    await self._start_from(self.store)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown()

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

    async def _shutdown(self) -> None:
        for lst in self.listeners.values():
            lst.cancel.cancel()
            lst.sock.close()
        self.listeners.clear()
        # planned shutdown: ask every initiator to log out, give them a moment, then close
        async with trio.open_nursery() as nursery:
            for h in list(self.handlers):
                nursery.start_soon(h.request_logout, "shutdown", SHUTDOWN_LOGOUT_GRACE_S)
        for h in list(self.handlers):
            h.terminate("shutdown")
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
            if reason and self._nursery is not None:
                self._nursery.start_soon(h.request_logout, reason)

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
        assert self._nursery is not None
        scope = trio.CancelScope()
        self.listeners[addr] = Listener(addr, sock, scope)
        self._nursery.start_soon(self._accept_loop, addr, sock, scope)
        host, port = addr
        log.info("portal listening on %s", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    async def _accept_loop(self, addr: Address, sock: trio.socket.SocketType, scope: trio.CancelScope) -> None:
        assert self._nursery is not None
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
                self._nursery.start_soon(self._serve_connection, conn, portal, source)

    def _log_refused(self, source: str) -> None:
        now = trio.current_time()
        if now - self._last_refusal_log >= 10:
            self._last_refusal_log = now
            log.warning("refusing connections from %s: too many logins in progress", source)

    async def _serve_connection(self, sock: trio.socket.SocketType, portal: Portal, source: str) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.admission.release(source)

        try:
            try:
                handler = ConnectionHandler(self, sock, portal, on_login=release)
            except OSError:
                sock.close()
                return
            self.handlers.add(handler)
            try:
                await handler.run()
            finally:
                self.handlers.discard(handler)
                if handler.auth_failed:  # only credentials and identities count (issue #10)
                    self.admission.auth_failed(source, handler.login_initiator_name, trio.current_time())
        finally:
            release()

    def addresses(self) -> Iterable[Address]:
        return [lst.sock.getsockname()[:2] for lst in self.listeners.values()]


