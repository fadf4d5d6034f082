"""Parsing of the human units the command line takes: sizes (500MB, 2GiB) and ages (30d)."""

from __future__ import annotations

import re

from voiceprep.errors import UsageError

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

RATE_MIN, RATE_MAX = 8000, 192000


def parse_size(text: str) -> int:
    """`500MB` → 500_000_000, `2GiB` → 2_147_483_648, `1024` → 1024 bytes."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"invalid size {text!r} (examples: 500MB, 2GiB, 1048576)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` → seconds."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _AGE_UNITS:
        raise UsageError(f"invalid age {text!r} (examples: 30d, 12h, 90m)")
    return float(match.group(1)) * _AGE_UNITS[unit]


def check_rate(rate: int) -> int:
    if not RATE_MIN <= rate <= RATE_MAX:
        raise UsageError(f"invalid rate {rate}: must be {RATE_MIN}–{RATE_MAX} Hz")
    return rate


def check_channels(channels: int) -> int:
    if channels not in (1, 2):
        raise UsageError(f"invalid channel count {channels}: must be 1 or 2")
    return channels
