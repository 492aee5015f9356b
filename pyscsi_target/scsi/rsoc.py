"""REPORT SUPPORTED OPERATION CODES parameter data (SPC-4 §6.35), built from the opcode table:
the CDB usage data it reports is the mask `execute()` validates CDBs against.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .cdb import u16
from .command import CommandSpec
from .sense import invalid_cdb

ALL_COMMANDS, ONE_OPCODE, ONE_OPCODE_SA = 0, 1, 2
SUPPORTED, NOT_SUPPORTED = 0b011, 0b001
RCTD = 0x80
#: command timeouts descriptor (SPC-4 §6.35.4): length 0Ah; 0 = no timeout is specified
TIMEOUTS = struct.pack(">HxxII", 0x0A, 0, 0)


def _all_commands(specs: Sequence[CommandSpec], rctd: bool) -> bytes:
    """Reporting option 000b: one 8-byte command descriptor each (+ timeouts if RCTD)."""
    out = bytearray()
    for s in sorted(specs, key=lambda s: (s.opcode, s.service_action or 0)):
        flags = (0x02 if rctd else 0) | (0x01 if s.service_action is not None else 0)
        out += struct.pack(">BxHxBH", s.opcode, s.service_action or 0, flags, s.cdb_length)
        if rctd:
            out += TIMEOUTS
    return struct.pack(">I", len(out)) + bytes(out)


def _one_command(spec: CommandSpec | None, rctd: bool) -> bytes:
    """Reporting options 001b/010b: SUPPORT, CDB SIZE and the CDB usage data."""
    if spec is None:
        return struct.pack(">xBH", NOT_SUPPORTED, 0)
    head = struct.pack(">xBH", (0x80 if rctd else 0) | SUPPORTED, spec.cdb_length)
    return head + spec.usage + (TIMEOUTS if rctd else b"")


def supported_opcodes_data(specs: Sequence[CommandSpec], cdb: bytes) -> bytes:
    """The parameter data for a REPORT SUPPORTED OPERATION CODES CDB over `specs`."""
    rctd = bool(cdb[2] & RCTD)
    option = cdb[2] & 0x07
    if option == ALL_COMMANDS:
        return _all_commands(specs, rctd)
    opcode, sa = cdb[3], u16(cdb, 4)
    with_sa = {s.opcode for s in specs if s.service_action is not None}
    if option == ONE_OPCODE:
        if opcode in with_sa:
            raise invalid_cdb(3)  # this opcode needs a service action (option 010b)
        match = [s for s in specs if s.opcode == opcode]
    elif option == ONE_OPCODE_SA:
        if opcode not in with_sa and any(s.opcode == opcode for s in specs):
            raise invalid_cdb(3)  # this opcode has no service actions (option 001b)
        match = [s for s in specs if s.opcode == opcode and s.service_action == sa]
    else:
        raise invalid_cdb(2, 2)
    return _one_command(match[0] if match else None, rctd)
