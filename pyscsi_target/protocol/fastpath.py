"""Precompiled `struct.Struct` encoders/decoders for the hot PDUs (the per-command data path).

SCSI Command, Data-Out, NOP-Out (received) and Data-In, SCSI Response, R2T, NOP-In (sent) are
parsed with one `unpack_from` on a memoryview and built with one `pack`. The layouts mirror the
construct definitions in codec.py, which stay the reference; a Hypothesis test proves both agree
byte for byte. Bytes 4..7 (TotalAHSLength + 24-bit DataSegmentLength) are read as one word.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .pdu import (
    OP_DATA_IN,
    OP_DATA_OUT,
    OP_NOP_IN,
    OP_NOP_OUT,
    OP_R2T,
    OP_SCSI_COMMAND,
    OP_SCSI_RESPONSE,
    R2T,
    DataIn,
    DataOut,
    NopIn,
    NopOut,
    Pdu,
    ScsiCommandPdu,
    ScsiResponsePdu,
)

Buffer = bytes | bytearray | memoryview

# RFC 7143 §11.3 SCSI Command: b0 b1 rsv16 ahs|dsl LUN ITT EDTL CmdSN ExpStatSN CDB[16]
_SCSI_COMMAND = struct.Struct(">BBHIQIIII16s")
# RFC 7143 §11.7 Data-Out: b0 b1 rsv16 ahs|dsl LUN ITT TTT rsv ExpStatSN rsv DataSN BufferOffset rsv
_DATA_OUT = struct.Struct(">BBHIQIIIIIIII")
# RFC 7143 §11.18 NOP-Out: b0 b1 rsv16 ahs|dsl LUN ITT TTT CmdSN ExpStatSN rsv[16]
_NOP_OUT = struct.Struct(">BBHIQIIII16x")
# RFC 7143 §11.19 NOP-In: b0 b1 rsv16 ahs|dsl LUN ITT TTT StatSN ExpCmdSN MaxCmdSN rsv[12]
_NOP_IN = struct.Struct(">BBHIQIIIII12x")
# RFC 7143 §11.7 Data-In: b0 b1 rsv8 Status ahs|dsl LUN ITT TTT StatSN ExpCmdSN MaxCmdSN DataSN
#                        BufferOffset ResidualCount
_DATA_IN = struct.Struct(">BBxBIQIIIIIIII")
# RFC 7143 §11.4 SCSI Response: b0 b1 Response Status ahs|dsl rsv64 ITT SNACKTag StatSN ExpCmdSN
#                              MaxCmdSN ExpDataSN BidiResidual Residual
_SCSI_RESPONSE = struct.Struct(">BBBBI8xIIIIIIII")
# RFC 7143 §11.8 R2T: b0 b1 rsv16 ahs|dsl LUN ITT TTT StatSN ExpCmdSN MaxCmdSN R2TSN BufferOffset DDTL
_R2T = struct.Struct(">BBHIQIIIIIIII")

_F = 0x80

#: the precompiled layouts responses.py packs directly (TotalAHSLength 0: the word after the
#: status byte is the 24-bit DataSegmentLength)
DATA_IN_STRUCT = _DATA_IN
SCSI_COMMAND_STRUCT = _SCSI_COMMAND
SCSI_RESPONSE_STRUCT = _SCSI_RESPONSE
R2T_STRUCT = _R2T


def _lengths(pdu: Pdu) -> int:
    return (pdu.total_ahs_length << 24) | pdu.data_segment_length


# ---- received (initiator -> target) -----------------------------------------------------------


def decode_scsi_command(bhs: Buffer) -> ScsiCommandPdu:
    b0, b1, _, lens, lun, itt, edtl, cmdsn, expstatsn, cdb = _SCSI_COMMAND.unpack_from(bhs)
    return ScsiCommandPdu(
        total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, immediate=bool(b0 & 0x40),
        final=bool(b1 & 0x80), read=bool(b1 & 0x40), write=bool(b1 & 0x20), attr=b1 & 0x07, lun=lun,
        itt=itt, edtl=edtl, cmdsn=cmdsn, exp_statsn=expstatsn, cdb=cdb,
    )


def encode_scsi_command(p: Any) -> bytes:
    b0 = 0x01 | (0x40 if p.immediate else 0)
    b1 = (_F if p.final else 0) | (0x40 if p.read else 0) | (0x20 if p.write else 0) | (p.attr & 7)
    return _SCSI_COMMAND.pack(b0, b1, 0, _lengths(p), p.lun, p.itt, p.edtl, p.cmdsn, p.exp_statsn,
                              bytes(p.cdb))


def decode_data_out(bhs: Buffer) -> DataOut:
    _, b1, _, lens, lun, itt, ttt, _, expstatsn, _, datasn, offset, _ = _DATA_OUT.unpack_from(bhs)
    return DataOut(
        total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, final=bool(b1 & 0x80),
        lun=lun, itt=itt, ttt=ttt, exp_statsn=expstatsn, datasn=datasn, buffer_offset=offset,
    )


def encode_data_out(p: Any) -> bytes:
    return _DATA_OUT.pack(0x05, _F if p.final else 0, 0, _lengths(p), p.lun, p.itt, p.ttt, 0,
                          p.exp_statsn, 0, p.datasn, p.buffer_offset, 0)


def decode_nop_out(bhs: Buffer) -> NopOut:
    b0, _, _, lens, lun, itt, ttt, cmdsn, expstatsn = _NOP_OUT.unpack_from(bhs)
    return NopOut(
        total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, immediate=bool(b0 & 0x40),
        lun=lun, itt=itt, ttt=ttt, cmdsn=cmdsn, exp_statsn=expstatsn,
    )


def encode_nop_out(p: Any) -> bytes:
    b0 = 0x00 | (0x40 if p.immediate else 0)
    return _NOP_OUT.pack(b0, _F, 0, _lengths(p), p.lun, p.itt, p.ttt, p.cmdsn, p.exp_statsn)


# ---- sent (target -> initiator) ---------------------------------------------------------------


def encode_nop_in(p: Any) -> bytes:
    return _NOP_IN.pack(0x20, _F, 0, _lengths(p), p.lun, p.itt, p.ttt, p.statsn, p.exp_cmdsn,
                        p.max_cmdsn)


def decode_nop_in(bhs: Buffer) -> NopIn:
    _, _, _, lens, lun, itt, ttt, statsn, expcmdsn, maxcmdsn = _NOP_IN.unpack_from(bhs)
    return NopIn(total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, lun=lun, itt=itt,
                 ttt=ttt, statsn=statsn, exp_cmdsn=expcmdsn, max_cmdsn=maxcmdsn)


def encode_data_in(p: Any) -> bytes:
    b1 = ((_F if p.final else 0) | (0x40 if p.ack else 0) | (0x04 if p.overflow else 0)
          | (0x02 if p.underflow else 0) | (0x01 if p.status_present else 0))
    return _DATA_IN.pack(0x25, b1, p.status, _lengths(p), p.lun, p.itt, p.ttt, p.statsn, p.exp_cmdsn,
                         p.max_cmdsn, p.datasn, p.buffer_offset, p.residual)


def decode_data_in(bhs: Buffer) -> DataIn:
    (_, b1, status, lens, lun, itt, ttt, statsn, expcmdsn, maxcmdsn, datasn, offset,
     residual) = _DATA_IN.unpack_from(bhs)
    return DataIn(
        total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, final=bool(b1 & 0x80),
        ack=bool(b1 & 0x40), overflow=bool(b1 & 0x04), underflow=bool(b1 & 0x02),
        status_present=bool(b1 & 0x01), status=status, lun=lun, itt=itt, ttt=ttt, statsn=statsn,
        exp_cmdsn=expcmdsn, max_cmdsn=maxcmdsn, datasn=datasn, buffer_offset=offset, residual=residual,
    )


def encode_scsi_response(p: Any) -> bytes:
    b1 = (_F | (0x10 if p.bidi_overflow else 0) | (0x08 if p.bidi_underflow else 0)
          | (0x04 if p.overflow else 0) | (0x02 if p.underflow else 0))
    return _SCSI_RESPONSE.pack(0x21, b1, p.response, p.status, _lengths(p), p.itt, p.snack_tag,
                               p.statsn, p.exp_cmdsn, p.max_cmdsn, p.exp_datasn, p.bidi_residual,
                               p.residual)


def decode_scsi_response(bhs: Buffer) -> ScsiResponsePdu:
    (_, b1, response, status, lens, itt, snack, statsn, expcmdsn, maxcmdsn, expdatasn, bidi,
     residual) = _SCSI_RESPONSE.unpack_from(bhs)
    return ScsiResponsePdu(
        total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF,
        bidi_overflow=bool(b1 & 0x10), bidi_underflow=bool(b1 & 0x08), overflow=bool(b1 & 0x04),
        underflow=bool(b1 & 0x02), response=response, status=status, itt=itt, snack_tag=snack,
        statsn=statsn, exp_cmdsn=expcmdsn, max_cmdsn=maxcmdsn, exp_datasn=expdatasn,
        bidi_residual=bidi, residual=residual,
    )


def encode_r2t(p: Any) -> bytes:
    return _R2T.pack(0x31, _F, 0, _lengths(p), p.lun, p.itt, p.ttt, p.statsn, p.exp_cmdsn,
                     p.max_cmdsn, p.r2tsn, p.buffer_offset, p.desired_length)


def decode_r2t(bhs: Buffer) -> R2T:
    (_, _, _, lens, lun, itt, ttt, statsn, expcmdsn, maxcmdsn, r2tsn, offset,
     desired) = _R2T.unpack_from(bhs)
    return R2T(total_ahs_length=lens >> 24, data_segment_length=lens & 0xFFFFFF, lun=lun, itt=itt,
               ttt=ttt, statsn=statsn, exp_cmdsn=expcmdsn, max_cmdsn=maxcmdsn, r2tsn=r2tsn,
               buffer_offset=offset, desired_length=desired)


ENCODERS: dict[type[Pdu], Callable[[Any], bytes]] = {
    ScsiCommandPdu: encode_scsi_command, DataOut: encode_data_out, NopOut: encode_nop_out,
    NopIn: encode_nop_in, DataIn: encode_data_in, ScsiResponsePdu: encode_scsi_response, R2T: encode_r2t,
}
DECODERS: dict[int, Callable[[Buffer], Pdu]] = {
    OP_SCSI_COMMAND: decode_scsi_command, OP_DATA_OUT: decode_data_out, OP_NOP_OUT: decode_nop_out,
    OP_NOP_IN: decode_nop_in, OP_DATA_IN: decode_data_in, OP_SCSI_RESPONSE: decode_scsi_response,
    OP_R2T: decode_r2t,
}
