"""INQUIRY: standard data (SPC-4 §6.6.2) and the VPD pages 00h, 80h, 83h, B0h, B1h, B2h."""

from __future__ import annotations

import struct

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.storage import MemoryBackend

from .util import NAA, NEXUS, SERIAL, TARGET_PORT, SparseBackend, field_pointer, good, identity, make_lu, run, sense_of


def inquiry(evpd: int = 0, page: int = 0, alloc: int = 255) -> bytes:
    return struct.pack(">BBBHB", 0x12, evpd, page, alloc, 0)


def test_standard_inquiry_golden_header(lu: LogicalUnit) -> None:
    data = good(lu, inquiry())
    assert len(data) == 96
    assert data[:8] == bytes([0x00, 0x00, 0x06, 0x12, 91, 0x08, 0x00, 0x02])  # 3PC: EXTENDED COPY
    assert data[8:16] == b"PYSCSI  "
    assert data[16:32] == b"iSCSI Disk      "
    assert data[32:36] == b"0100"
    assert data[36:56] == SERIAL.encode().ljust(20)
    descriptors = struct.unpack(">8H", data[58:74])
    assert descriptors[:4] == (0x00A0, 0x0960, 0x0460, 0x04C0)  # SAM-5, iSCSI, SPC-4, SBC-3
    assert data[74:] == bytes(22)


def test_standard_inquiry_sanitises_identity_text() -> None:
    lu = make_lu(MemoryBackend(8), identity(vendor="Vendor\x01LongName", product="é"))
    data = good(lu, inquiry())
    assert data[8:16] == b"Vendor L"
    assert data[16:32] == b" ".ljust(16)


@pytest.mark.parametrize("alloc", [0, 5, 36, 95, 96, 255, 511, 512])
def test_allocation_length_truncates(lu: LogicalUnit, alloc: int) -> None:
    data = good(lu, inquiry(alloc=alloc))
    assert data == good(lu, inquiry(alloc=96))[:alloc]


def test_evpd_zero_with_page_code_is_invalid(lu: LogicalUnit) -> None:
    res = run(lu, inquiry(evpd=0, page=1, alloc=256))
    assert sense_of(res) == (0x05, 0x24, 0x00)
    assert field_pointer(res) == (True, 2, None)


def test_unknown_vpd_page_is_invalid(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, inquiry(evpd=1, page=0x86))) == (0x05, 0x24, 0x00)


def test_cmddt_bit_is_invalid(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, inquiry(evpd=2))) == (True, 1, 1)


def test_supported_pages_lists_every_page_and_each_is_readable(lu: LogicalUnit) -> None:
    data = good(lu, inquiry(1, 0x00))
    assert data == bytes([0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
    for page in data[4:]:
        body = good(lu, inquiry(1, page))
        assert body[1] == page
        length = struct.unpack(">H", body[2:4])[0]
        assert len(body) == 4 + length


def test_unit_serial_number(lu: LogicalUnit) -> None:
    assert good(lu, inquiry(1, 0x80)) == bytes([0, 0x80, 0, len(SERIAL)]) + SERIAL.encode()


def designators(page: bytes) -> list[tuple[int, int, bytes]]:
    """(byte 0, byte 1, designator) triples of a device identification page."""
    out, i = [], 4
    while i < len(page):
        out.append((page[i], page[i + 1], page[i + 4 : i + 4 + page[i + 3]]))
        i += 4 + page[i + 3]
    return out


def test_device_identification(lu: LogicalUnit) -> None:
    page = good(lu, inquiry(1, 0x83, alloc=1024))
    assert struct.unpack(">H", page[2:4])[0] == len(page) - 4
    naa, t10, relport, port_name, dev_name = designators(page)
    assert naa == (0x01, 0x03, bytes.fromhex(NAA[2:]))
    assert len(naa[2]) == 16 and naa[2][0] >> 4 == 6
    assert t10 == (0x02, 0x01, b"PYSCSI  iSCSI Disk      " + SERIAL.encode().ljust(31))
    assert relport == (0x51, 0x94, bytes([0, 0, 0, NEXUS.relative_port_id]))
    assert port_name[:2] == (0x53, 0x98)
    assert port_name[2].rstrip(b"\0") == TARGET_PORT.encode()
    assert len(port_name[2]) % 4 == 0 and port_name[2].endswith(b"\0")
    assert dev_name[:2] == (0x53, 0xA8)
    assert dev_name[2].rstrip(b"\0") == b"iqn.2005-10.org.freenas.ctl:t1"


def test_device_identification_xen_mode_does_not_pad_the_serial() -> None:
    lu = make_lu(MemoryBackend(8), identity(xen=True))
    t10 = designators(good(lu, inquiry(1, 0x83, alloc=1024)))[1]
    assert t10[2] == b"PYSCSI  iSCSI Disk      " + SERIAL.encode()


def test_device_identification_short_and_bad_naa() -> None:
    short = make_lu(MemoryBackend(8), identity())
    short.identity.naa = "0x3822690834aae6c5"
    assert designators(good(short, inquiry(1, 0x83, alloc=1024)))[0][2] == bytes.fromhex("3822690834aae6c5")
    bad = make_lu(MemoryBackend(8), identity())
    bad.identity.naa = "not-hex"
    first = designators(good(bad, inquiry(1, 0x83, alloc=1024)))[0]
    assert first[1] == 0x01  # the T10 vendor ID comes first: no made-up NAA designator


def test_block_limits_full_provisioning(lu: LogicalUnit) -> None:
    page = good(lu, inquiry(1, 0xB0))
    assert page[:4] == bytes([0, 0xB0, 0, 0x3C]) and len(page) == 64
    assert page[5] == 1  # MAXIMUM COMPARE AND WRITE LENGTH
    max_transfer, optimal = struct.unpack(">II", page[8:16])
    assert max_transfer == (8 << 20) // 512 and optimal == (1 << 20) // 512
    assert struct.unpack(">II", page[20:28]) == (0, 0)  # no UNMAP without LBPU


def test_block_limits_thin(thin_lu: LogicalUnit) -> None:
    page = good(thin_lu, inquiry(1, 0xB0))
    max_unmap, max_desc = struct.unpack(">II", page[20:28])
    assert 0 < max_unmap <= 1 << 20 and 0 < max_desc <= 1 << 20


def test_block_device_characteristics_rotation_rate() -> None:
    for rpm in (0, 1, 7200):
        lu = make_lu(MemoryBackend(8), identity(rpm=rpm))
        page = good(lu, inquiry(1, 0xB1))
        assert page[:4] == bytes([0, 0xB1, 0, 0x3C])
        assert struct.unpack(">H", page[4:6])[0] == rpm


def test_logical_block_provisioning(lu: LogicalUnit, thin_lu: LogicalUnit) -> None:
    assert good(lu, inquiry(1, 0xB2)) == bytes([0, 0xB2, 0, 4, 0, 0, 0, 0])
    assert good(thin_lu, inquiry(1, 0xB2)) == bytes([0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0])


def test_thin_needs_a_backend_that_deallocates() -> None:
    lu = make_lu(SparseBackend(8), identity(thin=True))  # supports_unmap is False
    assert good(lu, inquiry(1, 0xB2))[5] == 0


def test_unknown_lun_vpd(lu: LogicalUnit) -> None:
    assert good(lu, inquiry(1, 0x00), lun=9) == bytes([0x7F, 0, 0, 1, 0])
    assert sense_of(run(lu, inquiry(1, 0x83), lun=9)) == (0x05, 0x24, 0x00)
