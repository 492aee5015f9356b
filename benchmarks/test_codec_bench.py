"""Micro-benchmarks of the iSCSI codec and framing (pytest-benchmark), per layer so that a
regression shows where it happened (docs/performance.md "Micro-benchmarks").

Outside `testpaths`: run with `.venv/bin/pytest benchmarks/test_codec_bench.py`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pyscsi_target.protocol.codec import construct_decode, construct_encode, decode_bhs, encode_bhs
from pyscsi_target.protocol.fastpath import decode_scsi_command
from pyscsi_target.protocol.framing import Frame, FrameReader, build_pdu
from pyscsi_target.protocol.pdu import DataIn, NopOut
from pyscsi_target.protocol.responses import response_pdus, single_response
from tests.initiator import Initiator

READ16 = struct.pack(">BBQIBB", 0x88, 0, 1234, 8, 0, 0)
#: commands per received batch: a QD16 initiator's worth
BATCH = 16


def _command_bhs() -> bytes:
    return Initiator().scsi_command(READ16, read=True, edtl=4096)[:48]


def test_decode_scsi_command_fastpath(benchmark: Callable[..., object]) -> None:
    bhs = _command_bhs()
    benchmark(decode_scsi_command, bhs)


def test_decode_scsi_command_construct(benchmark: Callable[..., object]) -> None:
    """The reference definition, for scale: what the fast path saves per PDU."""
    bhs = _command_bhs()
    benchmark(construct_decode, bhs)


def test_decode_bhs_dispatch(benchmark: Callable[..., object]) -> None:
    bhs = _command_bhs()
    benchmark(decode_bhs, bhs)


def test_encode_data_in_fastpath(benchmark: Callable[..., object]) -> None:
    pdu = DataIn(final=True, status_present=True, itt=9, statsn=3, exp_cmdsn=4, max_cmdsn=20,
                 data_segment_length=4096)
    benchmark(encode_bhs, pdu)


def test_encode_data_in_construct(benchmark: Callable[..., object]) -> None:
    pdu = DataIn(final=True, status_present=True, itt=9, statsn=3, exp_cmdsn=4, max_cmdsn=20,
                 data_segment_length=4096)
    benchmark(construct_encode, pdu)


def test_single_response_4k_read(benchmark: Callable[..., object]) -> None:
    """The per-command encoding of a 4 KiB read's answer: one Data-In with status."""
    benchmark(single_response, 9, 0, 4096, True, 0, 4096, None, 262144, 3, 4, 20)


def test_response_pdus_1m_read(benchmark: Callable[..., object]) -> None:
    """A 1 MiB read split into 256 KiB Data-In PDUs (slices of one buffer, no copies)."""
    data = memoryview(bytes(1 << 20))
    benchmark(lambda: response_pdus(itt=9, lun=0, edtl=1 << 20, is_read=True, status=0, data=data, sense=None,
                                    transfer_length=None, max_segment=262144, max_burst=1 << 20, statsn=3,
                                    exp_cmdsn=4, max_cmdsn=20))


def test_build_pdu_nop_in_with_data(benchmark: Callable[..., object]) -> None:
    benchmark(build_pdu, NopOut(immediate=True, itt=1), b"p" * 64)


def test_frame_a_batch_of_commands(benchmark: Callable[..., object]) -> None:
    """Cutting BATCH SCSI Command PDUs out of one receive (what one socket wake-up brings)."""
    ini = Initiator()
    wire = b"".join(ini.scsi_command(READ16, read=True, edtl=4096) for _ in range(BATCH))
    reader = FrameReader()

    def frame_batch() -> int:
        dest = reader.receive_buffer()
        dest[:len(wire)] = wire
        reader.received(len(wire))
        count = 0
        while isinstance(reader.next_frame(), Frame):
            count += 1
        return count

    assert frame_batch() == BATCH
    benchmark(frame_batch)
