"""Issue #7, session lifecycle against the real server (in-process, loopback): reinstatement, TSIH
checks, a connection lost mid-write, logout with I/O pending, dead-initiator reaping and the login
timeout on trio's fake clock, the logout request sent to initiators when their target is deleted
through the API, and aborted tasks that stay aborted. (The stalled reader is in test_load.py.)

RFC 7143 §6.3.5 (session reinstatement), §11.12.6 / target-rules.md §1.3 (TSIH rules), §11.14
(logout: pending commands end), §6.5 (implicit termination), §11.9.1 (AsyncEvent 1, logout
request), §11.5.1 (task management); target-rules.md §5.1-5.3.
"""

from __future__ import annotations

import gc
import logging
import math
import select
import socket
import struct
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from pyscsi_target.server.connection import (
    LOGIN_TIMEOUT_S,
    LOGOUT_REQUEST_DEADLINE_S,
    NOP_IN_INTERVAL_S,
    NOP_IN_RESPONSE_TIMEOUT_S,
    TCP_USER_TIMEOUT_MS,
    ConnectionHandler,
)
from tests.initiator import (
    ASYNC,
    LOGIN_RESPONSE,
    LOGOUT_RESPONSE,
    NOP_IN,
    R2T,
    RESERVED_TAG,
    SCSI_RESPONSE,
    TMF_RESPONSE,
)
from tests.support import DEMO_IQN, Running, demo_options, start

from .apiclient import ISCSI, ApiClient
from .client import Client
from .reliability import (
    BS,
    GOOD,
    FlushHook,
    decode_blocks,
    handler_of,
    hooked_server,
    host_port,
    make_blocks,
    open_session,
    write_and_verify,
)

INITIATOR = "iqn.2026-11.org.example:lifecycle"
ISID = 0x80_00_00_AA_00_01
OTHER = "iqn.2026-11.org.example:bystander"
OTHER_ISID = 0x80_00_00_BB_00_01
GEN = 0x7E57_0001
#: seconds any single wait in these tests may take before the test fails (real time)
STEP_TIMEOUT_S = 10.0
#: seconds between two looks at server state that has no event to wait on
POLL_INTERVAL_S = 0.01
#: login status class/detail (RFC 7143 §11.13.5)
SESSION_DOES_NOT_EXIST = (0x02, 0x0A)
TOO_MANY_CONNECTIONS = (0x02, 0x06)
#: keys that make every WRITE wait for an R2T before sending data (RFC 7143 §13.10, §13.11)
SOLICITED_ONLY = {"InitialR2T": "Yes", "ImmediateData": "No"}


def write10_cdb(lba: int, nblocks: int, *, fua: bool = False) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0x08 if fua else 0, lba, 0, nblocks, 0)


async def wait_eof(c: Client, timeout: float = STEP_TIMEOUT_S) -> list[int]:
    """Read until the target closes the connection; the opcodes of what arrived before EOF."""
    seen = []
    with trio.fail_after(timeout):
        while True:
            try:
                pdu = await c.recv_pdu(timeout=timeout)
            except EOFError:
                return seen
            seen.append(pdu.opcode)


def readable(c: Client) -> bool:
    """True if the target sent anything (or closed) that the client has not read: poll(2), no wait."""
    p = select.poll()
    p.register(c.sock.socket.fileno(), select.POLLIN)
    return bool(p.poll(0))


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT_S) -> None:
    """Poll the in-process server's state until `predicate()` (for state that has no event)."""
    deadline = trio.current_time() + timeout
    while not predicate():
        assert trio.current_time() < deadline, what
        await trio.sleep(POLL_INTERVAL_S)


async def wait_closed(handler: ConnectionHandler, timeout: float = STEP_TIMEOUT_S) -> None:
    with trio.fail_after(timeout):
        await handler.closed.wait()


async def verified_io(c: Client, lba: int, seq: int) -> None:
    await write_and_verify(c, lba, seq, GEN)


# ---- session reinstatement (RFC 7143 §6.3.5) ------------------------------------------------------


async def test_reinstatement_ends_the_old_session_before_the_new_login_completes(demo: Running) -> None:
    old_client = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
    await verified_io(old_client, 100, 1)
    old = handler_of(demo.service, INITIATOR, ISID)
    old_tsih = old_client.tsih

    new_client = await Client.connect(*host_port(demo.portal), name=INITIATOR, isid=ISID)
    await new_client.login(DEMO_IQN)  # TSIH 0, same initiator name and ISID
    # by the time the new login completed, the old session was over (not merely told to end)
    assert old.closed.is_set()
    assert old.end_reason == "session reinstated"
    assert await wait_eof(old_client) == []
    assert [(s.initiator, s.tsih) for s in demo.service.sessions()] == [(INITIATOR, new_client.tsih)]
    assert new_client.tsih != old_tsih
    await new_client.ready()
    await verified_io(new_client, 100, 2)
    await old_client.aclose()
    await new_client.aclose()


async def test_reinstatement_waits_for_the_old_sessions_running_command(tmp_path: Path) -> None:
    """A SYNCHRONIZE CACHE of the old session is still running in a worker thread: the new login
    answers only once it finished, and its response never reaches anyone."""
    hook = FlushHook()
    async with hooked_server(tmp_path / "data", hook) as run:
        old_client = await open_session(run.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
        hook.close_gate()
        await old_client.send(old_client.ini.scsi_command(bytes([0x35]) + bytes(9)))
        await trio.to_thread.run_sync(hook.waiting.wait, STEP_TIMEOUT_S)
        assert hook.waiting.is_set()

        new_client = await Client.connect(*host_port(run.portal), name=INITIATOR, isid=ISID)
        login_done = trio.Event()

        async def log_in() -> None:
            await new_client.login(DEMO_IQN)
            login_done.set()

        old = handler_of(run.service, INITIATOR, ISID)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(log_in)
                # the old session's connection is told to end; its SYNCHRONIZE CACHE still runs
                await wait_until(lambda: old.end_reason == "session reinstated", "old session not ended")
                await trio.testing.wait_all_tasks_blocked(0.05)
                assert not login_done.is_set(), "new login completed while the old session's task ran"
                assert not old.closed.is_set()
                hook.open_gate()
        finally:
            hook.open_gate()
        assert old.closed.is_set()
        assert SCSI_RESPONSE not in await wait_eof(old_client)
        await new_client.ready()
        await verified_io(new_client, 200, 3)
        await old_client.aclose()
        await new_client.aclose()


# ---- TSIH checks (RFC 7143 §6.3.1 table, target-rules.md §1.3) ------------------------------------


async def login_with_tsih(portal: str, tsih: int, *, isid: int = ISID) -> tuple[int, int]:
    """A leading login with a non-zero TSIH (joining an existing session): the final status."""
    c = await Client.connect(*host_port(portal), name=INITIATOR, isid=isid)
    try:
        keys = {"InitiatorName": INITIATOR, "SessionType": "Normal", "AuthMethod": "None", "TargetName": DEMO_IQN}
        await c.send(c.ini.login(keys, csg=0, nsg=1, transit=True, tsih=tsih))
        rsp = await c.recv_pdu()
        assert rsp.opcode == LOGIN_RESPONSE
        if rsp.status_class:
            return rsp.status_class, rsp.status_detail
        await c.send(c.ini.login({"HeaderDigest": "None", "DataDigest": "None"}, csg=1, nsg=3, tsih=tsih))
        rsp = await c.recv_pdu()
        assert rsp.opcode == LOGIN_RESPONSE
        return rsp.status_class, rsp.status_detail
    finally:
        await c.aclose()


async def test_unknown_tsih_is_session_does_not_exist(demo: Running) -> None:
    assert await login_with_tsih(demo.portal, 0x1234) == SESSION_DOES_NOT_EXIST
    assert len(demo.service.registry) == 0


async def test_second_connection_to_a_session_is_too_many_connections(demo: Running) -> None:
    """MaxConnections=1: a login naming an existing session's TSIH is refused and the session
    itself carries on untouched."""
    c = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
    assert await login_with_tsih(demo.portal, c.tsih) == TOO_MANY_CONNECTIONS
    await verified_io(c, 300, 4)
    assert [s.tsih for s in demo.service.sessions()] == [c.tsih]
    await c.aclose()


# ---- connection loss mid-command (ERL 0: all task state freed at once) --------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_connection_drop_mid_write_frees_the_task(demo: Running, how: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The initiator goes away (orderly FIN, or a reset) with half of a WRITE's data sent: the
    connection ends as a socket event, not as a server failure, and all its state goes with it."""
    bystander = await open_session(demo.portal, DEMO_IQN, name=OTHER, isid=OTHER_ISID)
    await verified_io(bystander, 10_000, 5)
    baseline = len(demo.service.handlers)

    c = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID, extra=SOLICITED_ONLY)
    handler = handler_of(demo.service, INITIATOR, ISID)
    conn_ref = weakref.ref(handler.conn)
    lba, nblocks = 400, 512  # 256 KiB: one R2T, half of it sent
    data = make_blocks(lba, nblocks, 6, GEN)
    itt = c.ini.new_itt()
    await c.send(c.ini.scsi_command(write10_cdb(lba, nblocks), write=True, edtl=len(data), itt=itt))
    r2t = await c.recv_pdu()
    assert r2t.opcode == R2T and r2t.desired_length == len(data)
    half = len(data) // 2
    await c.send(c.ini.data_out(itt, 0, data[:half], ttt=r2t.ttt, final=False))
    if how == "rst":  # SO_LINGER with a zero timeout: close() sends RST
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await c.aclose()

    await wait_closed(handler)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a dropped peer logged as a failure"
    if how == "rst":
        assert handler.end_reason.startswith("socket:"), handler.end_reason
    assert len(demo.service.handlers) == baseline
    assert [s.initiator for s in demo.service.sessions()] == [OTHER]
    del handler
    gc.collect()
    assert conn_ref() is None, "the dropped connection's protocol state (tasks, Data-Out) is still alive"
    # nothing of the half-sent write reached the medium; the other session never noticed
    res = await bystander.read10(lba, nblocks)
    assert res.status == GOOD and all(f.seq is None for f in decode_blocks(res.data, lba, GEN))
    await verified_io(bystander, 10_000, 7)
    await bystander.aclose()


# ---- logout with I/O pending (RFC 7143 §11.14: pending commands end, none is answered later) ----


async def test_logout_ends_pending_io_before_its_response(tmp_path: Path) -> None:
    """Three kinds of pending command when the Logout Request arrives: a WRITE waiting for its
    Data-Out, a READ held behind a CmdSN gap, and a SYNCHRONIZE CACHE running in a worker thread.
    The Logout Response comes only once the running one finished; no command is answered after the
    Logout Request; the session is gone and the half-sent write never reached the medium."""
    hook = FlushHook()
    async with hooked_server(tmp_path / "data", hook) as run:
        baseline = len(run.service.handlers)
        c = await open_session(run.portal, DEMO_IQN, name=INITIATOR, isid=ISID, extra=SOLICITED_ONLY)
        lba, nblocks = 500, 64
        data = make_blocks(lba, nblocks, 8, GEN)
        hook.close_gate()
        try:
            await c.send(c.ini.scsi_command(bytes([0x35]) + bytes(9)))
            await trio.to_thread.run_sync(hook.waiting.wait, STEP_TIMEOUT_S)
            assert hook.waiting.is_set()
            await c.send(c.ini.scsi_command(write10_cdb(lba, nblocks), write=True, edtl=len(data)))
            assert (await c.recv_pdu()).opcode == R2T  # ... and its data never comes
            c.ini.cmdsn += 1  # this CmdSN is never sent: the READ below waits for it
            await c.send(c.ini.scsi_command(struct.pack(">BBIBHB", 0x28, 0, lba, 0, 1, 0), read=True, edtl=BS))
            await c.send(c.ini.logout(0))
            handler = handler_of(run.service, INITIATOR, ISID)
            await wait_until(lambda: handler.conn.state != "full_feature", "Logout Request not received")
            await trio.testing.wait_all_tasks_blocked(0.05)
            assert not readable(c), "the target answered while the SYNCHRONIZE CACHE still ran"
        finally:
            hook.open_gate()
        after = await wait_eof(c)
        assert after == [LOGOUT_RESPONSE], [hex(op) for op in after]
        await wait_closed(handler)
        assert len(run.service.handlers) == baseline and len(run.service.registry) == 0
        fresh = await open_session(run.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
        res = await fresh.read10(lba, nblocks)
        assert res.status == GOOD and all(f.seq is None for f in decode_blocks(res.data, lba, GEN))
        await c.aclose()
        await fresh.aclose()


# ---- timers on trio's fake clock: dead-initiator reaping, login timeout --------------------------
#
# `autojump_clock` (pytest-trio) runs the test on trio.testing.MockClock(autojump_threshold=0):
# whenever every task waits, virtual time jumps to the next deadline, so 90 s of keepalive take
# milliseconds and the times below are exact virtual times, not measurements.

#: virtual seconds a timer may fire late (wake-up scheduling on the fake clock)
CLOCK_SLACK_S = 1.0


async def test_dead_initiator_is_reaped_after_the_nop_in_timeout(
    autojump_clock: trio.testing.MockClock, demo: Running
) -> None:
    """Logged in, then silent: a NOP-In ping after NOP_IN_INTERVAL_S, and the connection closed
    NOP_IN_RESPONSE_TIMEOUT_S later; the session is gone."""
    c = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
    last_rx = trio.current_time()
    # the kernel, too, gives up on a peer that stops acknowledging data (RFC 5482)
    sock = handler_of(demo.service, INITIATOR, ISID).sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == TCP_USER_TIMEOUT_MS
    reap_at = last_rx + NOP_IN_INTERVAL_S + NOP_IN_RESPONSE_TIMEOUT_S
    pings = []
    with trio.fail_after(2 * (NOP_IN_INTERVAL_S + NOP_IN_RESPONSE_TIMEOUT_S)):
        while True:
            try:
                pdu = await c.recv_pdu(timeout=math.inf)
            except EOFError:
                break
            assert pdu.opcode == NOP_IN and pdu.itt == RESERVED_TAG and pdu.ttt != RESERVED_TAG
            pings.append(trio.current_time())
    closed_at = trio.current_time()
    assert len(pings) == 1
    assert last_rx + NOP_IN_INTERVAL_S <= pings[0] <= last_rx + NOP_IN_INTERVAL_S + CLOCK_SLACK_S
    assert reap_at <= closed_at <= reap_at + CLOCK_SLACK_S
    await wait_until(lambda: not demo.service.handlers, "reaped connection's handler still running")
    assert len(demo.service.registry) == 0
    await c.aclose()


async def test_initiator_answering_nop_in_stays_connected(
    autojump_clock: trio.testing.MockClock, demo: Running
) -> None:
    """The same idle session, answering each ping with a NOP-Out, outlives several reaping
    periods and still does I/O (so the test above measures the timeout, not a blanket close)."""
    c = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
    periods = 3
    until = trio.current_time() + periods * (NOP_IN_INTERVAL_S + NOP_IN_RESPONSE_TIMEOUT_S)
    answered = 0
    while trio.current_time() < until:
        # the keepalive pings again once its response timeout ran out
        pdu = await c.recv_pdu(timeout=max(NOP_IN_INTERVAL_S, NOP_IN_RESPONSE_TIMEOUT_S) + CLOCK_SLACK_S)
        assert pdu.opcode == NOP_IN and pdu.ttt != RESERVED_TAG
        await c.send(c.ini.nop_out(itt=RESERVED_TAG, ttt=pdu.ttt))
        answered += 1
    assert answered >= periods
    await verified_io(c, 600, 9)
    assert len(demo.service.handlers) == 1
    await c.aclose()


async def test_login_that_never_completes_times_out(autojump_clock: trio.testing.MockClock, demo: Running) -> None:
    """A connection that sends part of a Login PDU and then nothing is closed LOGIN_TIMEOUT_S after
    it was accepted (slowloris, target-rules.md §5.2)."""
    c = await Client.connect(*host_port(demo.portal), name=INITIATOR, isid=ISID)
    opened = trio.current_time()
    await c.send(c.ini.login({"InitiatorName": INITIATOR, "TargetName": DEMO_IQN})[:30])
    assert await wait_eof(c, timeout=2 * LOGIN_TIMEOUT_S) == []
    assert opened + LOGIN_TIMEOUT_S <= trio.current_time() <= opened + LOGIN_TIMEOUT_S + CLOCK_SLACK_S
    await wait_until(lambda: not demo.service.handlers, "timed-out login's handler still running")
    assert demo.service.admission.prelogin_total == 0
    await c.aclose()


# ---- target deleted through the API: initiators are asked to log out (RFC 7143 §11.9.1) ----------

ASYNC_EVENT_LOGOUT_REQUEST = 1


async def test_target_deletion_sends_logout_requests(nursery: trio.Nursery, tmp_path: Path) -> None:
    """DELETE of the target through the API: each of its sessions gets AsyncEvent 1 with the time it
    has to log out (Parameter3). An initiator that logs out gets its Logout Response; one that
    ignores the request is disconnected when that time is up."""
    run = await start(nursery, demo_options(tmp_path / "data", api=True))
    api = ApiClient.for_server(run.options)
    polite = await open_session(run.portal, DEMO_IQN, name=INITIATOR, isid=ISID)
    deaf = await open_session(run.portal, DEMO_IQN, name=OTHER, isid=OTHER_ISID)
    (target,) = run.service.config.targets.values()

    reply = await api.delete(f"{ISCSI}/target/{target.id}/")
    assert reply.status in (200, 204), (reply.status, reply.body)
    asked_at = trio.current_time()
    outcome: dict[str, object] = {}

    async def log_out_when_asked() -> None:
        msg = await polite.recv_pdu()
        assert msg.opcode == ASYNC and msg.bhs[36] == ASYNC_EVENT_LOGOUT_REQUEST
        outcome["grace"] = int.from_bytes(msg.bhs[42:44], "big")
        outcome["logout"] = (await polite.logout()).response
        outcome["polite_after"] = await wait_eof(polite)

    async def ignore() -> None:
        outcome["deaf_seen"] = await wait_eof(deaf, timeout=LOGOUT_REQUEST_DEADLINE_S + STEP_TIMEOUT_S)
        outcome["deaf_closed_after"] = trio.current_time() - asked_at

    async with trio.open_nursery() as inner:
        inner.start_soon(log_out_when_asked)
        inner.start_soon(ignore)
    assert outcome["grace"] == LOGOUT_REQUEST_DEADLINE_S
    assert outcome["logout"] == 0 and outcome["polite_after"] == []
    assert outcome["deaf_seen"] == [ASYNC]
    assert LOGOUT_REQUEST_DEADLINE_S - 0.5 <= outcome["deaf_closed_after"] <= LOGOUT_REQUEST_DEADLINE_S + 2
    await wait_until(lambda: not run.service.handlers, "sessions of the deleted target still running")
    await polite.aclose()
    await deaf.aclose()


# ---- aborted tasks end for good (RFC 7143 §11.5.1, target-rules.md §5.3) ------------------------

TMF_ABORT_TASK_SET = 2


async def test_abort_task_set_executes_none_of_the_aborted_commands(demo: Running) -> None:
    """WRITE A waits for its Data-Out, WRITE B (all its data immediate) waits behind A in CmdSN
    order. ABORT TASK SET ends both: neither is answered, and B's data never reaches the medium
    (aborting A must not release B to run)."""
    c = await open_session(demo.portal, DEMO_IQN, name=INITIATOR, isid=ISID,
                           extra={"InitialR2T": "Yes", "ImmediateData": "Yes"})
    a = make_blocks(100, 64, 1, GEN)
    await c.send(c.ini.scsi_command(write10_cdb(100, 64), write=True, edtl=len(a)))
    assert (await c.recv_pdu()).opcode == R2T
    b = make_blocks(900, 8, 2, GEN)
    await c.send(c.ini.scsi_command(write10_cdb(900, 8), write=True, edtl=len(b), data=b))
    await c.send(c.ini.tmf(TMF_ABORT_TASK_SET))
    rsp = await c.recv_pdu()
    assert rsp.opcode == TMF_RESPONSE and rsp.response == 0
    res = await c.read10(900, 8)  # its response is the next PDU: nothing else was answered
    assert res.status == GOOD and all(f.seq is None for f in decode_blocks(res.data, 900, GEN))
    await verified_io(c, 900, 3)
    await c.aclose()
