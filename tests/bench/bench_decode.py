"""Decode speed and memory against the ffmpeg CLI (not a test: run it by hand).

    apt-get install ffmpeg            # the reference: Debian's ffmpeg program
    python tests/bench/bench_decode.py [--minutes 30] [--runs 5] [--formats mp3,aac,opus,flac]
                                       [--robust]

For each format it generates (once, cached in tests/bench/out/) a stereo file of that
length with PyAV, then runs paired runs: `ffmpeg -v error -i IN -ar 24000 -ac 1 -f s16le
OUT` and a fresh Python process decoding the same file to 24 kHz mono s16 with
`voiceprep.decode` into a file (interpreter start-up and `import av` included). It
prints the median wall time of each, their ratio, the peak RSS of each process
(RUSAGE_CHILDREN's ru_maxrss, read by the small _measure.py launcher), whether the
outputs have the same length and their largest sample difference (Debian's ffmpeg 5.1
vs PyAV's FFmpeg 8.1 resamplers).
`--robust` also times the packet-by-packet path (used for pipes, stdin and bytes).
`--rss` adds a 3-minute file per format to compare peak RSS (flat memory).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inputs import FORMATS, OUT, make_input  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_decode_worker.py"
MEASURE = Path(__file__).resolve().parent / "_measure.py"


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of `argv`, measured by _measure.py."""
    result = subprocess.run(
        [sys.executable, "-S", str(MEASURE), *argv], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stderr}")
    seconds, kib = result.stdout.split()
    return float(seconds), int(kib) / 1024


def ffmpeg_argv(src: Path, dst: Path) -> list[str]:
    return ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", "24000", "-ac", "1"] + [
        "-f",
        "s16le",
        str(dst),
    ]


def voiceprep_argv(src: Path, dst: Path, engine: str) -> list[str]:
    return [sys.executable, str(WORKER), str(src), str(dst), engine]


def max_difference(first: Path, second: Path) -> int:
    """The largest sample difference (s16 LSB) between two PCM files, read in pieces."""
    import numpy as np

    a = np.memmap(first, dtype="<i2", mode="r")
    b = np.memmap(second, dtype="<i2", mode="r")
    size = min(len(a), len(b))
    step = 1 << 22
    worst = 0
    for start in range(0, size, step):
        piece = np.abs(a[start : start + step].astype(np.int32) - b[start : start + step])
        worst = max(worst, int(piece.max()))
    return worst


def bench_file(src: Path, runs: int, robust: bool) -> dict[str, tuple[float, float, int]]:
    """name → (median seconds, max peak RSS MiB, output bytes); "diff" → (LSB, 0, 0)."""
    commands = {
        "ffmpeg": lambda dst: ffmpeg_argv(src, dst),
        "voiceprep": lambda dst: voiceprep_argv(src, dst, "fast"),
    }
    if robust:
        commands["robust"] = lambda dst: voiceprep_argv(src, dst, "robust")
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, list[float]] = {name: [] for name in commands}
    sizes: dict[str, int] = {}
    for _ in range(runs):  # paired: each run times every command once, in turn
        for name, make_argv in commands.items():
            dst = OUT / f"{src.stem}.{name}.pcm"
            seconds, peak = timed(make_argv(dst))
            times[name].append(seconds)
            rss[name].append(peak)
            sizes[name] = dst.stat().st_size
    outputs = {name: OUT / f"{src.stem}.{name}.pcm" for name in commands}
    diff = max_difference(outputs["ffmpeg"], outputs["voiceprep"])
    for path in outputs.values():
        path.unlink()
    result = {
        name: (statistics.median(times[name]), max(rss[name]), sizes[name]) for name in commands
    }
    result["diff"] = (float(diff), 0.0, 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--robust", action="store_true")
    parser.add_argument("--rss", action="store_true", help="also a 3-minute file per format")
    args = parser.parse_args()

    print(f"{args.minutes:g}-minute stereo files → 24 kHz mono s16, median of {args.runs} runs")
    header = f"{'format':<6} {'ffmpeg s':>9} {'voiceprep s':>12} {'ratio':>6}"
    header += f" {'ffmpeg MiB':>11} {'voiceprep MiB':>14} {'same length':>12} {'max diff':>9}"
    if args.robust:
        header += f" {'robust s':>9} {'ratio':>6}"
    print(header)
    for name in args.formats.split(","):
        src = make_input(name, args.minutes)
        result = bench_file(src, args.runs, args.robust)
        ff_s, ff_rss, ff_size = result["ffmpeg"]
        vp_s, vp_rss, vp_size = result["voiceprep"]
        line = f"{name:<6} {ff_s:9.3f} {vp_s:12.3f} {vp_s / ff_s:6.2f}"
        line += f" {ff_rss:11.1f} {vp_rss:14.1f} {str(ff_size == vp_size):>12}"
        line += f" {int(result['diff'][0]):>5} LSB"
        if args.robust:
            rb_s = result["robust"][0]
            line += f" {rb_s:9.3f} {rb_s / ff_s:6.2f}"
        print(line, flush=True)
    if args.rss:
        print("\npeak RSS of the voiceprep process, 3-minute vs the long file (MiB)")
        for name in args.formats.split(","):
            short = bench_file(make_input(name, 3.0), 1, False)["voiceprep"][1]
            long = bench_file(make_input(name, args.minutes), 1, False)["voiceprep"][1]
            print(f"{name:<6} {short:7.1f} {long:7.1f}  {100 * (long / short - 1):+5.1f} %")


if __name__ == "__main__":
    main()
