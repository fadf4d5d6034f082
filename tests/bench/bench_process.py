"""Benchmark of the processing chain (not collected by pytest: run it as a script).

1. **Long file**: normalize a `--minutes` stereo 44.1 kHz MP3 to -16 LUFS / -1.5 dBTP into a
   24 kHz mono s16 WAV, `voiceprep decode --loudness` against `ffmpeg-normalize` (two-pass
   `loudnorm` through the ffmpeg CLI, `-nt ebu -t -16 -tp -1.5`, downmixed first, same
   output format),
   alternating, in the same run. Target: voiceprep ≤ 1.0× ffmpeg-normalize's wall time.
2. **Warm**: for Piper prompts, the chain's time (`produce` with `--loudness -16
   --trim-silence --fade-in 5 --fade-out 10`) against Piper's own synthesis time of the
   same prompt (to 24 kHz PCM). Target: ≤ 10 % added.

    pip install ffmpeg-normalize      # bench-only
    python tests/bench/bench_process.py [--minutes 30] [--runs 3] [--prompt-runs 5]

Figures are medians of the runs. Both outputs are measured afterwards by the ffmpeg CLI's
`ebur128` so the comparison is between two results on target.
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _inputs import OUT, make_input  # noqa: E402

PHRASES = [
    "One moment, please.",
    "Thank you for calling. How can I help you today?",
    "Your call is important to us. Please stay on the line and an agent will be with you shortly.",
    "Press one for billing, two for technical support, or stay on the line for an operator.",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "Goodbye, and have a nice day!",
]


def ebur128(path: Path) -> tuple[float, float]:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true"]
        + ["-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = done.stderr[done.stderr.rfind("Summary:") :]
    found = re.search(r"I:\s+(-?[\d.]+) LUFS.*?Peak:\s+(-?[\d.]+) dBFS", summary, re.S)
    assert found, done.stderr[-500:]
    return float(found.group(1)), float(found.group(2))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def long_file(minutes: float, runs: int) -> dict[str, object]:
    source = make_input("mp3", minutes)
    ours, theirs = OUT / "process_voiceprep.wav", OUT / "process_ffmpeg_normalize.wav"
    voiceprep = [sys.executable, "-m", "voiceprep", "decode", str(source), "-o", str(ours)]
    voiceprep += ["--force", "-r", "24000", "-c", "1", "--loudness", "-16", "--true-peak", "-1.5"]
    normalize = [shutil.which("ffmpeg-normalize") or "ffmpeg-normalize", str(source)]
    normalize += ["-o", str(theirs), "-f", "-nt", "ebu", "-t", "-16", "-tp", "-1.5"]
    # Downmixed before it measures (as voiceprep does), so both outputs are on target: a
    # downmix after normalizing (`-e=-ac 1`) would leave it ~6 LU under.
    normalize += ["-prf", "aformat=channel_layouts=mono", "-c:a", "pcm_s16le", "-ar", "24000"]
    times: dict[str, list[float]] = {"voiceprep": [], "ffmpeg-normalize": []}
    for _ in range(runs):
        times["voiceprep"].append(timed(voiceprep))
        times["ffmpeg-normalize"].append(timed(normalize))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "minutes": minutes,
        "seconds": {k: round(v, 2) for k, v in medians.items()},
        "runs": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "ratio": round(medians["voiceprep"] / medians["ffmpeg-normalize"], 3),
        "measured": {"voiceprep": ebur128(ours), "ffmpeg-normalize": ebur128(theirs)},
    }


def warm_prompts(runs: int) -> dict[str, object]:
    from voiceprep.backends.piper import PiperBackend
    from voiceprep.process import ProcessSettings, produce

    backend = PiperBackend()
    settings = ProcessSettings(loudness=-16, trim_silence=True, fade_in=5, fade_out=10)

    async def synthesize(text: str) -> bytes:
        audio = await backend.synthesize(text, rate=24000, channels=1)
        return await audio.to_pcm_async(rate=24000, channels=1)

    asyncio.run(synthesize("Warm up."))  # the model load is not part of a prompt's time
    produce(asyncio.run(synthesize("Warm up.")), 24000, 1, settings)
    ratios, synth_total, chain_total = [], [], []
    for _ in range(runs):
        synth = chain = 0.0
        for text in PHRASES:
            started = time.perf_counter()
            pcm = asyncio.run(synthesize(text))
            synth += time.perf_counter() - started
            started = time.perf_counter()
            produce(pcm, 24000, 1, settings)
            chain += time.perf_counter() - started
        ratios.append(chain / synth)
        synth_total.append(synth)
        chain_total.append(chain)
    return {
        "prompts": len(PHRASES),
        "synthesis_s": round(statistics.median(synth_total), 3),
        "chain_s": round(statistics.median(chain_total), 3),
        "added": round(statistics.median(ratios), 3),
        "runs": [round(r, 3) for r in ratios],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-runs", type=int, default=5)
    parser.add_argument("--skip-long", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"load": os.getloadavg()[0]}
    report["warm"] = warm_prompts(args.prompt_runs)
    print(json.dumps(report["warm"]), flush=True)
    if not args.skip_long:
        report["long_file"] = long_file(args.minutes, args.runs)
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
