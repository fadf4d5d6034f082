"""Measuring audio: integrated loudness, loudness range, true and sample peak, silence.

- **Integrated loudness and loudness range** come from libavfilter's `ebur128` filter
  (ITU-R BS.1770-4 K-weighting and gating, EBU Tech 3342 LRA), run through PyAV: the
  same meter as `ffmpeg -af ebur128`. The filter publishes its running values as frame
  metadata; the last frame's are the whole signal's.
- **True peak** is computed here with numpy, because `ebur128=peak=true` upsamples the
  whole signal to 192 kHz and costs about ten times the loudness measurement itself
  (measured: 9 ms vs 1 ms per second of 24 kHz audio), too much to run on every prompt
  a `warm` synthesizes. BS.1770-4 Annex 2 defines true peak as the peak of the signal
  oversampled 4× with a low-pass interpolator; an interpolated point can only exceed the
  sample peak if one of the samples it is computed from is within `1/sum|h|` of that
  peak, so only the points around those samples are interpolated (a few percent of a
  speech signal). On speech the result matches ffmpeg's `ebur128` true peak (which resamples
  to 192 kHz) to 0.01 dB; on white noise, whose energy reaches Nyquist, it reads up to
  0.25 dB lower, which is why the limiter aims below the ceiling (see process.py).
- **Silence** at each end: the time before the first and after the last sample whose
  magnitude (in any channel) reaches the threshold (-50 dBFS by default).

Samples are float32 numpy arrays shaped (frames, channels), full scale ±1.0.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from voiceprep.audio_format import layout_of
from voiceprep.decoding import decode, probe

if TYPE_CHECKING:
    import numpy as np

# BS.1770's absolute gate: a signal whose every 400 ms block is below this is "silent".
ABSOLUTE_GATE = -70.0
BLOCK_SECONDS = 0.4  # the gating block: shorter clips are measured repeated to this length
DEFAULT_SILENCE_THRESHOLD = -50.0  # dBFS
_OVERSAMPLE = 4
_TAPS_PER_PHASE = 16
_KAISER_BETA = 6.0


@dataclass(frozen=True)
class Loudness:
    """What `measure` reports. Levels in LUFS / dBFS / dBTP; None when not defined
    (integrated loudness of a silent clip; peaks of digital silence)."""

    integrated: float | None  # LUFS
    range: float  # LU (EBU loudness range; 0 for clips too short to have one)
    true_peak: float | None  # dBTP
    sample_peak: float | None  # dBFS
    leading_silence: float  # seconds
    trailing_silence: float  # seconds
    duration: float  # seconds

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def db(value: float) -> float | None:
    """Linear amplitude → dB (None for 0)."""
    return 20.0 * math.log10(value) if value > 0 else None


def linear(decibels: float) -> float:
    return float(10.0 ** (decibels / 20.0))


def to_float(pcm: bytes, channels: int, sample_format: str = "s16") -> np.ndarray:
    """Interleaved s16le or f32le PCM → float32 (frames, channels)."""
    import numpy as np

    if sample_format == "f32":
        samples = np.frombuffer(pcm, dtype="<f4").astype(np.float32)
    else:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
    usable = len(samples) - len(samples) % channels
    return samples[:usable].reshape(-1, channels)


def to_pcm(samples: np.ndarray, sample_format: str = "s16") -> bytes:
    """float32 (frames, channels) → interleaved s16le (rounded, clipped) or f32le PCM."""
    import numpy as np

    if sample_format == "f32":
        return np.ascontiguousarray(samples, dtype="<f4").tobytes()
    scaled = np.rint(samples * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


# --- integrated loudness and range (libavfilter's ebur128) --------------------------


class LoudnessMeter:
    """BS.1770 integrated loudness and EBU LRA of audio pushed in chunks (any length)."""

    def __init__(self, rate: int, channels: int) -> None:
        import av.filter

        self.rate, self.channels = rate, channels
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(format="flt", sample_rate=rate, layout=layout_of(channels))
        meter = self._graph.add("ebur128", "metadata=1")
        self._sink = self._graph.add("abuffersink")
        source.link_to(meter)
        meter.link_to(self._sink)
        self._graph.configure()
        self._pts = 0
        # The filter emits 100 ms frames carrying its running values; a final partial
        # frame carries none, so the last two are kept.
        self._last: Any = None
        self._previous: Any = None

    def push(self, samples: np.ndarray) -> None:
        if len(samples):
            self._graph.push(_frame(samples, self.rate, self._pts))
            self._pts += len(samples)
            self._drain()

    def result(self) -> tuple[float | None, float]:
        """(integrated LUFS or None when below the absolute gate, LRA in LU)."""
        import av

        with contextlib.suppress(av.error.EOFError):
            self._graph.push(None)
        self._drain()
        metadata: dict[str, str] = {}
        for frame in (self._last, self._previous):
            if frame is not None and "lavfi.r128.I" in (metadata := dict(frame.metadata)):
                break
        integrated = float(metadata.get("lavfi.r128.I", ABSOLUTE_GATE))
        lra = float(metadata.get("lavfi.r128.LRA", 0.0))
        return (integrated if integrated > ABSOLUTE_GATE else None), lra

    def _drain(self) -> None:
        import av

        while True:
            try:
                frame = self._sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            self._previous, self._last = self._last, frame


def _frame(samples: np.ndarray, rate: int, pts: int) -> Any:
    import av
    import numpy as np

    channels = samples.shape[1]
    packed = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout_of(channels))
    frame.sample_rate = rate
    frame.pts = pts
    return frame


def integrated_loudness(samples: np.ndarray, rate: int) -> tuple[float | None, float]:
    """(integrated LUFS or None, LRA) of a whole clip. A clip shorter than one gating block
    (400 ms) has no BS.1770 loudness; it is measured repeated to that length, i.e. as the
    level it would have if it went on."""
    import numpy as np

    minimum = math.ceil(BLOCK_SECONDS * rate) + 1
    if 0 < len(samples) < minimum:
        samples = np.tile(samples, (math.ceil(minimum / len(samples)), 1))
    meter = LoudnessMeter(rate, samples.shape[1])
    meter.push(samples)
    return meter.result()


# --- peaks ---------------------------------------------------------------------------


@functools.cache
def _interpolator() -> tuple[np.ndarray, float]:
    """(coefficients, gain bound): the (taps, phases - 1) coefficients giving the 3 points
    between two samples (4×), a Kaiser-windowed sinc over 16 samples; and the largest sum
    of |coefficients| of a phase, the most a point can exceed its taps' peak by."""
    import numpy as np

    half = _TAPS_PER_PHASE // 2
    offsets = np.arange(-half + 1, half + 1)  # taps x[i-7] … x[i+8]
    columns = []
    for phase in range(1, _OVERSAMPLE):
        t = phase / _OVERSAMPLE - offsets  # distance from each tap to the point, |t| < 8
        window = np.i0(_KAISER_BETA * np.sqrt(1.0 - (t / half) ** 2)) / np.i0(_KAISER_BETA)
        columns.append(np.sinc(t) * window)
    taps = np.array(columns, dtype=np.float64).T
    return taps, float(np.abs(taps).sum(axis=0).max())


def true_peak(samples: np.ndarray, *, floor: float = 0.0) -> float:
    """Linear true peak (4× oversampled, BS.1770-4 Annex 2) over all channels.

    `floor`: a level already known to be reached (an earlier chunk's peak); only points
    that could exceed it are interpolated.
    """
    import numpy as np

    if not len(samples):
        return floor
    magnitudes = np.abs(samples)
    return _true_peak(samples, magnitudes, max(floor, float(magnitudes.max())))


def _true_peak(samples: np.ndarray, magnitudes: np.ndarray, peak: float) -> float:
    """`true_peak` given |samples| and the level reached so far (at least their peak)."""
    import numpy as np

    if peak == 0.0:
        return 0.0
    taps, gain_bound = _interpolator()
    half = _TAPS_PER_PHASE // 2
    frames = len(samples)
    best = peak
    for channel in range(samples.shape[1]):
        loud = np.flatnonzero(magnitudes[:, channel] >= peak / gain_bound)
        if not len(loud):
            continue
        # Interpolation points i + p/4 use x[i-7 … i+8]: every i within [l-8, l+7] of a
        # loud sample l (the loud samples are few, so their neighbourhoods are gathered,
        # not convolved). `wanted[i + 8]` marks point i.
        wanted = np.zeros(frames + 2 * half, dtype=bool)
        wanted[(loud[:, None] + np.arange(2 * half)).ravel()] = True
        centers = np.flatnonzero(wanted[half : frames + half])
        padded = np.zeros(frames + 2 * half, dtype=samples.dtype)
        padded[half : frames + half] = samples[:, channel]
        if len(centers) > frames // 5:
            # Dense (music, noise, tones): one correlation per phase over every point is
            # cheaper than gathering windows; speech has a few % of its points loud.
            wide = padded.astype(np.float64)
            for phase in taps.T:
                points = np.correlate(wide, phase, "valid")[1 : frames + 1]
                best = max(best, float(np.abs(points).max()))
            continue
        windows = np.lib.stride_tricks.sliding_window_view(padded, _TAPS_PER_PHASE)
        best = max(best, float(np.abs(windows[centers + 1] @ taps).max()))
    return best


# --- silence ---------------------------------------------------------------------------


def frame_level(samples: np.ndarray) -> np.ndarray:
    """Each frame's magnitude: the largest of its channels' (full scale 1.0)."""
    import numpy as np

    magnitudes = np.abs(samples)
    return magnitudes[:, 0] if samples.shape[1] == 1 else magnitudes.max(axis=1)


def loud_span(samples: np.ndarray, threshold_db: float) -> tuple[int, int] | None:
    """(first, last) index of the frames at or above the threshold; None if none is."""
    return _loud_span(frame_level(samples), threshold_db) if len(samples) else None


def _loud_span(level: np.ndarray, threshold_db: float) -> tuple[int, int] | None:
    import numpy as np

    loud = level >= linear(threshold_db)
    first = int(np.argmax(loud))  # argmax stops at the first True
    if not loud[first]:
        return None
    return first, len(level) - 1 - int(np.argmax(loud[::-1]))


def measure(
    samples: np.ndarray,
    rate: int,
    *,
    silence_threshold: float = DEFAULT_SILENCE_THRESHOLD,
    integrated: float | None = None,
) -> Loudness:
    """Everything `info --loudness` shows, for a clip in memory. `integrated`: its
    integrated loudness when already known (e.g. from the cache index; the range is then
    not measured and reads 0), else it is measured."""
    import numpy as np

    frames = len(samples)
    lra = 0.0
    if integrated is None and frames:
        integrated, lra = integrated_loudness(samples, rate)
    if not frames:
        return Loudness(integrated, lra, None, None, 0.0, 0.0, 0.0)
    magnitudes = np.abs(samples)  # one pass, shared by the peaks and the silence
    level = magnitudes[:, 0] if samples.shape[1] == 1 else magnitudes.max(axis=1)
    peak = float(level.max())
    span = _loud_span(level, silence_threshold)
    lead, trail = (span[0], frames - 1 - span[1]) if span else (frames, 0)
    return Loudness(
        integrated=integrated,
        range=lra,
        true_peak=db(_true_peak(samples, magnitudes, peak)),
        sample_peak=db(peak),
        leading_silence=lead / rate,
        trailing_silence=trail / rate,
        duration=frames / rate,
    )


class StreamMeasurer:
    """`measure` over audio that arrives in chunks (a long file), in constant memory."""

    def __init__(
        self,
        rate: int,
        channels: int,
        *,
        silence_threshold: float = DEFAULT_SILENCE_THRESHOLD,
        loudness_from_lead: int | None = None,
    ) -> None:
        """`loudness_from_lead`: measure loudness only from that many frames before the
        first sound on, i.e. over the audio a leading trim keeps (BS.1770's blocks are
        aligned to the start, so a trim moves them)."""
        self.rate, self.channels = rate, channels
        self.threshold = silence_threshold
        self._lead = loudness_from_lead
        self._waiting: list[np.ndarray] = []  # silence before the first sound (trimmed)
        self._meter = LoudnessMeter(rate, channels)
        self._true = 0.0
        self._sample = 0.0
        self.frames = 0
        self.first: int | None = None
        self.last: int | None = None
        self._head: np.ndarray | None = None  # kept while shorter than one gating block

    def push(self, samples: np.ndarray) -> None:
        import numpy as np

        if not len(samples):
            return
        span = loud_span(samples, self.threshold)
        metered = self._to_meter(samples, span)
        if len(metered):
            self._meter.push(metered)
            if self._head is None or len(self._head) < BLOCK_SECONDS * self.rate + 1:
                head = metered if self._head is None else np.concatenate([self._head, metered])
                self._head = head
        self._true = true_peak(samples, floor=self._true)
        self._sample = max(self._sample, float(np.abs(samples).max()))
        if span is not None:
            if self.first is None:
                self.first = self.frames + span[0]
            self.last = self.frames + span[1]
        self.frames += len(samples)

    def _to_meter(self, samples: np.ndarray, span: tuple[int, int] | None) -> np.ndarray:
        import numpy as np

        if self._lead is None or self.first is not None:
            return samples
        if span is None:  # still before the first sound: keep only what a trim keeps
            self._waiting.append(samples)
            tail = np.concatenate(self._waiting)
            self._waiting = [tail[len(tail) - min(self._lead, len(tail)) :]]
            return samples[:0]
        before = np.concatenate([*self._waiting, samples[: span[0]]])
        self._waiting = []
        return np.concatenate(
            [before[len(before) - min(self._lead, len(before)) :], samples[span[0] :]]
        )

    def result(self) -> Loudness:
        integrated, lra = self._meter.result()
        if self._head is not None and len(self._head) < BLOCK_SECONDS * self.rate + 1:
            integrated, lra = integrated_loudness(self._head, self.rate)
        frames = self.frames
        lead = self.first if self.first is not None else frames
        trail = frames - 1 - self.last if self.last is not None else 0
        return Loudness(
            integrated=integrated,
            range=lra,
            true_peak=db(self._true) if frames else None,
            sample_peak=db(self._sample) if frames else None,
            leading_silence=lead / self.rate,
            trailing_silence=trail / self.rate,
            duration=frames / self.rate,
        )


def measure_source(
    source: Any, *, silence_threshold: float = DEFAULT_SILENCE_THRESHOLD
) -> Loudness:
    """`measure` of a file (path or bytes), decoded at its own rate as it streams: constant
    memory. More than two channels are measured downmixed to stereo."""

    info = probe(source)
    channels = 1 if info.channels == 1 else 2
    measurer = StreamMeasurer(info.rate, channels, silence_threshold=silence_threshold)
    for chunk in decode(source, rate=info.rate, channels=channels, sample_format="f32"):
        measurer.push(to_float(chunk, channels, "f32"))
    return measurer.result()
