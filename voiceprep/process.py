"""The processing chain: trim silence, loudness to a target under a true-peak ceiling,
fades, pads — applied after decoding or synthesis, before output or caching.

Each step is optional (`ProcessSettings`, all off by default) and they run in this order:

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

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from voiceprep.errors import UsageError
from voiceprep.keys import BackendIdentity

if TYPE_CHECKING:
    import numpy as np

PROCESS_VERSION = 1  # part of the key: bump when the chain's output changes
KEY_ENTRY = "process"  # the reserved BackendIdentity.options entry
TRUE_PEAK_MARGIN = 0.3  # dB under the ceiling the chain aims at
TRUE_PEAK_ERROR = 0.25  # dB our true-peak reading can be low (white noise; speech: 0.01)
LOUDNESS_TOLERANCE = 0.2  # LU: the in-memory chain stops when this close to the target
MEMORY_SECONDS = 60.0  # longest input processed in memory by process_stream
_LIMITER_OVERSHOOT = 0.2  # dB a sample-peak limiter's output reads above its limit
_MAX_ROUNDS = 8
_MAX_GAIN = 40.0  # dB: a near-silent clip is not blown up into noise

_RANGES: dict[str, tuple[float, float]] = {
    "loudness": (-60.0, -5.0),
    "true_peak": (-20.0, 0.0),
    "silence_threshold": (-100.0, -10.0),
    "trim_pad": (0.0, 10000.0),
    "fade_in": (0.0, 60000.0),
    "fade_out": (0.0, 60000.0),
    "pad_start": (0.0, 60000.0),
    "pad_end": (0.0, 60000.0),
}
_UNITS = {"loudness": "LUFS", "true_peak": "dBTP", "silence_threshold": "dBFS"}


@dataclass(frozen=True)
class ProcessSettings:
    """What the chain does; the defaults do nothing (`is_empty`).

    Levels in LUFS/dBTP/dBFS, durations in milliseconds.
    """

    loudness: float | None = None
    true_peak: float = -1.5
    trim_silence: bool = False
    silence_threshold: float = -50.0
    trim_pad: float = 50.0
    fade_in: float = 0.0
    fade_out: float = 0.0
    pad_start: float = 0.0
    pad_end: float = 0.0

    def __post_init__(self) -> None:
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
            words += ["--trim-silence"] if name == "trim_silence" else [_flag(name), f"{value:g}"]
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
    if "trim_silence" in chosen and not isinstance(chosen["trim_silence"], bool):
        raise UsageError(f"{origin + ': ' if origin else ''}trim_silence must be true or false")
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
    from voiceprep.loudness import integrated_loudness, to_float

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
    from voiceprep.loudness import to_float, to_pcm

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
    moved = _frames(settings.pad_start, rate)
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
    from voiceprep.loudness import loud_span

    span = loud_span(samples, threshold)
    if span is None:
        return 0, len(samples)
    keep = _frames(pad_ms, rate)
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
    from voiceprep.loudness import db, integrated_loudness, linear, true_peak

    measured, _ = integrated_loudness(samples, rate)
    peak = db(true_peak(samples))
    if measured is None or peak is None:
        return samples, measured, measured
    aim = ceiling - TRUE_PEAK_MARGIN
    gain = min(target - measured, _MAX_GAIN)
    if peak + gain <= aim:
        return samples * linear(gain), measured + gain, measured
    limit = aim - _LIMITER_OVERSHOOT
    # Limiting costs loudness: start above the plain gain, by half of what is limited.
    gain = min(gain + 0.5 * (peak + gain - aim), _MAX_GAIN)
    # The largest gain that needs no limiting is a known point of level(gain): with it the
    # first correction is already a secant step.
    tried: list[tuple[float, float]] = [(aim - peak, measured + aim - peak)]
    output, level = samples, measured
    for _ in range(_MAX_ROUNDS):
        output = limit_peaks(samples * linear(gain), rate, limit)
        level = integrated_loudness(output, rate)[0] or measured
        if abs(target - level) <= LOUDNESS_TOLERANCE or gain >= _MAX_GAIN:
            # On target: what did the limiter let through (intersample peaks)?
            reached = db(true_peak(output)) or aim
            if reached + TRUE_PEAK_ERROR <= ceiling:
                break
            limit -= reached - aim + 0.05  # limit lower, same gain
            continue
        tried.append((gain, level))
        (g0, l0), (g1, l1) = tried[-2], tried[-1]
        slope = min(1.0, max(0.2, (l1 - l0) / (g1 - g0))) if g1 != g0 else 1.0
        gain = min(gain + (target - level) / slope, _MAX_GAIN)
    return output, level, measured


def fade(samples: np.ndarray, rate: int, fade_in_ms: float, fade_out_ms: float) -> np.ndarray:
    """Linear fade-in over the first and fade-out over the last milliseconds."""
    import numpy as np

    count = len(samples)
    into, out = min(_frames(fade_in_ms, rate), count), min(_frames(fade_out_ms, rate), count)
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

    before, after = _frames(start_ms, rate), _frames(end_ms, rate)
    if not before and not after:
        return samples
    return np.pad(samples, ((before, after), (0, 0)))


def _frames(milliseconds: float, rate: int) -> int:
    return int(round(milliseconds * rate / 1000.0))


# --- the limiter (libavfilter's alimiter) ---------------------------------------------


class Limiter:
    """A streaming look-ahead peak limiter: libavfilter's `alimiter` with its delay
    compensated, so output frame k is input frame k."""

    def __init__(self, rate: int, channels: int, limit_db: float) -> None:
        import av.filter

        from voiceprep.loudness import linear

        self.rate = rate
        self._graph = av.filter.Graph()
        layout = "mono" if channels == 1 else "stereo"
        source = self._graph.add_abuffer(format="flt", sample_rate=rate, layout=layout)
        level = max(0.0625, min(1.0, linear(limit_db)))
        limiter = self._graph.add(
            "alimiter", f"limit={level:.6f}:attack=5:release=50:level=0:latency=1"
        )
        convert = self._graph.add("aformat", f"sample_fmts=flt:channel_layouts={layout}")
        self._sink = self._graph.add("abuffersink")
        source.link_to(limiter)
        limiter.link_to(convert)
        convert.link_to(self._sink)
        self._graph.configure()
        self._channels = channels
        self._pts = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        from voiceprep.loudness import _frame

        if len(samples):
            self._graph.push(_frame(samples, self.rate, self._pts))
            self._pts += len(samples)
        return self._drain()

    def flush(self) -> np.ndarray:
        import av

        with contextlib.suppress(av.error.EOFError):
            self._graph.push(None)
        return self._drain()

    def _drain(self) -> np.ndarray:
        import av
        import numpy as np

        out = []
        while True:
            try:
                frame: Any = self._sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            out.append(frame.to_ndarray().reshape(-1, self._channels))
        if not out:
            return np.zeros((0, self._channels), dtype=np.float32)
        return np.concatenate(out)


def limit_peaks(samples: np.ndarray, rate: int, limit_db: float) -> np.ndarray:
    """The whole clip through a `Limiter` (same length out)."""
    import numpy as np

    limiter = Limiter(rate, samples.shape[1], limit_db)
    head = limiter.push(samples)
    return np.concatenate([head, limiter.flush()])[: len(samples)]


# --- streaming (decode) -----------------------------------------------------------------


def process_stream(
    open_chunks: Callable[[], Iterator[bytes]],
    *,
    rate: int,
    channels: int,
    settings: ProcessSettings,
    sample_format: str = "s16",
    replayable: bool = True,
) -> Iterator[bytes]:
    """Yield the chain's output over PCM chunks (as `decode` yields them), in bounded memory.

    `open_chunks()` starts the input; it is called a second time only when the input is
    longer than `MEMORY_SECONDS` and `replayable` (a file): the first pass measures, the
    second processes. Not replayable (a pipe): single pass, the gain measured on the first
    `MEMORY_SECONDS`.
    """
    from voiceprep.loudness import to_float, to_pcm

    if settings.is_empty:
        yield from open_chunks()
        return
    limit = int(MEMORY_SECONDS * rate)
    head: list[np.ndarray] = []
    held = 0
    chunks = open_chunks()
    for chunk in chunks:
        samples = to_float(chunk, channels, sample_format)
        head.append(samples)
        held += len(samples)
        if held > limit:
            break
    else:  # short: exact, in memory
        import numpy as np

        if not held:
            return
        whole = np.concatenate(head)
        output, _ = process_samples(whole, rate, settings)
        for start in range(0, len(output), rate):
            yield to_pcm(output[start : start + rate], sample_format)
        return
    if replayable:
        plan = _measure_pass(head, chunks, rate, channels, settings, sample_format)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        source: Iterator[np.ndarray] = (to_float(c, channels, sample_format) for c in open_chunks())
    else:
        plan = _plan_from_head(head, rate, channels, settings)
        source = _chain_iter(head, (to_float(c, channels, sample_format) for c in chunks))
    stream = _StreamChain(rate, channels, settings, plan)
    for samples in source:
        for out in stream.push(samples):
            yield to_pcm(out, sample_format)
    for out in stream.finish():
        yield to_pcm(out, sample_format)


def _chain_iter(head: list[np.ndarray], rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield from head
    yield from rest


@dataclass(frozen=True)
class _Plan:
    gain_db: float
    limit_db: float | None  # None: no limiter needed
    first: int | None = None  # first loud frame (known after a measuring pass)
    end: int | None = None  # end of the kept audio, exclusive (known after a measuring pass)


def _gain_plan(
    integrated: float | None, peak: float | None, settings: ProcessSettings
) -> tuple[float, float | None]:
    if settings.loudness is None or integrated is None or peak is None:
        return 0.0, None
    aim = settings.true_peak - TRUE_PEAK_MARGIN
    gain = min(settings.loudness - integrated, _MAX_GAIN)
    return gain, (None if peak + gain <= aim else aim - _LIMITER_OVERSHOOT)


def _measure_pass(
    head: list[np.ndarray],
    rest: Iterator[bytes],
    rate: int,
    channels: int,
    settings: ProcessSettings,
    sample_format: str,
) -> _Plan:
    from voiceprep.loudness import StreamMeasurer, to_float

    lead = _frames(settings.trim_pad, rate) if settings.trim_silence else None
    measurer = StreamMeasurer(
        rate, channels, silence_threshold=settings.silence_threshold, loudness_from_lead=lead
    )
    for samples in head:
        measurer.push(samples)
    for chunk in rest:
        measurer.push(to_float(chunk, channels, sample_format))
    result = measurer.result()
    gain, limit = _gain_plan(result.integrated, result.true_peak, settings)
    first = end = None
    if settings.trim_silence and measurer.first is not None and measurer.last is not None:
        keep = _frames(settings.trim_pad, rate)
        first = measurer.first
        end = min(measurer.frames, measurer.last + 1 + keep)
    return _Plan(gain, limit, first, end)


def _plan_from_head(
    head: list[np.ndarray], rate: int, channels: int, settings: ProcessSettings
) -> _Plan:
    import numpy as np

    from voiceprep.loudness import db, integrated_loudness, true_peak

    if settings.loudness is None:
        return _Plan(0.0, None)
    whole = np.concatenate(head)
    if settings.trim_silence:  # measured as it will be kept (see StreamMeasurer)
        whole = trim(whole, rate, settings.silence_threshold, settings.trim_pad)
    integrated, _ = integrated_loudness(whole, rate)
    gain, limit = _gain_plan(integrated, db(true_peak(whole)), settings)
    # Later peaks are unknown in a single pass: keep the limiter on whenever there is gain.
    if limit is None and gain > 0:
        limit = settings.true_peak - TRUE_PEAK_MARGIN - _LIMITER_OVERSHOOT
    return _Plan(gain, limit)


class _StreamChain:
    """trim → gain → limiter → fades → pads over chunks, holding back only what the next
    chunks may still change: trailing silence (until sound or the end) and the fade-out."""

    def __init__(self, rate: int, channels: int, settings: ProcessSettings, plan: _Plan) -> None:
        import numpy as np

        from voiceprep.loudness import linear

        self.rate, self.channels, self.settings, self.plan = rate, channels, settings, plan
        self.gain = linear(plan.gain_db)
        self.limiter = Limiter(rate, channels, plan.limit_db) if plan.limit_db is not None else None
        self.threshold = linear(settings.silence_threshold)
        self.keep = _frames(settings.trim_pad, rate)
        self.position = 0  # input frames seen
        self.started = not settings.trim_silence
        self.lead: Any = np.zeros((0, channels), dtype=np.float32)  # pad before the start
        self.pending: list[Any] = []  # after the last loud frame (+ pad): maybe trailing
        self.pending_frames = 0
        self.fade_in_left = _frames(settings.fade_in, rate)
        self.fade_in_total = self.fade_in_left
        self.fade_out = _frames(settings.fade_out, rate)
        self.tail: Any = np.zeros((0, channels), dtype=np.float32)  # held for the fade-out
        self.sent_pad = False

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        start = self.position
        self.position += len(samples)
        kept = self._trim(samples, start)
        return self._emit(kept, final=False)

    def finish(self) -> list[np.ndarray]:
        import numpy as np

        out = []
        if self.started and self.pending:  # trailing silence: keep only the pad
            kept = np.concatenate(self.pending)[: self._trailing_room()]
            out += self._emit([kept], final=False)
        out += self._emit([], final=True)
        return out

    def _trailing_room(self) -> int:
        return self.keep

    # trim: which input frames are kept, in order
    def _trim(self, samples: np.ndarray, start: int) -> list[np.ndarray]:
        import numpy as np

        if not self.settings.trim_silence:
            return [samples]
        plan = self.plan
        if plan.end is not None and plan.first is not None:  # measured: cut at known frames
            lo = max(plan.first - self.keep, start)
            hi = min(plan.end, start + len(samples))
            if not self.started and start + len(samples) > plan.first - self.keep:
                self.started = True
            return [samples[lo - start : hi - start]] if hi > lo else []
        level = np.abs(samples).max(axis=1) if len(samples) else np.zeros(0)
        loud = np.flatnonzero(level >= self.threshold)
        kept: list[np.ndarray] = []
        if not self.started:
            if not len(loud):
                self.lead = np.concatenate([self.lead, samples])[-self.keep or len(samples) :]
                if not self.keep:
                    self.lead = self.lead[:0]
                return []
            self.started = True
            first = int(loud[0])
            lead = np.concatenate([self.lead, samples[:first]])
            kept.append(lead[len(lead) - min(self.keep, len(lead)) :])
            samples, loud = samples[first:], loud - first
        if not len(loud):
            self.pending.append(samples)
            self.pending_frames += len(samples)
            return kept
        last = int(loud[-1])
        kept += self.pending
        self.pending, self.pending_frames = [], 0
        kept.append(samples[: last + 1])
        if last + 1 < len(samples):
            self.pending.append(samples[last + 1 :])
            self.pending_frames = len(samples) - last - 1
        return kept

    # gain → limiter → fades → pads
    def _emit(self, pieces: list[np.ndarray], *, final: bool) -> list[np.ndarray]:
        import numpy as np

        out: list[np.ndarray] = []
        if not self.sent_pad:
            self.sent_pad = True
            before = _frames(self.settings.pad_start, self.rate)
            if before:
                out.append(np.zeros((before, self.channels), dtype=np.float32))
        pieces = [p for p in pieces if len(p)]
        block = np.concatenate(pieces) if pieces else np.zeros((0, self.channels), np.float32)
        block = block * self.gain if self.gain != 1.0 else block
        if self.limiter is not None:
            block = self.limiter.push(block)
            if final:
                block = np.concatenate([block, self.limiter.flush()])
        block = self._fade_in(block)
        if self.fade_out:
            block = np.concatenate([self.tail, block])
            if final:
                self.tail = block[:0]
                block = fade(block, self.rate, 0.0, self.settings.fade_out)
            else:
                cut = max(0, len(block) - self.fade_out)
                block, self.tail = block[:cut], block[cut:]
        if len(block):
            out.append(block.astype(np.float32, copy=False))
        if final:
            after = _frames(self.settings.pad_end, self.rate)
            if after:
                out.append(np.zeros((after, self.channels), dtype=np.float32))
        return out

    def _fade_in(self, block: np.ndarray) -> np.ndarray:
        import numpy as np

        if not self.fade_in_left or not len(block):
            return block
        done = self.fade_in_total - self.fade_in_left
        count = min(self.fade_in_left, len(block))
        ramp = (np.arange(done, done + count, dtype=np.float32) / self.fade_in_total)[:, None]
        block = block.copy()
        block[:count] *= ramp
        self.fade_in_left -= count
        return block
