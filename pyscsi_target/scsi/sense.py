"""Sense data: the one table of reasons → (sense key, ASC, ASCQ), and the sense-data encoders.

Handlers never build sense bytes: they raise `CheckCondition(SenseReason.X, ...)` and `execute()`
turns it into CHECK CONDITION plus fixed-format (SPC-4 §4.5.3) or descriptor-format (SPC-4 §4.5.2)
sense data, the format chosen by the Control mode page's D_SENSE bit (SPC-4 §7.5.8).
"""

from __future__ import annotations

import enum
import struct

# sense keys (SPC-4 §4.5.6, table 28)
NO_SENSE = 0x0
RECOVERED_ERROR = 0x1
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
COPY_ABORTED = 0xA
ABORTED_COMMAND = 0xB
MISCOMPARE = 0xE

#: response codes: current errors, fixed / descriptor format (SPC-4 §4.5.1)
FIXED_CURRENT = 0x70
DESCRIPTOR_CURRENT = 0x72
#: fixed-format sense is 18 bytes: 8 header + ADDITIONAL SENSE LENGTH 10 (SPC-4 §4.5.3)
FIXED_SENSE_LEN = 18


class SenseReason(enum.Enum):
    """Why a command ended in CHECK CONDITION (or what REQUEST SENSE reports).

    The value is (sense key, ASC, ASCQ) from SPC-4 Annex D (table D.1).
    """

    NO_SENSE = (NO_SENSE, 0x00, 0x00)
    # ILLEGAL REQUEST
    PARAMETER_LIST_LENGTH_ERROR = (ILLEGAL_REQUEST, 0x1A, 0x00)
    INVALID_COMMAND_OPERATION_CODE = (ILLEGAL_REQUEST, 0x20, 0x00)
    LBA_OUT_OF_RANGE = (ILLEGAL_REQUEST, 0x21, 0x00)
    INVALID_FIELD_IN_CDB = (ILLEGAL_REQUEST, 0x24, 0x00)
    LOGICAL_UNIT_NOT_SUPPORTED = (ILLEGAL_REQUEST, 0x25, 0x00)
    INVALID_FIELD_IN_PARAMETER_LIST = (ILLEGAL_REQUEST, 0x26, 0x00)
    INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT = (ILLEGAL_REQUEST, 0x0E, 0x03)
    OPERATION_IN_PROGRESS = (ILLEGAL_REQUEST, 0x00, 0x16)
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = (ILLEGAL_REQUEST, 0x26, 0x04)
    INSUFFICIENT_REGISTRATION_RESOURCES = (ILLEGAL_REQUEST, 0x55, 0x04)
    TOO_MANY_TARGET_DESCRIPTORS = (ILLEGAL_REQUEST, 0x26, 0x06)
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = (ILLEGAL_REQUEST, 0x26, 0x07)
    TOO_MANY_SEGMENT_DESCRIPTORS = (ILLEGAL_REQUEST, 0x26, 0x08)
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = (ILLEGAL_REQUEST, 0x26, 0x09)
    SAVING_PARAMETERS_NOT_SUPPORTED = (ILLEGAL_REQUEST, 0x39, 0x00)
    MEDIUM_REMOVAL_PREVENTED = (ILLEGAL_REQUEST, 0x53, 0x02)
    # DATA PROTECT
    WRITE_PROTECTED = (DATA_PROTECT, 0x27, 0x00)
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = (DATA_PROTECT, 0x27, 0x07)
    # NOT READY
    SANITIZE_IN_PROGRESS = (NOT_READY, 0x04, 0x1B)
    #: the LU's storage cannot be served until the operator acts (SPC-4 Annex D, 04h/03h LOGICAL
    #: UNIT NOT READY, MANUAL INTERVENTION REQUIRED): its path was refused, or its persistent
    #: reservations cannot be read (issue #10 items 2 and 11)
    NOT_READY_MANUAL_INTERVENTION = (NOT_READY, 0x04, 0x03)
    # MEDIUM ERROR / HARDWARE ERROR
    WRITE_ERROR = (MEDIUM_ERROR, 0x0C, 0x00)
    UNRECOVERED_READ_ERROR = (MEDIUM_ERROR, 0x11, 0x00)
    SANITIZE_COMMAND_FAILED = (MEDIUM_ERROR, 0x31, 0x03)
    INTERNAL_TARGET_FAILURE = (HARDWARE_ERROR, 0x44, 0x00)
    # COPY ABORTED (SPC-4 §6.4.3 EXTENDED COPY): a segment failed / a copy target is unusable
    COPY_SEGMENT_FAILED = (COPY_ABORTED, 0x00, 0x00)
    UNREACHABLE_COPY_TARGET = (COPY_ABORTED, 0x08, 0x04)
    COPY_TARGET_DEVICE_NOT_REACHABLE = (COPY_ABORTED, 0x0D, 0x02)
    INCORRECT_COPY_TARGET_DEVICE_TYPE = (COPY_ABORTED, 0x0D, 0x03)
    # MISCOMPARE
    MISCOMPARE_DURING_VERIFY = (MISCOMPARE, 0x1D, 0x00)
    # UNIT ATTENTION (SAM-5 §5.14)
    POWER_ON_RESET = (UNIT_ATTENTION, 0x29, 0x00)
    BUS_DEVICE_RESET = (UNIT_ATTENTION, 0x29, 0x03)
    I_T_NEXUS_LOSS = (UNIT_ATTENTION, 0x29, 0x07)
    MODE_PARAMETERS_CHANGED = (UNIT_ATTENTION, 0x2A, 0x01)
    RESERVATIONS_PREEMPTED = (UNIT_ATTENTION, 0x2A, 0x03)
    RESERVATIONS_RELEASED = (UNIT_ATTENTION, 0x2A, 0x04)
    REGISTRATIONS_PREEMPTED = (UNIT_ATTENTION, 0x2A, 0x05)
    CAPACITY_DATA_CHANGED = (UNIT_ATTENTION, 0x2A, 0x09)
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = (UNIT_ATTENTION, 0x2F, 0x00)
    THIN_PROVISIONING_SOFT_THRESHOLD_REACHED = (UNIT_ATTENTION, 0x38, 0x07)
    REPORTED_LUNS_DATA_CHANGED = (UNIT_ATTENTION, 0x3F, 0x0E)

    @property
    def key(self) -> int:
        return self.value[0]

    @property
    def asc(self) -> int:
        return self.value[1]

    @property
    def ascq(self) -> int:
        return self.value[2]


class CheckCondition(Exception):
    """Raised by handlers: end the command with CHECK CONDITION and this sense.

    `field` points at the offending field, (byte, bit) with bit None for a whole byte: it becomes
    the sense-key-specific FIELD POINTER (SPC-4 §4.5.2.4.2); `in_cdb` says whether it points into
    the CDB (C/D=1) or the parameter list. `information` fills the INFORMATION field (e.g. the
    LBA of an error, or the offset of a miscompare, SBC-4 §5.28).
    """

    def __init__(
        self,
        reason: SenseReason,
        *,
        field: tuple[int, int | None] | None = None,
        in_cdb: bool = True,
        information: int | None = None,
    ) -> None:
        super().__init__(reason.name)
        self.reason = reason
        self.field = field
        self.in_cdb = in_cdb
        self.information = information

    def sense(self, descriptor: bool = False) -> bytes:
        return build_sense(
            self.reason,
            descriptor=descriptor,
            information=self.information,
            sks=_field_pointer(self.field, self.in_cdb),
        )


def invalid_cdb(byte: int, bit: int | None = None) -> CheckCondition:
    """INVALID FIELD IN CDB pointing at `byte` (and `bit`) of the CDB."""
    return CheckCondition(SenseReason.INVALID_FIELD_IN_CDB, field=(byte, bit))


def invalid_param(byte: int, bit: int | None = None) -> CheckCondition:
    """INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`) of the parameter data."""
    return CheckCondition(SenseReason.INVALID_FIELD_IN_PARAMETER_LIST, field=(byte, bit), in_cdb=False)


def _field_pointer(field: tuple[int, int | None] | None, in_cdb: bool) -> bytes | None:
    """The 3-byte sense-key-specific field pointer (SPC-4 §4.5.2.4.2): SKSV, C/D, BPV, bit, byte."""
    if field is None:
        return None
    byte, bit = field
    flags = 0x80 | (0x40 if in_cdb else 0)
    if bit is not None:
        flags |= 0x08 | (bit & 0x07)
    return struct.pack(">BH", flags, byte & 0xFFFF)


def build_sense(
    reason: SenseReason,
    *,
    descriptor: bool = False,
    information: int | None = None,
    sks: bytes | None = None,
) -> bytes:
    """Encode current-error sense data in fixed (SPC-4 §4.5.3) or descriptor (§4.5.2) format."""
    if descriptor:
        return _descriptor_sense(reason, information, sks)
    return _fixed_sense(reason, information, sks)


def _fixed_sense(reason: SenseReason, information: int | None, sks: bytes | None) -> bytes:
    out = bytearray(FIXED_SENSE_LEN)
    out[0] = FIXED_CURRENT
    out[2] = reason.key
    if information is not None:
        out[0] |= 0x80  # VALID: INFORMATION is defined (SPC-4 §4.5.3)
        struct.pack_into(">I", out, 3, information & 0xFFFFFFFF)
    out[7] = FIXED_SENSE_LEN - 8
    out[12] = reason.asc
    out[13] = reason.ascq
    if sks is not None:
        out[15:18] = sks
    return bytes(out)


def _descriptor_sense(reason: SenseReason, information: int | None, sks: bytes | None) -> bytes:
    descriptors = bytearray()
    if information is not None:
        # Information descriptor, type 00h, additional length 0Ah, VALID=1 (SPC-4 §4.5.2.2)
        descriptors += struct.pack(">BBBBQ", 0x00, 0x0A, 0x80, 0, information)
    if sks is not None:
        # Sense key specific descriptor, type 02h, additional length 06h (SPC-4 §4.5.2.4)
        descriptors += struct.pack(">BBBB3sB", 0x02, 0x06, 0, 0, sks, 0)
    key, asc, ascq = reason.value
    header = struct.pack(">BBBBxxxB", DESCRIPTOR_CURRENT, key, asc, ascq, len(descriptors))
    return header + bytes(descriptors)
