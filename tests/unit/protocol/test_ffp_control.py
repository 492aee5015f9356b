"""Full feature phase control PDUs: NOP, Text/SendTargets, Logout, TMF, Async, discovery
restrictions, malformed PDUs and end of stream."""

from __future__ import annotations

import pytest

from pyscsi_target.protocol import Connection, ConnectionClosed, LogoutRequested, TaskManagement
from pyscsi_target.protocol.authority import SendTargetsEntry
from pyscsi_target.protocol.pdu import int_to_lun
from tests.initiator import (
    ASYNC,
    LOGOUT_RESPONSE,
    NOP_IN,
    REJECT,
    TEXT_RESPONSE,
    TMF_RESPONSE,
    Initiator,
)

from .support import OPEN_ISCSI_OPERATIONAL, TARGET, FakeAuthority, exchange, logged_in, login

RESERVED = 0xFFFFFFFF


def discovery_session(auth: FakeAuthority | None = None, mrdsl: int = 8192) -> tuple[Connection, Initiator]:
    conn = Connection(auth or FakeAuthority())
    ini = Initiator()
    keys = [("InitiatorName", ini.name), ("SessionType", "Discovery"), ("MaxRecvDataSegmentLength", str(mrdsl))]
    _events, (rsp,) = exchange(conn, ini, ini.login(keys))
    assert rsp.status_class == 0 and conn.state == "full_feature"
    return conn, ini


# ---- NOP ------------------------------------------------------------------------------------------


def test_nop_out_ping_is_echoed() -> None:
    conn, ini, _ = logged_in()
    events, (nop,) = exchange(conn, ini, ini.nop_out(data=b"hello", lun=3))
    assert events == [] and nop.opcode == NOP_IN
    assert (nop.itt, nop.ttt, nop.data, nop.lun) == (ini.next_itt, RESERVED, b"hello", 3 << 48)
    assert nop.statsn == 1  # the answer to a ping advances StatSN
    _, (nop2,) = exchange(conn, ini, ini.nop_out())
    assert nop2.statsn == 2


def test_nop_out_without_reply() -> None:
    conn, ini, _ = logged_in()
    assert exchange(conn, ini, ini.nop_out(itt=RESERVED)) == ([], [])


def test_nop_out_with_reserved_itt_must_be_immediate() -> None:
    conn, ini, _ = logged_in()
    _, (rej,) = exchange(conn, ini, ini.nop_out(itt=RESERVED, immediate=False))
    assert rej.opcode == REJECT and rej.reason == 0x04


def test_non_immediate_nop_out_takes_a_cmdsn() -> None:
    conn, ini, _ = logged_in()
    before = conn.exp_cmdsn
    _, (nop,) = exchange(conn, ini, ini.nop_out(immediate=False))
    assert conn.exp_cmdsn == before + 1 and nop.exp_cmdsn == before + 1
    assert nop.max_cmdsn == conn.max_cmdsn


def test_target_ping_and_its_answer() -> None:
    conn, ini, _ = logged_in()
    statsn = conn._statsn.next
    conn.send_nop_in_ping()
    (ping,) = ini.receive(conn.data_to_send())
    assert ping.opcode == NOP_IN and ping.itt == RESERVED and ping.ttt != RESERVED
    assert ping.statsn == statsn and conn._statsn.next == statsn  # StatSN not advanced
    assert conn.outstanding_pings == 1
    events, pdus = exchange(conn, ini, ini.nop_out(itt=RESERVED, ttt=ping.ttt))
    assert events == [] and pdus == [] and conn.outstanding_pings == 0


# ---- Text / SendTargets ------------------------------------------------------------------------------


def test_send_targets_all_in_discovery() -> None:
    auth = FakeAuthority()
    conn, ini = discovery_session(auth)
    _events, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", "All")]))
    assert rsp.opcode == TEXT_RESPONSE and rsp.final and not rsp.cont and rsp.ttt == RESERVED
    assert rsp.keys == [("TargetName", TARGET), ("TargetAddress", "127.0.0.1:3260,1"),
                        ("TargetAddress", "[::1]:3260,1"), ("TargetName", "iqn.2024-01.org.example:disk1"),
                        ("TargetAddress", "127.0.0.1:3260,1")]
    assert auth.send_targets_calls == [(ini.name, "All")]


def test_send_targets_one_name_in_discovery() -> None:
    conn, ini = discovery_session()
    _, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", TARGET)]))
    assert [k for k, _ in rsp.keys] == ["TargetName", "TargetAddress", "TargetAddress"]
    _, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", "")]))
    assert rsp.data == b""


@pytest.mark.parametrize("value", ["All", ""])
def test_send_targets_all_is_not_honoured_in_a_normal_session(value: str) -> None:
    auth = FakeAuthority()
    conn = Connection(auth)
    ini = Initiator()
    login(conn, ini)
    _, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", value)]))
    assert [v for k, v in rsp.keys if k == "TargetName"] == [TARGET]
    assert auth.send_targets_calls == [(ini.name, TARGET)]


def test_long_send_targets_answer_is_continued() -> None:
    auth = FakeAuthority(entries=[SendTargetsEntry(f"iqn.2024-01.org.example:t{i:03d}", ("10.0.0.1:3260,1",))
                                  for i in range(40)])
    conn, ini = discovery_session(auth, mrdsl=512)
    _events, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", "All")], itt=0x50))
    pieces = [rsp]
    while pieces[-1].cont:
        assert not pieces[-1].final and pieces[-1].ttt != RESERVED and pieces[-1].dsl <= 512
        _, (nxt,) = exchange(conn, ini, ini.text([], itt=0x50, ttt=pieces[-1].ttt))
        pieces.append(nxt)
    assert len(pieces) > 3 and pieces[-1].final and pieces[-1].ttt == RESERVED
    text = b"".join(p.data for p in pieces)
    names = [item for item in text.split(b"\0") if item.startswith(b"TargetName=")]
    assert len(names) == 40
    statsns = [p.statsn for p in pieces]
    assert statsns == list(range(statsns[0], statsns[0] + len(pieces)))


def test_text_errors() -> None:
    conn, ini = discovery_session()
    _, (rej,) = exchange(conn, ini, ini.text([("SendTargets", "All")], cont=True, final=False))
    assert rej.reason == 0x05  # multi-PDU text requests are not supported
    _, (rej,) = exchange(conn, ini, ini.text([], ttt=0x1234))
    assert rej.reason == 0x09  # unknown continuation tag
    _, (rej,) = exchange(conn, ini, ini.text([("MaxRecvDataSegmentLength", "65536")]))
    assert rej.reason == 0x05  # a discovery session answers SendTargets only
    wire = bytearray(ini.text([("SendTargets", "All")]))
    wire[-1] = ord("x")  # no terminating NUL
    _, (rej,) = exchange(conn, ini, bytes(wire))
    assert rej.reason == 0x04
    assert not conn.wants_close


def test_text_negotiation_in_full_feature_phase() -> None:
    conn, ini, _ = logged_in()
    _, (rsp,) = exchange(conn, ini, ini.text([("MaxRecvDataSegmentLength", "4096"), ("MaxBurstLength", "512"),
                                              ("X-foo", "1")]))
    assert rsp.keys == [("MaxBurstLength", "Reject"), ("X-foo", "NotUnderstood")]
    events, _ = exchange(conn, ini, ini.scsi_command(bytes.fromhex("28") + bytes(9), read=True, edtl=10000))
    conn.send_scsi_response(events[0].itt, 0, bytes(10000))
    assert [p.dsl for p in ini.receive(conn.data_to_send())] == [4096, 4096, 1808]


# ---- discovery restrictions --------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda ini: ini.scsi_command(bytes(6)),
    lambda ini: ini.nop_out(),
    lambda ini: ini.tmf(1),
    lambda ini: ini.logout(1),
])
def test_discovery_session_rejects_everything_but_text_and_logout(build) -> None:  # type: ignore[no-untyped-def]
    conn, ini = discovery_session()
    events, (rej,) = exchange(conn, ini, build(ini))
    assert rej.opcode == REJECT and rej.reason == 0x05 and events == []


def test_discovery_logout() -> None:
    conn, ini = discovery_session()
    events, _ = exchange(conn, ini, ini.logout(0))
    assert isinstance(events[0], LogoutRequested)


# ---- Logout, TMF, Async ----------------------------------------------------------------------------


def test_logout_sequence() -> None:
    conn, ini, _ = logged_in()
    events, pdus = exchange(conn, ini, ini.logout(0, itt=0x66, cid=0))
    assert pdus == [] and events == [LogoutRequested(itt=0x66, reason=0, cid=0)]
    assert conn.state == "logout"
    assert exchange(conn, ini, ini.nop_out()) == ([], [])  # ignored after a Logout Request
    conn.send_logout_response(0x66)
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.opcode == LOGOUT_RESPONSE and rsp.response == 0 and rsp.itt == 0x66
    events = [conn.next_event(), conn.next_event()]
    assert events[0] == ConnectionClosed(reason="logout", error=False)
    assert conn.state == "closed" and conn.wants_close and repr(events[1]) == "NEED_DATA"


def test_task_management_request_and_response() -> None:
    conn, ini, _ = logged_in()
    events, _ = exchange(conn, ini, ini.tmf(5, lun=int_to_lun(2) >> 48, itt=0x70, ref_cmdsn=3))
    (tmf,) = events
    assert isinstance(tmf, TaskManagement)
    assert (tmf.itt, tmf.function, tmf.lun, tmf.referenced_itt, tmf.ref_cmdsn) == (0x70, 5, 2, RESERVED, 3)
    conn.send_tmf_response(0x70, 0)
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.opcode == TMF_RESPONSE and rsp.response == 0 and rsp.itt == 0x70 and rsp.statsn == 1


def test_non_immediate_tmf_holds_a_window_slot_until_answered() -> None:
    conn, ini, _ = logged_in()
    start_max = conn.max_cmdsn
    events, _ = exchange(conn, ini, ini.tmf(1, referenced_itt=5, immediate=False, itt=0x71))
    assert events[0].cmdsn == 1 and conn.max_cmdsn == start_max
    conn.send_tmf_response(0x71, 1)
    assert conn.max_cmdsn == start_max + 1


def test_async_event_requesting_logout() -> None:
    conn, ini, _ = logged_in()
    conn.send_async_event(1, param3=5)
    (msg,) = ini.receive(conn.data_to_send())
    assert msg.opcode == ASYNC and msg.itt == RESERVED and msg.bhs[36] == 1
    assert int.from_bytes(msg.bhs[42:44], "big") == 5 and msg.statsn == 1


def test_server_calls_outside_full_feature_are_ignored() -> None:
    conn = Connection(FakeAuthority())
    conn.send_async_event(1)
    conn.send_nop_in_ping()
    conn.send_scsi_response(1, 0, b"x")
    assert conn.data_to_send() == []


# ---- malformed PDUs and end of stream ---------------------------------------------------------------


@pytest.mark.parametrize("opcode", [0x07, 0x21, 0x3F, 0x10, 0x03])  # unknown, target-side, SNACK, Login
def test_unexpected_opcodes_are_reject_0x04(opcode: int) -> None:
    conn, ini, _ = logged_in()
    wire = ini.pdu(opcode, 0x80, itt=9)
    events, (rej,) = exchange(conn, ini, wire)
    assert rej.opcode == REJECT and rej.reason == 0x04 and rej.data == wire[:48] and events == []
    assert not conn.wants_close


def test_oversized_data_segment_is_rejected_and_skipped() -> None:
    conn, ini, _ = logged_in()
    big = ini.nop_out(data=bytes(262145))
    _events, pdus = exchange(conn, ini, big + ini.nop_out(data=b"after"))
    assert [p.opcode for p in pdus] == [REJECT, NOP_IN]
    assert pdus[0].reason == 0x04 and pdus[1].data == b"after"


def test_too_long_ahs_closes() -> None:
    conn, ini, _ = logged_in()
    events, pdus = exchange(conn, ini, ini.pdu(0x00, 0x80, immediate=True, itt=1, ahs=bytes(65 * 4)))
    assert pdus == [] and events[0].error and events[0].reason == "ahs_too_long"


def test_eof() -> None:
    conn, ini, _ = logged_in()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(reason="eof", error=False)
    conn, ini, _ = logged_in()
    conn.receive_data(ini.nop_out()[:30])
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(reason="eof", error=True)
    conn.receive_data(ini.nop_out())  # ignored once closed
    assert repr(conn.next_event()) == "NEED_DATA"


def test_statsn_counts_every_status_pdu() -> None:
    conn, ini, _ = logged_in(OPEN_ISCSI_OPERATIONAL)
    seen = []
    for wire in (ini.nop_out(), ini.pdu(0x07, 0, itt=1), ini.text([("X-a", "1")])):
        _, (pdu,) = exchange(conn, ini, wire)
        seen.append(pdu.statsn)
    assert seen == [1, 2, 3]
