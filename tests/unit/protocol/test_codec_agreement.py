"""Hypothesis: every PDU round-trips, and the struct fast path agrees with construct byte for byte."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from construct import BitsInteger, Const, Default, Flag, Padding, Renamed
from hypothesis import given
from hypothesis import strategies as st

from pyscsi_target.protocol import fastpath
from pyscsi_target.protocol import pdu as P
from pyscsi_target.protocol.codec import DEFINITIONS, construct_decode, construct_encode, decode_bhs, encode_bhs


def _field_widths(cls: type[P.Pdu]) -> dict[str, Any]:
    """Field name -> hypothesis strategy, from the construct definition's field sizes."""
    out: dict[str, Any] = {}
    for sub in DEFINITIONS[cls].subcon.subcons:
        if not isinstance(sub, Renamed) or sub.name.startswith("_"):
            continue
        inner = sub.subcon
        if inner is Flag:
            out[sub.name] = st.booleans()
        elif isinstance(inner, BitsInteger):
            out[sub.name] = st.integers(0, (1 << inner.length) - 1)
        elif sub.name == "cdb":  # Bytewise(Bytes(16))
            out[sub.name] = st.binary(min_size=16, max_size=16)
        else:  # pragma: no cover - every field kind is listed above
            raise AssertionError(f"{cls.__name__}.{sub.name}: {inner!r}")
    assert set(out) == {f.name for f in fields(cls)}, cls
    return out


def pdu_strategy(cls: type[P.Pdu]) -> st.SearchStrategy[P.Pdu]:
    return st.builds(cls, **_field_widths(cls))


ANY_PDU = st.one_of(*(pdu_strategy(cls) for cls in DEFINITIONS))
FAST_CLASSES = list(fastpath.ENCODERS)
FAST_PDU = st.one_of(*(pdu_strategy(cls) for cls in FAST_CLASSES))


@given(ANY_PDU)
def test_every_pdu_round_trips(pdu: P.Pdu) -> None:
    raw = construct_encode(pdu)
    assert len(raw) == 48
    assert construct_decode(raw) == pdu
    assert decode_bhs(raw) == pdu
    assert encode_bhs(pdu) == raw


@given(FAST_PDU)
def test_fast_encoder_matches_construct(pdu: P.Pdu) -> None:
    assert fastpath.ENCODERS[type(pdu)](pdu) == construct_encode(pdu)


@given(st.sampled_from(sorted(fastpath.DECODERS)), st.binary(min_size=48, max_size=48))
def test_fast_decoder_matches_construct_on_any_header(opcode: int, raw: bytes) -> None:
    # arbitrary reserved bits, immediate bits and field values: both paths must read the same PDU
    header = bytes([(raw[0] & 0xC0) | opcode]) + raw[1:]
    fast = fastpath.DECODERS[opcode](memoryview(header))
    assert fast == construct_decode(header)


def test_the_fast_path_covers_the_hot_pdus() -> None:
    assert set(FAST_CLASSES) == {P.ScsiCommandPdu, P.DataOut, P.NopOut, P.DataIn, P.ScsiResponsePdu, P.R2T,
                                 P.NopIn}
    assert set(fastpath.DECODERS) == {cls.OPCODE for cls in FAST_CLASSES}


def test_definitions_are_48_bytes_with_fixed_opcodes() -> None:
    for cls, definition in DEFINITIONS.items():
        assert definition.sizeof() == 48, cls
        consts = [s.subcon for s in definition.subcon.subcons
                  if isinstance(s, Renamed) and s.name == "_opcode" and isinstance(s.subcon, Const)]
        assert [c.value for c in consts] == [cls.OPCODE]
    assert Padding and Default  # the reserved/fixed-bit constructs the definitions rely on
