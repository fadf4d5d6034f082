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

`--section warm`: `voiceprep warm` (a fresh cache, 30 phrases) against the plain loop a
user writes over piper's API (load the voice, `synthesize_wav` each phrase), both as
processes with their start-up, paired and interleaved (the order alternates run by run);
the ratio is the median of the per-pair ratios. `--busy` runs a process spinning on a core
during both (a concurrent CPU load); `--cpus 0` / `--cpus 0,1` runs both under `taskset`.

`--section ci`: the case CI lives in — 1,000 phrases of which 10 changed since the cache
was filled: `warm` against re-running the plain loop over the list (measured on a sample
of 100 and scaled).

    python tests/bench/bench_piper.py --section warm --runs 5 [--busy] [--cpus 0]
    python tests/bench/bench_piper.py --section ci --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


# 30 prompt-like phrases for `warm` against the plain loop (the workload).
WARM_PHRASES = PHRASES + [
    "Your balance is forty two dollars and seventeen cents.",
    "We are closed for the holiday. Please call again tomorrow.",
    "To repeat this menu, press star.",
    "Your package was delivered this morning at the front desk.",
    "The estimated wait time is less than five minutes.",
    "Please enter your account number, followed by the pound key.",
    "Sorry, that number is not valid. Please try again.",
    "You have three new messages.",
    "Your payment has been received. Thank you.",
    "For hours and directions, press four.",
    "Please say yes or no.",
    "I can help you reset your password.",
    "Your order number is seven, four, two, nine.",
    "Please wait while I look that up.",
    "An agent will call you back within one business day.",
    "That appointment slot is no longer available.",
    "Would you like to hear more options?",
    "Your verification code is eight, one, five, three.",
    "Thanks for your patience. We're almost there.",
    "This call may be recorded for quality assurance.",
    "Our offices are open Monday to Friday, nine to five.",
    "Let me connect you with someone who can help.",
]

CI_PHRASES = 1000
CI_CHANGED = 10

# The plain loop a user writes over piper's API: load the voice, synthesize each phrase,
# write it as a WAV. Run as its own process, start-up included, like `voiceprep warm`.
PLAIN_LOOP = """
import sys, wave
from pathlib import Path
from piper import PiperVoice
model, config, phrases, out = sys.argv[1:5]
voice = PiperVoice.load(model, config_path=config)
for index, text in enumerate(Path(phrases).read_text().splitlines()):
    with wave.open(str(Path(out) / f"{index}.wav"), "wb") as wav:
        voice.synthesize_wav(text, wav)
"""


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


# --- warm against the plain loop ---------------------------------------------------------


def _timed(argv: list[str]) -> float:
    # As an installed package runs: with bytecode (pip compiles it at install), even where
    # PYTHONDONTWRITEBYTECODE is set; the warm-up run writes it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def plain_loop(phrases: Path, out: Path, prefix: list[str]) -> float:
    """Wall seconds of the plain loop over piper's API, as a process."""
    files = resolve_voice(None)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    argv = [sys.executable, "-c", PLAIN_LOOP, str(files.model), str(files.config)]
    return _timed([*prefix, *argv, str(phrases), str(out)])


def warm(phrases: Path, cache: Path, prefix: list[str], *args: str) -> float:
    """Wall seconds of `voiceprep warm` into `cache`, as a process."""
    argv = [sys.executable, "-m", "voiceprep", "warm", str(phrases), "--cache-dir", str(cache)]
    return _timed([*prefix, *argv, "--json", *args])


@contextlib.contextmanager
def cpu_load(busy: bool, prefix: list[str]) -> Iterator[None]:
    """One process spinning on a core while the block runs (a concurrent CPU load)."""
    if not busy:
        yield
        return
    burner = subprocess.Popen([*prefix, sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        burner.kill()
        burner.wait()


def bench_warm_vs_plain(
    runs: int, *, busy: bool, cpus: str | None, extra: list[str]
) -> dict[str, object]:
    """`voiceprep warm` (fresh cache) against the plain loop, paired, the order alternating
    run by run; the ratio is the median of the per-pair ratios."""
    prefix = ["taskset", "-c", cpus] if cpus else []
    with tempfile.TemporaryDirectory(prefix="bench-piper-") as tmp:
        work = Path(tmp)
        phrases = work / "phrases.txt"
        phrases.write_text("".join(f"{text}\n" for text in WARM_PHRASES))
        plain_loop(phrases, work / "out", prefix)  # warm-up: page cache, imports
        plains, warms, ratios = [], [], []
        for run in range(runs):
            with cpu_load(busy, prefix):
                pair = []
                for kind in ("plain", "warm") if run % 2 == 0 else ("warm", "plain"):
                    if kind == "plain":
                        pair.append(("plain", plain_loop(phrases, work / "out", prefix)))
                    else:
                        cache = work / f"cache-{run}"
                        pair.append(("warm", warm(phrases, cache, prefix, *extra)))
                        shutil.rmtree(cache)
            times = dict(pair)
            plains.append(times["plain"])
            warms.append(times["warm"])
            ratios.append(times["warm"] / times["plain"])
    return {
        "phrases": len(WARM_PHRASES),
        "cpus": cpus or f"all ({os.cpu_count()})",
        "concurrent_load": busy,
        "warm_args": extra,
        "plain_s": round(statistics.median(plains), 3),
        "warm_s": round(statistics.median(warms), 3),
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def ci_phrases(changed: int) -> list[str]:
    """1,000 phrases; the first `changed` of them reworded (a commit that edits ten)."""
    texts = [f"Item {i}: {WARM_PHRASES[i % len(WARM_PHRASES)]}" for i in range(CI_PHRASES)]
    return [f"{t} (updated)" if i < changed else t for i, t in enumerate(texts)]


def bench_ci(runs: int, sample: int) -> dict[str, object]:
    """The case CI lives in: 1,000 phrases of which 10 changed since the cache was filled.

    `warm` (a cache holding the 990 unchanged entries) against re-running the plain loop
    over the whole list. The plain loop over 1,000 phrases is measured on a `sample` of
    them (the same mix) and scaled, so the benchmark does not hold the shared machine for
    many minutes; warm runs over the real list. The cache is filled directly (silence
    under each key warm computes): what is measured is warm's work, not the filling."""
    from voiceprep.cache import AudioCache
    from voiceprep.keys import cache_key

    with tempfile.TemporaryDirectory(prefix="bench-piper-ci-") as tmp:
        work = Path(tmp)
        original, edited = ci_phrases(0), ci_phrases(CI_CHANGED)
        phrases = work / "phrases.txt"
        phrases.write_text("".join(f"{t}\n" for t in edited))
        template = work / "template"
        identity = PiperBackend().identity(None)
        with AudioCache(template) as cache:
            for text in original[CI_CHANGED:]:
                key = cache_key(identity, text, rate=24000, channels=1)
                pcm = bytes(2 * 24000)  # 1 s of silence
                cache.put(key, pcm, rate=24000, channels=1, text=text, identity=identity)
        sample_file = work / "sample.txt"
        sample_file.write_text("".join(f"{t}\n" for t in edited[:: CI_PHRASES // sample]))
        # One plain run of the sample (it is the long one), between the warm runs.
        warms, plains = [], []
        for run in range(runs):
            cache = work / f"cache-{run}"
            shutil.copytree(template, cache)
            warms.append(warm(phrases, cache, []))
            shutil.rmtree(cache)
            if run == runs // 2:
                plains.append(plain_loop(sample_file, work / "out", []) * CI_PHRASES / sample)
    return {
        "phrases": CI_PHRASES,
        "changed": CI_CHANGED,
        "warm_s": round(statistics.median(warms), 2),
        "plain_loop_s (scaled from a sample)": round(statistics.median(plains), 1),
        "plain_sample": sample,
        "ratio": round(statistics.median(warms) / statistics.median(plains), 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--section",
        choices=("backend", "warm", "ci"),
        default="backend",
        help="backend: the backend against piper-tts in-process; warm: `voiceprep warm` "
        "against the plain loop, as processes; ci: 1,000 phrases of which 10 changed",
    )
    parser.add_argument("--busy", action="store_true", help="warm: with a concurrent CPU load")
    parser.add_argument("--cpus", help="warm: run both under `taskset -c CPUS`")
    parser.add_argument(
        "--warm-arg", action="append", default=[], help="warm: an extra argument for warm"
    )
    args = parser.parse_args()
    if args.section == "ci":
        print(json.dumps(bench_ci(args.runs, sample=100), indent=None if not args.json else 2))
        return
    if args.section == "warm":
        figures = bench_warm_vs_plain(
            args.runs, busy=args.busy, cpus=args.cpus, extra=args.warm_arg
        )
        print(json.dumps(figures, indent=None if not args.json else 2))
        return

    from piper import PiperVoice

    load_before = os.getloadavg()[0]
    files = resolve_voice(None)
    loads, stock_loads = [], []
    for _ in range(args.loads):
        with Clock() as clock:
            voice = piper_backend._load(files)  # bypasses the per-process pool on purpose
        loads.append(clock.wall)
        with Clock() as clock:
            stock = PiperVoice.load(files.model, config_path=files.config)
        stock_loads.append(clock.wall)

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
