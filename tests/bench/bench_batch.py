"""Batch decode: `voiceprep decode CLIPS... --out-dir` vs a shell loop running ffmpeg per file.

    python tests/bench/bench_batch.py [--clips 200] [--seconds 4] [--runs 5] [--jobs N]

Needs the `ffmpeg` program (Debian: `apt-get install ffmpeg`). Generates the clips once
with PyAV (stereo 44.1 kHz MP3, 128 kb/s; tests/bench/out/clips/), then times, in paired
rounds that alternate which side goes first, both turning every clip into 24 kHz mono s16
PCM. Prints the medians and the ratio (target: voiceprep ≥ 8× faster). Checks that both
produced the same number of bytes per clip, so the comparison is like for like.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _inputs import encode_stereo

OUT = Path(__file__).resolve().parent / "out" / "clips"
RATE = 44100


def make_clips(count: int, seconds: float) -> list[Path]:
    """`count` distinct stereo MP3 clips (a tone per clip, a little noise), made once."""
    directory = OUT / f"{count}x{seconds:g}s"
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"clip{i:04d}.mp3" for i in range(count)]
    rng = np.random.default_rng(7)
    for i, path in enumerate(paths):
        if path.exists():
            continue
        t = np.arange(int(seconds * RATE)) / RATE
        tone = 0.4 * np.sin(2 * np.pi * (200 + 5 * i) * t)
        signal = np.stack([tone, tone * 0.7]) + 0.01 * rng.standard_normal((2, t.size))
        blocks = (signal[:, start : start + 4608] for start in range(0, t.size, 4608))
        encode_stereo(
            path,
            blocks,
            fmt="mp3",
            codec="libmp3lame",
            rate=RATE,
            sample_format="fltp",
            bit_rate=128_000,
        )
    return paths


def voiceprep_command() -> list[str]:
    """The installed console script beside this Python, else `python -m voiceprep`."""
    script = Path(sys.executable).with_name("voiceprep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "voiceprep"]


def run_voiceprep(clips: list[Path], out_dir: Path, jobs: int | None) -> float:
    command = [*voiceprep_command(), "decode", *map(str, clips), "--out-dir", str(out_dir)]
    command += ["--force", "-r", "24000", "-c", "1"]
    if jobs:
        command += ["-j", str(jobs)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


SHELL_LOOP = """
for f in "$@"; do
  b=$(basename "$f" .mp3)
  ffmpeg -nostdin -hide_banner -loglevel error -y -i "$f" -ac 1 -ar 24000 -f s16le "$OUT/$b.pcm"
done
"""


def run_ffmpeg_loop(clips: list[Path], out_dir: Path) -> float:
    command = ["bash", "-c", SHELL_LOOP, "loop", *map(str, clips)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={"OUT": str(out_dir), "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - start


def same_sizes(a: Path, b: Path) -> bool:
    sizes_a = {p.name: p.stat().st_size for p in a.iterdir()}
    sizes_b = {p.name: p.stat().st_size for p in b.iterdir()}
    return sizes_a == sizes_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=None, help="voiceprep -j (default: its own)")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("needs the ffmpeg program: apt-get install ffmpeg")

    clips = make_clips(args.clips, args.seconds)
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out_ours, out_theirs = Path(tmp, "voiceprep"), Path(tmp, "ffmpeg")
        out_theirs.mkdir()
        run_voiceprep(clips[:4], out_ours, args.jobs)  # warm the page cache, both sides
        run_ffmpeg_loop(clips[:4], out_theirs)
        for round_ in range(args.runs):
            if round_ % 2 == 0:
                ours.append(run_voiceprep(clips, out_ours, args.jobs))
                theirs.append(run_ffmpeg_loop(clips, out_theirs))
            else:
                theirs.append(run_ffmpeg_loop(clips, out_theirs))
                ours.append(run_voiceprep(clips, out_ours, args.jobs))
            print(f"round {round_ + 1}: voiceprep {ours[-1]:.2f} s, ffmpeg loop {theirs[-1]:.2f} s")
        sizes_match = same_sizes(out_ours, out_theirs)

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"{args.clips} clips of {args.seconds:g} s (MP3 stereo 44.1 kHz → 24 kHz mono s16)")
    print(f"voiceprep decode --out-dir: median {ours_median:.2f} s over {args.runs} runs")
    print(f"ffmpeg shell loop:          median {theirs_median:.2f} s over {args.runs} runs")
    paired = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
    print(f"speed-up: {theirs_median / ours_median:.1f}× (target ≥ 8×)")
    print(f"median of the per-round speed-ups: {paired:.1f}×")
    print(f"output sizes identical to ffmpeg's: {sizes_match}")


if __name__ == "__main__":
    main()
