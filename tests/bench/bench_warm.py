"""Benchmarks of `voiceprep warm` (not collected by pytest: run it as a script).

1. Concurrency: 200 phrases through the fake OpenAI server with a fixed 100 ms latency
   (streamed, as the real one: the audio follows the latency at once),
   `voiceprep warm -j 8` as a user runs it (a subprocess, so start-up is included), against
   the ideal 200 × 0.1 / 8 = 2.5 s, and against `-j 1` (what the original sequential
   `preload` did) measured in the same run. Each run starts from an empty cache.
   The floor, measured in the same run: the same requests from a bare httpx client, 8 at a
   time, also in a fresh interpreter — what the server, the loopback and Python start-up
   cost on their own, on the same (shared, loaded) machine. Also: the start-up of a warm
   that synthesizes (launch to the first request the server receives, imports included),
   the CPU per synthesized phrase (a 200-phrase run against a 1-phrase run, paired), and
   how long a slot stays idle between an answer and its next request, as the server sees
   it on each keep-alive connection (warm against the bare client: where the per-phrase
   work between two requests shows).
2. `voiceprep warm --check` over 10,000 cached phrases, against the bare start-up of
   `voiceprep --version` measured in the same run. The cache is filled directly with
   AudioCache.put (10 ms of PCM per entry, keys from the same backend identity the CLI
   computes), since what is measured is the check, not the filling.

    python tests/bench/bench_warm.py [--runs 5] [--sequential-runs 3] [--no-check]

Prints the medians and ratios; the figures go to docs/performance.md ("Warm").
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: fakeproviders

from fakeproviders import OPENAI_KEY, FakeProvider, fake_openai  # noqa: E402

PHRASES = 200
LATENCY = 0.1
JOBS = 8
CHECK_PHRASES = 10_000


def installed(env: dict[str, str]) -> dict[str, str]:
    """`env` as an installed package runs: with bytecode. pip compiles it at install; with
    PYTHONDONTWRITEBYTECODE set (as in some sandboxes), every process would compile every
    module from source and start-up would measure the compiler. The warm-up runs write it."""
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def voiceprep(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "voiceprep", *args],
        capture_output=True,
        text=True,
        env=installed(env),
        check=False,
    )
    return time.perf_counter() - started, result


def write_phrases(path: Path, count: int) -> Path:
    path.write_text(
        "".join(f"Prompt {i}: please hold while we connect you.\n" for i in range(count))
    )
    return path


@dataclass
class WarmRun:
    wall: float  # the whole command, as the user waits for it
    inside: float  # the command's own `elapsed` (no interpreter start-up)
    startup: float  # launch → the first request reaches the provider (imports included)
    cpu: float  # user + system CPU seconds of the command
    peak: int  # the most requests the provider had in flight at once
    idle: float  # a slot's mean idle time between an answer and its next request


def slot_idle(fake: FakeProvider) -> float:
    """The mean time, seen from the provider, between the last byte of an answer and the
    next request on the same connection (a client's slot): what the client spends between
    two requests of a slot (reading the answer's end, its own per-phrase work), with the
    loopback's and the scheduler's share."""
    by_connection: dict[int, list[tuple[float, float]]] = {}
    for request in fake.requests:
        by_connection.setdefault(request.connection, []).append(
            (request.received, request.answered)
        )
    gaps = [
        later[0] - earlier[1]
        for times in by_connection.values()
        for earlier, later in itertools.pairwise(sorted(times))
    ]
    return statistics.mean(gaps) if gaps else math.nan


def warm_once(
    work: Path, fake: FakeProvider, jobs: int, env: dict[str, str], run: int, count: int = PHRASES
) -> WarmRun:
    phrases = write_phrases(work / f"phrases-{count}.txt", count)
    cache_dir = work / f"cache-j{jobs}-{count}-{run}"
    args = ["warm", str(phrases), "-b", "openai", "-O", f"base_url={fake.base_url}"]
    args += ["-j", str(jobs), "--cache-dir", str(cache_dir), "--json"]
    fake.reset()
    fake.peak_in_flight = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launched = time.monotonic()
    seconds, result = voiceprep(*args, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0 or json.loads(result.stdout)["synthesized"] != count:
        raise SystemExit(f"warm failed: {result.stderr}")
    first = min(request.received for request in fake.requests)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shutil.rmtree(cache_dir)
    inside = json.loads(result.stdout)["elapsed"]
    return WarmRun(seconds, inside, first - launched, cpu, fake.peak_in_flight, slot_idle(fake))


def bench_concurrency(work: Path, runs: int, sequential_runs: int) -> dict[str, float]:
    env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY}
    # 0.5 s pieces: the fake's own CPU (it shares the machine) stays small.
    with fake_openai(latency=LATENCY, chunk_seconds=0.5) as fake:
        warm_once(work, fake, JOBS, env, -1)  # warm-up: page cache, imports
        parallel, floors, singles = [], [], []
        for run in range(runs):  # interleaved, so all see the same machine load
            parallel.append(warm_once(work, fake, JOBS, env, run))
            floors.append(floor_once(fake))
            singles.append(warm_once(work, fake, JOBS, env, run, count=1))
        peak = max(r.peak for r in parallel)
        sequential = [warm_once(work, fake, 1, env, run) for run in range(sequential_runs)]
    ideal = PHRASES * LATENCY / JOBS
    median_parallel = statistics.median(r.wall for r in parallel)
    median_inside = statistics.median(r.inside for r in parallel)
    median_startup = statistics.median(r.startup for r in parallel)
    median_sequential = statistics.median(r.wall for r in sequential) if sequential else math.nan
    median_floor = statistics.median(seconds for seconds, _ in floors)
    # CPU per synthesized phrase: a 200-phrase run against a 1-phrase run (the same
    # start-up and imports), paired run by run.
    per_phrase = statistics.median(
        (many.cpu - one.cpu) / (PHRASES - 1) for many, one in zip(parallel, singles, strict=True)
    )
    return {
        "floor_median_s": median_floor,
        "floor_over_ideal": median_floor / ideal,
        "j8_over_floor": median_parallel / median_floor,
        "ideal_s": ideal,
        "j8_median_s": median_parallel,
        "j8_over_ideal": median_parallel / ideal,
        "j8_over_ideal_plus_startup": median_parallel / (1.25 * ideal + median_startup),
        "j8_inside_median_s": median_inside,
        "j8_inside_over_ideal": median_inside / ideal,
        "startup_median_s": median_startup,
        "cpu_per_phrase_ms": 1000 * per_phrase,
        "cpu_command_s": statistics.median(r.cpu for r in parallel),
        "j1_median_s": median_sequential,
        "j1_over_ideal": median_sequential / ideal,
        "j1_over_j8": median_sequential / median_parallel,
        "peak_in_flight": peak,
        "j8_slot_idle_ms": 1000 * statistics.median(r.idle for r in parallel),
        "floor_slot_idle_ms": 1000 * statistics.median(idle for _, idle in floors),
    }


# The floor: the same 200 requests with a bare httpx client, 8 at a time, in a fresh
# interpreter (start-up included, as for the warm), measured against the same server.
_FLOOR_CLIENT = """
import asyncio, sys, httpx
base, key, count, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
async def main():
    slots = asyncio.Semaphore(jobs)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=jobs)) as client:
        async def one(i):
            async with slots:
                text = f"Prompt {i}: please hold while we connect you."
                body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": text,
                        "response_format": "wav"}
                reply = await client.post(base + "/audio/speech", json=body,
                                          headers={"Authorization": "Bearer " + key})
                reply.raise_for_status()
        await asyncio.gather(*(one(i) for i in range(count)))
asyncio.run(main())
"""


def floor_once(fake: FakeProvider) -> tuple[float, float]:
    """(seconds, slot idle) of the bare client."""
    fake.reset()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _FLOOR_CLIENT, fake.base_url, OPENAI_KEY, str(PHRASES), str(JOBS)],
        check=True,
        env=installed(dict(os.environ)),
    )
    return time.perf_counter() - started, slot_idle(fake)


def fill_cache(cache_dir: Path, phrases: list[str], base_url: str) -> None:
    from voiceprep.backends import get_backend
    from voiceprep.cache import AudioCache
    from voiceprep.keys import cache_key

    backend = get_backend("openai", options={"base_url": base_url})
    identity = backend.identity(None)
    pcm = bytes(480)  # 10 ms of silence at 24 kHz mono
    with AudioCache(cache_dir) as cache:
        for text in phrases:
            key = cache_key(identity, text, rate=24000, channels=1)
            cache.put(key, pcm, rate=24000, channels=1, text=text, identity=identity)


def bench_check(work: Path, runs: int) -> dict[str, float]:
    base_url = "http://127.0.0.1:9/v1"  # never contacted: --check synthesizes nothing
    phrases_path = work / "check.txt"
    texts = [f"Check phrase {i}, with a few more words." for i in range(CHECK_PHRASES)]
    phrases_path.write_text("\n".join(texts) + "\n")
    cache_dir = work / "check-cache"
    started = time.perf_counter()
    fill_cache(cache_dir, texts, base_url)
    fill_seconds = time.perf_counter() - started
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    args = ["warm", str(phrases_path), "-b", "openai", "-O", f"base_url={base_url}"]
    args += ["--cache-dir", str(cache_dir), "--check"]
    voiceprep(*args, env=env)  # warm-up
    checks, startups = [], []
    for _ in range(runs):
        seconds, result = voiceprep(*args, env=env)
        if result.returncode != 0:
            raise SystemExit(f"check failed: {result.stderr}")
        checks.append(seconds)
        startups.append(voiceprep("--version", env=env)[0])
    check, startup = statistics.median(checks), statistics.median(startups)
    return {
        "fill_s": fill_seconds,
        "check_median_s": check,
        "startup_median_s": startup,
        "check_over_startup": check / startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sequential-runs", type=int, default=3, help="0: no -j 1 runs")
    parser.add_argument("--no-check", action="store_true", help="skip the warm --check part")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        work = Path(tmp)
        concurrency = bench_concurrency(work, options.runs, options.sequential_runs)
        check = None if options.no_check else bench_check(work, options.runs)
    print(f"warm {PHRASES} phrases, {LATENCY * 1000:.0f} ms latency (fake OpenAI server):")
    print(f"  ideal at -j {JOBS}:     {concurrency['ideal_s']:.2f} s")
    print(
        f"  -j {JOBS} median:       {concurrency['j8_median_s']:.2f} s "
        f"= {concurrency['j8_over_ideal']:.2f}x ideal (target <= 1.25x); "
        f"peak in flight {concurrency['peak_in_flight']:.0f}"
    )
    print(
        f"  bare httpx client, {JOBS} at a time (the floor): {concurrency['floor_median_s']:.2f} s "
        f"= {concurrency['floor_over_ideal']:.2f}x ideal; warm -j {JOBS} = "
        f"{concurrency['j8_over_floor']:.2f}x the floor"
    )
    print(
        f"  -j {JOBS} inside the command (its `elapsed`, no interpreter start-up): "
        f"{concurrency['j8_inside_median_s']:.2f} s = {concurrency['j8_inside_over_ideal']:.2f}x"
        " (target <= 1.15x)"
    )
    print(
        f"  start-up (launch to the first request, imports included): "
        f"{concurrency['startup_median_s']:.3f} s (target <= 0.5 s); whole command = "
        f"{concurrency['j8_over_ideal_plus_startup']:.2f}x (1.25x ideal + start-up)"
    )
    print(
        f"  a slot idle between an answer and its next request (seen by the provider): "
        f"warm {concurrency['j8_slot_idle_ms']:.1f} ms, bare httpx client "
        f"{concurrency['floor_slot_idle_ms']:.1f} ms"
    )
    print(
        f"  CPU per synthesized phrase (HTTP path): {concurrency['cpu_per_phrase_ms']:.1f} ms; "
        f"the command's CPU {concurrency['cpu_command_s']:.2f} s"
    )
    print(
        f"  -j 1 median:       {concurrency['j1_median_s']:.2f} s "
        f"= {concurrency['j1_over_ideal']:.2f}x ideal, "
        f"{concurrency['j1_over_j8']:.2f}x slower than -j {JOBS}"
    )
    if check is None:
        return
    print(f"warm --check over {CHECK_PHRASES} cached phrases:")
    print(
        f"  median:            {check['check_median_s']:.2f} s (target < 2 s); "
        f"start-up alone {check['startup_median_s']:.2f} s "
        f"({check['check_over_startup']:.1f}x); filling took {check['fill_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
