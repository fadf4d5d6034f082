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
`--pieces` also times `voiceprep decode -j 2` (one file in two pieces across processes)
and `-j 1`, both the command, against the ffmpeg CLI; run it under `taskset -c 0` and
`taskset -c 0,1` to see it scale with cores.
`--ci` is the guard `.ci/run` runs: 3-minute files, 3 paired runs, and exit status 1 when
for some format both median ratios to ffmpeg measured in the same run, of wall time and
of CPU time (user + system), pass 1.3. (A regression raises both; the load of a busy
machine swings the wall ratio alone, by ±30 % at a load average of 12 on 2 cores.)
"""

from __future__ import annotations

import argparse
import filecmp
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _inputs import FORMATS, OUT, make_input  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_decode_worker.py"
MEASURE = Path(__file__).resolve().parent / "_measure.py"


def timed(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds of one run of `argv` (_measure.py)."""
    result = subprocess.run(
        [sys.executable, "-S", str(MEASURE), *argv], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stderr}")
    seconds, kib, cpu = result.stdout.split()
    return float(seconds), int(kib) / 1024, float(cpu)


def ffmpeg_argv(src: Path, dst: Path) -> list[str]:
    return ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", "24000", "-ac", "1"] + [
        "-f",
        "s16le",
        str(dst),
    ]


def voiceprep_argv(src: Path, dst: Path, engine: str) -> list[str]:
    if engine.startswith("-j"):  # the command itself, one file in N pieces (or -j 1)
        command = [sys.executable, "-m", "voiceprep", "decode", str(src), "-o", str(dst)]
        return command + ["--force", "-r", "24000", "-c", "1", "-j", engine[2:]]
    return [sys.executable, str(WORKER), str(src), str(dst), engine]


# The guard's limit: a median ratio to ffmpeg above this fails CI.
CI_LIMIT = 1.3


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


def bench_file(
    src: Path, runs: int, robust: bool, pieces: bool = False
) -> dict[str, tuple[float, float, int, float]]:
    """name → (median seconds, max peak RSS MiB, output bytes, median CPU seconds);
    "diff" → (LSB, 0, 0, 0); "same" → (-j 2 byte for byte -j 1, 0, 0, 0)."""
    commands = {
        "ffmpeg": lambda dst: ffmpeg_argv(src, dst),
        "voiceprep": lambda dst: voiceprep_argv(src, dst, "fast"),
    }
    if robust:
        commands["robust"] = lambda dst: voiceprep_argv(src, dst, "robust")
    if pieces:
        commands["j1"] = lambda dst: voiceprep_argv(src, dst, "-j1")
        commands["j2"] = lambda dst: voiceprep_argv(src, dst, "-j2")
    times: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    sizes: dict[str, int] = {}
    for _ in range(runs):  # paired: each run times every command once, in turn
        for name, make_argv in commands.items():
            dst = OUT / f"{src.stem}.{name}.pcm"
            seconds, peak, cpu = timed(make_argv(dst))
            times[name].append(seconds)
            rss[name].append(peak)
            cpus[name].append(cpu)
            sizes[name] = dst.stat().st_size
    outputs = {name: OUT / f"{src.stem}.{name}.pcm" for name in commands}
    diff = max_difference(outputs["ffmpeg"], outputs["voiceprep"])
    same = pieces and filecmp.cmp(outputs["j1"], outputs["j2"], shallow=False)
    for path in outputs.values():
        path.unlink()
    result = {
        name: (
            statistics.median(times[name]),
            max(rss[name]),
            sizes[name],
            # CPU seconds (user + system, all processes): what a busy machine slows least
            statistics.median(cpus[name]),
        )
        for name in commands
    }
    result["diff"] = (float(diff), 0.0, 0, 0.0)
    result["same"] = (float(same), 0.0, 0, 0.0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--robust", action="store_true")
    parser.add_argument("--rss", action="store_true", help="also a 3-minute file per format")
    parser.add_argument("--pieces", action="store_true", help="also decode -j 1 and -j 2")
    parser.add_argument("--ci", action="store_true", help="the CI guard (see above)")
    args = parser.parse_args()
    if args.ci:
        args.minutes, args.runs = 3.0, 3
    worst = 0.0

    print(f"{args.minutes:g}-minute stereo files → 24 kHz mono s16, median of {args.runs} runs")
    header = f"{'format':<6} {'ffmpeg s':>9} {'voiceprep s':>12} {'ratio':>6}"
    header += f" {'ffmpeg MiB':>11} {'voiceprep MiB':>14} {'same length':>12} {'max diff':>9}"
    if args.robust:
        header += f" {'robust s':>9} {'ratio':>6}"
    if args.pieces:
        header += f" {'-j 1 s':>7} {'ratio':>6} {'-j 2 s':>7} {'ratio':>6} {'same':>5}"
        header += f" {'CPU s: ffmpeg':>13} {'library':>7} {'-j 1':>5} {'-j 2':>5} {'-j MiB':>7}"
    print(header)
    for name in args.formats.split(","):
        src = make_input(name, args.minutes)
        result = bench_file(src, args.runs, args.robust, args.pieces)
        ff_s, ff_rss, ff_size, ff_cpu = result["ffmpeg"]
        vp_s, vp_rss, vp_size, vp_cpu = result["voiceprep"]
        line = f"{name:<6} {ff_s:9.3f} {vp_s:12.3f} {vp_s / ff_s:6.2f}"
        line += f" {ff_rss:11.1f} {vp_rss:14.1f} {str(ff_size == vp_size):>12}"
        line += f" {int(result['diff'][0]):>5} LSB"
        if args.robust:
            rb_s = result["robust"][0]
            line += f" {rb_s:9.3f} {rb_s / ff_s:6.2f}"
        if args.pieces:
            j1_s, j2_s = result["j1"][0], result["j2"][0]
            same = bool(result["same"][0])  # -j 2's output byte for byte -j 1's
            line += f" {j1_s:7.3f} {j1_s / ff_s:6.2f} {j2_s:7.3f} {j2_s / ff_s:6.2f} {same!s:>5}"
            j1_cpu, j2_cpu = result["j1"][3], result["j2"][3]
            j_rss = max(result["j1"][1], result["j2"][1])  # the largest single process
            line += f" {ff_cpu:13.2f} {vp_cpu:7.2f} {j1_cpu:5.2f} {j2_cpu:5.2f} {j_rss:7.1f}"
        if args.ci:  # the CPU ratio too: on a loaded machine the wall ratio is noise
            line += f"  cpu ratio {vp_cpu / ff_cpu:.2f}"
        print(line, flush=True)
        worst = max(worst, min(vp_s / ff_s, vp_cpu / ff_cpu))
    if args.rss:
        print("\npeak RSS of the voiceprep process, 3-minute vs the long file (MiB)")
        for name in args.formats.split(","):
            short = bench_file(make_input(name, 3.0), 1, False)["voiceprep"][1]
            long = bench_file(make_input(name, args.minutes), 1, False)["voiceprep"][1]
            print(f"{name:<6} {short:7.1f} {long:7.1f}  {100 * (long / short - 1):+5.1f} %")
    if args.ci:
        verdict = "ok" if worst <= CI_LIMIT else "FAILED"
        print(
            f"decode guard: worst ratio to ffmpeg {worst:.2f} (the lower of wall and CPU;"
            f" limit {CI_LIMIT}): {verdict}"
        )
        if worst > CI_LIMIT:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
