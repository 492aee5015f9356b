"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.18): golden CDBs, the copy,
NAA resolution (session LUNs, insecure_tpc), every descriptor check libiscsi makes, and held
copy status."""

from __future__ import annotations

import struct

import pytest

from pyscsi_target.scsi import LogicalUnit, Nexus, ScsiResult
from pyscsi_target.scsi.lu import SANITIZE_FAILED, SANITIZE_RUNNING
from pyscsi_target.scsi.types import GOOD, RESERVATION_CONFLICT
from pyscsi_target.scsi.xcopy import _transfer_count
from pyscsi_target.storage import MemoryBackend
from pyscsi_target.storage.base import MediumError

from .prutil import EA, REGISTER, RESERVE, prout
from .util import (
    NAA,
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
NAA_A = bytes.fromhex(NAA[2:])
NAA_B = bytes.fromhex("6589cfc000000" + "fedcba9876543210fed")
COPY_ABORTED_NO_SENSE = (0x0A, 0x00, 0x00)
UNREACHABLE = (0x0A, 0x08, 0x04)
NOT_REACHABLE = (0x0A, 0x0D, 0x02)
WRONG_TYPE = (0x0A, 0x0D, 0x03)
PARAM_LEN = (0x05, 0x1A, 0x00)
INVALID_PARAM = (0x05, 0x26, 0x00)
HOLD, DISCARD, NO_LIST_ID = 0, 2, 3


def cscd(
    naa: bytes = NAA_A, bs: int = BS, *, nul: bool = False, lu_id_type: int = 0, code: int = 0xE4, peripheral: int = 0
) -> bytes:
    """An identification descriptor CSCD descriptor (SPC-4 §6.4.5.6) naming an LU by NAA."""
    d = bytearray(32)
    d[0] = code
    d[1] = (lu_id_type << 6) | (0x20 if nul else 0) | peripheral
    d[4], d[5], d[7] = 0x01, 0x03, len(naa)  # binary, LU association, NAA
    d[8 : 8 + len(naa)] = naa
    d[29:32] = bs.to_bytes(3, "big")
    return bytes(d)


def b2b(src: int, dst: int, nblocks: int, src_lba: int, dst_lba: int, code: int = 0x02) -> bytes:
    """A block device to block device segment descriptor (SPC-4 §6.4.6.5)."""
    return struct.pack(">BBHHH2xHQQ", code, 0, 0x18, src, dst, nblocks, src_lba, dst_lba)


def params(
    targets: list[bytes], segments: list[bytes], list_id: int = 1, usage: int = DISCARD, inline: int = 0
) -> bytes:
    t, s = b"".join(targets), b"".join(segments)
    return struct.pack(">BBH4xII", list_id, usage << 3, len(t), len(s), inline) + t + s


def xcopy_cdb(length: int) -> bytes:
    return struct.pack(">BB8xIBB", 0x83, 0x00, length, 0, 0)


def xcopy(luns: dict[int, LogicalUnit] | LogicalUnit, data: bytes, nexus: Nexus = NEXUS) -> ScsiResult:
    return run(luns, xcopy_cdb(len(data)), data=data, nexus=nexus)


def rcr_cdb(sa: int, list_id: int = 0, alloc: int = 1024) -> bytes:
    return struct.pack(">BBB7xIBB", 0x84, sa, list_id, alloc, 0, 0)


def fill(lu: LogicalUnit, lba: int, data: bytes) -> None:
    good(lu, cdb10(0x2A, lba, len(data) // BS), data=data)


def read(lu: LogicalUnit, lba: int, nblocks: int) -> bytes:
    return good(lu, cdb10(0x28, lba, nblocks))


def pattern(nblocks: int, seed: int = 1) -> bytes:
    return bytes((seed * 7 + i) & 0xFF for i in range(nblocks * BS))


@pytest.fixture
def other_lu() -> LogicalUnit:
    return make_lu(MemoryBackend(256), identity(naa="0x" + NAA_B.hex(), serial="other"))


# ---- copying -----------------------------------------------------------------------------------------


def test_golden_cdb_and_simple_copy(lu: LogicalUnit) -> None:
    """libiscsi ExtendedCopy.Simple: blocks from the start of the LU to its end."""
    fill(lu, 0, pattern(8))
    data = params([cscd()], [b2b(0, 0, 8, 0, 1016)])
    assert xcopy_cdb(len(data)) == bytes.fromhex("83000000000000000000" "0000004c" "0000")
    assert len(data) == 0x4C
    res = run(lu, bytes.fromhex("830000000000000000000000004c0000"), data=data)
    assert res.status == GOOD
    assert read(lu, 1016, 8) == pattern(8)


def test_copy_between_two_session_luns(lu: LogicalUnit, other_lu: LogicalUnit) -> None:
    fill(lu, 10, pattern(4, 3))
    data = params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 4, 10, 200), b2b(1, 0, 4, 200, 20)])
    assert xcopy({0: lu, 1: other_lu}, data).status == GOOD
    assert read(other_lu, 200, 4) == pattern(4, 3)
    assert read(lu, 20, 4) == pattern(4, 3)


@pytest.mark.parametrize(("src", "dst"), [(10, 12), (12, 10)])
def test_overlapping_copy_on_one_lu_is_a_move(
    lu: LogicalUnit, src: int, dst: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pyscsi_target.scsi.xcopy.COPY_CHUNK_BYTES", 2 * BS)  # force several chunks
    fill(lu, src, pattern(6, 5))
    assert xcopy(lu, params([cscd()], [b2b(0, 0, 6, src, dst)])).status == GOOD
    assert read(lu, dst, 6) == pattern(6, 5)


def test_zero_blocks_and_zero_length(lu: LogicalUnit) -> None:
    assert xcopy(lu, params([cscd()], [b2b(0, 0, 0, 0, 5)])).status == GOOD
    assert run(lu, xcopy_cdb(0)).status == GOOD


def test_foreign_lu_needs_a_host_that_finds_it(lu: LogicalUnit, other_lu: LogicalUnit) -> None:
    """An LU outside the session is reachable only through the host (find_lu)."""
    data = params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)])
    assert sense_of(xcopy(lu, data)) == UNREACHABLE
    fabric(lu).lus[NAA_B] = other_lu
    fill(lu, 0, pattern(1, 9))
    assert xcopy(lu, data).status == GOOD
    assert read(other_lu, 0, 1) == pattern(1, 9)


@pytest.mark.parametrize(
    ("receiver_flag", "other_flag", "allowed"),
    [(True, True, True), (True, False, True), (False, True, False), (False, False, False)],
)
def test_insecure_tpc_of_the_receiving_lu_decides(
    lu: LogicalUnit, other_lu: LogicalUnit, receiver_flag: bool, other_flag: bool, allowed: bool
) -> None:
    """Issue #11 item 5, CTL ctl_tpc.c: the LU that received EXTENDED COPY decides, by its own
    insecure_tpc, whether it may reach an LU its session cannot; the other LU's flag is not read."""
    fabric(lu).lus[NAA_B] = other_lu
    lu.identity.insecure_tpc, other_lu.identity.insecure_tpc = receiver_flag, other_flag
    fill(lu, 0, pattern(1, 4))
    res = xcopy(lu, params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)]))
    if allowed:
        assert res.status == GOOD
        assert read(other_lu, 0, 1) == pattern(1, 4)
    else:
        assert sense_of(res) == UNREACHABLE and field_pointer(res) == (False, 16 + 32 + 8, None)
        assert read(other_lu, 0, 1) == bytes(BS)


def test_session_luns_need_no_insecure_tpc(lu: LogicalUnit, other_lu: LogicalUnit) -> None:
    """LUs of the session's own target are reachable whatever the flags say."""
    lu.identity.insecure_tpc = other_lu.identity.insecure_tpc = False
    data = params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)])
    assert xcopy({0: lu, 1: other_lu}, data).status == GOOD


def test_reservation_of_a_copy_target_applies(lu: LogicalUnit, other_lu: LogicalUnit) -> None:
    assert prout(other_lu, REGISTER, sark=7, nexus=OTHER).status == GOOD
    assert prout(other_lu, RESERVE, key=7, rtype=EA, nexus=OTHER).status == GOOD
    data = params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)])
    assert xcopy({0: lu, 1: other_lu}, data).status == RESERVATION_CONFLICT


def test_write_protected_destination(lu: LogicalUnit) -> None:
    ro = make_lu(MemoryBackend(64), identity(naa="0x" + NAA_B.hex(), read_only=True))
    res = xcopy({0: lu, 1: ro}, params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)]))
    assert sense_of(res) == (0x07, 0x27, 0x00)


def test_copy_target_in_sanitize_failure_mode(lu: LogicalUnit, other_lu: LogicalUnit) -> None:
    other_lu.sanitize_state = SANITIZE_FAILED
    res = xcopy({0: lu, 1: other_lu}, params([cscd(NAA_A), cscd(NAA_B)], [b2b(0, 1, 1, 0, 0)]))
    assert sense_of(res) == (0x03, 0x31, 0x03)
    other_lu.sanitize_state = SANITIZE_RUNNING
    res = xcopy({0: lu, 1: other_lu}, params([cscd(NAA_A), cscd(NAA_B)], [b2b(1, 0, 1, 0, 0)]))
    assert sense_of(res) == (0x02, 0x04, 0x1B)


def test_storage_error_aborts_the_copy(lu: LogicalUnit) -> None:
    backend = SparseBackend(64)
    failing = make_lu(backend, identity(naa="0x" + NAA_B.hex()))
    backend.fail["read"] = MediumError("eio")
    data = params([cscd(NAA_B)], [b2b(0, 0, 1, 0, 1)], list_id=4, usage=HOLD)
    res = xcopy({0: failing}, data)
    assert sense_of(res) == COPY_ABORTED_NO_SENSE and field_pointer(res) == (False, 16 + 32, None)
    status = good(failing, rcr_cdb(0x00, 4))
    assert status == struct.pack(">IBHBI", 8, 0x02, 0, 0, 0)  # completed with errors, 0 segments


# ---- descriptor checks (libiscsi ExtendedCopy.ParamHdr/DescrLimits/DescrType/Valid*) -------------------


def test_parameter_list_length_checks(lu: LogicalUnit) -> None:
    full = params([cscd()], [b2b(0, 0, 1, 0, 1)])
    for cut in (8, 16 + 32 - 1, len(full) - 1):  # shorter than the header, target, segment
        assert sense_of(run(lu, xcopy_cdb(cut), data=full[:cut])) == PARAM_LEN


def test_descriptor_limits(lu: LogicalUnit) -> None:
    res = xcopy(lu, params([cscd()] * 9, [b2b(0, 0, 1, 0, 1)]))
    assert sense_of(res) == (0x05, 0x26, 0x06)
    res = xcopy(lu, params([cscd()], [b2b(0, 0, 1, 0, 1)] * 65))
    assert sense_of(res) == (0x05, 0x26, 0x08)
    res = xcopy(lu, params([cscd()] * 9, [b2b(0, 0, 1, 0, 1)] * 65))
    assert sense_of(res) == PARAM_LEN


def test_unsupported_descriptor_types(lu: LogicalUnit) -> None:
    res = xcopy(lu, params([cscd(code=0xE0)], [b2b(0, 0, 1, 0, 1)]))
    assert sense_of(res) == (0x05, 0x26, 0x07) and field_pointer(res) == (False, 16, None)
    stream = struct.pack(">BBH16x", 0x03, 0, 0x10)  # stream-to-stream, 20 bytes
    res = xcopy(lu, params([cscd()], [stream]))
    assert sense_of(res) == (0x05, 0x26, 0x09)


def test_target_descriptor_fields(lu: LogicalUnit) -> None:
    # SPC-4: LU ID TYPE and NUL are obsolete and ignored (libiscsi ExtendedCopy.ValidTgtDescr)
    assert xcopy(lu, params([cscd(lu_id_type=2)], [b2b(0, 0, 1, 0, 1)])).status == GOOD
    assert xcopy(lu, params([cscd(nul=True)], [b2b(0, 0, 1, 0, 1)])).status == GOOD
    res = xcopy(lu, params([cscd(peripheral=0x05)], [b2b(0, 0, 1, 0, 1)]))  # a CD-ROM
    assert sense_of(res) == WRONG_TYPE and field_pointer(res) == (False, 17, 4)
    assert sense_of(xcopy(lu, params([cscd(NAA_B)], [b2b(0, 0, 1, 0, 1)]))) == UNREACHABLE
    assert sense_of(xcopy(lu, params([cscd(bs=4096)], [b2b(0, 0, 1, 0, 1)]))) == WRONG_TYPE


def test_segment_descriptor_fields(lu: LogicalUnit) -> None:
    res = xcopy(lu, params([cscd()], [b2b(0, 1, 8, 0, 100)]))
    assert sense_of(res) == NOT_REACHABLE and field_pointer(res) == (False, 16 + 32 + 6, None)
    res = xcopy(lu, params([cscd()], [b2b(0, 0, 8, 0, 1020)]))  # beyond the end of the LU
    assert sense_of(res) == COPY_ABORTED_NO_SENSE and field_pointer(res) == (False, 16 + 32 + 20, None)
    res = xcopy(lu, params([cscd()], [b2b(0, 0, 8, 1020, 0)]))
    assert field_pointer(res) == (False, 16 + 32 + 12, None)


def test_header_fields(lu: LogicalUnit) -> None:
    seg = [b2b(0, 0, 1, 0, 1)]
    res = xcopy(lu, params([cscd()], seg, usage=1))
    assert sense_of(res) == INVALID_PARAM and field_pointer(res) == (False, 1, 4)
    res = xcopy(lu, params([cscd()], seg, list_id=3, usage=NO_LIST_ID))
    assert field_pointer(res) == (False, 0, None)
    data = params([cscd()], seg, inline=4) + bytes(4)
    assert field_pointer(xcopy(lu, data)) == (False, 12, None)
    assert xcopy(lu, params([cscd()], seg, list_id=0, usage=NO_LIST_ID)).status == GOOD


# ---- RECEIVE COPY RESULTS -----------------------------------------------------------------------------


def test_operating_parameters_golden(lu: LogicalUnit) -> None:
    assert rcr_cdb(0x03) == bytes.fromhex("84030000000000000000" "00000400" "0000")
    data = good(lu, rcr_cdb(0x03))
    assert data == bytes.fromhex(
        "0000002a" "01000000" "0008" "0040" "00000800" "10000000" "00000000" "00000000" "00000000"
        "0000" "00ff" "ff" "09" "00" "00" "000000" "02" "02e4"
    )
    assert len(good(lu, rcr_cdb(0x03, alloc=10))) == 10


def test_copy_status_is_held_per_nexus_for_list_id_usage_00b(lu: LogicalUnit) -> None:
    assert field_pointer(run(lu, rcr_cdb(0x00, 1))) == (True, 2, None)  # no copy with list ID 1
    fill(lu, 0, pattern(3))
    assert xcopy(lu, params([cscd()], [b2b(0, 0, 3, 0, 50)], list_id=1, usage=HOLD)).status == GOOD
    assert good(lu, rcr_cdb(0x00, 1)) == struct.pack(">IBHBI", 8, 0x01, 1, 0x00, 3 * BS)
    assert sense_of(run(lu, rcr_cdb(0x00, 1), nexus=OTHER)) == (0x05, 0x24, 0x00)  # another nexus's list
    assert xcopy(lu, params([cscd()], [b2b(0, 0, 3, 0, 50)], list_id=2, usage=DISCARD)).status == GOOD
    assert sense_of(run(lu, rcr_cdb(0x00, 2))) == (0x05, 0x24, 0x00)  # discarded
    lu.nexus_gone(NEXUS)
    run(lu, bytes(6))  # the new login's power-on unit attention
    assert sense_of(run(lu, rcr_cdb(0x00, 1))) == (0x05, 0x24, 0x00)


def test_list_id_in_use_is_operation_in_progress(lu: LogicalUnit) -> None:
    assert lu.copy_begin(NEXUS, 5)
    res = xcopy(lu, params([cscd()], [b2b(0, 0, 1, 0, 1)], list_id=5, usage=HOLD))
    assert sense_of(res) == (0x05, 0x00, 0x16)
    assert good(lu, rcr_cdb(0x00, 5)) == struct.pack(">IBHBI", 8, 0x00, 0, 0, 0)  # in progress
    lu.copy_end(NEXUS, 5, None)
    assert xcopy(lu, params([cscd()], [b2b(0, 0, 1, 0, 1)], list_id=5)).status == GOOD


def test_unsupported_receive_copy_results_service_actions(lu: LogicalUnit) -> None:
    for sa in (0x01, 0x04, 0x05):  # RECEIVE DATA, FAILED SEGMENT DETAILS, LID4 ...
        res = run(lu, rcr_cdb(sa))
        assert sense_of(res) == (0x05, 0x24, 0x00) and field_pointer(res) == (True, 1, 4)


def test_transfer_count_units() -> None:
    assert _transfer_count(1536) == (0x00, 1536)
    assert _transfer_count(1 << 33) == (0xF1, 1 << 23)
    assert _transfer_count(1 << 43) == (0xF2, 1 << 23)
