"""TTSAudioCache hits and `voiceprep cache` listing over a 10,000-entry cache.

    python tests/bench/bench_tts_cache.py [--entries 10000] [--hits 2000] [--runs 5]

Fills a temporary cache with `--entries` short entries (0.1 s of 24 kHz mono each), then
measures, in the same run:

- a disk hit through a fresh TTSAudioCache (memory tier empty): p50/p95 per fetch, against
  the reference `AudioCache.get` of the same entries (the ratio is TTSAudioCache's own cost);
- a memory hit (the same fetches again);
- `voiceprep cache ls --json` and `cache verify` wall time (median of `--runs`), against
  `voiceprep cache path` (same start-up, no work).

Target (issue 3): disk hit p50 < 1 ms; `cache ls --json` over 10,000 entries < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_cache import NeverCalledTTS

from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.tts_cache import TTSAudioCache

RATE = 24000


def fill(directory: Path, count: int) -> list[str]:
    identity = BackendIdentity(
        f"{NeverCalledTTS.__module__}.{NeverCalledTTS.__qualname__}", voice="v"
    )
    pcm = bytes(RATE // 10 * 2)  # 0.1 s
    texts = [f"prompt number {i}" for i in range(count)]
    with AudioCache(directory) as cache:
        for text in texts:
            key = cache_key(identity, text, rate=RATE, channels=1)
            cache.put(key, pcm, rate=RATE, channels=1, text=text, identity=identity)
    return texts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def hits(directory: Path, texts: list[str]) -> dict[str, list[float]]:
    tts_cache = TTSAudioCache(NeverCalledTTS(), max_entries=len(texts) + 1, directory=directory)
    reference = AudioCache(directory)
    timings: dict[str, list[float]] = {"disk": [], "memory": [], "reference": []}
    keys = [tts_cache.key(t, voice_id="v") for t in texts]
    for text, key in zip(texts, keys, strict=True):
        start = time.perf_counter()
        reference.get(key, rate=RATE, channels=1)
        timings["reference"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await tts_cache.fetch(text, voice_id="v")
        timings["disk"].append(time.perf_counter() - start)
    for text in texts:
        start = time.perf_counter()
        await tts_cache.fetch(text, voice_id="v")
        timings["memory"].append(time.perf_counter() - start)
    tts_cache.close()
    reference.close()
    return timings


def voiceprep_command() -> list[str]:
    script = Path(sys.executable).with_name("voiceprep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "voiceprep"]


def wall(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--hits", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="voiceprep-bench-") as tmp:
        directory = Path(tmp) / "cache"
        start = time.perf_counter()
        texts = fill(directory, args.entries)
        print(f"filled {args.entries} entries in {time.perf_counter() - start:.1f} s")

        sample = random.Random(7).sample(texts, min(args.hits, len(texts)))
        timings = asyncio.run(hits(directory, sample))
        ms = {name: [v * 1000 for v in values] for name, values in timings.items()}
        ref_p50 = statistics.median(ms["reference"])
        for name in ("disk", "memory", "reference"):
            p50 = statistics.median(ms[name])
            print(
                f"{name:>9} hit: p50 {p50:.3f} ms, p95 {percentile(ms[name], 0.95):.3f} ms "
                f"({p50 / ref_p50:.2f}x AudioCache.get)"
            )

        base = [*voiceprep_command(), "cache"]
        flags = ["--cache-dir", str(directory)]
        path_s = wall([*base, "path", *flags], args.runs)
        ls_s = wall([*base, "ls", "--json", *flags], args.runs)
        verify_s = wall([*base, "verify", *flags], max(1, args.runs // 2))
        print(f"cache path (reference): {path_s:.3f} s")
        print(f"cache ls --json: {ls_s:.3f} s ({ls_s / path_s:.2f}x cache path)")
        print(f"cache verify: {verify_s:.3f} s ({verify_s / path_s:.2f}x cache path)")


if __name__ == "__main__":
    main()
