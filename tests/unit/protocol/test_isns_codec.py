"""The iSNSP codec (pyscsi_target/protocol/isns.py) against bytes derived by hand from RFC 4171,
plus Hypothesis: messages round-trip through the reader in any split, and arbitrary bytes only
ever raise IsnsFormatError."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyscsi_target.protocol.isns import (
    FLAG_CLIENT,
    FLAG_FIRST_PDU,
    FLAG_LAST_PDU,
    FLAG_REPLACE,
    FLAG_SERVER,
    MAX_MESSAGE_BYTES,
    Attr,
    Function,
    IsnsFormatError,
    Message,
    MessageReader,
    Node,
    PortalGroup,
    Registration,
    Tag,
    attr_ip,
    attr_port,
    attr_str,
    attr_u32,
    decode_attrs,
    dev_attr_qry_payload,
    dev_attr_reg_payloads,
    dev_dereg_payload,
    encode_message,
    esi_response,
)


def read_all(data: bytes) -> list[Message]:
    reader = MessageReader()
    reader.feed(data)
    out = []
    while (m := reader.next_message()) is not None:
        out.append(m)
    return out


# ---- golden bytes ---------------------------------------------------------------------------------

def test_header_of_a_single_pdu_client_request() -> None:
    # RFC 4171 §5.1: version 0x0001, Function ID, PDU Length, Flags, Transaction ID, Sequence ID.
    # §5.1.4 flags: client 0x8000, last PDU 0x0800, first PDU 0x0400 -> 0x8C00.
    assert encode_message(Function.DEV_ATTR_QRY, 0x1234, b"\xaa\xbb\xcc\xdd") == bytes.fromhex(
        "0001" "0002" "0004" "8c00" "1234" "0000" "aabbccdd")


def test_replace_flag_is_bit_19() -> None:
    # §5.1.4: bit 19 (0x1000) is Replace, valid only in DevAttrReg
    assert encode_message(Function.DEV_ATTR_REG, 1, b"", flags=FLAG_CLIENT | FLAG_REPLACE)[6:8] == b"\x9c\x00"


def test_string_attribute_is_nul_terminated_and_padded() -> None:
    # §5.5: tag (4), length (4), value padded to a multiple of 4; §6.1: strings end in NUL.
    # "abc" + NUL = 4 bytes, no padding; "abcd" + NUL = 5 -> padded to 8.
    assert attr_str(Tag.ISCSI_NAME, "abc").encode() == bytes.fromhex("00000020" "00000004" "61626300")
    assert attr_str(Tag.ISCSI_ALIAS, "abcd").encode() == bytes.fromhex(
        "00000022" "00000008" "6162636400000000")


def test_ipv4_address_is_ipv4_mapped_in_16_bytes() -> None:
    # §6.3.1: IPv4 addresses are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d), 16 bytes
    assert attr_ip(Tag.PORTAL_IP_ADDRESS, "192.0.2.7").encode() == bytes.fromhex(
        "00000010" "00000010" "00000000000000000000ffff" "c0000207")
    assert attr_ip(Tag.PORTAL_IP_ADDRESS, "2001:db8::1").value == bytes.fromhex("20010db8000000000000000000000001")
    assert Attr(16, bytes.fromhex("00000000000000000000ffffc0000207")).as_ip() == "192.0.2.7"


def test_port_attribute_tcp_and_udp() -> None:
    # §6.3.2: lower 16 bits the port, bit 15 of the upper half: 0 = TCP, 1 = UDP
    assert attr_port(Tag.PORTAL_PORT, 3260).encode() == bytes.fromhex("00000011" "00000004" "00000cbc")
    assert attr_port(Tag.PORTAL_PORT, 3205, udp=True).value == bytes.fromhex("00010c85")
    assert Attr(17, bytes.fromhex("00010c85")).as_port() == (3205, True)


def test_dev_attr_reg_golden() -> None:
    # §5.6.5.1 DevAttrReg: Source, Message Key (EID), Delimiter, Operating Attributes:
    # entity (EID, Entity Protocol 2 = iSCSI §6.2.2, Registration Period §6.2.6), portal (IP, port),
    # node (iSCSI Name, Node Type 1 = Target §6.4.2, Alias), PG (name, IP, port, PGT) §6.5
    reg = Registration("host", 900, (("127.0.0.1", 3260),), (Node("iqn.a:t", "al"),),
                       (PortalGroup("iqn.a:t", "127.0.0.1", 3260, 1),))
    [payload] = dev_attr_reg_payloads(reg)
    ip = "00000000000000000000ffff7f000001"
    assert payload == bytes.fromhex(
        "00000020" "00000008" "69716e2e613a7400"    # Source: iSCSI Name "iqn.a:t"
        "00000001" "00000008" "686f737400000000"    # Key: Entity Identifier "host"
        "00000000" "00000000"                       # Delimiter
        "00000001" "00000008" "686f737400000000"    # EID
        "00000002" "00000004" "00000002"            # Entity Protocol: iSCSI
        "00000006" "00000004" "00000384"            # Registration Period: 900 s
        "00000010" "00000010" + ip +                # Portal IP Address
        "00000011" "00000004" "00000cbc"            # Portal TCP/UDP Port: 3260/tcp
        "00000020" "00000008" "69716e2e613a7400"    # iSCSI Name
        "00000021" "00000004" "00000001"            # iSCSI Node Type: Target
        "00000022" "00000004" "616c0000"            # iSCSI Alias "al"
        "00000030" "00000008" "69716e2e613a7400"    # PG iSCSI Name
        "00000031" "00000010" + ip +                # PG Portal IP Addr
        "00000032" "00000004" "00000cbc"            # PG Portal TCP/UDP Port
        "00000033" "00000004" "00000001")           # PG Tag 1


def test_null_pgt_means_not_reachable() -> None:
    # §3.4 / §6.5.4: a PGT of length 0 (NULL) says the node is not accessible through that portal
    reg = Registration("h", 900, (("10.0.0.1", 3260),), (Node("iqn.a:t"),),
                       (PortalGroup("iqn.a:t", "10.0.0.1", 3260, None),))
    [payload] = dev_attr_reg_payloads(reg)
    assert payload.endswith(bytes.fromhex("00000033" "00000000"))


def test_large_registration_is_split_into_updates() -> None:
    nodes = tuple(Node(f"iqn.2024-01.org.example:target-{i:04d}") for i in range(200))
    reg = Registration("h", 900, (("10.0.0.1", 3260),), nodes,
                       tuple(PortalGroup(n.name, "10.0.0.1", 3260, 1) for n in nodes))
    payloads = dev_attr_reg_payloads(reg, max_payload=2048)
    assert len(payloads) > 1 and all(len(p) <= 2048 for p in payloads)
    names = []
    for p in payloads:
        attrs = decode_attrs(p)
        assert attrs[0] == attr_str(Tag.ISCSI_NAME, nodes[0].name)  # same Source in every message
        assert attrs[1] == attr_str(Tag.ENTITY_IDENTIFIER, "h") and attrs[2].tag == Tag.DELIMITER
        names += [a.as_str() for a in attrs[3:] if a.tag == Tag.ISCSI_NAME]
    assert names == [n.name for n in nodes]
    assert sum(1 for a in decode_attrs(payloads[0]) if a.tag == Tag.PORTAL_IP_ADDRESS) == 1


def test_dev_attr_qry_and_dev_dereg_golden() -> None:
    # §5.6.5.2 DevAttrQry: Source, Key (EID), Delimiter, zero-length Operating Attributes to return
    assert dev_attr_qry_payload("iqn.a:t", "host") == bytes.fromhex(
        "00000020" "00000008" "69716e2e613a7400"
        "00000001" "00000008" "686f737400000000"
        "00000000" "00000000"
        "00000001" "00000000" "00000010" "00000000" "00000011" "00000000" "00000020" "00000000")
    # §5.6.5.4 DevDereg: Source, no Message Key, Delimiter, the EID as Operating Attribute
    assert dev_dereg_payload("iqn.a:t", "host") == bytes.fromhex(
        "00000020" "00000008" "69716e2e613a7400"
        "00000000" "00000000"
        "00000001" "00000008" "686f737400000000")


def test_response_status_and_attributes() -> None:
    # §5.7: a response's payload starts with a 4-byte Status Code; 0x8001 = DevAttrRegRsp
    pdu = bytes.fromhex("0001" "8001" "0014" "4c00" "0007" "0000"
                        "00000000" "00000001" "00000008" "686f737400000000")
    [msg] = read_all(pdu)
    assert msg.is_response and msg.xid == 7 and msg.flags == FLAG_SERVER | FLAG_LAST_PDU | FLAG_FIRST_PDU
    rsp = msg.response()
    assert rsp.status == 0 and rsp.attrs == [attr_str(Tag.ENTITY_IDENTIFIER, "host")]


def test_esi_is_answered_with_its_attributes_echoed() -> None:
    # §5.6.5.13 ESI (0x000D) from the server; §5.7.5.13 ESIRsp (0x800D): status, then the ESI's
    # attributes, same transaction id
    attrs = attr_str(Tag.ENTITY_IDENTIFIER, "host").encode() + attr_u32(Tag.ESI_PORT, 1).encode()
    esi = Message(Function.ESI, FLAG_SERVER | FLAG_FIRST_PDU | FLAG_LAST_PDU, 0x42, attrs)
    assert esi_response(esi) == bytes.fromhex("0001" "800d") + struct.pack(">H", 4 + len(attrs)) + bytes.fromhex(
        "8c00" "0042" "0000" "00000000") + attrs


def test_multi_pdu_message_is_reassembled() -> None:
    # §5.1.2/§5.1.4: PDUs of one message share the transaction id, sequence ids count from 0,
    # FIRST on the first, LAST on the last
    wire = encode_message(Function.DEV_ATTR_QRY_RSP, 9, bytes(range(16)) * 3, flags=FLAG_SERVER, max_pdu_payload=16)
    assert len(wire) == 3 * (12 + 16)
    assert [wire[i * 28 + 6:i * 28 + 8].hex() for i in range(3)] == ["4400", "4000", "4800"]
    assert [wire[i * 28 + 10:i * 28 + 12].hex() for i in range(3)] == ["0000", "0001", "0002"]
    [msg] = read_all(wire)
    assert msg.payload == bytes(range(16)) * 3 and msg.xid == 9


# ---- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("wire, why", [
    (bytes.fromhex("0002" "8001" "0004" "4c00" "0001" "0000" "00000000"), "version"),
    (bytes.fromhex("0001" "8001" "0004" "6c00" "0001" "0000" "00000000"), "authentication"),
    (bytes.fromhex("0001" "8001" "0004" "4000" "0001" "0003" "00000000"), "first PDU"),
])
def test_bad_headers_are_format_errors(wire: bytes, why: str) -> None:
    with pytest.raises(IsnsFormatError, match=why):
        read_all(wire)


def test_out_of_sequence_pdu_is_a_format_error() -> None:
    wire = encode_message(Function.DEV_ATTR_QRY_RSP, 1, b"\0" * 32, flags=FLAG_SERVER, max_pdu_payload=16)
    with pytest.raises(IsnsFormatError, match="sequence"):
        read_all(wire[:28] + wire[:28])


def test_message_larger_than_the_bound_is_refused() -> None:
    wire = encode_message(Function.DEV_ATTR_QRY_RSP, 1, b"\0" * (MAX_MESSAGE_BYTES + 4), flags=FLAG_SERVER)
    with pytest.raises(IsnsFormatError, match="larger"):
        read_all(wire)


def test_attribute_length_past_the_end_is_a_format_error() -> None:
    with pytest.raises(IsnsFormatError, match="runs past"):
        decode_attrs(bytes.fromhex("00000001" "ffffffff" "00000000"))
    with pytest.raises(IsnsFormatError):
        decode_attrs(b"\0\0\0")


def test_partial_pdu_waits_for_more() -> None:
    wire = encode_message(Function.DEV_ATTR_REG_RSP, 3, b"\0\0\0\0", flags=FLAG_SERVER)
    reader = MessageReader()
    reader.feed(wire[:-1])
    assert reader.next_message() is None
    reader.feed(wire[-1:])
    assert reader.next_message() is not None


# ---- Hypothesis -----------------------------------------------------------------------------------

attr_strategy = st.builds(lambda tag, v: Attr(tag, v + b"\0" * (-len(v) % 4)),
                          st.integers(0, 2**32 - 1), st.binary(max_size=64))


@settings(max_examples=200, deadline=None)
@given(attrs=st.lists(attr_strategy, max_size=20), xid=st.integers(0, 0xFFFF),
       pdu=st.integers(64, 256), cuts=st.lists(st.integers(0, 4000), max_size=5))
def test_round_trip_in_any_split(attrs: list[Attr], xid: int, pdu: int, cuts: list[int]) -> None:
    payload = b"".join(a.encode() for a in attrs)
    wire = encode_message(Function.DEV_ATTR_QRY_RSP, xid, payload, flags=FLAG_SERVER, max_pdu_payload=pdu)
    reader = MessageReader()
    got = []
    prev = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        reader.feed(wire[prev:cut])
        prev = cut
        while (m := reader.next_message()) is not None:
            got.append(m)
    assert len(got) == 1 and got[0].xid == xid and got[0].payload == payload
    assert got[0].attrs() == attrs


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_format_errors(data: bytes) -> None:
    reader = MessageReader()
    reader.feed(data)
    try:
        while (m := reader.next_message()) is not None:
            if m.is_response:
                rsp = m.response()
                for a in rsp.attrs:
                    for conv in (a.as_u32, a.as_str, a.as_ip, a.as_port):
                        with contextlib.suppress(IsnsFormatError):
                            conv()
    except IsnsFormatError:
        pass
