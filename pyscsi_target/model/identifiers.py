"""Generated identifiers of extents: NAA (VPD 0x83) and unit serial numbers (VPD 0x80).

NAA: FreeNAS's form, `0x6589cfc000000` + 19 random hex digits (34 characters: NAA type 6
"IEEE Registered Extended", iXsystems' OUI), spec Part A §2.2 / Part B.2.7. Serial: 16 hex digits
at most (the field is ≤16 characters), random so that serials never collide after deletions
(the FreeNAS MAC+id scheme could).
"""

from __future__ import annotations

import secrets

NAA_PREFIX = "0x6589cfc000000"
#: length of the NAA string including "0x" (spec Part A §2.2)
NAA_LENGTH = 34
#: the serial field's maximum length (spec Part A §2.2)
SERIAL_LENGTH = 15


def new_naa(existing: set[str] | frozenset[str] = frozenset()) -> str:
    while True:
        naa = NAA_PREFIX + secrets.token_hex(10)[:19]
        if naa not in existing:
            return naa


def new_serial(existing: set[str] | frozenset[str] = frozenset()) -> str:
    while True:
        serial = secrets.token_hex(8)[:SERIAL_LENGTH]
        if serial not in existing:
            return serial
