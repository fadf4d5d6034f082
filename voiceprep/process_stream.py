"""The processing chain over a stream (decode's): in memory up to MEMORY_SECONDS, else two
passes over a file (measure, then process) or one over a pipe (gain planned from its head).
The chain's steps and settings are `voiceprep.process`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from voiceprep.filters import HighPass, Limiter
from voiceprep.loudness import (
    StreamMeasurer,
    db,
    integrated_loudness,
    linear,
    to_float,
    to_pcm,
    true_peak,
)

if TYPE_CHECKING:
    import numpy as np

from voiceprep.process import (
    LIMITER_OVERSHOOT,
    MAX_GAIN,
    MEMORY_SECONDS,
    TRUE_PEAK_MARGIN,
    ProcessSettings,
    fade,
    frames_in,
    process_samples,
    trim,
)


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

    if settings.is_empty:
        yield from open_chunks()
        return
    if settings.highpass is not None:  # filtered as it streams, in every pass
        open_chunks = _high_passed(open_chunks, rate, channels, settings.highpass, sample_format)
        settings = replace(settings, highpass=None)
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


def _high_passed(
    open_chunks: Callable[[], Iterator[bytes]],
    rate: int,
    channels: int,
    hz: float,
    sample_format: str,
) -> Callable[[], Iterator[bytes]]:
    """`open_chunks` whose chunks go through a `HighPass` (a new one for each opening)."""

    def opened() -> Iterator[bytes]:
        stream = HighPass(rate, channels, hz)
        for chunk in open_chunks():
            yield to_pcm(stream.push(to_float(chunk, channels, sample_format)), sample_format)
        yield to_pcm(stream.flush(), sample_format)

    return opened


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
    gain = min(settings.loudness - integrated, MAX_GAIN)
    return gain, (None if peak + gain <= aim else aim - LIMITER_OVERSHOOT)


def _measure_pass(
    head: list[np.ndarray],
    rest: Iterator[bytes],
    rate: int,
    channels: int,
    settings: ProcessSettings,
    sample_format: str,
) -> _Plan:

    lead = frames_in(settings.trim_pad, rate) if settings.trim_silence else None
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
        keep = frames_in(settings.trim_pad, rate)
        first = measurer.first
        end = min(measurer.frames, measurer.last + 1 + keep)
    return _Plan(gain, limit, first, end)


def _plan_from_head(
    head: list[np.ndarray], rate: int, channels: int, settings: ProcessSettings
) -> _Plan:
    import numpy as np

    if settings.loudness is None:
        return _Plan(0.0, None)
    whole = np.concatenate(head)
    if settings.trim_silence:  # measured as it will be kept (see StreamMeasurer)
        whole = trim(whole, rate, settings.silence_threshold, settings.trim_pad)
    integrated, _ = integrated_loudness(whole, rate)
    gain, limit = _gain_plan(integrated, db(true_peak(whole)), settings)
    # Later peaks are unknown in a single pass: keep the limiter on whenever there is gain.
    if limit is None and gain > 0:
        limit = settings.true_peak - TRUE_PEAK_MARGIN - LIMITER_OVERSHOOT
    return _Plan(gain, limit)


class _StreamChain:
    """trim → gain → limiter → fades → pads over chunks, holding back only what the next
    chunks may still change: trailing silence (until sound or the end) and the fade-out."""

    def __init__(self, rate: int, channels: int, settings: ProcessSettings, plan: _Plan) -> None:
        import numpy as np

        self.rate, self.channels, self.settings, self.plan = rate, channels, settings, plan
        self.gain = linear(plan.gain_db)
        self.limiter = Limiter(rate, channels, plan.limit_db) if plan.limit_db is not None else None
        self.threshold = linear(settings.silence_threshold)
        self.keep = frames_in(settings.trim_pad, rate)
        self.position = 0  # input frames seen
        self.started = not settings.trim_silence
        self.lead: Any = np.zeros((0, channels), dtype=np.float32)  # pad before the start
        self.pending: list[Any] = []  # after the last loud frame (+ pad): maybe trailing
        self.pending_frames = 0
        self.fade_in_left = frames_in(settings.fade_in, rate)
        self.fade_in_total = self.fade_in_left
        self.fade_out = frames_in(settings.fade_out, rate)
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
            before = frames_in(self.settings.pad_start, self.rate)
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
            after = frames_in(self.settings.pad_end, self.rate)
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
