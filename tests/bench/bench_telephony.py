"""G.711 output speed and memory against the ffmpeg CLI (not a test: run it by hand).

    python tests/bench/bench_telephony.py [--minutes 30] [--runs 3]

Generates (once, cached in tests/bench/out/) a stereo MP3 of that length with PyAV, then
paired runs of `ffmpeg -v error -i IN -ar 8000 -ac 1 -f mulaw OUT.ulaw`, of the
library in a fresh process (`voiceprep.decode(IN, rate=8000, sample_format="ulaw")`
into a file, interpreter start-up and `import av` included, as bench_decode.py times
it), of the command a user types, `voiceprep decode IN -o OUT.ulaw --force` (the CLI's
own start-up, Typer and the settings, included too), and of that command writing 8 kHz
s16 (`OUT.sln`) for the memory comparison. Prints the median wall time of each, the
ratio to ffmpeg, each one's peak RSS, and whether the μ-law outputs have ffmpeg's length.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inputs import OUT, make_input  # noqa: E402
from bench_decode import timed  # noqa: E402

LIBRARY = """
import sys
from voiceprep import decode
with open(sys.argv[2], "wb") as out:
    for chunk in decode(sys.argv[1], rate=8000, sample_format="ulaw"):
        out.write(chunk)
"""


def commands(src: Path) -> dict[str, list[str]]:
    voiceprep = [sys.executable, "-m", "voiceprep", "decode", str(src), "--force", "-o"]
    return {
        "ffmpeg ulaw": ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", "8000", "-ac", "1"]
        + ["-f", "mulaw", str(OUT / "ffmpeg.ulaw")],
        "library ulaw": [sys.executable, "-c", LIBRARY, str(src), str(OUT / "library.ulaw")],
        "cli ulaw": [*voiceprep, str(OUT / "voiceprep.ulaw")],
        "cli s16": [*voiceprep, str(OUT / "voiceprep.sln")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss", action="store_true", help="also peak RSS on a 3-minute file")
    args = parser.parse_args()
    src = make_input("mp3", args.minutes)
    runs = commands(src)
    times: dict[str, list[float]] = {name: [] for name in runs}
    rss: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.runs):  # paired: each run times every command once, in turn
        for name, argv in runs.items():
            seconds, peak, _ = timed(argv)
            times[name].append(seconds)
            rss[name].append(peak)
    reference = statistics.median(times["ffmpeg ulaw"])
    print(f"{args.minutes:g}-minute stereo MP3 → 8 kHz mono, median of {args.runs} paired runs")
    print(f"{'command':<15} {'seconds':>8} {'ratio':>6} {'peak MiB':>9}")
    for name in runs:
        median = statistics.median(times[name])
        print(f"{name:<15} {median:8.3f} {median / reference:6.2f} {max(rss[name]):9.1f}")
    theirs = (OUT / "ffmpeg.ulaw").stat().st_size
    same = all((OUT / n).stat().st_size == theirs for n in ("voiceprep.ulaw", "library.ulaw"))
    print(f"same length as ffmpeg's: {same}")
    for name in ("voiceprep.ulaw", "library.ulaw", "ffmpeg.ulaw", "voiceprep.sln"):
        (OUT / name).unlink()
    if args.rss:  # flat memory: the same peak for a 3-minute file as for the long one
        short = timed(commands(make_input("mp3", 3.0))["cli ulaw"])[1]
        print(
            f"cli ulaw peak RSS: 3-minute {short:.1f} MiB, {args.minutes:g}-minute "
            f"{max(rss['cli ulaw']):.1f} MiB"
        )
        (OUT / "voiceprep.ulaw").unlink()


if __name__ == "__main__":
    main()
