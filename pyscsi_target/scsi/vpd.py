"""INQUIRY data: the standard page (SPC-4 §6.6.2) and the Vital Product Data pages we support
(SPC-4 §7.8: 0x00, 0x80, 0x83; SBC-4 §6.6: 0xB0, 0xB1, 0xB2).

Each page builder returns the full page; the INQUIRY handler cuts it at the allocation length.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .lu import LogicalUnit
from .types import Nexus

#: peripheral device type: direct access block device (SPC-4 §6.6.2, table 142)
TYPE_DISK = 0x00
#: peripheral qualifier 011b + device type 1Fh: no logical unit at this LUN (SPC-4 §6.6.2)
NO_LU_PERIPHERAL = 0x7F
#: VERSION 06h: the device claims SPC-4 (SPC-4 §6.6.2, table 146)
VERSION_SPC4 = 0x06
#: version descriptors (SPC-4 Annex E / T10 list): SAM-5, iSCSI, SPC-4, SBC-3 (libiscsi's
#: iscsi-test-cu looks for 04C0h to decide that the device claims SBC-3)
VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)
#: standard INQUIRY data length: through the 8 version descriptors and 22 reserved bytes
STANDARD_INQUIRY_LEN = 96
#: iSCSI's PROTOCOL IDENTIFIER (SPC-4 §7.6.1, table 362)
PROTOCOL_ISCSI = 0x5

# Block Limits defaults (SBC-4 §6.6.4). Units: bytes unless stated.
#: largest READ/WRITE we accept; larger ones get INVALID FIELD IN CDB (SBC-4 §6.6.4 "MAXIMUM
#: TRANSFER LENGTH"). 8 MiB bounds the memory one command pins in the transport.
MAX_TRANSFER_BYTES = 8 << 20
#: the size we would like initiators to use: 1 MiB, the mmap/readahead sweet spot
OPTIMAL_TRANSFER_BYTES = 1 << 20
#: MAXIMUM UNMAP LBA COUNT in blocks: libiscsi's block-limits test wants <= 1 Mi blocks
MAX_UNMAP_BLOCKS = 1 << 20
#: MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (descriptors per UNMAP command)
MAX_UNMAP_DESCRIPTORS = 256
#: MAXIMUM WRITE SAME LENGTH in blocks: 65535 like LIO, bounding one WRITE SAME to 32 MiB of
#: 512-byte or 256 MiB of 4 KiB blocks (libiscsi's WriteSame16.Unmap then skips its 65536-block
#: step, which also WRITEs 65536 blocks regardless of MAXIMUM TRANSFER LENGTH)
MAX_WRITE_SAME_BLOCKS = 0xFFFF
#: MAXIMUM COMPARE AND WRITE LENGTH in blocks (SBC-4 §5.3)
MAX_COMPARE_AND_WRITE_BLOCKS = 1
#: MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4 §6.6.4): a WRITE ATOMIC may be as large as any write
#: (it is one backend call under lu.lock); the CDB's TRANSFER LENGTH field is 16 bits
MAX_ATOMIC_TRANSFER_BYTES = MAX_TRANSFER_BYTES
ATOMIC_TRANSFER_LENGTH_FIELD_MAX = 0xFFFF
#: VPD B1h WABEREQ 01b: a read of a block erased by SANITIZE BLOCK ERASE completes with GOOD
#: (it reads zeroes: LBPRZ); reported only where BLOCK ERASE exists (thin LUs)
WABEREQ_READ_GOOD = 0x40


def max_transfer_blocks(block_size: int) -> int:
    return max(1, MAX_TRANSFER_BYTES // block_size)


def max_atomic_transfer_blocks(block_size: int) -> int:
    return min(ATOMIC_TRANSFER_LENGTH_FIELD_MAX, max(1, MAX_ATOMIC_TRANSFER_BYTES // block_size))


def _ascii(text: str, width: int) -> bytes:
    """Left-aligned ASCII padded with spaces (SPC-4 §4.4.1: 20h-7Eh only)."""
    raw = "".join(c if " " <= c <= "~" else " " for c in text).encode("ascii")
    return raw[:width].ljust(width, b" ")


def standard_inquiry(lu: LogicalUnit) -> bytes:
    """Standard INQUIRY data (SPC-4 §6.6.2)."""
    ident = lu.identity
    out = bytearray(STANDARD_INQUIRY_LEN)
    out[0] = TYPE_DISK
    out[2] = VERSION_SPC4
    out[3] = 0x10 | 0x02  # HISUP=1, RESPONSE DATA FORMAT=2
    out[4] = STANDARD_INQUIRY_LEN - 5  # ADDITIONAL LENGTH
    out[5] = 0x08  # 3PC: EXTENDED COPY (LID1) is supported (SPC-4 §6.6.2)
    out[7] = 0x02  # CMDQUE: full task management model
    out[8:16] = _ascii(ident.vendor, 8)
    out[16:32] = _ascii(ident.product, 16)
    out[32:36] = _ascii(ident.revision, 4)
    out[36:56] = _ascii(ident.serial, 20)  # vendor specific: the unit serial number
    for i, desc in enumerate(VERSION_DESCRIPTORS):
        struct.pack_into(">H", out, 58 + 2 * i, desc)
    return bytes(out)


def no_lu_inquiry() -> bytes:
    """Standard INQUIRY data for a LUN without a logical unit (SPC-4 §6.6.2: qualifier 011b)."""
    out = bytearray(36)
    out[0] = NO_LU_PERIPHERAL
    out[2] = VERSION_SPC4
    out[3] = 0x12
    out[4] = 31
    return bytes(out)


# ---- VPD pages -------------------------------------------------------------------------------


def _page(code: int, body: bytes, long_length: bool = False) -> bytes:
    if long_length:
        return struct.pack(">BBH", TYPE_DISK, code, len(body)) + body
    return struct.pack(">BBxB", TYPE_DISK, code, len(body)) + body


def supported_pages(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0x00 SUPPORTED VPD PAGES (SPC-4 §7.8.15), in ascending order."""
    return _page(0x00, bytes(sorted(VPD_PAGES)))


def unit_serial(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0x80 UNIT SERIAL NUMBER (SPC-4 §7.8.16)."""
    return _page(0x80, _ascii(lu.identity.serial, len(lu.identity.serial)))


def _designator(code_set: int, assoc: int, dtype: int, value: bytes, *, iscsi: bool = False) -> bytes:
    """One designation descriptor (SPC-4 §7.8.6.1); PIV=1 with the iSCSI protocol identifier."""
    proto = (PROTOCOL_ISCSI << 4) if iscsi else 0
    piv = 0x80 if iscsi else 0
    return struct.pack(">BBxB", proto | code_set, piv | (assoc << 4) | dtype, len(value)) + value


def _name_string(name: str) -> bytes:
    """SCSI name string: UTF-8, null terminated, padded with nulls to a multiple of 4 (SPC-4 §7.8.6.11)."""
    raw = name.encode("utf-8") + b"\0"
    return raw + b"\0" * (-len(raw) % 4)


def device_identification(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0x83 DEVICE IDENTIFICATION (SPC-4 §7.8.6): NAA and T10 vendor ID of the LU, relative
    target port and the target port's / target device's SCSI name strings."""
    ident = lu.identity
    descs = bytearray()
    naa = ident.naa_bytes()
    if naa is not None:
        descs += _designator(1, 0, 0x3, naa)  # binary, LU, NAA
    # T10 vendor ID (SPC-4 §7.8.6.4): vendor + FreeNAS/ctl device-id = product + serial
    # padded to 31 characters, unpadded in Xen compat mode
    serial = ident.serial if ident.xen else ident.serial.ljust(31)
    t10 = _ascii(ident.vendor, 8) + _ascii(ident.product, 16) + _ascii(serial, len(serial))
    descs += _designator(2, 0, 0x1, t10)
    # relative target port (SPC-4 §7.8.6.7), association 1 = target port
    descs += _designator(1, 1, 0x4, struct.pack(">xxH", nexus.relative_port_id & 0xFFFF), iscsi=True)
    # SCSI name string of the target port: "<iSCSI name>,t,0x<TPGT>" (SPC-4 §7.8.6.11)
    descs += _designator(3, 1, 0x8, _name_string(nexus.target_port), iscsi=True)
    # SCSI name string of the target device (the iSCSI name alone), association 2
    target_name = nexus.target_port.split(",t,", 1)[0]
    descs += _designator(3, 2, 0x8, _name_string(target_name), iscsi=True)
    return _page(0x83, bytes(descs), long_length=True)


def block_limits(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0xB0 BLOCK LIMITS (SBC-4 §6.6.4), page length 3Ch."""
    bs = lu.backend.block_size
    pb = 1 << lu.identity.physical_block_exponent
    body = bytearray(0x3C)
    body[0] = 0x01  # WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is refused
    body[1] = MAX_COMPARE_AND_WRITE_BLOCKS
    struct.pack_into(">H", body, 2, pb)  # OPTIMAL TRANSFER LENGTH GRANULARITY
    struct.pack_into(">I", body, 4, max_transfer_blocks(bs))
    struct.pack_into(">I", body, 8, max(pb, OPTIMAL_TRANSFER_BYTES // bs))
    if lu.thin:
        struct.pack_into(">II", body, 16, MAX_UNMAP_BLOCKS, MAX_UNMAP_DESCRIPTORS)
        struct.pack_into(">I", body, 24, pb)  # OPTIMAL UNMAP GRANULARITY
    struct.pack_into(">Q", body, 32, MAX_WRITE_SAME_BLOCKS)
    # MAXIMUM ATOMIC TRANSFER LENGTH; ATOMIC ALIGNMENT, ATOMIC TRANSFER LENGTH GRANULARITY and
    # the atomic boundary fields stay 0: no restriction, no boundaries (SBC-4 §6.6.4)
    struct.pack_into(">I", body, 40, max_atomic_transfer_blocks(bs))
    return _page(0xB0, bytes(body))


def block_device_characteristics(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0xB1 BLOCK DEVICE CHARACTERISTICS (SBC-4 §6.6.2): MEDIUM ROTATION RATE, WABEREQ."""
    body = bytearray(0x3C)
    struct.pack_into(">H", body, 0, lu.identity.rpm & 0xFFFF)
    if lu.thin:
        body[3] = WABEREQ_READ_GOOD  # WACEREQ 00b: no CRYPTOGRAPHIC ERASE
    return _page(0xB1, bytes(body))


def logical_block_provisioning(lu: LogicalUnit, nexus: Nexus) -> bytes:
    """0xB2 LOGICAL BLOCK PROVISIONING (SBC-4 §6.6.6): UNMAP / WRITE SAME unmap support,
    LBPRZ (unmapped blocks read as zeroes) and PROVISIONING TYPE, all only when thin."""
    body = bytearray(4)
    if lu.thin:
        body[1] = 0x80 | 0x40 | 0x20 | 0x04  # LBPU, LBPWS, LBPWS10, LBPRZ=001b
        body[2] = 0x02  # PROVISIONING TYPE: thin provisioned
    return _page(0xB2, bytes(body))


VpdBuilder = Callable[[LogicalUnit, Nexus], bytes]

VPD_PAGES: dict[int, VpdBuilder] = {
    0x00: supported_pages,
    0x80: unit_serial,
    0x83: device_identification,
    0xB0: block_limits,
    0xB1: block_device_characteristics,
    0xB2: logical_block_provisioning,
}
