"""iSNSP, the Internet Storage Name Service protocol (RFC 4171), sans-IO: what a target needs to
register itself, keep its registration alive and answer the server.

Owns: the 12-byte PDU header (§5.1), TLV attributes with 4-byte padding (§5.5), multi-PDU message
reassembly bounded in size and count (§5.1.1, §5.1.2), the client messages DevAttrReg, DevAttrQry
and DevDereg (§5.6.5.1, .2, .4), the answer to an ESI (§5.6.5.13, §5.7.5.13), and the response
status codes (§5.4). Stdlib only: bytes in, bytes out; sockets, timeouts and retries are the
server's (`server/isns.py`). Anything a peer sends that is not a well-formed iSNSP message raises
`IsnsFormatError`; nothing here trusts a length it was sent.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

#: iSNSP version (RFC 4171 §5.1.1): the only one defined
ISNSP_VERSION = 1
#: iSNS's IANA-registered TCP port (RFC 4171 §5.1)
DEFAULT_ISNS_PORT = 3205
#: bytes of the iSNSP PDU header (RFC 4171 §5.1: six 16-bit fields)
HEADER_LENGTH = 12
#: largest PDU payload the 16-bit PDU Length field can describe (RFC 4171 §5.1.3)
MAX_PDU_PAYLOAD_BYTES = 65535
#: largest message (all its PDUs' payloads) we reassemble from a server; our queries' answers are
#: a few hundred bytes, a server's echo of a large registration a few KiB
MAX_MESSAGE_BYTES = 262144
#: most PDUs of one message we accept (RFC 4171 §5.1.2 does not bound it; we do)
MAX_MESSAGE_PDUS = 64
#: largest payload we put in one message we send: open-isns receives at most 8192 bytes per
#: message including the header (ISNS_MAX_MESSAGE), so a larger registration goes in several
#: DevAttrReg messages
MAX_SEND_PAYLOAD_BYTES = 8180

_HEADER = struct.Struct(">HHHHHH")
_TL = struct.Struct(">II")


class IsnsFormatError(ValueError):
    """Bytes that are not a well-formed iSNSP message; the connection carrying them is unusable."""


class Function(IntEnum):
    """Function IDs (RFC 4171 §5.1.3, §6 table); responses have bit 15 set."""

    DEV_ATTR_REG = 0x0001
    DEV_ATTR_QRY = 0x0002
    DEV_GET_NEXT = 0x0003
    DEV_DEREG = 0x0004
    SCN_REG = 0x0005
    SCN_DEREG = 0x0006
    SCN_EVENT = 0x0007
    SCN = 0x0008
    DD_REG = 0x0009
    DD_DEREG = 0x000A
    DDS_REG = 0x000B
    DDS_DEREG = 0x000C
    ESI = 0x000D
    HEARTBEAT = 0x000E
    DEV_ATTR_REG_RSP = 0x8001
    DEV_ATTR_QRY_RSP = 0x8002
    DEV_GET_NEXT_RSP = 0x8003
    DEV_DEREG_RSP = 0x8004
    SCN_REG_RSP = 0x8005
    SCN_DEREG_RSP = 0x8006
    SCN_EVENT_RSP = 0x8007
    SCN_RSP = 0x8008
    DD_REG_RSP = 0x8009
    DD_DEREG_RSP = 0x800A
    DDS_REG_RSP = 0x800B
    DDS_DEREG_RSP = 0x800C
    ESI_RSP = 0x800D


#: bit 15 of the Function ID marks a response (RFC 4171 §5.1.3)
RESPONSE_BIT = 0x8000

# Flags (RFC 4171 §5.1.4: bits 16..21 of the header, bit 16 being the field's most significant)
FLAG_CLIENT = 0x8000
FLAG_SERVER = 0x4000
FLAG_AUTH = 0x2000
FLAG_REPLACE = 0x1000
FLAG_LAST_PDU = 0x0800
FLAG_FIRST_PDU = 0x0400


class Status(IntEnum):
    """Response status codes (RFC 4171 §5.4)."""

    SUCCESSFUL = 0
    UNKNOWN_ERROR = 1
    MESSAGE_FORMAT_ERROR = 2
    INVALID_REGISTRATION = 3
    INVALID_QUERY = 5
    SOURCE_UNKNOWN = 6
    SOURCE_ABSENT = 7
    SOURCE_UNAUTHORIZED = 8
    NO_SUCH_ENTRY = 9
    VERSION_NOT_SUPPORTED = 10
    INTERNAL_ERROR = 11
    BUSY = 12
    OPTION_NOT_UNDERSTOOD = 13
    INVALID_UPDATE = 14
    MESSAGE_NOT_SUPPORTED = 15
    SCN_EVENT_REJECTED = 16
    SCN_REGISTRATION_REJECTED = 17
    ATTRIBUTE_NOT_IMPLEMENTED = 18
    FC_DOMAIN_ID_NOT_AVAILABLE = 19
    FC_DOMAIN_ID_NOT_ALLOCATED = 20
    ESI_NOT_AVAILABLE = 21
    INVALID_DEREGISTRATION = 22
    REGISTRATION_FEATURE_NOT_SUPPORTED = 23


def status_name(code: int) -> str:
    try:
        return f"{Status(code).name} ({code})"
    except ValueError:
        return f"status {code}"


class Tag(IntEnum):
    """Attribute tags we send or read (RFC 4171 §6.1 table)."""

    DELIMITER = 0
    ENTITY_IDENTIFIER = 1
    ENTITY_PROTOCOL = 2
    TIMESTAMP = 4
    REGISTRATION_PERIOD = 6
    ENTITY_INDEX = 7
    PORTAL_IP_ADDRESS = 16
    PORTAL_PORT = 17
    PORTAL_SYMBOLIC_NAME = 18
    ESI_INTERVAL = 19
    ESI_PORT = 20
    PORTAL_INDEX = 22
    SCN_PORT = 23
    ISCSI_NAME = 32
    ISCSI_NODE_TYPE = 33
    ISCSI_ALIAS = 34
    ISCSI_NODE_INDEX = 36
    PG_ISCSI_NAME = 48
    PG_PORTAL_IP_ADDR = 49
    PG_PORTAL_PORT = 50
    PG_TAG = 51
    PG_INDEX = 52


#: Entity Protocol value for iSCSI (RFC 4171 §6.2.2)
ENTITY_PROTOCOL_ISCSI = 2
#: iSCSI Node Type bit for a target (RFC 4171 §6.4.2)
NODE_TYPE_TARGET = 0x00000001
#: bit 15 of the port attribute's upper half: 1 = UDP, 0 = TCP (RFC 4171 §6.3.2)
UDP_FLAG_BIT = 0x00010000


# ---- attributes (RFC 4171 §5.5) -------------------------------------------------------------------

@dataclass(frozen=True)
class Attr:
    """One TLV attribute; `value` is the padded value as sent (length = len(value))."""

    tag: int
    value: bytes = b""

    def encode(self) -> bytes:
        return _TL.pack(self.tag, len(self.value)) + self.value

    @property
    def is_nil(self) -> bool:
        return not self.value

    def as_u32(self) -> int:
        if len(self.value) != 4:
            raise IsnsFormatError(f"attribute {self.tag}: {len(self.value)} bytes, expected 4")
        return int.from_bytes(self.value, "big")

    def as_str(self) -> str:
        """A NUL-terminated, NUL-padded UTF-8 string (RFC 4171 §5.5: "null-terminated")."""
        try:
            return self.value.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IsnsFormatError(f"attribute {self.tag}: not UTF-8") from exc

    def as_ip(self) -> str:
        """A 16-byte IP address; IPv4-mapped addresses come back as dotted quads (§6.3.1)."""
        if len(self.value) != 16:
            raise IsnsFormatError(f"attribute {self.tag}: {len(self.value)} bytes, expected 16")
        addr = ipaddress.IPv6Address(self.value)
        return str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)

    def as_port(self) -> tuple[int, bool]:
        """(port, is_udp) from a TCP/UDP Port attribute (RFC 4171 §6.3.2)."""
        raw = self.as_u32()
        return raw & 0xFFFF, bool(raw & UDP_FLAG_BIT)


DELIMITER = Attr(Tag.DELIMITER)


def pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def attr_str(tag: int, text: str) -> Attr:
    """UTF-8 with a terminating NUL, padded with NULs to a multiple of 4 (RFC 4171 §5.5)."""
    return Attr(tag, pad4(text.encode("utf-8") + b"\0"))


def attr_u32(tag: int, value: int) -> Attr:
    return Attr(tag, struct.pack(">I", value))


def attr_nil(tag: int) -> Attr:
    return Attr(tag)


def ip16(host: str) -> bytes:
    """16 bytes: IPv6 as is, IPv4 as the IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4171 §6.3.1)."""
    addr = ipaddress.ip_address(host)
    if addr.version == 4:
        return b"\0" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


def attr_ip(tag: int, host: str) -> Attr:
    return Attr(tag, ip16(host))


def attr_port(tag: int, port: int, *, udp: bool = False) -> Attr:
    return attr_u32(tag, (UDP_FLAG_BIT if udp else 0) | (port & 0xFFFF))


def encode_attrs(attrs: Iterable[Attr]) -> bytes:
    return b"".join(a.encode() for a in attrs)


def decode_attrs(payload: bytes | memoryview) -> list[Attr]:
    """TLVs until the payload ends; a length running past the end is a format error (§5.5)."""
    data = bytes(payload)
    out: list[Attr] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _TL.size:
            raise IsnsFormatError("truncated attribute header")
        tag, length = _TL.unpack_from(data, pos)
        pos += _TL.size
        if length > len(data) - pos:
            raise IsnsFormatError(f"attribute {tag}: length {length} runs past the message")
        out.append(Attr(tag, data[pos:pos + length]))
        pos += length
    return out


# ---- PDUs and messages (RFC 4171 §5.1) ------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    version: int
    function: int
    length: int
    flags: int
    xid: int
    seq: int

    def encode(self) -> bytes:
        return _HEADER.pack(self.version, self.function, self.length, self.flags, self.xid, self.seq)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Header:
        return cls(*_HEADER.unpack_from(data))


@dataclass(frozen=True)
class Message:
    """A whole iSNSP message: its function, flags (of the first PDU), transaction id, payload."""

    function: int
    flags: int
    xid: int
    payload: bytes

    @property
    def is_response(self) -> bool:
        return bool(self.function & RESPONSE_BIT)

    def attrs(self) -> list[Attr]:
        return decode_attrs(self.payload)

    def response(self) -> Response:
        """The status code and attributes of a response (RFC 4171 §5.7: status first, 4 bytes)."""
        if len(self.payload) < 4:
            raise IsnsFormatError("response without a status code")
        return Response(self.function, self.xid, int.from_bytes(self.payload[:4], "big"),
                        decode_attrs(self.payload[4:]))


@dataclass(frozen=True)
class Response:
    function: int
    xid: int
    status: int
    attrs: list[Attr] = field(default_factory=list)

    def values(self, tag: int) -> list[Attr]:
        return [a for a in self.attrs if a.tag == tag]


def encode_message(function: int, xid: int, payload: bytes, *, flags: int = FLAG_CLIENT,
                   max_pdu_payload: int = MAX_PDU_PAYLOAD_BYTES) -> bytes:
    """The PDUs of one message: payload split at 4-byte boundaries into PDUs of at most
    `max_pdu_payload` bytes, sequence ids from 0, FIRST on the first and LAST on the last (§5.1)."""
    if len(payload) % 4:
        raise ValueError("iSNSP payloads are whole 4-byte words")
    step = max(4, max_pdu_payload - max_pdu_payload % 4)
    chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
    out = bytearray()
    for seq, chunk in enumerate(chunks):
        f = flags & ~(FLAG_FIRST_PDU | FLAG_LAST_PDU)
        if seq == 0:
            f |= FLAG_FIRST_PDU
        if seq == len(chunks) - 1:
            f |= FLAG_LAST_PDU
        out += Header(ISNSP_VERSION, function, len(chunk), f, xid, seq).encode() + chunk
    return bytes(out)


class MessageReader:
    """Bytes from a stream in, whole messages out. Bounded: at most one PDU (header + 65535 bytes)
    is buffered beyond the message being reassembled, which is at most MAX_MESSAGE_BYTES in
    MAX_MESSAGE_PDUS PDUs. Authentication blocks (§5.1.4 bit 18) are not supported: a PDU that
    announces one is a format error, as is any other version, a PDU out of sequence, or a PDU of
    another transaction in the middle of a message."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._first: Header | None = None
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> Message | None:
        while True:
            if len(self._buf) < HEADER_LENGTH:
                return None
            hdr = Header.decode(self._buf)
            if hdr.version != ISNSP_VERSION:
                raise IsnsFormatError(f"iSNSP version {hdr.version}, expected {ISNSP_VERSION}")
            if hdr.flags & FLAG_AUTH:
                raise IsnsFormatError("authentication blocks are not supported")
            if len(self._buf) < HEADER_LENGTH + hdr.length:
                return None
            chunk = bytes(self._buf[HEADER_LENGTH:HEADER_LENGTH + hdr.length])
            del self._buf[:HEADER_LENGTH + hdr.length]
            msg = self._add(hdr, chunk)
            if msg is not None:
                return msg

    def _add(self, hdr: Header, chunk: bytes) -> Message | None:
        first = self._first
        if first is None:
            if not hdr.flags & FLAG_FIRST_PDU and hdr.seq != 0:
                raise IsnsFormatError(f"PDU {hdr.seq} of a message whose first PDU never came")
            self._first = first = hdr
        elif (hdr.xid, hdr.function) != (first.xid, first.function) or hdr.seq != first.seq + len(self._parts):
            raise IsnsFormatError("PDU out of sequence in a multi-PDU message")
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_MESSAGE_BYTES or len(self._parts) > MAX_MESSAGE_PDUS:
            raise IsnsFormatError(f"message larger than {MAX_MESSAGE_BYTES} bytes or {MAX_MESSAGE_PDUS} PDUs")
        if not hdr.flags & FLAG_LAST_PDU:
            return None
        msg = Message(first.function, first.flags, first.xid, b"".join(self._parts))
        self._first, self._parts, self._size = None, [], 0
        return msg


# ---- what a target registers (RFC 4171 §5.6.5.1, §3.4) ---------------------------------------------

@dataclass(frozen=True)
class PortalGroup:
    """One PG object: node `name` reachable through portal (`host`, `port`) with tag `tag`;
    `tag` None registers a NULL PGT, "not reachable through that portal" (RFC 4171 §3.4)."""

    name: str
    host: str
    port: int
    tag: int | None


@dataclass(frozen=True)
class Node:
    name: str
    alias: str | None = None


@dataclass(frozen=True)
class Registration:
    """Everything one network entity holds: the state a target keeps on an iSNS server."""

    entity_id: str
    period_s: int
    portals: tuple[tuple[str, int], ...] = ()
    nodes: tuple[Node, ...] = ()
    groups: tuple[PortalGroup, ...] = ()

    @property
    def source(self) -> str:
        """The Source attribute: a node of the entity (RFC 4171 §5.6.1); the first target."""
        return self.nodes[0].name


def _node_attrs(node: Node, groups: Iterable[PortalGroup]) -> list[Attr]:
    out = [attr_str(Tag.ISCSI_NAME, node.name), attr_u32(Tag.ISCSI_NODE_TYPE, NODE_TYPE_TARGET)]
    if node.alias:
        out.append(attr_str(Tag.ISCSI_ALIAS, node.alias))
    for g in groups:
        out += [
            attr_str(Tag.PG_ISCSI_NAME, g.name),
            attr_ip(Tag.PG_PORTAL_IP_ADDR, g.host),
            attr_port(Tag.PG_PORTAL_PORT, g.port),
            attr_u32(Tag.PG_TAG, g.tag) if g.tag is not None else attr_nil(Tag.PG_TAG),
        ]
    return out


def _head(source: str, entity_id: str) -> list[Attr]:
    return [attr_str(Tag.ISCSI_NAME, source), attr_str(Tag.ENTITY_IDENTIFIER, entity_id), DELIMITER]


def dev_attr_reg_payloads(reg: Registration, *, max_payload: int = MAX_SEND_PAYLOAD_BYTES) -> list[bytes]:
    """DevAttrReg payloads (RFC 4171 §5.6.5.1) that together register `reg`: Source (the first
    target's name), Message Key (the EID), Delimiter, then the Operating Attributes in the order
    §5.6.4 requires: the entity (EID, protocol iSCSI, registration period), its portals, then each
    node followed by its PG objects. The first message is sent with the Replace flag so the server
    drops whatever the entity held before; when the whole does not fit in `max_payload` bytes the
    nodes continue in further messages (update, no Replace)."""
    if not reg.nodes:
        raise ValueError("a registration needs at least one storage node for its Source attribute")
    entity = [
        attr_str(Tag.ENTITY_IDENTIFIER, reg.entity_id),
        attr_u32(Tag.ENTITY_PROTOCOL, ENTITY_PROTOCOL_ISCSI),
        attr_u32(Tag.REGISTRATION_PERIOD, reg.period_s),
    ]
    for host, port in reg.portals:
        entity += [attr_ip(Tag.PORTAL_IP_ADDRESS, host), attr_port(Tag.PORTAL_PORT, port)]
    head = encode_attrs(_head(reg.source, reg.entity_id))
    payloads: list[bytes] = []
    current = bytearray(head + encode_attrs(entity))
    if len(current) > max_payload:
        raise ValueError("the entity and its portals alone exceed one message")
    nodes_in_current = 0
    for node in reg.nodes:
        block = encode_attrs(_node_attrs(node, [g for g in reg.groups if g.name == node.name]))
        # the first node always goes with the entity: it is the Source of every later message
        if nodes_in_current and len(current) + len(block) > max_payload and node is not reg.nodes[0]:
            payloads.append(bytes(current))
            current = bytearray(head + encode_attrs([attr_str(Tag.ENTITY_IDENTIFIER, reg.entity_id)]))
            nodes_in_current = 0
        current += block
        nodes_in_current += 1
    payloads.append(bytes(current))
    return payloads


def dev_attr_qry_payload(source: str, entity_id: str) -> bytes:
    """DevAttrQry for our entity (RFC 4171 §5.6.5.2): Source, Message Key = EID, Delimiter, and
    the attributes asked for (EID, its portals' addresses and ports, its nodes' names) as
    zero-length Operating Attributes. Any message also refreshes the registration (§6.2.6)."""
    return encode_attrs([
        *_head(source, entity_id),
        attr_nil(Tag.ENTITY_IDENTIFIER),
        attr_nil(Tag.PORTAL_IP_ADDRESS),
        attr_nil(Tag.PORTAL_PORT),
        attr_nil(Tag.ISCSI_NAME),
    ])


def dev_dereg_payload(source: str, entity_id: str) -> bytes:
    """DevDereg of the whole entity (RFC 4171 §5.6.5.4): Source, empty Message Key, Delimiter, and
    the EID as Operating Attribute; the server removes the entity and everything in it."""
    return encode_attrs([attr_str(Tag.ISCSI_NAME, source), DELIMITER,
                         attr_str(Tag.ENTITY_IDENTIFIER, entity_id)])


def esi_response(esi: Message) -> bytes:
    """ESIRsp (RFC 4171 §5.7.5.13): status Successful and the ESI's attributes echoed, same
    transaction id, sent as a client."""
    payload = struct.pack(">I", Status.SUCCESSFUL) + esi.payload
    return encode_message(Function.ESI_RSP, esi.xid, payload, flags=FLAG_CLIENT)
