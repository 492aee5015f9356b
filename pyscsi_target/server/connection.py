"""One TCP connection: socket <-> sans-IO `protocol.Connection` <-> SCSI core.

Owns every task and timer of the connection in one nursery (target-rules.md §5.1): the reader loop,
the login watchdog, and commands that run in worker threads. Anything unexpected is caught here,
logged, and ends only this connection.

Flow control: the reader handles a whole received batch of PDUs, then sends every queued response
before it reads again, so a peer that stops reading stops being read (its memory stays bounded by
one receive buffer plus the responses of the commands inside its CmdSN window).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import trio

from .. import scsi
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
from ..scsi.types import Nexus, ScsiRequest
from .authority import PortalAuthority

if TYPE_CHECKING:
    from ..model import Portal
    from .service import TargetService

log = logging.getLogger("pyscsi_target.connection")

#: bytes read from the socket per wake-up (several PDUs at once; ARCHITECTURE.md data path)
RECV_BUFFER_BYTES = 512 * 1024
#: a login must complete within this many seconds (LIO TA_LOGIN_TIMEOUT 15 s, target-rules.md §5.2)
LOGIN_TIMEOUT_S = 15.0
#: at most this many buffers per sendmsg call (Linux IOV_MAX is 1024)
SENDMSG_MAX_BUFFERS = 512

# TMF function codes and responses (RFC 7143 §11.5.1, §11.6.1)
TMF_ABORT_TASK, TMF_ABORT_TASK_SET, TMF_CLEAR_ACA, TMF_CLEAR_TASK_SET = 1, 2, 3, 4
TMF_LUN_RESET, TMF_TARGET_WARM_RESET, TMF_TARGET_COLD_RESET, TMF_TASK_REASSIGN = 5, 6, 7, 8
TMF_COMPLETE, TMF_NO_TASK, TMF_NO_LUN, TMF_NOT_SUPPORTED = 0, 1, 2, 5


async def send_buffers(sock: trio.socket.SocketType, bufs: list[bytes | bytearray | memoryview]) -> None:
    """sendmsg() all buffers, coalesced, handling partial sends without copying."""
    views = [memoryview(b).cast("B") for b in bufs if len(b)]
    while views:
        batch = views[:SENDMSG_MAX_BUFFERS]
        sent = await sock.sendmsg(batch)
        # drop what was fully sent, trim the first partially sent buffer
        i = 0
        while i < len(batch) and sent >= len(batch[i]):
            sent -= len(batch[i])
            i += 1
        del views[:i]
        if sent:
            views[0] = views[0][sent:]


class ConnectionHandler:
    def __init__(self, service: TargetService, sock: trio.socket.SocketType, portal: Portal) -> None:
        self.service = service
        self.sock = sock
        self.portal = portal
        peer = sock.getpeername()
        local = sock.getsockname()
        self.peer_ip: str = peer[0]
        self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.local_host: str = local[0]
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
                    await self._reader()
                    nursery.cancel_scope.cancel()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.end_reason = self.end_reason or f"socket: {exc}"
        except Exception:
            log.exception("connection %s failed; closing it", self.peer)
        finally:
            self._cleanup()
            self.sock.close()
        log.debug("connection %s closed: %s", self.peer, self.end_reason)

    def _cleanup(self) -> None:
        if self.login is not None:
            rec = self.service.registry.get(self.login.tsih)
            if rec is not None and rec.handler is self:
                self.service.registry.remove(self.login.tsih)
        if self.nexus is not None and self.target_id is not None:
            for lu in self.service.lun_map(self.target_id).values():
                lu.nexus_gone(self.nexus)

    async def _login_watchdog(self) -> None:
        await trio.sleep(LOGIN_TIMEOUT_S)
        if self.login is None:
            log.info("login from %s timed out after %.0f s", self.peer, LOGIN_TIMEOUT_S)
            self.terminate("login timeout")

    # -- I/O ----------------------------------------------------------------------------------------
    async def _reader(self) -> None:
        buf = bytearray(RECV_BUFFER_BYTES)
        view = memoryview(buf)
        while True:
            n = await self.sock.recv_into(buf)
            self.conn.receive_data(view[:n] if n else b"")
            closed = self._handle_events()
            await self.flush()
            if closed or n == 0:
                return

    async def flush(self) -> None:
        async with self._send_lock:
            while True:
                bufs = self.conn.data_to_send()
                if not bufs:
                    return
                await send_buffers(self.sock, bufs)

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
            self.conn.send_tmf_response(ev.itt, self._tmf(ev))
        elif isinstance(ev, LogoutRequested):
            self.conn.send_logout_response(ev.itt, 0)

    def _logged_in(self, ev: LoginComplete) -> None:
        self.login = ev
        self.service.registry.attach(ev.tsih, self.terminate, self)
        if ev.session_type == "Normal" and ev.target_name:
            target = self.service.config.target_by_iqn(ev.target_name)
            self.target_id = target.id if target else None
            iqn = self.service.config.target_iqn(target) if target else ev.target_name
            self.nexus = Nexus(
                f"{ev.initiator_name},i,0x{ev.isid:012x}", f"{iqn},t,0x{ev.tpgt:04x}", relative_port_id=ev.tpgt
            )
        log.info(
            "login: %s (%s) -> %s, %s session, TSIH %d",
            ev.initiator_name, self.peer, ev.target_name or "discovery", ev.session_type, ev.tsih,
        )

    def _command(self, ev: ScsiCommand) -> None:
        luns = self.service.lun_map(self.target_id) if self.target_id is not None else {}
        assert self.nexus is not None
        req = ScsiRequest(
            cdb=bytes(ev.cdb),
            lun=ev.lun,
            nexus=self.nexus,
            data_out=ev.data,
            expected_in=ev.expected_length if ev.read else 0,
            expected_length=ev.expected_length,
            task_tag=ev.itt,
            task_attr=ev.attr,
        )
        if scsi.is_blocking(req.cdb) and self._nursery is not None:
            self._nursery.start_soon(self._blocking_command, req, luns)
            return
        res = scsi.execute(req, luns)
        self.conn.send_scsi_response(req.task_tag, res.status, res.data, res.sense, res.transfer_length)

    async def _blocking_command(self, req: ScsiRequest, luns: dict) -> None:
        lu = luns.get(req.lun)
        limiter = self.service.limiter_for(lu)
        res = await trio.to_thread.run_sync(scsi.execute, req, luns, limiter=limiter)
        self.conn.send_scsi_response(req.task_tag, res.status, res.data, res.sense, res.transfer_length)
        await self.flush()

    def _tmf(self, ev: TaskManagement) -> int:
        luns = self.service.lun_map(self.target_id) if self.target_id is not None else {}
        if ev.function == TMF_ABORT_TASK:
            return TMF_COMPLETE if self.conn.abort_task(ev.referenced_itt) else TMF_NO_TASK
        if ev.function in (TMF_ABORT_TASK_SET, TMF_CLEAR_TASK_SET):
            return TMF_COMPLETE
        if ev.function == TMF_LUN_RESET:
            lu = luns.get(ev.lun)
            if lu is None:
                return TMF_NO_LUN
            lu.reset(self.nexus)
            return TMF_COMPLETE
        if ev.function in (TMF_TARGET_WARM_RESET, TMF_TARGET_COLD_RESET):
            for lu in luns.values():
                lu.reset(self.nexus)
            return TMF_COMPLETE
        return TMF_NOT_SUPPORTED

    # -- statistics ---------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {
            "commands": int(getattr(self.conn, "commands", 0)),
            "read_bytes": int(getattr(self.conn, "read_bytes", 0)),
            "written_bytes": int(getattr(self.conn, "written_bytes", 0)),
        }


def tune_socket(sock: trio.socket.SocketType) -> None:
    """Low latency and dead-peer detection on an accepted connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

