"""The iSNS client (RFC 4171): keeps the target registered on every server in `iscsi_isns_servers`.

One `IsnsClient` task per server runs in `TargetService`'s nursery; `IsnsManager.configure` is
called with every configuration the service switches to. A client:
- connects over TCP (default port 3205) and registers, with the Replace flag, one network entity
  (EID = this host's name, protocol iSCSI), its portals, every target (iSCSI name, alias, node type
  Target) and a Portal Group object per target and portal (the portal's tag, or a NULL tag where
  the target is not offered, RFC 4171 §3.4);
- registers again whenever a configuration change alters that (target added, removed or renamed,
  basename changed, portal added or removed), and deregisters the entity when no target is left;
- keeps the registration alive with a DevAttrQry of its own entity every ISNS_REFRESH_INTERVAL_S,
  or a third of the Registration Period the server granted when shorter (any message refreshes
  it, §6.2.6), re-registering when the answer shows the entity is gone
  (a restarted or purged server), and after every reconnect;
- answers ESI messages that arrive on its connection (we register no ESI port, so the server
  relies on the registration period);
- on any failure (refused connection, timeout, garbage, a refusal status) closes the connection,
  logs a warning and retries with exponential backoff (ISNS_RETRY_MIN_S doubling to ISNS_RETRY_MAX_S);
- deregisters when its server is removed from the list and at shutdown, bounded by
  ISNS_DEREGISTER_TIMEOUT_S.
Every socket operation has a deadline and runs on the event loop without blocking it; nothing the
iSNS server does can delay an iSCSI connection or an API request.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Callable

import trio

from ..model import Config
from ..protocol.isns import (
    DEFAULT_ISNS_PORT,
    FLAG_CLIENT,
    FLAG_REPLACE,
    Attr,
    Function,
    IsnsFormatError,
    Message,
    MessageReader,
    Node,
    PortalGroup,
    Registration,
    Response,
    Status,
    Tag,
    dev_attr_qry_payload,
    dev_attr_reg_payloads,
    dev_dereg_payload,
    encode_message,
    esi_response,
    status_name,
)

log = logging.getLogger("pyscsi_target.isns")

#: the Registration Period we ask for, seconds (ctld's isns-period default; RFC 4171 §6.2.6)
ISNS_REGISTRATION_PERIOD_S = 900
#: a DevAttrQry of our own entity this often keeps the registration alive and detects a server
#: that lost it, seconds (a third of the registration period, as ctld checks every period)
ISNS_REFRESH_INTERVAL_S = 300.0
#: the refresh never runs more often than this, whatever Registration Period a server grants, seconds
ISNS_REFRESH_MIN_S = 5.0
#: a TCP connect to an iSNS server must complete within this, seconds (ctld's isns-timeout: 5 s)
ISNS_CONNECT_TIMEOUT_S = 5.0
#: a request must be answered (and a send must make progress) within this, seconds
ISNS_RESPONSE_TIMEOUT_S = 5.0
#: first retry after a failure, seconds; doubles after each failure in a row
ISNS_RETRY_MIN_S = 1.0
#: cap of the retry delay, seconds
ISNS_RETRY_MAX_S = 60.0
#: deregistration at shutdown or when a server leaves the list must finish within this, seconds
ISNS_DEREGISTER_TIMEOUT_S = 2.0
#: bytes read per receive from an iSNS server
ISNS_RECEIVE_BYTES = 65536
#: messages received but not yet looked at; more means a server flooding us, and the connection ends
ISNS_INBOX_MAX_MESSAGES = 64

Address = tuple[str, int]


class IsnsError(Exception):
    """This connection to the iSNS server is unusable; the text says why."""


# ---- what to register ---------------------------------------------------------------------------

def entity_identifier() -> str:
    """The Entity Identifier: this host's name, stable across restarts (ctld uses the same)."""
    return socket.gethostname() or "pyscsi-target"


def registration_for(cfg: Config, entity_id: str) -> Registration | None:
    """The entity this configuration asks for, wildcard portal addresses still unresolved; None
    when there is nothing to register (service disabled or no target)."""
    if not cfg.service.enabled or not cfg.targets:
        return None
    portals: list[tuple[str, int, int]] = []  # host, port, portal id
    for p in sorted(cfg.portals.values(), key=lambda p: p.id):
        for a in p.ips:
            portals.append((a.host, a.port, p.id))
    nodes: list[Node] = []
    groups: list[PortalGroup] = []
    for t in sorted(cfg.targets.values(), key=lambda t: t.id):
        name = cfg.target_iqn(t)
        nodes.append(Node(name, t.alias or None))
        offered = {g.portalgroup for g in cfg.groups_of_target(t.id)}
        for host, port, pid in portals:
            groups.append(PortalGroup(name, host, port, cfg.portal_tag(pid) if pid in offered else None))
    return Registration(entity_id, ISNS_REGISTRATION_PERIOD_S,
                        tuple(dict.fromkeys((h, p) for h, p, _ in portals)), tuple(nodes), tuple(groups))


def resolve_wildcards(reg: Registration, local_host: str) -> Registration:
    """Wildcard portals (0.0.0.0, ::) stand for this host: they are registered with the address
    the connection to the iSNS server uses, which is one the server's side can reach. A wildcard of
    the other address family cannot be named and is left out."""
    local_v6 = ":" in local_host

    def host_of(host: str) -> str | None:
        if host not in ("0.0.0.0", "::"):
            return host
        return local_host if (host == "::") == local_v6 else None

    portals = tuple(dict.fromkeys((h, p) for h0, p in reg.portals if (h := host_of(h0)) is not None))
    groups = tuple(dict.fromkeys(PortalGroup(g.name, h, g.port, g.tag) for g in reg.groups
                                 if (h := host_of(g.host)) is not None))
    return Registration(reg.entity_id, reg.period_s, portals, reg.nodes, groups)


def parse_servers(text: str) -> list[Address]:
    """`iscsi_isns_servers` (validated by model.addresses): IPv4[:port], [IPv6][:port] or a bare
    IPv6 address, separated by spaces -> (host, port) pairs in order, without duplicates."""
    out: list[Address] = []
    for token in text.replace(",", " ").split():
        if token.startswith("["):
            host, _, rest = token[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else DEFAULT_ISNS_PORT
        elif token.count(":") > 1:
            host, port = token, DEFAULT_ISNS_PORT
        else:
            host, _, port_text = token.partition(":")
            port = int(port_text) if port_text else DEFAULT_ISNS_PORT
        addr = (str(ipaddress.ip_address(host)), port)
        if addr not in out:
            out.append(addr)
    return out


def _shown(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _operating(rsp: Response) -> list[Attr]:
    """The attributes after the delimiter (RFC 4171 §5.7: key attributes, delimiter, operating)."""
    for i, a in enumerate(rsp.attrs):
        if a.tag == Tag.DELIMITER:
            return rsp.attrs[i + 1:]
    return []


# ---- one server ---------------------------------------------------------------------------------

class IsnsClient:
    """Keeps `wanted` registered on one iSNS server until stopped or cancelled."""

    def __init__(self, address: Address, wanted: Registration | None, *,
                 previous: IsnsClient | None = None) -> None:
        self.address = address
        self.name = _shown(address)
        self.wanted = wanted
        #: what the server holds as far as we know (wildcards resolved); None: nothing
        self.registered: Registration | None = None
        #: a DevAttrReg may have reached the server since the last deregistration
        self._may_hold = False
        self._previous = previous
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._inbox: collections.deque[Message | IsnsError] = collections.deque()
        self._wake = trio.Event()
        self._changed = False
        self._xid = 0
        self._healthy = False
        self._refresh_s = ISNS_REFRESH_INTERVAL_S
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()
        #: registrations that succeeded (for logs and tests)
        self.registrations = 0

    # -- called by the manager (synchronous, never blocks) ------------------------------------------
    def update(self, wanted: Registration | None) -> None:
        self.wanted = wanted
        self._changed = True
        self._poke()

    def stop(self) -> None:
        """Deregister (bounded) and end."""
        self.cancel_scope.cancel()

    def _poke(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    # -- the task ---------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            with self.cancel_scope:
                if self._previous is not None:
                    await self._previous.done.wait()
                    self._previous = None
                await self._retry_forever()
        finally:
            self._close()
            with trio.CancelScope(shield=True), trio.move_on_after(ISNS_DEREGISTER_TIMEOUT_S) as scope:
                await self._deregister_on_exit()
            if scope.cancelled_caught:
                log.warning("iSNS server %s: no deregistration within %s s", self.name, ISNS_DEREGISTER_TIMEOUT_S)
            self._close()
            self.done.set()

    async def _retry_forever(self) -> None:
        delay = ISNS_RETRY_MIN_S
        while True:
            self._healthy = False
            try:
                await self._connect()
                await self._session()
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                    IsnsFormatError, IsnsError) as exc:
                text = "no answer in time" if isinstance(exc, trio.TooSlowError) else str(exc) or type(exc).__name__
                if self._healthy:
                    # the connection worked (an idle timeout of the server, or a restart of it)
                    delay = ISNS_RETRY_MIN_S
                    log.info("iSNS server %s: %s; reconnecting in %g s", self.name, text, delay)
                else:
                    log.warning("iSNS server %s: %s; retrying in %g s", self.name, text, delay)
            self._close()
            await trio.sleep(delay)
            delay = min(delay * 2, ISNS_RETRY_MAX_S)

    async def _connect(self) -> None:
        host, port = self.address
        with trio.fail_after(ISNS_CONNECT_TIMEOUT_S):
            self._stream = await trio.open_tcp_stream(host, port)
        self._inbox.clear()

    async def _session(self) -> None:
        """Talk to the connected server until something fails (raises); never returns."""
        await self._with_reader(self._converse)

    async def _with_reader(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` while a reader task receives from the connection. The reader turns whatever
        it receives into inbox items, so only `body` raises, and its exception leaves the nursery
        as itself (not wrapped in an ExceptionGroup)."""
        assert self._stream is not None
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_loop, self._stream)
            try:
                await body()
            except BaseException as exc:
                error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _converse(self) -> None:
        local = self._stream.socket.getsockname()[0] if self._stream is not None else "0.0.0.0"
        # after a (re)connect: register unless the server already holds what we registered
        self._changed = False
        await self._sync(local, check=self.registered is not None)
        self._healthy = True
        refresh_at = trio.current_time() + self._refresh_s
        while True:
            wake = self._wake
            self._drain_inbox()
            if self._changed:
                self._changed = False
                await self._sync(local, check=False)
                continue
            if trio.current_time() >= refresh_at:
                await self._sync(local, check=True)
                refresh_at = trio.current_time() + self._refresh_s
                continue
            with trio.move_on_at(refresh_at):
                await wake.wait()

    async def _sync(self, local: str, *, check: bool) -> None:
        """Make the server hold `wanted`: register when it differs from what we registered, or
        (check) when a query shows the entity is not there as registered."""
        want = resolve_wildcards(self.wanted, local) if self.wanted is not None else None
        if want is None:
            if self.registered is not None:
                await self._deregister(self.registered)
            return
        if want == self.registered and check and await self._still_there(want):
            return
        if want == self.registered and not check:
            return
        await self._register(want)

    async def _register(self, reg: Registration) -> None:
        self._may_hold = True
        self.registered = None
        for i, payload in enumerate(dev_attr_reg_payloads(reg)):
            flags = FLAG_CLIENT | (FLAG_REPLACE if i == 0 else 0)
            rsp = await self._call(Function.DEV_ATTR_REG, payload, flags)
            if rsp.status != Status.SUCCESSFUL:
                raise IsnsError(f"registration refused: {status_name(rsp.status)}")
            self._adopt_period(rsp)
        self.registered = reg
        self.registrations += 1
        log.info("iSNS server %s: registered entity %r: %d target(s), %d portal(s)", self.name,
                 reg.entity_id, len(reg.nodes), len(reg.portals))

    def _adopt_period(self, rsp: Response) -> None:
        """The server may grant another Registration Period than we asked (RFC 4171 §5.7.5.1;
        open-isns imposes its own): refresh three times within the one granted."""
        for a in _operating(rsp):
            if a.tag == Tag.REGISTRATION_PERIOD and len(a.value) == 4 and a.as_u32() > 0:
                self._refresh_s = min(ISNS_REFRESH_INTERVAL_S, max(ISNS_REFRESH_MIN_S, a.as_u32() / 3))
                return

    async def _still_there(self, reg: Registration) -> bool:
        rsp = await self._call(Function.DEV_ATTR_QRY, dev_attr_qry_payload(reg.source, reg.entity_id))
        if rsp.status != Status.SUCCESSFUL:
            log.info("iSNS server %s: query of our entity: %s; registering again", self.name, status_name(rsp.status))
            return False
        attrs = _operating(rsp)
        eids = {a.as_str() for a in attrs if a.tag == Tag.ENTITY_IDENTIFIER}
        names = {a.as_str() for a in attrs if a.tag == Tag.ISCSI_NAME}
        if eids != {reg.entity_id} or names != {n.name for n in reg.nodes}:
            log.info("iSNS server %s: our registration is gone or incomplete; registering again", self.name)
            return False
        return True

    async def _deregister(self, reg: Registration) -> None:
        rsp = await self._call(Function.DEV_DEREG, dev_dereg_payload(reg.source, reg.entity_id))
        if rsp.status not in (Status.SUCCESSFUL, Status.NO_SUCH_ENTRY):
            raise IsnsError(f"deregistration refused: {status_name(rsp.status)}")
        self.registered = None
        self._may_hold = False
        log.info("iSNS server %s: deregistered entity %r", self.name, reg.entity_id)

    async def _deregister_on_exit(self) -> None:
        """A fresh connection just for the DevDereg (the session's may be mid-request)."""
        reg = self.registered
        if reg is None and self._may_hold and self.wanted is not None:
            reg = self.wanted
        if reg is None or not self._may_hold:
            return
        try:
            await self._connect()
            await self._with_reader(lambda: self._deregister(reg))
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                IsnsFormatError, IsnsError) as exc:
            log.warning("iSNS server %s: could not deregister: %s", self.name, exc or type(exc).__name__)

    # -- requests and the reader --------------------------------------------------------------------
    async def _call(self, function: Function, payload: bytes, flags: int = FLAG_CLIENT) -> Response:
        self._xid = (self._xid % 0xFFFF) + 1  # transaction ids 1..65535 (RFC 4171 §5.1.5)
        xid = self._xid
        await self._send(encode_message(function, xid, payload, flags=flags))
        with trio.fail_after(ISNS_RESPONSE_TIMEOUT_S):
            while True:
                wake = self._wake
                while self._inbox:
                    item = self._inbox.popleft()
                    if isinstance(item, IsnsError):
                        raise item
                    if item.xid == xid and item.function == (function | 0x8000):
                        return item.response()
                    log.debug("iSNS server %s: ignoring message %#x xid %d", self.name, item.function, item.xid)
                await wake.wait()

    async def _send(self, data: bytes) -> None:
        stream = self._stream
        if stream is None:
            raise IsnsError("not connected")
        with trio.fail_after(ISNS_RESPONSE_TIMEOUT_S):
            async with self._send_lock:
                await stream.send_all(data)

    def _drain_inbox(self) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, IsnsError):
                raise item
            log.debug("iSNS server %s: ignoring unsolicited message %#x", self.name, item.function)

    async def _read_loop(self, stream: trio.SocketStream) -> None:
        """Received bytes -> messages in the inbox; ESIs answered here; any failure becomes one
        IsnsError in the inbox and ends the loop. Never raises (but Cancelled)."""
        reader = MessageReader()
        try:
            while True:
                data = await stream.receive_some(ISNS_RECEIVE_BYTES)
                if not data:
                    raise IsnsError("the server closed the connection")
                reader.feed(data)
                while (msg := reader.next_message()) is not None:
                    if msg.function == Function.ESI:
                        await self._send(esi_response(msg))  # RFC 4171 §5.7.5.13
                        continue
                    if len(self._inbox) >= ISNS_INBOX_MAX_MESSAGES:
                        raise IsnsError("the server sends more messages than we asked for")
                    self._inbox.append(msg)
                    self._poke()
        except (IsnsFormatError, IsnsError, OSError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, struct.error) as exc:
            text = f"unusable answer: {exc}" if isinstance(exc, IsnsFormatError) else str(exc) or type(exc).__name__
            self._inbox.append(IsnsError(text))
            self._poke()

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.socket.close()
            self._stream = None


# ---- all servers --------------------------------------------------------------------------------

class IsnsManager:
    """One IsnsClient per server in `iscsi_isns_servers`, started in `nursery`."""

    def __init__(self, nursery: trio.Nursery, entity_id: str | None = None) -> None:
        self._nursery = nursery
        self.entity_id = entity_id or entity_identifier()
        self.clients: dict[Address, IsnsClient] = {}
        self._stopping: dict[Address, IsnsClient] = {}

    def configure(self, cfg: Config) -> None:
        """Called with every configuration the service switches to; never blocks. Without iSNS
        servers nothing is computed (the registration lists every target: issue #12)."""
        servers = parse_servers(cfg.global_config.isns_servers)
        if not servers and not self.clients:
            self._stopping = {a: c for a, c in self._stopping.items() if not c.done.is_set()}
            return
        wanted = registration_for(cfg, self.entity_id)
        for addr in [a for a in self.clients if a not in servers]:
            client = self.clients.pop(addr)
            client.stop()
            self._stopping[addr] = client
        for addr in servers:
            existing = self.clients.get(addr)
            if existing is not None:
                if existing.wanted != wanted:
                    existing.update(wanted)
                continue
            previous = self._stopping.pop(addr, None)
            client = IsnsClient(addr, wanted, previous=previous if previous and not previous.done.is_set() else None)
            self.clients[addr] = client
            self._nursery.start_soon(client.run)
        self._stopping = {a: c for a, c in self._stopping.items() if not c.done.is_set()}

