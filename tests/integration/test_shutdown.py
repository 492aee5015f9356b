"""Issue #16, a planned shutdown (SIGTERM) of the server process: every logged-in initiator is asked
to log out (AsyncEvent 1, RFC 7143 §11.9.1) before its connection is closed; the server waits at
most `SHUTDOWN_LOGOUT_GRACE_S` for that, and no longer than the initiators take.

The server runs as a subprocess (`python -m pyscsi_target serve`), so the signal goes through
`__main__`'s handler exactly as systemd's stop would."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from pyscsi_target.server.connection import ASYNC_EVENT_LOGOUT_REQUEST
from pyscsi_target.server.service import SHUTDOWN_LOGOUT_GRACE_S
from tests.initiator import ASYNC, LOGOUT_RESPONSE
from tests.support import DEMO_IQN, free_port

from .client import Client
from .reliability import DEMO_MARKER, ServerProcess, open_session

INITIATOR = "iqn.2026-11.org.example:shutdown"
ISID = 0x80_00_00_5D_00_01
#: seconds a step may take beyond what the server is allowed (slow shared machines)
MARGIN_S = 5.0


def audit_reason(server: ServerProcess) -> str:
    """Why the server says the session ended: its audit line "logout: <name> (<peer>) -> <target>,
    TSIH <n>: <reason>" (connection.py)."""
    lines = [line for line in server.output["stderr"].splitlines() if f"logout: {INITIATOR} (" in line]
    assert len(lines) == 1, lines
    return lines[0].rsplit(": ", 1)[1]


async def started_server(nursery: trio.Nursery, tmp_path: Path) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", f"127.0.0.1:{free_port()}")
    await server.start(nursery, "stdout", DEMO_MARKER)
    return server


async def logout_request(c: Client) -> int:
    """The next PDU must be AsyncEvent 1; its Parameter3 (seconds to log out)."""
    pdu = await c.recv_pdu(timeout=MARGIN_S)
    assert (pdu.opcode, pdu.bhs[36]) == (ASYNC, ASYNC_EVENT_LOGOUT_REQUEST), (pdu.opcode, pdu.bhs[36])
    return int.from_bytes(pdu.bhs[42:44], "big")


async def eof(c: Client) -> list[int]:
    """Read until the target closes; the opcodes that arrived before."""
    seen = []
    while True:
        try:
            pdu = await c.recv_pdu(timeout=SHUTDOWN_LOGOUT_GRACE_S + MARGIN_S)
        except EOFError:
            return seen
        seen.append(pdu.opcode)


async def test_sigterm_asks_initiators_to_log_out_then_closes(tmp_path: Path) -> None:
    """An initiator that ignores the request gets it (with the grace as Parameter3), its connection
    is closed when the grace is over, and the server then exits 0."""
    async with trio.open_nursery() as nursery:
        server = await started_server(nursery, tmp_path)
        c = await open_session(server.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
        try:
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = trio.current_time()
            assert await logout_request(c) == int(SHUTDOWN_LOGOUT_GRACE_S)
            assert await eof(c) == []
            closed_after = trio.current_time() - signalled
            with trio.fail_after(MARGIN_S):
                status = await server.proc.wait()
            exited_after = trio.current_time() - signalled
        finally:
            await c.aclose()
            server.kill_quietly()
    assert status == 0, server.output["stderr"][-2000:]
    assert SHUTDOWN_LOGOUT_GRACE_S - 0.5 <= closed_after <= SHUTDOWN_LOGOUT_GRACE_S + MARGIN_S
    assert exited_after <= SHUTDOWN_LOGOUT_GRACE_S + MARGIN_S
    assert audit_reason(server) == "shutdown"
    assert server.problems == []


async def test_sigterm_exits_as_soon_as_initiators_logged_out(tmp_path: Path) -> None:
    """An initiator that answers the request with a Logout gets its Logout Response, and the server
    exits without waiting for the rest of the grace."""
    async with trio.open_nursery() as nursery:
        server = await started_server(nursery, tmp_path)
        c = await open_session(server.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
        try:
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = trio.current_time()
            await logout_request(c)
            rsp = await c.logout()
            assert (rsp.opcode, rsp.response) == (LOGOUT_RESPONSE, 0)
            assert await eof(c) == []
            with trio.fail_after(SHUTDOWN_LOGOUT_GRACE_S + MARGIN_S):
                status = await server.proc.wait()
            exited_after = trio.current_time() - signalled
        finally:
            await c.aclose()
            server.kill_quietly()
    assert status == 0, server.output["stderr"][-2000:]
    assert exited_after < SHUTDOWN_LOGOUT_GRACE_S, exited_after
    assert audit_reason(server) == "logout, as asked (shutdown)"
    assert server.problems == []


async def test_sigterm_stops_an_idle_server_at_once(tmp_path: Path) -> None:
    """No session: nothing to wait for (tests and service managers stop idle servers often)."""
    async with trio.open_nursery() as nursery:
        server = await started_server(nursery, tmp_path)
        try:
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            signalled = trio.current_time()
            with trio.fail_after(SHUTDOWN_LOGOUT_GRACE_S + MARGIN_S):
                status = await server.proc.wait()
            exited_after = trio.current_time() - signalled
        finally:
            server.kill_quietly()
    assert status == 0, server.output["stderr"][-2000:]
    assert exited_after < SHUTDOWN_LOGOUT_GRACE_S, exited_after
