"""CachedTTS held to what livekit/agents' own TTS tests (tests/test_tts.py) require of any
TTS, on a miss and on a hit, plus the defects they found when the TTS under test was
wrapped: a retried synthesis cached garbled, a segfault on aclose() during a store, error
events that did not reach the wrapper's listeners. LiveKit's `FakeTTS` lives in its test
tree, not in the package, so `FlakyTTS` is written here against LiveKit's public API with
the same behaviour: audio pushed 10 ms at a time, an exception after it for the first
`failures` attempts."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from audiogen import sine_pcm
from integrations_helpers import livekit_counting_tts
from livekit.agents import APIConnectionError, APIError, tts, utils
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    USERDATA_TIMED_TRANSCRIPT,
    APIConnectOptions,
    TimedString,
)

from voiceprep.cache import AudioCache
from voiceprep.integrations.livekit import CachedTTS

RATE = 24000


class FlakyTTS(tts.TTS):
    """`seconds` of a tone per synthesis; the first `failures` attempts raise `error`
    after pushing all their audio (a connection dropped before the provider's end)."""

    def __init__(self, *, seconds: float = 1.0, failures: int = 0, error: Exception | None = None):
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=RATE, num_channels=1
        )
        self.seconds, self.failures = seconds, failures
        self.error = error or APIConnectionError("connection dropped mid-stream")
        self.attempts = 0

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _FlakyStream(tts=self, input_text=text, conn_options=conn_options)


class _FlakyStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner = self._tts
        assert isinstance(owner, FlakyTTS)
        owner.attempts += 1
        output_emitter.initialize(
            request_id=utils.shortuuid("flaky_"),
            sample_rate=RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        pcm = sine_pcm(440.0, owner.seconds, RATE)
        step = RATE // 100 * 2
        for start in range(0, len(pcm), step):
            output_emitter.push(pcm[start : start + step])
            await asyncio.sleep(0)
        if owner.attempts <= owner.failures:
            raise owner.error
        output_emitter.flush()


class Events:
    """Every event of one name a TTS emits."""

    def __init__(self, emitter: tts.TTS, name: str) -> None:
        self.events: list[Any] = []
        emitter.on(name, lambda *args: self.events.append(args[0]))


async def synthesis_checks(tts_v: tts.TTS, text: str, conn: APIConnectOptions) -> list[Any]:
    """What test_tts.py's `_do_synthesis` asserts of every TTS; returns the last attempt's
    events (a retry restarts under a fresh request id, never interleaved)."""
    audio_events = [ev async for ev in tts_v.synthesize(text, conn_options=conn)]
    request_ids = [ev.request_id for ev in audio_events]
    assert all(request_ids)
    unique_ids = list(dict.fromkeys(request_ids))
    assert [rid for rid, _ in itertools.groupby(request_ids)] == unique_ids
    last = [ev for ev in audio_events if ev.request_id == unique_ids[-1]]
    assert all(not ev.is_final for ev in last[:-1])
    assert 0 < last[-2].frame.duration < 0.25
    assert last[-1].is_final and 0 < last[-1].frame.duration < 0.25
    return last


def seconds_of(events: list[Any]) -> float:
    return sum(ev.frame.duration for ev in events)


async def test_the_framework_checks_pass_on_a_miss_and_on_a_hit(tmp_path: Path) -> None:
    inner = FlakyTTS()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    conn = APIConnectOptions(max_retry=0, timeout=5)
    for _ in ("miss", "hit"):
        last = await synthesis_checks(cached, "Framework checks.", conn)
        assert abs(seconds_of(last) - 1.0) < 0.02
    assert inner.attempts == 1
    await cached.aclose()


async def test_a_retry_after_partial_audio_is_played_and_stored_as_one_attempt(
    tmp_path: Path,
) -> None:
    """test_tts_synthesize_retry_after_partial_audio, through the wrapper: two request ids,
    the retry's 1.0 s complete and final, one recoverable error event and one metrics event
    on the wrapper; only the complete attempt is stored, so the hit replays 1.0 s."""
    inner = FlakyTTS(failures=1)
    cached = CachedTTS(inner, cache_dir=tmp_path)
    errors, metrics = Events(cached, "error"), Events(cached, "metrics_collected")
    stream = cached.synthesize("Retried once.", conn_options=APIConnectOptions(max_retry=3))
    audio_events = [ev async for ev in stream]
    await stream.aclose()
    assert inner.attempts == 2
    assert len(errors.events) == 1 and errors.events[0].recoverable is True
    request_ids = [ev.request_id for ev in audio_events]
    assert len(set(request_ids)) == 2
    retry_start = request_ids.index(request_ids[-1])
    assert all(rid == request_ids[0] for rid in request_ids[:retry_start])
    retry_events = audio_events[retry_start:]
    assert retry_events[-1].is_final
    assert abs(seconds_of(retry_events) - 1.0) < 0.1
    await asyncio.sleep(0)
    assert len(metrics.events) == 1
    await cached.cache.drain()
    with AudioCache(tmp_path) as disk:
        stored = disk.get(cached.key("Retried once."), rate=RATE, channels=1)
    assert stored is not None and len(stored) == RATE * 2  # 1.0 s, not 1.0 + the failed part
    hit = [ev async for ev in cached.synthesize("Retried once.")]
    assert len({ev.request_id for ev in hit}) == 1 and abs(seconds_of(hit) - 1.0) < 0.02
    assert inner.attempts == 2
    await cached.aclose()


async def test_errors_propagate_as_from_the_wrapped_tts(tmp_path: Path) -> None:
    """test_tts_synthesize_error_propagation: no audio is an APIError, a bug re-raises."""
    inner = FlakyTTS(seconds=0.0)
    cached = CachedTTS(inner, cache_dir=tmp_path)
    errors = Events(cached, "error")
    conn = APIConnectOptions(max_retry=0, timeout=0.5)
    with pytest.raises(APIError, match="no audio frames"):
        await synthesis_checks(cached, "fake_text", conn)
    assert errors.events and errors.events[-1].recoverable is False
    inner.seconds, inner.failures, inner.error = 0.5, 99, RuntimeError("test error")
    with pytest.raises(RuntimeError, match="test error"):
        await synthesis_checks(cached, "fake_text", conn)
    await cached.cache.drain()
    assert not cached.cache.contains("fake_text", voice_id=cached.identity.voice)
    await cached.aclose()


async def test_two_sessions_share_one_synthesis_from_its_first_frame(tmp_path: Path) -> None:
    first_inner, second_inner = livekit_counting_tts(), livekit_counting_tts()
    first_inner.delay = second_inner.delay = 0.05
    first = CachedTTS(first_inner, cache_dir=tmp_path)
    second = CachedTTS(second_inner, cache_dir=tmp_path)  # another session, same voice
    text = "A brand new sentence for both."
    stream_a = first.synthesize(text)
    heard_a = [await stream_a.__anext__()]  # session A is already playing it
    heard_b = [ev async for ev in second.synthesize(text)]  # B asks mid-way
    heard_a += [ev async for ev in stream_a]
    whole = first_inner.pcm_for(text)
    for heard in (heard_a, heard_b):
        assert b"".join(ev.frame.data.tobytes() for ev in heard[:-1]) == whole
    assert len(first_inner.calls) + len(second_inner.calls) == 1
    await first.aclose()
    await second.aclose()


def test_aclose_while_cancelled_stores_are_writing_never_crashes(tmp_path: Path) -> None:
    """200 × (store → cancel → aclose) in a fresh process: it used to segfault (the SQLite
    connection closed under the write still running in its thread)."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from integrations_helpers import livekit_counting_tts
        from voiceprep.integrations.livekit import CachedTTS

        async def main():
            inner = livekit_counting_tts()
            pcm = inner.pcm_for("x")
            for i in range(200):
                cached = CachedTTS(inner, cache_dir={str(tmp_path)!r})
                task = asyncio.ensure_future(cached.cache.store(f"phrase {{i}}", pcm))
                for _ in range(i % 3 + 1):  # cancelled at each stage of the write
                    await asyncio.sleep(0)
                task.cancel()
                await cached.aclose()
            print("ok")

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


async def test_the_final_frame_of_a_miss_does_not_wait_for_the_disk_write(
    tmp_path: Path,
) -> None:
    import threading

    inner = FlakyTTS(seconds=0.5)
    cached = CachedTTS(inner, cache_dir=tmp_path)
    disk = cached.cache.disk
    assert disk is not None
    writing, release = threading.Event(), threading.Event()
    real_put = disk.put

    def slow_put(*args: Any, **kwargs: Any) -> Any:  # an fsync that takes its time
        writing.set()
        release.wait(10)
        return real_put(*args, **kwargs)

    disk.put = slow_put  # type: ignore[method-assign]
    events = [ev async for ev in cached.synthesize("Played before it is written.")]
    assert events[-1].is_final  # the whole phrase played…
    key = cached.key("Played before it is written.")
    assert not disk.contains(key)  # …before its entry was written
    release.set()
    await cached.cache.drain()
    assert writing.is_set() and disk.contains(key)
    await cached.aclose()


class WordsTTS(FlakyTTS):
    """A TTS with aligned transcripts, as Cartesia's and ElevenLabs' plugins push them: a
    TimedString per word, 0.3 s apart."""

    def __init__(self) -> None:
        super().__init__()
        self._capabilities = tts.TTSCapabilities(streaming=False, aligned_transcript=True)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _WordsStream(tts=self, input_text=text, conn_options=conn_options)


class _WordsStream(_FlakyStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("words_"),
            sample_rate=RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        for i, word in enumerate(self.input_text.split()):
            output_emitter.push_timed_transcript(
                TimedString(f"{word} ", start_time=0.3 * i, end_time=0.3 * i + 0.25)
            )
        output_emitter.push(sine_pcm(440.0, 1.0, RATE))
        output_emitter.flush()
        owner = self._tts
        assert isinstance(owner, FlakyTTS)
        owner.attempts += 1


def aligned_words(events: list[Any]) -> list[tuple[str, float, float]]:
    return [
        (str(t).strip(), t.start_time, t.end_time)
        for ev in events
        for t in ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])
    ]


async def test_a_hit_sends_the_aligned_transcript_of_its_miss(tmp_path: Path) -> None:
    cached = CachedTTS(WordsTTS(), cache_dir=tmp_path)
    assert cached.capabilities.aligned_transcript
    conn = APIConnectOptions(max_retry=0, timeout=5)
    said = []
    for _ in ("miss", "hit"):
        said.append(
            aligned_words(
                [ev async for ev in cached.synthesize("Hello there you", conn_options=conn)]
            )
        )
    assert said[0] == [("Hello", 0.0, 0.25), ("there", 0.3, 0.55), ("you", 0.6, 0.85)]
    assert [(w, pytest.approx(s), pytest.approx(e)) for w, s, e in said[1]] == said[0]
    assert cached.wrapped.attempts == 1  # type: ignore[attr-defined]
    await cached.aclose()
    # A TTS without aligned transcripts: the wrapper declares none, and sends none.
    plain = CachedTTS(FlakyTTS(), cache_dir=tmp_path / "plain")
    assert not plain.capabilities.aligned_transcript
    assert aligned_words([ev async for ev in plain.synthesize("Hello", conn_options=conn)]) == []
    await plain.aclose()
