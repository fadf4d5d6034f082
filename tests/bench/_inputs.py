"""Benchmark inputs, generated with PyAV and cached under tests/bench/out/.

Long files are encoded chunk by chunk, so generating 30 minutes never holds it in memory.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

OUT = Path(__file__).resolve().parent / "out"

# name → (suffix, container format, encoder, encoder sample format, input rate, bit rate)
FORMATS: dict[str, tuple[str, str, str, str, int, int | None]] = {
    "mp3": (".mp3", "mp3", "libmp3lame", "fltp", 44100, 128_000),
    "aac": (".m4a", "mp4", "aac", "fltp", 44100, 128_000),
    # libopus only encodes at 8/12/16/24/48 kHz: an Opus file is always 48 kHz inside.
    "opus": (".opus", "ogg", "libopus", "flt", 48000, 96_000),
    "flac": (".flac", "flac", "flac", "s16", 44100, None),
}


def _music_like(start: int, count: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(2, count) float32: drifting tones plus a little noise, different in L and R."""
    t = (start + np.arange(count)) / rate
    left = 0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(0.1 * t)) * t)
    left += 0.15 * np.sin(2 * np.pi * 1320 * t)
    right = 0.3 * np.sin(2 * np.pi * (330 + 30 * np.sin(0.07 * t)) * t)
    right += 0.1 * np.sin(2 * np.pi * 2500 * t)
    noise = 0.02 * rng.standard_normal((2, count))
    return (np.stack([left, right]) + noise).astype(np.float32)


def make_input(name: str, minutes: float) -> Path:
    """Encode (once) a stereo file of `minutes` in format `name`; return its path."""
    suffix, fmt, codec, enc_fmt, rate, bit_rate = FORMATS[name]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}_{minutes:g}min{suffix}"
    if path.exists():
        return path
    tmp = path.with_name(path.name + ".part")
    rng = np.random.default_rng(1)
    total = int(minutes * 60 * rate)
    chunk = rate  # one second at a time
    with av.open(str(tmp), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        stream.format = enc_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        for start in range(0, total, chunk):
            block = _music_like(start, min(chunk, total - start), rate, rng)
            packed = np.ascontiguousarray(block.T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(packed, format="flt", layout="stereo")
            frame.rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    tmp.rename(path)
    return path


if __name__ == "__main__":
    import sys

    minutes = [float(m) for m in sys.argv[1:]] or [3.0, 30.0]
    for m in minutes:
        for fmt_name in FORMATS:
            print(make_input(fmt_name, m), flush=True)
