"""Hypothesis fuzzing of `protocol.Connection`: arbitrary and mutated byte streams never raise,
never loop, and the output stays bounded by the input."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyscsi_target.protocol import NEED_DATA, Connection, ConnectionClosed, Event, ScsiCommand
from tests.initiator import Initiator
from tests.unit.protocol.support import OPEN_ISCSI_OPERATIONAL, SECRET_TARGET, TARGET, FakeAuthority, first_keys

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: events handled per receive_data() before we call it an endless loop
MAX_EVENTS_PER_FEED = 10_000


def run(chunks: list[bytes], *, answer: bool = True) -> tuple[Connection, int]:
    """Feed `chunks`, answer every command like a server would; returns bytes sent."""
    conn = Connection(FakeAuthority())
    sent = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        for _ in range(MAX_EVENTS_PER_FEED):
            ev = conn.next_event()
            if ev is NEED_DATA:
                break
            assert isinstance(ev, Event)
            if isinstance(ev, ScsiCommand) and answer:
                conn.send_scsi_response(ev.itt, 0, bytes(min(ev.expected_length, 70_000) + 3))
            if isinstance(ev, ConnectionClosed):
                assert conn.wants_close
        else:  # pragma: no cover - only on failure
            raise AssertionError("next_event() never returned NEED_DATA")
        sent += sum(len(b) for b in conn.data_to_send())
    conn.receive_data(b"")
    for _ in range(MAX_EVENTS_PER_FEED):
        if conn.next_event() is NEED_DATA:
            break
    assert conn.wants_close
    return conn, sent


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def valid_session(ini: Initiator) -> list[bytes]:
    """A login followed by a read, a write with R2T-less data, a NOP, a text and a logout."""
    return [
        ini.login(first_keys(TARGET, ini) + OPEN_ISCSI_OPERATIONAL),
        ini.scsi_command(bytes.fromhex("28") + bytes(9), read=True, edtl=4096),
        ini.scsi_command(bytes.fromhex("2a") + bytes(9), write=True, edtl=1024, data=bytes(512), final=False),
        ini.data_out(ini.next_itt, 512, bytes(512)),
        ini.nop_out(data=b"ping"),
        ini.text([("SendTargets", "All")]),
        ini.logout(),
    ]


def bound(sent: int, received: int) -> bool:
    # every input PDU (>= 48 bytes) yields at most a Reject/echo of ~2x its size, plus one login
    # answer (<= 8 KiB) and the read data the fake server returns per command
    return sent <= 8 * received + 300_000


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=8))
def test_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    _, sent = run(split(data, cuts))
    assert bound(sent, len(data))


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=6), st.booleans())
def test_valid_login_then_garbage(garbage: bytes, cuts: list[int], digests: bool) -> None:
    ini = Initiator()
    extra = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")] if digests else []
    login = ini.login(first_keys(TARGET, ini) + extra + OPEN_ISCSI_OPERATIONAL)
    _conn, sent = run([login, *split(garbage, cuts)])
    assert bound(sent, len(login) + len(garbage))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=12),
       st.lists(st.integers(0, 10_000), max_size=6), st.integers(0, 3))
def test_mutated_valid_sessions(flips: list[tuple[int, int]], cuts: list[int], variant: int) -> None:
    ini = Initiator()
    stream = bytearray(b"".join(valid_session(ini)))
    for pos, value in flips:
        stream[pos % len(stream)] = value
    if variant == 1:
        del stream[len(stream) // 2:]
    elif variant == 2:
        stream[100:100] = bytes(flips[0][1] for _ in range(37))
    _, sent = run(split(bytes(stream), cuts))
    assert bound(sent, len(stream))


@FUZZ
@given(st.integers(8180, 8200), st.binary(min_size=1, max_size=64), st.booleans())
def test_login_lengths_around_8192(length: int, fill: bytes, terminated: bool) -> None:
    ini = Initiator()
    body = (fill * (length // len(fill) + 1))[:length]
    if terminated:
        body = body[:-1] + b"\0"
    conn, _ = run([ini.login(raw=body)])
    assert conn.state == "closed"


@FUZZ
@given(st.integers(8180, 8200), st.integers(262_140, 262_150), st.binary(max_size=16))
def test_full_feature_lengths_around_limits(nop_len: int, big_len: int, tail: bytes) -> None:
    ini = Initiator()
    login = ini.login(first_keys(TARGET, ini) + OPEN_ISCSI_OPERATIONAL)
    stream = [login, ini.nop_out(data=bytes(nop_len)), ini.nop_out(data=bytes(big_len)),
              ini.scsi_command(bytes(16), write=True, edtl=big_len, data=bytes(min(big_len, 65536))), tail]
    _, sent = run(stream)
    assert bound(sent, sum(map(len, stream)))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"]),
                          st.text(max_size=40)), max_size=6), st.integers(0, 1), st.integers(0, 3))
def test_chap_exchanges_with_random_keys(pairs: list[tuple[str, str]], csg: int, nsg: int) -> None:
    ini = Initiator()
    first = ini.login(first_keys(SECRET_TARGET, ini, AuthMethod="CHAP"), csg=0, nsg=1)
    try:
        second = ini.login(dict(pairs), csg=csg, nsg=nsg)
    except UnicodeEncodeError:  # pragma: no cover - surrogates cannot be sent at all
        return
    run([first, second])
