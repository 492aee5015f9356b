"""Full feature phase data path: reads (Data-In splitting, phase collapse, residuals), writes
(immediate data, unsolicited Data-Out, R2T sequences, Data-Out errors) and the CmdSN window."""

from __future__ import annotations

import pytest

from pyscsi_target.protocol import ScsiCommand
from pyscsi_target.protocol.limits import COMMAND_WINDOW_DEPTH
from tests.initiator import DATA_IN, R2T, REJECT, SCSI_RESPONSE, Initiator

from .support import OPEN_ISCSI_OPERATIONAL, drain, exchange, logged_in

READ10 = bytes.fromhex("28000000000000000800")
WRITE10 = bytes.fromhex("2a000000000000000800")
TUR = bytes(6)
SENSE = bytes.fromhex("700005000000000a0000000024000000000000")


def keys(**overrides: str) -> list[tuple[str, str]]:
    out = dict(OPEN_ISCSI_OPERATIONAL)
    out.update(overrides)
    return list(out.items())


def read(conn, ini: Initiator, edtl: int, **kw):  # type: ignore[no-untyped-def]
    events, pdus = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=edtl, **kw))
    assert pdus == []
    (ev,) = events
    assert isinstance(ev, ScsiCommand) and ev.read and not ev.write and ev.expected_length == edtl
    return ev


# ---- reads ----------------------------------------------------------------------------------------


def test_read_phase_collapse_in_one_data_in() -> None:
    conn, ini, _ = logged_in()
    ev = read(conn, ini, 4096)
    assert ev.lun == 0 and ev.cdb == READ10 + bytes(6) and ev.cmdsn == 1 and ev.data is None
    conn.send_scsi_response(ev.itt, 0, b"\xab" * 4096)
    (din,) = ini.receive(conn.data_to_send())
    assert din.opcode == DATA_IN and din.final and din.status_present and din.status == 0
    assert (din.itt, din.datasn, din.buffer_offset, din.data) == (ev.itt, 0, 0, b"\xab" * 4096)
    assert not din.overflow and not din.underflow and din.residual == 0
    assert (din.statsn, din.exp_cmdsn, din.max_cmdsn) == (1, 2, 2 + COMMAND_WINDOW_DEPTH - 1)
    assert (conn.commands, conn.read_bytes) == (1, 4096)


def test_read_split_by_initiator_mrdsl_without_copying() -> None:
    conn, ini, _ = logged_in(keys(MaxRecvDataSegmentLength="8192"))
    ev = read(conn, ini, 20000)
    payload = memoryview(bytes(range(256)) * 80)[:20000]
    conn.send_scsi_response(ev.itt, 0, payload)
    out = conn.data_to_send()
    assert any(isinstance(b, memoryview) and b.obj is payload.obj for b in out)  # slices, not copies
    pdus = ini.receive(out)
    assert [(p.datasn, p.buffer_offset, p.dsl, p.final, p.status_present) for p in pdus] == [
        (0, 0, 8192, False, False), (1, 8192, 8192, False, False), (2, 16384, 3616, True, True)]
    assert b"".join(p.data for p in pdus) == bytes(payload)
    assert [p.statsn for p in pdus] == [0, 0, 1]  # StatSN only with status


def test_read_sequences_end_at_max_burst_length() -> None:
    conn, ini, _ = logged_in(keys(MaxRecvDataSegmentLength="8192", MaxBurstLength="16384"))
    ev = read(conn, ini, 40000)
    conn.send_scsi_response(ev.itt, 0, bytes(40000))
    pdus = ini.receive(conn.data_to_send())
    assert [p.final for p in pdus] == [False, True, False, True, True]
    assert [p.buffer_offset for p in pdus] == [0, 8192, 16384, 24576, 32768]


@pytest.mark.parametrize(("edtl", "length", "flags", "residual", "sent"), [
    (4096, 1000, "U", 3096, 1000),  # underflow: less data than the initiator expected
    (1000, 4096, "O", 3096, 1000),  # overflow: truncated to EDTL
    (512, 512, "", 0, 512),
])
def test_read_residuals(edtl: int, length: int, flags: str, residual: int, sent: int) -> None:
    conn, ini, _ = logged_in()
    ev = read(conn, ini, edtl)
    conn.send_scsi_response(ev.itt, 0, b"x" * length)
    (din,) = ini.receive(conn.data_to_send())
    assert (din.overflow, din.underflow, din.residual, din.dsl) == ("O" in flags, "U" in flags, residual, sent)


def test_read_residual_from_transfer_length() -> None:
    conn, ini, _ = logged_in()
    ev = read(conn, ini, 8192)
    conn.send_scsi_response(ev.itt, 0, b"y" * 4096, transfer_length=16384)
    (din,) = ini.receive(conn.data_to_send())
    assert din.overflow and din.residual == 8192 and din.dsl == 4096


def test_check_condition_without_data_is_a_scsi_response_with_sense() -> None:
    conn, ini, _ = logged_in()
    ev = read(conn, ini, 4096)
    conn.send_scsi_response(ev.itt, 2, b"", SENSE)
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.opcode == SCSI_RESPONSE and rsp.status == 2 and rsp.response == 0
    assert rsp.sense == SENSE and rsp.data[:2] == len(SENSE).to_bytes(2, "big")
    assert rsp.underflow and rsp.residual == 4096 and rsp.exp_datasn == 0


def test_data_then_sense_is_data_in_then_response() -> None:
    conn, ini, _ = logged_in(keys(MaxRecvDataSegmentLength="8192"))
    ev = read(conn, ini, 16384)
    conn.send_scsi_response(ev.itt, 2, bytes(16384), SENSE)
    pdus = ini.receive(conn.data_to_send())
    assert [p.opcode for p in pdus] == [DATA_IN, DATA_IN, SCSI_RESPONSE]
    assert not any(p.status_present for p in pdus[:2])
    assert pdus[2].exp_datasn == 2 and pdus[2].sense == SENSE and pdus[2].statsn == 1


def test_non_data_command_and_overflow_with_edtl_zero() -> None:
    conn, ini, _ = logged_in()
    events, _ = exchange(conn, ini, ini.scsi_command(TUR))
    conn.send_scsi_response(events[0].itt, 0)
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.opcode == SCSI_RESPONSE and rsp.data == b"" and not rsp.overflow and not rsp.underflow
    ev = read(conn, ini, 0)
    conn.send_scsi_response(ev.itt, 0, b"abc")
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.opcode == SCSI_RESPONSE and rsp.overflow and rsp.residual == 3


# ---- writes ---------------------------------------------------------------------------------------


def test_write_with_all_data_immediate() -> None:
    conn, ini, _ = logged_in()
    events, pdus = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=4096, data=b"w" * 4096))
    (ev,) = events
    assert pdus == [] and ev.write and bytes(ev.data) == b"w" * 4096 and conn.written_bytes == 4096


def test_write_with_edtl_zero_has_no_data() -> None:
    conn, ini, _ = logged_in()
    events, _ = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=0))
    assert events[0].data is None


def test_write_immediate_unsolicited_then_r2t() -> None:
    conn, ini, _ = logged_in()  # FirstBurstLength 65536, MaxBurstLength 1 MiB, InitialR2T=No
    data = bytes(range(256)) * 800  # 204800 bytes
    events, pdus = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=len(data), data=data[:8192],
                                                        final=False))
    assert events == [] and pdus == []  # unsolicited data still to come: no R2T yet
    itt = ini.next_itt
    events, pdus = exchange(conn, ini, ini.data_out(itt, 8192, data[8192:32768], final=False))
    assert events == [] and pdus == []
    events, (r2t,) = exchange(conn, ini, ini.data_out(itt, 32768, data[32768:65536], datasn=1))
    assert r2t.opcode == R2T and (r2t.itt, r2t.r2tsn, r2t.buffer_offset, r2t.desired_length) == (
        itt, 0, 65536, len(data) - 65536)
    assert r2t.statsn == conn._statsn.next and r2t.ttt != 0xFFFFFFFF
    events, pdus = exchange(conn, ini, ini.data_out(itt, 65536, data[65536:], ttt=r2t.ttt))
    (ev,) = events
    assert bytes(ev.data) == data and pdus == [] and conn.written_bytes == len(data)


def test_r2t_sequence_one_at_a_time() -> None:
    conn, ini, _ = logged_in(keys(InitialR2T="Yes", ImmediateData="No", MaxBurstLength="8192"))
    data = bytes(range(200)) * 100  # 20000 bytes
    events, (r2t,) = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=len(data)))
    assert events == [] and (r2t.r2tsn, r2t.buffer_offset, r2t.desired_length) == (0, 0, 8192)
    itt = r2t.itt
    events, pdus = exchange(conn, ini, ini.data_out(itt, 0, data[:4096], ttt=r2t.ttt, final=False))
    assert events == [] and pdus == []  # MaxOutstandingR2T=1: the next R2T waits for this burst
    events, (r2t1,) = exchange(conn, ini, ini.data_out(itt, 4096, data[4096:8192], ttt=r2t.ttt, datasn=1))
    assert (r2t1.r2tsn, r2t1.buffer_offset, r2t1.desired_length) == (1, 8192, 8192)
    assert r2t1.ttt != r2t.ttt
    _, (r2t2,) = exchange(conn, ini, ini.data_out(itt, 8192, data[8192:16384], ttt=r2t1.ttt))
    assert (r2t2.r2tsn, r2t2.buffer_offset, r2t2.desired_length) == (2, 16384, 3616)
    events, pdus = exchange(conn, ini, ini.data_out(itt, 16384, data[16384:], ttt=r2t2.ttt))
    assert pdus == [] and bytes(events[0].data) == data


def test_several_outstanding_r2ts() -> None:
    conn, ini, _ = logged_in(keys(MaxOutstandingR2T="2", MaxBurstLength="4096", InitialR2T="Yes"))
    data = b"".join(bytes([i]) * 4096 for i in range(3))
    _, pdus = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=len(data), data=data[:1024]))
    assert [(p.buffer_offset, p.desired_length) for p in pdus] == [(1024, 4096), (5120, 4096)]
    # answer the second R2T first: sequences are independent
    _, (third,) = exchange(conn, ini, ini.data_out(pdus[1].itt, 5120, data[5120:9216], ttt=pdus[1].ttt))
    assert (third.buffer_offset, third.desired_length, third.r2tsn) == (9216, 3072, 2)
    exchange(conn, ini, ini.data_out(third.itt, 9216, data[9216:], ttt=third.ttt))
    events, _ = exchange(conn, ini, ini.data_out(pdus[0].itt, 1024, data[1024:5120], ttt=pdus[0].ttt))
    assert bytes(events[0].data) == data


@pytest.mark.parametrize(("transfer", "flags", "residual"), [(8192, "O", 4096), (1024, "U", 3072),
                                                             (None, "", 0)])
def test_write_residuals_from_transfer_length(transfer: int | None, flags: str, residual: int) -> None:
    conn, ini, _ = logged_in()
    events, _ = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=4096, data=bytes(4096)))
    conn.send_scsi_response(events[0].itt, 0, transfer_length=transfer)
    (rsp,) = ini.receive(conn.data_to_send())
    assert (rsp.overflow, rsp.underflow, rsp.residual) == ("O" in flags, "U" in flags, residual)


# ---- Data-Out and command errors -------------------------------------------------------------------


def start_write(edtl: int = 16384, **kw: str):  # type: ignore[no-untyped-def]
    conn, ini, _ = logged_in(keys(InitialR2T="Yes", **kw))
    _, (r2t,) = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=edtl))
    return conn, ini, r2t


def test_unknown_ttt_is_reject_0x09() -> None:
    conn, ini, r2t = start_write()
    bad = ini.data_out(r2t.itt, 0, bytes(512), ttt=r2t.ttt + 100)
    events, (rej,) = exchange(conn, ini, bad)
    assert rej.opcode == REJECT and rej.reason == 0x09 and rej.data == bad[:48] and rej.itt == 0xFFFFFFFF
    assert events == [] and not conn.wants_close


def test_unsolicited_data_for_unknown_itt_is_reject_0x09() -> None:
    conn, ini, _ = logged_in()
    _, (rej,) = exchange(conn, ini, ini.data_out(0x999, 0, bytes(16)))
    assert rej.reason == 0x09


def assert_write_failed(pdus, asc_ascq: tuple[int, int], itt: int) -> None:  # type: ignore[no-untyped-def]
    """Reject 0x04 for the PDU, then the write ends CHECK CONDITION / ABORTED COMMAND."""
    rej, rsp = pdus
    assert rej.opcode == REJECT and rej.reason == 0x04
    assert rsp.opcode == SCSI_RESPONSE and rsp.itt == itt and rsp.status == 0x02
    assert (rsp.sense[2] & 0x0F, rsp.sense[12], rsp.sense[13]) == (0x0B, *asc_ascq)


def assert_session_goes_on(conn, ini) -> None:  # type: ignore[no-untyped-def]
    events, _ = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=4096))
    assert not conn.wants_close and isinstance(events[-1], ScsiCommand)


@pytest.mark.parametrize("datasn", [1, 27, 0xFFFFFFFF])
def test_datasn_gap_fails_the_write_and_keeps_the_session(datasn: int) -> None:
    # ERL 0 cannot recover a lost Data-Out: the command fails (ABORTED COMMAND / DATA PHASE
    # ERROR), the session goes on (RFC 7143 §7.1.4; libiscsi iSCSIDataSnInvalid)
    conn, ini, r2t = start_write()
    events, pdus = exchange(conn, ini, ini.data_out(r2t.itt, 0, bytes(512), ttt=r2t.ttt, datasn=datasn,
                                                    final=False))
    assert events == [] and not conn.wants_close
    assert_write_failed(pdus, (0x4B, 0x00), r2t.itt)
    # later Data-Out of the failed task is dropped quietly
    events, pdus = exchange(conn, ini, ini.data_out(r2t.itt, 512, bytes(512), ttt=r2t.ttt, datasn=1))
    assert events == [] and pdus == []
    assert_session_goes_on(conn, ini)


def test_repeated_datasn_zero_fails_the_write() -> None:
    conn, ini, r2t = start_write()
    exchange(conn, ini, ini.data_out(r2t.itt, 0, bytes(512), ttt=r2t.ttt, final=False))
    events, pdus = exchange(conn, ini, ini.data_out(r2t.itt, 512, bytes(512), ttt=r2t.ttt, final=False))
    assert events == []
    assert_write_failed(pdus, (0x4B, 0x00), r2t.itt)
    assert_session_goes_on(conn, ini)


@pytest.mark.parametrize(("offset", "length", "final", "asc_ascq"), [
    (512, 512, False, (0x4B, 0x05)),  # offset gap: DATA OFFSET ERROR
    (0, 16385, True, (0x4B, 0x02)),  # beyond the R2T: TOO MUCH WRITE DATA
    (0, 512, True, (0x4B, 0x00)),  # F=1 before the burst is complete: DATA PHASE ERROR
])
def test_data_out_outside_the_r2t_fails_the_write(offset: int, length: int, final: bool,
                                                  asc_ascq: tuple[int, int]) -> None:
    conn, ini, r2t = start_write()
    events, pdus = exchange(conn, ini, ini.data_out(r2t.itt, offset, bytes(length), ttt=r2t.ttt,
                                                    final=final))
    assert events == [] and not conn.wants_close
    assert_write_failed(pdus, asc_ascq, r2t.itt)
    assert_session_goes_on(conn, ini)


def test_unsolicited_data_beyond_first_burst_fails_the_write() -> None:
    conn, ini, _ = logged_in(keys(FirstBurstLength="8192"))
    exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=32768, final=False))
    events, pdus = exchange(conn, ini, ini.data_out(ini.next_itt, 0, bytes(8193)))
    assert events == [] and not conn.wants_close
    assert_write_failed(pdus, (0x4B, 0x02), ini.next_itt)
    assert_session_goes_on(conn, ini)


@pytest.mark.parametrize(("kw", "login", "reason"), [
    ({"write": True, "edtl": 100_000, "data": bytes(65537)}, {}, 0x04),  # immediate > FirstBurstLength
    ({"write": True, "edtl": 100, "data": bytes(101)}, {}, 0x04),  # immediate > EDTL
    ({"write": True, "edtl": 4096, "data": bytes(512)}, {"ImmediateData": "No"}, 0x04),
    ({"write": True, "edtl": 4096, "final": False}, {"InitialR2T": "Yes"}, 0x04),  # unsolicited refused
    ({"edtl": 512}, {}, 0x09),  # EDTL without R or W
    ({"read": True, "edtl": 512, "data": bytes(4)}, {}, 0x04),  # data on a read
    ({"read": True, "edtl": 512, "itt": 0xFFFFFFFF}, {}, 0x09),
])
def test_malformed_commands_are_rejected_and_do_not_block_the_window(kw: dict, login: dict, reason: int) -> None:
    conn, ini, _ = logged_in(keys(**login))
    events, (rej,) = exchange(conn, ini, ini.scsi_command(READ10, **kw))
    assert rej.opcode == REJECT and rej.reason == reason and events == []
    ev = read(conn, ini, 512)  # the next CmdSN is delivered: the rejected one was consumed
    assert ev.cmdsn == 2


def test_duplicate_itt_is_task_in_progress() -> None:
    conn, ini, _ = logged_in()
    ev = read(conn, ini, 512)
    _, (rej,) = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512, itt=ev.itt))
    assert rej.reason == 0x07


def test_extended_cdb_from_ahs() -> None:
    conn, ini, _ = logged_in()
    cdb32 = bytes([0x7F]) + bytes(range(1, 32))
    events, _ = exchange(conn, ini, ini.scsi_command(cdb32, read=True, edtl=512))
    assert events[0].cdb == cdb32


def test_malformed_ahs_is_rejected() -> None:
    conn, ini, _ = logged_in()
    wire = bytearray(ini.scsi_command(bytes(32), read=True, edtl=512))
    wire[48:50] = (200).to_bytes(2, "big")  # AHSLength beyond TotalAHSLength
    _, (rej,) = exchange(conn, ini, bytes(wire))
    assert rej.reason == 0x04


# ---- CmdSN window and ordering ---------------------------------------------------------------------


def test_out_of_window_and_duplicate_commands_are_silently_ignored() -> None:
    conn, ini, _ = logged_in()
    max_cmdsn = conn.max_cmdsn
    for cmdsn in (0, max_cmdsn + 1, 0x80000000):
        events, pdus = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512, cmdsn=cmdsn))
        assert events == [] and pdus == [] and not conn.wants_close
    ev = read(conn, ini, 512)
    events, pdus = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512, cmdsn=ev.cmdsn))
    assert events == [] and pdus == []  # duplicate


def test_commands_are_delivered_in_cmdsn_order() -> None:
    conn, ini, _ = logged_in()
    base = ini.cmdsn
    wires = [ini.scsi_command(READ10, read=True, edtl=512, cmdsn=base + i) for i in range(3)]
    ini.cmdsn = base + 3
    assert exchange(conn, ini, wires[2])[0] == []
    assert exchange(conn, ini, wires[1])[0] == []
    events, _ = exchange(conn, ini, wires[0])
    assert [e.cmdsn for e in events] == [base, base + 1, base + 2]


def test_immediate_command_passes_a_cmdsn_gap() -> None:
    conn, ini, _ = logged_in()
    gap = ini.scsi_command(READ10, read=True, edtl=512)  # CmdSN 1, held back
    exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512))  # CmdSN 2 waits for 1
    events, _ = exchange(conn, ini, ini.scsi_command(TUR, immediate=True))
    assert len(events) == 1 and events[0].immediate
    events, _ = exchange(conn, ini, gap)
    assert [e.cmdsn for e in events] == [1, 2]


def test_a_read_waits_for_an_earlier_write_to_receive_its_data() -> None:
    conn, ini, _ = logged_in(keys(InitialR2T="Yes"))
    _, (r2t,) = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=1024))
    events, _ = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512))
    assert events == []
    events, _ = exchange(conn, ini, ini.data_out(r2t.itt, 0, bytes(1024), ttt=r2t.ttt))
    assert [(e.write, e.read) for e in events] == [(True, False), (False, True)]


def test_max_cmdsn_closes_and_reopens() -> None:
    conn, ini, _ = logged_in()
    start_max = conn.max_cmdsn
    pending = [read(conn, ini, 0) for _ in range(COMMAND_WINDOW_DEPTH)]
    assert conn.max_cmdsn == start_max and conn.exp_cmdsn == start_max + 1  # window full
    events, pdus = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=0))
    assert events == [] and pdus == []  # dropped: beyond MaxCmdSN
    ini.cmdsn -= 1
    conn.send_scsi_response(pending[0].itt, 0)
    (rsp,) = ini.receive(conn.data_to_send())
    assert rsp.max_cmdsn == start_max + 1
    read(conn, ini, 0)


def test_aborting_a_pending_write() -> None:
    conn, ini, r2t = start_write()
    assert conn.abort_task(r2t.itt) and not conn.abort_task(r2t.itt)
    events, pdus = exchange(conn, ini, ini.data_out(r2t.itt, 0, bytes(512), ttt=r2t.ttt, final=False))
    assert events == [] and pdus == []  # late data of an aborted task is dropped silently
    conn.send_scsi_response(r2t.itt, 0)  # no response for a forgotten task
    assert conn.data_to_send() == []
    read(conn, ini, 512)  # its window slot was released


def test_aborting_the_task_set_of_one_lun() -> None:
    conn, ini, _ = logged_in(keys(InitialR2T="Yes"))
    on_lun1 = read(conn, ini, 512, lun=1)
    _, (r2t,) = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=1024, lun=1))
    events, _ = exchange(conn, ini, ini.scsi_command(READ10, read=True, edtl=512))
    assert events == []  # LUN 0 read held behind the LUN 1 write (CmdSN order)
    assert sorted(conn.abort_tasks(lun=1)) == sorted([on_lun1.itt, r2t.itt])
    (released,) = drain(conn)  # the aborted write no longer holds it back
    assert isinstance(released, ScsiCommand) and released.lun == 0
    assert conn.abort_tasks(lun=1) == []
    assert exchange(conn, ini, ini.data_out(r2t.itt, 0, bytes(1024), ttt=r2t.ttt)) == ([], [])
    conn.send_scsi_response(on_lun1.itt, 0, b"x")
    assert conn.data_to_send() == []  # aborted tasks get no response
    assert conn.abort_tasks() == [released.itt]


def test_digests_on_the_data_path() -> None:
    conn, ini, _ = logged_in(keys(HeaderDigest="CRC32C", DataDigest="CRC32C", InitialR2T="Yes"))
    ini.header_digest = ini.data_digest = True
    ev = read(conn, ini, 1001)
    conn.send_scsi_response(ev.itt, 0, b"d" * 1001)
    (din,) = ini.receive(conn.data_to_send())
    assert din.data == b"d" * 1001
    _, (r2t,) = exchange(conn, ini, ini.scsi_command(WRITE10, write=True, edtl=999))
    events, _ = exchange(conn, ini, ini.data_out(r2t.itt, 0, b"e" * 999, ttt=r2t.ttt))
    assert bytes(events[0].data) == b"e" * 999


def test_data_digest_error_is_reject_0x02() -> None:
    conn, ini, _ = logged_in(keys(DataDigest="CRC32C"))
    ini.data_digest = True
    wire = bytearray(ini.scsi_command(WRITE10, write=True, edtl=512, data=bytes(512)))
    wire[60] ^= 1
    events, (rej,) = exchange(conn, ini, bytes(wire))
    assert rej.reason == 0x02 and events == [] and not conn.wants_close
    assert read(conn, ini, 512).cmdsn == 2  # the damaged command's CmdSN was consumed


def test_header_digest_error_closes() -> None:
    conn, ini, _ = logged_in(keys(HeaderDigest="CRC32C"))
    ini.header_digest = True
    wire = bytearray(ini.scsi_command(READ10, read=True, edtl=512))
    wire[20] ^= 1
    events, pdus = exchange(conn, ini, bytes(wire) + ini.nop_out())
    assert pdus == [] and len(events) == 1 and events[0].error and events[0].reason == "header_digest"
