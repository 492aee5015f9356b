"""The fixed check order of `execute()`: LUN exists → unit attention → CDB valid → reservation
conflict → capability → handler, and the one storage-error → sense mapping."""

from __future__ import annotations

import pytest

from pyscsi_target.scsi import LogicalUnit, Nexus, SenseReason
from pyscsi_target.scsi.core import data_out_length, is_blocking
from pyscsi_target.scsi.types import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT
from pyscsi_target.storage.base import (
    FlushFailed,
    MediumError,
    NoSpace,
    OutOfRange,
    ReadOnly,
    StorageError,
)

from .util import (
    NEXUS,
    OTHER,
    SparseBackend,
    cdb10,
    cdb16,
    fabric,
    field_pointer,
    good,
    identity,
    make_lu,
    new_lu,
    run,
    sense_of,
)

TUR = bytes(6)
INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 252, 0])
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
ILLEGAL = 0x05


# ---- LUN exists ------------------------------------------------------------------------------


def test_unknown_lun_is_not_supported_for_ordinary_commands(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, TUR, lun=3)) == (ILLEGAL, 0x25, 0x00)
    assert sense_of(run({}, cdb10(0x28, 0, 1))) == (ILLEGAL, 0x25, 0x00)


def test_unknown_lun_inquiry_reports_qualifier_011b(lu: LogicalUnit) -> None:
    data = good(lu, INQUIRY, lun=7)
    assert data[0] == 0x7F and data[4] == len(data) - 5


def test_unknown_lun_request_sense_returns_lu_not_supported_with_good_status() -> None:
    data = good({}, REQUEST_SENSE)
    assert (data[2], data[12], data[13]) == (ILLEGAL, 0x25, 0x00)


def test_report_luns_works_without_any_lun() -> None:
    assert good({}, REPORT_LUNS, lun=5) == bytes(8)


def test_unknown_opcode_and_service_action(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, bytes([0xC7, 0, 0, 0, 0, 0]))) == (ILLEGAL, 0x20, 0x00)
    res = run(lu, bytes([0x9E, 0x1B]) + bytes(14))  # SERVICE ACTION IN(16), unknown action
    assert sense_of(res) == (ILLEGAL, 0x24, 0x00)
    assert field_pointer(res) == (True, 1, 4)
    assert sense_of(run(lu, b"")) == (ILLEGAL, 0x20, 0x00)


def test_truncated_cdb_is_invalid_field(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, bytes([0x28, 0, 0, 0]))) == (ILLEGAL, 0x24, 0x00)


def test_reserved_bits_and_control_byte_are_rejected_with_field_pointer(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x28, 0, 1, flags=0x20))  # RDPROTECT=001b without protection support
    assert sense_of(res) == (ILLEGAL, 0x24, 0x00)
    assert field_pointer(res) == (True, 1, 5)
    res = run(lu, bytes([0, 0, 0, 0, 0, 0x04]))  # NACA=1: NormACA is not supported (SAM-5 §5.10)
    assert field_pointer(res) == (True, 5, 2)


# ---- unit attention --------------------------------------------------------------------------


def test_unit_attention_reported_once_then_cleared(lu: LogicalUnit) -> None:
    good(lu, TUR)
    lu.add_unit_attention(SenseReason.CAPACITY_DATA_CHANGED)
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x09)
    good(lu, TUR)


def test_unit_attention_beats_an_invalid_opcode(lu: LogicalUnit) -> None:
    good(lu, TUR)
    lu.capacity_changed()
    assert sense_of(run(lu, bytes([0xC7]) + bytes(5))) == (0x06, 0x2A, 0x09)


def test_inquiry_and_report_luns_do_not_consume_the_unit_attention(lu: LogicalUnit) -> None:
    good(lu, TUR)
    lu.capacity_changed()
    good(lu, INQUIRY)
    good(lu, REPORT_LUNS)
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x09)


def test_request_sense_returns_and_clears_the_unit_attention(lu: LogicalUnit) -> None:
    good(lu, TUR)
    lu.capacity_changed()
    data = good(lu, REQUEST_SENSE)
    assert (data[2], data[12], data[13]) == (0x06, 0x2A, 0x09)
    data = good(lu, REQUEST_SENSE)
    assert (data[2], data[12], data[13]) == (0, 0, 0)
    good(lu, TUR)


def test_request_sense_descriptor_format_and_allocation_length(lu: LogicalUnit) -> None:
    assert good(lu, bytes([0x03, 0x01, 0, 0, 252, 0])) == bytes.fromhex("7200000000000000")
    assert len(good(lu, bytes([0x03, 0, 0, 0, 4, 0]))) == 4


def test_lu_reset_gives_every_nexus_a_reset_unit_attention(lu: LogicalUnit) -> None:
    """SAM-5 §6.3.3: the nexus that asked for the reset sees it too (MultipathIO.Reset)."""
    lu.reset(NEXUS)
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == (0x06, 0x29, 0x00)
    assert sense_of(run(lu, TUR, nexus=OTHER)) == (0x06, 0x29, 0x00)
    good(lu, TUR, nexus=NEXUS)
    good(lu, TUR, nexus=OTHER)


def test_new_nexus_gets_power_on_reset_first_then_only_later_events(lu: LogicalUnit) -> None:
    lu.capacity_changed()
    newcomer = Nexus("iqn.1993-08.org.debian:01:cc,i,0x00023d000003", NEXUS.target_port)
    good(lu, INQUIRY, nexus=newcomer)  # INQUIRY does not report it (SAM-5 §5.14)
    assert sense_of(run(lu, TUR, nexus=newcomer)) == (0x06, 0x29, 0x00)
    good(lu, TUR, nexus=newcomer)  # the capacity change happened before it existed
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == (0x06, 0x2A, 0x09)


def test_power_on_reset_is_what_request_sense_reports_first() -> None:
    fresh = new_lu(SparseBackend(8), identity())
    data = good(fresh, REQUEST_SENSE)
    assert (data[2], data[12], data[13]) == (0x06, 0x29, 0x00)
    assert good(fresh, REQUEST_SENSE)[2] == 0


def test_nexus_gone_drops_its_unit_attentions_and_a_new_login_starts_afresh(lu: LogicalUnit) -> None:
    lu.capacity_changed()
    lu.nexus_gone(NEXUS)
    assert sense_of(run(lu, TUR)) == (0x06, 0x29, 0x00)
    good(lu, TUR)


def test_several_unit_attentions_come_out_in_order(lu: LogicalUnit) -> None:
    good(lu, TUR)
    lu.add_unit_attention(SenseReason.BUS_DEVICE_RESET)
    lu.add_unit_attention(SenseReason.CAPACITY_DATA_CHANGED)
    lu.add_unit_attention(SenseReason.BUS_DEVICE_RESET)  # already pending: not queued twice
    assert sense_of(run(lu, TUR)) == (0x06, 0x29, 0x03)
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x09)
    good(lu, TUR)


# ---- reservations (SPC-2) --------------------------------------------------------------------

RESERVE6 = bytes([0x16, 0, 0, 0, 0, 0])
RELEASE6 = bytes([0x17, 0, 0, 0, 0, 0])
RESERVE10 = bytes([0x56]) + bytes(9)
RELEASE10 = bytes([0x57]) + bytes(9)


@pytest.mark.parametrize(("reserve", "release"), [(RESERVE6, RELEASE6), (RESERVE10, RELEASE10)])
def test_reserve_conflicts_for_other_nexus(lu: LogicalUnit, reserve: bytes, release: bytes) -> None:
    good(lu, reserve, nexus=NEXUS)
    good(lu, reserve, nexus=NEXUS)  # re-reserving is fine
    assert run(lu, reserve, nexus=OTHER).status == RESERVATION_CONFLICT
    assert run(lu, TUR, nexus=OTHER).status == RESERVATION_CONFLICT
    assert run(lu, cdb10(0x28, 0, 1), nexus=OTHER).status == RESERVATION_CONFLICT
    good(lu, INQUIRY, nexus=OTHER)
    good(lu, REPORT_LUNS, nexus=OTHER)
    good(lu, release, nexus=OTHER)  # a non-holder's release is GOOD and changes nothing
    assert run(lu, TUR, nexus=OTHER).status == RESERVATION_CONFLICT
    good(lu, release, nexus=NEXUS)
    good(lu, TUR, nexus=OTHER)


def test_reservation_released_by_nexus_loss_and_reset(lu: LogicalUnit) -> None:
    good(lu, RESERVE6, nexus=NEXUS)
    lu.nexus_gone(NEXUS)
    good(lu, TUR, nexus=OTHER)
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == (0x06, 0x29, 0x00)  # a new login of NEXUS
    good(lu, RESERVE6, nexus=OTHER)
    lu.reset(None)
    assert sense_of(run(lu, TUR, nexus=OTHER)) == (0x06, 0x29, 0x00)
    assert sense_of(run(lu, TUR, nexus=NEXUS)) == (0x06, 0x29, 0x00)
    good(lu, RESERVE6, nexus=NEXUS)  # the reset released OTHER's reservation


def test_third_party_reserve10_is_refused(lu: LogicalUnit) -> None:
    assert sense_of(run(lu, bytes([0x56, 0x10]) + bytes(8))) == (ILLEGAL, 0x24, 0x00)


# ---- capability ------------------------------------------------------------------------------


def test_write_to_read_only_lu_is_data_protect() -> None:
    for lu in (
        make_lu(SparseBackend(64), identity(read_only=True)),
        make_lu(SparseBackend(64, read_only=True), identity()),
    ):
        res = run(lu, cdb10(0x2A, 0, 1), data=bytes(512))
        assert sense_of(res) == (0x07, 0x27, 0x00)
        good(lu, cdb10(0x28, 0, 1))


def test_descriptor_sense_when_d_sense_is_set(lu: LogicalUnit) -> None:
    lu.mode.d_sense = True
    res = run(lu, cdb10(0x28, 5000, 1))
    assert res.sense is not None and res.sense[0] == 0x72
    assert sense_of(res) == (ILLEGAL, 0x21, 0x00)


# ---- storage errors → sense, in one place ------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "exc", "cdb", "expected"),
    [
        ("read", MediumError("eio"), cdb10(0x28, 0, 1), (0x03, 0x11, 0x00)),
        ("write", MediumError("eio"), cdb10(0x2A, 0, 1), (0x03, 0x0C, 0x00)),
        ("flush", FlushFailed("fsync"), cdb10(0x35, 0, 0), (0x03, 0x0C, 0x00)),
        ("flush", FlushFailed("fsync"), cdb10(0x2A, 0, 1, flags=0x08), (0x03, 0x0C, 0x00)),
        ("write", NoSpace("enospc"), cdb16(0x8A, 0, 1), (0x07, 0x27, 0x07)),
        ("write", ReadOnly("ro"), cdb10(0x2A, 0, 1), (0x07, 0x27, 0x00)),
        ("read", OutOfRange("shrunk"), cdb10(0x28, 0, 1), (0x05, 0x21, 0x00)),
        ("read", StorageError("?"), cdb10(0x28, 0, 1), (0x04, 0x44, 0x00)),
    ],
)
def test_storage_errors_map_to_sense(
    op: str, exc: StorageError, cdb: bytes, expected: tuple[int, int, int]
) -> None:
    backend = SparseBackend(64)
    backend.fail[op] = exc
    res = run(make_lu(backend, identity()), cdb, data=bytes(512))
    assert res.status == CHECK_CONDITION
    assert sense_of(res) == expected


# ---- is_blocking / data_out_length -------------------------------------------------------------


def test_is_blocking(lu: LogicalUnit) -> None:
    assert is_blocking(cdb10(0x35, 0, 0))
    assert is_blocking(cdb10(0x2A, 0, 1, flags=0x08))  # FUA
    assert is_blocking(cdb10(0x2A, 0, 4096))  # large
    assert not is_blocking(cdb10(0x2A, 0, 8))
    assert not is_blocking(cdb10(0x28, 0, 8))
    assert not is_blocking(bytes(6))
    assert not is_blocking(b"")
    assert not is_blocking(bytes([0xC7]))
    lu.mode.wce = False
    assert is_blocking(cdb10(0x2A, 0, 8), lu)  # write-through


def test_data_out_length() -> None:
    assert data_out_length(cdb10(0x2A, 0, 3), 512) == 1536
    assert data_out_length(bytes([0x0A, 0, 0, 0, 0, 0]), 4096) == 256 * 4096  # WRITE(6) 0 = 256
    assert data_out_length(cdb16(0x8A, 0, 2), 4096) == 8192
    assert data_out_length(bytes([0x15, 0x10, 0, 0, 28, 0]), 512) == 28  # MODE SELECT(6)
    assert data_out_length(cdb10(0x28, 0, 3), 512) is None
    assert data_out_length(bytes([0x2A, 0]), 512) is None
    assert data_out_length(b"", 512) is None


def test_write_sets_transfer_length_even_when_refused(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x2A, 0, 2, flags=0x20), data=bytes(512))  # WRPROTECT: refused
    assert res.transfer_length == 1024 and res.status == CHECK_CONDITION
    assert good(lu, TUR) == b""
    assert run(lu, cdb10(0x2A, 0, 2), data=bytes(512)).transfer_length == 1024
    assert run(lu, cdb10(0x2A, 0, 2), data=bytes(1024)).transfer_length == 1024
    assert run(lu, cdb10(0x28, 0, 2)).transfer_length is None
    assert run(lu, cdb10(0x2A, 0, 2), data=bytes(1024)).status == GOOD


def test_refused_write_cdb_still_reports_its_transfer_length(lu: LogicalUnit) -> None:
    res = run(lu, cdb10(0x2A, 0, 2, flags=0x20), data=bytes(1024))  # WRPROTECT set
    assert sense_of(res) == (ILLEGAL, 0x24, 0x00) and res.transfer_length == 1024


def test_reservation_of_a_holder_whose_connection_ended_does_not_conflict(lu: LogicalUnit) -> None:
    """SPC-2 §5.5.1: I_T nexus loss releases a RESERVE; the transport may know of the loss
    (peer closed) before it has processed it, and the LU's host (`nexus_alive`) lets the check ask."""
    holder = Nexus("iqn.2026-11.org.example:holder,i,0x800000000008", "iqn.t,t,0x0001")
    other = Nexus("iqn.2026-11.org.example:other,i,0x800000000009", "iqn.t,t,0x0001")
    assert lu.reserve(holder)
    assert lu.conflicts(other)
    alive = fabric(lu).alive
    alive[holder] = True
    assert lu.conflicts(other)  # a live holder still conflicts
    alive[holder] = False
    assert not lu.conflicts(other) and lu.reserved_by is None  # released for good
    assert lu.reserve(other)
