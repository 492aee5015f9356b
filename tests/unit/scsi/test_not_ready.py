"""An LU whose storage cannot be served (issue #10 items 2 and 11): it stays in the LUN map and
answers like a disk that is not ready. INQUIRY, REPORT LUNS and REQUEST SENSE work; every other
command, persistent reservations included, gets NOT READY, LOGICAL UNIT NOT READY, MANUAL
INTERVENTION REQUIRED (02/04/03, SPC-4 Annex D); unit attentions are still reported first."""

from __future__ import annotations

import pytest

from pyscsi_target.scsi import LogicalUnit
from pyscsi_target.scsi.types import CHECK_CONDITION
from pyscsi_target.storage import MemoryBackend

from .util import cdb10, connect, good, identity, new_lu, run, sense_of

NOT_READY = (0x02, 0x04, 0x03)
POWER_ON = (0x06, 0x29, 0x00)
INQUIRY = bytes([0x12, 0, 0, 0, 36, 0])
REPORT_LUNS = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 18, 0])
READ_CAPACITY_10 = bytes([0x25]) + bytes(9)
PR_IN_READ_KEYS = bytes([0x5E, 0x00]) + bytes(5) + (512).to_bytes(2, "big") + b"\0"


def unavailable_lu() -> LogicalUnit:
    lu = connect(new_lu(MemoryBackend(64), identity()))
    lu.unavailable = "cannot read its persistent reservations"
    return lu


@pytest.mark.parametrize("cdb", [bytes(6), cdb10(0x28, 0, 1), READ_CAPACITY_10, PR_IN_READ_KEYS],
                         ids=["test-unit-ready", "read", "read-capacity", "pr-in"])
def test_medium_and_reservation_commands_get_not_ready(cdb: bytes) -> None:
    res = run(unavailable_lu(), cdb)
    assert res.status == CHECK_CONDITION and sense_of(res) == NOT_READY


def test_writes_get_not_ready_and_change_nothing() -> None:
    lu = unavailable_lu()
    res = run(lu, cdb10(0x2A, 0, 1), data=b"\xff" * 512)
    assert sense_of(res) == NOT_READY
    assert bytes(lu.backend.read(0, 1)) == bytes(512)


def test_inquiry_report_luns_and_request_sense_still_answer() -> None:
    lu = unavailable_lu()
    assert good(lu, INQUIRY)[0] == 0x00  # a direct-access device is there
    assert good(lu, REPORT_LUNS)[3] == 8  # one LUN
    sense = good(lu, REQUEST_SENSE)
    assert (sense[2] & 0x0F, sense[12], sense[13]) == NOT_READY


def test_unit_attentions_come_first() -> None:
    lu = new_lu(MemoryBackend(64), identity())
    lu.unavailable = "refused"
    assert sense_of(run(lu, bytes(6))) == POWER_ON
    assert sense_of(run(lu, bytes(6))) == NOT_READY
