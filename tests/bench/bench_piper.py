"""Benchmark of the `piper` backend (not collected by pytest: run it as a script).

Speed as × real time (seconds of audio per second of wall time) for a fixed set of
prompt-like phrases, with the model load excluded and reported on its own:

- reference: piper-tts called directly (`PiperVoice.synthesize`, one phrase after another),
  measured in the same run;
- voiceprep's PiperBackend one phrase at a time (`-j 1`): the overhead of the backend
  (worker thread, option handling, joining chunks) is its ratio to the reference;
- voiceprep's PiperBackend with 2 syntheses in flight (`-j 2`, as warm runs it on this
  2-core machine).

    python tests/bench/bench_piper.py [--runs 5] [--loads 3]

Every figure is the median of `--runs` runs (`--loads` for the model load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from voiceprep.backends import piper as piper_backend
from voiceprep.backends.piper import PiperBackend, resolve_voice

PHRASES = [
    "One moment, please.",
    "Thank you for calling. How can I help you today?",
    "Your call is important to us. Please stay on the line and an agent will be with you shortly.",
    "Press one for billing, two for technical support, or stay on the line for an operator.",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "Goodbye, and have a nice day!",
    "Please hold while I transfer your call.",
]


def audio_seconds(pcm_bytes: int, rate: int) -> float:
    return pcm_bytes / 2 / rate


def reference_run(voice: object) -> tuple[float, float]:
    """(audio seconds, wall seconds): piper-tts directly, sequentially."""
    started = time.perf_counter()
    total = 0
    for text in PHRASES:
        total += sum(len(chunk.audio_int16_bytes) for chunk in voice.synthesize(text))  # type: ignore[attr-defined]
    wall = time.perf_counter() - started
    return audio_seconds(total, 22050), wall


async def backend_run(backend: PiperBackend, jobs: int) -> tuple[float, float]:
    """(audio seconds, wall seconds): through PiperBackend.synthesize, `jobs` in flight."""
    gate = asyncio.Semaphore(jobs)

    async def one(text: str) -> float:
        async with gate:
            audio = await backend.synthesize(text, rate=22050, channels=1)
            return audio_seconds(len(audio.data), audio.rate or 22050)

    started = time.perf_counter()
    seconds = sum(await asyncio.gather(*(one(t) for t in PHRASES)))
    return seconds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    files = resolve_voice(None)
    loads = []
    for _ in range(args.loads):
        started = time.perf_counter()
        voice = piper_backend._load(files)  # bypasses the per-process cache on purpose
        loads.append(time.perf_counter() - started)
    piper_backend._loaded[(str(files.model), str(files.config))] = voice

    backend = PiperBackend()
    reference_run(voice)  # warm-up (first inference allocates)
    asyncio.run(backend_run(backend, 1))

    figures: dict[str, list[float]] = {"reference": [], "backend -j 1": [], "backend -j 2": []}
    audio_total = 0.0
    for _ in range(args.runs):
        audio_total, wall = reference_run(voice)
        figures["reference"].append(audio_total / wall)
        audio, wall = asyncio.run(backend_run(backend, 1))
        figures["backend -j 1"].append(audio / wall)
        audio, wall = asyncio.run(backend_run(backend, 2))
        figures["backend -j 2"].append(audio / wall)

    medians = {name: statistics.median(values) for name, values in figures.items()}
    result = {
        "phrases": len(PHRASES),
        "audio_seconds": round(audio_total, 2),
        "model_load_seconds": round(statistics.median(loads), 3),
        "x_realtime": {name: round(value, 1) for name, value in medians.items()},
        "ratio_to_reference": {
            name: round(value / medians["reference"], 2) for name, value in medians.items()
        },
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{len(PHRASES)} phrases, {audio_total:.1f} s of audio; "
        f"model load {result['model_load_seconds']:.2f} s (median of {args.loads})"
    )
    for name, value in medians.items():
        ratio = value / medians["reference"]
        print(f"  {name:<14} {value:6.1f} × real time   ({ratio:.2f} × reference)")


if __name__ == "__main__":
    main()
