"""The login state machine through `Connection`, with exact status codes and response bytes."""

from __future__ import annotations

import hashlib

import pytest

from pyscsi_target.protocol import Connection, ConnectionClosed, LoginComplete
from pyscsi_target.protocol.authority import LoginRefused
from tests.initiator import LOGIN_RESPONSE, Initiator, TargetPdu

from .support import (
    CHAP_SECRET,
    CHAP_USER,
    DENIED_INITIATOR,
    LIBISCSI_OPERATIONAL,
    MUTUAL_TARGET,
    OPEN_ISCSI_OPERATIONAL,
    OTHER_TARGET,
    PEER_SECRET,
    PEER_USER,
    SECRET_TARGET,
    TARGET,
    FakeAuthority,
    exchange,
    first_keys,
)


def new() -> tuple[Connection, Initiator, FakeAuthority]:
    auth = FakeAuthority()
    return Connection(auth, portal_tpgt=3), Initiator(), auth


def expect_reject(events: list, pdus: list[TargetPdu], status: tuple[int, int], conn: Connection) -> None:
    assert len(pdus) == 1
    rsp = pdus[0]
    assert rsp.opcode == LOGIN_RESPONSE
    assert (rsp.status_class, rsp.status_detail) == status
    assert rsp.data == b""  # no hint about what exists
    assert rsp.flags == 0  # T, C, CSG, NSG reserved in a reject
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed) and events[0].error
    assert conn.wants_close and conn.state == "closed"


def fail(data: bytes, status: tuple[int, int], conn: Connection | None = None) -> None:
    conn = conn or Connection(FakeAuthority())
    events, pdus = exchange(conn, Initiator(), data)
    expect_reject(events, pdus, status, conn)


# ---- success paths -------------------------------------------------------------------------------


def test_one_pdu_operational_login_exact_response() -> None:
    conn, ini, auth = new()
    ini.cmdsn = 0x55
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini) + OPEN_ISCSI_OPERATIONAL, itt=0x77))
    # T=1 CSG=1 NSG=3, Version-max/active 0, ISID echoed, new TSIH, ITT, StatSN 0, ExpCmdSN = CmdSN
    expected = bytes.fromhex(
        "23 87 00 00 00" + rsp.bhs[5:8].hex() + f"{ini.isid:012x}" + "0101" + "00000077" + "00000000"
        + "00000000" + "00000055" + f"{0x55 + 127:08x}" + "0000" + "0000" + "00" * 8)
    assert rsp.bhs == expected
    keys = rsp.key_dict
    assert keys["TargetPortalGroupTag"] == "3"
    assert keys["MaxRecvDataSegmentLength"] == "262144"
    assert keys["MaxBurstLength"] == "1048576" and keys["FirstBurstLength"] == "65536"
    assert keys["InitialR2T"] == "No" and keys["ImmediateData"] == "Yes"
    assert "NotUnderstood" not in keys.values() and "Reject" not in keys.values()
    (done,) = events
    assert isinstance(done, LoginComplete)
    assert (done.session_type, done.target_name, done.tsih, done.isid, done.tpgt) == ("Normal", TARGET, 0x101,
                                                                                   ini.isid, 3)
    assert done.params["MaxRecvDataSegmentLength"] == "262144"
    assert conn.state == "full_feature" and conn.negotiated == done.params
    assert auth.sessions == [(ini.name, ini.isid, TARGET, 0x101)]


@pytest.mark.parametrize("keys", [OPEN_ISCSI_OPERATIONAL, LIBISCSI_OPERATIONAL], ids=["open-iscsi", "libiscsi"])
def test_two_stage_login_like_real_initiators(keys: list[tuple[str, str]]) -> None:
    conn, ini, _ = new()
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="None"), csg=0, nsg=1))
    assert events == [] and (rsp.status_class, rsp.final, rsp.csg, rsp.nsg) == (0, True, 0, 1)
    assert rsp.key_dict == {"AuthMethod": "None", "TargetPortalGroupTag": "3"}
    assert rsp.tsih == 0  # TSIH only in the final response
    events, (rsp,) = exchange(conn, ini, ini.login(keys, csg=1, nsg=3))
    assert (rsp.final, rsp.csg, rsp.nsg, rsp.tsih) == (True, 1, 3, 0x101)
    assert rsp.key_dict["MaxRecvDataSegmentLength"] == "262144"
    assert "TargetPortalGroupTag" not in rsp.key_dict
    assert isinstance(events[0], LoginComplete)
    assert rsp.statsn == 1  # each login response takes a StatSN


@pytest.mark.parametrize("alias", ["disk zero", None])
def test_target_alias_only_in_the_final_response(alias: str | None) -> None:
    """Issue #11 item 3: TargetAlias (RFC 7143 §13.6) in the final login response of a Normal
    session, as ctld sends it; no key at all when the target has no alias."""
    conn, ini, auth = new()
    if alias is not None:
        auth.aliases[TARGET] = alias
    _, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="None"), csg=0, nsg=1))
    assert "TargetAlias" not in rsp.key_dict
    events, (rsp,) = exchange(conn, ini, ini.login(OPEN_ISCSI_OPERATIONAL, csg=1, nsg=3))
    assert rsp.final and [v for k, v in rsp.keys if k == "TargetAlias"] == ([alias] if alias else [])
    assert isinstance(events[0], LoginComplete) and events[0].target_alias == alias


def test_target_alias_when_security_goes_straight_to_full_feature() -> None:
    conn, ini, auth = new()
    auth.aliases[TARGET] = "fast"
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="None"), csg=0, nsg=3))
    assert rsp.final and rsp.key_dict["TargetAlias"] == "fast"
    assert isinstance(events[0], LoginComplete) and events[0].target_alias == "fast"


def test_security_straight_to_full_feature() -> None:
    conn, ini, _ = new()
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="CHAP,None"), csg=0,
                                                   nsg=3))
    assert (rsp.status_class, rsp.csg, rsp.nsg, rsp.final) == (0, 0, 3, True)
    assert rsp.key_dict["MaxRecvDataSegmentLength"] == "262144"
    assert isinstance(events[0], LoginComplete)


def test_discovery_login_has_no_tpgt() -> None:
    conn, ini, _ = new()
    keys = [("InitiatorName", ini.name), ("SessionType", "Discovery"), ("MaxBurstLength", "4096")]
    events, (rsp,) = exchange(conn, ini, ini.login(keys))
    assert rsp.status_class == 0 and "TargetPortalGroupTag" not in rsp.key_dict
    assert rsp.key_dict["MaxBurstLength"] == "Irrelevant"
    assert isinstance(events[0], LoginComplete) and events[0].session_type == "Discovery"
    assert events[0].target_name is None


def test_operational_stage_without_transit_then_transit() -> None:
    conn, ini, _ = new()
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
    assert events == [] and (rsp.final, rsp.csg, rsp.nsg) == (False, 1, 0)
    assert rsp.key_dict["MaxRecvDataSegmentLength"] == "262144"  # declared in the operational stage
    events, (rsp,) = exchange(conn, ini, ini.login([("MaxBurstLength", "8192")]))
    assert "MaxRecvDataSegmentLength" not in rsp.key_dict  # declared only once
    assert rsp.key_dict == {"MaxBurstLength": "8192"}
    assert isinstance(events[0], LoginComplete) and events[0].params["MaxBurstLength"] == "8192"


def test_c_bit_continuation_of_login_text() -> None:
    conn, ini, _ = new()
    from tests.initiator import encode_keys
    text = encode_keys(first_keys(TARGET, ini) + OPEN_ISCSI_OPERATIONAL)
    events, (rsp,) = exchange(conn, ini, ini.login(raw=text[:50], cont=True, transit=False, nsg=0))
    assert events == [] and rsp.data == b"" and rsp.status_class == 0 and not rsp.final
    events, (rsp,) = exchange(conn, ini, ini.login(raw=text[50:]))
    assert rsp.status_class == 0 and isinstance(events[0], LoginComplete)


def test_same_value_redeclaration_is_accepted() -> None:
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="None"), csg=0, nsg=1))
    events, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini)))
    assert rsp.status_class == 0 and isinstance(events[0], LoginComplete)


def test_unknown_keys_are_not_understood_in_login() -> None:
    conn, ini, _ = new()
    _, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, **{"X-vendor.key": "1", "Foo": "2"})))
    assert rsp.key_dict["X-vendor.key"] == "NotUnderstood" and rsp.key_dict["Foo"] == "NotUnderstood"


def test_digests_apply_right_after_the_final_response() -> None:
    conn, ini, _ = new()
    _, (rsp,) = exchange(conn, ini, ini.login(first_keys(TARGET, ini, HeaderDigest="CRC32C,None",
                                                         DataDigest="CRC32C")))
    assert rsp.key_dict["HeaderDigest"] == "CRC32C" and rsp.key_dict["DataDigest"] == "CRC32C"
    ini.header_digest = ini.data_digest = True
    events, (nop,) = exchange(conn, ini, ini.nop_out(data=b"ping"))
    assert events == [] and nop.data == b"ping"  # Initiator.receive() checked both digests


# ---- failures: status codes ------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "status"), [
    ([("TargetName", TARGET)], (2, 7)),  # no InitiatorName
    ([("InitiatorName", ""), ("TargetName", TARGET)], (2, 7)),
    ([("InitiatorName", "iqn.x")], (2, 7)),  # Normal session without TargetName
    ([("InitiatorName", "iqn.x"), ("SessionType", "Bogus"), ("TargetName", TARGET)], (2, 7)),
    ([("InitiatorName", "iqn.x"), ("TargetName", "iqn.2024-01.org.example:nothere")], (2, 3)),
    ([("InitiatorName", DENIED_INITIATOR), ("TargetName", TARGET)], (2, 2)),
    ([("InitiatorName", "iqn.x"), ("TargetName", TARGET), ("TargetPortalGroupTag", "1")], (2, 0)),
    ([("InitiatorName", "iqn.x"), ("TargetName", TARGET), ("SendTargets", "All")], (2, 0)),
    ([("InitiatorName", "iqn.x"), ("TargetName", TARGET), ("AuthMethod", "None")], (2, 0)),  # CSG=1
    ([("InitiatorName", "iqn.x"), ("TargetName", TARGET), ("MaxRecvDataSegmentLength", "100")], (2, 0)),
    ([("InitiatorName", "iqn.x"), ("TargetName", TARGET), ("MaxBurstLength", "Reject")], (2, 0)),
])
def test_first_request_key_errors(keys: list[tuple[str, str]], status: tuple[int, int]) -> None:
    fail(Initiator().login(keys), status)


@pytest.mark.parametrize("raw", [b"InitiatorName=iqn.x", b"InitiatorName=iqn.x\0\0TargetName=a\0",
                                 b"InitiatorName=iqn.x\0InitiatorName=iqn.x\0"])
def test_malformed_login_text(raw: bytes) -> None:
    fail(Initiator().login(raw=raw), (2, 0))


def test_discovery_refused_by_policy() -> None:
    conn = Connection(FakeAuthority(discovery=LoginRefused(2, 9, "discovery disabled")))
    fail(Initiator().login([("InitiatorName", "iqn.x"), ("SessionType", "Discovery")]), (2, 9), conn)


def test_unsupported_version() -> None:
    fail(Initiator().login(first_keys(), version_min=1, version_max=2), (2, 5))


@pytest.mark.parametrize("kw", [
    {"transit": True, "cont": True},  # T=1 with C=1
    {"csg": 2, "nsg": 3},  # reserved CSG
    {"csg": 3, "nsg": 3},  # a request cannot be in full feature phase
    {"csg": 1, "nsg": 2},  # reserved NSG
    {"csg": 1, "nsg": 1},  # no transition backwards or in place
    {"csg": 0, "nsg": 0},
])
def test_bad_stage_fields(kw: dict[str, object]) -> None:
    fail(Initiator().login(first_keys(), **kw), (2, 0))  # type: ignore[arg-type]


def test_non_login_pdu_first_is_0x020b() -> None:
    ini = Initiator()
    conn = Connection(FakeAuthority())
    events, pdus = exchange(conn, ini, ini.nop_out(itt=0x1234))
    expect_reject(events, pdus, (2, 0x0B), conn)
    assert pdus[0].itt == 0x1234


def test_non_login_pdu_mid_login_is_0x020b() -> None:
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini, AuthMethod="None"), csg=0, nsg=1))
    events, pdus = exchange(conn, ini, ini.scsi_command(b"\x00" * 6))
    expect_reject(events, pdus, (2, 0x0B), conn)


def test_backwards_stage_and_changed_isid() -> None:
    for second in (lambda ini: ini.login([], csg=0, nsg=1),
                   lambda ini: ini.login([], tsih=7)):
        conn, ini, _ = new()
        exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
        events, pdus = exchange(conn, ini, second(ini))
        expect_reject(events, pdus, (2, 0), conn)
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
    ini.isid += 1
    events, pdus = exchange(conn, ini, ini.login([]))
    expect_reject(events, pdus, (2, 0), conn)


def test_redeclared_name_with_another_value() -> None:
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
    events, pdus = exchange(conn, ini, ini.login([("InitiatorName", "iqn.other")]))
    expect_reject(events, pdus, (2, 0), conn)


def test_operational_key_offered_twice_across_pdus() -> None:
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini, MaxBurstLength="8192"), transit=False, nsg=0))
    events, pdus = exchange(conn, ini, ini.login([("MaxBurstLength", "8192")]))
    expect_reject(events, pdus, (2, 0), conn)


def test_login_data_segment_over_8192_is_refused() -> None:
    ini = Initiator()
    fail(ini.login(raw=b"InitiatorName=" + b"a" * 8200 + b"\0"), (2, 0))


def test_login_text_total_is_capped_across_continuations() -> None:
    conn, ini, _ = new()
    chunk = b"X-k=" + b"v" * 8000
    for _ in range(8):
        events, pdus = exchange(conn, ini, ini.login(raw=chunk, cont=True, transit=False, nsg=0))
        assert pdus[0].status_class == 0 and events == []
    events, pdus = exchange(conn, ini, ini.login(raw=chunk, cont=True, transit=False, nsg=0))
    expect_reject(events, pdus, (2, 0), conn)


def test_too_long_login_answer_is_an_initiator_error() -> None:
    # 200 unknown keys: the request fits (C=1 pieces) but 200 NotUnderstood answers exceed 8192 bytes
    conn, ini, _ = new()
    from tests.initiator import encode_keys
    text = encode_keys(first_keys(TARGET, ini) + [(f"X-unknown-key-{i:03d}-{'p' * 30}", "1") for i in range(200)])
    pieces = [text[i:i + 4096] for i in range(0, len(text), 4096)]
    assert len(pieces) > 2
    for piece in pieces[:-1]:
        events, (rsp,) = exchange(conn, ini, ini.login(raw=piece, cont=True, transit=False, nsg=0))
        assert rsp.status_class == 0 and rsp.data == b"" and events == []
    events, pdus = exchange(conn, ini, ini.login(raw=pieces[-1]))
    expect_reject(events, pdus, (2, 0), conn)


def test_tsih_of_an_unknown_session() -> None:
    fail(Initiator().login(first_keys(), tsih=0x999), (2, 0x0A))


def test_nothing_happens_after_a_failed_login() -> None:
    conn = Connection(FakeAuthority())
    ini = Initiator()
    exchange(conn, ini, ini.login([("TargetName", TARGET)]))
    events, pdus = exchange(conn, ini, ini.login(first_keys()))
    assert events == [] and pdus == []
    assert conn.wants_close


# ---- CHAP ------------------------------------------------------------------------------------------


def chap_to_challenge(conn: Connection, ini: Initiator, target: str = SECRET_TARGET,
                      chap_a: str = "5") -> tuple[int, bytes]:
    _, (rsp,) = exchange(conn, ini, ini.login(first_keys(target, ini, AuthMethod="CHAP,None"), csg=0, nsg=1))
    assert rsp.key_dict["AuthMethod"] == "CHAP" and not rsp.final  # T=1 refused until CHAP is done
    _, (rsp,) = exchange(conn, ini, ini.login([("CHAP_A", chap_a)], csg=0, nsg=1))
    keys = rsp.key_dict
    assert keys["CHAP_A"] == "5" and not rsp.final
    return int(keys["CHAP_I"]), bytes.fromhex(keys["CHAP_C"][2:])


def md5(identifier: int, secret: str, challenge: bytes) -> str:
    return "0x" + hashlib.md5(bytes([identifier]) + secret.encode() + challenge).hexdigest()


def test_chap_one_way_success() -> None:
    conn, ini, _ = new()
    ident, challenge = chap_to_challenge(conn, ini)
    assert len(challenge) == 16
    events, (rsp,) = exchange(conn, ini, ini.login([("CHAP_N", CHAP_USER),
                                                    ("CHAP_R", md5(ident, CHAP_SECRET, challenge))], csg=0, nsg=1))
    assert (rsp.status_class, rsp.final, rsp.nsg, rsp.data) == (0, True, 1, b"")
    events, (rsp,) = exchange(conn, ini, ini.login(OPEN_ISCSI_OPERATIONAL))
    assert isinstance(events[0], LoginComplete) and events[0].auth_user == CHAP_USER


def test_chap_mutual_success() -> None:
    conn, ini, _ = new()
    ident, challenge = chap_to_challenge(conn, ini, MUTUAL_TARGET)
    mine = b"\x42" * 16
    _, (rsp,) = exchange(conn, ini, ini.login([
        ("CHAP_N", CHAP_USER), ("CHAP_R", md5(ident, CHAP_SECRET, challenge)), ("CHAP_I", "9"),
        ("CHAP_C", "0x" + mine.hex())], csg=0, nsg=1))
    assert rsp.status_class == 0 and rsp.final
    assert rsp.key_dict == {"CHAP_N": PEER_USER, "CHAP_R": md5(9, PEER_SECRET, mine)}


@pytest.mark.parametrize("last", [
    [("CHAP_N", CHAP_USER), ("CHAP_R", "0x" + "00" * 16)],  # wrong response
    [("CHAP_N", CHAP_USER[:-1]), ("CHAP_R", "@good")],  # user name prefix
    [("CHAP_N", CHAP_USER), ("CHAP_R", "@good"), ("CHAP_I", "300"), ("CHAP_C", "0x" + "11" * 16)],
    [("CHAP_N", CHAP_USER), ("CHAP_R", "@good"), ("CHAP_I", "1"), ("CHAP_C", "@reflect")],
])
def test_chap_failures_are_0x0201(last: list[tuple[str, str]]) -> None:
    conn, ini, _ = new()
    ident, challenge = chap_to_challenge(conn, ini)
    keys = [(k, md5(ident, CHAP_SECRET, challenge) if v == "@good" else
             ("0x" + challenge.hex() if v == "@reflect" else v)) for k, v in last]
    events, pdus = exchange(conn, ini, ini.login(keys, csg=0, nsg=1))
    expect_reject(events, pdus, (2, 1), conn)


def test_chap_a_56_is_not_md5() -> None:
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(SECRET_TARGET, ini, AuthMethod="CHAP"), csg=0, nsg=1))
    events, pdus = exchange(conn, ini, ini.login([("CHAP_A", "56")], csg=0, nsg=1))
    expect_reject(events, pdus, (2, 1), conn)


def test_mutual_policy_refuses_one_way() -> None:
    conn, ini, _ = new()
    ident, challenge = chap_to_challenge(conn, ini, MUTUAL_TARGET)
    events, pdus = exchange(conn, ini, ini.login([("CHAP_N", CHAP_USER),
                                                  ("CHAP_R", md5(ident, CHAP_SECRET, challenge))], csg=0, nsg=1))
    expect_reject(events, pdus, (2, 1), conn)


@pytest.mark.parametrize("first", [
    {"csg": 1, "nsg": 3},  # skipping the security stage
    {"csg": 0, "nsg": 1, "auth": "None"},  # AuthMethod=None against a CHAP policy
    {"csg": 0, "nsg": 1, "auth": None},  # no AuthMethod at all, asking to move on
])
def test_chap_policy_cannot_be_skipped(first: dict[str, object]) -> None:
    ini = Initiator()
    auth = first.pop("auth", "skip")
    extra = {} if auth in (None, "skip") else {"AuthMethod": auth}
    fail(ini.login(first_keys(SECRET_TARGET, ini, **extra), **first), (2, 1))  # type: ignore[arg-type]


def test_chap_keys_in_the_operational_stage_are_an_initiator_error() -> None:
    fail(Initiator().login(first_keys(TARGET, None, CHAP_A="5")), (2, 0))


# ---- issue #4: hardening of the login phase ------------------------------------------------------


def test_out_of_resources_from_the_authority_is_0x0302_with_the_exact_header() -> None:
    class Full(FakeAuthority):
        def new_session(self, initiator_name: str, isid: int, target_name: str | None,
                        tsih: int) -> int | LoginRefused:
            return LoginRefused(3, 0x02, "no TSIH left")

    ini = Initiator()
    ini.cmdsn = 7
    conn = Connection(Full())
    events, pdus = exchange(conn, ini, ini.login(first_keys(TARGET, ini) + OPEN_ISCSI_OPERATIONAL, itt=0x55))
    expect_reject(events, pdus, (3, 2), conn)
    assert pdus[0].bhs == bytes.fromhex(
        "23 00 00 00 00 000000" + f"{ini.isid:012x}" + "0000" + "00000055" + "00000000" + "00000000"
        + "00000007" + f"{7 + 127:08x}" + "0302" + "00" * 10)


def test_a_zero_tsih_from_the_authority_is_a_target_error() -> None:
    class Broken(FakeAuthority):
        def new_session(self, initiator_name: str, isid: int, target_name: str | None,
                        tsih: int) -> int | LoginRefused:
            return 0

    conn = Connection(Broken())
    ini = Initiator()
    events, pdus = exchange(conn, ini, ini.login(first_keys(TARGET, ini)))
    expect_reject(events, pdus, (3, 0), conn)


def test_a_reject_before_the_first_request_is_read_echoes_isid_and_tsih() -> None:
    ini = Initiator(isid=0x40_00_00_00_12_34)
    conn = Connection(FakeAuthority())
    events, pdus = exchange(conn, ini, ini.login(first_keys(TARGET, ini), version_min=2, version_max=2, tsih=9))
    expect_reject(events, pdus, (2, 5), conn)
    assert (pdus[0].isid, pdus[0].tsih) == (ini.isid, 9)


def test_a_login_pdu_with_an_ahs_is_refused() -> None:
    ini = Initiator()
    request = bytearray(ini.login(first_keys(TARGET, ini)))
    request[4] = 2  # TotalAHSLength of 8 bytes
    request[48:48] = bytes(8)
    conn = Connection(FakeAuthority())
    events, pdus = exchange(conn, ini, bytes(request))
    expect_reject(events, pdus, (2, 0), conn)
    assert pdus[0].isid == ini.isid


def test_an_oversized_non_login_pdu_during_login_is_still_0x020b() -> None:
    ini = Initiator()
    conn = Connection(FakeAuthority())
    events, pdus = exchange(conn, ini, ini.nop_out(itt=3, data=bytes(9000)))
    expect_reject(events, pdus, (2, 0x0B), conn)


def test_login_requests_are_capped() -> None:
    from pyscsi_target.protocol.limits import MAX_LOGIN_PDUS
    conn, ini, _ = new()
    exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
    for _ in range(MAX_LOGIN_PDUS - 1):
        _, (rsp,) = exchange(conn, ini, ini.login([], transit=False, nsg=0))
        assert rsp.status_class == 0
    events, pdus = exchange(conn, ini, ini.login([], transit=False, nsg=0))
    expect_reject(events, pdus, (2, 0), conn)


def test_a_continued_text_cannot_change_stage() -> None:
    conn, ini, _ = new()
    from tests.initiator import encode_keys
    text = encode_keys(first_keys(TARGET, ini, AuthMethod="None"))
    exchange(conn, ini, ini.login(raw=text[:20], cont=True, transit=False, csg=0, nsg=0))
    events, pdus = exchange(conn, ini, ini.login(raw=text[20:], csg=1, nsg=3))
    expect_reject(events, pdus, (2, 0), conn)


@pytest.mark.parametrize("method", ["Auto", "chap", "Kerberos", ""])
def test_an_unknown_auth_method_fails_closed(method: str) -> None:
    class Odd(FakeAuthority):
        def target_policy(self, target_name: str, initiator_name: str) -> object:
            from pyscsi_target.protocol.authority import AuthPolicy
            return AuthPolicy(method=method)

    ini = Initiator()
    conn = Connection(Odd())  # type: ignore[arg-type]
    events, pdus = exchange(conn, ini, ini.login(first_keys(TARGET, ini)))  # straight to operational
    expect_reject(events, pdus, (2, 1), conn)


def test_the_receive_buffer_stays_small_until_login() -> None:
    """target-rules §5.2: bounded memory per connection before authentication."""
    from pyscsi_target.protocol.framing import LOGIN_RECEIVE_BUFFER_BYTES, RECEIVE_BUFFER_BYTES
    conn, ini, _ = new()
    assert len(conn.receive_buffer()) <= LOGIN_RECEIVE_BUFFER_BYTES
    exchange(conn, ini, ini.login(first_keys(TARGET, ini), transit=False, nsg=0))
    assert len(conn.receive_buffer()) <= LOGIN_RECEIVE_BUFFER_BYTES
    exchange(conn, ini, ini.login([]))
    assert conn.state == "full_feature"
    assert len(conn.receive_buffer()) > RECEIVE_BUFFER_BYTES // 2


def test_failed_logins_are_logged_with_name_and_address_never_keys(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    conn = Connection(FakeAuthority(), peer="192.0.2.9:51000")
    ini = Initiator()
    ident, challenge = chap_to_challenge(conn, ini)
    response = md5(ident, CHAP_SECRET + "!", challenge)
    exchange(conn, ini, ini.login([("CHAP_N", CHAP_USER), ("CHAP_R", response)], csg=0, nsg=1))
    (record,) = [r for r in caplog.records if r.name == "pyscsi_target.login"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (f"login failed: initiator {ini.name} at 192.0.2.9:51000, target {SECRET_TARGET}:"
                                   " status 0x0201 (CHAP_N/CHAP_R do not match a credential)")
    for leaked in (CHAP_SECRET, response, response[2:18], challenge.hex()):
        assert leaked not in caplog.text


def test_a_discovery_session_keeps_the_small_receive_buffer() -> None:
    from pyscsi_target.protocol.framing import LOGIN_RECEIVE_BUFFER_BYTES
    conn, ini, _ = new()
    events, _ = exchange(conn, ini, ini.login([("InitiatorName", ini.name), ("SessionType", "Discovery")]))
    assert isinstance(events[0], LoginComplete) and conn.state == "full_feature"
    assert len(conn.receive_buffer()) <= LOGIN_RECEIVE_BUFFER_BYTES
    _, (rsp,) = exchange(conn, ini, ini.text([("SendTargets", "All")]))
    assert [v for k, v in rsp.keys if k == "TargetName"] == [TARGET, OTHER_TARGET]
