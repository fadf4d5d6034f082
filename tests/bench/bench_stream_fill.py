"""Streaming misses through the fill path: time to first audio against the backend's own.

    python tests/bench/bench_stream_fill.py [--runs 20] [--repeats 3] [--latency 0.25]

In one process, against a streaming backend defined here that behaves like the issue's
fake upstream (first audio after `--latency` s, then 100 ms of audio every 25 ms, 1.5 s
in all), in the same run:

- `TTSAudioCache.stream` on a miss (a new phrase each call, a cache directory): time to
  the first chunk, against the backend's own `stream()` called directly. Target: ≤ the
  backend's first chunk + 5 ms (p50).
- the same with a processing chain (loudness −16 LUFS): the stream hands out the whole
  processed phrase once synthesized (buffered): time to first audio = the whole synthesis
  plus the chain.
- LiveKit `CachedTTS`: time to the first frame of a hit (memory tier warm) and of a miss
  against the wrapped TTS's own first frame. Target: hit < 2 ms (p50).

Each figure is the median over `--repeats` rounds of the per-round p50.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiogen import sine_pcm  # noqa: E402
from integrations_helpers import livekit_counting_tts  # noqa: E402

from voiceprep import SynthesizedAudio, TTSAudioCache  # noqa: E402
from voiceprep.keys import BackendIdentity  # noqa: E402
from voiceprep.process import ProcessSettings  # noqa: E402

RATE = 24000


class PacedBackend:
    """First audio after `latency` s, then 100 ms of audio every 25 ms."""

    name = "paced"

    def __init__(self, latency: float, seconds: float = 1.5) -> None:
        self.latency, self.seconds = latency, seconds

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(self.name, None, voice)

    def unavailable_reason(self) -> str | None:
        return None

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        chunks = [c.data async for c in self.stream(text, rate=rate, channels=channels)]
        return SynthesizedAudio(b"".join(chunks), rate=RATE, channels=1)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        pcm = sine_pcm(200.0 + len(text) % 300, self.seconds, RATE)
        step = RATE // 10 * 2
        await asyncio.sleep(self.latency)
        for start in range(0, len(pcm), step):
            yield SynthesizedAudio(pcm[start : start + step], rate=RATE, channels=1)
            await asyncio.sleep(0.025)


async def first_of(stream: AsyncIterator[object]) -> float:
    """Seconds to the first item of `stream`, then drains it (so the fill completes)."""
    start = time.perf_counter()
    async for _ in stream:
        elapsed = time.perf_counter() - start
        break
    async for _ in stream:
        pass
    return elapsed


async def p50(runs: int, once: Callable[[int], Awaitable[float]]) -> float:
    return statistics.median([await once(i) for i in range(runs)])


async def round_(runs: int, latency: float, directory: Path, n: int) -> dict[str, float]:
    backend = PacedBackend(latency)
    plain = TTSAudioCache(backend, directory=directory / f"plain{n}", gate="off")
    leveled = TTSAudioCache(
        backend,
        directory=directory / f"leveled{n}",
        gate="off",
        process=ProcessSettings(loudness=-16.0),
    )
    out = {
        "backend first chunk": await p50(
            runs, lambda i: first_of(backend.stream(f"direct {i}", rate=RATE, channels=1))
        ),
        "stream miss first chunk": await p50(
            runs, lambda i: first_of(plain.stream(f"A new phrase, number {i}."))
        ),
        "stream miss, processed (buffered)": await p50(
            max(3, runs // 4), lambda i: first_of(leveled.stream(f"A leveled phrase {i}."))
        ),
    }
    await plain.drain()
    plain.close()
    await leveled.drain()
    leveled.close()

    from livekit.agents.types import APIConnectOptions

    from voiceprep.integrations.livekit import CachedTTS

    inner = livekit_counting_tts()
    inner.latency, inner.delay = latency, 0.025
    cached = CachedTTS(inner, cache_dir=directory / f"lk{n}")
    conn = APIConnectOptions(max_retry=0)
    out["livekit wrapped first frame"] = await p50(
        max(3, runs // 4), lambda i: first_of(inner.synthesize(f"wrapped {i}", conn_options=conn))
    )
    out["livekit miss first frame"] = await p50(
        max(3, runs // 4), lambda i: first_of(cached.synthesize(f"miss {i}", conn_options=conn))
    )
    await first_of(cached.synthesize("A recurring hit."))
    await cached.cache.drain()
    out["livekit hit first frame"] = await p50(
        runs * 5, lambda i: first_of(cached.synthesize("A recurring hit."))
    )
    await cached.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.25)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeats):
            rounds.append(await round_(args.runs, args.latency, Path(tmp), n))
    figures = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    for name, value in figures.items():
        print(f"{name:38s} {value * 1000:9.2f} ms")
    extra = figures["stream miss first chunk"] - figures["backend first chunk"]
    print(f"{'stream miss over the backend':38s} {extra * 1000:+9.2f} ms   (target ≤ +5 ms)")
    extra = figures["livekit miss first frame"] - figures["livekit wrapped first frame"]
    print(f"{'livekit miss over the wrapped TTS':38s} {extra * 1000:+9.2f} ms")
    print(f"{'livekit hit first frame':38s} {figures['livekit hit first frame'] * 1000:9.2f} ms")
    print("                                       (target < 2 ms)")


if __name__ == "__main__":
    asyncio.run(main())
