"""One TCP connection: socket <-> sans-IO `protocol.Connection` <-> SCSI core.

Owns every task and timer of the connection in one nursery (target-rules.md §5.1): the reader loop,
the sender, the login watchdog and the keepalive; commands that must wait run in the connection's
worker pool (commands.py: `BlockingCommands`). Anything unexpected is caught here, logged, and ends
only this connection. Its parts elsewhere: task management functions (taskmgmt.py, with the wire
codes in protocol/tmf.py), the socket syscalls (wire.py). The handler sees the service only
through `ServiceView`, what a connection may ask of it; the service drives handlers through their
public methods (`run`, `terminate`, `request_logout`, `abort_tasks`, `connection_alive`;
its counters `io` and `conn.transport_counters()`). An import-linter contract keeps
connection.py from importing service.py.

Flow control: the reader handles a whole received batch of PDUs, then sends every queued response
before it reads again, so a peer that stops reading stops being read (its memory stays bounded by
one receive buffer plus the responses of the commands inside its CmdSN window).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from time import perf_counter_ns
from typing import Protocol

import trio

from .. import scsi
from ..model import Config, Portal, SessionType
from ..model.stats import IoSnapshot
from ..protocol import Connection
from ..protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    LoginComplete,
    LogoutRequested,
    ScsiCommand,
    TaskManagement,
)
from ..protocol.framing import RECEIVE_BUFFER_BYTES
from ..protocol.tmf import TmfResponse, closes_connection
from ..scsi.lu import LogicalUnit
from ..scsi.stats import IoCounters, account
from ..scsi.types import Nexus, ScsiRequest, ScsiResult
from ..storage import WouldBlock
from .admission import AUTH_FAILURE_STATUSES, Admission
from .authority import PortalAuthority
from .commands import BlockingCommands, Preempted
from .sessions import SessionRegistry
from .taskmgmt import announce, announcements, task_management
from .wire import Pacer, SendStalled, peer_open, recv_into, send_all

log = logging.getLogger("pyscsi_target.connection")

#: bytes read from the socket per wake-up at most: the protocol's receive buffer (several PDUs
#: at once; ARCHITECTURE.md data path)
RECV_BUFFER_BYTES = RECEIVE_BUFFER_BYTES
#: a login must complete within this many seconds (LIO TA_LOGIN_TIMEOUT 15 s, target-rules.md §5.2)
LOGIN_TIMEOUT_S = 15.0
#: an idle full-feature connection gets a NOP-In ping after this many seconds
#: (SPDK pings every 30 s; target-rules.md §5.2)
NOP_IN_INTERVAL_S = 30.0
#: ... and is closed if nothing at all arrives within this many seconds of the ping (SPDK 60 s).
#: Longer than LIO's 30 s on purpose: synchronous initiators (libiscsi's sync API, scripts) may
#: sleep a minute between commands without servicing the socket, and reaping them only makes
#: them reconnect into a new nexus with a fresh unit attention.
NOP_IN_RESPONSE_TIMEOUT_S = 60.0
#: `end_reason` of a connection whose login did not complete in time
LOGIN_TIMEOUT_REASON = "login timeout"
#: kernel-level bound on unacknowledged sent data (TCP_USER_TIMEOUT, RFC 5482), milliseconds
TCP_USER_TIMEOUT_MS = 60_000
#: AsyncEvent 1 "target requests logout" (RFC 7143 §11.9.1); Parameter3 is the time the
#: initiator has to log out, seconds
ASYNC_EVENT_LOGOUT_REQUEST = 1
LOGOUT_REQUEST_DEADLINE_S = 3
#: Logout Response "connection or session closed successfully" (RFC 7143 §11.15.1)
LOGOUT_CLOSED = 0


class ServiceView(Protocol):
    """What a connection may ask of the service that accepted it (`TargetService`)."""

    @property
    def config(self) -> Config:
        """The configuration being served (targets, portals, ACLs: read at login)."""
        ...

    @property
    def registry(self) -> SessionRegistry:
        """The live sessions: TSIH allocation and reinstatement at login, removal at the end."""
        ...

    @property
    def admission(self) -> Admission:
        """Login admission: the slow-down of (address, InitiatorName) pairs failing authentication."""
        ...

    def lun_map(self, target_id: int) -> Mapping[int, LogicalUnit]:
        """The LUs of a target by LUN number (changes with each configuration applied)."""
        ...

    def abort_preempted(self, preempted: Preempted, lun: int, issuer: ConnectionHandler) -> None:
        """PREEMPT AND ABORT: abort the tasks of the preempted nexuses' other connections on `lun`."""
        ...


class ConnectionHandler:
    def __init__(self, service: ServiceView, sock: trio.socket.SocketType, portal: Portal,
                 *, on_login: Callable[[], None] | None = None) -> None:
        self.service = service
        self._on_login = on_login
        self.sock = sock
        self.portal = portal
        peer = sock.getpeername()
        local = sock.getsockname()
        self.peer_ip: str = peer[0]
        self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.local_host: str = local[0]
        self.local = f"[{local[0]}]:{local[1]}" if ":" in local[0] else f"{local[0]}:{local[1]}"
        self.authority = PortalAuthority(
            lambda: service.config, portal.id, service.registry, peer_ip=self.peer_ip, local_host=self.local_host
        )
        self.conn = Connection(self.authority, portal_tpgt=portal.tag, peer=self.peer, local=str(local))
        self.login: LoginComplete | None = None
        self.nexus: Nexus | None = None
        self.target_id: int | None = None
        self._send_lock = trio.Lock()
        self._cancel = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self.end_reason = ""
        self.login_failed = False
        #: the login slow-down (admission.py) was looked up for this connection's InitiatorName
        self._slowdown_checked = False
        self._close_after_flush = False
        self._nexus_released = False
        self._last_rx = trio.current_time()
        self.closed = trio.Event()
        #: the handler of the session this login reinstated, until it has ended
        self._reinstated: ConnectionHandler | None = None
        #: this session's counters of commands to no LU (scsi/stats.py; the rest: `_parts`)
        self.io = IoCounters()
        #: its part of each LU's totals, by the totals (`_part`); folded into them at the end
        self._parts: dict[IoCounters, IoCounters] = {}
        self._parts_folded = False
        #: perf_counter_ns() when the last receive returned (`_reader`)
        self._rx_ns = 0
        #: commands running in this connection's worker threads
        self._blocking = BlockingCommands(
            self.conn, f"pyscsi-io-{self.peer}", may_answer=self._may_answer, answered=self._wake_sender,
            abort_preempted=self._abort_preempted, failed=self._failed, count=self._count,
        )
        #: a command that would wait runs again in a worker thread (bound once: no per-command cost)
        self._start_blocking = self._blocking.start
        #: set when worker-thread commands queued responses for the sender task
        self._flush_wanted = trio.Event()
        #: TMF responses waiting for other gateways to hear of their resets (taskmgmt.announce)
        self._tmf_announcing: list[tuple[TaskManagement, TmfResponse, list[Callable[[], object]]]] = []
        #: the reader is done (EOF, error, cancelled): nothing more is sent
        self._ended = False
        #: ITT of a Logout Request waiting for the running commands to end
        self._logout_itt: int | None = None
        #: why the target asked this initiator to log out (`request_logout`), for the audit line
        self._logout_asked: str | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def terminate(self, reason: str) -> None:
        """End this connection from outside (session reinstated, target deleted, shutdown)."""
        self.end_reason = self.end_reason or reason
        self._cancel.cancel()

    async def run(self) -> None:
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._login_watchdog)
                    nursery.start_soon(self._sender)
                    await self._reader()
                    self._ended = True
                    nursery.cancel_scope.cancel()
        # the nursery wraps what its tasks (and its body) raise in an ExceptionGroup: except*
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError, SendStalled) as group:
            self.end_reason = self.end_reason or f"socket: {group.exceptions[0]}"
        except* Exception:
            log.exception("connection %s failed; closing it", self.peer)
        finally:
            self._ended = True
            # commands still running in worker threads cannot be interrupted: the connection
            # (and a session reinstating this one) ends when they have
            with trio.CancelScope(shield=True):
                await self._blocking.drained()
            self._blocking.close()
            self._cleanup()
            self.sock.close()
            self.closed.set()
        log.debug("connection %s closed: %s", self.peer, self.end_reason)
        if self.login is not None:  # the audit line of the session's end (issue #13 item 5)
            reason = self.end_reason or "closed"
            if reason == "logout" and self._logout_asked is not None:  # it did what we asked, and why
                reason = f"logout, as asked ({self._logout_asked})"
            log.info("logout: %s (%s) -> %s, TSIH %d: %s", self.login.initiator_name, self.peer,
                     self.login.target_name or "discovery", self.login.tsih, reason)

    async def request_logout(self, reason: str, grace: float = LOGOUT_REQUEST_DEADLINE_S) -> None:
        """Ask the initiator to log out (AsyncEvent 1), give it `grace` seconds, then end the
        connection (planned shutdown, target deletion: RFC 7143 §11.9.1)."""
        if self.login is not None and self.login.session_type is SessionType.NORMAL and not self.closed.is_set():
            self._logout_asked = reason
            self.conn.send_async_event(ASYNC_EVENT_LOGOUT_REQUEST, param3=int(grace))
            with trio.move_on_after(grace):
                try:
                    await self.flush()
                    await self.closed.wait()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, SendStalled):
                    pass
        self.terminate(reason)

    def _cleanup(self) -> None:
        self._fold_parts()
        if self.login is not None:
            rec = self.service.registry.get(self.login.tsih)
            if rec is not None and rec.handler is self:
                self.service.registry.remove(self.login.tsih)
        self._nexus_lost()

    def connection_alive(self) -> bool:
        """Non-blocking look at the socket, from any thread: False once the peer has closed or
        reset it, even if the reader has not processed that yet (the service answers the SCSI
        core's `LuHost.nexus_alive` with it, before reporting a reservation conflict)."""
        return not self.closed.is_set() and peer_open(self.sock.fileno())

    def abort_tasks(self, lun: int) -> None:
        """Forget this connection's unanswered commands on `lun` (another nexus's PREEMPT AND
        ABORT, SPC-4 §5.13.11.2.5): commands still waiting for data or for an earlier CmdSN are
        dropped unanswered."""
        self.conn.abort_tasks(lun)

    def _nexus_lost(self) -> None:
        """The I_T nexus ends: its RESERVE reservation, PREVENT state and unit attentions go at
        once (SPC-2 §5.5.1), before anything else can be awaited, so that a command another
        initiator sends right after this one logged out or disconnected never meets a stale
        reservation. Idempotent."""
        nexus = self.nexus
        if nexus is not None and self.target_id is not None and not self._nexus_released:
            self._nexus_released = True
            for lu in self.service.lun_map(self.target_id).values():
                lu.nexus_gone(nexus)

    async def _login_watchdog(self) -> None:
        await trio.sleep(LOGIN_TIMEOUT_S)
        if self.login is None:
            log.warning("login failed: initiator %s at %s: no login within %.0f s",
                        self.conn.login_initiator_name or "(unknown)", self.peer, LOGIN_TIMEOUT_S)
            self.login_failed = True
            self.terminate(LOGIN_TIMEOUT_REASON)

    async def _keepalive(self) -> None:
        """NOP-In pings on an idle connection; a peer that sends nothing at all within the response
        timeout after a ping is dead and its connection is reaped (target-rules.md §5.2)."""
        while True:
            idle_until = self._last_rx + NOP_IN_INTERVAL_S
            if trio.current_time() < idle_until:
                await trio.sleep_until(idle_until)
                continue
            pinged_at = trio.current_time()
            self.conn.send_nop_in_ping()
            await self.flush()
            await trio.sleep_until(pinged_at + NOP_IN_RESPONSE_TIMEOUT_S)
            if self._last_rx < pinged_at:
                log.info("connection %s: no answer to NOP-In for %.0f s; closing", self.peer,
                         NOP_IN_RESPONSE_TIMEOUT_S)
                self.terminate("NOP-In timeout")
                return

    # -- I/O ----------------------------------------------------------------------------------------
    async def _reader(self) -> None:
        conn, fd, pacer = self.conn, self.sock.fileno(), Pacer()
        while True:
            # straight into the protocol's buffer, or into the command buffer that the data
            # segment being received belongs to (wire.py, framing.py)
            n = await recv_into(fd, conn.receive_buffer(), pacer)
            self._last_rx = trio.current_time()
            # when the commands of this receive arrived: their latency is counted from here
            # (one clock read per wake-up rather than one per command, scsi/stats.py)
            self._rx_ns = perf_counter_ns()
            conn.received(n)
            closed = self._handle_events()
            if closed or n == 0:
                self._nexus_lost()
            while self._tmf_announcing and not closed:
                await self._answer_after_announcing(*self._tmf_announcing.pop(0))
            if self._logout_itt is not None and not closed:
                closed = await self._logout()
            await self._reinstated_session_ended()
            if not self._slowdown_checked:
                await self._slow_down_login()
            await self.flush()
            if closed or n == 0 or self._close_after_flush:
                return

    async def _slow_down_login(self) -> None:
        """Issue #10: the answer to the first Login Request of an (address, InitiatorName) whose
        authentication keeps failing waits (admission.py). The name is known only once that
        request is parsed, so the wait is here and not at accept; other initiators on the same
        address, and this one's protocol errors, never make anyone wait."""
        name = self.conn.login_initiator_name
        if not name:
            return
        self._slowdown_checked = True
        delay = self.service.admission.login_delay(self.peer_ip, name, trio.current_time())
        if delay:
            log.info("login of %s from %s answered after %.1f s: repeated authentication failures",
                     name, self.peer, delay)
            await trio.sleep(delay)

    @property
    def auth_failed(self) -> bool:
        """The login was refused for its credentials or identity (CHAP 0x0201, ACL 0x0202), the
        only failures the slow-down counts."""
        return self.login is None and self.conn.login_status in AUTH_FAILURE_STATUSES

    @property
    def login_initiator_name(self) -> str:
        return self.conn.login_initiator_name

    async def _reinstated_session_ended(self) -> None:
        """Session reinstatement (RFC 7143 §6.3.5, target-rules.md §5.1): the final login response
        goes out only once the old session's connection, and every task it ran, has ended."""
        old, self._reinstated = self._reinstated, None
        if old is not None:
            await old.closed.wait()

    async def flush(self) -> None:
        """Send everything queued; returns once it is all in the socket. The lock is taken
        without a checkpoint when free (the common case: only the reader sends), but nothing is
        sent once the connection was cancelled (terminate(): reinstatement, shutdown)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()
        try:
            fd = self.sock.fileno()
            while True:
                bufs = self.conn.data_to_send()
                if not bufs:
                    return
                await send_all(fd, bufs)
        finally:
            lock.release()

    # -- events -------------------------------------------------------------------------------------
    def _handle_events(self) -> bool:
        """Handle every event available now; True when the connection must close."""
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                return False
            if isinstance(ev, ConnectionClosed):
                self.end_reason = self.end_reason or ev.reason
                if ev.error:
                    self.login_failed = self.login is None
                    log.info("closing connection %s: %s", self.peer, ev.reason)
                return True
            assert isinstance(ev, Event)
            self._dispatch(ev)

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, ScsiCommand):
            self._command(ev)
        elif isinstance(ev, LoginComplete):
            self._logged_in(ev)
        elif isinstance(ev, TaskManagement):
            luns = self.service.lun_map(self.target_id) if self.target_id is not None else {}
            response = task_management(self.conn, ev, luns, self.nexus)
            calls = announcements(ev, luns)
            if calls:  # LUs other gateways serve too: answered once they heard (the reader's loop)
                self._tmf_announcing.append((ev, response, calls))
            else:
                self._answer_tmf(ev, response)
        elif isinstance(ev, LogoutRequested):
            self._logout_itt = ev.itt  # answered by _logout() once running commands ended

    def _answer_tmf(self, ev: TaskManagement, response: TmfResponse) -> None:
        self.conn.send_tmf_response(ev.itt, response)
        if closes_connection(ev.function):
            self._close_after_flush = True

    async def _answer_after_announcing(self, ev: TaskManagement, response: TmfResponse,
                                       calls: list[Callable[[], object]]) -> None:
        await announce(calls)
        self._answer_tmf(ev, response)

    def _logged_in(self, ev: LoginComplete) -> None:
        self.login = ev
        if self._on_login is not None:
            self._on_login()
            self._on_login = None
        if self._nursery is not None:
            self._nursery.start_soon(self._keepalive)
        if ev.auth_user is not None:  # passed CHAP: exempt from its address's slow-down
            self.service.admission.authenticated(self.peer_ip, ev.initiator_name)
        rec = self.service.registry.attach(ev.tsih, self.terminate, self)
        if rec is not None and isinstance(rec.replaces, ConnectionHandler):
            self._reinstated, rec.replaces = rec.replaces, None
        if ev.session_type is SessionType.NORMAL and ev.target_name:
            target = self.service.config.target_by_iqn(ev.target_name)
            self.target_id = target.id if target else None
            iqn = self.service.config.target_iqn(target) if target else ev.target_name
            self.nexus = Nexus(
                f"{ev.initiator_name},i,0x{ev.isid:012x}", f"{iqn},t,0x{ev.tpgt:04x}", relative_port_id=ev.tpgt
            )
        # issue #13 item 5: who, from where, to what, and how it authenticated (the CHAP user
        # name, never a secret)
        log.info(
            "login: %s (%s) -> %s, %s session, TSIH %d, auth %s%s",
            ev.initiator_name, self.peer, ev.target_name or "discovery", ev.session_type, ev.tsih,
            ev.auth_method, f" as {ev.auth_user!r}" if ev.auth_user is not None else "",
        )

    def _command(self, ev: ScsiCommand) -> None:
        luns = self.service.lun_map(self.target_id) if self.target_id is not None else {}
        assert self.nexus is not None
        # positional (cdb, lun, nexus, data_out, task_tag): keyword arguments cost ~0.3 us more
        req = ScsiRequest(ev.cdb, ev.lun, self.nexus, ev.data, ev.itt)
        t0 = self._rx_ns
        try:
            res = scsi.execute(req, luns, nowait=self._nursery is not None)
        except WouldBlock:
            # is_blocking() (flushes, FUA and large transfers, every write while WCE=0) or a READ
            # of data not in the page cache: it runs (again) in a worker thread
            self._start_blocking(req, luns, t0)
            return
        if res.pending is not None:  # started on an asynchronous backend (RBD): answered at its end
            self._blocking.start_pending(req, res.pending, t0)
            return
        self.conn.send_scsi_response(req.task_tag, res.status, res.data, res.sense, res.transfer_length)
        lu = luns.get(req.lun)
        account(self.io if lu is None else (self._parts.get(lu.stats) or self._part(lu)), req, res, t0)

    def _count(self, req: ScsiRequest, res: ScsiResult, t0: int) -> None:
        """Count a command that ran in a worker thread (called in the trio thread)."""
        luns = self.service.lun_map(self.target_id) if self.target_id is not None else {}
        lu = luns.get(req.lun)
        account(self.io if lu is None else (self._parts.get(lu.stats) or self._part(lu)), req, res, t0)

    def _part(self, lu: LogicalUnit) -> IoCounters:
        """This session's part of `lu`'s totals (scsi/stats.py), on the session's first command
        there; keyed by the totals, which a reopened extent's LU keeps. A command answered after
        the session ended counts in the totals directly."""
        totals = lu.stats
        if self._parts_folded:
            return totals
        part = self._parts[totals] = totals.attach(self)
        return part

    def io_snapshot(self) -> IoSnapshot:
        """The session's counters: its commands without an LU plus its part of every LU's."""
        total = IoCounters()
        total.add(self.io)
        for part in self._parts.values():
            total.add(part)
        return total.snapshot()

    def _fold_parts(self) -> None:
        """The session ended: its parts become the LUs' own totals (they outlive it)."""
        self._parts_folded = True
        for totals in self._parts:
            totals.detach(self)
        self._parts.clear()

    # -- what worker-thread commands ask of the connection (commands.py) ---------------------------
    def _may_answer(self) -> bool:
        """After a Logout Request, terminate() (reinstatement, target deletion, shutdown) or the
        end of the connection the session's tasks are ended, and ended tasks are not answered
        (RFC 7143 §6.5); what a command started still happens."""
        return self._logout_itt is None and not self._cancel.cancel_called and not self._ended

    def _wake_sender(self) -> None:
        self._flush_wanted.set()

    def _abort_preempted(self, preempted: Preempted, lun: int) -> None:
        self.service.abort_preempted(preempted, lun, self)

    def _failed(self, exc: BaseException) -> None:
        log.error("connection %s failed; closing it", self.peer, exc_info=exc)
        self.terminate(f"internal error: {exc!r}")

    async def _sender(self) -> None:
        """Sends what worker-thread commands answered while the reader waits for the socket."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = trio.Event()
            await self.flush()

    async def _logout(self) -> bool:
        """Logout Request (RFC 7143 §11.14): every pending command of the session ends before the
        Logout Response and none is answered (§6.5 implicit termination: that status is never
        sent). Commands not yet started (waiting for Data-Out or an earlier CmdSN) are dropped when
        the connection closes; commands running in worker threads cannot be interrupted, so the
        response waits for them. True: the connection closes now."""
        await self._blocking.drained()
        assert self._logout_itt is not None
        self._nexus_lost()  # before the initiator can learn that the logout is done
        self.conn.send_logout_response(self._logout_itt, LOGOUT_CLOSED)
        return self._handle_events()


def tune_socket(sock: trio.socket.SocketType) -> None:
    """Low latency and dead-peer detection on an accepted connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)

