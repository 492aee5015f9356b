"""PDU framing on the byte stream: BHS + AHS + header digest + data segment + padding + data digest.

`FrameReader` extracts whole PDUs incrementally from received bytes (RFC 7143 §11.2: the BHS says
how long the AHS and the data segment are), checks CRC32C digests once they are negotiated
(RFC 7143 §13.1: digests start after login) and enforces the length caps: an AHS longer than
`MAX_TOTAL_AHS_WORDS` cannot be trusted (fatal), a data segment longer than what we declared is
skipped without being buffered and reported for a Reject (RFC 7143 §7.8: framing is still known).
`build_pdu` does the reverse and leaves large data buffers (memoryviews into an mmap) uncopied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from .codec import encode_bhs
from .limits import BHS_LENGTH, DEFAULT_MRDSL, DIGEST_LENGTH, MAX_TOTAL_AHS_WORDS, PAD_UNIT
from .pdu import Pdu

Buffer = bytes | bytearray | memoryview

#: digests are sent as the little-endian CRC32C value (RFC 7143 §13.1 and its Appendix B.4 test
#: vector: 32 zero bytes give 0x8a9136aa, sent as aa 36 91 8a)
_DIGEST = struct.Struct("<I")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
#: data smaller than this is joined with its header into one bytes object (fewer iovecs)
_JOIN_BELOW = 4096
#: compact the receive buffer once this many consumed bytes sit at its front
_COMPACT_AT = 65536


def crc32c(data: Buffer, value: int = 0) -> int:
    return _crc32c.crc32c(data, value)


def pad_length(length: int) -> int:
    """Bytes of zero padding after a data segment of `length` bytes (RFC 7143 §11.2.3)."""
    return (-length) % PAD_UNIT


@dataclass(slots=True)
class Frame:
    """One received PDU. `data` excludes padding; `data_digest_ok` is False on a CRC mismatch."""

    bhs: bytes
    ahs: bytes
    data: bytes | bytearray
    data_digest_ok: bool = True


@dataclass(slots=True)
class FrameError:
    """A PDU that cannot be delivered. `fatal`: the stream cannot be trusted any more and the
    connection must close; otherwise the PDU was skipped and `bhs` can go into a Reject."""

    kind: str  # "header_digest" | "ahs_too_long" | "data_too_long"
    fatal: bool
    bhs: bytes


class FrameReader:
    """Incremental PDU extraction from a byte stream."""

    def __init__(self, max_data_segment: int = DEFAULT_MRDSL,
                 max_ahs_words: int = MAX_TOTAL_AHS_WORDS) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._skip = 0
        self.max_data_segment = max_data_segment
        self.max_ahs_words = max_ahs_words
        self.header_digest = False
        self.data_digest = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (a partial PDU)."""
        return len(self._buf) - self._pos

    def feed(self, data: Buffer) -> None:
        if self._pos >= _COMPACT_AT or self._pos == len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | FrameError | None:
        """The next complete PDU, a FrameError, or None when more bytes are needed."""
        if self._skip and not self._discard():
            return None
        avail = len(self._buf) - self._pos
        if avail < BHS_LENGTH:
            return None
        start = self._pos
        buf = self._buf
        ahs_len = buf[start + 4] * 4
        if ahs_len > self.max_ahs_words * 4:
            return FrameError("ahs_too_long", True, bytes(buf[start:start + BHS_LENGTH]))
        header_len = BHS_LENGTH + ahs_len + (DIGEST_LENGTH if self.header_digest else 0)
        if avail < header_len:
            return None
        if self.header_digest and not self._header_digest_ok(start, BHS_LENGTH + ahs_len):
            return FrameError("header_digest", True, bytes(buf[start:start + BHS_LENGTH]))
        dsl = int.from_bytes(buf[start + 5:start + 8], "big")
        padded = dsl + pad_length(dsl)
        data_digest = DIGEST_LENGTH if (self.data_digest and dsl) else 0
        if dsl > self.max_data_segment:
            bhs = bytes(buf[start:start + BHS_LENGTH])
            self._skip = header_len + padded + data_digest
            self._discard()
            return FrameError("data_too_long", False, bhs)
        total = header_len + padded + data_digest
        if avail < total:
            return None
        return self._take(start, ahs_len, header_len, dsl, padded, data_digest)

    def _take(self, start: int, ahs_len: int, header_len: int, dsl: int, padded: int,
              data_digest: int) -> Frame:
        buf = self._buf
        data_at = start + header_len
        frame = Frame(
            bhs=bytes(buf[start:start + BHS_LENGTH]),
            ahs=bytes(buf[start + BHS_LENGTH:start + BHS_LENGTH + ahs_len]),
            data=buf[data_at:data_at + dsl],
        )
        if data_digest:
            with memoryview(buf) as view:
                computed = crc32c(view[data_at:data_at + padded])
            (sent,) = _DIGEST.unpack_from(buf, data_at + padded)
            frame.data_digest_ok = computed == sent
        self._pos = start + header_len + padded + data_digest
        return frame

    def _header_digest_ok(self, start: int, length: int) -> bool:
        with memoryview(self._buf) as view:
            computed = crc32c(view[start:start + length])
        (sent,) = _DIGEST.unpack_from(self._buf, start + length)
        return computed == sent

    def _discard(self) -> bool:
        """Drop bytes of a skipped PDU; True once all of it is gone."""
        n = min(self._skip, len(self._buf) - self._pos)
        self._pos += n
        self._skip -= n
        return self._skip == 0


def build_pdu(pdu: Pdu, data: Buffer = b"", *, ahs: bytes = b"", header_digest: bool = False,
              data_digest: bool = False) -> list[Buffer]:
    """The wire form of `pdu` with its data segment, as a list of buffers for one sendmsg().

    Fills in the BHS length fields. A large `data` is put in the list as-is (not copied)."""
    dsl = len(data)
    pdu.total_ahs_length = len(ahs) // PAD_UNIT
    pdu.data_segment_length = dsl
    header = encode_bhs(pdu) + ahs
    if header_digest:
        header += _DIGEST.pack(crc32c(header))
    if not dsl:
        return [header]
    pad = _PADDING[dsl & 3]
    if data_digest:
        trailer = pad + _DIGEST.pack(crc32c(pad, crc32c(data)))
    else:
        trailer = pad
    if dsl < _JOIN_BELOW:
        return [b"".join((header, data, trailer))]
    return [header, data, trailer] if trailer else [header, data]
