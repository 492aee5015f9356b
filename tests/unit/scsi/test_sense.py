"""Sense data encoding: golden bytes for fixed and descriptor formats (SPC-4 §4.5)."""

from __future__ import annotations

from pyscsi_target.scsi.sense import CheckCondition, SenseReason, build_sense, invalid_cdb, invalid_param


def test_fixed_invalid_field_in_cdb_with_byte_pointer() -> None:
    assert invalid_cdb(2).sense() == bytes.fromhex("700005000000000a000000002400" + "00c00002")


def test_fixed_field_pointer_with_bit_and_parameter_list() -> None:
    assert invalid_cdb(1, 5).sense()[15:18] == bytes.fromhex("cd0001")
    assert invalid_param(300, None).sense()[15:18] == bytes.fromhex("80012c")


def test_fixed_information_sets_valid() -> None:
    sense = CheckCondition(SenseReason.MISCOMPARE_DURING_VERIFY, information=0x1234).sense()
    assert sense == bytes.fromhex("f0000e00001234" + "0a" + "00000000" + "1d00" + "00" + "000000")


def test_fixed_plain_reason() -> None:
    expected = bytes.fromhex("700006000000000a000000002a0900000000")
    assert build_sense(SenseReason.CAPACITY_DATA_CHANGED) == expected
    assert len(build_sense(SenseReason.NO_SENSE)) == 18


def test_descriptor_format_with_information_and_field_pointer() -> None:
    cc = CheckCondition(SenseReason.INVALID_FIELD_IN_CDB, field=(7, None), information=5)
    assert cc.sense(descriptor=True) == bytes.fromhex(
        "72052400000000" + "14"  # header, ADDITIONAL SENSE LENGTH 20
        + "000a80000000000000000005"  # information descriptor
        + "02060000c0000700"  # sense key specific descriptor
    )


def test_descriptor_format_plain() -> None:
    assert build_sense(SenseReason.WRITE_PROTECTED, descriptor=True) == bytes.fromhex("7207270000000000")


def test_reasons_are_distinct_and_well_formed() -> None:
    values = [r.value for r in SenseReason]
    assert len(values) == len(set(values))
    for key, asc, ascq in values:
        assert 0 <= key <= 0xF and 0 <= asc <= 0xFF and 0 <= ascq <= 0xFF
