"""SCSI commands and parsers the end-to-end tests send through `tests.integration.client.Client`.

CDB layouts are SPC-4/SBC-4's; each helper returns the decoded field the tests compare with what
the API was told.
"""

from __future__ import annotations

import struct

from .client import Client, Result

GOOD = 0x00
CHECK_CONDITION = 0x02
UNIT_ATTENTION = 0x06
#: sense (key, ASC, ASCQ) the tests expect (SPC-4 Annex D)
REPORTED_LUNS_DATA_CHANGED = (0x06, 0x3F, 0x0E)
CAPACITY_DATA_CHANGED = (0x06, 0x2A, 0x09)
WRITE_PROTECTED = (0x07, 0x27, 0x00)
#: at most this many unit attentions are queued per nexus (scsi/lu.py MAX_PENDING_UNIT_ATTENTIONS)
MAX_QUEUED_UAS = 16
VPD_ALLOCATION = 255


async def tur(c: Client, lun: int) -> Result:
    return await c.command(bytes(6), lun=lun)


async def settle(c: Client, lun: int) -> None:
    """TEST UNIT READY until GOOD; anything else on the way must be a unit attention."""
    for _ in range(MAX_QUEUED_UAS + 1):
        res = await tur(c, lun)
        if res.status == GOOD:
            return
        assert res.status == CHECK_CONDITION and res.sense_key[0] == UNIT_ATTENTION, (res.status, res.sense_key)
    raise AssertionError("unit attentions never cleared")


async def vpd(c: Client, lun: int, page: int) -> bytes:
    """INQUIRY with EVPD=1 (SPC-4 §6.6): the page's bytes."""
    res = await c.command(bytes([0x12, 1, page, 0, VPD_ALLOCATION, 0]), read_len=VPD_ALLOCATION, lun=lun)
    assert res.status == GOOD, res.sense_key
    assert res.data[1] == page
    return res.data


async def unit_serial(c: Client, lun: int) -> str:
    """VPD 0x80 PRODUCT SERIAL NUMBER (SPC-4 §7.8.15)."""
    page = await vpd(c, lun, 0x80)
    return page[4:4 + page[3]].decode("ascii").strip()


async def naa_designators(c: Client, lun: int) -> list[str]:
    """VPD 0x83 designators of type NAA (SPC-4 §7.8.6.6), as '0x' + lower-case hex."""
    page = await vpd(c, lun, 0x83)
    out, i = [], 4
    end = 4 + struct.unpack_from(">H", page, 2)[0]
    while i + 4 <= end:
        length = page[i + 3]
        if page[i + 1] & 0x0F == 3:
            out.append("0x" + page[i + 4:i + 4 + length].hex())
        i += 4 + length
    return out


async def rotation_rate(c: Client, lun: int) -> int:
    """VPD 0xB1 MEDIUM ROTATION RATE (SBC-4 §6.6.2)."""
    page = await vpd(c, lun, 0xB1)
    return int(struct.unpack_from(">H", page, 4)[0])


async def read_capacity10(c: Client, lun: int) -> tuple[int, int]:
    """READ CAPACITY(10) (SBC-4 §5.16): (last LBA, block length)."""
    res = await c.command(bytes([0x25]) + bytes(9), read_len=8, lun=lun)
    assert res.status == GOOD, res.sense_key
    last, length = struct.unpack(">II", res.data[:8])
    return last, length


async def read_capacity16(c: Client, lun: int) -> tuple[int, int, int]:
    """READ CAPACITY(16) (SBC-4 §5.17): (last LBA, block length, LOGICAL BLOCKS PER PHYSICAL
    BLOCK EXPONENT)."""
    cdb = struct.pack(">BBQIBB", 0x9E, 0x10, 0, 32, 0, 0)
    res = await c.command(cdb, read_len=32, lun=lun)
    assert res.status == GOOD, res.sense_key
    last, length = struct.unpack(">QI", res.data[:12])
    return last, length, res.data[13] & 0x0F


async def report_luns(c: Client) -> list[int]:
    """REPORT LUNS (SPC-4 §6.33), single-level peripheral addressing."""
    res = await c.command(struct.pack(">BBBBBBIBB", 0xA0, 0, 0, 0, 0, 0, 4096, 0, 0), read_len=4096)
    assert res.status == GOOD, res.sense_key
    length = struct.unpack_from(">I", res.data)[0]
    return [struct.unpack_from(">H", res.data, 8 + i)[0] & 0x3FFF for i in range(0, length, 8)]
