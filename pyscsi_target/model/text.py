"""Which characters free-text configuration values may hold (issue #10 item 6). Stdlib only.

Names, aliases, comments and CHAP users end up in log lines, in `iscsi-ls` output and in iSCSI
text keys; a character that moves the cursor, ends a line or reorders what follows lets whoever
can write the configuration forge log lines or hide text. Refused anywhere inside a value:
- C0 controls U+0000-U+001F (NUL, tab, newline, ESC ...) and DEL U+007F;
- C1 controls U+0080-U+009F (NEL U+0085, CSI U+009B: terminals obey them too);
- the Unicode line and paragraph separators U+2028, U+2029;
- bidirectional formatting characters: U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069
  (the "Trojan Source" reordering, CVE-2021-42574);
- U+FEFF (byte order mark / zero width no-break space) and lone surrogates U+D800-U+DFFF (not
  encodable as UTF-8; the API's JSON parser refuses them with 400 before this check).
Everything else of Unicode is allowed: names and comments may be written in any script.
Lists of names or networks keep tab, newline and carriage return as separators (`LIST_SEPARATORS`).
"""

from __future__ import annotations

import re

MSG_CONTROL = "Control characters are not allowed."
#: what may separate the entries of a list field (spec Part A §2.3: spaces, commas or newlines)
LIST_SEPARATORS = "\t\n\r"

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
                     "\ud800-\udfff]")


def unsafe_char(text: str, allowed: str = "") -> str | None:
    """The first character of `text` that a configuration value must not hold, or None."""
    for m in _UNSAFE.finditer(text):
        if m.group() not in allowed:
            return m.group()
    return None


def text_problem(text: str, allowed: str = "") -> str | None:
    """The 409 message for `text`, or None when it holds no refused character."""
    return MSG_CONTROL if unsafe_char(text, allowed) is not None else None
