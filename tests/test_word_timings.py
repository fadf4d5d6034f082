"""Word timings: Piper's, checked against the audio with ffmpeg's silencedetect, and the
conversions every provider's shape goes through."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import threading
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from audiogen import pcm_to_array, sine
from fakeproviders import CartesiaEvents, FakeProvider, Fault, fake_cartesia
from helpers import CLI
from servehelpers import ServerProcess

from voiceprep import TTSAudioCache
from voiceprep.backends.cartesia import CartesiaBackend
from voiceprep.backends.piper import PiperBackend
from voiceprep.cache import AudioCache
from voiceprep.loudness import to_pcm
from voiceprep.process import ProcessSettings, process_pcm
from voiceprep.timings import (
    Word,
    from_characters,
    from_phonemes,
    from_word_lists,
    shifted,
    words_from_json,
    words_to_json,
)


def _silences(pcm: bytes, rate: int, tmp_path: Path) -> list[tuple[float, float]]:
    """(start, end) of each pause ffmpeg's silencedetect finds (-40 dB, at least 100 ms:
    longer than the closure of a stop consonant inside a word)."""
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-i", str(path), "-af", "silencedetect=n=-40dB:d=0.1"]
        + ["-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    starts = [float(v) for v in re.findall(r"silence_start: ([\d.]+)", log)]
    ends = [float(v) for v in re.findall(r"silence_end: ([\d.]+)", log)]
    return list(zip(starts, ends, strict=False))


@pytest.fixture(scope="module")
def piper() -> PiperBackend:
    return PiperBackend()


@pytest.mark.parametrize(
    "text",
    [
        "Your call is important to us. Please hold.",
        "Press 1 for sales, or 25 for billing.",  # "25" is spoken as two words
    ],
)
async def test_piper_words_lie_on_the_audio_in_order(
    piper: PiperBackend, text: str, tmp_path: Path
) -> None:
    audio = await piper.synthesize(text, rate=24000, channels=1)
    assert audio.words is not None
    assert audio.rate is not None
    duration = len(audio.data) / 2 / audio.rate
    assert [w.text for w in audio.words] == text.split()
    for before, after in zip(audio.words, audio.words[1:], strict=False):
        assert before.start < before.end <= after.start
    assert audio.words[0].start > 0 and audio.words[-1].end <= duration
    # Where the audio rises out of a pause that ffmpeg hears, a word starts there, and no
    # word is said inside a pause.
    pauses = _silences(audio.data, audio.rate, tmp_path)
    inner = [(start, end) for start, end in pauses if start > 0 and end < duration - 0.05]
    assert inner, "the voice made no pause between words"
    for start, end in inner:
        assert min(abs(w.start - end) for w in audio.words) < 0.06, (end, audio.words)
        assert not any(start + 0.03 < w.start < end - 0.06 for w in audio.words)
    # The first word starts where the audio first reaches -40 dBFS.
    samples = pcm_to_array(audio.data, 1)[0]
    first = int(np.argmax(np.abs(samples) >= 0.01)) / audio.rate
    assert abs(audio.words[0].start - first) < 0.03


async def test_piper_gives_no_timings_rather_than_wrong_ones(piper: PiperBackend) -> None:
    # espeak reads "Hello ... world" as one phoneme group: the words cannot be paired.
    audio = await piper.synthesize("Hello ... world", rate=24000, channels=1)
    assert audio.data
    assert audio.words is None


def test_phoneme_groups_pair_with_words_across_sentences() -> None:
    sentences = [
        ([("^", 10), ("h", 5), ("i", 5), (".", 20), ("$", 10)], 60),
        ([("^", 10), ("a", 10), (" ", 5), ("b", 10), ("!", 5), ("$", 5)], 50),
    ]
    words = from_phonemes("Hi. A b!", sentences, 10, lambda w: 1)
    assert words == (Word("Hi.", 1.0, 2.0), Word("A", 7.0, 8.0), Word("b!", 8.5, 9.5))


def test_phoneme_groups_that_do_not_pair_give_none() -> None:
    sentences = [([("a", 10), (" ", 1), ("b", 10)], 21)]
    assert from_phonemes("one two three", sentences, 10, lambda w: 1) is None


def test_character_and_word_alignments() -> None:
    chars = list("Hi there")
    starts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    ends = [s + 0.1 for s in starts]
    assert from_characters(chars, starts, ends) == (
        Word("Hi", 0.0, 0.2),
        Word("there", 0.3, pytest.approx(0.8)),
    )
    assert from_word_lists(["Hi", "there"], [0.0, 0.3], [0.2, 0.8]) == (
        Word("Hi", 0.0, 0.2),
        Word("there", 0.3, 0.8),
    )
    with pytest.raises(ValueError):
        from_word_lists(["Hi"], [0.0, 1.0], [0.2])


def test_timings_move_with_the_audio() -> None:
    words = (Word("a", 0.1, 0.3), Word("b", 0.5, 0.9))
    assert shifted(words, 0.25, 2.0) == (Word("a", 0.35, 0.55), Word("b", 0.75, 1.15))
    # A trim of 0.4 s cuts "a" wholly and clamps nothing else.
    assert shifted(words, -0.4, 0.6) == (Word("b", pytest.approx(0.1), pytest.approx(0.5)),)


@pytest.mark.parametrize(
    "value",
    [
        "words",
        [{"text": "a", "start": 0.0}],
        [{"text": "", "start": 0.0, "end": 0.1}],
        [{"text": "a", "start": float("nan"), "end": 0.1}],
        [{"text": "a", "start": 0.0, "end": 99.0}],  # past the audio
        [{"text": "a", "start": 0.5, "end": 0.6}, {"text": "b", "start": 0.1, "end": 0.2}],
        [{"text": "a", "start": True, "end": 0.2}],
    ],
)
def test_timings_read_from_an_entry_are_checked(value: object) -> None:
    with pytest.raises(ValueError):
        words_from_json(value, duration=1.0)


def test_timings_round_trip_through_json() -> None:
    words = (Word("Hello,", 0.0581, 0.2213), Word("world.", 0.26, 0.9))
    assert words_from_json(words_to_json(words), duration=1.0) == words


def test_processing_says_how_far_the_audio_moved() -> None:
    # 0.5 s of silence, then a 1 s tone: a word said over the tone starts at 0.5 s.
    rate = 24000
    tone = sine(440, 1.0, rate).reshape(-1, 1)
    samples = np.concatenate([np.zeros((rate // 2, 1), np.float32), tone])
    settings = ProcessSettings(trim_silence=True, trim_pad=50, pad_start=100)
    out = process_pcm(to_pcm(samples), rate=rate, channels=1, settings=settings)
    assert out.offset == pytest.approx(0.1 - 0.45, abs=1e-3)
    word = shifted((Word("tone", 0.5, 1.5),), out.offset, len(out.pcm) / 2 / rate)[0]
    onset = int(np.argmax(np.abs(pcm_to_array(out.pcm, 1)[0]) > 0.01)) / rate
    assert word.start == pytest.approx(onset, abs=0.002)


# --- timings travel with the entry -------------------------------------------------------


def _ls_words(cli: CLI, cache_dir: Path) -> dict[str, list[dict[str, object]] | None]:
    return {entry["text"]: entry["words"] for entry in _ls(cli, cache_dir)}


def _ls(cli: CLI, cache_dir: Path) -> list[dict[str, Any]]:
    code, out, _ = cli("cache", "ls", "--json", "--cache-dir", cache_dir)
    assert code == 0
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


def test_timings_survive_rebuild_merge_pull_and_export(cli: CLI, tmp_path: Path) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("Your call is important to us.\nHello ... world\n", encoding="utf-8")
    cache_dir = tmp_path / "cache"
    assert cli("warm", phrases, "--cache-dir", cache_dir).code == 0
    words = _ls_words(cli, cache_dir)
    said = words["Your call is important to us."]
    assert said is not None
    assert [w["text"] for w in said] == ["Your", "call", "is", "important", "to", "us."]
    assert words["Hello ... world"] is None  # no timings rather than wrong ones

    with AudioCache(cache_dir) as cache:  # a new index, made from the files alone
        cache.rebuild()
    assert _ls_words(cli, cache_dir) == words

    merged = tmp_path / "merged"
    assert cli("cache", "merge", cache_dir, "--cache-dir", merged).code == 0
    assert _ls_words(cli, merged) == words

    remote = f"file://{tmp_path / 'remote'}"
    pulled = tmp_path / "pulled"
    assert cli("cache", "push", remote, "--cache-dir", cache_dir).code == 0
    assert cli("cache", "pull", remote, "--cache-dir", pulled).code == 0
    assert _ls_words(cli, pulled) == words

    export = tmp_path / "export"
    assert cli("cache", "export", export, "--cache-dir", cache_dir, "--no-review").code == 0
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    assert {e["text"]: e["words"] for e in manifest["entries"]} == words


def test_processing_moves_the_timings_with_the_audio(cli: CLI, tmp_path: Path) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("Please hold.\n", encoding="utf-8")
    plain, padded = tmp_path / "plain", tmp_path / "padded"
    assert cli("warm", phrases, "--cache-dir", plain).code == 0
    # The raw synthesis is reprocessed: the same words, 250 ms later.
    assert cli("cache", "merge", plain, "--cache-dir", padded).code == 0
    assert cli("warm", phrases, "--cache-dir", padded, "--pad-start", "250").code == 0
    before = _ls_words(cli, plain)["Please hold."]
    raw = _ls(cli, plain)[0]
    after = [e for e in _ls(cli, padded) if e["key"] != raw["key"]]
    assert before is not None and len(after) == 1
    assert after[0]["duration"] == pytest.approx(raw["duration"] + 0.25, abs=1e-3)
    moved = after[0]["words"]
    assert [w["text"] for w in moved] == [w["text"] for w in before]
    for old, new in zip(before, moved, strict=True):
        assert new["start"] == pytest.approx(old["start"] + 0.25, abs=1e-3)


async def test_tts_audio_cache_offers_the_timings_of_a_hit(tmp_path: Path) -> None:
    # A miss is streamed sentence by sentence: the timings of the second sentence are
    # placed after the first one's audio.
    text = "Goodbye. Thank you for calling."
    cache = TTSAudioCache(PiperBackend(), directory=tmp_path / "cache")
    try:
        assert cache.words(text) is None
        pcm = await cache.fetch(text)
        words = cache.words(text)
        assert words is not None
        assert [w.text for w in words] == text.split()
        for before, after in zip(words, words[1:], strict=False):
            assert before.start < before.end <= after.start
        assert words[-1].end <= len(pcm) / 2 / cache.rate
        alone = await PiperBackend().synthesize("Goodbye.", rate=cache.rate, channels=1)
        assert alone.rate is not None
        assert words[1].start > 0.8 * len(alone.data) / 2 / alone.rate
    finally:
        await cache.aclose()


# --- serve: word timestamps in OpenAI's SSE stream ----------------------------------------


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_serve_sends_word_timestamps_for_a_miss_and_a_hit(tmp_path: Path) -> None:
    _serve_word_timestamps(["-b", "piper", "--cache-dir", str(tmp_path / "cache")])


def test_serve_sends_cartesias_word_timestamps(tmp_path: Path) -> None:
    with fake_cartesia() as fake:
        args = ["-b", "cartesia", "-O", f"base_url={fake.base_url}"]
        env = {"CARTESIA_API_KEY": fake.api_key}
        _serve_word_timestamps([*args, "--cache-dir", str(tmp_path / "cache")], env)
        assert fake.request_count == 1  # the hit asked nobody


def _serve_word_timestamps(args: list[str], env: dict[str, str] | None = None) -> None:
    """A miss then a hit through serve's SSE: the words of the input, inside the audio,
    the same twice; SSE required for them; none unless asked."""
    speech = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Your call is important to us.",
        "response_format": "pcm",
        "stream_format": "sse",
        "timestamp_granularities": ["word"],
    }
    with ServerProcess(args, env=env) as server:
        url = server.url("/v1/audio/speech")
        answers = [httpx.post(url, json=speech, timeout=120) for _ in ("miss", "hit")]
        refused = httpx.post(url, json={**speech, "stream_format": "audio"}, timeout=60)
        plain = httpx.post(url, json={**speech, "timestamp_granularities": []}, timeout=60)
    timed = []
    for answer in answers:
        assert answer.status_code == 200
        events = _events(answer)
        kinds = [e["type"] for e in events]
        assert kinds[-2:] == ["speech.timestamps.delta", "speech.audio.done"]
        assert set(kinds[:-2]) == {"speech.audio.delta"}
        audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-2])
        words = events[-2]["words"]
        assert [w["word"] for w in words] == speech["input"].split()
        assert words[-1]["end"] <= len(audio) / 2 / 24000
        timed.append(words)
    assert timed[0] == timed[1]  # the hit says what the miss said
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "timestamp_granularities"
    assert "speech.timestamps.delta" not in plain.text


# --- Cartesia: word timestamps in its server-sent events ----------------------------------

CARTESIA_TEXT = "Thank you for calling. Please hold while we connect you."


@pytest.fixture
def cartesia(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    with fake_cartesia(chunk_seconds=0.1) as fake:
        monkeypatch.setenv("CARTESIA_API_KEY", fake.api_key)
        yield fake


def _check_cartesia_words(words: Sequence[Any], seconds: float) -> None:
    """The words of CARTESIA_TEXT, in order, inside the audio, where the fake said them
    (it times them evenly by character across its audio)."""
    as_dicts = [w if isinstance(w, dict) else w.as_dict() for w in words]
    assert [w["text"] for w in as_dicts] == CARTESIA_TEXT.split()
    step = seconds / len(CARTESIA_TEXT)
    at = 0
    for word in as_dicts:
        at = CARTESIA_TEXT.index(word["text"], at)
        assert word["start"] == pytest.approx(at * step, abs=0.002)
        assert word["end"] == pytest.approx((at + len(word["text"])) * step, abs=0.002)
        at += len(word["text"])
    for before, after in zip(as_dicts, as_dicts[1:], strict=False):
        assert before["start"] < before["end"] <= after["start"]
    assert as_dicts[0]["start"] >= 0 and as_dicts[-1]["end"] <= seconds + 1e-3


def test_a_cartesia_warm_stores_the_words_cartesia_timed(
    cli: CLI, tmp_path: Path, cartesia: FakeProvider
) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text(CARTESIA_TEXT + "\n", encoding="utf-8")
    cache_dir = tmp_path / "cache"
    warm = ("warm", phrases, "-b", "cartesia", "-O", f"base_url={cartesia.base_url}")
    assert cli(*warm, "-r", "16000", "--cache-dir", cache_dir).code == 0
    assert cartesia.requests[-1].path == "/tts/sse"
    (entry,) = _ls(cli, cache_dir)
    assert entry["words"] is not None
    _check_cartesia_words(entry["words"], entry["duration"])


async def test_a_cartesia_miss_streams_and_a_hit_offers_its_words(
    tmp_path: Path, cartesia: FakeProvider
) -> None:
    backend = CartesiaBackend(options={"base_url": cartesia.base_url})
    cartesia.after_first_chunk = threading.Event()  # the rest of the answer waits for us
    cache = TTSAudioCache(backend, directory=tmp_path / "cache", rate=16000)
    try:
        chunks = cache.stream(CARTESIA_TEXT)
        async with asyncio.timeout(5):  # audio before the answer ends
            first = await anext(chunks)
        assert first and cartesia.in_flight == 1
        cartesia.after_first_chunk.set()
        pcm = first + b"".join([chunk async for chunk in chunks])
        words = cache.words(CARTESIA_TEXT)
        assert words is not None
        _check_cartesia_words(words, len(pcm) / 2 / 16000)
    finally:
        await cache.aclose()
    again = TTSAudioCache(backend, directory=tmp_path / "cache", rate=16000)
    try:
        assert await again.fetch(CARTESIA_TEXT) == pcm
        offered = again.words(CARTESIA_TEXT)
        assert offered is not None and words_to_json(offered) == words_to_json(words)
        assert cartesia.request_count == 1  # the hit asked nobody
    finally:
        await again.aclose()


async def test_cartesia_words_are_dropped_rather_than_wrong(cartesia: FakeProvider) -> None:
    backend = CartesiaBackend(options={"base_url": cartesia.base_url})
    events = CartesiaEvents.of(b"\0\1" * 8000, 16000, "one two", timestamps=True)
    good = b"".join(events.pieces(0.1, None))
    bad = good.replace(b'"start": [0.0', b'"start": ["zero"', 1)
    late = good.replace(b'"end": [', b'"end": [9, ', 1).replace(b'"start": [', b'"start": [8, ', 1)
    late = late.replace(b'"words": [', b'"words": ["x", ', 1)
    for body in (bad, late):
        cartesia.push(Fault(200, body=body, content_type="text/event-stream"))
        audio = await backend.synthesize("one two", rate=16000, channels=1)
        assert audio.data == b"\0\1" * 8000  # the audio still counts
        assert audio.words is None
