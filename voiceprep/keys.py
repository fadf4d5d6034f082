"""Cache keys: what makes two syntheses interchangeable.

A key is the sha256 of a canonical, versioned JSON encoding of the backend identity
(name, model, voice, the options that change the sound), the target rate and channel
count, and the normalized text. Computing it never touches the disk. Changing anything
in this encoding means bumping KEY_VERSION: old entries then simply stop matching.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voiceprep.errors import UsageError

KEY_VERSION = 1
_WHITESPACE = re.compile(r"\s+")


def check_unicode(value: str, what: str) -> str:
    """`value` when it is valid Unicode (encodable as UTF-8); UsageError naming `what`
    otherwise: a lone surrogate from JSON (`"\\ud800"`) or an argument that was not UTF-8
    (`caf\\xe9`, which Python carries as U+DCE9)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        if _only_escapes(value):  # bytes of argv: show them as bytes
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(f"{what} '{shown}' is not valid UTF-8") from None
        shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
        raise UsageError(
            f"{what} '{shown}' holds a lone surrogate, which is not valid Unicode"
        ) from None
    return value


def _only_escapes(value: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in value)


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace runs collapsed to one space, trimmed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


@dataclass(frozen=True)
class BackendIdentity:
    """Everything about a backend that changes the sound it makes for a text."""

    name: str
    model: str | None = None
    voice: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "voice": self.voice,
            "options": {k: self.options[k] for k in sorted(self.options)},
        }


def cache_key(identity: BackendIdentity, text: str, *, rate: int, channels: int) -> str:
    """The hex sha256 that names one cache entry; UsageError when the text, voice or model
    is not valid Unicode."""
    check_unicode(text, "text")
    for what, value in (("voice", identity.voice), ("model", identity.model)):
        if value is not None:
            check_unicode(value, what)
    payload = {
        "v": KEY_VERSION,
        "backend": identity.as_dict(),
        "rate": rate,
        "channels": channels,
        "text": normalize_text(text),
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(check_unicode(canonical, "backend option").encode("utf-8")).hexdigest()
