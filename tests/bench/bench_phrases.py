"""Phrase lists at scale: time and peak memory to read 100k–1M phrases (.txt, .json, .jsonl),
alone (`read_phrase_lists`) and as `voiceprep warm LIST --dry-run -b espeak` (the whole plan:
keys, cache lookups, the listing). Each run is a fresh process started in the scratch folder
(so `PYTHONPATH` alone says which voiceprep runs: compare two trees back to back); peak RSS
is its ru_maxrss, CPU seconds its user + system time (what a loaded machine changes least).

    PYTHONPATH=$PWD python tests/bench/bench_phrases.py [--sizes 100000,500000,1000000]
        [--formats txt,json,jsonl] [--runs 3] [--no-warm | --no-read]

Prints one row per (size, format, what): median seconds, CPU seconds and peak MiB, and the
same for a reference in the same run: a process that reads the file and splits it into
lines (the least any reader must do). .jsonl lines carry an id each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

READ = """
import sys, time
from voiceprep.phrases import read_phrase_lists
started = time.perf_counter()
phrases = read_phrase_lists([sys.argv[1]])
print(len(phrases), time.perf_counter() - started)
"""
REFERENCE = """
import sys, time
started = time.perf_counter()
lines = open(sys.argv[1], encoding="utf-8").read().split("\\n")
print(len(lines), time.perf_counter() - started)
"""
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - started
if done.returncode:
    sys.exit(done.stderr.decode()[-2000:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
"""


def phrase(index: int) -> str:
    return f"Your reference number is {index}; please hold while we connect you."


def write_list(directory: Path, size: int, fmt: str) -> Path:
    path = directory / f"phrases-{size}.{fmt}"
    if path.exists():
        return path
    with path.open("w", encoding="utf-8") as out:
        if fmt == "txt":
            out.writelines(f"{phrase(i)}\n" for i in range(size))
        elif fmt == "jsonl":
            out.writelines(
                f"{json.dumps({'text': phrase(i), 'id': f'p{i}'})}\n" for i in range(size)
            )
        else:  # a JSON list, one string a line, as people write them
            out.write("[\n")
            out.write(",\n".join(f"  {json.dumps(phrase(i))}" for i in range(size)))
            out.write("\n]\n")
    return path


def measure(argv: list[str], cwd: Path) -> tuple[float, ...]:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=False, cwd=cwd
    )
    if result.returncode:
        raise SystemExit(result.stderr)
    return tuple(float(value) for value in result.stdout.split())


def medians(runs: list[tuple[float, ...]]) -> str:
    seconds, cpu, mib = (statistics.median(run[i] for run in runs) for i in range(3))
    return f"{seconds:.2f},{cpu:.2f},{mib:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,500000,1000000")
    parser.add_argument("--formats", default="txt,json")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-warm", action="store_true", help="only read_phrase_lists")
    parser.add_argument("--no-read", action="store_true", help="only warm --dry-run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-phrases-"))
    env_cache = str(work / "cache")
    os.environ["VOICEPREP_CACHE_DIR"] = env_cache
    print(
        "size,format,what,seconds,cpu_seconds,peak_mib,"
        "reference_seconds,reference_cpu_seconds,reference_peak_mib"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        for fmt in args.formats.split(","):
            path = str(write_list(work, size, fmt))
            whats = {} if args.no_read else {"read": [sys.executable, "-c", READ, path]}
            if not args.no_warm:
                whats["warm --dry-run"] = [
                    sys.executable, "-m", "voiceprep", "warm", path, "--dry-run", "-b", "espeak",
                ]  # fmt: skip
            for what, argv in whats.items():
                runs, refs = [], []
                for _ in range(args.runs):  # interleaved, so both see the same load
                    runs.append(measure(argv, work))
                    refs.append(measure([sys.executable, "-c", REFERENCE, path], work))
                print(f"{size},{fmt},{what},{medians(runs)},{medians(refs)}", flush=True)


if __name__ == "__main__":
    main()
