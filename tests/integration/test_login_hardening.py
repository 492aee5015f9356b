"""Issue #4: login status codes and the limits before authentication, against the live server.

Each test sends exact bytes (built by the independent test initiator) over loopback to the real
server and checks the exact reaction: the 48 bytes of the Login reject (RFC 7143 §11.13: no data
segment, T/C/CSG/NSG zero, the status), then the closed connection; or no answer at all and a
close. Timing limits (login timeout, slow-down of failing sources) run on trio's MockClock with
autojump, so the 15 s timeout takes no real time and the delays are measured exactly.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from pyscsi_target.model import AuthCredential, Config, InitiatorGroup
from pyscsi_target.protocol import limits
from pyscsi_target.server import admission
from pyscsi_target.server.connection import LOGIN_TIMEOUT_S
from tests.initiator import LOGIN_RESPONSE, Initiator, TargetPdu, encode_keys
from tests.support import DEMO_IQN, Running

from .client import DEFAULT_KEYS, Client

INITIATOR = "iqn.2026-11.org.example:hardening"
OTHER_INITIATOR = "iqn.2026-11.org.example:other"
USER, SECRET = "hard-user", "hard-secret-001"
PEER_USER, PEER_SECRET = "hard-target", "hard-peer-0002"
ISID = 0x80_12_34_56_00_01
ITT = 0x0000_0A0B
CMDSN = 0x0000_0100
#: the target's CmdSN window depth during login (protocol/limits.py COMMAND_WINDOW_DEPTH)
DEPTH = limits.COMMAND_WINDOW_DEPTH


# ---- helpers ----------------------------------------------------------------------------------


def reject_bhs(status: tuple[int, int], *, itt: int = ITT, isid: int = ISID, tsih: int = 0, statsn: int = 0,
               exp_cmdsn: int = CMDSN) -> bytes:
    """A Login reject (RFC 7143 §11.13): opcode 0x23, T/C/CSG/NSG 0, versions 0, no AHS, no data."""
    max_cmdsn = (exp_cmdsn + DEPTH - 1) & 0xFFFFFFFF
    return (bytes([0x23, 0, 0, 0, 0, 0, 0, 0]) + isid.to_bytes(6, "big") + tsih.to_bytes(2, "big")
            + itt.to_bytes(4, "big") + bytes(4) + statsn.to_bytes(4, "big") + exp_cmdsn.to_bytes(4, "big")
            + max_cmdsn.to_bytes(4, "big") + bytes(status) + bytes(10))


def initiator(name: str = INITIATOR, isid: int = ISID) -> Initiator:
    return Initiator(name=name, isid=isid, cmdsn=CMDSN)


def first_keys(target: str | None = DEMO_IQN, name: str = INITIATOR, **extra: str) -> list[tuple[str, str]]:
    keys = [("InitiatorName", name), ("SessionType", "Normal" if target else "Discovery")]
    if target:
        keys.append(("TargetName", target))
    return keys + list(extra.items())


def operational() -> list[tuple[str, str]]:
    return list(DEFAULT_KEYS.items())


async def connect(demo: Running, source: str | None = None, name: str = INITIATOR, isid: int = ISID) -> Client:
    """A raw client, optionally from another loopback source address (127.0.0.0/8 is all local)."""
    host, _, port = demo.portal.rpartition(":")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if source is not None:
        await sock.bind((source, 0))
    await sock.connect((host, int(port)))
    return Client(trio.SocketStream(sock), initiator(name, isid))


async def closed(c: Client, timeout: float = 10) -> bool:
    """True when the target closes the connection with nothing more to say."""
    try:
        with trio.fail_after(timeout):
            data = await c.sock.receive_some(65536)
    except (trio.BrokenResourceError, ConnectionResetError):
        return True
    return data == b""


async def expect_reject(c: Client, request: bytes, status: tuple[int, int], **fields: int) -> None:
    """Send `request`: exactly one Login reject with `status` comes back, then the close."""
    await c.send(request)
    pdu = await c.recv_pdu()
    assert (pdu.opcode, pdu.status_class, pdu.status_detail) == (LOGIN_RESPONSE, *status), pdu.bhs.hex()
    assert pdu.bhs == reject_bhs(status, **fields), pdu.bhs.hex()
    assert pdu.data == b""  # nothing about what exists (RFC 7143 §11.13.5)
    assert await closed(c)
    await c.aclose()


async def reply(c: Client, request: bytes) -> TargetPdu:
    await c.send(request)
    pdu = await c.recv_pdu()
    assert pdu.opcode == LOGIN_RESPONSE and pdu.status_class == 0, pdu.bhs.hex()
    return pdu


async def full_login(c: Client, target: str = DEMO_IQN) -> TargetPdu:
    pdu = await reply(c, c.ini.login(first_keys(target, c.ini.name) + operational()))
    assert pdu.final and pdu.nsg == 3 and pdu.tsih, pdu.bhs.hex()
    return pdu


def chap_r(identifier: int, secret: str, challenge: bytes) -> str:
    return "0x" + hashlib.md5(bytes([identifier]) + secret.encode() + challenge).hexdigest()


async def chap_to_challenge(c: Client) -> tuple[int, bytes]:
    pdu = await reply(c, c.ini.login(first_keys(DEMO_IQN, c.ini.name, AuthMethod="CHAP,None"), csg=0, nsg=1))
    assert pdu.key_dict["AuthMethod"] == "CHAP" and not pdu.final
    pdu = await reply(c, c.ini.login([("CHAP_A", "7,5")], csg=0, nsg=1))
    keys = pdu.key_dict
    assert keys["CHAP_A"] == "5" and keys["CHAP_C"].startswith("0x") and not pdu.final
    return int(keys["CHAP_I"]), bytes.fromhex(keys["CHAP_C"][2:])


async def reconfigure(demo: Running, change: Callable[[Config], None]) -> None:
    cfg = demo.service.config.copy()
    change(cfg)
    await demo.service.apply(cfg)


def chap_demo(method: str = "CHAP") -> Callable[[Config], None]:
    def change(cfg: Config) -> None:
        cfg.auths[1] = AuthCredential(1, 7, USER, SECRET, PEER_USER, PEER_SECRET)
        for group in cfg.targetgroups.values():
            group.authtype, group.authgroup = method, 7
    return change


def acl_demo(names: str = INITIATOR, networks: str = "ALL") -> Callable[[Config], None]:
    def change(cfg: Config) -> None:
        cfg.initiators[1] = InitiatorGroup(1, 1, names, networks)
        for group in cfg.targetgroups.values():
            group.initiatorgroup = 1
    return change


# ---- status codes (RFC 7143 §11.13.5) ------------------------------------------------------------


@pytest.mark.parametrize(("keys", "status"), [
    ([("SessionType", "Normal"), ("TargetName", DEMO_IQN)], (2, 0x07)),  # no InitiatorName
    ([("InitiatorName", INITIATOR)], (2, 0x07)),  # a Normal session without TargetName
    ([("InitiatorName", INITIATOR), ("SessionType", "Bogus")], (2, 0x07)),
    ([("InitiatorName", INITIATOR), ("TargetName", DEMO_IQN + "x")], (2, 0x03)),  # not found
    ([("InitiatorName", INITIATOR), ("TargetName", DEMO_IQN), ("TargetPortalGroupTag", "1")], (2, 0x00)),
], ids=["no-initiator-name", "no-target-name", "bad-session-type", "not-found", "target-only-key"])
async def test_first_request_status(demo: Running, keys: list[tuple[str, str]], status: tuple[int, int]) -> None:
    c = await connect(demo)
    await expect_reject(c, c.ini.login(keys, itt=ITT), status)


async def test_unsupported_version_0x0205(demo: Running) -> None:
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys(), itt=ITT, version_min=1, version_max=1), (2, 0x05))


@pytest.mark.parametrize("kw", [{"transit": True, "cont": True}, {"csg": 1, "nsg": 2}, {"csg": 3, "nsg": 3}],
                         ids=["T+C", "reserved-NSG", "CSG-full-feature"])
async def test_initiator_error_0x0200(demo: Running, kw: dict[str, object]) -> None:
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys(), itt=ITT, **kw), (2, 0x00))  # type: ignore[arg-type]


async def test_non_login_pdu_first_is_0x020b(demo: Running) -> None:
    c = await connect(demo)
    # a NOP-Out (opcode 0x00) before any login; CmdSN is not taken from a non-login PDU
    await expect_reject(c, c.ini.nop_out(itt=ITT), (2, 0x0B), isid=0, exp_cmdsn=0)


async def test_non_login_pdu_mid_login_is_0x020b(demo: Running) -> None:
    c = await connect(demo)
    await reply(c, c.ini.login(first_keys(), csg=1, nsg=3, transit=False, itt=ITT))
    await expect_reject(c, c.ini.scsi_command(bytes(6), itt=ITT), (2, 0x0B), statsn=1)


async def test_acl_by_name_0x0202(demo: Running) -> None:
    await reconfigure(demo, acl_demo(names=OTHER_INITIATOR))
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys(), itt=ITT), (2, 0x02))


async def test_acl_by_network_0x0202(demo: Running) -> None:
    await reconfigure(demo, acl_demo(names="ALL", networks="10.0.0.0/8 ::1/128"))
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys(), itt=ITT), (2, 0x02))
    await reconfigure(demo, acl_demo(names="ALL", networks="127.0.0.2/32"))
    c = await connect(demo, source="127.0.0.2")  # the one address the ACL allows
    await full_login(c)
    await c.aclose()


async def test_skipping_chap_is_0x0201(demo: Running) -> None:
    await reconfigure(demo, chap_demo())
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys() + operational(), itt=ITT), (2, 0x01))  # CSG=1 at once
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys(AuthMethod="None"), csg=0, nsg=1, itt=ITT), (2, 0x01))


async def test_unknown_tsih_is_0x020a(demo: Running) -> None:
    c = await connect(demo)
    await expect_reject(c, c.ini.login(first_keys() + operational(), tsih=0x0999, itt=ITT), (2, 0x0A),
                        tsih=0x0999)


async def test_another_initiators_tsih_is_0x020a_and_a_second_connection_0x0206(demo: Running) -> None:
    first = await connect(demo)
    tsih = (await full_login(first)).tsih
    c = await connect(demo, name=OTHER_INITIATOR)  # someone else's session: it does not exist for them
    await expect_reject(c, c.ini.login(first_keys(name=OTHER_INITIATOR) + operational(), tsih=tsih, cid=1,
                                       itt=ITT), (2, 0x0A), tsih=tsih)
    c = await connect(demo)  # the same initiator and ISID: MaxConnections=1 (RFC 7143 §13.2)
    await expect_reject(c, c.ini.login(first_keys() + operational(), tsih=tsih, cid=1, itt=ITT), (2, 0x06),
                        tsih=tsih)
    await first.aclose()


# ---- CHAP on the wire, and what the log keeps ----------------------------------------------------


async def test_chap_wrong_response_is_0x0201_and_logged_without_secrets(
        demo: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await reconfigure(demo, chap_demo())
    c = await connect(demo)
    ident, challenge = await chap_to_challenge(c)
    wrong = chap_r(ident, SECRET + "x", challenge)
    await expect_reject(c, c.ini.login([("CHAP_N", USER), ("CHAP_R", wrong)], csg=0, nsg=1, itt=ITT),
                        (2, 0x01), statsn=2)
    c = await connect(demo)
    ident, challenge = await chap_to_challenge(c)
    right = chap_r(ident, SECRET, challenge)
    pdu = await reply(c, c.ini.login([("CHAP_N", USER), ("CHAP_R", right)], csg=0, nsg=1))
    assert (pdu.final, pdu.csg, pdu.nsg, pdu.data) == (True, 0, 1, b"")
    pdu = await reply(c, c.ini.login(operational(), csg=1, nsg=3))
    assert pdu.final and pdu.tsih
    await c.aclose()
    failed = [r for r in caplog.records if r.getMessage().startswith("login failed:")]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    message = failed[0].getMessage()
    assert f"initiator {INITIATOR} at 127.0.0.1:" in message and "status 0x0201" in message, message
    for leaked in (SECRET, PEER_SECRET, wrong[2:], right[2:], wrong[2:18], right[2:18]):
        assert leaked not in caplog.text


async def test_mutual_chap_on_the_wire(demo: Running) -> None:
    await reconfigure(demo, chap_demo("CHAP Mutual"))
    c = await connect(demo)
    ident, challenge = await chap_to_challenge(c)
    mine = bytes(range(100, 124))
    pdu = await reply(c, c.ini.login([("CHAP_N", USER), ("CHAP_R", chap_r(ident, SECRET, challenge)),
                                      ("CHAP_I", "77"), ("CHAP_C", "0x" + mine.hex())], csg=0, nsg=1))
    assert pdu.key_dict == {"CHAP_N": PEER_USER, "CHAP_R": chap_r(77, PEER_SECRET, mine)}
    assert pdu.final and pdu.nsg == 1
    # reflecting the target's own challenge back is refused (RFC 7143 §9.2.1)
    c = await connect(demo)
    ident, challenge = await chap_to_challenge(c)
    await expect_reject(c, c.ini.login([("CHAP_N", USER), ("CHAP_R", chap_r(ident, SECRET, challenge)),
                                        ("CHAP_I", "77"), ("CHAP_C", "0x" + challenge.hex())], csg=0, nsg=1,
                                       itt=ITT), (2, 0x01), statsn=2)


# ---- limits on sizes before authentication -------------------------------------------------------


def padded_keys(total: int, name: str = INITIATOR) -> bytes:
    """First-request keys padded with X- keys (answered NotUnderstood) to exactly `total` bytes."""
    text = encode_keys(first_keys(name=name))
    i = 0
    while total - len(text) > 0:
        room = total - len(text) - len(f"X-pad{i:03d}=\0")
        value = "v" * max(0, min(limits.MAX_VALUE_LENGTH, room))
        if room < 1 or room - len(value) in range(1, 9):  # keep the last pair non-empty
            value = "v" * max(1, room // 2)
        text += encode_keys([(f"X-pad{i:03d}", value)])
        i += 1
    assert len(text) == total
    return text


async def test_login_data_segment_of_8192_bytes_is_read(demo: Running) -> None:
    c = await connect(demo)
    pdu = await reply(c, c.ini.login(raw=padded_keys(limits.DEFAULT_MRDSL), csg=1, nsg=1, transit=False))
    assert "X-pad000" in pdu.key_dict and pdu.key_dict["X-pad000"] == "NotUnderstood"
    await c.aclose()


async def test_login_data_segment_of_8193_bytes_is_refused_unread(demo: Running) -> None:
    c = await connect(demo)
    # only the 48-byte header, announcing 8193 bytes: the target answers without waiting for them
    header = c.ini.login(raw=b"", itt=ITT)
    header = header[:5] + (limits.DEFAULT_MRDSL + 1).to_bytes(3, "big") + header[8:]
    await expect_reject(c, header, (2, 0x00), exp_cmdsn=0)


async def test_login_with_an_ahs_is_refused(demo: Running) -> None:
    c = await connect(demo)
    request = bytearray(c.ini.login(first_keys(), itt=ITT))
    request[4] = 1  # TotalAHSLength: one word, then 4 AHS bytes
    request[48:48] = b"\x00\x01\x01\x00"
    await expect_reject(c, bytes(request), (2, 0x00), exp_cmdsn=0)


async def test_login_text_total_is_capped_at_64_kib(demo: Running) -> None:
    c = await connect(demo)
    chunk = b"X-k=" + b"v" * (limits.DEFAULT_MRDSL - 4)
    pieces = limits.MAX_TEXT_SEQUENCE_BYTES // limits.DEFAULT_MRDSL
    for _ in range(pieces):  # exactly 65536 bytes: every C=1 piece is taken, answered with no data
        pdu = await reply(c, c.ini.login(raw=chunk, cont=True, transit=False, nsg=0))
        assert pdu.data == b"" and not pdu.final
    await expect_reject(c, c.ini.login(raw=b"\0", cont=True, transit=False, nsg=0, itt=ITT), (2, 0x00),
                        statsn=pieces)


@pytest.mark.parametrize(("pair", "ok"), [
    (("X" * limits.MAX_KEY_LENGTH, "1"), True),  # 63-character key: answered NotUnderstood
    (("X" * (limits.MAX_KEY_LENGTH + 1), "1"), False),
    (("InitiatorAlias", "a" * limits.MAX_VALUE_LENGTH), True),
    (("InitiatorAlias", "a" * (limits.MAX_VALUE_LENGTH + 1)), False),
    (("X-bell", "a\x07b"), False),  # a control character in a value
    (("", "1"), False),  # empty key
])
async def test_key_and_value_lengths(demo: Running, pair: tuple[str, str], ok: bool) -> None:
    c = await connect(demo)
    request = c.ini.login([*first_keys(), pair], csg=1, nsg=1, transit=False, itt=ITT)
    if ok:
        await reply(c, request)
        await c.aclose()
    else:
        await expect_reject(c, request, (2, 0x00))


@pytest.mark.parametrize(("count", "ok"), [(limits.MAX_TEXT_PAIRS, True), (limits.MAX_TEXT_PAIRS + 1, False)])
async def test_number_of_keys(demo: Running, count: int, ok: bool) -> None:
    keys = first_keys()
    keys += [(f"K{i}", "1") for i in range(count - len(keys))]  # unknown keys, answered NotUnderstood
    c = await connect(demo)
    request = c.ini.login(keys, csg=1, nsg=1, transit=False, itt=ITT)
    if ok:
        pdu = await reply(c, request)
        assert pdu.key_dict["K3"] == "NotUnderstood"
        await c.aclose()
    else:
        await expect_reject(c, request, (2, 0x00))


@pytest.mark.parametrize("raw", [
    b"InitiatorName=" + INITIATOR.encode() + b"\0TargetName=" + DEMO_IQN.encode(),  # last NUL missing
    b"InitiatorName=" + INITIATOR.encode() + b"\0\0TargetName=" + DEMO_IQN.encode() + b"\0",  # empty pair
    b"InitiatorName" + b"\0",  # no '='
    b"InitiatorName=\xff\xfe\0",  # not UTF-8
], ids=["no-final-nul", "stray-nul", "no-equals", "not-utf8"])
async def test_malformed_text(demo: Running, raw: bytes) -> None:
    c = await connect(demo)
    await expect_reject(c, c.ini.login(raw=raw, itt=ITT), (2, 0x00))


async def test_number_of_login_requests_is_capped(demo: Running) -> None:
    c = await connect(demo)
    await reply(c, c.ini.login(first_keys(), transit=False, nsg=0))
    for _ in range(limits.MAX_LOGIN_PDUS - 1):  # empty operational-stage requests, T=0
        await reply(c, c.ini.login([], transit=False, nsg=0))
    await expect_reject(c, c.ini.login([], transit=False, nsg=0, itt=ITT), (2, 0x00), statsn=limits.MAX_LOGIN_PDUS)


# ---- connection caps before login ----------------------------------------------------------------


@asynccontextmanager
async def held_open(demo: Running, sources: list[str]) -> AsyncIterator[list[Client]]:
    clients = [await connect(demo, source) for source in sources]
    try:
        yield clients
    finally:
        for c in clients:
            await c.aclose()


async def test_prelogin_connections_per_source_are_capped(demo: Running) -> None:
    per_source = admission.MAX_PRELOGIN_PER_SOURCE
    async with held_open(demo, ["127.0.0.1"] * per_source) as clients:
        extra = await connect(demo)
        assert await closed(extra)  # accepted by the kernel, closed by the target at once, unread
        await extra.aclose()
        assert demo.service.admission.prelogin_total == per_source
        other = await connect(demo, "127.0.0.3")  # another source is not affected
        await full_login(other)
        await other.aclose()
        await full_login(clients[0])  # a login frees its place ...
        again = await connect(demo)
        await full_login(again)  # ... for the next connection from that source
        await again.aclose()


async def test_prelogin_connections_in_total_are_capped(demo: Running) -> None:
    per_source = admission.MAX_PRELOGIN_PER_SOURCE
    n_sources = admission.MAX_PRELOGIN_TOTAL // per_source
    sources = [f"127.0.1.{i + 1}" for i in range(n_sources) for _ in range(per_source)]
    async with held_open(demo, sources):
        assert len(sources) == admission.MAX_PRELOGIN_TOTAL
        extra = await connect(demo, "127.0.2.1")
        assert await closed(extra)
        await extra.aclose()
        assert demo.service.admission.prelogin_total == admission.MAX_PRELOGIN_TOTAL


# ---- timing: login timeout and slow-down (trio MockClock, virtual time) --------------------------


async def test_login_timeout(demo: Running, mock_clock: trio.testing.MockClock,
                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyscsi_target")
    c = await connect(demo)
    start = trio.current_time()
    mock_clock.autojump_threshold = 0
    request = c.ini.login(first_keys(), itt=ITT)
    for i in range(20):  # a slowloris: one byte per virtual second does not extend the deadline
        try:
            await c.send(request[i:i + 1])
        except (trio.BrokenResourceError, ConnectionResetError):
            break
        with trio.move_on_after(1):
            if await closed(c, timeout=2):
                break
    elapsed = trio.current_time() - start
    assert LOGIN_TIMEOUT_S <= elapsed < LOGIN_TIMEOUT_S + 1.5, elapsed
    assert any(r.getMessage().startswith("login failed: initiator (unknown) at 127.0.0.1:")
               and "no login within 15 s" in r.getMessage() for r in caplog.records)
    await c.aclose()


async def chap_login(demo: Running, name: str, secret: str, source: str | None = None) -> float:
    """One CHAP login of `name` with `secret`, to its end (full feature, or the 0x0201 reject);
    returns the virtual seconds the target took to answer the first Login Request."""
    c = await connect(demo, source, name=name)
    start = trio.current_time()
    ident, challenge = await chap_to_challenge(c)
    waited = trio.current_time() - start
    keys = [("CHAP_N", USER), ("CHAP_R", chap_r(ident, secret, challenge))]
    if secret != SECRET:
        await expect_reject(c, c.ini.login(keys, csg=0, nsg=1, itt=ITT), (2, 0x01), statsn=2)
        return waited
    pdu = await reply(c, c.ini.login(keys, csg=0, nsg=1))
    assert pdu.final and pdu.nsg == 1
    pdu = await reply(c, c.ini.login(operational(), csg=1, nsg=3))
    assert pdu.final and pdu.tsih
    await c.aclose()
    return waited


async def protocol_errors(demo: Running, name: str) -> None:
    """Connections of `name` that end in protocol errors, never in a credential check (issue #10)."""
    c = await connect(demo, name=name)  # unknown target
    await expect_reject(c, c.ini.login(first_keys(DEMO_IQN + "-nothere", name), itt=ITT), (2, 0x03))
    c = await connect(demo, name=name)  # a SCSI command in the middle of the login
    await reply(c, c.ini.login(first_keys(DEMO_IQN, name, AuthMethod="CHAP"), csg=0, nsg=1, transit=False))
    await expect_reject(c, c.ini.scsi_command(bytes(6), itt=ITT), (2, 0x0B), statsn=1)
    c = await connect(demo, name=name)  # ISID changed during the login
    await reply(c, c.ini.login(first_keys(DEMO_IQN, name, AuthMethod="CHAP"), csg=0, nsg=1, transit=False))
    c.ini.isid ^= 1
    await expect_reject(c, c.ini.login([("CHAP_A", "5")], csg=0, nsg=1, transit=False, itt=ITT), (2, 0x00),
                        isid=ISID, statsn=1)
    c = await connect(demo, name=name)  # garbage instead of a PDU
    await expect_reject(c, bytes(range(48)), (2, 0x0B), isid=0, itt=0x10111213, exp_cmdsn=0)
    c = await connect(demo, name=name)  # the connection dropped half-way through the login
    await reply(c, c.ini.login(first_keys(DEMO_IQN, name, AuthMethod="CHAP"), csg=0, nsg=1, transit=False))
    await c.aclose()


async def test_an_initiator_failing_chap_does_not_slow_down_others_or_protocol_errors(
        demo: Running, mock_clock: trio.testing.MockClock) -> None:
    """Issue #10: the slow-down is keyed by (address, InitiatorName) and counts credential checks
    only. One name failing CHAP many times from 127.0.0.1 delays nobody else there, and a name
    whose connections end in protocol errors, timeouts or drops is never delayed."""
    mock_clock.autojump_threshold = 0
    await reconfigure(demo, chap_demo())
    for _ in range(admission.FAILURES_BEFORE_DELAY + 3):
        await chap_login(demo, INITIATOR, SECRET + "x")
        await protocol_errors(demo, OTHER_INITIATOR)
    c = await connect(demo, name=OTHER_INITIATOR)  # and a login that times out
    await reply(c, c.ini.login(first_keys(DEMO_IQN, OTHER_INITIATOR, AuthMethod="CHAP"), csg=0, nsg=1,
                               transit=False))
    assert await closed(c, timeout=LOGIN_TIMEOUT_S + 5)
    await c.aclose()
    assert await chap_login(demo, OTHER_INITIATOR, SECRET) == 0
    assert await chap_login(demo, "iqn.2026-11.org.example:third", SECRET) == 0
    assert await chap_login(demo, INITIATOR, SECRET) > 0  # the failing name itself still waits


async def test_an_initiator_failing_chap_is_slowed_down(demo: Running, mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0
    await reconfigure(demo, chap_demo())
    first = admission.FIRST_FAILURE_DELAY_S
    delays = [await chap_login(demo, INITIATOR, SECRET + "x") for _ in range(admission.FAILURES_BEFORE_DELAY + 3)]
    assert delays == [0, 0, 0, first, 2 * first, 4 * first]
    assert await chap_login(demo, INITIATOR, SECRET + "x", "127.0.0.4") == 0  # only at the failing address
    assert await chap_login(demo, INITIATOR.upper(), SECRET) == 8 * first  # a right secret gets in, late
    await trio.sleep(admission.FAILURE_WINDOW_S)  # virtual: the failures age out of the window
    assert await chap_login(demo, INITIATOR, SECRET + "x") == 0


async def test_acl_denials_count_and_a_name_guesser_is_slowed_down(
        demo: Running, mock_clock: trio.testing.MockClock) -> None:
    """Guessing names that an ACL admits (0x0202) takes a new name per guess: after
    NAMES_BEFORE_SOURCE_DELAY names the address waits, except for a name that passed CHAP there."""
    mock_clock.autojump_threshold = 0
    await reconfigure(demo, chap_demo())
    assert await chap_login(demo, INITIATOR, SECRET) == 0  # proves a secret: trusted at this address
    await reconfigure(demo, acl_demo(names=INITIATOR))  # CHAP stays on

    async def denied(name: str) -> float:
        c = await connect(demo, name=name)
        start = trio.current_time()
        await expect_reject(c, c.ini.login(first_keys(name=name), itt=ITT), (2, 0x02))
        return trio.current_time() - start

    guesses = [await denied(f"{OTHER_INITIATOR}-{i}") for i in range(admission.NAMES_BEFORE_SOURCE_DELAY + 1)]
    assert guesses == [0] * admission.NAMES_BEFORE_SOURCE_DELAY + [admission.FIRST_FAILURE_DELAY_S]
    assert await chap_login(demo, INITIATOR, SECRET) == 0  # the trusted name is not delayed


# ---- docs/limits.md stays true ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
#: a number named like a size, count, time, depth, port or level is a limit or a default
LIMIT_NAME = re.compile(r"MAX|MIN|DEFAULT|LIMIT|TIMEOUT|_S$|_MS$|BYTES|DEPTH|LENGTH|_LEN$|SIZE|WINDOW|DELAY|INTERVAL"
                        r"|GRACE|BACKLOG|THREADS|TRACKED|REMEMBERED|DIGITS|THRESHOLD|CHUNK|BLOCKS|^TARGET_|PAIRS"
                        r"|PDUS|WORDS|FAILURES|SECONDS|PORT|RESERVED_TAG|VERSION$|MODULUS|PAD_UNIT|CHECKPOINT"
                        r"|REGISTRATIONS|COPIES|DESCRIPTORS|_MODE$|FREE|JOIN_BELOW|LEVEL|CONNECTIONS|R2T|TIME2")
#: names the pattern catches that are identifiers or format versions, not limits
NOT_LIMITS = {"OP_R2T", "REJECT_NOT_SUPPORTED", "AHS_BIDI_READ_LENGTH", "FALLOC_FL_KEEP_SIZE",
              "TRANSPORT_ID_ISCSI_PORT", "SCHEMA_VERSION", "STATE_VERSION"}
ROW = re.compile(r"^\| `(?P<name>[a-z_.]+\.[A-Z0-9_]+)` \| (?P<value>[^|]+?) \| (?P<unit>[^|]*?) "
                 r"\| (?P<text>[^|]*?) \|$")


def code_limits() -> dict[str, object]:
    """`layer.module.NAME` -> value, for every constant the rule above selects."""
    found: dict[str, object] = {}
    for path in sorted((REPO / "pyscsi_target").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                name = getattr(target, "id", "")
                if not name or name.upper() != name or name in NOT_LIMITS:
                    continue
                value = getattr(importlib.import_module(module), name, None)
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                if (numeric and LIMIT_NAME.search(name)) or (isinstance(value, str) and name.startswith("DEFAULT_")):
                    found[module.removeprefix("pyscsi_target.") + "." + name] = value
    return found


def documented() -> dict[str, re.Match[str]]:
    rows = [ROW.match(line) for line in (REPO / "docs" / "limits.md").read_text().splitlines()]
    return {m["name"]: m for m in rows if m}


def test_docs_limits_lists_every_limit_with_its_value() -> None:
    docs = documented()
    missing = sorted(set(code_limits()) - set(docs))
    assert not missing, f"add these to docs/limits.md: {missing}"
    for name, value in code_limits().items():
        row = docs[name]
        shown = f"`{value}`" if isinstance(value, str) else repr(value)
        assert row["value"] == shown, (name, row["value"], shown)
        assert row["unit"].strip() and row["text"].strip(), name


def test_docs_limits_lists_nothing_that_is_gone() -> None:
    assert not sorted(set(documented()) - set(code_limits())), "docs/limits.md lists constants the code lacks"
