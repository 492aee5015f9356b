"""The per-command data path of the protocol layer (docs/performance.md):

- receiving into `receive_buffer()` in any split gives the same events as `receive_data()`, and
  large write data lands straight in its command buffer (direct placement), digests included;
- the one-PDU response encoder agrees byte for byte with the general one, and both with the RFC
  as the independent test initiator reads it;
- the common-command shortcut of the full feature handler has exactly the outcome of the
  general command path, whatever the header says.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pyscsi_target.protocol import Connection, ScsiCommand
from pyscsi_target.protocol.fastpath import decode_scsi_command
from pyscsi_target.protocol.framing import DIRECT_PLACEMENT_MIN, Frame, FrameReader, build_pdu
from pyscsi_target.protocol.pdu import NopOut
from pyscsi_target.protocol.responses import response_pdus, single_response
from tests.initiator import DATA_IN, R2T, REJECT, SCSI_RESPONSE, Initiator

from .support import LIBISCSI_OPERATIONAL, FakeAuthority, drain, login

KiB = 1024


def session(keys: list[tuple[str, str]] | None = None, **ini_kw: object) -> tuple[Connection, Initiator]:
    conn = Connection(FakeAuthority())
    ini = Initiator(**ini_kw)  # type: ignore[arg-type]
    login(conn, ini, LIBISCSI_OPERATIONAL if keys is None else keys)
    return conn, ini


def write16(lba: int, nblocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, 0, lba, nblocks, 0, 0)


def receive_in_pieces(conn: Connection, wire: bytes, sizes: list[int]) -> list[object]:
    """Receive `wire` the way the server does, in pieces of the given sizes (cycled), handling
    events after each piece; returns the events and answers R2Ts as it goes (none expected)."""
    events: list[object] = []
    pos, i = 0, 0
    while pos < len(wire):
        dest = conn.receive_buffer()
        n = min(len(dest), sizes[i % len(sizes)], len(wire) - pos)
        dest[:n] = wire[pos:pos + n]
        conn.received(n)
        pos += n
        i += 1
        events += drain(conn)
    return events


def big_write(ini: Initiator, edtl: int, payload: bytes, first_burst: int) -> tuple[bytes, int]:
    """A WRITE(16) with `first_burst` bytes of immediate data and the rest as unsolicited
    Data-Out PDUs (InitialR2T=No) of 64 KiB; returns the wire bytes and the ITT."""
    itt = ini.new_itt()
    imm = payload[:first_burst]
    wire = ini.scsi_command(write16(0, edtl // 512), write=True, edtl=edtl, data=imm, itt=itt,
                            final=edtl == len(imm))
    return wire, itt


def test_write_data_lands_in_its_command_buffer_in_any_split() -> None:
    payload = bytes(range(256)) * 256  # 64 KiB: all of FirstBurstLength as immediate data
    for sizes in ([1 << 20], [7], [48, 1000, 65536], [DIRECT_PLACEMENT_MIN - 1, 3]):
        conn, ini = session()
        wire, itt = big_write(ini, len(payload), payload, first_burst=len(payload))
        (ev,) = receive_in_pieces(conn, wire, sizes)
        assert isinstance(ev, ScsiCommand) and ev.itt == itt and bytes(ev.data) == payload
        # received into the buffer WriteCollector.command_buffer() made, not copied out of ours
        assert isinstance(ev.data, memoryview) and isinstance(ev.data.obj, bytearray)
        assert len(ev.data.obj) == len(payload)


def test_solicited_data_out_is_placed_and_digests_still_checked() -> None:
    keys = [(k, "CRC32C" if k == "DataDigest" else v) for k, v in LIBISCSI_OPERATIONAL]
    keys = [(k, "Yes" if k == "InitialR2T" else v) for k, v in keys]
    conn, ini = session(keys)
    ini.data_digest = True  # digests start after the login (RFC 7143 §13.1)
    payload = bytes((i * 7) % 251 for i in range(512 * KiB))
    itt = ini.new_itt()
    first = 64 * KiB  # immediate data up to FirstBurstLength (ours: 64 KiB)
    events = receive_in_pieces(conn, ini.scsi_command(write16(0, 1024), write=True, edtl=len(payload),
                                                      data=payload[:first], itt=itt), [4096])
    assert events == []
    offset = first
    while offset < len(payload):
        (r2t,) = ini.receive(conn.data_to_send())
        assert r2t.opcode == R2T and r2t.buffer_offset == offset
        end = offset + r2t.desired_length
        seq = b""
        for datasn, chunk in enumerate(range(offset, end, 256 * KiB)):
            part = payload[chunk:min(end, chunk + 256 * KiB)]
            seq += ini.data_out(itt, chunk, part, ttt=r2t.ttt, datasn=datasn, final=chunk + len(part) == end)
        events += receive_in_pieces(conn, seq, [30000, 5])
        offset = end
    (ev,) = events
    assert isinstance(ev.data, bytearray) and ev.data == payload  # the command buffer itself

    # a corrupted data digest on a placed segment: Reject 0x02, the command keeps waiting
    itt2 = ini.new_itt()
    receive_in_pieces(conn, ini.scsi_command(write16(0, 256), write=True, edtl=128 * KiB,
                                             data=payload[:first], itt=itt2), [65536])
    (r2t,) = ini.receive(conn.data_to_send())
    bad = bytearray(ini.data_out(itt2, first, payload[first:128 * KiB], ttt=r2t.ttt))
    bad[-1] ^= 0xFF
    assert receive_in_pieces(conn, bytes(bad), [100000]) == []
    (rej,) = ini.receive(conn.data_to_send())
    assert rej.opcode == REJECT and rej.reason == 0x02
    good = ini.data_out(itt2, first, payload[first:128 * KiB], ttt=r2t.ttt)
    (ev2,) = receive_in_pieces(conn, good, [100000])
    assert bytes(ev2.data) == payload[:128 * KiB]


def test_frame_reader_receives_a_large_segment_into_its_destination() -> None:
    payload = bytes((i * 13) % 256 for i in range(40000))
    wire = b"".join(bytes(b) for b in build_pdu(NopOut(immediate=True, itt=1), payload))
    wire += b"".join(bytes(b) for b in build_pdu(NopOut(immediate=True, itt=2), b"tail"))
    dest = bytearray(len(payload))
    asked: list[bytes] = []

    def placement(bhs: bytes, ahs: bytes) -> memoryview | None:
        asked.append(bhs)
        return memoryview(dest)

    reader = FrameReader(max_data_segment=65536)
    reader.placement = placement
    first = reader.receive_buffer()
    first[:100] = wire[:100]  # the header and 52 bytes of data
    reader.received(100)
    assert reader.next_frame() is None and len(asked) == 1
    rest = reader.receive_buffer()
    assert rest.obj is dest and len(rest) == len(payload) - 52  # the kernel writes into `dest`
    rest[:] = wire[100:48 + len(payload)]
    reader.received(len(rest))
    tail = reader.receive_buffer()
    tail[:len(wire) - 48 - len(payload)] = wire[48 + len(payload):]
    reader.received(len(wire) - 48 - len(payload))
    frame = reader.next_frame()
    assert isinstance(frame, Frame) and frame.placed and frame.data.obj is dest and bytes(frame.data) == payload
    small = reader.next_frame()
    assert isinstance(small, Frame) and not small.placed and small.data == b"tail"
    assert len(asked) == 1 and reader.next_frame() is None and reader.buffered == 0


def test_frame_reader_declined_placement_frames_normally() -> None:
    payload = b"d" * 30000
    wire = b"".join(bytes(b) for b in build_pdu(NopOut(immediate=True, itt=1), payload))
    asked = []
    reader = FrameReader(max_data_segment=65536)
    reader.placement = lambda bhs, ahs: asked.append(bhs)  # type: ignore[func-returns-value]
    for i in range(0, len(wire), 1000):  # the header is parsed again each time, asked once
        dest = reader.receive_buffer()
        piece = wire[i:i + 1000]
        dest[:len(piece)] = piece
        reader.received(len(piece))
        frame = reader.next_frame()
    assert isinstance(frame, Frame) and not frame.placed and frame.data == payload and len(asked) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 70000), min_size=1, max_size=6), st.lists(st.integers(0, 3), min_size=1, max_size=5))
def test_receive_buffer_and_receive_data_agree(sizes: list[int], kinds: list[int]) -> None:
    """The same stream of reads, small and large writes gives the same events either way."""
    a, ini_a = session()
    b, ini_b = session()
    wire_a = wire_b = b""
    for k in kinds:
        length = (512, 4096, 20 * KiB, 64 * KiB)[k]
        data = bytes([k + 1]) * length
        if k == 0:
            cdb = struct.pack(">BBQIBB", 0x88, 0, 0, 1, 0, 0)
            wire_a += ini_a.scsi_command(cdb, read=True, edtl=512)
            wire_b += ini_b.scsi_command(cdb, read=True, edtl=512)
        else:
            wire_a += ini_a.scsi_command(write16(0, length // 512), write=True, edtl=length, data=data)
            wire_b += ini_b.scsi_command(write16(0, length // 512), write=True, edtl=length, data=data)
    got_a = receive_in_pieces(a, wire_a, sizes)
    b.receive_data(wire_b)
    got_b = drain(b)
    assert [(e.itt, e.cdb, e.write, bytes(e.data or b"")) for e in got_a] == \
        [(e.itt, e.cdb, e.write, bytes(e.data or b"")) for e in got_b]


# ---- responses ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(edtl=st.integers(0, 300000), length=st.integers(0, 300000), is_read=st.booleans(),
       status=st.sampled_from([0, 2, 0x18]), transfer=st.one_of(st.none(), st.integers(0, 400000)),
       segment=st.sampled_from([512, 8192, 262144]), burst=st.sampled_from([8192, 262144, 1 << 20]),
       sense=st.one_of(st.none(), st.binary(min_size=8, max_size=32)))
def test_single_response_agrees_with_the_general_encoder(edtl: int, length: int, is_read: bool, status: int,
                                                         transfer: int | None, segment: int, burst: int,
                                                         sense: bytes | None) -> None:
    data = bytes(length % 251 for _ in range(1)) * length
    pdus, sent = response_pdus(itt=7, lun=1 << 48, edtl=edtl, is_read=is_read, status=status, data=data,
                               sense=sense, transfer_length=transfer, max_segment=segment, max_burst=burst,
                               statsn=11, exp_cmdsn=12, max_cmdsn=40)
    single = None
    if sense is None:
        single = single_response(7, 1 << 48, edtl, is_read, status, length, transfer, min(segment, burst),
                                 11, 12, 40)
    if single is not None:
        assert len(pdus) == 1 and pdus[0][0] == single
    ini = Initiator()
    parsed = ini.receive([b for header, chunk in pdus for b in (header, chunk, bytes(-len(chunk) % 4))])
    assert len(parsed) == len(pdus)
    last = parsed[-1]
    assert last.final and last.itt == 7 and last.statsn == 11 and last.status == status
    assert all(p.exp_cmdsn == 12 and p.max_cmdsn == 40 for p in parsed)
    data_ins = [p for p in parsed if p.opcode == DATA_IN]
    received = b"".join(p.data for p in data_ins)
    assert received == (data[:edtl] if is_read else b"") and sent == len(received)
    assert [p.datasn for p in data_ins] == list(range(len(data_ins)))
    assert all(len(p.data) <= segment for p in data_ins)
    wanted = (length if transfer is None else transfer) if is_read else (edtl if transfer is None else transfer)
    assert (last.overflow, last.underflow, last.residual) == (wanted > edtl, wanted < edtl, abs(wanted - edtl))
    if sense is not None or not received:
        assert last.opcode == SCSI_RESPONSE and last.exp_datasn == len(data_ins) and last.sense == (sense or b"")
    else:
        assert last.opcode == DATA_IN and last.status_present


# ---- the common-command shortcut ------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(b0=st.sampled_from([0x01, 0x41]), b1=st.integers(0, 255), edtl=st.sampled_from([0, 512, 4096, 70000]),
       dsl=st.sampled_from([0, 512, 4096]), cmdsn_offset=st.sampled_from([0, 1, -1, 200]),
       itt=st.sampled_from([5, 0x10, 0xFFFFFFFF]), ahs=st.booleans())
def test_common_command_shortcut_matches_the_general_path(b0: int, b1: int, edtl: int, dsl: int,
                                                          cmdsn_offset: int, itt: int, ahs: bool) -> None:
    outcomes = []
    for shortcut in (True, False):
        conn, ini = session()
        # ITT 5 is in use by an earlier command waiting for its CmdSN's predecessor
        conn.receive_data(ini.scsi_command(bytes(6), itt=5, cmdsn=ini.cmdsn + 1))
        drain(conn)
        cmdsn = (ini.cmdsn + cmdsn_offset) & 0xFFFFFFFF
        bhs = bytearray(48)
        struct.pack_into(">BBHIQIIII", bhs, 0, b0, b1, 0, dsl, 0, itt, edtl, cmdsn, 0)
        bhs[32:48] = struct.pack(">BBQIBB", 0x8A if b1 & 0x20 else 0x88, 0, 0, edtl // 512, 0, 0)
        frame = Frame(bytes(bhs), bytes(20) if ahs else b"", bytes([9]) * dsl)
        if shortcut:
            conn._ffp.frame(frame)
        else:
            conn._ffp._scsi_command(decode_scsi_command(frame.bhs), frame)
        events = [(type(e).__name__, getattr(e, "itt", None), getattr(e, "data", None)) for e in drain(conn)]
        out = b"".join(bytes(b) for b in conn.data_to_send())
        outcomes.append((events, out, conn.written_bytes, conn.exp_cmdsn, conn.max_cmdsn, sorted(conn._tasks)))
    assert outcomes[0] == outcomes[1]
