"""Real test audio made with PyAV's encoders, plus helpers to measure what comes out."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# codec → (container format, encoder sample format)
CODECS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "fltp"),
    "aac": ("mp4", "fltp"),
    "opus": ("ogg", "flt"),
    "libvorbis": ("ogg", "fltp"),
    "flac": ("flac", "s16"),
    "pcm_s16le": ("wav", "s16"),
    "pcm_u8": ("wav", "u8"),
    "pcm_s24le": ("wav", "s32"),
    "pcm_f32le": ("wav", "flt"),
    "pcm_mulaw": ("wav", "s16"),
    "pcm_alaw": ("wav", "s16"),
}
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def sine(freq: float, seconds: float, rate: int, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """Float32 array (channels, samples); channel k carries freq * (k + 1) so maps are testable."""
    t = np.arange(int(round(seconds * rate))) / rate
    rows = [amp * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def write_audio(
    path: Path,
    signal: np.ndarray,
    *,
    rate: int,
    codec: str = "pcm_s16le",
    container_format: str | None = None,
    sample_format: str | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode a (channels, samples) float32 signal with PyAV into `path`."""
    fmt, enc_fmt = CODECS.get(codec, (container_format or "wav", sample_format or "s16"))
    fmt = container_format or fmt
    enc_fmt = sample_format or enc_fmt
    channels = signal.shape[0]
    layout = LAYOUTS[channels]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        stream.format = enc_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        chunk = 1024
        pts = 0
        for start in range(0, signal.shape[1], chunk):
            block = signal[:, start : start + chunk]
            frame = av.AudioFrame.from_ndarray(
                _to_format(block, "flt"), format="flt", layout=layout
            )
            frame.rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += block.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _to_format(block: np.ndarray, fmt: str) -> np.ndarray:
    # Packed float: interleave channels into one row.
    return np.ascontiguousarray(block.T.reshape(1, -1), dtype=np.float32)


def write_sine(
    path: Path,
    *,
    freq: float = 440.0,
    seconds: float = 1.0,
    rate: int = 44100,
    channels: int = 1,
    codec: str = "pcm_s16le",
    **kwargs: object,
) -> Path:
    return write_audio(path, sine(freq, seconds, rate, channels), rate=rate, codec=codec, **kwargs)  # type: ignore[arg-type]


def pcm_to_array(pcm: bytes, channels: int, sample_format: str = "s16") -> np.ndarray:
    """Interleaved PCM → float array (channels, samples) in [-1, 1]."""
    if sample_format == "s16":
        data = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    else:
        data = np.frombuffer(pcm, dtype="<f4").astype(np.float64)
    return data.reshape(-1, channels).T


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency (Hz) of the strongest FFT bin of a 1-D signal."""
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))
