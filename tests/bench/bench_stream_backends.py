"""Benchmark of the backends' `stream()` (not collected by pytest: run it as a script).

- Piper: a three-sentence miss. Time to the first chunk against the whole synthesis
  (`synthesize` of the same text, and the stream's own end), interleaved run by run.
  The target: the first audio after the first sentence, ≤ 0.45× the whole synthesis.
- Hosted backends against the streaming fakes (first audio after `--latency`, then 100 ms
  of audio every 25 ms): the backend's first chunk against the same request read with a
  bare httpx stream, in the same run — what the backend adds to the provider's own time
  to first byte.

    python tests/bench/bench_stream_backends.py [--runs 7] [--latency 0.25]

Every figure is the median of `--runs` runs; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the fakes

from fakeproviders import fake_provider  # noqa: E402

from voiceprep.backends.cartesia import CartesiaBackend  # noqa: E402
from voiceprep.backends.deepgram import DeepgramBackend  # noqa: E402
from voiceprep.backends.elevenlabs import ElevenLabsBackend  # noqa: E402
from voiceprep.backends.openai import OpenAIBackend  # noqa: E402
from voiceprep.backends.piper import PiperBackend  # noqa: E402

THREE_SENTENCES = (
    "Thank you for calling the city library. "
    "Our opening hours have changed this week, and the reading room now closes at six. "
    "Please stay on the line and the next librarian will be with you shortly."
)
HOSTED = {
    "openai (wav)": ("openai", OpenAIBackend, {}, "OPENAI_API_KEY"),
    "openai (pcm)": ("openai", OpenAIBackend, {"response_format": "pcm"}, "OPENAI_API_KEY"),
    "elevenlabs": ("elevenlabs", ElevenLabsBackend, {}, "ELEVENLABS_API_KEY"),
    "cartesia": ("cartesia", CartesiaBackend, {}, "CARTESIA_API_KEY"),
    "deepgram": ("deepgram", DeepgramBackend, {}, "DEEPGRAM_API_KEY"),
}
TEXT = "Your call is important to us. Please stay on the line."


async def piper_figures(runs: int) -> dict[str, float]:
    backend = PiperBackend()
    await backend.synthesize("Warm up.", rate=22050, channels=1)  # the model load
    firsts, ends, wholes = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        first = None
        async for _chunk in backend.stream(THREE_SENTENCES, rate=22050, channels=1):
            first = first if first is not None else time.perf_counter() - start
        ends.append(time.perf_counter() - start)
        firsts.append(first or 0.0)
        start = time.perf_counter()
        await backend.synthesize(THREE_SENTENCES, rate=22050, channels=1)
        wholes.append(time.perf_counter() - start)
    ratios = [first / whole for first, whole in zip(firsts, wholes, strict=True)]
    return {
        "first_chunk_s": statistics.median(firsts),
        "stream_end_s": statistics.median(ends),
        "synthesize_s": statistics.median(wholes),
        "first_over_synthesize": statistics.median(ratios),
    }


async def _bare_first(client: object, fake: object, backend: object) -> float:
    """Time to the first body byte of the backend's own request, read with bare httpx."""
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    request = _request_of(backend)
    start = time.perf_counter()
    async with client.stream("POST", **request) as response:
        pieces = response.aiter_raw()
        async with contextlib.aclosing(pieces):
            await anext(pieces)
            return time.perf_counter() - start


def _request_of(backend: object) -> dict[str, object]:
    """The URL, headers, params and body the backend sends for TEXT (its stream request)."""
    if isinstance(backend, OpenAIBackend):
        post = backend._request(TEXT, None)
    elif isinstance(backend, ElevenLabsBackend):
        post = backend._post(TEXT, None, 24000, stream=True)
    elif isinstance(backend, CartesiaBackend):
        post = backend._post(TEXT, None, 24000)
    else:
        assert isinstance(backend, DeepgramBackend)
        post = backend._post(TEXT, backend.query(voice=None, rate=24000, container="none"))
    return {
        "url": post["url"],
        "headers": post["headers"],
        "params": post.get("params"),
        "json": post["body"],
    }


async def hosted_figures(runs: int, latency: float) -> dict[str, dict[str, float]]:
    import httpx

    out: dict[str, dict[str, float]] = {}
    for label, (kind, cls, options, key_env) in HOSTED.items():
        with fake_provider(kind, latency=latency, chunk_interval=0.025) as fake:
            os.environ[key_env] = fake.api_key
            backend = cls(options={"base_url": fake.base_url, **options})
            async with httpx.AsyncClient() as client:
                await _bare_first(client, fake, backend)  # connections and imports warm
                async for _ in backend.stream(TEXT, rate=24000, channels=1):
                    pass
                bare, ours = [], []
                for _ in range(runs):
                    bare.append(await _bare_first(client, fake, backend))
                    start = time.perf_counter()
                    stream = backend.stream(TEXT, rate=24000, channels=1)
                    async with contextlib.aclosing(stream):
                        await anext(stream)
                        ours.append(time.perf_counter() - start)
            await backend.aclose()
        out[label] = {
            "bare_httpx_first_s": statistics.median(bare),
            "backend_first_s": statistics.median(ours),
            "added_ms": 1000 * (statistics.median(ours) - statistics.median(bare)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
        "piper_three_sentences": asyncio.run(piper_figures(args.runs)),
        "hosted_vs_bare_httpx": asyncio.run(hosted_figures(args.runs, args.latency)),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['date']}  load average {result['load_average']}")
    piper = result["piper_three_sentences"]
    print(
        f"piper, 3 sentences: first chunk {piper['first_chunk_s']:.3f} s, "
        f"synthesize {piper['synthesize_s']:.3f} s, stream end {piper['stream_end_s']:.3f} s: "
        f"first/whole {piper['first_over_synthesize']:.2f}× (target ≤ 0.45×)"
    )
    for label, row in result["hosted_vs_bare_httpx"].items():
        print(
            f"{label:13} first chunk {1000 * row['backend_first_s']:.1f} ms, bare httpx "
            f"{1000 * row['bare_httpx_first_s']:.1f} ms: +{row['added_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
