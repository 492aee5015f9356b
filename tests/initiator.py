"""A tiny sans-IO iSCSI initiator for tests: builds initiator PDUs and parses target PDUs.

Deliberately independent of `pyscsi_target.protocol` (plain `struct` from the RFC 7143 §11
layouts), so tests catch codec mistakes instead of repeating them. Synchronous and I/O-free:
feed its bytes to a `Connection` or a socket, and feed what comes back to `Initiator.receive()`.

    ini = Initiator()
    conn.receive_data(ini.login({"InitiatorName": ..., "TargetName": ...}, csg=1, nsg=3))
    for pdu in ini.receive(b"".join(conn.data_to_send())): ...
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import crc32c

RESERVED_TAG = 0xFFFFFFFF
DEFAULT_ISID = 0x80_12_34_56_00_01  # OUI-format ISID (RFC 7143 §11.12.5)

# target opcodes (RFC 7143 §11.1.1)
NOP_IN, SCSI_RESPONSE, TMF_RESPONSE, LOGIN_RESPONSE = 0x20, 0x21, 0x22, 0x23
TEXT_RESPONSE, DATA_IN, LOGOUT_RESPONSE, R2T, ASYNC, REJECT = 0x24, 0x25, 0x26, 0x31, 0x32, 0x3F

Keys = Mapping[str, str] | Iterable[tuple[str, str]]


def encode_keys(keys: Keys) -> bytes:
    items = keys.items() if isinstance(keys, Mapping) else keys
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def digest(data: bytes) -> bytes:
    return struct.pack("<I", crc32c.crc32c(data))


@dataclass
class TargetPdu:
    """A PDU from the target, with the raw header and the fields tests look at."""

    bhs: bytes
    data: bytes
    ahs: bytes = b""

    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def flags(self) -> int:
        return self.bhs[1]

    @property
    def final(self) -> bool:  # F (or T for login)
        return bool(self.bhs[1] & 0x80)

    @property
    def cont(self) -> bool:  # C bit of Login/Text responses
        return bool(self.bhs[1] & 0x40)

    def word(self, offset: int) -> int:
        return int.from_bytes(self.bhs[offset:offset + 4], "big")

    dsl = property(lambda self: int.from_bytes(self.bhs[5:8], "big"))
    lun = property(lambda self: int.from_bytes(self.bhs[8:16], "big"))
    itt = property(lambda self: self.word(16))
    ttt = property(lambda self: self.word(20))
    statsn = property(lambda self: self.word(24))
    exp_cmdsn = property(lambda self: self.word(28))
    max_cmdsn = property(lambda self: self.word(32))
    # Login Response
    csg = property(lambda self: (self.bhs[1] >> 2) & 3)
    nsg = property(lambda self: self.bhs[1] & 3)
    isid = property(lambda self: int.from_bytes(self.bhs[8:14], "big"))
    tsih = property(lambda self: int.from_bytes(self.bhs[14:16], "big"))
    status_class = property(lambda self: self.bhs[36])
    status_detail = property(lambda self: self.bhs[37])
    # SCSI Response / Data-In / R2T / Reject / TMF / Logout
    response = property(lambda self: self.bhs[2])
    reason = property(lambda self: self.bhs[2])
    status = property(lambda self: self.bhs[3])
    datasn = property(lambda self: self.word(36))
    r2tsn = property(lambda self: self.word(36))
    exp_datasn = property(lambda self: self.word(36))
    buffer_offset = property(lambda self: self.word(40))
    desired_length = property(lambda self: self.word(44))
    residual = property(lambda self: self.word(44))
    overflow = property(lambda self: bool(self.bhs[1] & 0x04))
    underflow = property(lambda self: bool(self.bhs[1] & 0x02))
    status_present = property(lambda self: bool(self.bhs[1] & 0x01))  # Data-In S bit

    @property
    def keys(self) -> list[tuple[str, str]]:
        out = []
        for item in self.data.split(b"\0")[:-1]:
            k, _, v = item.decode().partition("=")
            out.append((k, v))
        return out

    @property
    def key_dict(self) -> dict[str, str]:
        return dict(self.keys)

    @property
    def sense(self) -> bytes:
        n = int.from_bytes(self.data[:2], "big")
        return self.data[2:2 + n]


@dataclass
class Initiator:
    name: str = "iqn.2024-01.org.example:initiator"
    isid: int = DEFAULT_ISID
    cmdsn: int = 1
    exp_statsn: int = 0
    header_digest: bool = False
    data_digest: bool = False
    next_itt: int = 0x10
    _rx: bytearray = field(default_factory=bytearray)

    # ---- building ----------------------------------------------------------------------------

    def new_itt(self) -> int:
        self.next_itt += 1
        return self.next_itt

    def pdu(self, opcode: int, b1: int, *, immediate: bool = False, b2: int = 0, b3: int = 0,
            word8: bytes = bytes(8), itt: int = 0, rest: bytes = bytes(28), data: bytes = b"",
            ahs: bytes = b"", dsl: int | None = None) -> bytes:
        """One PDU from its raw parts (bytes 20..47 in `rest`), with padding and digests."""
        length = len(data) if dsl is None else dsl
        bhs = (bytes([opcode | (0x40 if immediate else 0), b1, b2, b3, len(ahs) // 4])
               + length.to_bytes(3, "big") + word8 + itt.to_bytes(4, "big") + rest)
        assert len(bhs) == 48 and len(rest) == 28
        header = bhs + ahs
        if self.header_digest:
            header += digest(header)
        if not data:
            return header
        padded = data + bytes(-len(data) % 4)
        return header + padded + (digest(padded) if self.data_digest else b"")

    def _seq(self, immediate: bool, cmdsn: int | None) -> int:
        value = self.cmdsn if cmdsn is None else cmdsn
        if not immediate and cmdsn is None:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return value

    def login(self, keys: Keys = (), *, csg: int = 1, nsg: int = 3, transit: bool = True,
              cont: bool = False, tsih: int = 0, cid: int = 0, itt: int = 1, version_min: int = 0,
              version_max: int = 0, raw: bytes | None = None) -> bytes:
        b1 = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | nsg
        word8 = self.isid.to_bytes(6, "big") + tsih.to_bytes(2, "big")
        rest = (cid.to_bytes(2, "big") + bytes(2) + self.cmdsn.to_bytes(4, "big")
                + self.exp_statsn.to_bytes(4, "big") + bytes(16))
        data = encode_keys(keys) if raw is None else raw
        return self.pdu(0x03, b1, immediate=True, b2=version_max, b3=version_min, word8=word8, itt=itt,
                        rest=rest, data=data)

    def scsi_command(self, cdb: bytes, *, read: bool = False, write: bool = False, edtl: int = 0,
                     lun: int = 0, data: bytes = b"", final: bool = True, immediate: bool = False,
                     attr: int = 1, itt: int | None = None, cmdsn: int | None = None) -> bytes:
        itt = self.new_itt() if itt is None else itt
        b1 = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | attr
        cdb16 = cdb[:16].ljust(16, b"\0")
        ahs = b""
        if len(cdb) > 16:  # Extended CDB AHS (RFC 7143 §11.2.2.3)
            extra = cdb[16:]
            body = (len(extra) + 1).to_bytes(2, "big") + b"\x01\x00" + extra
            ahs = body + bytes(-len(body) % 4)
        rest = (edtl.to_bytes(4, "big") + self._seq(immediate, cmdsn).to_bytes(4, "big")
                + self.exp_statsn.to_bytes(4, "big") + cdb16)
        return self.pdu(0x01, b1, immediate=immediate, word8=(lun << 48).to_bytes(8, "big"), itt=itt,
                        rest=rest, data=data, ahs=ahs)

    def data_out(self, itt: int, offset: int, data: bytes, *, ttt: int = RESERVED_TAG, datasn: int = 0,
                 final: bool = True, lun: int = 0) -> bytes:
        rest = (ttt.to_bytes(4, "big") + bytes(4) + self.exp_statsn.to_bytes(4, "big") + bytes(4)
                + datasn.to_bytes(4, "big") + offset.to_bytes(4, "big") + bytes(4))
        return self.pdu(0x05, 0x80 if final else 0, word8=(lun << 48).to_bytes(8, "big"), itt=itt,
                        rest=rest, data=data)

    def nop_out(self, *, itt: int | None = None, ttt: int = RESERVED_TAG, data: bytes = b"",
                immediate: bool = True, lun: int = 0, cmdsn: int | None = None) -> bytes:
        itt = self.new_itt() if itt is None else itt
        seq = self._seq(immediate or itt == RESERVED_TAG, cmdsn)
        rest = (ttt.to_bytes(4, "big") + seq.to_bytes(4, "big") + self.exp_statsn.to_bytes(4, "big")
                + bytes(16))
        return self.pdu(0x00, 0x80, immediate=immediate, word8=(lun << 48).to_bytes(8, "big"), itt=itt,
                        rest=rest, data=data)

    def text(self, keys: Keys = (), *, itt: int | None = None, ttt: int = RESERVED_TAG,
             final: bool = True, cont: bool = False, immediate: bool = True,
             cmdsn: int | None = None) -> bytes:
        itt = self.new_itt() if itt is None else itt
        b1 = (0x80 if final else 0) | (0x40 if cont else 0)
        rest = (ttt.to_bytes(4, "big") + self._seq(immediate, cmdsn).to_bytes(4, "big")
                + self.exp_statsn.to_bytes(4, "big") + bytes(16))
        return self.pdu(0x04, b1, immediate=immediate, itt=itt, rest=rest, data=encode_keys(keys))

    def logout(self, reason: int = 0, *, itt: int | None = None, cid: int = 0,
               immediate: bool = True) -> bytes:
        itt = self.new_itt() if itt is None else itt
        rest = (cid.to_bytes(2, "big") + bytes(2) + self._seq(immediate, None).to_bytes(4, "big")
                + self.exp_statsn.to_bytes(4, "big") + bytes(16))
        return self.pdu(0x06, 0x80 | reason, immediate=immediate, itt=itt, rest=rest)

    def tmf(self, function: int, *, referenced_itt: int = RESERVED_TAG, lun: int = 0, ref_cmdsn: int = 0,
            itt: int | None = None, immediate: bool = True) -> bytes:
        itt = self.new_itt() if itt is None else itt
        rest = (referenced_itt.to_bytes(4, "big") + self._seq(immediate, None).to_bytes(4, "big")
                + self.exp_statsn.to_bytes(4, "big") + ref_cmdsn.to_bytes(4, "big") + bytes(12))
        return self.pdu(0x02, 0x80 | function, immediate=immediate, word8=(lun << 48).to_bytes(8, "big"),
                        itt=itt, rest=rest)

    # ---- parsing -----------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | Iterable[bytes | bytearray | memoryview]) -> list[TargetPdu]:
        """Every complete target PDU in the bytes received so far (digests are checked)."""
        if not isinstance(data, bytes | bytearray):
            data = b"".join(bytes(b) for b in data)
        self._rx += data
        out = []
        while len(self._rx) >= 48:
            ahs_len = self._rx[4] * 4
            dsl = int.from_bytes(self._rx[5:8], "big")
            hd = 4 if self.header_digest else 0
            dd = 4 if self.data_digest and dsl else 0
            padded = dsl + (-dsl % 4)
            total = 48 + ahs_len + hd + padded + dd
            if len(self._rx) < total:
                break
            raw = bytes(self._rx[:total])
            del self._rx[:total]
            header = raw[:48 + ahs_len]
            if hd:
                assert raw[48 + ahs_len:48 + ahs_len + 4] == digest(header), "bad header digest"
            body = raw[48 + ahs_len + hd:48 + ahs_len + hd + padded]
            if dd:
                assert raw[-4:] == digest(body), "bad data digest"
            pdu = TargetPdu(bhs=raw[:48], data=body[:dsl], ahs=raw[48:48 + ahs_len])
            if self._advances_statsn(pdu):
                self.exp_statsn = (pdu.statsn + 1) & 0xFFFFFFFF
            out.append(pdu)
        return out

    @staticmethod
    def _advances_statsn(pdu: TargetPdu) -> bool:
        """R2T, Data-In without status and target pings do not take a StatSN (RFC 7143 §11)."""
        if pdu.opcode == R2T or (pdu.opcode == DATA_IN and not pdu.status_present):
            return False
        return not (pdu.opcode == NOP_IN and pdu.itt == RESERVED_TAG)
