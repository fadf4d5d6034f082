"""Word timings: what they cost a hit's first frame and an entry's size (issue 25 item 5).

    python tests/bench/bench_words.py [--runs 200] [--repeats 5]

- Pipecat, first frame of a hit: `CachedTTSMixin.run_tts` of a word-timestamp service
  (`push_text_frames` off: the hit reads the entry's words from disk and reports them
  before its audio) against the same hit of the same service reporting no words (it reads
  none), in the same round. Target: < 2 ms p50 in-process.
- Entry size: a typical prompt warmed through `TTSAudioCache` by Piper (its own word
  timings) and by Cartesia (tests/fakeproviders.py's fake, its word timestamps) at 8, 16
  and 24 kHz mono: the entry's `"words"` JSON against the whole entry file. Target ≤ 5 %.

Figures: the median over `--repeats` rounds of each round's p50 over `--runs` hits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_integrations import CPU, cached_pipecat_service, first_frame, timed  # noqa: E402
from fakeproviders import fake_cartesia  # noqa: E402
from loguru import logger  # noqa: E402

from voiceprep import TTSAudioCache  # noqa: E402
from voiceprep.backends.cartesia import CartesiaBackend  # noqa: E402
from voiceprep.backends.piper import PiperBackend  # noqa: E402
from voiceprep.timings import Word, words_to_json  # noqa: E402

logger.remove()

PROMPTS = (
    "Thank you for calling. How can I help you today?",
    "Your call is important to us. Please stay on the line.",
    "Press 1 for sales, or 2 for billing.",
)


def even_words(text: str, seconds: float) -> tuple[Word, ...]:
    """The words of `text` spread over `seconds` by character, as a provider times them."""
    step, at, words = seconds / len(text), 0, []
    for token in text.split():
        at = text.index(token, at)
        words.append(Word(token, at * step, (at + len(token)) * step))
        at += len(token)
    return tuple(words)


async def pipecat_round(directory: Path, runs: int) -> dict[str, float]:
    texts = [f"Pipecat prompt number {i}, spoken word by word." for i in range(runs)]
    filler = cached_pipecat_service(directory)
    cache = filler.voiceprep_cache()
    voice = filler.voiceprep_identity().voice
    for text in texts:
        pcm = filler.pcm_for(text)
        words = even_words(text, len(pcm) / 2 / 24000)
        await cache.store(text, pcm, voice_id=voice, words=words)

    figures: dict[str, float] = {}
    for name, speaks_words in (("no_words", False), ("words", True)):
        service = cached_pipecat_service(directory)
        service._push_text_frames = not speaks_words  # a word-timestamp service reports words
        p50, _ = await timed(runs, lambda i, s=service: first_frame(s, texts[i]))
        assert service.calls == [], "a hit called the service"
        figures[f"pipecat_hit_{name}_p50_ms"] = p50 * 1e3
        figures[f"pipecat_hit_{name}_cpu_p50_ms"] = CPU["last"] * 1e3
        await service.cleanup()
    await filler.cleanup()
    return figures


async def sizes(directory: Path) -> list[tuple[str, int, str, int, int]]:
    """(backend, rate, prompt, entry bytes, words bytes) of each prompt warmed."""
    rows = []
    with fake_cartesia() as fake:
        os.environ["CARTESIA_API_KEY"] = fake.api_key
        backends = {
            "piper": PiperBackend(),
            "cartesia": CartesiaBackend(options={"base_url": fake.base_url}),
        }
        for name, backend in backends.items():
            for rate in (8000, 16000, 24000):
                cache = TTSAudioCache(backend, directory=directory / f"{name}{rate}", rate=rate)
                try:
                    for text in PROMPTS:
                        await cache.fetch(text)
                        await cache.drain()  # the entry written
                        words = cache.words(text)
                        assert words, f"{name} gave no timings for {text!r}"
                        assert cache.disk is not None
                        entry = cache.disk.entry_bytes(cache.key(text))
                        size = len(json.dumps(words_to_json(words), separators=(",", ":")))
                        rows.append((name, rate, text, len(entry), size))
                finally:
                    await cache.aclose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(await pipecat_round(Path(tmp), args.runs))
    print(f"Pipecat hit, first frame: medians of {args.repeats} rounds of {args.runs} hits")
    for name in rounds[0]:
        print(f"  {name:32} {statistics.median(r[name] for r in rounds):8.3f}")
    ratio = statistics.median(
        r["pipecat_hit_words_p50_ms"] / r["pipecat_hit_no_words_p50_ms"] for r in rounds
    )
    print(f"  with words / without: {ratio:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        rows = await sizes(Path(tmp))
    print("Entry size: the words' JSON against the entry file")
    for name, rate, text, entry, words in rows:
        print(
            f"  {name:8} {rate:5} Hz {entry:9,} B {words:5,} B {100 * words / entry:5.2f} %  {text}"
        )


if __name__ == "__main__":
    asyncio.run(main())
