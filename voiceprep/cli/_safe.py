"""Text that is safe to print: no control characters reach a terminal raw, no secret
reaches any output.

Phrase texts come from phrase lists and caches (untrusted input), file names from argv:
an escape sequence in one could move the cursor, rewrite the screen or hide a line. Every
message line, and every phrase printed as plain text, goes through `printable`; JSON output
is escaped by the JSON encoder itself.
"""

from __future__ import annotations

import re

from voiceprep.secrets import redact

# C0 and C1 controls and DEL, Unicode line/paragraph separators, the bidirectional
# overrides and isolates (which reorder what a terminal shows), and lone surrogates
# (argv bytes that were not UTF-8, carried by Python as U+DC80–U+DCFF).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable argv byte: show the byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every unsafe character written as a Python-style escape (`\\x1b`)."""
    return _UNSAFE.sub(_escape, text)


def safe_message(message: str) -> str:
    """A message line as printed: secrets removed, control characters escaped."""
    return printable(redact(message))
