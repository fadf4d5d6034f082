"""TTSAudioCache: the original API over an original-style `stream_synthesize` TTS, in memory
and over a cache directory, plus a voiceprep backend (real espeak-ng)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from audiogen import dominant_frequency, pcm_to_array, sine

from voiceprep import SynthesizedAudio, TTSAudioCache
from voiceprep.errors import EmptyAudioError
from voiceprep.keys import BackendIdentity, cache_key

VOICE_FREQ = {None: 440.0, "low": 220.0, "high": 880.0}


def sine_pcm(freq: float, seconds: float, rate: int) -> bytes:
    samples = sine(freq, seconds, rate)[0]
    return (samples * 32767).astype("<i2").tobytes()


class StreamTTS:
    """A TTS with the original interface: async iterator of s16le PCM chunks at 24 kHz.

    Each voice speaks at its own frequency, so a test can hear which voice it was given.
    `gate`, when set, holds every synthesis until released (to observe concurrency).
    """

    sample_rate = 24000

    def __init__(self, *, fail: set[str] = frozenset(), empty: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.fail = set(fail)
        self.empty = set(empty)
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.max_active = 0

    async def stream_synthesize(
        self, text_iter: AsyncIterator[str], voice_id: str | None = None
    ) -> AsyncIterator[bytes]:
        text = "".join([part async for part in text_iter])
        self.calls.append((text, voice_id))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if text in self.fail:
                raise RuntimeError(f"provider refused {text!r}")
            if text in self.empty:
                return
            pcm = sine_pcm(VOICE_FREQ[voice_id], 0.25 + 0.01 * len(text), self.sample_rate)
            for start in range(0, len(pcm), 4000):
                yield pcm[start : start + 4000]
        finally:
            self.active -= 1


def frequency(pcm: bytes, rate: int) -> float:
    return dominant_frequency(pcm_to_array(pcm, 1)[0], rate)


async def settle() -> None:
    """Let every runnable task run until it blocks (no wall-clock waiting)."""
    for _ in range(50):
        await asyncio.sleep(0)


# --- the original behaviour, in memory -------------------------------------------------


async def test_fetch_synthesizes_once_then_serves_from_memory() -> None:
    tts = StreamTTS()
    cache = TTSAudioCache(tts)
    first = await cache.fetch("One moment.")
    second = await cache.fetch("One moment.")
    assert first == second
    assert tts.calls == [("One moment.", None)]
    assert abs(frequency(first, 24000) - 440) < 5
    assert len(cache) == 1 and "One moment." in cache


def test_max_entries_below_one_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        TTSAudioCache(StreamTTS(), max_entries=0)


async def test_memory_lru_evicts_least_recently_used() -> None:
    tts = StreamTTS()
    cache = TTSAudioCache(tts, max_entries=2)
    await cache.fetch("a")
    await cache.fetch("b")
    await cache.fetch("a")  # a is now the most recently used
    await cache.fetch("c")
    assert len(cache) == 2
    assert "a" in cache and "c" in cache and "b" not in cache
    cache.clear()
    assert len(cache) == 0 and "a" not in cache


async def test_voice_is_part_of_the_key_and_of_contains() -> None:
    tts = StreamTTS()
    cache = TTSAudioCache(tts)
    low = await cache.fetch("Hello", voice_id="low")
    assert cache.contains("Hello", voice_id="low")
    assert not cache.contains("Hello", voice_id="high")
    assert "Hello" not in cache  # `in` means the default voice
    high = await cache.fetch("Hello", voice_id="high")
    assert abs(frequency(low, 24000) - 220) < 5
    assert abs(frequency(high, 24000) - 880) < 5
    assert tts.calls == [("Hello", "low"), ("Hello", "high")]


async def test_empty_result_raises_and_is_not_cached() -> None:
    tts = StreamTTS(empty={"..."})
    cache = TTSAudioCache(tts)
    for _ in range(2):
        with pytest.raises(EmptyAudioError):
            await cache.fetch("...")
    assert len(tts.calls) == 2  # asked again: nothing was cached
    assert "..." not in cache and len(cache) == 0
    assert cache.in_flight == 0


async def test_failed_synthesis_is_not_cached_and_leaks_no_lock() -> None:
    tts = StreamTTS(fail={"bad"})
    cache = TTSAudioCache(tts)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="provider refused"):
            await cache.fetch("bad")
    assert cache.in_flight == 0
    assert len(tts.calls) == 3 and len(cache) == 0
    tts.fail.clear()
    assert await cache.fetch("bad")  # recovers once the provider does


async def test_concurrent_fetches_of_one_key_share_one_synthesis() -> None:
    tts = StreamTTS()
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts)
    waiting = [asyncio.ensure_future(cache.fetch("Please hold.")) for _ in range(6)]
    await settle()
    assert len(tts.calls) == 1
    tts.gate.set()
    results = await asyncio.gather(*waiting)
    assert len(set(results)) == 1 and results[0]
    assert len(tts.calls) == 1 and cache.in_flight == 0


async def test_concurrent_waiters_share_a_failure_and_the_lock_is_released() -> None:
    tts = StreamTTS(fail={"nope"})
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts)
    waiting = [asyncio.ensure_future(cache.fetch("nope")) for _ in range(4)]
    await settle()
    tts.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(tts.calls) == 1 and cache.in_flight == 0


async def test_cancelling_one_waiter_does_not_cancel_the_shared_synthesis() -> None:
    tts = StreamTTS()
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts)
    impatient = asyncio.ensure_future(cache.fetch("Hi"))
    patient = asyncio.ensure_future(cache.fetch("Hi"))
    await settle()
    impatient.cancel()
    await settle()
    tts.gate.set()
    assert await patient
    assert impatient.cancelled() and len(tts.calls) == 1


async def test_preload_runs_concurrently_within_its_bound() -> None:
    tts = StreamTTS()
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts)
    texts = [f"prompt {i}" for i in range(10)]
    job = asyncio.ensure_future(cache.preload(texts, concurrency=3))
    await settle()
    assert tts.active == 3  # three at once, not one (original) and not ten
    tts.gate.set()
    await job
    assert tts.max_active == 3
    assert len(cache) == 10 and all(t in cache for t in texts)


async def test_syntheses_bounds_the_calls_in_flight_across_fetches() -> None:
    """`syntheses=2`: ten fetches at once reach the TTS two at a time, and all complete."""
    tts = StreamTTS()
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts, syntheses=2)
    texts = [f"prompt {i}" for i in range(10)]
    jobs = asyncio.gather(*(cache.fetch(t) for t in texts))
    await settle()
    assert tts.active == 2 and len(tts.calls) == 2
    tts.gate.set()
    assert all(await jobs)
    assert tts.max_active == 2 and len(tts.calls) == 10
    with pytest.raises(ValueError, match="syntheses"):
        TTSAudioCache(tts, syntheses=0)


async def test_preload_attempts_every_text_then_raises_the_failure() -> None:
    tts = StreamTTS(fail={"b"})
    cache = TTSAudioCache(tts)
    with pytest.raises(RuntimeError):
        await cache.preload(["a", "b", "c"], voice_id="low")
    assert cache.contains("a", voice_id="low") and cache.contains("c", voice_id="low")
    assert not cache.contains("b", voice_id="low")


async def test_key_holds_identity_voice_rate_and_channels() -> None:
    tts = StreamTTS()
    at_24k = TTSAudioCache(tts)
    at_16k = TTSAudioCache(tts, rate=16000)
    identity = BackendIdentity(name=f"{__name__}.StreamTTS", voice="low")
    assert at_24k.key("Hi", voice_id="low") == cache_key(identity, "Hi", rate=24000, channels=1)
    assert at_16k.key("Hi", voice_id="low") == cache_key(identity, "Hi", rate=16000, channels=1)
    named = TTSAudioCache(tts, identity=BackendIdentity("acme-tts", model="v2"))
    expected = cache_key(BackendIdentity("acme-tts", "v2", "low"), "Hi", rate=24000, channels=1)
    assert named.key("Hi", voice_id="low") == expected


async def test_other_target_format_is_resampled_from_the_tts_native_rate() -> None:
    tts = StreamTTS()
    native = await TTSAudioCache(tts).fetch("Resample me")
    pcm16 = await TTSAudioCache(tts, rate=16000).fetch("Resample me")
    stereo = await TTSAudioCache(tts, channels=2).fetch("Resample me")
    assert abs(len(pcm16) / len(native) - 16000 / 24000) < 0.01
    assert abs(frequency(pcm16, 16000) - 440) < 5
    left, right = pcm_to_array(stereo, 2)
    assert len(left) == len(native) // 2 and np.allclose(left, right)


def test_tts_without_a_synthesis_method_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        TTSAudioCache(object())


# --- over a cache directory ------------------------------------------------------------


async def test_directory_mode_a_fresh_instance_hits_without_calling_the_tts(
    tmp_path: Path,
) -> None:
    first_tts = StreamTTS()
    first = TTSAudioCache(first_tts, directory=tmp_path)
    pcm = await first.fetch("Your call matters.", voice_id="low")
    first.close()
    assert first_tts.calls == [("Your call matters.", "low")]

    restarted_tts = StreamTTS()
    restarted = TTSAudioCache(restarted_tts, directory=tmp_path)
    assert len(restarted) == 0  # memory tier empty...
    assert restarted.contains("Your call matters.", voice_id="low")  # ...disk has it
    assert not restarted.contains("Your call matters.", voice_id="high")
    assert await restarted.fetch("Your call matters.", voice_id="low") == pcm
    assert restarted_tts.calls == []
    assert len(restarted) == 1
    restarted.clear()  # only the memory tier: the shared disk cache stays
    assert restarted.contains("Your call matters.", voice_id="low")
    restarted.close()


async def test_directory_entries_are_apart_by_rate(tmp_path: Path) -> None:
    tts = StreamTTS()
    native = TTSAudioCache(tts, directory=tmp_path)
    await native.fetch("Hi there")
    at_16k = TTSAudioCache(tts, directory=tmp_path, rate=16000)
    assert not at_16k.contains("Hi there")
    pcm = await at_16k.fetch("Hi there")
    assert len(tts.calls) == 2  # 24 kHz audio is never handed to a 16 kHz track
    assert abs(frequency(pcm, 16000) - 440) < 5
    native.close()
    at_16k.close()


async def test_a_damaged_disk_entry_is_synthesized_again(tmp_path: Path) -> None:
    tts = StreamTTS()
    cache = TTSAudioCache(tts, directory=tmp_path)
    good = await cache.fetch("Goodbye.")
    assert cache.disk is not None
    path = cache.disk.wav_path(cache.key("Goodbye."))
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))
    fresh = TTSAudioCache(tts, directory=tmp_path)
    assert await fresh.fetch("Goodbye.") == good
    assert len(tts.calls) == 2
    assert fresh.disk is not None and fresh.disk.verify().clean
    cache.close()
    fresh.close()


async def test_an_unwritable_cache_directory_does_not_fail_a_fetch(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    tts = StreamTTS()
    cache = TTSAudioCache(tts, directory=blocker / "cache")
    pcm = await cache.fetch("Still works.")
    assert abs(frequency(pcm, 24000) - 440) < 5
    assert await cache.fetch("Still works.") == pcm and len(tts.calls) == 1  # memory tier


_PROCESS_SCRIPT = textwrap.dedent(
    """
    import asyncio, hashlib, json, math, struct, sys
    from voiceprep import TTSAudioCache

    class Tone:
        sample_rate = 16000
        calls = 0

        async def stream_synthesize(self, text_iter, voice_id=None):
            async for _ in text_iter:
                pass
            Tone.calls += 1
            yield b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000)))
                for i in range(8000)
            )

    async def main():
        cache = TTSAudioCache(Tone(), directory=sys.argv[1])
        pcm = await cache.fetch("Welcome back.", voice_id="v1")
        cache.close()
        print(json.dumps({"calls": Tone.calls, "sha256": hashlib.sha256(pcm).hexdigest()}))

    asyncio.run(main())
    """
)


def test_a_second_process_finds_what_the_first_synthesized(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(_PROCESS_SCRIPT)
    cache_dir = tmp_path / "cache"
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, str(script), str(cache_dir)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(2)
    ]
    assert runs[0]["calls"] == 1
    assert runs[1]["calls"] == 0
    assert runs[0]["sha256"] == runs[1]["sha256"]


async def test_voiceprep_backend_fills_the_cache_the_cli_reads(tmp_path: Path) -> None:
    from voiceprep import get_backend
    from voiceprep.cli import main

    cache = TTSAudioCache(get_backend("espeak"), directory=tmp_path / "c", rate=16000)
    pcm = await cache.fetch("Hello there.")
    assert len(pcm) > 16000  # more than half a second of speech at 16 kHz
    cache.close()
    out = tmp_path / "hello.pcm"
    argv = ["cache", "get", "Hello there.", "-b", "espeak", "-r", "16000"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--cache-dir", str(tmp_path / "c"), "-o", str(out)])
    assert exit_info.value.code == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(pcm).digest()


class ToneBackend:
    """A third-party-style voiceprep backend: raw 16 kHz PCM, or nothing for "silence"."""

    name = "tone"

    def __init__(self) -> None:
        self.calls = 0

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(self.name, model="sine-1", voice=voice or "a4")

    def unavailable_reason(self) -> str | None:
        return None

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        self.calls += 1
        if text == "silence":
            return SynthesizedAudio(b"", rate=16000, channels=1)
        return SynthesizedAudio(sine_pcm(440.0, 0.5, 16000), rate=16000, channels=1)


async def test_a_backend_result_is_normalized_to_the_cache_format(tmp_path: Path) -> None:
    backend = ToneBackend()
    cache = TTSAudioCache(backend, directory=tmp_path, rate=24000, channels=2)
    pcm = await cache.fetch("beep")
    left, right = pcm_to_array(pcm, 2)
    assert abs(len(left) - 12000) < 50 and np.allclose(left, right)
    assert abs(dominant_frequency(left, 24000) - 440) < 5
    expected = cache_key(BackendIdentity("tone", "sine-1", "a4"), "beep", rate=24000, channels=2)
    assert cache.key("beep") == expected
    assert cache.disk is not None and cache.disk.contains(expected)
    cache.close()


async def test_a_backend_returning_no_audio_is_an_error_never_an_entry(tmp_path: Path) -> None:
    backend = ToneBackend()
    cache = TTSAudioCache(backend, directory=tmp_path)
    for _ in range(2):
        with pytest.raises(EmptyAudioError):
            await cache.fetch("silence")
    assert backend.calls == 2 and cache.in_flight == 0
    assert not cache.contains("silence")
    assert cache.disk is not None and len(cache.disk) == 0
    cache.close()


async def test_an_open_audio_cache_can_be_shared(tmp_path: Path) -> None:
    from voiceprep.cache import AudioCache

    with AudioCache(tmp_path) as shared:
        tts = StreamTTS()
        first = TTSAudioCache(tts, directory=shared)
        await first.fetch("Shared")
        second = TTSAudioCache(tts, directory=shared)  # e.g. another agent session
        assert second.disk is shared
        assert await second.fetch("Shared") and len(tts.calls) == 1
        assert len(shared) == 1


def test_out_of_range_formats_are_value_errors() -> None:
    with pytest.raises(ValueError):
        TTSAudioCache(StreamTTS(), rate=1000)
    with pytest.raises(ValueError):
        TTSAudioCache(StreamTTS(), channels=6)


async def test_a_cache_from_a_newer_voiceprep_is_refused_not_bypassed(tmp_path: Path) -> None:
    import sqlite3

    from voiceprep.errors import CacheVersionError

    tts = StreamTTS()
    first = TTSAudioCache(tts, directory=tmp_path)
    await first.fetch("Hello")
    first.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    later = TTSAudioCache(tts, directory=tmp_path)
    with pytest.raises(CacheVersionError, match="newer voiceprep"):
        await later.fetch("Hello")
    assert len(tts.calls) == 1


async def test_an_unreadable_index_falls_back_to_synthesis(tmp_path: Path) -> None:
    (tmp_path / "index.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    tts = StreamTTS()
    cache = TTSAudioCache(tts, directory=tmp_path)
    pcm = await cache.fetch("Hello")
    assert abs(frequency(pcm, 24000) - 440) < 5 and len(tts.calls) == 1
