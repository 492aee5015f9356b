"""SANITIZE (SBC-4 §5.30, §4.11): OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE, the parameter checks
libiscsi makes, SANITIZE IN PROGRESS for other commands, and sanitize failure mode."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from pyscsi_target.scsi import LogicalUnit, ScsiResult
from pyscsi_target.scsi.types import GOOD, RESERVATION_CONFLICT
from pyscsi_target.storage import MemoryBackend
from pyscsi_target.storage.base import Buffer, MediumError

from .util import OTHER, SparseBackend, cdb10, field_pointer, good, identity, make_lu, run, sense_of

BS = 512
OVERWRITE, BLOCK_ERASE, CRYPTO_ERASE, EXIT_FAILURE_MODE = 0x01, 0x02, 0x03, 0x1F
AUSE, IMMED, ZNR = 0x20, 0x80, 0x40
INVALID_FIELD = (0x05, 0x24, 0x00)
INVALID_PARAM = (0x05, 0x26, 0x00)
IN_PROGRESS = (0x02, 0x04, 0x1B)
FAILED = (0x03, 0x31, 0x03)
TUR = bytes(6)


def sanitize_cdb(sa: int, length: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BB5xHB", 0x48, flags | sa, length, 0)


def overwrite_params(pattern: bytes, count: int = 1, invert: bool = False) -> bytes:
    return struct.pack(">BxH", (0x80 if invert else 0) | count, len(pattern)) + pattern


def overwrite(lu: LogicalUnit, pattern: bytes, *, count: int = 1, invert: bool = False, flags: int = 0) -> ScsiResult:
    data = overwrite_params(pattern, count, invert)
    return run(lu, sanitize_cdb(OVERWRITE, len(data), flags), data=data)


class RecordingBackend(SparseBackend):
    """Records the block of every write_same pass and can run a hook in the middle of one."""

    def __init__(self, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.passes: list[bytes] = []
        self.during: Callable[[], None] | None = None

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        self.passes.append(bytes(block))
        if self.during is not None:
            self.during()
        super().write_same(lba, nblocks, block)


@pytest.fixture
def rec() -> RecordingBackend:
    return RecordingBackend(16)


# ---- OVERWRITE ---------------------------------------------------------------------------------------


def test_overwrite_golden(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    data = overwrite_params(b"\xaa" * BS)
    assert sanitize_cdb(OVERWRITE, len(data)) == bytes.fromhex("48010000000000020400")
    assert run(lu, bytes.fromhex("48010000000000020400"), data=data).status == GOOD
    assert good(lu, cdb10(0x28, 0, 16)) == b"\xaa" * (16 * BS)
    assert rec.flushes[-1] == (0, 0)  # durable before GOOD


def test_overwrite_repeats_a_short_pattern_and_inverts_between_passes(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    assert overwrite(lu, b"\x01\x02\x03", count=3, invert=True).status == GOOD
    block = (b"\x01\x02\x03" * BS)[:BS]
    inverted = bytes(b ^ 0xFF for b in block)
    assert rec.passes == [block, inverted, block]  # the last pass writes the pattern itself
    rec.passes.clear()
    assert overwrite(lu, b"\x0f", count=2, invert=True).status == GOOD
    assert rec.passes == [b"\xf0" * BS, b"\x0f" * BS]
    assert good(lu, cdb10(0x28, 15, 1)) == b"\x0f" * BS


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, BS + 5])
def test_overwrite_parameter_list_length(lu: LogicalUnit, length: int) -> None:
    """libiscsi Sanitize.Overwrite: the length must be > 4 and < block length + 5."""
    res = run(lu, sanitize_cdb(OVERWRITE, length), data=bytes(length))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 7, None)


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


@pytest.mark.parametrize(("flags", "bit"), [(IMMED, 7), (ZNR, 6)])
def test_immed_and_znr_are_refused(lu: LogicalUnit, flags: int, bit: int) -> None:
    res = overwrite(lu, b"\x00" * 4, flags=flags)
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, bit)


def test_write_protection_and_reservations_apply() -> None:
    ro = make_lu(MemoryBackend(8), identity(read_only=True))
    assert sense_of(overwrite(ro, b"\x00" * 4)) == (0x07, 0x27, 0x00)
    lu = make_lu(MemoryBackend(8), identity())
    good(lu, bytes([0x16, 0, 0, 0, 0, 0]), nexus=OTHER)  # RESERVE(6)
    assert overwrite(lu, b"\x00" * 4).status == RESERVATION_CONFLICT


# ---- BLOCK ERASE / CRYPTOGRAPHIC ERASE -------------------------------------------------------------


def test_block_erase_deallocates_everything(thin_lu: LogicalUnit) -> None:
    good(thin_lu, cdb10(0x2A, 0, 4), data=b"a" * (4 * BS))
    good(thin_lu, sanitize_cdb(BLOCK_ERASE))
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


# ---- while it runs, and after it fails -------------------------------------------------------------


def test_other_commands_see_sanitize_in_progress(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    seen: dict[str, object] = {}

    def meanwhile() -> None:
        seen["tur"] = sense_of(run(lu, TUR, nexus=OTHER))
        seen["read"] = sense_of(run(lu, cdb10(0x28, 0, 1), nexus=OTHER))
        seen["inquiry"] = run(lu, bytes([0x12, 0, 0, 0, 36, 0]), nexus=OTHER).status
        seen["request sense"] = good(lu, bytes([0x03, 0, 0, 0, 18, 0]), nexus=OTHER)[2]

    rec.during = meanwhile
    assert overwrite(lu, b"\x00" * 4).status == GOOD
    assert seen == {"tur": IN_PROGRESS, "read": IN_PROGRESS, "inquiry": GOOD, "request sense": 0}
    good(lu, TUR, nexus=OTHER)


def test_failure_mode_restricted(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    rec.fail["write"] = MediumError("eio")
    assert sense_of(overwrite(lu, b"\x00" * 4)) == (0x03, 0x0C, 0x00)
    assert sense_of(run(lu, cdb10(0x28, 0, 1))) == FAILED
    assert sense_of(run(lu, cdb10(0x2A, 0, 1), data=bytes(BS))) == FAILED
    good(lu, TUR)  # not a medium access
    res = run(lu, sanitize_cdb(EXIT_FAILURE_MODE))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 4)  # AUSE was 0
    res = overwrite(lu, b"\x00" * 4, flags=AUSE)
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 1, 5)
    del rec.fail["write"]
    assert overwrite(lu, b"\x11" * 4).status == GOOD
    assert good(lu, cdb10(0x28, 0, 1)) == b"\x11" * BS


def test_failure_mode_unrestricted_exits(rec: RecordingBackend) -> None:
    lu = make_lu(rec, identity())
    rec.fail["flush"] = MediumError("fsync")
    assert sense_of(overwrite(lu, b"\x00" * 4, flags=AUSE)) == (0x03, 0x0C, 0x00)
    assert sense_of(run(lu, cdb10(0x28, 0, 1))) == FAILED
    res = run(lu, sanitize_cdb(EXIT_FAILURE_MODE, 8), data=bytes(8))
    assert sense_of(res) == INVALID_FIELD and field_pointer(res) == (True, 7, None)
    good(lu, sanitize_cdb(EXIT_FAILURE_MODE))
    good(lu, cdb10(0x28, 0, 1))
    good(lu, sanitize_cdb(EXIT_FAILURE_MODE))  # nothing to exit: GOOD
