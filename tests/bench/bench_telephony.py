"""G.711 output speed and memory against the ffmpeg CLI (not a test: run it by hand).

    python tests/bench/bench_telephony.py [--minutes 30] [--runs 3]

Generates (once, cached in tests/bench/out/) a stereo MP3 of that length with PyAV, then
paired runs of `ffmpeg -v error -i IN -ar 8000 -ac 1 -f mulaw OUT.ulaw` and of the
command a user types, `voiceprep decode IN -o OUT.ulaw --force` (interpreter start-up
included), plus the same command writing 8 kHz s16 (`OUT.sln`) for the memory
comparison. Prints the median wall time of each, the ratio to ffmpeg, each one's peak
RSS, and whether voiceprep's μ-law bytes equal ffmpeg's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inputs import OUT, make_input  # noqa: E402
from bench_decode import timed  # noqa: E402


def commands(src: Path) -> dict[str, list[str]]:
    voiceprep = [sys.executable, "-m", "voiceprep", "decode", str(src), "--force", "-o"]
    return {
        "ffmpeg ulaw": ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", "8000", "-ac", "1"]
        + ["-f", "mulaw", str(OUT / "ffmpeg.ulaw")],
        "voiceprep ulaw": [*voiceprep, str(OUT / "voiceprep.ulaw")],
        "voiceprep s16": [*voiceprep, str(OUT / "voiceprep.sln")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    src = make_input("mp3", args.minutes)
    runs = commands(src)
    times: dict[str, list[float]] = {name: [] for name in runs}
    rss: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.runs):  # paired: each run times every command once, in turn
        for name, argv in runs.items():
            seconds, peak = timed(argv)
            times[name].append(seconds)
            rss[name].append(peak)
    reference = statistics.median(times["ffmpeg ulaw"])
    print(f"{args.minutes:g}-minute stereo MP3 → 8 kHz mono, median of {args.runs} paired runs")
    print(f"{'command':<15} {'seconds':>8} {'ratio':>6} {'peak MiB':>9}")
    for name in runs:
        median = statistics.median(times[name])
        print(f"{name:<15} {median:8.3f} {median / reference:6.2f} {max(rss[name]):9.1f}")
    ours, theirs = OUT / "voiceprep.ulaw", OUT / "ffmpeg.ulaw"
    same = ours.stat().st_size == theirs.stat().st_size
    print(f"same length as ffmpeg's: {same}")
    for path in (ours, theirs, OUT / "voiceprep.sln"):
        path.unlink()


if __name__ == "__main__":
    main()
