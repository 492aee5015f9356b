"""PDU framing on the byte stream: BHS + AHS + header digest + data segment + padding + data digest.

`FrameReader` extracts whole PDUs incrementally from received bytes (RFC 7143 §11.2: the BHS says
how long the AHS and the data segment are), checks CRC32C digests once they are negotiated
(RFC 7143 §13.1: digests start after login) and enforces the length caps: an AHS longer than
`max_ahs_words` cannot be trusted (fatal), a data segment longer than what we declared is
skipped without being buffered and reported for a Reject (RFC 7143 §7.8: framing is still known).
`build_pdu` does the reverse and leaves large data buffers uncopied (a list for one sendmsg).

The data path (ARCHITECTURE.md, docs/performance.md): the reader owns one fixed receive buffer
that the server `recv_into()`s through `receive_buffer()`/`received()`, and PDUs are cut from it
with index arithmetic, several per wake-up. A data segment of at least `DIRECT_PLACEMENT_MIN`
bytes is offered to `placement` (the connection's write-data collector) as soon as its header
is complete; when that returns a destination, the bytes already buffered are copied there and
the rest of the segment is received straight into it, so write data reaches its command buffer
with one copy instead of three. Other data segments are copied out as `bytes`, so a Frame never
refers to the receive buffer, which is reused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import crc32c as _crc32c

from .codec import encode_bhs
from .limits import BHS_LENGTH, DEFAULT_MRDSL, DIGEST_LENGTH, MAX_TOTAL_AHS_WORDS, PAD_UNIT
from .pdu import Pdu

Buffer = bytes | bytearray | memoryview

#: digests are sent as the little-endian CRC32C value (RFC 7143 §13.1 and its Appendix B.4 test
#: vector: 32 zero bytes give 0x8a9136aa, sent as aa 36 91 8a)
_DIGEST = struct.Struct("<I")
#: the zero padding after a data segment, by its length modulo 4 (RFC 7143 §11.2.3)
PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
#: data smaller than this is joined with its header into one bytes object (fewer iovecs)
JOIN_BELOW = 4096
#: bytes of the receive buffer: several PDUs per recv, and a whole PDU with the largest data
#: segment we declare (TARGET_MRDSL 256 KiB) plus its header; grown only for larger ones
RECEIVE_BUFFER_BYTES = 512 * 1024
#: bytes; a data segment this long or longer is offered to `placement` (direct receive). Below
#: it, copying out of the receive buffer costs less than a separate recv(2) into the target.
DIRECT_PLACEMENT_MIN = 16 * 1024
#: compact (move the partial PDU to the front) when less than this many bytes are free at the end
_MIN_FREE = 64 * 1024
#: bytes of the receive buffer before login: a connection costs this much from accept on, before
#: anyone knows who it is (target-rules §5.2 "allocate login buffers lazily, capped at 8 KiB plus
#: 48 bytes"); two whole Login PDUs (48 + 8192 + padding) fit. `enlarge()` makes it
#: RECEIVE_BUFFER_BYTES once the login is complete.
LOGIN_RECEIVE_BUFFER_BYTES = 16 * 1024
#: bytes kept free for each receive before login: one whole Login PDU (RFC 7143 §13.12)
LOGIN_MIN_FREE = BHS_LENGTH + DEFAULT_MRDSL

#: (BHS, AHS) of a PDU whose data segment is at least DIRECT_PLACEMENT_MIN bytes -> a writable
#: buffer of exactly DataSegmentLength bytes to receive that data into, or None
Placement = Callable[[bytes, bytes], memoryview | None]


def crc32c(data: Buffer, value: int = 0) -> int:
    return _crc32c.crc32c(data, value)


def pad_length(length: int) -> int:
    """Bytes of zero padding after a data segment of `length` bytes (RFC 7143 §11.2.3)."""
    return (-length) % PAD_UNIT


@dataclass(slots=True)
class Frame:
    """One received PDU. `data` excludes padding; `data_digest_ok` is False on a CRC mismatch.
    `placed`: `data` is the destination `placement` returned (a memoryview), already filled."""

    bhs: bytes
    ahs: bytes
    data: bytes | bytearray | memoryview
    data_digest_ok: bool = True
    placed: bool = False


@dataclass(slots=True)
class FrameError:
    """A PDU that cannot be delivered. `fatal`: the stream cannot be trusted any more and the
    connection must close; otherwise the PDU was skipped and `bhs` can go into a Reject."""

    kind: str  # "header_digest" | "ahs_too_long" | "data_too_long"
    fatal: bool
    bhs: bytes


@dataclass(slots=True)
class _Direct:
    """A data segment being received straight into its destination."""

    bhs: bytes
    ahs: bytes
    dest: memoryview
    got: int
    trailer: int  # padding + data digest bytes that follow, read through the receive buffer


class FrameReader:
    """Incremental PDU extraction from a byte stream, over one reusable receive buffer."""

    def __init__(self, max_data_segment: int = DEFAULT_MRDSL,
                 max_ahs_words: int = MAX_TOTAL_AHS_WORDS,
                 buffer_bytes: int = RECEIVE_BUFFER_BYTES, min_free: int = _MIN_FREE) -> None:
        self._buf = bytearray(buffer_bytes)
        self.min_free = min_free
        self._view = memoryview(self._buf)
        self._pos = 0  # first byte not consumed
        self._end = 0  # end of the received bytes
        self._skip = 0
        self._direct: _Direct | None = None
        self._declined = -1  # position of the PDU whose data `placement` declined
        self.max_data_segment = max_data_segment
        self.max_ahs_words = max_ahs_words
        self.header_digest = False
        self.data_digest = False
        self.placement: Placement | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (a partial PDU)."""
        direct = self._direct
        return self._end - self._pos + (direct.got + len(direct.bhs) if direct is not None else 0)

    # ---- receiving -----------------------------------------------------------------------------

    def receive_buffer(self) -> memoryview:
        """Where the next received bytes go (the server's recv_into target); then `received()`."""
        direct = self._direct
        if direct is not None and direct.got < len(direct.dest):
            return direct.dest[direct.got:]
        if len(self._buf) - self._end < self.min_free:
            self._make_room(self.min_free)
        return self._view[self._end:]

    def enlarge(self, buffer_bytes: int = RECEIVE_BUFFER_BYTES, min_free: int = _MIN_FREE) -> None:
        """The data path's buffer sizes, once the small pre-login buffer has done its job."""
        self.min_free = min_free
        if len(self._buf) < buffer_bytes:
            grown = bytearray(buffer_bytes)
            grown[:self._end] = self._buf[:self._end]
            self._buf, self._view = grown, memoryview(grown)

    def received(self, count: int) -> None:
        """`count` bytes were written at the start of the last `receive_buffer()`."""
        direct = self._direct
        if direct is not None and direct.got < len(direct.dest):
            direct.got += count
        else:
            self._end += count

    def feed(self, data: Buffer) -> None:
        """Copy received bytes in (for callers that do not receive into `receive_buffer()`)."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        while len(view):
            direct = self._direct
            if direct is not None and direct.got < len(direct.dest):
                dest = direct.dest[direct.got:]
            else:
                self._make_room(len(view))
                dest = self._view[self._end:]
            n = min(len(dest), len(view))
            dest[:n] = view[:n]
            self.received(n)
            view = view[n:]

    def _make_room(self, wanted: int) -> None:
        """At least `wanted` free bytes at the end: drop consumed bytes, grow when still short."""
        pos, end = self._pos, self._end
        if pos:
            if pos < end:
                self._buf[:end - pos] = self._buf[pos:end]  # only a partial PDU: small
            self._pos, self._end = 0, end - pos
            self._declined -= pos
        if len(self._buf) - self._end < wanted:
            grown = bytearray(max(2 * len(self._buf), self._end + wanted))
            grown[:self._end] = self._buf[:self._end]
            self._buf, self._view = grown, memoryview(grown)

    # ---- parsing -------------------------------------------------------------------------------

    def next_frame(self) -> Frame | FrameError | None:
        """The next complete PDU, a FrameError, or None when more bytes are needed."""
        if self._direct is not None:
            return self._finish_direct()
        if self._skip and not self._discard():
            return None
        start = self._pos
        avail = self._end - start
        if avail < BHS_LENGTH:
            return None
        buf = self._buf
        ahs_len = buf[start + 4] * 4
        if ahs_len > self.max_ahs_words * 4:
            return FrameError("ahs_too_long", True, bytes(buf[start:start + BHS_LENGTH]))
        header_len = BHS_LENGTH + ahs_len + (DIGEST_LENGTH if self.header_digest else 0)
        if avail < header_len:
            return None
        if self.header_digest and not self._header_digest_ok(start, BHS_LENGTH + ahs_len):
            return FrameError("header_digest", True, bytes(buf[start:start + BHS_LENGTH]))
        dsl = (buf[start + 5] << 16) | (buf[start + 6] << 8) | buf[start + 7]
        padded = dsl + (-dsl & 3)
        data_digest = DIGEST_LENGTH if (self.data_digest and dsl) else 0
        if dsl > self.max_data_segment:
            bhs = bytes(buf[start:start + BHS_LENGTH])
            self._skip = header_len + padded + data_digest
            self._discard()
            return FrameError("data_too_long", False, bhs)
        if dsl >= DIRECT_PLACEMENT_MIN and self.placement is not None and self._declined != start:
            if self._place(start, ahs_len, header_len, dsl, padded - dsl + data_digest):
                return self._finish_direct()
            self._declined = start
        total = header_len + padded + data_digest
        if avail < total:
            if len(buf) - start < total:
                self._make_room(total - avail)  # the PDU needs more room than is left
            return None
        return self._take(start, ahs_len, header_len, dsl, padded, data_digest)

    def _take(self, start: int, ahs_len: int, header_len: int, dsl: int, padded: int,
              data_digest: int) -> Frame:
        buf = self._buf
        data_at = start + header_len
        frame = Frame(
            bytes(buf[start:start + BHS_LENGTH]),
            bytes(buf[start + BHS_LENGTH:start + BHS_LENGTH + ahs_len]) if ahs_len else b"",
            bytes(self._view[data_at:data_at + dsl]) if dsl else b"",
        )
        if data_digest:
            computed = crc32c(self._view[data_at:data_at + padded])
            (sent,) = _DIGEST.unpack_from(buf, data_at + padded)
            frame.data_digest_ok = computed == sent
        self._pos = start + header_len + padded + data_digest
        return frame

    def _place(self, start: int, ahs_len: int, header_len: int, dsl: int, trailer: int) -> bool:
        """Ask `placement` for this PDU's data destination; on a yes, move the buffered part of
        the data there and continue in direct mode. False: the PDU is framed the usual way."""
        assert self.placement is not None
        buf = self._buf
        bhs = bytes(buf[start:start + BHS_LENGTH])
        ahs = bytes(buf[start + BHS_LENGTH:start + BHS_LENGTH + ahs_len]) if ahs_len else b""
        dest = self.placement(bhs, ahs)
        if dest is None or len(dest) != dsl:
            return False
        data_at = start + header_len
        have = min(dsl, self._end - data_at)
        dest[:have] = self._view[data_at:data_at + have]
        self._pos = data_at + have
        self._direct = _Direct(bhs, ahs, dest, have, trailer)
        return True

    def _finish_direct(self) -> Frame | None:
        """The Frame of a directly received data segment once it and its trailer are in."""
        direct = self._direct
        assert direct is not None
        if direct.got < len(direct.dest) or self._end - self._pos < direct.trailer:
            return None
        self._direct = None
        frame = Frame(direct.bhs, direct.ahs, direct.dest, placed=True)
        if direct.trailer:
            pos = self._pos
            pad = direct.trailer - (DIGEST_LENGTH if self.data_digest else 0)
            if self.data_digest:
                computed = crc32c(self._view[pos:pos + pad], crc32c(direct.dest))
                (sent,) = _DIGEST.unpack_from(self._buf, pos + pad)
                frame.data_digest_ok = computed == sent
            self._pos = pos + direct.trailer
        return frame

    def _header_digest_ok(self, start: int, length: int) -> bool:
        computed = crc32c(self._view[start:start + length])
        (sent,) = _DIGEST.unpack_from(self._buf, start + length)
        return computed == sent

    def _discard(self) -> bool:
        """Drop bytes of a skipped PDU; True once all of it is gone."""
        n = min(self._skip, self._end - self._pos)
        self._pos += n
        self._skip -= n
        if self._pos == self._end:
            self._pos = self._end = 0  # nothing buffered: start over at the front
        return self._skip == 0


def build_pdu(pdu: Pdu, data: Buffer = b"", *, ahs: bytes = b"", header_digest: bool = False,
              data_digest: bool = False) -> list[Buffer]:
    """The wire form of `pdu` with its data segment, as a list of buffers for one sendmsg().

    Fills in the BHS length fields. A large `data` is put in the list as-is (not copied)."""
    pdu.total_ahs_length = len(ahs) // PAD_UNIT
    pdu.data_segment_length = len(data)
    return frame_pdu(encode_bhs(pdu) + ahs, data, header_digest, data_digest)


def frame_pdu(header: bytes, data: Buffer, header_digest: bool, data_digest: bool) -> list[Buffer]:
    """Digests and padding around a finished header (BHS + AHS, length fields set) and its data
    segment (RFC 7143 §11.2): buffers for sendmsg, small data joined to its header."""
    if header_digest:
        header += _DIGEST.pack(crc32c(header))
    dsl = len(data)
    if not dsl:
        return [header]
    pad = PADDING[dsl & 3]
    if data_digest:
        trailer = pad + _DIGEST.pack(crc32c(pad, crc32c(data)))
    else:
        trailer = pad
    if dsl < JOIN_BELOW:
        return [b"".join((header, data, trailer))]
    return [header, data, trailer] if trailer else [header, data]
