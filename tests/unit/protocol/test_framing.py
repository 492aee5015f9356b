"""Framing: incremental extraction, padding, CRC32C digests, AHS and data segment caps."""

from __future__ import annotations

import struct

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyscsi_target.protocol.framing import Frame, FrameError, FrameReader, build_pdu, pad_length
from pyscsi_target.protocol.pdu import DataIn, NopOut


def nop_out(data: bytes = b"", ahs: bytes = b"", *, hd: bool = False, dd: bool = False) -> bytes:
    return b"".join(bytes(b) for b in build_pdu(NopOut(immediate=True, itt=1), data, ahs=ahs,
                                                header_digest=hd, data_digest=dd))


def test_rfc_crc32c_vector_and_little_endian_digest() -> None:
    # RFC 7143 Appendix B.4 (RFC 3720 B.4): 32 bytes of zeros -> 0x8a9136aa, sent as aa 36 91 8a
    assert crc32c.crc32c(bytes(32)) == 0x8A9136AA
    header = nop_out(hd=True)
    assert header[48:] == struct.pack("<I", crc32c.crc32c(header[:48]))


@pytest.mark.parametrize(("length", "pad"), [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (8193, 3)])
def test_padding(length: int, pad: int) -> None:
    assert pad_length(length) == pad
    wire = nop_out(b"x" * length)
    assert len(wire) == 48 + length + pad
    assert int.from_bytes(wire[5:8], "big") == length  # DataSegmentLength excludes padding


def test_frames_arrive_byte_by_byte() -> None:
    reader = FrameReader()
    wire = nop_out(b"hello") + nop_out(b"") + nop_out(b"abcd")
    frames = []
    for i in range(len(wire)):
        reader.feed(wire[i:i + 1])
        frame = reader.next_frame()
        if frame is not None:
            frames.append(frame)
    assert [bytes(f.data) for f in frames if isinstance(f, Frame)] == [b"hello", b"", b"abcd"]
    assert reader.next_frame() is None and reader.buffered == 0


@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(1, 97), st.booleans(), st.booleans())
def test_any_split_gives_the_same_frames(payloads: list[bytes], chunk: int, hd: bool, dd: bool) -> None:
    reader = FrameReader()
    reader.header_digest, reader.data_digest = hd, dd
    wire = b"".join(nop_out(p, hd=hd, dd=dd) for p in payloads)
    got: list[bytes] = []
    for i in range(0, len(wire), chunk):
        reader.feed(wire[i:i + chunk])
        while (frame := reader.next_frame()) is not None:
            assert isinstance(frame, Frame) and frame.data_digest_ok
            got.append(bytes(frame.data))
    assert got == payloads


def test_header_digest_mismatch_is_fatal() -> None:
    reader = FrameReader()
    reader.header_digest = True
    wire = bytearray(nop_out(b"abc", hd=True))
    wire[48] ^= 1
    reader.feed(wire)
    err = reader.next_frame()
    assert isinstance(err, FrameError) and err.kind == "header_digest" and err.fatal


def test_data_digest_mismatch_is_reported_not_fatal() -> None:
    reader = FrameReader()
    reader.data_digest = True
    wire = bytearray(nop_out(b"abcdef", dd=True) + nop_out(b"ok", dd=True))
    wire[50] ^= 0xFF  # inside the first data segment
    reader.feed(wire)
    first, second = reader.next_frame(), reader.next_frame()
    assert isinstance(first, Frame) and not first.data_digest_ok
    assert isinstance(second, Frame) and second.data_digest_ok and bytes(second.data) == b"ok"


def test_no_data_digest_without_data() -> None:
    # RFC 7143 §11.2.3: the data digest exists only with a data segment
    assert len(nop_out(b"", hd=True, dd=True)) == 52
    assert len(nop_out(b"a", hd=True, dd=True)) == 48 + 4 + 4 + 4


def test_oversized_data_segment_is_skipped_without_buffering() -> None:
    reader = FrameReader(max_data_segment=8192)
    big = nop_out(b"z" * 8193)
    reader.feed(big[:1000])
    err = reader.next_frame()
    assert isinstance(err, FrameError) and err.kind == "data_too_long" and not err.fatal
    assert err.bhs == big[:48]
    reader.feed(big[1000:] + nop_out(b"next"))
    frame = reader.next_frame()
    assert isinstance(frame, Frame) and bytes(frame.data) == b"next"


@pytest.mark.parametrize("length", [8189, 8190, 8191, 8192])
def test_data_segment_at_the_limit_is_accepted(length: int) -> None:
    reader = FrameReader(max_data_segment=8192)
    reader.feed(nop_out(b"q" * length))
    frame = reader.next_frame()
    assert isinstance(frame, Frame) and len(frame.data) == length


def test_ahs_too_long_is_fatal_and_ahs_is_returned() -> None:
    reader = FrameReader(max_ahs_words=2)
    reader.feed(nop_out(ahs=bytes(8)))
    frame = reader.next_frame()
    assert isinstance(frame, Frame) and frame.ahs == bytes(8)
    reader.feed(nop_out(ahs=bytes(12)))
    err = reader.next_frame()
    assert isinstance(err, FrameError) and err.kind == "ahs_too_long" and err.fatal


def test_large_data_is_not_copied_into_the_output() -> None:
    payload = memoryview(bytearray(100_000))
    bufs = build_pdu(DataIn(itt=1), payload)
    assert any(b is payload for b in bufs)


def test_build_with_data_digest_covers_padding() -> None:
    wire = b"".join(bytes(b) for b in build_pdu(DataIn(itt=1), b"abcde", data_digest=True))
    body = wire[48:56]
    assert body == b"abcde\0\0\0"
    assert wire[56:] == struct.pack("<I", crc32c.crc32c(body))
