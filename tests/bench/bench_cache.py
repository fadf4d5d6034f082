"""AudioCache speed over 10,000 entries: hits, inserts with eviction, `cache ls --json`.

    python tests/bench/bench_cache.py [--entries 10000] [--hits 500] [--inserts 300] [--runs 3]

Fills a temporary cache with `--entries` entries (0.5 s of 24 kHz mono s16; every 50th is
2 s, the entries hits are measured on), then measures, each figure the median over
`--runs` rounds and against a reference measured in the same run:

- a disk hit, `AudioCache.get` (index lookup, file read, format and sha256 check), p50/p95
  per call; reference: reading the same WAV file with open().read();
- a disk hit through a fresh `TTSAudioCache` (memory tier empty), p50/p95 per fetch;
- the cost of one put with LRU eviction active (the cache full at its max_entries), at
  1,000 and at 10,000 entries; reference: writing the same file alone (temp, fsync,
  rename) — the ratio 10k/1k shows whether inserts grow with the cache;
- `voiceprep cache ls --json` over the whole cache, wall time; reference
  `voiceprep cache path` (same start-up, no listing).

Targets (issue 3): hit p50 < 1 ms; insert cost flat from 1k to 10k; ls --json < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key

RATE = 24000
SHORT = bytes(range(256)) * (RATE * 2 // 2 // 256)  # ~0.5 s of s16 mono
LONG = bytes(range(256)) * (RATE * 2 * 2 // 256)  # 2 s


class NeverCalledTTS:
    """Original-style TTS object: every fetch in this benchmark must be a cache hit."""

    sample_rate = RATE

    async def stream_synthesize(
        self, text_iter: AsyncIterator[str], voice_id: str | None = None
    ) -> AsyncIterator[bytes]:
        raise AssertionError("the benchmark must only hit the cache")
        yield b""  # pragma: no cover


IDENTITY = BackendIdentity(f"{NeverCalledTTS.__module__}.{NeverCalledTTS.__qualname__}")


def text_of(i: int) -> str:
    return f"prompt number {i}"


def key_of(i: int) -> str:
    return cache_key(IDENTITY, text_of(i), rate=RATE, channels=1)


def fill(cache: AudioCache, start: int, stop: int) -> None:
    for i in range(start, stop):
        pcm = LONG if i % 50 == 0 else SHORT
        cache.put(key_of(i), pcm, rate=RATE, channels=1, text=text_of(i), identity=IDENTITY)


def per_call(action: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def bench_hits(directory: Path, entries: int, hits: int) -> dict[str, list[float]]:
    long_keys = [key_of(i) for i in range(0, entries, 50)][:hits]
    result: dict[str, list[float]] = {"get": [], "get95": [], "read": [], "tts": [], "tts95": []}
    with AudioCache(directory) as cache:
        paths = [cache.wav_path(key) for key in long_keys]
        keys = iter(long_keys * 2)
        times = per_call(lambda: cache.get(next(keys), rate=RATE, channels=1), len(long_keys))
        result["get"].append(pct(times, 0.5))
        result["get95"].append(pct(times, 0.95))
        files = iter(paths)
        times = per_call(lambda: Path(next(files)).read_bytes(), len(paths))
        result["read"].append(pct(times, 0.5))
    # A fresh TTSAudioCache per round: its memory tier is empty, every fetch hits the disk.
    from voiceprep.tts_cache import TTSAudioCache

    tts_cache = TTSAudioCache(NeverCalledTTS(), directory=directory)
    texts = [text_of(i) for i in range(0, entries, 50)][:hits]
    assert tts_cache.key(texts[0]) == long_keys[0], "benchmark keys differ from TTSAudioCache's"

    async def fetch_all() -> list[float]:
        times = []
        for text in texts:
            start = time.perf_counter()
            pcm = await tts_cache.fetch(text)
            times.append(time.perf_counter() - start)
            assert len(pcm) == len(LONG)
        return times

    times = asyncio.run(fetch_all())
    tts_cache.close()
    result["tts"].append(pct(times, 0.5))
    result["tts95"].append(pct(times, 0.95))
    return result


def bench_inserts(directory: Path, size: int, inserts: int) -> tuple[float, float]:
    """Median put with eviction active in a cache full at `size`, and the median bare file
    write (temp, fsync, rename) of the same bytes, alternated so both see the same disk."""
    scratch = directory / "scratch"
    scratch.mkdir(exist_ok=True)
    blob = b"RIFF" + bytes(40) + SHORT
    counter = iter(range(10**6, 10**7))
    puts: list[float] = []
    writes: list[float] = []
    with AudioCache(directory, max_entries=size) as cache:
        for _ in range(inserts):
            i = next(counter)
            start = time.perf_counter()
            cache.put(key_of(i), SHORT, rate=RATE, channels=1, text=text_of(i), identity=IDENTITY)
            puts.append(time.perf_counter() - start)

            start = time.perf_counter()
            temp = scratch / f"{uuid.uuid4().hex}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.write(fd, blob)
            os.fsync(fd)
            os.close(fd)
            os.replace(temp, scratch / f"{uuid.uuid4().hex}.wav")
            writes.append(time.perf_counter() - start)
        assert len(cache) == size
    shutil.rmtree(scratch)
    return statistics.median(puts), statistics.median(writes)


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, check=True)
    elapsed = time.perf_counter() - start
    if "ls" in argv:
        assert isinstance(json.loads(proc.stdout), list)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--hits", type=int, default=500)
    parser.add_argument("--inserts", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    small = max(1, args.entries // 10)

    with tempfile.TemporaryDirectory(prefix="voiceprep-bench-") as tmp:
        big_dir, small_dir = Path(tmp) / "big", Path(tmp) / "small"
        start = time.perf_counter()
        with AudioCache(big_dir) as cache:
            fill(cache, 0, args.entries)
            assert len(cache) == args.entries
        fill_seconds = time.perf_counter() - start
        with AudioCache(small_dir) as cache:
            fill(cache, 0, small)
        print(
            f"filled {args.entries} entries in {fill_seconds:.1f} s "
            f"({fill_seconds / args.entries * 1000:.2f} ms per put, no eviction)"
        )

        hits: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for name, values in bench_hits(big_dir, args.entries, args.hits).items():
                hits.setdefault(name, []).extend(values)
        get50, get95 = statistics.median(hits["get"]), statistics.median(hits["get95"])
        read50 = statistics.median(hits["read"])
        tts50, tts95 = statistics.median(hits["tts"]), statistics.median(hits["tts95"])
        print(
            f"AudioCache.get hit, 2 s entry: p50 {ms(get50)}, p95 {ms(get95)}; "
            f"plain file read p50 {ms(read50)} (x{get50 / read50:.1f})"
        )
        print(f"TTSAudioCache disk hit (fresh, memory empty): p50 {ms(tts50)}, p95 {ms(tts95)}")

        small_runs = [bench_inserts(small_dir, small, args.inserts) for _ in range(args.runs)]
        big_runs = [bench_inserts(big_dir, args.entries, args.inserts) for _ in range(args.runs)]
        put_small = statistics.median(r[0] for r in small_runs)
        put_big = statistics.median(r[0] for r in big_runs)
        ref_small = statistics.median(r[1] for r in small_runs)
        ref_big = statistics.median(r[1] for r in big_runs)
        print(
            f"put with eviction at {small} entries: {ms(put_small)} (x{put_small / ref_small:.2f}"
            f" of a bare file write, {ms(ref_small)}); at {args.entries} entries: "
            f"{ms(put_big)} (x{put_big / ref_big:.2f} of {ms(ref_big)}); "
            f"{args.entries}/{small} ratio {put_big / put_small:.2f}"
        )

        cli = [sys.executable, "-m", "voiceprep", "cache"]
        ls_times = [wall([*cli, "ls", "--json", "--cache-dir", str(big_dir)]) for _ in range(5)]
        path_times = [wall([*cli, "path", "--cache-dir", str(big_dir)]) for _ in range(5)]
        ls50, path50 = statistics.median(ls_times), statistics.median(path_times)
        print(
            f"cache ls --json over {args.entries} entries: {ls50:.3f} s; "
            f"cache path {path50:.3f} s (x{ls50 / path50:.1f})"
        )


if __name__ == "__main__":
    main()
