"""The RFC 7143 §13 key table and the §6.2 negotiation rules."""

from __future__ import annotations

import pytest

from pyscsi_target.protocol import limits
from pyscsi_target.protocol.negotiation import KEYS, NegotiationError, Negotiator, parse_number

from .support import LIBISCSI_OPERATIONAL, OPEN_ISCSI_OPERATIONAL


def answer(key: str, value: str, *, session_type: str = "Normal", ffp: bool = False) -> str | None:
    neg = Negotiator(session_type)
    answers = dict(neg.negotiate([(key, value)], ffp=ffp))
    return answers.get(key)


# (key, offered, expected answer): each result function at both sides of our value and the range
@pytest.mark.parametrize(("key", "offered", "expected"), [
    ("MaxBurstLength", "16776192", str(limits.TARGET_MAX_BURST_LENGTH)),  # Min, ours smaller
    ("MaxBurstLength", "4096", "4096"),  # Min, theirs smaller
    ("MaxBurstLength", "511", "Reject"),  # below 512
    ("MaxBurstLength", "16777216", "Reject"),  # above 2**24-1
    ("FirstBurstLength", "262144", str(limits.TARGET_FIRST_BURST_LENGTH)),
    ("FirstBurstLength", "1024", "1024"),
    ("MaxOutstandingR2T", "1", "1"),
    ("MaxOutstandingR2T", "100", str(limits.TARGET_MAX_OUTSTANDING_R2T)),
    ("MaxOutstandingR2T", "0", "Reject"),
    ("MaxConnections", "8", "1"),
    ("MaxConnections", "0", "Reject"),
    ("DefaultTime2Wait", "0", "2"),  # Max
    ("DefaultTime2Wait", "10", "10"),
    ("DefaultTime2Wait", "3601", "Reject"),
    ("DefaultTime2Retain", "0", "0"),  # Min
    ("DefaultTime2Retain", "3600", "20"),
    ("ErrorRecoveryLevel", "2", "0"),
    ("ErrorRecoveryLevel", "3", "Reject"),
    ("iSCSIProtocolLevel", "2", "1"),
    ("InitialR2T", "Yes", "Yes"),  # OR
    ("InitialR2T", "No", "No"),
    ("ImmediateData", "Yes", "Yes"),  # AND
    ("ImmediateData", "No", "No"),
    ("ImmediateData", "yes", "Reject"),  # booleans are case-sensitive
    ("DataPDUInOrder", "No", "Yes"),  # OR with our Yes
    ("DataSequenceInOrder", "No", "Yes"),
    ("IFMarker", "Yes", "No"),  # AND with our No
    ("OFMarker", "No", "No"),
    ("RDMAExtensions", "Yes", "No"),
    ("OFMarkInt", "2048~8192", "Irrelevant"),
    ("IFMarkInt", "1~65535", "Irrelevant"),
    ("HeaderDigest", "CRC32C,None", "CRC32C"),  # list: first we support, in their order
    ("HeaderDigest", "None,CRC32C", "None"),
    ("DataDigest", "MD5,CRC32C", "CRC32C"),
    ("DataDigest", "MD5", "Reject"),
    ("DataDigest", "None,,CRC32C", "Reject"),  # empty list item
    ("TaskReporting", "FastAbort,RFC3720", "RFC3720"),
    ("TaskReporting", "FastAbort", "Reject"),
    ("X-com.example.Vendor", "1", "NotUnderstood"),
    ("UnknownKey", "1", "NotUnderstood"),
    ("MaxBurstLength", "0x1000", "4096"),  # hex numbers
    ("MaxBurstLength", "abc", "Reject"),
    ("MaxBurstLength", " 4096", "Reject"),
])
def test_result_functions_and_ranges(key: str, offered: str, expected: str) -> None:
    assert answer(key, offered) == expected


@pytest.mark.parametrize("key", ["MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
                                 "FirstBurstLength", "MaxOutstandingR2T", "DataPDUInOrder",
                                 "DataSequenceInOrder", "TaskReporting"])
def test_irrelevant_in_discovery(key: str) -> None:
    value = "Yes" if KEYS[key].kind == "boolean" else ("RFC3720" if key == "TaskReporting" else "1024")
    assert answer(key, value, session_type="Discovery") == "Irrelevant"
    assert answer(key, value) != "Irrelevant"


def test_first_burst_irrelevant_without_unsolicited_data() -> None:
    # RFC 7143 §13.14: irrelevant when InitialR2T=Yes and ImmediateData=No
    neg = Negotiator()
    got = dict(neg.negotiate([("FirstBurstLength", "4096"), ("InitialR2T", "Yes"), ("ImmediateData", "No")]))
    assert got == {"InitialR2T": "Yes", "ImmediateData": "No", "FirstBurstLength": "Irrelevant"}


def test_first_burst_never_exceeds_max_burst() -> None:
    neg = Negotiator()
    got = dict(neg.negotiate([("FirstBurstLength", "65536"), ("MaxBurstLength", "4096")]))
    assert got["FirstBurstLength"] == "4096"
    assert neg.int_value("FirstBurstLength") <= neg.int_value("MaxBurstLength")


def test_declarative_mrdsl_is_recorded_not_answered() -> None:
    neg = Negotiator()
    assert neg.negotiate([("MaxRecvDataSegmentLength", "65536"), ("InitiatorAlias", "host")]) == []
    assert neg.int_value("MaxRecvDataSegmentLength") == 65536
    assert neg.values["InitiatorAlias"] == "host"


@pytest.mark.parametrize("value", ["511", "16777216", "lots"])
def test_invalid_mrdsl_fails_login_and_is_rejected_in_ffp(value: str) -> None:
    with pytest.raises(NegotiationError):
        Negotiator().negotiate([("MaxRecvDataSegmentLength", value)])
    assert answer("MaxRecvDataSegmentLength", value, ffp=True) == "Reject"


@pytest.mark.parametrize(("key", "value"), [
    ("TargetPortalGroupTag", "1"),  # target-only keys
    ("TargetAlias", "x"), ("TargetAddress", "1.2.3.4"),
    ("SendTargets", "All"),  # full feature phase only
    ("AuthMethod", "None"), ("CHAP_A", "5"),  # security stage only
    ("MaxBurstLength", "Reject"), ("InitialR2T", "NotUnderstood"), ("DataDigest", "Irrelevant"),
])
def test_protocol_errors_fail_the_login(key: str, value: str) -> None:
    with pytest.raises(NegotiationError):
        Negotiator().negotiate([(key, value)])


def test_offering_a_key_twice_in_one_login_fails() -> None:
    neg = Negotiator()
    neg.negotiate([("MaxBurstLength", "4096")])
    with pytest.raises(NegotiationError):
        neg.negotiate([("MaxBurstLength", "4096")])
    neg.negotiate([("MaxRecvDataSegmentLength", "8192")])
    neg.negotiate([("MaxRecvDataSegmentLength", "16384")])  # a declaration may be repeated


def test_login_only_keys_are_rejected_in_full_feature_phase() -> None:
    neg = Negotiator()
    got = neg.negotiate([("MaxBurstLength", "4096"), ("HeaderDigest", "CRC32C"),
                         ("MaxRecvDataSegmentLength", "16384"), ("TargetAlias", "x")], ffp=True)
    assert got == [("MaxBurstLength", "Reject"), ("HeaderDigest", "Reject"), ("TargetAlias", "Reject")]
    assert neg.int_value("MaxRecvDataSegmentLength") == 16384
    assert neg.int_value("MaxBurstLength") == limits.DEFAULT_MAX_BURST_LENGTH


@pytest.mark.parametrize("keys", [OPEN_ISCSI_OPERATIONAL, LIBISCSI_OPERATIONAL], ids=["open-iscsi", "libiscsi"])
def test_real_initiator_key_sets_are_accepted(keys: list[tuple[str, str]]) -> None:
    neg = Negotiator()
    answers = dict(neg.negotiate(keys))
    assert "Reject" not in answers.values() and "NotUnderstood" not in answers.values()
    assert neg.values["DataPDUInOrder"] == "Yes" and neg.values["ErrorRecoveryLevel"] == "0"
    assert neg.int_value("FirstBurstLength") <= neg.int_value("MaxBurstLength")


def test_every_rfc_key_is_in_the_table() -> None:
    rfc_7143 = {"HeaderDigest", "DataDigest", "MaxConnections", "SendTargets", "TargetName",
                "InitiatorName", "TargetAlias", "InitiatorAlias", "TargetAddress", "TargetPortalGroupTag",
                "InitialR2T", "ImmediateData", "MaxRecvDataSegmentLength", "MaxBurstLength",
                "FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T",
                "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel", "SessionType", "TaskReporting",
                "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R", "IFMarker", "OFMarker",
                "IFMarkInt", "OFMarkInt"}
    assert rfc_7143 <= set(KEYS)
    for spec in KEYS.values():
        if spec.kind == "numeric":
            assert spec.low <= int(spec.default) <= spec.high, spec
            assert spec.low <= int(spec.ours) <= spec.high, spec


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("8192", 8192), ("0x10", 16), ("0X1f", 31),
                                             ("", None), ("0x", None), ("-1", None), ("1e3", None),
                                             ("0x_1", None), ("١٢", None)])
def test_parse_number(text: str, value: int | None) -> None:
    assert parse_number(text) == value
