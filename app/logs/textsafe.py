"""Make untrusted text (agent output, training logs) safe to show in a terminal.

Usage:
    from app.logs.textsafe import sanitize
    Text(sanitize(untrusted))   # always rich.text.Text, never markup

`sanitize` removes terminal escape sequences (CSI, OSC incl. OSC 8 hyperlinks, DCS/SOS/PM/APC,
7-bit and 8-bit forms) and every other C0/C1 control character except tab and newline, plus the
Unicode bidi overrides that can visually reorder text. Rich markup such as `[red]` is left as
literal characters: callers must put the result into a `Text`, never parse it as markup.
"""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------
# Patterns

_ST = r"(?:\x1b\\|\x9c)"  # string terminator: ESC \ or 8-bit ST
_STRING_SEQUENCE = (
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])"  # OSC, DCS, SOS, PM, APC (7-bit and 8-bit introducers)
    r"[^\x07\x1b\x9c]*"  # payload up to a terminator
    rf"(?:\x07|{_ST}|(?=\x1b)|$)"  # BEL, ST, the next escape, or end of text (unterminated)
)
_CSI = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # parameters, intermediates, final byte (may be cut off)
_OTHER_ESCAPE = r"\x1b[ -/]*[0-~]?"  # two/three-byte escapes such as ESC 7, ESC ( B, ESC c
_ESCAPES = re.compile(f"{_STRING_SEQUENCE}|{_CSI}|{_OTHER_ESCAPE}")
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 except \t \n, DEL, C1
    "\u202a-\u202e\u2066-\u2069]"  # bidi embeddings, overrides and isolates
)


def sanitize(text: str) -> str:
    """Return `text` without escape sequences or control characters (tab and newline kept)."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
