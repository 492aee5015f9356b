"""How a finished SCSI command goes back: Data-In PDUs and/or a SCSI Response (RFC 7143 §11.4,
§11.7), residuals, and the Extended CDB AHS of incoming commands (RFC 7143 §11.2.2).

`plan_response` splits read data into Data-In PDUs of at most the initiator's
MaxRecvDataSegmentLength, ends every MaxBurstLength-sized sequence with F=1 (RFC 7143 §13.13),
numbers them by DataSN and puts the status in the last Data-In (S=1, "phase collapse") when
there is no sense data; otherwise a SCSI Response follows, carrying the sense data behind its
2-byte length (RFC 7143 §11.4.7). Data is sliced from a memoryview, never copied. Residuals
follow RFC 7143 §11.4.5: the bytes the command wanted against ExpectedDataTransferLength.
The connection fills in StatSN/ExpCmdSN/MaxCmdSN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .pdu import DataIn, ScsiResponsePdu

Buffer = bytes | bytearray | memoryview

#: SCSI Response "Command Completed at Target" (RFC 7143 §11.4.3)
RESPONSE_COMPLETED = 0x00
#: AHSType of the Extended CDB AHS (RFC 7143 §11.2.2.3)
AHS_EXTENDED_CDB = 1
#: AHSType of the Bidirectional Read Expected Data Transfer Length AHS (RFC 7143 §11.2.2.4)
AHS_BIDI_READ_LENGTH = 2


@dataclass(slots=True)
class ResponsePlan:
    data_ins: list[tuple[DataIn, memoryview]] = field(default_factory=list)
    response: ScsiResponsePdu | None = None
    response_data: bytes = b""
    sent_bytes: int = 0


def residual(edtl: int, wanted: int) -> tuple[bool, bool, int]:
    """(overflow, underflow, residual count) of a command that wanted `wanted` bytes with an
    ExpectedDataTransferLength of `edtl` (RFC 7143 §11.4.5.1)."""
    if wanted > edtl:
        return True, False, wanted - edtl
    if wanted < edtl:
        return False, True, edtl - wanted
    return False, False, 0


def plan_response(*, itt: int, lun: int, edtl: int, is_read: bool, status: int, data: Buffer,
                  sense: bytes | None, transfer_length: int | None, max_segment: int,
                  max_burst: int) -> ResponsePlan:
    view = memoryview(data).cast("B") if len(data) else memoryview(b"")
    if is_read:
        wanted = transfer_length if transfer_length is not None else len(view)
        send = view[:edtl]
    else:
        wanted = transfer_length if transfer_length is not None else edtl
        send = memoryview(b"")
    over, under, count = residual(edtl, wanted)
    plan = ResponsePlan(sent_bytes=len(send))
    collapse = sense is None and len(send) > 0
    _split_data_in(plan, itt, lun, send, max_segment, max_burst)
    if collapse:
        last = plan.data_ins[-1][0]
        last.final = True
        last.status_present = True
        last.status = status
        last.overflow, last.underflow, last.residual = over, under, count
        return plan
    plan.response = ScsiResponsePdu(
        overflow=over, underflow=under, response=RESPONSE_COMPLETED, status=status, itt=itt,
        exp_datasn=len(plan.data_ins), residual=count,
    )
    if sense:
        plan.response_data = len(sense).to_bytes(2, "big") + sense  # RFC 7143 §11.4.7.2
    return plan


def _split_data_in(plan: ResponsePlan, itt: int, lun: int, send: memoryview, max_segment: int,
                   max_burst: int) -> None:
    total = len(send)
    offset = 0
    datasn = 0
    while offset < total:
        burst_end = min(total, offset + max_burst)
        while offset < burst_end:
            end = min(burst_end, offset + max_segment)
            pdu = DataIn(final=end == burst_end, lun=lun, itt=itt, datasn=datasn, buffer_offset=offset)
            plan.data_ins.append((pdu, send[offset:end]))
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
