"""How a finished SCSI command goes back: Data-In PDUs and/or a SCSI Response (RFC 7143 §11.4,
§11.7), residuals, and the Extended CDB AHS of incoming commands (RFC 7143 §11.2.2).

`response_pdus` splits read data into Data-In PDUs of at most the initiator's
MaxRecvDataSegmentLength, ends every MaxBurstLength-sized sequence with F=1 (RFC 7143 §13.13),
numbers them by DataSN and puts the status in the last Data-In (S=1, "phase collapse") when
there is no sense data; otherwise a SCSI Response follows, carrying the sense data behind its
2-byte length (RFC 7143 §11.4.7). Residuals follow RFC 7143 §11.4.5: the bytes the command
wanted against ExpectedDataTransferLength. It returns finished 48-byte headers (precompiled
structs of fastpath.py, whose layouts the codec tests tie to codec.py) with their data segments,
sliced from a memoryview, never copied: one `pack` per PDU is the whole per-command encoding
cost (docs/performance.md).
"""

from __future__ import annotations

from .fastpath import DATA_IN_STRUCT, SCSI_RESPONSE_STRUCT
from .limits import RESERVED_TAG

Buffer = bytes | bytearray | memoryview

#: SCSI Response "Command Completed at Target" (RFC 7143 §11.4.3)
RESPONSE_COMPLETED = 0x00
#: AHSType of the Extended CDB AHS (RFC 7143 §11.2.2.3)
AHS_EXTENDED_CDB = 1
#: AHSType of the Bidirectional Read Expected Data Transfer Length AHS (RFC 7143 §11.2.2.4)
AHS_BIDI_READ_LENGTH = 2

# BHS byte 0 opcodes and byte 1 flags (RFC 7143 §11.4.1, §11.7.1)
_OP_DATA_IN, _OP_SCSI_RESPONSE = 0x25, 0x21
_F, _O, _U, _S = 0x80, 0x04, 0x02, 0x01

#: (BHS without digest, data segment) of one PDU
WirePdu = tuple[bytes, Buffer]


def residual(edtl: int, wanted: int) -> tuple[bool, bool, int]:
    """(overflow, underflow, residual count) of a command that wanted `wanted` bytes with an
    ExpectedDataTransferLength of `edtl` (RFC 7143 §11.4.5.1)."""
    if wanted > edtl:
        return True, False, wanted - edtl
    if wanted < edtl:
        return False, True, edtl - wanted
    return False, False, 0


def response_pdus(*, itt: int, lun: int, edtl: int, is_read: bool, status: int, data: Buffer,
                  sense: bytes | None, transfer_length: int | None, max_segment: int, max_burst: int,
                  statsn: int, exp_cmdsn: int, max_cmdsn: int) -> tuple[list[WirePdu], int]:
    """The PDUs answering one command and the Data-In byte count. `statsn` goes to the PDU
    carrying the status; ExpCmdSN/MaxCmdSN to all of them; non-status Data-In carry StatSN 0."""
    length = len(data)
    if is_read:
        wanted = length if transfer_length is None else transfer_length
        if length > edtl:
            data = memoryview(data).cast("B")[:edtl]
            length = edtl
    else:
        wanted = edtl if transfer_length is None else transfer_length
        length = 0
    over, under, count = residual(edtl, wanted)
    flags = (_O if over else 0) | (_U if under else 0)
    if length and sense is None and length <= max_segment and length <= max_burst:
        # the common read: one Data-In carrying the status (phase collapse, RFC 7143 §11.7.4)
        header = DATA_IN_STRUCT.pack(_OP_DATA_IN, _F | _S | flags, status, length, lun, itt, RESERVED_TAG,
                                     statsn, exp_cmdsn, max_cmdsn, 0, 0, count)
        return [(header, data)], length
    pdus: list[WirePdu] = []
    if length:
        _data_in(pdus, itt, lun, memoryview(data).cast("B"), max_segment, max_burst, exp_cmdsn, max_cmdsn)
    if length and sense is None:  # phase collapse on the last Data-In
        header = pdus[-1][0]
        final = DATA_IN_STRUCT.unpack(header)
        pdus[-1] = (DATA_IN_STRUCT.pack(_OP_DATA_IN, _F | _S | flags, status, final[3], lun, itt, RESERVED_TAG,
                                        statsn, exp_cmdsn, max_cmdsn, final[10], final[11], count),
                    pdus[-1][1])
        return pdus, length
    sense_data = len(sense).to_bytes(2, "big") + sense if sense else b""  # RFC 7143 §11.4.7.2
    pdus.append((SCSI_RESPONSE_STRUCT.pack(_OP_SCSI_RESPONSE, _F | flags, RESPONSE_COMPLETED, status,
                                           len(sense_data), itt, 0, statsn, exp_cmdsn, max_cmdsn,
                                           len(pdus), 0, count), sense_data))
    return pdus, length


def single_response(itt: int, lun: int, edtl: int, is_read: bool, status: int, length: int,
                    transfer_length: int | None, max_length: int, statsn: int, exp_cmdsn: int,
                    max_cmdsn: int) -> bytes | None:
    """The header of the one PDU answering a command that has no sense data and at most
    `max_length` (min of MaxRecvDataSegmentLength and MaxBurstLength) bytes of Data-In, none
    beyond ExpectedDataTransferLength: a Data-In with status, or a SCSI Response. None for
    anything else (`response_pdus`). Positional, for the per-command path."""
    if is_read:
        if length > edtl or length > max_length:
            return None
        wanted = length if transfer_length is None else transfer_length
    else:
        wanted = edtl if transfer_length is None else transfer_length
        length = 0
    if wanted == edtl:
        flags = count = 0
    elif wanted > edtl:
        flags, count = _O, wanted - edtl
    else:
        flags, count = _U, edtl - wanted
    if length:  # phase collapse (RFC 7143 §11.7.4)
        return DATA_IN_STRUCT.pack(_OP_DATA_IN, _F | _S | flags, status, length, lun, itt, RESERVED_TAG,
                                   statsn, exp_cmdsn, max_cmdsn, 0, 0, count)
    return SCSI_RESPONSE_STRUCT.pack(_OP_SCSI_RESPONSE, _F | flags, RESPONSE_COMPLETED, status, 0, itt, 0,
                                     statsn, exp_cmdsn, max_cmdsn, 0, 0, count)


def _data_in(pdus: list[WirePdu], itt: int, lun: int, send: memoryview, max_segment: int,
             max_burst: int, exp_cmdsn: int, max_cmdsn: int) -> None:
    """Data-In PDUs without status: F=1 at the end of every MaxBurstLength sequence."""
    total = len(send)
    offset = datasn = 0
    pack = DATA_IN_STRUCT.pack
    while offset < total:
        burst_end = min(total, offset + max_burst)
        while offset < burst_end:
            end = min(burst_end, offset + max_segment)
            pdus.append((pack(_OP_DATA_IN, _F if end == burst_end else 0, 0, end - offset, lun, itt,
                              RESERVED_TAG, 0, exp_cmdsn, max_cmdsn, datasn, offset, 0), send[offset:end]))
            datasn += 1
            offset = end


class AhsError(ValueError):
    """An Additional Header Segment that does not parse (Reject 0x04)."""


def extended_cdb(ahs: bytes) -> bytes:
    """CDB bytes 16.. from an Extended CDB AHS, b"" if there is none (RFC 7143 §11.2.2).

    Each AHS: AHSLength (2 bytes, excluding the 3 bytes of length and type, excluding padding),
    AHSType, then AHSLength bytes; the Extended CDB one starts with a reserved byte."""
    pos = 0
    extra = b""
    while pos < len(ahs):
        if pos + 3 > len(ahs):
            raise AhsError("truncated AHS header")
        length = int.from_bytes(ahs[pos:pos + 2], "big")
        ahs_type = ahs[pos + 2] & 0x3F
        end = pos + 3 + length
        if length == 0 or end > len(ahs):
            raise AhsError("AHS length beyond TotalAHSLength")
        if ahs_type == AHS_EXTENDED_CDB:
            if extra:
                raise AhsError("two Extended CDB AHSs")
            extra = ahs[pos + 4:end]
        elif ahs_type != AHS_BIDI_READ_LENGTH:
            raise AhsError(f"unknown AHSType {ahs_type}")
        pos = end + (-end % 4)
    return extra
