"""Concurrent warms sharing work through leases (issue 12 item 6).

    python tests/bench/bench_leases.py [--warms 4] [--phrases 40] [--latency 0.15] [--runs 3]

Starts `--warms` real `voiceprep warm` processes at once over the same `--phrases`
phrases against the fake OpenAI server (each request takes `--latency` s), and counts
the requests the server received:

- shared: all warms on ONE cache directory (leases let them share the work);
- reference, measured in the same run: each warm on its own directory (no sharing
  possible: every warm synthesizes every phrase).

Reports, medians over `--runs`: requests / distinct phrases (target ≤ 1.1), and the wall
time of the whole shared run against the reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakeproviders import OPENAI_KEY, fake_openai  # noqa: E402


def run(warms: int, phrases: int, latency: float, shared: bool) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="voiceprep-bench-leases-") as tmp:
        listing = Path(tmp) / "phrases.txt"
        listing.write_text("".join(f"Shared phrase number {i}.\n" for i in range(phrases)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPREP_")}
        env["OPENAI_API_KEY"] = OPENAI_KEY
        with fake_openai(latency=latency) as fake:
            start = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "voiceprep", "warm", str(listing), "-b", "openai"]
                    + ["-O", f"base_url={fake.base_url}", "-j", "4", "--json", "--cache-dir"]
                    + [str(Path(tmp) / ("cache" if shared else f"cache-{w}"))],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=env,
                )
                for w in range(warms)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=600)
                if proc.returncode != 0:
                    raise SystemExit(err.decode())
            return fake.request_count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warms", type=int, default=4)
    parser.add_argument("--phrases", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    shared, alone = [], []
    for _ in range(args.runs):
        shared.append(run(args.warms, args.phrases, args.latency, shared=True))
        alone.append(run(args.warms, args.phrases, args.latency, shared=False))
    ratio = statistics.median(r / args.phrases for r, _ in shared)
    ref_ratio = statistics.median(r / args.phrases for r, _ in alone)
    wall = statistics.median(t for _, t in shared)
    ref_wall = statistics.median(t for _, t in alone)
    print(f"{args.warms} warms x {args.phrases} shared phrases, latency {args.latency} s")
    print(f"shared directory: requests {[r for r, _ in shared]} -> {ratio:.3f}x distinct")
    print(f"separate dirs   : requests {[r for r, _ in alone]} -> {ref_ratio:.3f}x distinct")
    print(f"wall: shared {wall:.2f} s, separate {ref_wall:.2f} s ({wall / ref_wall:.2f}x)")
    print(f"target <= 1.1x distinct: {'met' if ratio <= 1.1 else 'NOT met'}")


if __name__ == "__main__":
    main()
