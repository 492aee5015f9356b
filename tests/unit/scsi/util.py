"""Helpers for the SCSI core tests: nexuses, an identity, command runners, sense parsing,
`SparseBackend`, a Backend implementation (interface only, our own test double over a dict) that
can report huge capacities, count flushes and fail on demand, and `FabricDouble`, an `LuHost`
(the interface the core asks the fabric through) whose answers the tests set."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from pyscsi_target.scsi import LogicalUnit, LuIdentity, Nexus, ScsiRequest, ScsiResult, execute
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD
from pyscsi_target.storage.base import Backend, Buffer, StorageError

TARGET_PORT = "iqn.2005-10.org.freenas.ctl:t1,t,0x0001"
NEXUS = Nexus("iqn.1993-08.org.debian:01:aa,i,0x00023d000001", TARGET_PORT, relative_port_id=1)
OTHER = Nexus("iqn.1993-08.org.debian:01:bb,i,0x00023d000002", TARGET_PORT, relative_port_id=1)
NAA = "0x6589cfc000000" + "0123456789abcdef012"
SERIAL = "08002724ab5601"


def identity(**kw: object) -> LuIdentity:
    kw.setdefault("serial", SERIAL)
    kw.setdefault("naa", NAA)
    return LuIdentity(**kw)  # type: ignore[arg-type]


class FabricDouble:
    """An `LuHost` for the core tests (the server's is server/fabric.py): nexuses are alive unless
    `alive` says otherwise, `lus` are the LUs found by NAA designator, PR state goes to `saved`
    when `persist` is set (`save_error` makes saving fail), and background work is recorded in
    `background` as (run, stop) for the test to run itself, on a virtual clock."""

    def __init__(self) -> None:
        self.alive: dict[Nexus, bool] = {}
        self.lus: dict[bytes, LogicalUnit] = {}
        self.persist = False
        self.save_error: OSError | None = None
        self.saved: list[dict[str, object]] = []
        self.background: list[tuple[Callable[[], object], Callable[[], None]]] = []

    def nexus_alive(self, nexus: Nexus) -> bool:
        return self.alive.get(nexus, True)

    def find_lu(self, designator: bytes) -> LogicalUnit | None:
        return self.lus.get(designator)

    def persists_pr(self, lu: LogicalUnit) -> bool:
        return self.persist

    def save_pr_state(self, lu: LogicalUnit, state: dict[str, object]) -> None:
        if self.save_error is not None:
            raise self.save_error
        self.saved.append(state)

    def run_background(self, run: Callable[[], object], stop: Callable[[], None]) -> None:
        self.background.append((run, stop))


def new_lu(backend: Backend, ident: LuIdentity | None = None) -> LogicalUnit:
    """A logical unit served by a fresh `FabricDouble` (its `host`)."""
    return LogicalUnit(backend, ident or identity(), host=FabricDouble())


def fabric(lu: LogicalUnit) -> FabricDouble:
    """The test fabric of an LU built by `new_lu`."""
    assert isinstance(lu.host, FabricDouble)
    return lu.host


def connect(lu: LogicalUnit, *nexuses: Nexus) -> LogicalUnit:
    """What an initiator does after login (libiscsi's iscsi_full_connect, Linux's scan): TEST
    UNIT READY until no unit attention is left, which consumes the power-on UA (29/00)."""
    for nexus in nexuses or (NEXUS, OTHER):
        for _ in range(MAX_LOGIN_UNIT_ATTENTIONS):
            if run(lu, bytes(6), nexus=nexus).status == GOOD:
                break
        else:
            raise AssertionError("unit attentions do not clear")
    return lu


def make_lu(backend: Backend, ident: LuIdentity) -> LogicalUnit:
    """A logical unit that NEXUS and OTHER have logged in to."""
    return connect(new_lu(backend, ident))


#: libiscsi gives up a login after this many unit attentions
MAX_LOGIN_UNIT_ATTENTIONS = 10


def run(
    luns: Mapping[int, LogicalUnit] | LogicalUnit,
    cdb: bytes | list[int],
    *,
    data: Buffer | None = None,
    nexus: Nexus = NEXUS,
    lun: int = 0,
) -> ScsiResult:
    if isinstance(luns, LogicalUnit):
        luns = {0: luns}
    return execute(ScsiRequest(cdb=bytes(cdb), lun=lun, nexus=nexus, data_out=data), luns)


def good(luns: Mapping[int, LogicalUnit] | LogicalUnit, cdb: bytes | list[int], **kw: object) -> bytes:
    """Run a command that must succeed; return its Data-In as bytes."""
    res = run(luns, cdb, **kw)  # type: ignore[arg-type]
    assert res.status == GOOD, (res.status, res.sense and sense_of(res))
    return bytes(res.data)


def sense_of(res: ScsiResult) -> tuple[int, int, int]:
    """(key, ASC, ASCQ) of a CHECK CONDITION result, fixed or descriptor format."""
    assert res.status == CHECK_CONDITION and res.sense is not None
    s = res.sense
    if s[0] & 0x7F in (0x72, 0x73):
        return s[1] & 0x0F, s[2], s[3]
    return s[2] & 0x0F, s[12], s[13]


def field_pointer(res: ScsiResult) -> tuple[bool, int, int | None]:
    """(C/D, byte, bit or None) from fixed-format sense-key-specific bytes 15-17."""
    s = res.sense
    assert s is not None and s[15] & 0x80, "SKSV not set"
    bit = s[15] & 0x07 if s[15] & 0x08 else None
    return bool(s[15] & 0x40), struct.unpack(">H", s[16:18])[0], bit


def cdb10(opcode: int, lba: int, nblocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", opcode, flags, lba, 0, nblocks, 0)


def cdb12(opcode: int, lba: int, nblocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIIBB", opcode, flags, lba, nblocks, 0, 0)


def cdb16(opcode: int, lba: int, nblocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", opcode, flags, lba, nblocks, 0, 0)


def cdb6(opcode: int, lba: int, nblocks: int) -> bytes:
    return struct.pack(">BBHBB", opcode, (lba >> 16) & 0x1F, lba & 0xFFFF, nblocks, 0)


class SparseBackend(Backend):
    """Blocks in a dict (absent = zero). `fail` maps an operation name ("read", "write",
    "flush", "unmap", "write_same") to the StorageError to raise. Records flush calls."""

    def __init__(self, num_blocks: int, block_size: int = 512, read_only: bool = False) -> None:
        self.block_size = block_size
        self.read_only = read_only
        self._num_blocks = num_blocks
        self.blocks: dict[int, bytes] = {}
        self.fail: dict[str, StorageError] = {}
        self.flushes: list[tuple[int, int]] = []
        self.fua_writes = 0

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def _maybe_fail(self, op: str) -> None:
        if op in self.fail:
            raise self.fail[op]

    def read(self, lba: int, nblocks: int) -> memoryview:
        self._maybe_fail("read")
        self._check(lba, nblocks)
        zero = bytes(self.block_size)
        return memoryview(b"".join(self.blocks.get(lba + i, zero) for i in range(nblocks)))

    def write(self, lba: int, data: Buffer) -> None:
        self._maybe_fail("write")
        raw = bytes(data)
        nblocks = len(raw) // self.block_size
        self._check(lba, nblocks)
        for i in range(nblocks):
            self.blocks[lba + i] = raw[i * self.block_size : (i + 1) * self.block_size]

    def write_fua(self, lba: int, data: Buffer) -> None:
        self.fua_writes += 1
        super().write_fua(lba, data)

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        self._maybe_fail("flush")
        self.flushes.append((lba, nblocks))

    def close(self) -> None:
        pass
