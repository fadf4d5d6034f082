"""The review page (index.html of every export, serve's /review), checked in Debian's
headless Chromium driven by selenium: real espeak-ng prompts, a real `voiceprep serve`
process, ffmpeg's ebur128 as the independent loudness meter.

The browser tests save a screenshot of the page to $VOICEPREP_REVIEW_SCREENSHOT (default:
<tmp>/voiceprep-review.png) and print its path.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers import run_voiceprep
from loudmeter import ffmpeg_loudness
from servehelpers import ServerProcess

from voiceprep import review
from voiceprep.cache import AudioCache
from voiceprep.export import ExportItem, export_entries
from voiceprep.loudness import to_float
from voiceprep.review import CEILING, measure_prompt

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "review-token-1234"

PROMPTS = [
    ("greeting", "Thank you for calling. How can I help you today?"),
    ("hold", "One moment, please."),
    ("script", "<script>document.title='pwned'</script> says \"hi\" & 'bye'"),
    ("img", '"><img src=x onerror="document.title=\'pwned\'"> then goodbye'),
]


def _page_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="review-data" [^>]*>(.*?)</script>', html, re.S)
    assert found, "no inline data in the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as reader:
        return reader.getnframes() / reader.getframerate()


@pytest.fixture(scope="module")
def prompt_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A cache warmed with espeak-ng: the four prompts (exported with `warm --export`), and
    "Goodbye." twice as loud with half a second of silence before it."""
    root = tmp_path_factory.mktemp("review")
    phrases = root / "prompts.csv"
    with phrases.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows(PROMPTS)
    loud = root / "loud.txt"
    loud.write_text("Goodbye.\n", encoding="utf-8")
    cache, out = root / "cache", root / "export"
    done = run_voiceprep(
        "warm", phrases, "-b", "espeak", "--cache-dir", cache, "--export", out, cwd=root
    )
    assert done.returncode == 0, done.stderr
    assert b"index.html" in done.stderr
    done = run_voiceprep(
        "warm", loud, "-b", "espeak", "-O", "amplitude=200", "--pad-start", "500",
        "--cache-dir", cache, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    everything = root / "everything"
    done = run_voiceprep("cache", "export", everything, "--cache-dir", cache, cwd=root)
    assert done.returncode == 0, done.stderr
    return {"root": root, "cache": cache, "export": out, "everything": everything}


# --- the page as written ------------------------------------------------------------------


def test_export_writes_the_page_with_every_prompt_measured(prompt_set: dict[str, Path]) -> None:
    out = prompt_set["export"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["entries"]
    data = _page_data((out / "index.html").read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in data["rows"]}
    assert sorted(rows) == sorted(ident for ident, _ in PROMPTS)
    for entry in manifest:
        row = rows[entry["id"]]
        assert row["text"] == entry["text"]
        assert row["src"] == entry["file"]
        assert (row["backend"], row["voice"]) == ("espeak", entry["voice"])
        assert row["duration"] == pytest.approx(_wav_seconds(out / entry["file"]), abs=0.001)
        with wave.open(str(out / entry["file"])) as reader:
            pcm, rate = reader.readframes(reader.getnframes()), reader.getframerate()
        lufs, peak = ffmpeg_loudness(to_float(pcm, 1), rate)  # the independent meter
        assert row["loudness"] == pytest.approx(lufs, abs=0.2)
        assert row["truePeak"] == pytest.approx(peak, abs=0.3)
        assert row["gate"] is None  # what warm stored passed the gate
        assert len(row["wave"]) == 100 and max(row["wave"]) > 10
    assert data["median"] == pytest.approx(
        float(np.median([r["loudness"] for r in data["rows"]])), abs=0.01
    )


def test_outliers_are_flagged(prompt_set: dict[str, Path]) -> None:
    data = _page_data((prompt_set["everything"] / "index.html").read_text(encoding="utf-8"))
    goodbye = [r for r in data["rows"] if r["text"] == "Goodbye."]
    padded = [r for r in goodbye if r["lead"] > 0.45]
    assert len(padded) == 1, goodbye
    assert any(f.endswith("ms of silence before") for f in padded[0]["flags"])
    louder = re.compile(r"loudness \+\d+\.\d LU from the median")
    assert any(louder.fullmatch(f) for f in padded[0]["flags"])
    calm = [r for r in data["rows"] if r["text"] == PROMPTS[0][1]]
    assert calm and not any("LU from" in f or "before" in f for f in calm[0]["flags"])


def test_measures_flag_clipping_peaks_silence_and_the_gate() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.clip(1.3 * np.sin(2 * np.pi * 440 * t), -1, 1)  # clipped, over the ceiling
    signal = np.concatenate([np.zeros(rate // 2), tone, np.zeros(rate // 2)])
    pcm = np.clip(np.rint(signal * 32768), -32768, 32767).astype("<i2").tobytes()
    m = measure_prompt(pcm, rate=rate, channels=1, text="Hello there, how are you today?")
    assert m.clipped > 100
    assert m.true_peak is not None and m.true_peak > CEILING
    assert m.leading_silence == pytest.approx(0.5, abs=0.002)
    assert m.trailing_silence == pytest.approx(0.5, abs=0.002)
    silent = measure_prompt(bytes(rate * 2), rate=rate, channels=1, text="Hello there.")
    assert silent.loudness is None and silent.gate is not None and "silent" in silent.gate


def test_no_review_leaves_the_page_out(prompt_set: dict[str, Path], tmp_path: Path) -> None:
    root = prompt_set["root"]
    done = run_voiceprep(
        "warm", root / "prompts.csv", "-b", "espeak", "--cache-dir", prompt_set["cache"],
        "--export", tmp_path / "a", "--no-review",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a" / "manifest.json").exists()
    assert not (tmp_path / "a" / "index.html").exists()
    done = run_voiceprep(
        "cache", "export", tmp_path / "b", "--cache-dir", prompt_set["cache"], "--no-review"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.suffix for p in (tmp_path / "b").iterdir()) == [".json"] + [".wav"] * 6


def _export_pages(cache_dir: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Export every entry of the cache (a copy, so that reading it changes nothing the other
    tests see) into `out`; its page's rows by key."""
    copy = out.parent / f"{out.name}-cache"
    shutil.copytree(cache_dir, copy)
    with AudioCache(copy) as cache:
        items = [ExportItem(key=e.key, text=e.text) for e in cache.entries()]
        report = export_entries(cache, items, out)
    assert report.ok and report.written
    rows = _page_data((out / "index.html").read_text(encoding="utf-8"))["rows"]
    return {row["key"]: row for row in rows}


def test_many_prompts_are_measured_by_a_worker(
    prompt_set: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From `WORKER_FROM` prompts on, a worker process measures the WAVs as the export
    writes them: the page is the one measured in the export's process, which measured
    nothing for it itself."""
    monkeypatch.setattr(review, "WORKER_FROM", 10**9)
    here = _export_pages(prompt_set["cache"], tmp_path / "here")
    calls: list[str] = []
    original = review.measure_prompt

    def counted(pcm: bytes, **kwargs: Any) -> Any:
        calls.append(kwargs["text"])
        return original(pcm, **kwargs)

    monkeypatch.setattr(review, "measure_prompt", counted)
    monkeypatch.setattr(review, "WORKER_FROM", 1)
    assert _export_pages(prompt_set["cache"], tmp_path / "worker") == here
    assert calls == []
    assert len(here) == 6 and all(row["loudness"] is not None for row in here.values())


@pytest.mark.parametrize(
    "worker",
    [
        "import sys; sys.exit(3)",  # gone before it reads: the export measures itself
        "import sys; sys.stdin.read(); print('no measures')",  # an answer that is not one
        "import sys; sys.stdin.buffer.readline(); sys.stdout.write('[]')",  # reads, answers none
    ],
)
def test_a_failing_worker_leaves_the_page_whole(
    prompt_set: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: str
) -> None:
    monkeypatch.setattr(review, "WORKER_FROM", 10**9)
    here = _export_pages(prompt_set["cache"], tmp_path / "here")
    monkeypatch.setattr(review, "WORKER_FROM", 1)
    monkeypatch.setattr(review, "_WORKER", worker)
    assert _export_pages(prompt_set["cache"], tmp_path / "failed") == here


# --- in the browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    profile = tempfile.mkdtemp(prefix="voiceprep-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver: Any, url: str) -> None:
    driver.get_log("browser")  # drop what earlier tests left
    driver.get_log("performance")
    driver.get(url)
    driver.execute_async_script(
        "var done = arguments[0];"
        "(function wait() { performance.getEntriesByName('review-ready').length"
        " ? done() : setTimeout(wait, 20); })();"
    )


def _console_problems(driver: Any) -> list[Any]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _player_durations(driver: Any) -> dict[str, float]:
    """Each row's player, brought near the screen (where the page makes it), loaded: its
    row's name → the duration the browser read from the audio."""
    result: dict[str, float] = driver.execute_async_script(
        """
        var done = arguments[0], rows = document.querySelectorAll('#prompts tbody tr');
        var out = {}, left = rows.length;
        rows.forEach(function (tr) {
          tr.scrollIntoView();
        });
        var deadline = Date.now() + 20000;
        (function wait() {
          var audios = document.querySelectorAll('#prompts tbody audio');
          if (audios.length < rows.length && Date.now() < deadline) {
            rows.forEach(function (tr) { tr.scrollIntoView(); });
            return setTimeout(wait, 50);
          }
          rows.forEach(function (tr) {
            var name = tr.querySelector('.name').textContent, audio = tr.querySelector('audio');
            if (!audio) { out[name] = -1; if (--left === 0) done(out); return; }
            function finish() { out[name] = audio.duration; if (--left === 0) done(out); }
            if (audio.readyState >= 1) return finish();
            audio.addEventListener('loadedmetadata', finish);
            audio.addEventListener('error', function () {
              out[name] = -2; if (--left === 0) done(out);
            });
            audio.load();
          });
        })();
        """
    )
    return result


def _screenshot(driver: Any, capsys: pytest.CaptureFixture[str], name: str) -> Path:
    default = Path(tempfile.gettempdir()) / "voiceprep-review.png"
    path = Path(os.environ.get("VOICEPREP_REVIEW_SCREENSHOT") or default)
    if name != "review":
        path = path.with_name(f"{path.stem}-{name}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(path))
    with capsys.disabled():
        print(f"\nreview page screenshot: {path}")
    return path


def test_page_in_chromium_from_file(
    prompt_set: dict[str, Path], browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out = prompt_set["export"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["entries"]
    _open(browser, (out / "index.html").as_uri())
    assert _console_problems(browser) == []

    # Text stays text: no markup of the prompts' made it into the document.
    assert browser.title != "pwned"
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    shown = {
        tr.find_element(By.CSS_SELECTOR, ".name").text: tr.find_element(By.CSS_SELECTOR, ".text")
        for tr in browser.find_elements(By.CSS_SELECTOR, "#prompts tbody tr")
    }
    for ident, text in PROMPTS:
        assert shown[ident].get_attribute("textContent") == text

    # Every player plays its entry's audio, of its duration.
    durations = _player_durations(browser)
    for entry in manifest:
        assert durations[entry["id"]] == pytest.approx(entry["duration"], abs=0.01)

    # The search box filters, from the keyboard.
    search = browser.find_element(By.ID, "search")
    search.send_keys("moment")
    visible = [tr for tr in browser.find_elements(By.CSS_SELECTOR, "#prompts tbody tr")]
    names = [tr.find_element(By.CSS_SELECTOR, ".name").text for tr in visible if tr.is_displayed()]
    assert names == ["hold"]
    assert browser.find_element(By.ID, "count").text == "1 of 4 prompts shown"
    search.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
    assert browser.find_element(By.ID, "count").text == "4 of 4 prompts shown"

    # Sorting by loudness and by duration, by keyboard: Tab from the search box reaches
    # the checkbox, then the sort buttons.
    def order() -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#prompts tbody tr .name")]

    by_id = {e["id"]: e for e in manifest}
    rows = {r["name"]: r for r in _page_data((out / "index.html").read_text())["rows"]}
    loudness_button = browser.find_element(By.CSS_SELECTOR, "button[data-sort=loudness]")
    loudness_button.send_keys(Keys.ENTER)
    assert order() == sorted(rows, key=lambda n: rows[n]["loudness"])
    header = loudness_button.find_element(By.XPATH, "..")
    assert header.get_attribute("aria-sort") == "ascending"
    loudness_button.send_keys(Keys.ENTER)
    assert order() == sorted(rows, key=lambda n: rows[n]["loudness"], reverse=True)
    browser.find_element(By.CSS_SELECTOR, "button[data-sort=duration]").click()
    assert order() == sorted(by_id, key=lambda n: by_id[n]["duration"])
    search.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "flagged-only"

    # Labelled for screen readers.
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('#prompts tbody audio, .play'))"
        ".every(function (a) { return /^Play ./.test(a.getAttribute('aria-label')); })"
    )
    assert browser.find_element(By.CSS_SELECTOR, "label[for=search]").text == "Search"
    caption = browser.find_element(By.ID, "spread-caption").text
    assert re.match(r"4 prompts from −\d+\.\d LUFS to −\d+\.\d LUFS, median", caption)

    # Nothing but the page's own files was requested: no network.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
    )
    requested = [
        json.loads(e["message"])["message"]["params"]["request"]["url"]
        for e in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in e["message"]
    ]
    assert all(u.startswith("file://") for u in resources), resources
    network = [u for u in requested if not u.startswith(("file:", "data:", "chrome:"))]
    assert network == []  # (chrome: are the browser's own media controls)
    assert out.joinpath("hold.wav").as_uri() in requested  # the log did see the players
    assert _console_problems(browser) == []
    _screenshot(browser, capsys, "review")


def test_a_bad_script_would_be_blocked(prompt_set: dict[str, Path], browser: Any) -> None:
    """The page's policy runs its own script only: an injected one is refused (and the
    refusal is what the console-error checks above would catch)."""
    page = prompt_set["root"] / "tampered.html"
    html = (prompt_set["export"] / "index.html").read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", "<script>document.title='pwned'</script></body>"))
    _open(browser, page.as_uri())
    assert browser.title != "pwned"
    assert any("Content Security Policy" in e["message"] for e in _console_problems(browser))


# --- voiceprep serve's /review ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(prompt_set: dict[str, Path]) -> Iterator[ServerProcess]:
    args = ["-b", "espeak", "--read-only", "--cache-dir", str(prompt_set["cache"])]
    with ServerProcess(args, env={"VOICEPREP_SERVE_TOKEN": TOKEN}) as process:
        yield process


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"reviewer:{password}".encode()).decode()


def test_serve_review_needs_the_token(server: ServerProcess) -> None:
    url = server.url("/review")
    bare = httpx.get(url)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith('Basic realm="voiceprep"')
    assert httpx.get(url, headers={"Authorization": _basic("wrong")}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Basic %%%"}).status_code == 401
    for auth in (_basic(TOKEN), f"Bearer {TOKEN}"):
        page = httpx.get(url, headers={"Authorization": auth})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
    # Basic works on the API too (one token, two ways to send it).
    assert httpx.get(server.url("/v1/models"), headers={"Authorization": _basic(TOKEN)}).is_success


def test_serve_review_audio_route(server: ServerProcess, prompt_set: dict[str, Path]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    data = _page_data(httpx.get(server.url("/review"), headers=auth).text)
    assert len(data["rows"]) == 6  # the four prompts, the loud one and its raw synthesis
    row = data["rows"][0]
    assert httpx.get(server.url("/" + row["src"])).status_code == 401
    audio = httpx.get(server.url("/" + row["src"]), headers=auth)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    wav = Path(prompt_set["root"] / "served.wav")
    wav.write_bytes(audio.content)
    assert _wav_seconds(wav) == pytest.approx(row["duration"], abs=0.001)
    for bad in ("0" * 64, "..%2Fcache.sqlite", "%2e%2e", row["key"][:20]):
        missing = httpx.get(server.url(f"/review/audio/{bad}.wav"), headers=auth)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] in ("not_cached", None)


def test_serve_review_in_chromium(
    server: ServerProcess, browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": _basic(TOKEN)}}
    )
    try:
        _open(browser, server.url("/review"))
        assert _console_problems(browser) == []
        data = _page_data(
            httpx.get(server.url("/review"), headers={"Authorization": f"Bearer {TOKEN}"}).text
        )
        durations = _player_durations(browser)
        for row in data["rows"]:
            assert durations[row["name"]] == pytest.approx(row["duration"], abs=0.01)
        assert _console_problems(browser) == []
        _screenshot(browser, capsys, "serve")
    finally:
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def test_players_far_down_a_long_page_come_from_the_keyboard(
    prompt_set: dict[str, Path], browser: Any, tmp_path: Path
) -> None:
    """A long page shows a Play button where a row is far from the screen; Enter on it
    puts the row's player in its place, focused and playing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from voiceprep.review import ReviewRow, render

    hold = prompt_set["export"] / "hold.wav"
    shutil.copy(hold, tmp_path / "hold.wav")
    with wave.open(str(hold)) as reader:
        pcm, rate = reader.readframes(reader.getnframes()), reader.getframerate()
    measures = measure_prompt(pcm, rate=rate, channels=1, text="One moment, please.")
    rows = [
        ReviewRow(f"{i:064x}", f"hold-{i}", "One moment, please.", "hold.wav", "espeak", None,
                  measures)
        for i in range(200)
    ]  # fmt: skip
    page = tmp_path / "index.html"
    page.write_text(render(rows, title="long"), encoding="utf-8")
    _open(browser, page.as_uri())
    assert _console_problems(browser) == []
    last = browser.find_elements(By.CSS_SELECTOR, "#prompts tbody tr")[-1]
    button = last.find_element(By.CSS_SELECTOR, "button.play")  # far from the screen
    assert button.get_attribute("aria-label") == "Play hold-199"
    browser.execute_script("arguments[0].focus({preventScroll: true})", button)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    player = last.find_element(By.CSS_SELECTOR, "audio")
    assert browser.switch_to.active_element == player
    duration, playing = browser.execute_async_script(
        "var a = arguments[0], done = arguments[1];"
        "function report() { done([a.duration, !a.paused]); }"
        "a.readyState >= 1 ? report() : a.addEventListener('loadedmetadata', report);",
        player,
    )
    assert duration == pytest.approx(measures.duration, abs=0.01)
    assert playing
    assert _console_problems(browser) == []


def test_telephony_layouts_get_a_page_too(prompt_set: dict[str, Path], tmp_path: Path) -> None:
    """An Asterisk export: one row per prompt (not per file), playing its 8 kHz WAV; with
    only raw codecs, no player, and the measures of the cached audio."""
    root = prompt_set["root"]
    common = ["-b", "espeak", "--cache-dir", prompt_set["cache"], "--layout", "asterisk"]
    for codecs, player in (("ulaw,wav", "en/hold.wav"), ("ulaw,g722", None)):
        out = tmp_path / codecs.replace(",", "-")
        done = run_voiceprep(
            "warm", root / "prompts.csv", *common, "--codecs", codecs, "--export", out
        )
        assert done.returncode == 0, done.stderr
        rows = {r["name"]: r for r in _page_data((out / "index.html").read_text())["rows"]}
        assert sorted(rows) == sorted(ident for ident, _ in PROMPTS)
        assert rows["hold"]["src"] == player
        assert rows["hold"]["duration"] == pytest.approx(
            _wav_seconds(prompt_set["export"] / "hold.wav"), abs=0.01
        )
