"""The iSCSI PDU types (RFC 7143 §11) as plain dataclasses: one per opcode, header fields only.

Field names follow the RFC with Python spelling (ExpStatSN -> exp_statsn). Flags are bools,
tags and sequence numbers are unsigned ints, the ISID is a 48-bit int and the LUN field is the raw
64-bit value (see `lun_to_int`/`int_to_lun`). `total_ahs_length` (in 4-byte words) and
`data_segment_length` (bytes) are the BHS length fields; framing fills them in when it builds a
PDU. Reserved fields are not represented: senders write zeros, receivers ignore them
(RFC 7143 §11.1). codec.py turns these objects into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .limits import RESERVED_TAG

# ---- opcodes (RFC 7143 §11.1.1) ---------------------------------------------------------------
OP_NOP_OUT = 0x00
OP_SCSI_COMMAND = 0x01
OP_TASK_MGMT_REQUEST = 0x02
OP_LOGIN_REQUEST = 0x03
OP_TEXT_REQUEST = 0x04
OP_DATA_OUT = 0x05
OP_LOGOUT_REQUEST = 0x06
OP_SNACK_REQUEST = 0x10
OP_NOP_IN = 0x20
OP_SCSI_RESPONSE = 0x21
OP_TASK_MGMT_RESPONSE = 0x22
OP_LOGIN_RESPONSE = 0x23
OP_TEXT_RESPONSE = 0x24
OP_DATA_IN = 0x25
OP_LOGOUT_RESPONSE = 0x26
OP_R2T = 0x31
OP_ASYNC_MESSAGE = 0x32
OP_REJECT = 0x3F

INITIATOR_OPCODES = frozenset(
    {OP_NOP_OUT, OP_SCSI_COMMAND, OP_TASK_MGMT_REQUEST, OP_LOGIN_REQUEST, OP_TEXT_REQUEST,
     OP_DATA_OUT, OP_LOGOUT_REQUEST, OP_SNACK_REQUEST}
)

# ---- Reject reasons (RFC 7143 §11.17.1) ---------------------------------------------------------
REJECT_DATA_DIGEST = 0x02
REJECT_SNACK = 0x03
REJECT_PROTOCOL_ERROR = 0x04
REJECT_NOT_SUPPORTED = 0x05
REJECT_IMMEDIATE = 0x06
REJECT_TASK_IN_PROGRESS = 0x07
REJECT_INVALID_DATA_ACK = 0x08
REJECT_INVALID_FIELD = 0x09
REJECT_OUT_OF_RESOURCES = 0x0A
REJECT_WAITING_FOR_LOGOUT = 0x0C

# ---- login stages (RFC 7143 §11.12.3) ------------------------------------------------------------
STAGE_SECURITY = 0
STAGE_OPERATIONAL = 1
STAGE_FULL_FEATURE = 3


@dataclass(slots=True, kw_only=True)
class Pdu:
    """Fields every BHS has (RFC 7143 §11.2.1)."""

    OPCODE: ClassVar[int] = -1
    total_ahs_length: int = 0
    data_segment_length: int = 0


# ---- initiator -> target ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NopOut(Pdu):  # RFC 7143 §11.18
    OPCODE: ClassVar[int] = OP_NOP_OUT
    immediate: bool = False
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0


@dataclass(slots=True, kw_only=True)
class ScsiCommandPdu(Pdu):  # RFC 7143 §11.3
    OPCODE: ClassVar[int] = OP_SCSI_COMMAND
    immediate: bool = False
    final: bool = True
    read: bool = False
    write: bool = False
    attr: int = 0
    lun: int = 0
    itt: int = 0
    edtl: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0
    cdb: bytes = bytes(16)


@dataclass(slots=True, kw_only=True)
class TaskMgmtRequest(Pdu):  # RFC 7143 §11.5
    OPCODE: ClassVar[int] = OP_TASK_MGMT_REQUEST
    immediate: bool = False
    function: int = 0
    lun: int = 0
    itt: int = 0
    referenced_itt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0
    ref_cmdsn: int = 0
    exp_datasn: int = 0


@dataclass(slots=True, kw_only=True)
class LoginRequest(Pdu):  # RFC 7143 §11.12 (the I bit is always 1 on the wire)
    OPCODE: ClassVar[int] = OP_LOGIN_REQUEST
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_min: int = 0
    isid: int = 0
    tsih: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0


@dataclass(slots=True, kw_only=True)
class TextRequest(Pdu):  # RFC 7143 §11.10
    OPCODE: ClassVar[int] = OP_TEXT_REQUEST
    immediate: bool = False
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    exp_statsn: int = 0


@dataclass(slots=True, kw_only=True)
class DataOut(Pdu):  # RFC 7143 §11.7
    OPCODE: ClassVar[int] = OP_DATA_OUT
    final: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    exp_statsn: int = 0
    datasn: int = 0
    buffer_offset: int = 0


@dataclass(slots=True, kw_only=True)
class LogoutRequest(Pdu):  # RFC 7143 §11.14
    OPCODE: ClassVar[int] = OP_LOGOUT_REQUEST
    immediate: bool = False
    reason: int = 0
    itt: int = 0
    cid: int = 0
    cmdsn: int = 0
    exp_statsn: int = 0


@dataclass(slots=True, kw_only=True)
class SnackRequest(Pdu):  # RFC 7143 §11.16
    OPCODE: ClassVar[int] = OP_SNACK_REQUEST
    type: int = 0
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    exp_statsn: int = 0
    begrun: int = 0
    runlength: int = 0


# ---- target -> initiator ------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NopIn(Pdu):  # RFC 7143 §11.19
    OPCODE: ClassVar[int] = OP_NOP_IN
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0


@dataclass(slots=True, kw_only=True)
class ScsiResponsePdu(Pdu):  # RFC 7143 §11.4
    OPCODE: ClassVar[int] = OP_SCSI_RESPONSE
    bidi_overflow: bool = False
    bidi_underflow: bool = False
    overflow: bool = False
    underflow: bool = False
    response: int = 0
    status: int = 0
    itt: int = 0
    snack_tag: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    exp_datasn: int = 0
    bidi_residual: int = 0
    residual: int = 0


@dataclass(slots=True, kw_only=True)
class TaskMgmtResponse(Pdu):  # RFC 7143 §11.6
    OPCODE: ClassVar[int] = OP_TASK_MGMT_RESPONSE
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0


@dataclass(slots=True, kw_only=True)
class LoginResponse(Pdu):  # RFC 7143 §11.13
    OPCODE: ClassVar[int] = OP_LOGIN_RESPONSE
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_active: int = 0
    isid: int = 0
    tsih: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    status_class: int = 0
    status_detail: int = 0


@dataclass(slots=True, kw_only=True)
class TextResponse(Pdu):  # RFC 7143 §11.11
    OPCODE: ClassVar[int] = OP_TEXT_RESPONSE
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0


@dataclass(slots=True, kw_only=True)
class DataIn(Pdu):  # RFC 7143 §11.7
    OPCODE: ClassVar[int] = OP_DATA_IN
    final: bool = False
    ack: bool = False
    overflow: bool = False
    underflow: bool = False
    status_present: bool = False
    status: int = 0
    lun: int = 0
    itt: int = 0
    ttt: int = RESERVED_TAG
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn: int = 0
    buffer_offset: int = 0
    residual: int = 0


@dataclass(slots=True, kw_only=True)
class LogoutResponse(Pdu):  # RFC 7143 §11.15
    OPCODE: ClassVar[int] = OP_LOGOUT_RESPONSE
    response: int = 0
    itt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    time2wait: int = 0
    time2retain: int = 0


@dataclass(slots=True, kw_only=True)
class R2T(Pdu):  # RFC 7143 §11.8
    OPCODE: ClassVar[int] = OP_R2T
    lun: int = 0
    itt: int = 0
    ttt: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    r2tsn: int = 0
    buffer_offset: int = 0
    desired_length: int = 0


@dataclass(slots=True, kw_only=True)
class AsyncMessage(Pdu):  # RFC 7143 §11.9 (ITT is always 0xffffffff)
    OPCODE: ClassVar[int] = OP_ASYNC_MESSAGE
    lun: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    event: int = 0
    vcode: int = 0
    param1: int = 0
    param2: int = 0
    param3: int = 0


@dataclass(slots=True, kw_only=True)
class Reject(Pdu):  # RFC 7143 §11.17 (ITT is always 0xffffffff; data = the rejected BHS)
    OPCODE: ClassVar[int] = OP_REJECT
    reason: int = 0
    statsn: int = 0
    exp_cmdsn: int = 0
    max_cmdsn: int = 0
    datasn: int = 0


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.OPCODE: cls
    for cls in (NopOut, ScsiCommandPdu, TaskMgmtRequest, LoginRequest, TextRequest, DataOut,
                LogoutRequest, SnackRequest, NopIn, ScsiResponsePdu, TaskMgmtResponse, LoginResponse,
                TextResponse, DataIn, LogoutResponse, R2T, AsyncMessage, Reject)
}


# ---- LUN field (SAM-5 §4.7, RFC 7143 §11.3.4) -------------------------------------------------

_PERIPHERAL = 0b00
_FLAT = 0b01
#: returned for LUN encodings we do not map (extended, logical unit addressing, multi-level):
#: larger than any flat-space LUN, so the SCSI core reports LOGICAL UNIT NOT SUPPORTED
UNMAPPED_LUN_BASE = 1 << 16


def lun_to_int(raw: int) -> int:
    """The LUN number of an 8-byte single-level LUN field: peripheral (bus 0) or flat space
    addressing (SAM-5 §4.7.3/§4.7.7). Any other encoding maps above 0xffff (never a valid LUN)."""
    if raw & 0xFFFF_FFFF_FFFF == 0:
        top = raw >> 48
        method = top >> 14
        if method == _PERIPHERAL and top >> 8 == 0:
            return top & 0xFF
        if method == _FLAT:
            return top & 0x3FFF
    return UNMAPPED_LUN_BASE + (raw >> 48)


def int_to_lun(lun: int) -> int:
    """The 8-byte LUN field for LUN number `lun` (< 16384): peripheral addressing below 256 (what
    initiators send for LUN 0..255), flat space addressing above (SAM-5 §4.7.3/§4.7.7)."""
    if lun < 256:
        return lun << 48
    return ((_FLAT << 14) | (lun & 0x3FFF)) << 48
