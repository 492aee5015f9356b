"""key=value text of Login and Text PDUs (RFC 7143 §6.1): parsing, validation and encoding.

Every pair is `key=value` followed by exactly one NUL. Keys are at most 63 characters of letters,
digits and `.-+@_` (RFC 7143 §6.1 standard-label; `X-`/`X#` extension keys also allow `#`),
values at most 255 bytes of UTF-8 without control characters, except CHAP_C/CHAP_R which carry
up to 1024 binary bytes (RFC 7143 §12.1.3). A key may appear once per negotiation sequence.
NULs after the last pair are tolerated as padding; an empty pair between pairs is an error.
Any violation raises `TextError`, which login turns into status 0x0200 and Text into a Reject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .limits import MAX_KEY_LENGTH, MAX_LONG_VALUE_LENGTH, MAX_TEXT_PAIRS, MAX_VALUE_LENGTH

#: keys exempt from the 255-byte value limit (RFC 7143 §12.1.3: binary values up to 1024 bytes)
LONG_VALUE_KEYS = frozenset({"CHAP_C", "CHAP_R"})

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9.\-+@_]*|X[-#][A-Za-z0-9.\-+@_#]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TextError(ValueError):
    """Malformed key=value data (RFC 7143 §6.1)."""


def parse_text(data: bytes | bytearray | memoryview, *, max_pairs: int = MAX_TEXT_PAIRS,
               allow_duplicates: bool = False) -> list[tuple[str, str]]:
    """The (key, value) pairs of a logical text data segment, in order."""
    raw = bytes(data)
    if not raw:
        return []
    if raw[-1] != 0:
        raise TextError("text data does not end with NUL")
    body = raw.rstrip(b"\0")
    if not body:
        return []
    chunks = body.split(b"\0")
    if len(chunks) > max_pairs:
        raise TextError(f"more than {max_pairs} key=value pairs")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for chunk in chunks:
        key, value = _parse_pair(chunk)
        if key in seen and not allow_duplicates:
            raise TextError(f"key {key} sent twice")
        seen.add(key)
        pairs.append((key, value))
    return pairs


def _parse_pair(chunk: bytes) -> tuple[str, str]:
    if not chunk:
        raise TextError("empty key=value pair (stray NUL)")
    key_bytes, sep, value_bytes = chunk.partition(b"=")
    if not sep:
        raise TextError("pair without '='")
    try:
        key = key_bytes.decode("ascii")
        value = value_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextError("key is not ASCII or value is not UTF-8") from exc
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise TextError(f"invalid key name {key[:MAX_KEY_LENGTH]!r}")
    limit = MAX_LONG_VALUE_LENGTH if key in LONG_VALUE_KEYS else MAX_VALUE_LENGTH
    if len(value_bytes) > limit:
        raise TextError(f"value of {key} longer than {limit} bytes")
    if _CONTROL.search(value):
        raise TextError(f"control character in the value of {key}")
    return key, value


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    """`key=value\\0` for each pair, in order (duplicates allowed: SendTargets repeats keys)."""
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def split_text(data: bytes, limit: int) -> list[bytes]:
    """`data` cut into chunks of at most `limit` bytes for C=1 continuation (RFC 7143 §6.1:
    pairs may span PDU boundaries). An empty input gives one empty chunk."""
    if not data:
        return [b""]
    return [data[i:i + limit] for i in range(0, len(data), limit)]
