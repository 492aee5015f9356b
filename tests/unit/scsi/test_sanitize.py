"""SANITIZE (SBC-4 §5.30, §4.11): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE, the parameter checks
libiscsi makes, and the background operation: IMMED=0 and IMMED=1, NOT READY / SANITIZE IN
PROGRESS with the progress indication while it runs (SPC-4 §4.5.2.4.4), the commands still
served, resets and nexus loss that do not stop it, its rate, and sanitize failure mode.

The tests play the server's part: the LU's host (`FabricDouble`) records the background work the
handler hands it (`LogicalUnit.run_sanitize`), and the tests run it themselves, on a virtual clock,
so that the operation's progress can be watched step by step."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from pyscsi_target.scsi import LogicalUnit, Nexus, ScsiResult
from pyscsi_target.scsi.lu import SANITIZE_FAILED, SANITIZE_IDLE, SANITIZE_RUNNING
from pyscsi_target.scsi.sanitize_job import (
    PROGRESS_ONE,
    SANITIZE_BYTES_PER_SECOND,
    SANITIZE_CHUNK_BYTES,
    SanitizeInProgress,
    SanitizeJob,
)
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT
from pyscsi_target.storage import MemoryBackend
from pyscsi_target.storage.base import Buffer, MediumError

from .util import (
    NEXUS,
    OTHER,
    SparseBackend,
    cdb10,
    fabric,
    field_pointer,
    good,
    identity,
    make_lu,
    run,
    sense_of,
)

BS = 512
OVERWRITE, BLOCK_ERASE, CRYPTO_ERASE, EXIT_FAILURE_MODE = 0x01, 0x02, 0x03, 0x1F
AUSE, IMMED, ZNR = 0x20, 0x80, 0x40
INVALID_FIELD = (0x05, 0x24, 0x00)
INVALID_PARAM = (0x05, 0x26, 0x00)
IN_PROGRESS = (0x02, 0x04, 0x1B)
FAILED = (0x03, 0x31, 0x03)
POWER_ON = (0x06, 0x29, 0x00)
TUR = bytes(6)
INQUIRY = bytes([0x12, 0, 0, 0, 36, 0])
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 18, 0])
REQUEST_SENSE_DESC = bytes([0x03, 0x01, 0, 0, 32, 0])
START_UNIT = bytes([0x1B, 0, 0, 0, 0x01, 0])
MIB = 1 << 20


class VirtualClock:
    """Monotonic seconds that only move when the operation waits (LogicalUnit.clock / sleep)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def sanitize_cdb(sa: int, length: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BB5xHB", 0x48, flags | sa, length, 0)


def overwrite_params(pattern: bytes, count: int = 1, invert: bool = False) -> bytes:
    return struct.pack(">BxH", (0x80 if invert else 0) | count, len(pattern)) + pattern


def overwrite(lu: LogicalUnit, pattern: bytes, *, count: int = 1, invert: bool = False, flags: int = 0,
              nexus: Nexus = NEXUS) -> ScsiResult:
    """The SANITIZE OVERWRITE command itself: the operation is recorded, not run."""
    data = overwrite_params(pattern, count, invert)
    return run(lu, sanitize_cdb(OVERWRITE, len(data), flags), data=data, nexus=nexus)


def finish(lu: LogicalUnit, started: ScsiResult, clock: VirtualClock | None = None) -> ScsiResult:
    """Play the server: run the operation the command started (on a virtual clock), then return
    the command's status: the final one for IMMED=0, the one already given for IMMED=1."""
    clock = clock or VirtualClock()
    lu.clock = clock.time
    run, stop = fabric(lu).background.pop()
    assert run == lu.run_sanitize and lu.sanitize_job is not None and stop == lu.sanitize_job.stop
    outcome = lu.run_sanitize(sleep=clock.sleep)
    if started.final is None:
        return started
    final = started.final()
    assert final is outcome
    return final


def sanitized(lu: LogicalUnit, pattern: bytes, **kw: object) -> ScsiResult:
    """OVERWRITE from start to end; the command's status."""
    res = overwrite(lu, pattern, **kw)  # type: ignore[arg-type]
    return finish(lu, res) if fabric(lu).background else res


def progress_of(sense: bytes) -> int:
    """PROGRESS INDICATION from fixed- or descriptor-format sense data (SKSV must be set)."""
    if sense[0] & 0x7F == 0x72:
        desc = sense[8:]
        assert desc[0] == 0x02 and desc[1] == 0x06 and desc[4] & 0x80, desc.hex()
        return int(struct.unpack_from(">H", desc, 5)[0])
    assert sense[15] & 0x80, "SKSV not set"
    return int(struct.unpack_from(">H", sense, 16)[0])


def fixed_sense_key(data: bytes) -> tuple[int, int, int]:
    return data[2] & 0x0F, data[12], data[13]


class RecordingBackend(SparseBackend):
    """Records the block of every write_same call and can run a hook in the middle of each."""

    def __init__(self, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.passes: list[bytes] = []
        self.during: Callable[[], None] | None = None

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self.passes.append(bytes(block))
        if self.during is not None:
            self.during()
        super().write_same(lba, nblocks, block)


class CountingBackend(SparseBackend):
    """A large medium that only counts what write_same and unmap cover (no memory per block)."""

    def __init__(self, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.written = 0
        self.calls: list[tuple[int, int]] = []

    @property
    def supports_unmap(self) -> bool:
        return True

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self._check(lba, nblocks)
        self.calls.append((lba, nblocks))
        self.written += nblocks * self.block_size

    def unmap(self, lba: int, nblocks: int) -> None:
        self.write_same(lba, nblocks, bytes(self.block_size))


@pytest.fixture
def rec() -> RecordingBackend:
    return RecordingBackend(16)


# ---- OVERWRITE ---------------------------------------------------------------------------------------


def test_overwrite_golden(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    data = overwrite_params(b"\xaa" * BS)
    assert sanitize_cdb(OVERWRITE, len(data)) == bytes.fromhex("48010000000000020400")
    started = run(lu, bytes.fromhex("48010000000000020400"), data=data)
    assert started.status == GOOD and started.transfer_length == BS + 4
    assert rec.passes == []  # nothing written yet: the operation runs in the background
    final = finish(lu, started)
    assert final.status == GOOD and final.transfer_length == BS + 4
    assert good(lu, cdb10(0x28, 0, 16)) == b"\xaa" * (16 * BS)
    assert rec.flushes[-1] == (0, 0)  # durable before it completes


def test_overwrite_repeats_a_short_pattern_and_inverts_between_passes(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    assert sanitized(lu, b"\x01\x02\x03", count=3, invert=True).status == GOOD
    block = (b"\x01\x02\x03" * BS)[:BS]
    inverted = bytes(b ^ 0xFF for b in block)
    assert rec.passes == [block, inverted, block]  # the last pass writes the pattern itself
    rec.passes.clear()
    assert sanitized(lu, b"\x0f", count=2, invert=True).status == GOOD
    assert rec.passes == [b"\xf0" * BS, b"\x0f" * BS]
    assert good(lu, cdb10(0x28, 15, 1)) == b"\x0f" * BS


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, BS + 5])
def test_overwrite_parameter_list_length(lu: LogicalUnit, length: int) -> None:
    """libiscsi Sanitize.Overwrite: the length must be > 4 and < block length + 5."""
    res = run(lu, sanitize_cdb(OVERWRITE, length), data=bytes(length))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 7, None)
    assert lu.sanitize_state == SANITIZE_IDLE  # refused before anything started


@pytest.mark.parametrize(
    ("data", "pointer"),
    [
        (struct.pack(">BxH", 0, 4) + bytes(4), (0, 4)),  # OVERWRITE COUNT 0
        (struct.pack(">BxH", 1, 0) + bytes(4), (2, None)),  # INITIALIZATION PATTERN LENGTH 0
        (struct.pack(">BxH", 1, BS + 4) + bytes(BS), (2, None)),  # longer than a block
        (struct.pack(">BxH", 1, 8) + bytes(4), (2, None)),  # longer than what was sent
        (struct.pack(">BxH", 0x21, 4) + bytes(4), (0, 6)),  # TEST (vendor specific)
        (struct.pack(">BBH", 1, 1, 4) + bytes(4), (1, None)),  # reserved byte
    ],
)
def test_overwrite_parameter_errors(lu: LogicalUnit, data: bytes, pointer: tuple[int, int | None]) -> None:
    res = run(lu, sanitize_cdb(OVERWRITE, len(data)), data=data)
    assert sense_of(res) == INVALID_PARAM and field_pointer(res) == (False, *pointer)
    assert lu.sanitize_state == SANITIZE_IDLE


def test_znr_is_refused(lu: LogicalUnit) -> None:
    res = overwrite(lu, b"\x00" * 4, flags=ZNR)
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 6)


def test_write_protection_and_reservations_apply() -> None:
    ro = make_lu(MemoryBackend(8), identity(read_only=True))
    assert sense_of(overwrite(ro, b"\x00" * 4)) == (0x07, 0x27, 0x00)
    lu = make_lu(MemoryBackend(8), identity())
    good(lu, bytes([0x16, 0, 0, 0, 0, 0]), nexus=OTHER)  # RESERVE(6)
    assert overwrite(lu, b"\x00" * 4).status == RESERVATION_CONFLICT
    assert (ro.sanitize_state, lu.sanitize_state) == (SANITIZE_IDLE, SANITIZE_IDLE)


# ---- BLOCK ERASE / CRYPTOGRAPHIC ERASE -------------------------------------------------------------


def test_block_erase_deallocates_everything(thin_lu: LogicalUnit) -> None:
    good(thin_lu, cdb10(0x2A, 0, 4), data=b"a" * (4 * BS))
    started = run(thin_lu, sanitize_cdb(BLOCK_ERASE))
    assert good(thin_lu, REQUEST_SENSE)[2] == 0x02  # not yet erased: NOT READY while it runs
    assert finish(thin_lu, started).status == GOOD
    status = good(thin_lu, bytes([0x9E, 0x12]) + bytes(8) + struct.pack(">IBB", 256, 0, 0))
    assert status == struct.pack(">I4xQIB3x", 20, 0, thin_lu.backend.num_blocks, 1)  # one deallocated run
    assert good(thin_lu, cdb10(0x28, 0, 4)) == bytes(4 * BS)
    res = run(thin_lu, sanitize_cdb(BLOCK_ERASE, 8), data=bytes(8))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 7, None)


def test_block_erase_needs_thin_provisioning(lu: LogicalUnit, thin_lu: LogicalUnit) -> None:
    res = run(lu, sanitize_cdb(BLOCK_ERASE))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 4)
    one = struct.pack(">BBBBHIxB", 0xA3, 0x0C, 2, 0x48, BLOCK_ERASE, 64, 0)  # RSOC, one command + SA
    assert good(lu, one)[1] & 0x07 == 0x01  # not supported
    assert good(thin_lu, one)[1] & 0x07 == 0x03
    wabereq = lambda unit: good(unit, bytes([0x12, 0x01, 0xB1, 0, 64, 0]))[7] >> 6  # noqa: E731
    assert (wabereq(lu), wabereq(thin_lu)) == (0, 1)


def test_cryptographic_erase_is_not_supported(thin_lu: LogicalUnit) -> None:
    res = run(thin_lu, sanitize_cdb(CRYPTO_ERASE))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 4)
    one = struct.pack(">BBBBHIxB", 0xA3, 0x0C, 2, 0x48, CRYPTO_ERASE, 64, 0)
    assert good(thin_lu, one)[1] & 0x07 == 0x01


@pytest.mark.parametrize("sa", [0x00, 0x04, 0x10, 0x1E])
def test_reserved_service_actions(lu: LogicalUnit, sa: int) -> None:
    assert sense_of(run(lu, sanitize_cdb(sa))) == INVALID_FIELD


def test_report_supported_opcodes_shows_immed_and_ause(lu: LogicalUnit) -> None:
    one = struct.pack(">BBBBHIxB", 0xA3, 0x0C, 2, 0x48, OVERWRITE, 64, 0)
    data = good(lu, one)
    assert data[4:14] == bytes([0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0])  # CDB USAGE DATA, ZNR clear


# ---- IMMED ---------------------------------------------------------------------------------------


def test_immed_0_status_comes_when_the_operation_ends(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    started = overwrite(lu, b"\x5a" * 4)
    assert started.final is not None  # the server answers from it, at the end
    job = lu.sanitize_job
    assert job is not None and not job.immed and not job.ended
    final = finish(lu, started)
    assert job.ended and final.status == GOOD and job.wait() is final


def test_immed_1_status_at_once_then_progress_through_request_sense(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    started = overwrite(lu, b"\x5a" * 4, flags=IMMED)
    assert started.status == GOOD and started.final is None  # status now (§5.30.1)
    assert lu.sanitize_state == SANITIZE_RUNNING and rec.passes == []
    data = good(lu, REQUEST_SENSE)
    assert fixed_sense_key(data) == IN_PROGRESS and progress_of(data) == 0
    finish(lu, started)
    assert fixed_sense_key(good(lu, REQUEST_SENSE)) == (0, 0, 0)  # NO SENSE: done
    assert good(lu, cdb10(0x28, 0, 1)) == b"\x5a" * BS


# ---- while it runs -------------------------------------------------------------------------------


def test_sanitize_in_progress_golden_sense(lu: LogicalUnit) -> None:
    overwrite(lu, b"\x00" * 4)
    res = run(lu, TUR)
    assert res.sense == bytes.fromhex("700002000000000a00000000041b00800000")  # SKSV, progress 0
    lu.mode.d_sense = True
    res = run(lu, TUR)
    assert res.sense == bytes.fromhex("7202041b00000008" + "0206000080000000")  # descriptor 02h


@pytest.mark.parametrize(
    ("cdb", "data"),
    [
        (TUR, None),
        (START_UNIT, None),  # libiscsi Sanitize.Reset: START STOP UNIT is refused too
        (cdb10(0x28, 0, 1), None),
        (bytes([0x88, 0]) + bytes(8) + struct.pack(">I", 1) + bytes(2), None),  # READ(16)
        (cdb10(0x2A, 0, 1), bytes(BS)),
        (bytes([0x35]) + bytes(9), None),  # SYNCHRONIZE CACHE(10)
        (bytes([0x1A, 0, 0x3F, 0, 255, 0]), None),  # MODE SENSE(6)
        (bytes([0x9E, 0x10]) + bytes(11) + bytes([32, 0, 0]), None),  # READ CAPACITY(16)
        (sanitize_cdb(EXIT_FAILURE_MODE), None),
        (sanitize_cdb(OVERWRITE, 8), overwrite_params(b"\x11" * 4)),  # a second SANITIZE
    ],
)
def test_other_commands_answer_not_ready_with_progress(lu: LogicalUnit, cdb: bytes, data: bytes | None) -> None:
    overwrite(lu, b"\x00" * 4)
    for nexus in (NEXUS, OTHER):
        res = run(lu, cdb, data=data, nexus=nexus)
        assert sense_of(res) == IN_PROGRESS and res.sense is not None and progress_of(res.sense) == 0


def test_inquiry_report_luns_and_request_sense_are_served(lu: LogicalUnit) -> None:
    overwrite(lu, b"\x00" * 4)
    assert run(lu, INQUIRY).status == GOOD
    assert run(lu, REPORT_LUNS).status == GOOD
    assert fixed_sense_key(good(lu, REQUEST_SENSE)) == IN_PROGRESS
    desc = good(lu, REQUEST_SENSE_DESC)
    assert desc[:4] == bytes([0x72, 0x02, 0x04, 0x1B]) and progress_of(desc) == 0


def test_progress_grows_chunk_by_chunk_at_the_bounded_rate() -> None:
    """4 MiB, two passes: 8 steps of 1 MiB; REQUEST SENSE and TEST UNIT READY report how far it
    got before each step, and it takes 8 MiB / SANITIZE_BYTES_PER_SECOND on the clock."""
    blocks = 4 * MIB // BS
    rec = RecordingBackend(blocks)
    lu = make_lu(rec, identity())
    seen: list[tuple[int, int]] = []

    def meanwhile() -> None:
        tur = run(lu, TUR, nexus=OTHER)
        assert tur.sense is not None and sense_of(tur) == IN_PROGRESS
        seen.append((progress_of(good(lu, REQUEST_SENSE, nexus=OTHER)), progress_of(tur.sense)))

    rec.during = meanwhile
    clock = VirtualClock()
    assert finish(lu, overwrite(lu, b"\x77" * 4, count=2), clock).status == GOOD
    steps = 8 * MIB // SANITIZE_CHUNK_BYTES
    assert [p for p, _ in seen] == [i * PROGRESS_ONE // steps for i in range(steps)]
    assert [t for _, t in seen] == [p for p, _ in seen]
    assert clock.now == pytest.approx(8 * MIB / SANITIZE_BYTES_PER_SECOND)
    assert len(clock.waits) == steps  # it waited after every chunk: it never ran ahead of the rate
    good(lu, TUR, nexus=OTHER)


@pytest.mark.parametrize("sa", [OVERWRITE, BLOCK_ERASE])
def test_a_256_mib_lu_takes_eight_seconds(sa: int) -> None:
    backend = CountingBackend(256 * MIB // BS)
    lu = make_lu(backend, identity(thin=True))
    params = overwrite_params(b"\x00" * 4)
    started = run(lu, sanitize_cdb(sa, len(params) if sa == OVERWRITE else 0),
                  data=params if sa == OVERWRITE else None)
    clock = VirtualClock()
    assert finish(lu, started, clock).status == GOOD
    assert backend.written == 256 * MIB
    assert {n * BS for _, n in backend.calls} == {SANITIZE_CHUNK_BYTES}
    assert clock.now == pytest.approx(8.0)  # 256 MiB at 32 MiB/s


def test_resets_and_nexus_loss_do_not_stop_it(rec: RecordingBackend) -> None:
    """SBC-4 §4.11.2: the operation continues after LOGICAL UNIT RESET, target resets and I_T
    nexus loss; the unit attention they raise comes first, then NOT READY again."""
    lu = make_lu(rec, identity())
    started = overwrite(lu, b"\x33" * 4)
    lu.reset(OTHER)  # LUN reset (and what target resets do to each LU)
    lu.nexus_gone(NEXUS)  # the connection that sent SANITIZE is gone
    assert lu.sanitize_state == SANITIZE_RUNNING
    assert sense_of(run(lu, TUR, nexus=OTHER)) == POWER_ON
    assert sense_of(run(lu, TUR, nexus=OTHER)) == IN_PROGRESS
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == POWER_ON  # a new login of the lost nexus
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == IN_PROGRESS
    assert finish(lu, started).status == GOOD
    assert good(lu, cdb10(0x28, 3, 1), nexus=OTHER) == b"\x33" * BS


def test_a_second_operation_cannot_start_while_one_runs(lu: LogicalUnit) -> None:
    overwrite(lu, b"\x00" * 4)
    first = lu.sanitize_job
    with pytest.raises(SanitizeInProgress):  # two SANITIZE commands that passed the gate together
        lu.start_sanitize(SanitizeJob(iter(()), 0, ause=False, immed=False, transfer_length=0))
    assert lu.sanitize_job is first


def test_an_operation_runs_once(lu: LogicalUnit) -> None:
    with pytest.raises(RuntimeError):
        lu.run_sanitize()  # nothing recorded
    finish(lu, overwrite(lu, b"\x00" * 4))
    with pytest.raises(RuntimeError):
        lu.run_sanitize()


def test_an_empty_medium_completes_at_once() -> None:
    lu = make_lu(MemoryBackend(0), identity())
    clock = VirtualClock()
    assert finish(lu, overwrite(lu, b"\x00" * 4), clock).status == GOOD
    assert clock.now == 0 and lu.sanitize_state == SANITIZE_IDLE


# ---- after it failed ------------------------------------------------------------------------------


def test_failure_mode_restricted(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    rec.fail["write"] = MediumError("eio")
    final = sanitized(lu, b"\x00" * 4)
    assert sense_of(final) == FAILED  # the IMMED=0 command reports the failed operation
    assert sense_of(run(lu, cdb10(0x28, 0, 1))) == FAILED
    assert sense_of(run(lu, cdb10(0x2A, 0, 1), data=bytes(BS))) == FAILED
    good(lu, TUR)  # not a medium access
    assert fixed_sense_key(good(lu, REQUEST_SENSE)) == FAILED
    res = run(lu, sanitize_cdb(EXIT_FAILURE_MODE))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 4)  # AUSE was 0
    res = overwrite(lu, b"\x00" * 4, flags=AUSE)
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 5)
    del rec.fail["write"]
    assert sanitized(lu, b"\x11" * 4).status == GOOD
    assert good(lu, cdb10(0x28, 0, 1)) == b"\x11" * BS
    assert fixed_sense_key(good(lu, REQUEST_SENSE)) == (0, 0, 0)


def test_failure_mode_unrestricted_exits(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    rec.fail["flush"] = MediumError("fsync")
    assert sense_of(sanitized(lu, b"\x00" * 4, flags=AUSE)) == FAILED
    assert sense_of(run(lu, cdb10(0x28, 0, 1))) == FAILED
    res = run(lu, sanitize_cdb(EXIT_FAILURE_MODE, 8), data=bytes(8))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 7, None)
    good(lu, sanitize_cdb(EXIT_FAILURE_MODE))
    good(lu, cdb10(0x28, 0, 1))
    good(lu, sanitize_cdb(EXIT_FAILURE_MODE))  # nothing to exit: GOOD


def test_failure_after_immed_1_is_reported_later(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    rec.fail["write"] = MediumError("eio")
    started = overwrite(lu, b"\x00" * 4, flags=IMMED)
    assert finish(lu, started).status == GOOD  # the status was given when the command was validated
    assert lu.sanitize_state == SANITIZE_FAILED
    assert fixed_sense_key(good(lu, REQUEST_SENSE)) == FAILED
    lu.mode.d_sense = True
    assert good(lu, REQUEST_SENSE_DESC)[:4] == bytes([0x72, 0x03, 0x31, 0x03])


def test_failure_sense_follows_d_sense(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    lu.mode.d_sense = True
    rec.fail["write"] = MediumError("eio")
    final = sanitized(lu, b"\x00" * 4)
    assert final.status == CHECK_CONDITION and final.sense is not None and final.sense[:4] == bytes.fromhex("72033103")


def test_an_unexpected_error_ends_the_operation_and_propagates(rec: RecordingBackend) -> None:
    """Not a StorageError: the LU still leaves SANITIZE IN PROGRESS (failure mode) and a waiting
    IMMED=0 command gets its answer; the error goes on to the server's boundary."""
    lu = make_lu(rec, identity())
    started = overwrite(lu, b"\x00" * 4)

    def broken() -> None:
        raise ZeroDivisionError("a bug")

    rec.during = broken
    with pytest.raises(ZeroDivisionError):
        lu.run_sanitize(sleep=VirtualClock().sleep)
    assert lu.sanitize_state == SANITIZE_FAILED
    assert started.final is not None and sense_of(started.final()) == FAILED
