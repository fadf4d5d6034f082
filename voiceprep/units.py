"""The human units the command line takes, sizes (500MB, 2GiB) and ages (30d), and the
checks of a sample rate and a channel count."""

from __future__ import annotations

import re

from voiceprep import defaults
from voiceprep.errors import InvalidValueError

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
CHANNEL_COUNTS = (1, 2)

# What each kind of value accepts, as error messages say it.
ACCEPTED_RATE = f"a sample rate in Hz, {RATE_MIN}–{RATE_MAX}"
ACCEPTED_CHANNELS = "1 (mono) or 2 (stereo)"
ACCEPTED_SIZE = "a size such as 500MB, 2GiB or 1048576"
ACCEPTED_JOBS = "a whole number, 1 or more"
ACCEPTED_AGE = "an age such as 30d, 12h, 90m or 45s"
# The longest --start/--duration taken (about 31 years): more is a typo, and inf or 1e308
# would overflow the sample count.
MAX_SECONDS = 1e9
ACCEPTED_START = f"a number of seconds, 0 to {MAX_SECONDS:g}"
ACCEPTED_DURATION = f"a number of seconds, more than 0 and at most {MAX_SECONDS:g}"
# What each setting accepts, as its error message says it.
ACCEPTED: dict[str, str] = {
    "rate": ACCEPTED_RATE,
    "channels": ACCEPTED_CHANNELS,
    "jobs": ACCEPTED_JOBS,
    "retries": "a whole number, 0 or more",
    "timeout": "a number of seconds above 0",
    "max_entries": "a whole number, 1 or more",
    "max_size": ACCEPTED_SIZE,
    "gate": " or ".join(defaults.GATE_MODES),
}


def parse_size(text: str) -> int:
    """`500MB` → 500_000_000, `2GiB` → 2_147_483_648, `1024` → 1024 bytes."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise InvalidValueError("size", text, ACCEPTED_SIZE)
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` → seconds."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _AGE_UNITS:
        raise InvalidValueError("age", text, ACCEPTED_AGE)
    return float(match.group(1)) * _AGE_UNITS[unit]


def check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or not RATE_MIN <= rate <= RATE_MAX:
        raise InvalidValueError("rate", rate, ACCEPTED_RATE)
    return rate


def check_channels(channels: int) -> int:
    if isinstance(channels, bool) or channels not in CHANNEL_COUNTS:
        raise InvalidValueError("channels", channels, ACCEPTED_CHANNELS)
    return channels


def check_seconds(seconds: float, name: str, *, zero: bool = True) -> float:
    """A `--start` (`zero`: 0 allowed) or `--duration`: finite, at most MAX_SECONDS (NaN,
    inf and 1e308 are refused)."""
    low = seconds >= 0 if zero else seconds > 0
    if isinstance(seconds, bool) or not (low and seconds <= MAX_SECONDS):
        raise InvalidValueError(name, seconds, ACCEPTED_START if zero else ACCEPTED_DURATION)
    return seconds
