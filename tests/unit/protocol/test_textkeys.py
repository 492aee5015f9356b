"""key=value text (RFC 7143 §6.1): NUL termination, lengths, names, duplicates, encodings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyscsi_target.protocol.textkeys import TextError, encode_text, parse_text, split_text


def test_parse_pairs_in_order() -> None:
    assert parse_text(b"InitiatorName=iqn.x\0SessionType=Normal\0") == [
        ("InitiatorName", "iqn.x"), ("SessionType", "Normal")]


def test_empty_data_and_trailing_nul_padding() -> None:
    assert parse_text(b"") == []
    assert parse_text(b"\0\0") == []
    assert parse_text(b"A=1\0\0\0") == [("A", "1")]


def test_value_may_contain_equals_and_be_empty() -> None:
    assert parse_text(b"SendTargets=\0X-a=b=c\0") == [("SendTargets", ""), ("X-a", "b=c")]


@pytest.mark.parametrize("raw", [
    b"A=1",  # missing final NUL
    b"A=1\0\0B=2\0",  # empty pair between pairs (embedded NUL)
    b"A=va\0lue\0",  # NUL inside a value splits it: "lue" has no '='
    b"=1\0",  # empty key
    b"A\0",  # no '='
    b"1A=2\0",  # key must start with a letter
    b"Ke y=1\0",  # space in the key
    b"A=\x01\0",  # control character
    b"A=\xff\0",  # not UTF-8
    b"A=1\0A=2\0",  # duplicate key
])
def test_malformed_text(raw: bytes) -> None:
    with pytest.raises(TextError):
        parse_text(raw)


def test_key_length_63_ok_64_refused() -> None:
    assert parse_text(b"K" * 63 + b"=v\0") == [("K" * 63, "v")]
    with pytest.raises(TextError):
        parse_text(b"K" * 64 + b"=v\0")


def test_value_length_255_ok_256_refused() -> None:
    assert parse_text(b"A=" + b"v" * 255 + b"\0")[0][1] == "v" * 255
    with pytest.raises(TextError):
        parse_text(b"A=" + b"v" * 256 + b"\0")
    # the limit counts bytes, not characters
    with pytest.raises(TextError):
        parse_text(b"A=" + "é".encode() * 128 + b"\0")


def test_chap_values_are_exempt_from_255() -> None:
    long_hex = "0x" + "ab" * 1024
    assert parse_text(f"CHAP_C={long_hex}\0".encode()) == [("CHAP_C", long_hex)]
    with pytest.raises(TextError):
        parse_text(b"CHAP_C=0x" + b"a" * 9000 + b"\0")


def test_extension_keys_and_protocol_level() -> None:
    assert parse_text(b"X-com.example.k=1\0X#a=2\0iSCSIProtocolLevel=1\0")[0][0] == "X-com.example.k"


def test_pair_count_cap() -> None:
    data = b"".join(f"K{i}=1\0".encode() for i in range(10))
    assert len(parse_text(data, max_pairs=10)) == 10
    with pytest.raises(TextError):
        parse_text(data, max_pairs=9)


def test_duplicates_allowed_when_asked() -> None:
    raw = b"TargetName=a\0TargetAddress=1\0TargetName=b\0"
    assert len(parse_text(raw, allow_duplicates=True)) == 3


@given(st.lists(st.tuples(st.from_regex(r"[A-Z][A-Za-z0-9.+@_-]{0,62}", fullmatch=True),
                          st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=100)),
                unique_by=lambda kv: kv[0], max_size=20))
def test_encode_parse_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert parse_text(encode_text(pairs)) == pairs


def test_split_text() -> None:
    assert split_text(b"", 10) == [b""]
    assert split_text(b"a" * 25, 10) == [b"a" * 10, b"a" * 10, b"a" * 5]
