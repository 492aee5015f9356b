"""The BHS layout of every RFC 7143 PDU as construct definitions: the single source of truth.

This is the only module that imports construct. Each PDU is one 384-bit `BitStruct` whose field
names are the dataclass field names of pdu.py; reserved bits are `Padding` (written as zeros,
ignored on receipt, RFC 7143 §11.1) and bits the RFC fixes to 1 are `_`-prefixed defaults.
`encode_bhs`/`decode_bhs` route the hot PDUs to fastpath.py (precompiled `struct`), whose
agreement with these definitions is proven by tests/unit/protocol/test_codec_agreement.py.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Bytewise,
    Const,
    Construct,
    ConstructError,
    Default,
    Flag,
    Padding,
)

from . import fastpath
from .limits import BHS_LENGTH, RESERVED_TAG
from .pdu import (
    PDU_CLASSES,
    R2T,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    Reject,
    ScsiCommandPdu,
    ScsiResponsePdu,
    SnackRequest,
    TaskMgmtRequest,
    TaskMgmtResponse,
    TextRequest,
    TextResponse,
)


class CodecError(ValueError):
    """The 48 bytes are not a BHS we can decode (unknown opcode, short buffer)."""


def _u(bits: int) -> Construct:
    return BitsInteger(bits)


def _initiator_byte0(opcode: int) -> list[Any]:
    # RFC 7143 §11.2.1.1: bit 0 reserved, bit 1 = I (immediate delivery), 6-bit opcode
    return [Padding(1), "immediate" / Flag, "_opcode" / Const(opcode, _u(6))]


def _target_byte0(opcode: int) -> list[Any]:
    return [Padding(2), "_opcode" / Const(opcode, _u(6))]


def _lengths() -> list[Any]:
    # RFC 7143 §11.2.1.4/5: TotalAHSLength in 4-byte words, 24-bit DataSegmentLength
    return ["total_ahs_length" / _u(8), "data_segment_length" / _u(24)]


def _one(name: str) -> Any:
    """A bit the RFC fixes to 1 (e.g. the F bit of NOP-Out): sent as 1, ignored on receipt."""
    return name / Default(Flag, True)


def _words(*names: str) -> list[Any]:
    return [n / _u(32) for n in names]


def _bhs(*parts: Any) -> Construct:
    flat: list[Any] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    return BitStruct(*flat)


NOP_OUT = _bhs(  # RFC 7143 §11.18
    _initiator_byte0(0x00), _one("_f"), Padding(7), Padding(16), _lengths(), "lun" / _u(64),
    _words("itt", "ttt", "cmdsn", "exp_statsn"), Padding(128),
)
SCSI_COMMAND = _bhs(  # RFC 7143 §11.3
    _initiator_byte0(0x01), "final" / Flag, "read" / Flag, "write" / Flag, Padding(2), "attr" / _u(3),
    Padding(16), _lengths(), "lun" / _u(64), _words("itt", "edtl", "cmdsn", "exp_statsn"),
    "cdb" / Bytewise(Bytes(16)),
)
TASK_MGMT_REQUEST = _bhs(  # RFC 7143 §11.5
    _initiator_byte0(0x02), _one("_f"), "function" / _u(7), Padding(16), _lengths(), "lun" / _u(64),
    _words("itt", "referenced_itt", "cmdsn", "exp_statsn", "ref_cmdsn", "exp_datasn"), Padding(64),
)
LOGIN_REQUEST = _bhs(  # RFC 7143 §11.12 (I is always 1)
    Padding(1), _one("_immediate"), "_opcode" / Const(0x03, _u(6)),
    "transit" / Flag, "cont" / Flag, Padding(2), "csg" / _u(2), "nsg" / _u(2),
    "version_max" / _u(8), "version_min" / _u(8), _lengths(), "isid" / _u(48), "tsih" / _u(16),
    "itt" / _u(32), "cid" / _u(16), Padding(16), _words("cmdsn", "exp_statsn"), Padding(128),
)
TEXT_REQUEST = _bhs(  # RFC 7143 §11.10
    _initiator_byte0(0x04), "final" / Flag, "cont" / Flag, Padding(6), Padding(16), _lengths(),
    "lun" / _u(64), _words("itt", "ttt", "cmdsn", "exp_statsn"), Padding(128),
)
DATA_OUT = _bhs(  # RFC 7143 §11.7
    _target_byte0(0x05), "final" / Flag, Padding(7), Padding(16), _lengths(), "lun" / _u(64),
    _words("itt", "ttt"), Padding(32), _words("exp_statsn"), Padding(32),
    _words("datasn", "buffer_offset"), Padding(32),
)
LOGOUT_REQUEST = _bhs(  # RFC 7143 §11.14
    _initiator_byte0(0x06), _one("_f"), "reason" / _u(7), Padding(16), _lengths(), Padding(64),
    "itt" / _u(32), "cid" / _u(16), Padding(16), _words("cmdsn", "exp_statsn"), Padding(128),
)
SNACK_REQUEST = _bhs(  # RFC 7143 §11.16
    _target_byte0(0x10), _one("_f"), Padding(3), "type" / _u(4), Padding(16), _lengths(),
    "lun" / _u(64), _words("itt", "ttt"), Padding(32), _words("exp_statsn"), Padding(64),
    _words("begrun", "runlength"),
)
NOP_IN = _bhs(  # RFC 7143 §11.19
    _target_byte0(0x20), _one("_f"), Padding(7), Padding(16), _lengths(), "lun" / _u(64),
    _words("itt", "ttt", "statsn", "exp_cmdsn", "max_cmdsn"), Padding(96),
)
SCSI_RESPONSE = _bhs(  # RFC 7143 §11.4
    _target_byte0(0x21), _one("_f"), Padding(2), "bidi_overflow" / Flag, "bidi_underflow" / Flag,
    "overflow" / Flag, "underflow" / Flag, Padding(1), "response" / _u(8), "status" / _u(8),
    _lengths(), Padding(64),
    _words("itt", "snack_tag", "statsn", "exp_cmdsn", "max_cmdsn", "exp_datasn", "bidi_residual",
           "residual"),
)
TASK_MGMT_RESPONSE = _bhs(  # RFC 7143 §11.6
    _target_byte0(0x22), _one("_f"), Padding(7), "response" / _u(8), Padding(8), _lengths(),
    Padding(64), _words("itt"), Padding(32), _words("statsn", "exp_cmdsn", "max_cmdsn"), Padding(96),
)
LOGIN_RESPONSE = _bhs(  # RFC 7143 §11.13
    _target_byte0(0x23), "transit" / Flag, "cont" / Flag, Padding(2), "csg" / _u(2), "nsg" / _u(2),
    "version_max" / _u(8), "version_active" / _u(8), _lengths(), "isid" / _u(48), "tsih" / _u(16),
    _words("itt"), Padding(32), _words("statsn", "exp_cmdsn", "max_cmdsn"),
    "status_class" / _u(8), "status_detail" / _u(8), Padding(16), Padding(64),
)
TEXT_RESPONSE = _bhs(  # RFC 7143 §11.11
    _target_byte0(0x24), "final" / Flag, "cont" / Flag, Padding(6), Padding(16), _lengths(),
    "lun" / _u(64), _words("itt", "ttt", "statsn", "exp_cmdsn", "max_cmdsn"), Padding(96),
)
DATA_IN = _bhs(  # RFC 7143 §11.7
    _target_byte0(0x25), "final" / Flag, "ack" / Flag, Padding(3), "overflow" / Flag,
    "underflow" / Flag, "status_present" / Flag, Padding(8), "status" / _u(8), _lengths(),
    "lun" / _u(64),
    _words("itt", "ttt", "statsn", "exp_cmdsn", "max_cmdsn", "datasn", "buffer_offset", "residual"),
)
LOGOUT_RESPONSE = _bhs(  # RFC 7143 §11.15
    _target_byte0(0x26), _one("_f"), Padding(7), "response" / _u(8), Padding(8), _lengths(),
    Padding(64), _words("itt"), Padding(32), _words("statsn", "exp_cmdsn", "max_cmdsn"), Padding(32),
    "time2wait" / _u(16), "time2retain" / _u(16), Padding(32),
)
R2T_PDU = _bhs(  # RFC 7143 §11.8
    _target_byte0(0x31), _one("_f"), Padding(7), Padding(16), _lengths(), "lun" / _u(64),
    _words("itt", "ttt", "statsn", "exp_cmdsn", "max_cmdsn", "r2tsn", "buffer_offset",
           "desired_length"),
)
ASYNC_MESSAGE = _bhs(  # RFC 7143 §11.9
    _target_byte0(0x32), _one("_f"), Padding(7), Padding(16), _lengths(), "lun" / _u(64),
    "_itt" / Default(_u(32), RESERVED_TAG), Padding(32), _words("statsn", "exp_cmdsn", "max_cmdsn"),
    "event" / _u(8), "vcode" / _u(8), "param1" / _u(16), "param2" / _u(16), "param3" / _u(16),
    Padding(32),
)
REJECT = _bhs(  # RFC 7143 §11.17
    _target_byte0(0x3F), _one("_f"), Padding(7), "reason" / _u(8), Padding(8), _lengths(),
    Padding(64), "_itt" / Default(_u(32), RESERVED_TAG), Padding(32),
    _words("statsn", "exp_cmdsn", "max_cmdsn", "datasn"), Padding(64),
)

DEFINITIONS: dict[type[Pdu], Construct] = {
    NopOut: NOP_OUT, ScsiCommandPdu: SCSI_COMMAND, TaskMgmtRequest: TASK_MGMT_REQUEST,
    LoginRequest: LOGIN_REQUEST, TextRequest: TEXT_REQUEST, DataOut: DATA_OUT,
    LogoutRequest: LOGOUT_REQUEST, SnackRequest: SNACK_REQUEST, NopIn: NOP_IN,
    ScsiResponsePdu: SCSI_RESPONSE, TaskMgmtResponse: TASK_MGMT_RESPONSE, LoginResponse: LOGIN_RESPONSE,
    TextResponse: TEXT_RESPONSE, DataIn: DATA_IN, LogoutResponse: LOGOUT_RESPONSE, R2T: R2T_PDU,
    AsyncMessage: ASYNC_MESSAGE, Reject: REJECT,
}
_FIELD_NAMES: dict[type[Pdu], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in DEFINITIONS
}


def construct_encode(pdu: Pdu) -> bytes:
    """48 BHS bytes for `pdu`, through the construct definition (slow path, any PDU)."""
    cls = type(pdu)
    values = {name: getattr(pdu, name) for name in _FIELD_NAMES[cls]}
    return bytes(DEFINITIONS[cls].build(values))


def construct_decode(bhs: bytes | bytearray | memoryview) -> Pdu:
    """The PDU object of a 48-byte BHS, through the construct definition (slow path)."""
    if len(bhs) < BHS_LENGTH:
        raise CodecError(f"BHS needs {BHS_LENGTH} bytes, got {len(bhs)}")
    cls = PDU_CLASSES.get(bhs[0] & 0x3F)
    if cls is None:
        raise CodecError(f"unknown opcode 0x{bhs[0] & 0x3F:02x}")
    try:
        parsed = DEFINITIONS[cls].parse(bytes(bhs[:BHS_LENGTH]))
    except ConstructError as exc:  # pragma: no cover - every 48-byte string parses
        raise CodecError(str(exc)) from exc
    return cls(**{name: parsed[name] for name in _FIELD_NAMES[cls]})


def encode_bhs(pdu: Pdu) -> bytes:
    """48 BHS bytes for `pdu`: the precompiled struct path for hot PDUs, construct otherwise."""
    fast = fastpath.ENCODERS.get(type(pdu))
    if fast is not None:
        return fast(pdu)
    return construct_encode(pdu)


def decode_bhs(bhs: bytes | bytearray | memoryview) -> Pdu:
    """The PDU object of a 48-byte BHS; raises CodecError for an unknown opcode."""
    if len(bhs) < BHS_LENGTH:
        raise CodecError(f"BHS needs {BHS_LENGTH} bytes, got {len(bhs)}")
    fast = fastpath.DECODERS.get(bhs[0] & 0x3F)
    if fast is not None:
        return fast(bhs)
    return construct_decode(bhs)
