"""Benchmarks of the live path (issue 19 item 6), against a streaming fake upstream in the
same run (not collected by pytest: run it as a script).

serve (this file's `serve_*` functions):

1. Miss, time to first byte: `voiceprep serve -b openai` over the fake OpenAI provider
   streaming as the live path does (first audio after 250 ms, then 100 ms of audio every
   25 ms). p50 of the time to the first body byte for `pcm`, `wav`, `sse` and `mp3`,
   against the upstream's own p50 (the same request straight to the fake), measured
   interleaved. Target: ≤ upstream + 30 ms (pcm, wav, sse), + 100 ms (mp3).
2. Hit, `pcm`, one client: p50 (target < 3 ms).
3. Hit throughput at 64 connections: `wrk` (a C load generator, Debian's package) with a
   Lua POST script against serve and against the floor — a bare Starlette app on uvicorn
   returning the same bytes (tests/bench/bench_serve.py --floor) — interleaved, medians
   over the runs. Target: ≥ 0.8× the floor.
4. 32 concurrent requests for one new phrase, 16 of them started mid-stream: upstream
   calls (must be 1) and whether the 32 bodies are identical and complete.

    python tests/bench/bench_stream.py [--runs 5] [--seconds 5]

Prints medians and ratios; the figures go to docs/performance.md ("Streaming").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: fakeproviders
sys.path.insert(0, str(HERE))

from bench_serve import (  # noqa: E402
    PROMPT,
    clean_env,
    cpu_seconds,
    fill_cache,
    prompt_pcm,
    start,
    stop,
)
from fakeproviders import OPENAI_KEY, FakeProvider, fake_openai, seconds_for  # noqa: E402

LATENCY = 0.25  # the upstream's first audio
CHUNK_INTERVAL = 0.025  # then 100 ms of audio every 25 ms
CONNECTIONS = 64
SHARED = 32


def body(text: str, fmt: str, **more: str) -> dict[str, str]:
    base = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": text, "response_format": fmt}
    return base | more


def serve_over(fake: FakeProvider, cache: Path) -> tuple[subprocess.Popen[str], str]:
    """`voiceprep serve -b openai` in front of `fake`: the process and its URL."""
    command = [sys.executable, "-m", "voiceprep", "serve", "-b", "openai"]
    command += ["-O", f"base_url={fake.base_url}", "--port", "0", "--cache-dir", str(cache)]
    return start(command, {**clean_env(), "OPENAI_API_KEY": OPENAI_KEY})


# --- 1. miss: time to first byte ----------------------------------------------------------


async def first_byte(url: str, payload: dict[str, str], headers: dict[str, str]) -> float:
    """Seconds from sending the request to the first body byte; reads the rest too."""
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        async with client.stream("POST", url, json=payload, headers=headers) as response:
            assert response.status_code == 200, response.status_code
            ttfb = None
            async for _ in response.aiter_raw():
                if ttfb is None:
                    ttfb = time.perf_counter() - started
        assert ttfb is not None
        return ttfb


def serve_miss_ttfb(work: Path, runs: int) -> None:
    with fake_openai(latency=LATENCY, chunk_interval=CHUNK_INTERVAL) as fake:
        server, url = serve_over(fake, work / "miss-cache")
        upstream = fake.base_url + "/audio/speech"
        direct = {"Authorization": f"Bearer {OPENAI_KEY}"}
        try:
            # the first miss of a process imports the HTTP stack and the encoders
            asyncio.run(first_byte(url + "/v1/audio/speech", body("Warm up.", "mp3"), {}))
            print(
                f"miss, time to first byte: upstream first audio after {LATENCY * 1000:g} ms, "
                f"then 100 ms every {CHUNK_INTERVAL * 1000:g} ms; {runs} runs per format"
            )
            for fmt in ("pcm", "wav", "sse", "mp3"):
                own, served = [], []
                for run in range(runs):
                    text = f"Run {run} of the live path in {fmt}, a sentence of a few seconds."
                    upstream_fmt = "pcm" if fmt == "sse" else fmt
                    own.append(asyncio.run(first_byte(upstream, body(text, upstream_fmt), direct)))
                    extra = (
                        {"stream_format": "sse", "response_format": "pcm"} if fmt == "sse" else {}
                    )
                    payload = body(text, fmt if fmt != "sse" else "pcm", **extra)
                    served.append(asyncio.run(first_byte(url + "/v1/audio/speech", payload, {})))
                o, s = statistics.median(own) * 1000, statistics.median(served) * 1000
                each = ", ".join(f"{x * 1000:.0f}" for x in served)
                print(
                    f"  {fmt:>4}: upstream p50 {o:7.1f} ms, serve p50 {s:7.1f} ms, "
                    f"+{s - o:5.1f} ms  (serve runs: {each})"
                )
        finally:
            stop(server)


# --- 2, 3. hits ----------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(
    url: str, payload: dict[str, str], seconds: int, connections: int, script: Path, pid: int
) -> tuple[float, float]:
    """Requests per second `wrk` sustains (2 threads, `connections` keep-alive), and the
    server's CPU microseconds per request (steadier than wall time on a loaded machine)."""
    before = cpu_seconds(pid)
    script.write_text(_WRK_SCRIPT.format(body=json.dumps(payload)))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            url + "/v1/audio/speech",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert match is not None and total is not None, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return float(match.group(1)), cpu * 1e6 / int(total.group(1))


async def hit_p50(url: str, n: int) -> float:
    import httpx

    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        payload = body(PROMPT, "pcm")
        for _ in range(n + 20):
            started = time.perf_counter()
            response = await client.post("/v1/audio/speech", json=payload)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
    return statistics.median(latencies[20:]) * 1000


def serve_hits(work: Path, runs: int, seconds: int) -> None:
    from voiceprep.server.formats import encode

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    pcm = prompt_pcm()
    bodies = work / "bodies"
    bodies.mkdir()
    for fmt in ("pcm", "wav", "mp3"):
        (bodies / fmt).write_bytes(encode(pcm, rate=24000, channels=1, fmt=fmt))
    fill_cache(work / "cache", pcm)
    env = clean_env()
    floor, floor_url = start(
        [sys.executable, str(HERE / "bench_serve.py"), "--floor", str(bodies)], env
    )
    server, server_url = start(
        [sys.executable, "-m", "voiceprep", "serve", "-b", "espeak", "--port", "0"]
        + ["--cache-dir", str(work / "cache")],
        env,
    )
    script = work / "post.lua"
    payload = body(PROMPT, "pcm")
    try:
        p50s = [asyncio.run(hit_p50(server_url, 500)) for _ in range(runs)]
        print(f"hit, pcm, one client: p50 {statistics.median(p50s):.2f} ms (runs "
              f"{', '.join(f'{p:.2f}' for p in p50s)})")  # fmt: skip
        wrk(floor_url, payload, 1, CONNECTIONS, script, floor.pid)  # warm-up
        wrk(server_url, payload, 1, CONNECTIONS, script, server.pid)
        floors, serves = [], []
        for _ in range(runs):  # interleaved: the machine's load hits both alike
            floors.append(wrk(floor_url, payload, seconds, CONNECTIONS, script, floor.pid))
            serves.append(wrk(server_url, payload, seconds, CONNECTIONS, script, server.pid))
        f_rps, s_rps = (statistics.median(r[0] for r in runs_) for runs_ in (floors, serves))
        f_cpu, s_cpu = (statistics.median(r[1] for r in runs_) for runs_ in (floors, serves))
        ratios = [s[0] / f[0] for s, f in zip(serves, floors, strict=True)]
        print(
            f"hit throughput, {CONNECTIONS} connections, wrk {seconds} s x {runs}: floor "
            f"{f_rps:.0f} req/s, serve {s_rps:.0f} req/s, ratio {s_rps / f_rps:.2f} (per run "
            f"{', '.join(f'{r:.2f}' for r in ratios)}); server CPU per request: floor "
            f"{f_cpu:.0f} µs, serve {s_cpu:.0f} µs, floor/serve {f_cpu / s_cpu:.2f}"
        )
    finally:
        stop(server)
        stop(floor)


# --- 4. one new phrase, 32 requests, half mid-stream --------------------------------------


def serve_shared_miss(work: Path, runs: int) -> None:
    import httpx

    with fake_openai(latency=LATENCY, chunk_interval=CHUNK_INTERVAL) as fake:
        server, url = serve_over(fake, work / "shared-cache")
        try:
            for run in range(runs):
                text = f"Thirty-two callers, run {run}, ask for this sentence at once."
                fake.after_first_chunk = threading.Event()
                before = fake.request_count

                async def one(text: str = text) -> bytes:
                    async with httpx.AsyncClient(timeout=60) as client:
                        response = await client.post(url + "/v1/audio/speech",
                                                     json=body(text, "pcm"))  # fmt: skip
                        return response.content

                async def all_of(text: str = text) -> list[bytes]:
                    early = [asyncio.ensure_future(one()) for _ in range(SHARED // 2)]
                    while fake.in_flight < 1:
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(0.2)  # the first chunk is out: the rest join mid-stream
                    late = [asyncio.ensure_future(one()) for _ in range(SHARED // 2)]
                    await asyncio.sleep(0.2)
                    assert fake.after_first_chunk is not None
                    fake.after_first_chunk.set()
                    return list(await asyncio.gather(*early, *late))

                bodies = asyncio.run(all_of())
                complete = all(len(b) == round(seconds_for(text) * 24000) * 2 for b in bodies)
                print(
                    f"{SHARED} requests for one new phrase (half mid-stream), run {run}: "
                    f"upstream calls {fake.request_count - before}, "
                    f"identical {len(set(bodies)) == 1}, complete {complete}"
                )
        finally:
            fake.after_first_chunk = None
            stop(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="of each wrk run")
    parser.add_argument(
        "--only", choices=("miss", "hits", "shared"), help="run one serve measurement"
    )
    args = parser.parse_args()
    print(f"date -u: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}; "
          f"load average before: {os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "miss"):
            serve_miss_ttfb(work, args.runs)
        if args.only in (None, "hits"):
            serve_hits(work, args.runs, args.seconds)
        if args.only in (None, "shared"):
            serve_shared_miss(work, args.runs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
