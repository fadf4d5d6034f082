"""Benchmark inputs, generated with PyAV and cached under tests/bench/out/.

Long files are encoded chunk by chunk, so generating 30 minutes never holds it in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    rng = np.random.default_rng(1)
    total = int(minutes * 60 * rate)
    blocks = (
        _music_like(start, min(rate, total - start), rate, rng)  # one second at a time
        for start in range(0, total, rate)
    )
    return encode_stereo(
        path, blocks, fmt=fmt, codec=codec, rate=rate, sample_format=enc_fmt, bit_rate=bit_rate
    )


def encode_stereo(
    path: Path,
    blocks: Iterable[np.ndarray],
    *,
    fmt: str,
    codec: str,
    rate: int,
    sample_format: str,
    bit_rate: int | None,
) -> Path:
    """Encode (2, n) float32 blocks into `path`, through a `.part` file renamed at the end."""
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        stream.format = sample_format
        if bit_rate:
            stream.bit_rate = bit_rate
        pts = 0
        for block in blocks:
            packed = np.ascontiguousarray(block.T.reshape(1, -1), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(packed, format="flt", layout="stereo")
            frame.rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += block.shape[1]
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
