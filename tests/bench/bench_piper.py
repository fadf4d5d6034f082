"""Benchmark of the `piper` backend (not collected by pytest: run it as a script).

Speed as × real time (seconds of audio per second of wall time) for a fixed set of
prompt-like phrases, with the model load excluded and reported on its own:

- reference: piper-tts used as its docs show (`PiperVoice.load(model)`, then
  `voice.synthesize(text)` one phrase after another), measured in the same run;
- the same direct calls on the model as voiceprep loads it (onnxruntime thread spinning
  off), which isolates that choice from the backend's own overhead;
- voiceprep's PiperBackend one phrase at a time (`-j 1`);
- voiceprep's PiperBackend with 2 and 4 syntheses in flight (`warm -j 2`, `-j 4`).

The backend loads the model with onnxruntime's thread spinning off (see piper.py); the
ratios to the reference show what that and the backend's own overhead add up to. Audio
seconds per CPU second (process time, all threads) are printed too: they show the CPU a
configuration burns, and move less than wall-clock figures when the machine is shared.

    python tests/bench/bench_piper.py [--runs 5] [--loads 3]

Every figure is the median of `--runs` runs (`--loads` for the model load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


class Clock:
    """Wall and process CPU time (all threads) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def reference_run(voice: object) -> tuple[float, Clock]:
    """(audio seconds, clock): piper-tts directly, sequentially."""
    total = 0
    with Clock() as clock:
        for text in PHRASES:
            chunks = voice.synthesize(text)  # type: ignore[attr-defined]
            total += sum(len(chunk.audio_int16_bytes) for chunk in chunks)
    return audio_seconds(total, 22050), clock


async def _backend_run(backend: PiperBackend, jobs: int) -> float:
    gate = asyncio.Semaphore(jobs)

    async def one(text: str) -> float:
        async with gate:
            audio = await backend.synthesize(text, rate=22050, channels=1)
            return audio_seconds(len(audio.data), audio.rate or 22050)

    return sum(await asyncio.gather(*(one(t) for t in PHRASES)))


def backend_run(backend: PiperBackend, jobs: int) -> tuple[float, Clock]:
    """(audio seconds, clock): through PiperBackend.synthesize, `jobs` in flight."""
    with Clock() as clock:
        seconds = asyncio.run(_backend_run(backend, jobs))
    return seconds, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from piper import PiperVoice

    load_before = os.getloadavg()[0]
    files = resolve_voice(None)
    loads, stock_loads = [], []
    for _ in range(args.loads):
        with Clock() as clock:
            voice = piper_backend._load(files)  # bypasses the per-process cache on purpose
        loads.append(clock.wall)
        with Clock() as clock:
            stock = PiperVoice.load(files.model, config_path=files.config)
        stock_loads.append(clock.wall)
    piper_backend._loaded[(str(files.model), str(files.config))] = voice

    backend = PiperBackend()
    reference_run(stock)  # warm-up (first inference allocates)
    backend_run(backend, 1)

    jobs = (1, 2, 4)
    names = ["reference", "direct, no spin", *(f"backend -j {j}" for j in jobs)]
    speed: dict[str, list[float]] = {name: [] for name in names}
    per_cpu: dict[str, list[float]] = {name: [] for name in names}
    audio_total = 0.0
    for _ in range(args.runs):
        runs = [("reference", *reference_run(stock))]
        runs += [("direct, no spin", *reference_run(voice))]
        runs += [(f"backend -j {j}", *backend_run(backend, j)) for j in jobs]
        for name, audio, clock in runs:
            speed[name].append(audio / clock.wall)
            per_cpu[name].append(audio / clock.cpu)
            audio_total = audio

    medians = {name: statistics.median(values) for name, values in speed.items()}
    cpu_medians = {name: statistics.median(values) for name, values in per_cpu.items()}
    result = {
        "phrases": len(PHRASES),
        "audio_seconds": round(audio_total, 2),
        "model_load_seconds": round(statistics.median(loads), 3),
        "reference_model_load_seconds": round(statistics.median(stock_loads), 3),
        "x_realtime": {name: round(value, 1) for name, value in medians.items()},
        "ratio_to_reference": {
            name: round(value / medians["reference"], 2) for name, value in medians.items()
        },
        "audio_seconds_per_cpu_second": {k: round(v, 1) for k, v in cpu_medians.items()},
        "runs": args.runs,
        # Other work on the machine skews every figure: report it with them.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{len(PHRASES)} phrases, {audio_total:.1f} s of audio; "
        f"model load {result['model_load_seconds']:.2f} s "
        f"(reference {result['reference_model_load_seconds']:.2f} s; medians of {args.loads})"
    )
    for name in names:
        ratio = medians[name] / medians["reference"]
        print(
            f"  {name:<16} {medians[name]:6.1f} × real time ({ratio:.2f} × reference); "
            f"{cpu_medians[name]:5.1f} s of audio per CPU second"
        )
    before, after = result["load_average"]
    print(f"load average before/after: {before} / {after} (on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
