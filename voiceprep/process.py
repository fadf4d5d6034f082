"""The processing chain: trim silence, loudness to a target under a true-peak ceiling,
fades, pads — applied after decoding or synthesis, before output or caching.

Each step is optional (`ProcessSettings`, all off by default) and they run in this order:

0. **high-pass** (`highpass` Hz): a second-order Butterworth high-pass (libavfilter's
   `highpass`), to band-limit for a phone line. `telephony` turns it on at 100 Hz with
   the loudness target of phone prompts (voiceprep.telephony).
1. **trim** (`trim_silence`): drop what lies before the first and after the last sample
   reaching `silence_threshold` (dBFS, any channel), keeping `trim_pad` ms of it at each
   end. Only the ends are cut, so nothing inside speech (a pause, a soft consonant
   above the threshold) is ever removed.
2. **loudness** (`loudness` LUFS, `true_peak` dBTP): measure the integrated loudness
   (BS.1770, libavfilter's `ebur128`), apply the linear gain that reaches the target;
   when that gain would put the true peak above the ceiling, libavfilter's `alimiter`
   (look-ahead, 5 ms attack, 50 ms release, auto-level off, latency compensated) holds
   the peaks down, and the gain is corrected (a secant search, usually 2–3 rounds on a
   prompt) until the *limited* audio measures the target within 0.2 LU. The limiter is
   a sample-peak limiter and the true-peak reading of white noise can be 0.25 dB low
   (see loudness.py), so the chain aims `TRUE_PEAK_MARGIN` dB under the ceiling and
   checks the result. This is why `loudnorm` is not used: on clips under 3 s it falls
   back to its dynamic mode (its measured LRA is 0) and it always outputs 192 kHz.
3. **fades** (`fade_in`, `fade_out` ms): linear ramps, monotone, at the very ends.
4. **pads** (`pad_start`, `pad_end` ms): digital silence added at each end.

In memory (`process_pcm`, prompts) the chain is exact. Streaming (`process_stream`,
`decode`) holds at most `MEMORY_SECONDS` of audio: a longer input is measured in a first
pass and processed in a second one when it can be read twice (a file), or, from a pipe,
in a single pass whose gain is measured on the first `MEMORY_SECONDS` (documented in
docs/processing.md). Trailing silence is held back until more sound or the end arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from voiceprep import defaults
from voiceprep.errors import UsageError
from voiceprep.filters import HighPass, Limiter
from voiceprep.keys import BackendIdentity
from voiceprep.loudness import (
    db,
    integrated_loudness,
    linear,
    loud_span,
    to_float,
    to_pcm,
    true_peak,
)
from voiceprep.telephony import TELEPHONY_PROCESS

if TYPE_CHECKING:
    import numpy as np

PROCESS_VERSION = 1  # part of the key: bump when the chain's output changes
KEY_ENTRY = "process"  # the reserved BackendIdentity.options entry
TRUE_PEAK_MARGIN = 0.3  # dB under the ceiling the chain aims at
TRUE_PEAK_ERROR = 0.25  # dB our true-peak reading can be low (white noise; speech: 0.01)
LOUDNESS_TOLERANCE = 0.2  # LU: the in-memory chain stops when this close to the target
MEMORY_SECONDS = 60.0  # longest input processed in memory by process_stream
LIMITER_OVERSHOOT = 0.2  # dB a sample-peak limiter's output reads above its limit
_MAX_ROUNDS = 8
MAX_GAIN = 40.0  # dB: a near-silent clip is not blown up into noise

_RANGES: dict[str, tuple[float, float]] = {
    "highpass": (20.0, 1000.0),
    "loudness": (-60.0, -5.0),
    "true_peak": (-20.0, 0.0),
    "silence_threshold": (-100.0, -10.0),
    "trim_pad": (0.0, 10000.0),
    "fade_in": (0.0, 60000.0),
    "fade_out": (0.0, 60000.0),
    "pad_start": (0.0, 60000.0),
    "pad_end": (0.0, 60000.0),
}
_UNITS = {"loudness": "LUFS", "true_peak": "dBTP", "silence_threshold": "dBFS", "highpass": "Hz"}


@dataclass(frozen=True)
class ProcessSettings:
    """What the chain does; the defaults do nothing (`is_empty`).

    Levels in LUFS/dBTP/dBFS, durations in milliseconds.
    """

    loudness: float | None = None
    true_peak: float = defaults.TRUE_PEAK
    trim_silence: bool = False
    silence_threshold: float = defaults.SILENCE_THRESHOLD
    trim_pad: float = defaults.TRIM_PAD
    fade_in: float = defaults.FADE
    fade_out: float = defaults.FADE
    pad_start: float = defaults.PAD
    pad_end: float = defaults.PAD
    highpass: float | None = None
    telephony: bool = False  # the preset: set, its values replace the defaults

    def __post_init__(self) -> None:
        if self.telephony:  # the preset replaces what is left at its default
            initial = {f.name: f.default for f in fields(self)}
            for name, value in TELEPHONY_PROCESS.items():
                if getattr(self, name) == initial[name]:
                    object.__setattr__(self, name, value)
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"invalid {_flag(name)} {value!r}: must be a number")
            if not low <= value <= high:  # also rejects NaN
                unit = _UNITS.get(name, "ms")
                raise UsageError(
                    f"invalid {_flag(name)} {value:g}: must be {low:g} to {high:g} {unit}"
                )
            object.__setattr__(self, name, float(value))

    @property
    def is_empty(self) -> bool:
        return not self.key_options()

    def key_options(self) -> dict[str, Any]:
        """The settings that change the sound (the active steps only): what the cache key
        holds under `BackendIdentity.options["process"]`. Empty when nothing is active."""
        steps: dict[str, Any] = {}
        if self.highpass is not None:
            steps["highpass"] = self.highpass
        if self.trim_silence:
            steps["trim"] = {"threshold": self.silence_threshold, "pad": self.trim_pad}
        if self.loudness is not None:
            steps["loudness"] = {"target": self.loudness, "true_peak": self.true_peak}
        for name in ("fade_in", "fade_out", "pad_start", "pad_end"):
            if getattr(self, name) > 0:
                steps[name] = getattr(self, name)
        if steps:
            steps["v"] = PROCESS_VERSION
        return steps

    def identity(self, identity: BackendIdentity) -> BackendIdentity:
        """`identity` with the reserved `"process"` option added when the chain does
        something; unchanged (same key as before processing existed) when it does not."""
        steps = self.key_options()
        if not steps:
            return identity
        return replace(identity, options={**identity.options, KEY_ENTRY: steps})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def flags(self) -> list[str]:
        """The command-line options that select these settings (defaults left out)."""
        words: list[str] = []
        for name, value in self.as_dict().items():
            if value == getattr(NO_PROCESSING, name):
                continue
            if isinstance(value, bool):
                words.append(_flag(name))
            else:
                words += [_flag(name), f"{value:g}"]
        return words


NO_PROCESSING = ProcessSettings()
FIELDS = tuple(f.name for f in fields(ProcessSettings))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_of(steps: Mapping[str, Any]) -> ProcessSettings:
    """The settings whose `key_options()` are `steps` (an entry's `options["process"]`).
    Raises UsageError, KeyError or TypeError on steps no voiceprep wrote."""
    trim, level = steps.get("trim"), steps.get("loudness")
    lengths = ("fade_in", "fade_out", "pad_start", "pad_end")
    values: dict[str, Any] = {name: steps[name] for name in lengths if name in steps}
    if "highpass" in steps:
        values["highpass"] = steps["highpass"]
    if trim is not None:
        values.update(trim_silence=True, silence_threshold=trim["threshold"], trim_pad=trim["pad"])
    if level is not None:
        values.update(loudness=level["target"], true_peak=level["true_peak"])
    return ProcessSettings(**values)


def settings_from(values: Mapping[str, Any], *, origin: str = "") -> ProcessSettings:
    """ProcessSettings from a mapping (the config file's `[process]` table, or the
    command-line values with None meaning "not given"). Unknown keys are refused."""
    known = set(FIELDS)
    chosen: dict[str, Any] = {}
    for raw, value in values.items():
        name = raw.replace("-", "_")
        if name not in known:
            where = f"{origin}: " if origin else ""
            raise UsageError(f"{where}unknown processing setting {raw!r}")
        if value is not None:
            chosen[name] = value
    for flag in ("trim_silence", "telephony"):
        if flag in chosen and not isinstance(chosen[flag], bool):
            raise UsageError(f"{origin + ': ' if origin else ''}{flag} must be true or false")
    try:
        return ProcessSettings(**chosen)
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}" if origin else str(exc)) from None


# --- in memory ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Processed:
    """The chain's output: PCM in the input's layout, its integrated loudness and the
    input's (LUFS; None when silent, or when not measured: no loudness step), and how far
    the input's audio moved (seconds: a pad at the start adds, a trim takes away), which
    moves word timings with it."""

    pcm: bytes
    loudness: float | None
    source_loudness: float | None = None
    offset: float = 0.0


def produce(pcm: bytes, rate: int, channels: int, settings: ProcessSettings) -> Processed:
    """What a synthesized prompt becomes before it is cached: the chain's output with both
    loudness figures always measured (they go into the cache index)."""

    if settings.is_empty:
        level = integrated_loudness(to_float(pcm, channels), rate)[0]
        return Processed(pcm, level, level)
    result = process_pcm(pcm, rate=rate, channels=channels, settings=settings)
    source, level = result.source_loudness, result.loudness
    if settings.loudness is None:
        source = integrated_loudness(to_float(pcm, channels), rate)[0]
    if level is None or settings.fade_in or settings.fade_out:
        level = integrated_loudness(to_float(result.pcm, channels), rate)[0]
    return Processed(result.pcm, level, source, result.offset)


def process_pcm(
    pcm: bytes,
    *,
    rate: int,
    channels: int,
    settings: ProcessSettings,
    sample_format: str = "s16",
) -> Processed:
    """Run the chain over PCM held in memory (a prompt). Empty settings: the input as is."""

    if settings.is_empty or not pcm:
        return Processed(pcm, None)
    samples = to_float(pcm, channels, sample_format)
    output, loudness, source, moved = _chain(samples, rate, settings)
    return Processed(to_pcm(output, sample_format), loudness, source, moved / rate)


def process_samples(
    samples: np.ndarray, rate: int, settings: ProcessSettings
) -> tuple[np.ndarray, float | None]:
    """The chain over float32 (frames, channels): (output, its integrated LUFS or None)."""
    output, loudness, _, _ = _chain(samples, rate, settings)
    return output, loudness


def _chain(
    samples: np.ndarray, rate: int, settings: ProcessSettings
) -> tuple[np.ndarray, float | None, float | None, int]:
    """(output, its loudness, the input's, frames the audio moved by)."""
    if settings.highpass is not None:
        samples = HighPass(rate, samples.shape[1], settings.highpass).whole(samples)
    moved = frames_in(settings.pad_start, rate)
    if settings.trim_silence:
        start, end = trim_span(samples, rate, settings.silence_threshold, settings.trim_pad)
        samples, moved = samples[start:end], moved - start
    loudness = source = None
    if settings.loudness is not None:
        samples, loudness, source = _normalize(samples, rate, settings.loudness, settings.true_peak)
    samples = fade(samples, rate, settings.fade_in, settings.fade_out)
    return pad(samples, rate, settings.pad_start, settings.pad_end), loudness, source, moved


def trim(samples: np.ndarray, rate: int, threshold: float, pad_ms: float) -> np.ndarray:
    """Cut the silence before the first and after the last sample reaching `threshold`,
    keeping `pad_ms` of it. Audio with no such sample is returned as is."""
    start, end = trim_span(samples, rate, threshold, pad_ms)
    return samples[start:end]


def trim_span(samples: np.ndarray, rate: int, threshold: float, pad_ms: float) -> tuple[int, int]:
    """The frames `trim` keeps: [start, end)."""
    span = loud_span(samples, threshold)
    if span is None:
        return 0, len(samples)
    keep = frames_in(pad_ms, rate)
    return max(0, span[0] - keep), span[1] + 1 + keep


def normalize(
    samples: np.ndarray, rate: int, target: float, ceiling: float
) -> tuple[np.ndarray, float | None]:
    """Gain to `target` LUFS with the true peak held under `ceiling` dBTP (see the module
    docstring): (output, its measured integrated loudness). Silence is left as is."""
    output, level, _ = _normalize(samples, rate, target, ceiling)
    return output, level


def _normalize(
    samples: np.ndarray, rate: int, target: float, ceiling: float
) -> tuple[np.ndarray, float | None, float | None]:

    measured, _ = integrated_loudness(samples, rate)
    peak = db(true_peak(samples))
    if measured is None or peak is None:
        return samples, measured, measured
    aim = ceiling - TRUE_PEAK_MARGIN
    gain = min(target - measured, MAX_GAIN)
    if peak + gain <= aim:
        return samples * linear(gain), measured + gain, measured
    limit = aim - LIMITER_OVERSHOOT
    # Limiting costs loudness: start above the plain gain, by half of what is limited.
    gain = min(gain + 0.5 * (peak + gain - aim), MAX_GAIN)
    # The largest gain that needs no limiting is a known point of level(gain): with it the
    # first correction is already a secant step.
    tried: list[tuple[float, float]] = [(aim - peak, measured + aim - peak)]
    output, level = samples, measured
    for _ in range(_MAX_ROUNDS):
        output = limit_peaks(samples * linear(gain), rate, limit)
        level = integrated_loudness(output, rate)[0] or measured
        if abs(target - level) <= LOUDNESS_TOLERANCE or gain >= MAX_GAIN:
            # On target: what did the limiter let through (intersample peaks)?
            reached = db(true_peak(output)) or aim
            if reached + TRUE_PEAK_ERROR <= ceiling:
                break
            limit -= reached - aim + 0.05  # limit lower, same gain
            continue
        tried.append((gain, level))
        (g0, l0), (g1, l1) = tried[-2], tried[-1]
        slope = min(1.0, max(0.2, (l1 - l0) / (g1 - g0))) if g1 != g0 else 1.0
        gain = min(gain + (target - level) / slope, MAX_GAIN)
    return output, level, measured


def fade(samples: np.ndarray, rate: int, fade_in_ms: float, fade_out_ms: float) -> np.ndarray:
    """Linear fade-in over the first and fade-out over the last milliseconds."""
    import numpy as np

    count = len(samples)
    into, out = min(frames_in(fade_in_ms, rate), count), min(frames_in(fade_out_ms, rate), count)
    if not into and not out:
        return samples
    samples = samples.copy()
    if into:
        samples[:into] *= np.linspace(0.0, 1.0, into, endpoint=False, dtype=np.float32)[:, None]
    if out:
        ramp = np.linspace(1.0, 0.0, out + 1, dtype=np.float32)[1:]
        samples[count - out :] *= ramp[:, None]
    return samples


def pad(samples: np.ndarray, rate: int, start_ms: float, end_ms: float) -> np.ndarray:
    """Digital silence before and after."""
    import numpy as np

    before, after = frames_in(start_ms, rate), frames_in(end_ms, rate)
    if not before and not after:
        return samples
    return np.pad(samples, ((before, after), (0, 0)))


def frames_in(milliseconds: float, rate: int) -> int:
    return int(round(milliseconds * rate / 1000.0))


# --- the limiter (libavfilter's alimiter) ---------------------------------------------


def limit_peaks(samples: np.ndarray, rate: int, limit_db: float) -> np.ndarray:
    """The whole clip through a `Limiter` (same length out)."""
    return Limiter(rate, samples.shape[1], limit_db).whole(samples)
