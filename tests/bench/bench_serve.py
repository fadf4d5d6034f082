"""Benchmarks of `voiceprep serve` (not collected by pytest: run it as a script).

1. Hits of a 2 s prompt (24 kHz mono), response_format pcm and wav, at 1, 16 and 64
   concurrent clients: requests per second against the floor measured in the same run —
   a bare Starlette app on the same uvicorn settings, in its own process, returning the
   same bytes from memory. Also p50 latency at 1 client.
2. An mp3 hit after the first (the encoded variant is kept): p50 against the pcm hit's.
3. 64 distinct misses at once through the fake OpenAI provider with a fixed 100 ms
   latency, the server at `-j 8`: wall time against the ideal 64 × 0.1 / 8 = 0.8 s.
4. 32 concurrent requests for one new phrase: how many upstream calls (must be 1).

The load client is aiohttp on loopback (one keep-alive connection per client), in this
process; the servers are separate processes, so on a 2-core machine the client and the
server share the CPU the same way for the floor and for voiceprep.

    python tests/bench/bench_serve.py [--runs 5] [--requests 2000]

Prints medians and ratios; the figures go to docs/performance.md ("Serve").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: fakeproviders

from fakeproviders import OPENAI_KEY, fake_openai  # noqa: E402

PROMPT = "Thank you for calling. Please hold while we connect you."
SECONDS = 2.0
RATE = 24000
CONCURRENCY = (1, 16, 64)
MISSES = 64
LATENCY = 0.1
JOBS = 8
SHARED = 32


# --- the floor: a bare Starlette app serving the same bytes ------------------------------


def floor_main(body_dir: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    bodies = {fmt: (Path(body_dir) / fmt).read_bytes() for fmt in ("pcm", "wav", "mp3")}
    types = {"pcm": "audio/pcm", "wav": "audio/wav", "mp3": "audio/mpeg"}

    async def speech(request: Request) -> Response:
        import json

        fmt = json.loads(await request.body())["response_format"]
        return Response(bodies[fmt], media_type=types[fmt])

    app = Starlette(routes=[Route("/v1/audio/speech", speech, methods=["POST"])])
    import socket

    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    # As uvicorn's own bind by host and port would: proto IPPROTO_TCP, so asyncio
    # sets TCP_NODELAY on accepted connections (see voiceprep.server.run.bind).
    sock = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
    print(f"serving http://127.0.0.1:{sock.getsockname()[1]} ", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", server_header=False
    )
    uvicorn.Server(config).run(sockets=[sock])


# --- helpers ---------------------------------------------------------------------------


def start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"serving (http://\S+?:\d+)", line)
        if match:
            # Keep reading stderr (one log line per request) so the pipe never fills.
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    proc: subprocess.Popen[str], url: str, fmt: str, clients: int, n: int
) -> dict[str, float]:
    """`load`, plus the server's CPU milliseconds per request (less sensitive to the
    machine's load than wall time: what the server itself spent)."""
    before = cpu_seconds(proc.pid)
    result = asyncio.run(load(url, fmt, clients, n))
    result["cpu_ms"] = (cpu_seconds(proc.pid) - before) * 1000 / (n + 3)
    return result


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def body(text: str, fmt: str) -> dict[str, str]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt}


async def load(
    url: str, fmt: str, clients: int, total: int, text: str = PROMPT
) -> dict[str, float]:
    """`total` requests from `clients` concurrent keep-alive clients: rps and p50 (ms)."""
    import aiohttp

    per_client = max(1, total // clients)
    latencies: list[float] = []
    payload = body(text, fmt)

    async def client(session: aiohttp.ClientSession) -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            async with session.post(url + "/v1/audio/speech", json=payload) as response:
                data = await response.read()
                assert response.status == 200 and data, response.status
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):  # warm-up: connections open, variants encoded, code paths hot
            async with session.post(url + "/v1/audio/speech", json=payload) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"rps": len(latencies) / wall, "p50": statistics.median(latencies) * 1000}


async def burst(url: str, texts: list[str]) -> float:
    """All `texts` requested at once (one client each): the wall time until the last."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=len(texts))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(text: str) -> None:
            async with session.post(url + "/v1/audio/speech", json=body(text, "pcm")) as r:
                await r.read()
                assert r.status == 200, r.status

        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return time.perf_counter() - started


def prompt_pcm() -> bytes:
    import numpy as np

    count = int(SECONDS * RATE)
    tone = 12000 * np.sin(2 * np.pi * 220 * np.arange(count) / RATE)
    return tone.astype("<i2").tobytes()


def fill_cache(directory: Path, pcm: bytes) -> None:
    from voiceprep.backends import get_backend
    from voiceprep.cache import AudioCache
    from voiceprep.keys import cache_key

    identity = get_backend("espeak").identity(None)
    key = cache_key(identity, PROMPT, rate=RATE, channels=1)
    with AudioCache(directory) as cache:
        cache.put(key, pcm, rate=RATE, channels=1, text=PROMPT, identity=identity)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEPREP_", "OPENAI_"))}
    return env


# --- the measurements ---------------------------------------------------------------------


def hits(work: Path, runs: int, total: int) -> None:
    from voiceprep.server.formats import encode

    pcm = prompt_pcm()
    bodies = work / "bodies"
    bodies.mkdir()
    for fmt in ("pcm", "wav", "mp3"):
        (bodies / fmt).write_bytes(encode(pcm, rate=RATE, channels=1, fmt=fmt))
    fill_cache(work / "cache", pcm)
    env = clean_env()
    floor, floor_url = start([sys.executable, __file__, "--floor", str(bodies)], env)
    server, server_url = start(
        [
            sys.executable,
            "-m",
            "voiceprep",
            "serve",
            "-b",
            "espeak",
            "--port",
            "0",
            "--cache-dir",
            str(work / "cache"),
        ],
        env,
    )
    try:
        print(f"hits of a {SECONDS:g} s prompt, {total} requests per measurement, {runs} runs")
        print(
            f"{'format':>6} {'clients':>7} {'floor rps':>10} {'serve rps':>10} {'ratio':>6}"
            f" {'floor p50':>10} {'serve p50':>10}"
        )
        p50s: dict[str, float] = {}
        for fmt in ("pcm", "wav"):
            for clients in CONCURRENCY:
                n = total if clients > 1 else max(200, total // 4)
                f_runs, s_runs = [], []
                for _ in range(runs):  # interleaved, so load changes hit both alike
                    f_runs.append(measured(floor, floor_url, fmt, clients, n))
                    s_runs.append(measured(server, server_url, fmt, clients, n))
                f_rps = statistics.median(r["rps"] for r in f_runs)
                s_rps = statistics.median(r["rps"] for r in s_runs)
                f_p50 = statistics.median(r["p50"] for r in f_runs)
                s_p50 = statistics.median(r["p50"] for r in s_runs)
                f_cpu = statistics.median(r["cpu_ms"] for r in f_runs)
                s_cpu = statistics.median(r["cpu_ms"] for r in s_runs)
                if clients == 1:
                    p50s[fmt] = s_p50
                print(
                    f"{fmt:>6} {clients:>7} {f_rps:>10.0f} {s_rps:>10.0f} {s_rps / f_rps:>6.2f}"
                    f" {f_p50:>8.2f}ms {s_p50:>8.2f}ms {f_cpu:>12.3f}ms {s_cpu:>12.3f}ms"
                )
        mp3 = [
            asyncio.run(load(server_url, "mp3", 1, max(200, total // 4)))["p50"]
            for _ in range(runs)
        ]
        pcm_again = [
            asyncio.run(load(server_url, "pcm", 1, max(200, total // 4)))["p50"]
            for _ in range(runs)
        ]
        m, p = statistics.median(mp3), statistics.median(pcm_again)
        print(f"mp3 hit after the first: p50 {m:.2f} ms vs pcm {p:.2f} ms: {m / p:.2f}x")
    finally:
        stop(server)
        stop(floor)


_DIRECT = """
import asyncio, sys, time, httpx
async def main(url, key, count, jobs):
    slots = asyncio.Semaphore(jobs)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer " + key}) as c:
        async def one(i):
            async with slots:
                body = {"model": "tts-1", "voice": "alloy", "input": f"Direct prompt {i}.",
                        "response_format": "wav"}
                assert (await c.post("/audio/speech", json=body)).status_code == 200
        await one(-1)  # the connection pool warm, as the server's is
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        print(time.perf_counter() - started)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def direct(base_url: str) -> float:
    """The same 64 calls at -j 8 straight from httpx in another process: the fake's own
    overhead (a ThreadingHTTPServer making WAVs), which the issue's ideal leaves out."""
    args = [base_url, OPENAI_KEY, str(MISSES), str(JOBS)]
    out = subprocess.run(
        [sys.executable, "-c", _DIRECT, *args], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def misses(work: Path, runs: int) -> None:
    ideal = MISSES * LATENCY / JOBS
    with fake_openai(latency=LATENCY) as fake:
        env = {**clean_env(), "OPENAI_API_KEY": OPENAI_KEY}
        server, url = start(
            [
                sys.executable,
                "-m",
                "voiceprep",
                "serve",
                "-b",
                "openai",
                "-O",
                f"base_url={fake.base_url}",
                "-j",
                str(JOBS),
                "--port",
                "0",
                "--cache-dir",
                str(work / "miss-cache"),
            ],
            env,
        )
        try:
            walls = []
            for run in range(runs):
                texts = [f"Run {run}, distinct prompt number {i}." for i in range(MISSES)]
                walls.append(asyncio.run(burst(url, texts)))
            peak = fake.peak_in_flight
            wall = statistics.median(walls)
            floor = statistics.median(direct(fake.base_url) for _ in range(runs))
            print(
                f"{MISSES} distinct misses, {LATENCY * 1000:g} ms upstream, -j {JOBS}: "
                f"{wall:.3f} s vs ideal {ideal:.3f} s = {wall / ideal:.2f}x "
                f"(runs {', '.join(f'{w:.3f}' for w in walls)}; peak in flight {peak}); "
                f"the same calls straight to the fake: {floor:.3f} s, so {wall / floor:.2f}x"
            )
            calls = []
            for run in range(runs):
                before = fake.request_count
                asyncio.run(burst(url, [f"One shared new phrase, run {run}."] * SHARED))
                calls.append(fake.request_count - before)
            print(
                f"{SHARED} concurrent requests for one new phrase: upstream calls per run {calls}"
            )
        finally:
            stop(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--floor", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(args.floor)
        return
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        hits(Path(tmp), args.runs, args.requests)
        misses(Path(tmp), args.runs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
