"""CDB and parameter-list builders for PERSISTENT RESERVE IN/OUT tests (SPC-4 §6.16, §6.17)."""

from __future__ import annotations

import struct

from pyscsi_target.scsi import LogicalUnit, Nexus, ScsiResult

from .util import NEXUS, run

READ_KEYS, READ_RESERVATION, REPORT_CAPABILITIES, READ_FULL_STATUS = range(4)
REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT_AND_ABORT, REGISTER_AND_IGNORE = range(7)
WE, EA, WE_RO, EA_RO, WE_AR, EA_AR = 1, 3, 5, 6, 7, 8
ALL_TYPES = (WE, EA, WE_RO, EA_RO, WE_AR, EA_AR)
SPEC_I_PT, ALL_TG_PT, APTPL = 0x08, 0x04, 0x01


def prin_cdb(sa: int, alloc: int = 8192) -> bytes:
    return struct.pack(">BB5xHB", 0x5E, sa, alloc, 0)


def prout_cdb(sa: int, rtype: int = 0, scope: int = 0, length: int = 24) -> bytes:
    return struct.pack(">BBB2xIB", 0x5F, sa, (scope << 4) | rtype, length, 0)


def prout_params(key: int = 0, sark: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">QQ4xBx2x", key, sark, flags)


def prout(
    lu: LogicalUnit,
    sa: int,
    *,
    key: int = 0,
    sark: int = 0,
    rtype: int = 0,
    flags: int = 0,
    nexus: Nexus = NEXUS,
) -> ScsiResult:
    return run(lu, prout_cdb(sa, rtype), data=prout_params(key, sark, flags), nexus=nexus)


def keys(lu: LogicalUnit, nexus: Nexus = NEXUS) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) from READ KEYS."""
    res = run(lu, prin_cdb(READ_KEYS), nexus=nexus)
    data = bytes(res.data)
    generation, length = struct.unpack(">II", data[:8])
    return generation, [struct.unpack(">Q", data[8 + i : 16 + i])[0] for i in range(0, length, 8)]


def reservation(lu: LogicalUnit, nexus: Nexus = NEXUS) -> tuple[int, int] | None:
    """(key, type) from READ RESERVATION, or None."""
    data = bytes(run(lu, prin_cdb(READ_RESERVATION), nexus=nexus).data)
    if struct.unpack(">I", data[4:8])[0] == 0:
        return None
    return struct.unpack(">Q", data[8:16])[0], data[21] & 0x0F
