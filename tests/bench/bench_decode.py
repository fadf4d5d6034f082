"""Decode speed and memory against the ffmpeg CLI (not a test: run it by hand).

    apt-get install ffmpeg            # the reference: Debian's ffmpeg program
    python tests/bench/bench_decode.py [--minutes 30] [--runs 5] [--formats mp3,aac,opus,flac]
                                       [--robust]

For each format it generates (once, cached in tests/bench/out/) a stereo file of that
length with PyAV, then runs paired runs: `ffmpeg -v error -i IN -ar 24000 -ac 1 -f s16le
OUT` and a fresh Python process decoding the same file to 24 kHz mono s16 with
`voiceprep.decode` into a file (interpreter start-up and `import av` included). It
prints the median wall time of each, their ratio, the peak RSS of each process
(os.wait4's ru_maxrss, per child), and checks that the outputs have the same length.
`--robust` also times the packet-by-packet path (used for pipes, stdin and bytes).
`--rss` adds a 3-minute file per format to compare peak RSS (flat memory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inputs import FORMATS, OUT, make_input  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_decode_worker.py"


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}")
    return elapsed, usage.ru_maxrss / 1024  # Linux: KiB


def ffmpeg_argv(src: Path, dst: Path) -> list[str]:
    return ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", "24000", "-ac", "1"] + [
        "-f",
        "s16le",
        str(dst),
    ]


def voiceprep_argv(src: Path, dst: Path, engine: str) -> list[str]:
    return [sys.executable, str(WORKER), str(src), str(dst), engine]


def bench_file(src: Path, runs: int, robust: bool) -> dict[str, tuple[float, float, int]]:
    """name → (median seconds, max peak RSS MiB, output bytes)."""
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
            dst.unlink()
    return {
        name: (statistics.median(times[name]), max(rss[name]), sizes[name]) for name in commands
    }


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
    header += f" {'ffmpeg MiB':>11} {'voiceprep MiB':>14} {'same length':>12}"
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
