"""The review page over 1,000 prompts: how long it takes to write, what it adds to an
export, and how soon Chromium has it interactive.

    python tests/bench/bench_review.py [--prompts 1000] [--runs 5] [--no-browser]

Fills a temporary cache with `--prompts` entries: 20 espeak-ng syntheses (24 kHz mono,
0.8–3.5 s, real speech) at 50 gains each, every one its own text, key and loudness.
Then, each figure the median over `--runs` rounds:

- `export_entries` of every entry without the page and with it, alternated so both see
  the same disk; the ratio is what the page adds to an export (target: ≤ 1.10), as the
  ratio of the medians and as the median of each round's ratio (steadier when the disk's
  `fsync` times swing, as on a shared machine). From 200 prompts the export measures in
  a worker process while it writes (review.PageMeasurer);
- `export_page` alone (reading every WAV back and measuring it in this process,
  waveforms included, and rendering; target: ≤ 3 s for 1,000 prompts), and the page's
  size;
- in Debian's headless Chromium (selenium), from `file://`: the time until the page's
  script has built every row (`performance.mark("review-ready")`) and until the document
  is interactive (`domInteractive`), target ≤ 2 s; then a search typed into the box.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from voiceprep.cache import AudioCache
from voiceprep.decoding import decode
from voiceprep.export import ExportItem, export_entries
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.loudness import integrated_loudness, to_float, to_pcm
from voiceprep.review import export_page

RATE = 24000
IDENTITY = BackendIdentity("espeak", None, "en", {})
PHRASES = [
    "Thank you for calling.",
    "One moment, please.",
    "Please hold while I look that up for you.",
    "Press one for sales, two for support.",
    "Goodbye, and have a nice day.",
    "I'm transferring you to a specialist now.",
    "Is there anything else I can help you with?",
    "Your appointment is confirmed.",
    "Sorry, I didn't catch that.",
    "Could you spell your last name?",
    "Our office hours are nine to five.",
    "Please say or enter your account number.",
    "Welcome back!",
    "Let me check that for you.",
    "That order has shipped.",
    "You can also reach us online.",
    "I have found your reservation.",
    "Please stay on the line.",
    "Your balance is forty-two dollars.",
    "Thanks, goodbye.",
]


def fill(cache: AudioCache, prompts: int, scratch: Path) -> None:
    clips = []
    for i, phrase in enumerate(PHRASES):
        wav = scratch / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), phrase], check=True)
        clips.append(to_float(b"".join(decode(wav, rate=RATE, channels=1)), 1))
    for i in range(prompts):
        samples = clips[i % len(clips)] * (0.35 + 0.6 * ((i * 7) % 50) / 50)
        text = f"{PHRASES[i % len(PHRASES)]} ({i})"
        cache.put(
            cache_key(IDENTITY, text, rate=RATE, channels=1),
            to_pcm(samples),
            rate=RATE,
            channels=1,
            text=text,
            identity=IDENTITY,
            loudness=integrated_loudness(samples, RATE)[0],  # as warm records it
        )


def browser_times(page: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    profile = tempfile.mkdtemp(prefix="voiceprep-bench-chromium-")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--window-size=1400,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    ready, interactive, search = [], [], []
    try:
        for _ in range(runs):
            driver.get(page.as_uri())
            ready_ms, dom_ms = driver.execute_script(
                "return [performance.getEntriesByName('review-ready')[0].startTime,"
                " performance.getEntriesByType('navigation')[0].domInteractive]"
            )
            ready.append(ready_ms / 1000)
            interactive.append(dom_ms / 1000)
            box = driver.find_element(By.ID, "search")
            start = time.perf_counter()
            box.send_keys("(99")
            shown = driver.find_element(By.ID, "count").text
            search.append(time.perf_counter() - start)
            assert shown.startswith("11 of "), shown  # (99), (990) … (999)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return ready, interactive, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="voiceprep-bench-review-"))
    try:
        with AudioCache(scratch / "cache") as cache:
            fill(cache, args.prompts, scratch)
            items = [ExportItem(key=e.key, text=e.text) for e in cache.entries()]
            plain, reviewed, pages = [], [], []
            for run in range(args.runs):
                for review in (False, True) if run % 2 else (True, False):
                    out = scratch / f"out-{run}-{review}"
                    start = time.perf_counter()
                    report = export_entries(cache, items, out, review=review)
                    (reviewed if review else plain).append(time.perf_counter() - start)
                start = time.perf_counter()
                html = export_page(cache, report)
                pages.append(time.perf_counter() - start)
            page = report.directory / "index.html"
            page.write_bytes(html)
        print(f"prompts: {args.prompts}, audio: {sum(e.duration for e in report.written):.0f} s")
        base, full = statistics.median(plain), statistics.median(reviewed)
        print(f"export without the page: {base:.3f} s (median of {args.runs})")
        paired = statistics.median(r / p for r, p in zip(reviewed, plain, strict=True))
        print(f"export with the page:    {full:.3f} s, ratio {full / base:.3f}")
        print(f"ratio within each round: {paired:.3f} (median of {args.runs})")
        rounds = ", ".join(f"{p:.2f}/{r:.2f}" for p, r in zip(plain, reviewed, strict=True))
        print(f"rounds (without/with, s): {rounds}")
        print(f"export_page alone:       {statistics.median(pages):.3f} s, {len(html)} bytes")
        if not args.no_browser:
            ready, interactive, search = browser_times(page, args.runs)
            built, usable = statistics.median(ready), statistics.median(interactive)
            typed = statistics.median(search) * 1000
            print(
                f"chromium: rows built {built:.3f} s, interactive (domInteractive) "
                f"{usable:.3f} s, a search {typed:.0f} ms (medians of {args.runs})"
            )
        print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
