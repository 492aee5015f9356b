"""PERSISTENT RESERVE IN/OUT (SPC-4 §5.13, §6.16, §6.17): golden CDBs and parameter data, every
service action, the conflict table for all six types, the unit attentions, SPC-2 interplay and
APTPL persistence."""

from __future__ import annotations

import struct

import pytest

from pyscsi_target.scsi import LogicalUnit, Nexus
from pyscsi_target.scsi.pr import transport_id
from pyscsi_target.scsi.types import GOOD, RESERVATION_CONFLICT

from .prutil import (
    ALL_TG_PT,
    ALL_TYPES,
    APTPL,
    CLEAR,
    EA,
    EA_AR,
    EA_RO,
    PREEMPT,
    PREEMPT_AND_ABORT,
    READ_FULL_STATUS,
    REGISTER,
    REGISTER_AND_IGNORE,
    RELEASE,
    REPORT_CAPABILITIES,
    RESERVE,
    SPEC_I_PT,
    WE,
    WE_AR,
    WE_RO,
    keys,
    prin_cdb,
    prout,
    prout_cdb,
    prout_params,
    reservation,
)
from .util import NEXUS, OTHER, cdb10, connect, fabric, field_pointer, good, new_lu, run, sense_of

K1, K2, K3 = 0x1111_2222_3333_4444, 0xAAAA_BBBB_CCCC_DDDD, 0x42
READ10 = cdb10(0x28, 1, 1)
WRITE10 = cdb10(0x2A, 1, 1)
TUR = bytes(6)
INVALID_FIELD_CDB = (0x05, 0x24, 0x00)
INVALID_FIELD_PARAM = (0x05, 0x26, 0x00)
#: NEXUS's initiator port through a second target port (another portal group)
ELSEWHERE = Nexus(NEXUS.initiator_port, "iqn.2005-10.org.freenas.ctl:t1,t,0x0002", relative_port_id=2)


def ok(res: object) -> None:
    assert getattr(res, "status", None) == GOOD, res


def conflict(res: object) -> None:
    assert getattr(res, "status", None) == RESERVATION_CONFLICT, res


def both_registered(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER_AND_IGNORE, sark=K1))
    ok(prout(lu, REGISTER_AND_IGNORE, sark=K2, nexus=OTHER))


# ---- REGISTER / REGISTER AND IGNORE EXISTING KEY / READ KEYS ------------------------------------


def test_golden_register_then_read_keys(lu: LogicalUnit) -> None:
    assert prout_cdb(REGISTER) == bytes.fromhex("5f000000000000001800")
    ok(run(lu, bytes.fromhex("5f000000000000001800"), data=prout_params(sark=K1)))
    data = good(lu, bytes.fromhex("5e000000000000200000"))  # READ KEYS, ALLOCATION LENGTH 2000h
    assert data == bytes.fromhex("00000001" "00000008") + struct.pack(">Q", K1)


def test_register_rules(lu: LogicalUnit) -> None:
    conflict(prout(lu, REGISTER, key=K3, sark=K1))  # unregistered: RESERVATION KEY must be 0
    ok(prout(lu, REGISTER, sark=0))  # unregistered, key 0: nothing, no generation bump
    assert keys(lu) == (0, [])
    ok(prout(lu, REGISTER, sark=K1))
    conflict(prout(lu, REGISTER, sark=K1 + 1))  # registered: RESERVATION KEY must match
    ok(prout(lu, REGISTER, key=K1, sark=K2))  # change the key
    assert keys(lu) == (2, [K2])
    ok(prout(lu, REGISTER_AND_IGNORE, key=K3, sark=K1))  # the key is ignored
    ok(prout(lu, REGISTER, key=K1, sark=0))  # unregister
    assert keys(lu) == (4, [])


def test_read_keys_truncated_keeps_the_additional_length(lu: LogicalUnit) -> None:
    both_registered(lu)
    data = good(lu, prin_cdb(0, alloc=8))
    assert data == struct.pack(">II", 2, 16)


def test_all_tg_pt_registers_every_target_port(lu: LogicalUnit) -> None:
    connect(lu, ELSEWHERE)
    ok(prout(lu, REGISTER, sark=K1, flags=ALL_TG_PT))
    ok(prout(lu, RESERVE, key=K1, rtype=EA, nexus=ELSEWHERE))  # registered through the other port
    assert reservation(lu) == (K1, EA)
    ok(run(lu, READ10, nexus=ELSEWHERE))
    conflict(run(lu, READ10, nexus=OTHER))
    status = good(lu, prin_cdb(READ_FULL_STATUS))
    assert status[8 + 12] == 0x03  # ALL_TG_PT and R_HOLDER
    assert status[8 + 18 : 8 + 20] == b"\x00\x00"  # no single relative target port


# ---- RESERVE / RELEASE / READ RESERVATION ----------------------------------------------------------


@pytest.mark.parametrize("rtype", ALL_TYPES)
def test_reserve_and_read_reservation(lu: LogicalUnit, rtype: int) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=rtype))
    expected_key = 0 if rtype in (WE_AR, EA_AR) else K1  # all registrants: key 0 (SPC-4 §6.16.3.3)
    data = good(lu, prin_cdb(1))
    assert data == struct.pack(">II", 1, 16) + struct.pack(">Q4xxB2x", expected_key, rtype)
    ok(prout(lu, RESERVE, key=K1, rtype=rtype))  # the holder re-reserving with the same type
    conflict(prout(lu, RESERVE, key=K1, rtype=WE if rtype != WE else EA))  # another type
    ok(prout(lu, RELEASE, key=K1, rtype=rtype))
    assert reservation(lu) is None
    assert keys(lu)[0] == 1  # RESERVE and RELEASE do not bump the generation


def test_reserve_needs_a_matching_registration(lu: LogicalUnit) -> None:
    conflict(prout(lu, RESERVE, key=K1, rtype=WE))
    ok(prout(lu, REGISTER, sark=K1))
    conflict(prout(lu, RESERVE, key=K2, rtype=WE))
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=WE))
    conflict(prout(lu, RESERVE, key=K2, rtype=WE, nexus=OTHER))


def test_release_rules(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=WE_RO))
    ok(prout(lu, RELEASE, key=K2, rtype=WE_RO, nexus=OTHER))  # not the holder: GOOD, no change
    assert reservation(lu) == (K1, WE_RO)
    res = prout(lu, RELEASE, key=K1, rtype=EA)
    assert sense_of(res) == (0x05, 0x26, 0x04)  # INVALID RELEASE OF PERSISTENT RESERVATION
    conflict(prout(lu, RELEASE, key=K2, rtype=WE_RO))  # wrong key for NEXUS
    ok(prout(lu, RELEASE, key=K1, rtype=WE_RO))
    assert sense_of(run(lu, TUR, nexus=OTHER)) == (0x06, 0x2A, 0x04)  # RESERVATIONS RELEASED
    ok(run(lu, TUR))  # never the nexus that released


def test_releasing_write_exclusive_tells_nobody(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=WE))
    ok(prout(lu, RELEASE, key=K1, rtype=WE))
    ok(run(lu, TUR, nexus=OTHER))


# ---- the conflict table (SPC-4 table 66, SBC-4 table 13) ------------------------------------------

#: (registered OTHER reads, writes; unregistered OTHER reads, writes): libiscsi's ProutReserve.Access*
ACCESS = {
    EA: (False, False, False, False),
    WE: (True, False, True, False),
    EA_RO: (True, True, False, False),
    WE_RO: (True, True, True, False),
    EA_AR: (True, True, False, False),
    WE_AR: (True, True, True, False),
}


@pytest.mark.parametrize("rtype", ALL_TYPES)
def test_access_by_type(lu: LogicalUnit, rtype: int) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=rtype))
    ok(run(lu, READ10))
    ok(run(lu, WRITE10, data=bytes(512)))
    reg_read, reg_write, unreg_read, unreg_write = ACCESS[rtype]
    assert (run(lu, READ10, nexus=OTHER).status == GOOD) is reg_read
    assert (run(lu, WRITE10, nexus=OTHER, data=bytes(512)).status == GOOD) is reg_write
    ok(prout(lu, REGISTER, key=K2, sark=0, nexus=OTHER))
    assert (run(lu, READ10, nexus=OTHER).status == GOOD) is unreg_read
    assert (run(lu, WRITE10, nexus=OTHER, data=bytes(512)).status == GOOD) is unreg_write


@pytest.mark.parametrize(
    ("cdb", "allowed"),
    [
        (TUR, True),
        (bytes([0x12, 0, 0, 0, 96, 0]), True),  # INQUIRY
        (bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), True),  # REPORT LUNS
        (bytes([0x25]) + bytes(9), True),  # READ CAPACITY(10)
        (prin_cdb(0), True),  # PERSISTENT RESERVE IN
        (bytes([0x1B, 0, 0, 0, 0x01, 0]), True),  # START STOP UNIT: START=1, POWER CONDITION 0
        (bytes([0x1B, 0, 0, 0, 0x00, 0]), False),  # START=0 (stop)
        (bytes([0x1E, 0, 0, 0, 0, 0]), True),  # ALLOW MEDIUM REMOVAL
        (bytes([0x1E, 0, 0, 0, 1, 0]), False),  # PREVENT MEDIUM REMOVAL
        (bytes([0x1A, 0, 0x3F, 0, 255, 0]), False),  # MODE SENSE(6): ALLOW COMMANDS 010b
        (bytes([0x37, 0, 0, 0, 0, 0, 0, 0, 32, 0]), False),  # READ DEFECT DATA(10)
        (cdb10(0x35, 0, 0), False),  # SYNCHRONIZE CACHE
        (bytes([0x9E, 0x12]) + bytes(8) + b"\x00\x00\x00\x20" + bytes(2), False),  # GET LBA STATUS: a read
    ],
)
def test_commands_under_exclusive_access_from_an_unregistered_nexus(
    lu: LogicalUnit, cdb: bytes, allowed: bool
) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=EA))
    assert (run(lu, cdb, nexus=OTHER).status != RESERVATION_CONFLICT) is allowed


def test_reads_pass_write_exclusive_but_not_its_writes(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=WE))
    ok(run(lu, bytes([0x9E, 0x12]) + bytes(8) + b"\x00\x00\x00\x20" + bytes(2), nexus=OTHER))
    ok(run(lu, cdb10(0x2F, 0, 1), nexus=OTHER))  # VERIFY(10)
    conflict(run(lu, cdb10(0x2E, 0, 1), nexus=OTHER, data=bytes(512)))  # WRITE AND VERIFY(10)


# ---- ownership: a holder that unregisters (libiscsi ProutReserve.Ownership*) -----------------------


@pytest.mark.parametrize("rtype", ALL_TYPES)
def test_holder_unregistering(lu: LogicalUnit, rtype: int) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=rtype))
    ok(prout(lu, REGISTER, key=K1, sark=0))
    if rtype in (WE_AR, EA_AR):
        assert reservation(lu) == (0, rtype)  # every registrant holds it: OTHER still does
        ok(run(lu, TUR, nexus=OTHER))
        ok(prout(lu, RELEASE, key=K2, rtype=rtype, nexus=OTHER))
    else:
        assert reservation(lu) is None
        expected = (0x06, 0x2A, 0x04) if rtype in (WE_RO, EA_RO) else None
        res = run(lu, TUR, nexus=OTHER)
        assert (sense_of(res) if res.status else None) == expected
    ok(prout(lu, REGISTER, key=K2, sark=0, nexus=OTHER))
    assert reservation(lu) is None and keys(lu)[1] == []


def test_last_all_registrants_registration_leaving_releases(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=EA_AR))
    ok(prout(lu, REGISTER, key=K1, sark=0))
    assert reservation(lu) is None


# ---- CLEAR / PREEMPT / PREEMPT AND ABORT -------------------------------------------------------------


def test_clear(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=EA))
    generation = keys(lu)[0]
    conflict(prout(lu, CLEAR, key=K3))
    ok(prout(lu, CLEAR, key=K1))
    assert reservation(lu) is None and keys(lu) == (generation + 1, [])
    assert sense_of(run(lu, TUR, nexus=OTHER)) == (0x06, 0x2A, 0x03)  # RESERVATIONS PREEMPTED
    ok(run(lu, TUR))


def test_preempt_removes_registrations(lu: LogicalUnit) -> None:
    """libiscsi ProutPreempt.RemoveRegistration: no reservation, SARK names the victim."""
    both_registered(lu)
    generation = keys(lu)[0]
    ok(prout(lu, PREEMPT, key=K2, sark=K1, rtype=EA, nexus=OTHER))
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x05)  # REGISTRATIONS PREEMPTED
    ok(run(lu, TUR, nexus=OTHER))
    assert keys(lu) == (generation + 1, [K2])
    assert reservation(lu) is None


def test_preempt_errors(lu: LogicalUnit) -> None:
    both_registered(lu)
    res = prout(lu, PREEMPT, key=K1, sark=0, rtype=WE)
    assert sense_of(res) == INVALID_FIELD_PARAM and field_pointer(res) == (False, 8, None)
    conflict(prout(lu, PREEMPT, key=K1, sark=K3, rtype=WE))  # nobody holds that key
    conflict(prout(lu, PREEMPT, key=K3, sark=K2, rtype=WE))  # the issuer's key is wrong


def test_preempt_takes_the_reservation(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=EA))
    ok(prout(lu, PREEMPT, key=K2, sark=K1, rtype=WE, nexus=OTHER))
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x05)
    assert reservation(lu) == (K2, WE)
    assert keys(lu)[1] == [K2]
    conflict(run(lu, WRITE10, data=bytes(512)))  # NEXUS is no longer registered


def test_preempt_changing_the_type_tells_the_remaining_registrants(lu: LogicalUnit) -> None:
    connect(lu, ELSEWHERE)
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, REGISTER, sark=K2, nexus=OTHER))
    ok(prout(lu, REGISTER, sark=K3, nexus=ELSEWHERE))
    ok(prout(lu, RESERVE, key=K1, rtype=WE_RO))
    ok(prout(lu, PREEMPT, key=K3, sark=K1, rtype=EA_RO, nexus=ELSEWHERE))
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x05)
    assert sense_of(run(lu, TUR, nexus=OTHER)) == (0x06, 0x2A, 0x04)
    ok(run(lu, TUR, nexus=ELSEWHERE))


def test_preempt_all_registrants_with_key_zero_removes_everyone_else(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=WE_AR))
    ok(prout(lu, PREEMPT, key=K2, sark=0, rtype=EA, nexus=OTHER))
    assert reservation(lu, OTHER) == (K2, EA) and keys(lu, OTHER)[1] == [K2]
    assert sense_of(run(lu, TUR)) == (0x06, 0x2A, 0x05)


def test_preempt_and_abort_names_the_preempted_for_the_transport(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=EA))
    res = prout(lu, PREEMPT_AND_ABORT, key=K2, sark=K1, rtype=EA, nexus=OTHER)
    assert res.status == GOOD
    assert res.preempted == ((NEXUS.initiator_port, NEXUS.target_port),)


# ---- CDB and parameter list errors ------------------------------------------------------------------


def test_parameter_list_length_must_be_24(lu: LogicalUnit) -> None:
    for length in (0, 23, 25, 32):
        res = run(lu, prout_cdb(REGISTER, length=length), data=prout_params(sark=K1) + bytes(8))
        assert sense_of(res) == (0x05, 0x1A, 0x00)


def test_scope_and_type_errors_point_at_the_field(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    res = run(lu, prout_cdb(RESERVE, WE, scope=1), data=prout_params(K1))
    assert sense_of(res) == INVALID_FIELD_CDB and field_pointer(res) == (True, 2, 7)
    for rtype in (0, 2, 4, 9, 15):
        res = run(lu, prout_cdb(RESERVE, rtype), data=prout_params(K1))
        assert sense_of(res) == INVALID_FIELD_CDB and field_pointer(res) == (True, 2, 3)
    ok(run(lu, prout_cdb(REGISTER, 0x0F, scope=0x0F), data=prout_params(K1, K1)))  # ignored by REGISTER


def test_spec_i_pt_and_aptpl_without_persistence_are_refused(lu: LogicalUnit) -> None:
    res = prout(lu, REGISTER, sark=K1, flags=SPEC_I_PT)
    assert sense_of(res) == INVALID_FIELD_PARAM and field_pointer(res) == (False, 20, 3)
    res = prout(lu, REGISTER, sark=K1, flags=APTPL)
    assert sense_of(res) == INVALID_FIELD_PARAM and field_pointer(res) == (False, 20, 0)
    assert keys(lu) == (0, [])


def test_unknown_service_actions(lu: LogicalUnit) -> None:
    res = prout(lu, 0x07, sark=K1)  # REGISTER AND MOVE is not implemented
    assert sense_of(res) == INVALID_FIELD_CDB and field_pointer(res) == (True, 1, 4)
    for sa in (0x04, 0x1F):
        assert sense_of(run(lu, prin_cdb(sa))) == INVALID_FIELD_CDB


# ---- REPORT CAPABILITIES / READ FULL STATUS ------------------------------------------------------


def test_report_capabilities_golden(lu: LogicalUnit) -> None:
    assert good(lu, prin_cdb(REPORT_CAPABILITIES)) == bytes.fromhex("0008 14 a0 ea01 0000")
    fabric(lu).persist = True
    ok(prout(lu, REGISTER, sark=K1, flags=APTPL))
    assert good(lu, prin_cdb(REPORT_CAPABILITIES)) == bytes.fromhex("0008 15 a1 ea01 0000")


def test_read_full_status_golden(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=WE_RO))
    ok(prout(lu, REGISTER, sark=K2, nexus=OTHER))
    data = good(lu, prin_cdb(READ_FULL_STATUS))
    tid = transport_id(NEXUS.initiator_port)
    first = struct.pack(">Q4xBB4xHI", K1, 0x01, WE_RO, 1, len(tid)) + tid
    assert data[:8] == struct.pack(">II", 2, len(data) - 8)  # two REGISTERs; RESERVE does not count
    assert data[8 : 8 + len(first)] == first
    assert data[8 + len(first) + 12] == 0  # OTHER is not a holder


def test_transport_id_is_iscsi_port_name_format() -> None:
    assert transport_id("iqn.x,i,0x1") == bytes.fromhex("45000014") + b"iqn.x,i,0x1".ljust(20, b"\0")
    long_name = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test,i,0x80abcdef0123"
    tid = transport_id(long_name)
    assert len(tid) % 4 == 0 and tid[4:].rstrip(b"\0") == long_name.encode()
    assert struct.unpack(">H", tid[2:4])[0] == len(tid) - 4


# ---- SPC-2 RESERVE/RELEASE with persistent reservations (SPC-4 §5.13.3) --------------------------


def test_reserve6_conflicts_while_registrations_exist(lu: LogicalUnit) -> None:
    ok(prout(lu, REGISTER, sark=K1))
    conflict(run(lu, bytes([0x16, 0, 0, 0, 0, 0])))  # even the registrant
    conflict(run(lu, bytes([0x17, 0, 0, 0, 0, 0]), nexus=OTHER))
    ok(prout(lu, REGISTER, key=K1, sark=0))
    ok(run(lu, bytes([0x16, 0, 0, 0, 0, 0])))


def test_persistent_reserve_conflicts_under_another_nexus_reserve6(lu: LogicalUnit) -> None:
    ok(run(lu, bytes([0x16, 0, 0, 0, 0, 0])))
    conflict(prout(lu, REGISTER, sark=K2, nexus=OTHER))
    conflict(run(lu, prin_cdb(0), nexus=OTHER))
    ok(prout(lu, REGISTER, sark=K1))  # the holder of the RESERVE may


def test_lu_reset_and_nexus_loss_keep_persistent_reservations(lu: LogicalUnit) -> None:
    both_registered(lu)
    ok(prout(lu, RESERVE, key=K1, rtype=EA))
    lu.reset(NEXUS)
    lu.nexus_gone(NEXUS)
    connect(lu, NEXUS, OTHER)
    assert reservation(lu) == (K1, EA)
    conflict(run(lu, READ10, nexus=OTHER))
    ok(run(lu, READ10))


# ---- APTPL: registrations that survive a restart -------------------------------------------------------


def test_aptpl_state_goes_to_the_listener_and_loads_back(lu: LogicalUnit) -> None:
    fabric(lu).persist = True
    saved = fabric(lu).saved
    ok(prout(lu, REGISTER, sark=K1, flags=APTPL | ALL_TG_PT))
    ok(prout(lu, RESERVE, key=K1, rtype=WE_RO))
    assert len(saved) == 2 and saved[-1]["aptpl"] is True
    assert saved[-1] == lu.pr_state()
    restarted = connect(new_lu(lu.backend, lu.identity))
    restarted.load_pr_state(saved[-1])
    assert keys(restarted) == keys(lu)
    assert reservation(restarted) == (K1, WE_RO)
    conflict(run(restarted, WRITE10, nexus=OTHER, data=bytes(512)))
    ok(run(restarted, WRITE10, data=bytes(512)))


def test_unchanged_state_is_not_saved_again(lu: LogicalUnit) -> None:
    fabric(lu).persist = True
    saved = fabric(lu).saved
    ok(prout(lu, REGISTER, sark=0))  # an unregistered nexus unregistering: no change
    ok(prout(lu, REGISTER, sark=K1))
    ok(prout(lu, RESERVE, key=K1, rtype=WE))
    ok(prout(lu, RESERVE, key=K1, rtype=WE))  # re-reserving: no change
    assert [s["reservation"] is not None for s in saved] == [False, True]


def test_failed_save_changes_nothing(lu: LogicalUnit) -> None:
    fabric(lu).persist = True
    fabric(lu).save_error = OSError("disk full")
    res = prout(lu, REGISTER, sark=K1)
    assert sense_of(res) == (0x04, 0x44, 0x00)
    assert keys(lu) == (0, [])


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"version": 2},
        {"version": 1, "generation": 0, "aptpl": True, "registrations": "x", "reservation": None},
        {"version": 1, "generation": -1, "aptpl": True, "registrations": [], "reservation": None},
        {"version": 1, "generation": 0, "aptpl": 1, "registrations": [], "reservation": None},
        {"version": 1, "generation": 0, "aptpl": True, "reservation": None,
         "registrations": [{"initiator_port": "i", "target_port": None, "key": 0}]},
        {"version": 1, "generation": 0, "aptpl": True, "reservation": None,
         "registrations": [{"initiator_port": "", "target_port": None, "key": 1}]},
        {"version": 1, "generation": 0, "aptpl": True, "reservation": None,
         "registrations": [{"initiator_port": "i", "target_port": "t", "key": 1},
                           {"initiator_port": "i", "target_port": "t", "key": 2}]},
        {"version": 1, "generation": 0, "aptpl": True, "registrations": [],
         "reservation": {"type": 1, "initiator_port": "i", "target_port": None}},
        {"version": 1, "generation": 0, "aptpl": True,
         "registrations": [{"initiator_port": "i", "target_port": None, "key": 1}],
         "reservation": {"type": 2, "initiator_port": "i", "target_port": None}},
    ],
)
def test_load_refuses_malformed_state(lu: LogicalUnit, broken: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        lu.load_pr_state(broken)
    assert keys(lu) == (0, [])
