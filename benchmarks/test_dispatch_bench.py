"""Micro-benchmarks of command dispatch (pytest-benchmark): `scsi.execute()` alone, and one READ
or WRITE through the sans-IO connection and the SCSI core together, the way the server's reader
handles a received batch (docs/performance.md "Where the time goes").

Outside `testpaths`: run with `.venv/bin/pytest benchmarks/test_dispatch_bench.py`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyscsi_target import scsi
from pyscsi_target.protocol import NEED_DATA, Connection, ScsiCommand
from pyscsi_target.scsi import LogicalUnit, LuIdentity, Nexus, ScsiRequest
from pyscsi_target.storage import Backend, FileBackend, MemoryBackend
from tests.initiator import Initiator
from tests.unit.protocol.support import LIBISCSI_OPERATIONAL, FakeAuthority, login

BS = 4096
#: extent size for the benchmarks, bytes
EXTENT_BYTES = 64 << 20
#: commands per received batch (QD16)
BATCH = 16
NEXUS = Nexus("iqn.2026-11.org.example:bench,i,0x800000000001", "iqn.2005-10.org.freenas.ctl:demo,t,0x0001")
IDENTITY = LuIdentity(serial="bench", naa="0x6589cfc000000" + "0" * 19)


@pytest.fixture(params=["memory", "file"])
def lu(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogicalUnit]:
    backend: Backend
    if request.param == "memory":
        backend = MemoryBackend(EXTENT_BYTES // BS, BS)
    else:
        backend = FileBackend(tmp_path / "extent.img", BS, size_bytes=EXTENT_BYTES, create=True)
        backend.write_same(0, backend.num_blocks, bytes(range(256)) * (BS // 256))  # hot, allocated
    unit = LogicalUnit(backend, IDENTITY, host=scsi.STANDALONE)
    unit.seen(NEXUS)
    unit.pop_unit_attention(NEXUS)  # what TEST UNIT READY after login consumes
    yield unit
    backend.close()


def _lbas(nblocks: int) -> Iterator[int]:
    rng = random.Random(7)
    while True:
        yield rng.randrange(0, EXTENT_BYTES // BS - nblocks)


def test_execute_read16_4k(benchmark: Callable[..., object], lu: LogicalUnit) -> None:
    luns = {0: lu}
    lbas = _lbas(1)

    def one() -> object:
        cdb = struct.pack(">BBQIBB", 0x88, 0, next(lbas), 1, 0, 0)
        return scsi.execute(ScsiRequest(cdb, 0, NEXUS, None, 1), luns, nowait=True)

    benchmark(one)


def test_execute_write16_4k(benchmark: Callable[..., object], lu: LogicalUnit) -> None:
    luns = {0: lu}
    lbas = _lbas(1)
    data = memoryview(b"w" * BS)

    def one() -> object:
        cdb = struct.pack(">BBQIBB", 0x8A, 0, next(lbas), 1, 0, 0)
        return scsi.execute(ScsiRequest(cdb, 0, NEXUS, data, 1), luns, nowait=True)

    benchmark(one)


def _pipeline(lu: LogicalUnit, write: bool) -> tuple[Callable[[], tuple[tuple[bytes], dict[str, object]]],
                                                      Callable[[bytes], int]]:
    """A logged-in connection. Returns (setup, batch): setup builds BATCH commands (untimed, the
    test initiator is slow), batch receives them in one buffer and answers them, as
    server/connection.py does per wake-up."""
    conn = Connection(FakeAuthority())
    ini = Initiator()
    login(conn, ini, LIBISCSI_OPERATIONAL)
    luns = {0: lu}
    lbas = _lbas(1)
    data = b"d" * BS

    def setup() -> tuple[tuple[bytes], dict[str, object]]:
        wire = b"".join(
            ini.scsi_command(struct.pack(">BBQIBB", 0x8A if write else 0x88, 0, next(lbas), 1, 0, 0),
                             write=write, read=not write, edtl=BS, data=data if write else b"")
            for _ in range(BATCH))
        return (wire,), {}

    def batch(wire: bytes) -> int:
        dest = conn.receive_buffer()
        dest[:len(wire)] = wire
        conn.received(len(wire))
        answered = 0
        while (ev := conn.next_event()) is not NEED_DATA:
            assert isinstance(ev, ScsiCommand)
            req = ScsiRequest(ev.cdb, ev.lun, NEXUS, ev.data, ev.itt)
            res = scsi.execute(req, luns, nowait=True)
            conn.send_scsi_response(ev.itt, res.status, res.data, res.sense, res.transfer_length)
            answered += 1
        conn.data_to_send()
        return answered

    return setup, batch


#: timed rounds of the pipeline benchmarks (each a batch of BATCH commands)
PIPELINE_ROUNDS = 300


def test_pipeline_read_4k_batch(benchmark: Callable[..., object], lu: LogicalUnit) -> None:
    setup, batch = _pipeline(lu, write=False)
    assert batch(*setup()[0]) == BATCH
    benchmark.pedantic(batch, setup=setup, rounds=PIPELINE_ROUNDS)  # type: ignore[attr-defined]


def test_pipeline_write_4k_batch(benchmark: Callable[..., object], lu: LogicalUnit) -> None:
    setup, batch = _pipeline(lu, write=True)
    assert batch(*setup()[0]) == BATCH
    benchmark.pedantic(batch, setup=setup, rounds=PIPELINE_ROUNDS)  # type: ignore[attr-defined]
