"""The plausibility gate: a synthesis that cannot be the text spoken is a failure.

Neural TTS sometimes returns silence, stops after a word or two, or babbles on long
after the text is done. Cached, such audio would be played to every caller for as long
as the cache lives. The gate refuses it; the fill path (`voiceprep.fill.Filler.synthesize`)
then synthesizes again (up to `retries` more times) and finally raises
`ImplausibleAudioError`, which nothing caches.

A synthesis of `n` characters (normalized text) is refused when

- it is **silent**: no 20 ms window reaches -55 dBFS RMS;
- it is **too short**: its voiced time (20 ms windows within 35 dB of the loudest one,
  and above -55 dBFS) is under `n × min_seconds_per_char`;
- it is **too long**: its duration exceeds `n × max_seconds_per_char + slack` seconds;
- it is **mostly silence**: longer than 1 s and voiced for less than `min_voiced`
  of its duration.

The bands are per writing system, where it matters: one Han, kana or Hangul character
carries a syllable or more, a Latin, Cyrillic, Arabic… letter a fraction of one.

| band (s per character) | strict min | strict max | relaxed min | relaxed max |
|---|---|---|---|---|
| alphabetic scripts | 0.015 | 0.25 (+1.5 s) | 0.01 | 0.5 (+3 s) |
| Han, kana, Hangul | 0.06 | 0.6 (+1.5 s) | 0.03 | 1.2 (+3 s) |

Typical speech is 0.06–0.09 s per letter (11–16 characters a second), so strict
leaves a factor of 3 either way. `mostly silence`: voiced under 25 % (strict) or 10 %
(relaxed). `relaxed` is for backends that speak very fast or slowly, or pad generously;
`off` disables every check but the one that is not optional: no audio at all
(`EmptyAudioError`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from voiceprep import defaults
from voiceprep.errors import UsageError
from voiceprep.keys import normalize_text
from voiceprep.loudness import to_float

GATE_MODES = defaults.GATE_MODES
_WINDOW_SECONDS = 0.02
_SILENCE_DB = -55.0
_DYNAMIC_DB = 35.0


@dataclass(frozen=True)
class _Band:
    min_per_char: float
    max_per_char: float
    slack: float
    min_voiced: float


_BANDS = {
    ("strict", False): _Band(0.015, 0.25, 1.5, 0.25),
    ("strict", True): _Band(0.06, 0.6, 1.5, 0.25),
    ("relaxed", False): _Band(0.01, 0.5, 3.0, 0.10),
    ("relaxed", True): _Band(0.03, 1.2, 3.0, 0.10),
}


def check_mode(mode: str) -> str:
    if mode not in GATE_MODES:
        raise UsageError(f"invalid gate {mode!r}: use {', '.join(GATE_MODES)}")
    return mode


@dataclass(frozen=True)
class Verdict:
    """What the gate saw; `reason` is None when the audio is plausible."""

    reason: str | None
    duration: float
    voiced: float


def _dense_script(text: str) -> bool:
    """True when most letters are Han, kana or Hangul (a syllable or more each)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    dense = sum(
        1
        for c in letters
        if unicodedata.name(c, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))
    )
    return dense * 2 > len(letters)


def judge(pcm: bytes, *, rate: int, channels: int, text: str, mode: str = "strict") -> Verdict:
    """The gate's verdict on s16le PCM synthesized for `text`."""
    import numpy as np

    check_mode(mode)
    samples = to_float(pcm, channels)
    duration = len(samples) / rate
    window = max(1, int(rate * _WINDOW_SECONDS))
    count = len(samples) // window
    if count == 0:
        level = np.zeros(1)
    else:
        blocks = samples[: count * window].reshape(count, window * channels)
        level = 10 * np.log10(np.mean(blocks.astype(np.float64) ** 2, axis=1) + 1e-20)
    loudest = float(level.max())
    voiced_windows = level >= max(_SILENCE_DB, loudest - _DYNAMIC_DB)
    voiced = float(voiced_windows.sum()) * window / rate if loudest >= _SILENCE_DB else 0.0
    if mode == "off":
        return Verdict(None, duration, voiced)
    if voiced == 0.0:
        return Verdict(
            f"silent ({duration:.2f} s of audio below {_SILENCE_DB:g} dBFS)", duration, 0.0
        )
    characters = len(normalize_text(text))
    band = _BANDS[(mode, _dense_script(text))]
    shortest = characters * band.min_per_char
    longest = characters * band.max_per_char + band.slack
    if voiced < shortest:
        return Verdict(
            f"too short for its text ({voiced:.2f} s of speech for {characters} characters; "
            f"at least {shortest:.2f} s expected)",
            duration,
            voiced,
        )
    if duration > longest:
        return Verdict(
            f"too long for its text ({duration:.2f} s for {characters} characters; "
            f"at most {longest:.2f} s expected)",
            duration,
            voiced,
        )
    if duration > 1.0 and voiced < band.min_voiced * duration:
        return Verdict(
            f"mostly silence ({voiced:.2f} s of speech in {duration:.2f} s)", duration, voiced
        )
    return Verdict(None, duration, voiced)
