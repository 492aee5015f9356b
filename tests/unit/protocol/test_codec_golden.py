"""Golden bytes: every PDU type against a BHS written by hand from the RFC 7143 §11 layouts."""

from __future__ import annotations

import pytest

from pyscsi_target.protocol import pdu as P
from pyscsi_target.protocol.codec import CodecError, construct_decode, construct_encode, decode_bhs, encode_bhs


def hx(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(" ", "").replace("\n", ""))
    assert len(raw) == 48, len(raw)
    return raw


Z12, Z16 = "00" * 12, "00" * 16

GOLDEN: list[tuple[P.Pdu, bytes]] = [
    # §11.18 NOP-Out: I=1, F fixed 1, ITT, TTT, CmdSN, ExpStatSN
    (P.NopOut(immediate=True, data_segment_length=16, itt=0x11223344, ttt=0xFFFFFFFF, cmdsn=10,
              exp_statsn=11),
     hx("40 80 0000 00 000010 0000000000000000 11223344 ffffffff 0000000a 0000000b" + Z16)),
    # §11.3 SCSI Command: F R ATTR=simple, LUN 1, EDTL 4096, READ(10) CDB
    (P.ScsiCommandPdu(final=True, read=True, attr=1, data_segment_length=4, lun=P.int_to_lun(1), itt=0x10,
                      edtl=0x1000, cmdsn=5, exp_statsn=7, cdb=bytes.fromhex("28000000000000000800") + bytes(6)),
     hx("01 c1 0000 00 000004 0001000000000000 00000010 00001000 00000005 00000007"
        "28000000000000000800000000000000")),
    # §11.3 SCSI Command: I=1, W, ATTR=ordered
    (P.ScsiCommandPdu(immediate=True, final=False, write=True, attr=2, itt=0xABCD, edtl=512, cmdsn=1,
                      exp_statsn=2, cdb=b"\x2a" + bytes(15)),
     hx("41 22 0000 00 000000 0000000000000000 0000abcd 00000200 00000001 00000002"
        "2a000000000000000000000000000000")),
    # §11.5 TMF Request: ABORT TASK
    (P.TaskMgmtRequest(immediate=True, function=1, itt=0x20, referenced_itt=0x10, cmdsn=6, exp_statsn=8,
                       ref_cmdsn=5, exp_datasn=0),
     hx("42 81 0000 00 000000 0000000000000000 00000020 00000010 00000006 00000008 00000005 00000000"
        "0000000000000000")),
    # §11.12 Login Request: T=1 CSG=1 NSG=3, ISID 80 12 34 56 00 01, CID 1
    (P.LoginRequest(transit=True, csg=1, nsg=3, data_segment_length=0x1C, isid=0x801234560001, tsih=0, itt=1,
                    cid=1, cmdsn=1, exp_statsn=0),
     hx("43 87 00 00 00 00001c 801234560001 0000 00000001 0001 0000 00000001 00000000" + Z16)),
    # §11.12 Login Request: C=1 CSG=0, Version-max 2 / Version-min 1, TSIH 5
    (P.LoginRequest(cont=True, csg=0, nsg=0, version_max=2, version_min=1, isid=1, tsih=5, itt=9, cid=0,
                    cmdsn=3, exp_statsn=4),
     hx("43 40 02 01 00 000000 000000000001 0005 00000009 0000 0000 00000003 00000004" + Z16)),
    # §11.10 Text Request: I=1 F=1
    (P.TextRequest(immediate=True, final=True, data_segment_length=16, itt=0x30, ttt=0xFFFFFFFF, cmdsn=2,
                   exp_statsn=3),
     hx("44 80 0000 00 000010 0000000000000000 00000030 ffffffff 00000002 00000003" + Z16)),
    # §11.7 Data-Out: F=1 LUN 1, TTT 0x77, DataSN 2, offset 0x4000
    (P.DataOut(final=True, data_segment_length=0x2000, lun=P.int_to_lun(1), itt=0x10, ttt=0x77, exp_statsn=9,
               datasn=2, buffer_offset=0x4000),
     hx("05 80 0000 00 002000 0001000000000000 00000010 00000077 00000000 00000009 00000000 00000002"
        "00004000 00000000")),
    # §11.14 Logout Request: close the connection (1), CID 2
    (P.LogoutRequest(immediate=True, reason=1, itt=0x40, cid=2, cmdsn=3, exp_statsn=4),
     hx("46 81 0000 00 000000 0000000000000000 00000040 0002 0000 00000003 00000004" + Z16)),
    # §11.16 SNACK: status SNACK (type 1), BegRun 3, RunLength 2
    (P.SnackRequest(type=1, itt=0xFFFFFFFF, ttt=0, exp_statsn=5, begrun=3, runlength=2),
     hx("10 81 0000 00 000000 0000000000000000 ffffffff 00000000 00000000 00000005 0000000000000000"
        "00000003 00000002")),
    # §11.19 NOP-In: a target ping (ITT 0xffffffff, TTT 0x99)
    (P.NopIn(itt=0xFFFFFFFF, ttt=0x99, statsn=7, exp_cmdsn=3, max_cmdsn=0x82),
     hx("20 80 0000 00 000000 0000000000000000 ffffffff 00000099 00000007 00000003 00000082" + Z12)),
    # §11.4 SCSI Response: U, CHECK CONDITION, 20 bytes of sense data, residual 0x200
    (P.ScsiResponsePdu(underflow=True, response=0, status=2, data_segment_length=0x14, itt=0x10, statsn=8,
                       exp_cmdsn=6, max_cmdsn=0x85, residual=0x200),
     hx("21 82 00 02 00 000014 0000000000000000 00000010 00000000 00000008 00000006 00000085 00000000"
        "00000000 00000200")),
    # §11.4 SCSI Response: bidirectional overflow/underflow bits, overflow
    (P.ScsiResponsePdu(bidi_overflow=True, bidi_underflow=True, overflow=True, response=1, status=0, itt=1,
                       snack_tag=2, statsn=3, exp_cmdsn=4, max_cmdsn=5, exp_datasn=6, bidi_residual=7,
                       residual=8),
     hx("21 9c 01 00 00 000000 0000000000000000 00000001 00000002 00000003 00000004 00000005 00000006"
        "00000007 00000008")),
    # §11.6 TMF Response: task does not exist (1)
    (P.TaskMgmtResponse(response=1, itt=0x20, statsn=9, exp_cmdsn=7, max_cmdsn=0x86),
     hx("22 80 01 00 00 000000 0000000000000000 00000020 00000000 00000009 00000007 00000086" + Z12)),
    # §11.13 Login Response: final (T=1 CSG=1 NSG=3), TSIH 7
    (P.LoginResponse(transit=True, csg=1, nsg=3, data_segment_length=0x40, isid=0x801234560001, tsih=7, itt=1,
                     statsn=0, exp_cmdsn=1, max_cmdsn=0x80),
     hx("23 87 00 00 00 000040 801234560001 0007 00000001 00000000 00000000 00000001 00000080 0000 0000"
        "0000000000000000")),
    # §11.13 Login Response: reject "not found" 0x0203
    (P.LoginResponse(isid=0x801234560001, itt=1, exp_cmdsn=1, max_cmdsn=0x80, status_class=2, status_detail=3),
     hx("23 00 00 00 00 000000 801234560001 0000 00000001 00000000 00000000 00000001 00000080 0203 0000"
        "0000000000000000")),
    # §11.11 Text Response: F=1
    (P.TextResponse(final=True, data_segment_length=0x30, itt=0x30, statsn=4, exp_cmdsn=3, max_cmdsn=0x82),
     hx("24 80 0000 00 000030 0000000000000000 00000030 ffffffff 00000004 00000003 00000082" + Z12)),
    # §11.11 Text Response: C=1 with a continuation TTT
    (P.TextResponse(final=False, cont=True, itt=0x30, ttt=5, statsn=4, exp_cmdsn=3, max_cmdsn=0x82),
     hx("24 40 0000 00 000000 0000000000000000 00000030 00000005 00000004 00000003 00000082" + Z12)),
    # §11.7 Data-In: F, U, S (status in the last Data-In), residual 0x100
    (P.DataIn(final=True, underflow=True, status_present=True, status=0, data_segment_length=0x200,
              lun=P.int_to_lun(1), itt=0x10, ttt=0xFFFFFFFF, statsn=4, exp_cmdsn=3, max_cmdsn=0x82, datasn=2,
              buffer_offset=0x400, residual=0x100),
     hx("25 83 00 00 00 000200 0001000000000000 00000010 ffffffff 00000004 00000003 00000082 00000002"
        "00000400 00000100")),
    # §11.7 Data-In: A and O bits, status byte
    (P.DataIn(ack=True, overflow=True, status=0x02, itt=1, ttt=2, datasn=3),
     hx("25 44 00 02 00 000000 0000000000000000 00000001 00000002 00000000 00000000 00000000 00000003"
        "00000000 00000000")),
    # §11.15 Logout Response: Time2Wait 2, Time2Retain 20
    (P.LogoutResponse(response=0, itt=0x40, statsn=5, exp_cmdsn=4, max_cmdsn=0x83, time2wait=2,
                      time2retain=20),
     hx("26 80 00 00 00 000000 0000000000000000 00000040 00000000 00000005 00000004 00000083 00000000"
        "0002 0014 00000000")),
    # §11.8 R2T: R2TSN 1, offset 64 KiB, desired 256 KiB
    (P.R2T(lun=P.int_to_lun(1), itt=0x10, ttt=0x77, statsn=5, exp_cmdsn=3, max_cmdsn=0x82, r2tsn=1,
           buffer_offset=0x10000, desired_length=0x40000),
     hx("31 80 0000 00 000000 0001000000000000 00000010 00000077 00000005 00000003 00000082 00000001"
        "00010000 00040000")),
    # §11.9 Async Message: event 1 (logout requested), Parameter3 5 s
    (P.AsyncMessage(statsn=6, exp_cmdsn=3, max_cmdsn=0x82, event=1, param3=5),
     hx("32 80 0000 00 000000 0000000000000000 ffffffff 00000000 00000006 00000003 00000082 01 00 0000 0000"
        "0005 00000000")),
    # §11.17 Reject: protocol error, 48 bytes of rejected header
    (P.Reject(reason=4, data_segment_length=48, statsn=6, exp_cmdsn=3, max_cmdsn=0x82),
     hx("3f 80 04 00 00 000030 0000000000000000 ffffffff 00000000 00000006 00000003 00000082 00000000"
        "0000000000000000")),
]


@pytest.mark.parametrize(("pdu", "golden"), GOLDEN, ids=[f"{type(p).__name__}-{i}" for i, (p, _) in enumerate(GOLDEN)])
def test_golden_bytes(pdu: P.Pdu, golden: bytes) -> None:
    assert construct_encode(pdu) == golden
    assert encode_bhs(pdu) == golden
    assert construct_decode(golden) == pdu
    assert decode_bhs(golden) == pdu


def test_every_pdu_type_has_a_golden_test() -> None:
    assert {type(p) for p, _ in GOLDEN} == set(P.PDU_CLASSES.values())


def test_reserved_bits_are_ignored_on_receipt() -> None:
    # RFC 7143 §11.1: receivers ignore reserved fields; byte 0 bit 7, byte 1 bits 3-4, bytes 2-3
    golden = GOLDEN[1][1]
    noisy = bytearray(golden)
    noisy[0] |= 0x80
    noisy[1] |= 0x18
    noisy[2:4] = b"\xff\xff"
    assert decode_bhs(noisy) == decode_bhs(golden) == construct_decode(noisy)


def test_login_request_immediate_bit_is_always_sent() -> None:
    assert construct_encode(P.LoginRequest())[0] == 0x43


def test_unknown_opcode_and_short_header_are_codec_errors() -> None:
    with pytest.raises(CodecError):
        decode_bhs(bytes([0x07]) + bytes(47))
    with pytest.raises(CodecError):
        decode_bhs(bytes(47))
    with pytest.raises(CodecError):
        construct_decode(bytes([0x3E]) + bytes(47))


@pytest.mark.parametrize(("lun", "raw"), [
    (0, 0), (1, 0x0001_0000_0000_0000), (255, 0x00FF_0000_0000_0000), (256, 0x4100_0000_0000_0000),
    (16383, 0x7FFF_0000_0000_0000),
])
def test_lun_encoding_sam(lun: int, raw: int) -> None:
    assert P.int_to_lun(lun) == raw
    assert P.lun_to_int(raw) == lun


def test_unmapped_lun_encodings_never_alias_a_real_lun() -> None:
    assert P.lun_to_int(0x0001_0000_0000_0001) >= P.UNMAPPED_LUN_BASE  # second level set
    assert P.lun_to_int(0x0101_0000_0000_0000) >= P.UNMAPPED_LUN_BASE  # peripheral, bus 1
    assert P.lun_to_int(0xC000_0000_0000_0000) >= P.UNMAPPED_LUN_BASE  # extended addressing
