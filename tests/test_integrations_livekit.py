"""voiceprep.integrations.livekit with the real livekit-agents: CachedTTS wrapping a counting
`tts.TTS`, driven through synthesize(), LiveKit's StreamAdapter and the real OpenAI plugin
(against the local fake OpenAI server), plus the frames `cached_audio` hands `say()`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import FakeProvider, voice_frequency
from integrations_helpers import livekit_counting_tts, text_frequency, warm
from livekit import rtc
from livekit.agents import Agent, AgentSession, APIConnectionError, tts
from livekit.agents.types import APIConnectOptions
from livekit.agents.voice import io

from voiceprep.cache import AudioCache
from voiceprep.integrations.livekit import CachedTTS, audio_frames, cached_audio

NO_RETRY = APIConnectOptions(max_retry=0, timeout=5)


async def collect(stream: tts.ChunkedStream | tts.SynthesizeStream) -> list[rtc.AudioFrame]:
    """The frames a stream plays, less the 10 ms of silence LiveKit closes each segment with
    (through StreamAdapter, between sentences too)."""
    frames = []
    async with stream:
        async for ev in stream:
            f = ev.frame
            marker = f.samples_per_channel == f.sample_rate // 100 and not any(f.data.tobytes())
            if not marker:
                frames.append(f)
    return frames


def joined(frames: list[rtc.AudioFrame]) -> bytes:
    return b"".join(f.data.tobytes() for f in frames)


def entries(cache_dir: Path) -> int:
    with AudioCache(cache_dir) as cache:
        return len(cache)


async def test_a_miss_delegates_and_a_hit_never_calls_the_wrapped_tts(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    first = await collect(cached.synthesize("Welcome back."))
    assert inner.calls == ["Welcome back."]
    second = await collect(cached.synthesize("Welcome back."))
    assert inner.calls == ["Welcome back."]  # the hit did not synthesize
    for frames in (first, second):
        assert {(f.sample_rate, f.num_channels) for f in frames} == {(24000, 1)}
    assert joined(second) == joined(first) == inner.pcm_for("Welcome back.")
    await cached.aclose()

    # Another process (a new CachedTTS on the same directory) finds it on disk.
    again = livekit_counting_tts()
    reopened = CachedTTS(again, cache_dir=tmp_path)
    assert joined(await collect(reopened.synthesize("Welcome back."))) == joined(first)
    assert again.calls == []
    await reopened.aclose()


async def test_stereo_48k_hits_keep_the_tracks_format(tmp_path: Path) -> None:
    inner = livekit_counting_tts(48000, 2)
    cached = CachedTTS(inner, cache_dir=tmp_path)
    assert (cached.sample_rate, cached.num_channels) == (48000, 2)
    await collect(cached.synthesize("Stereo prompt."))
    frames = await collect(cached.synthesize("Stereo prompt."))
    assert len(inner.calls) == 1
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(48000, 2)}
    assert sum(f.samples_per_channel for f in frames) == len(inner.pcm_for("x")) // 4
    left = pcm_to_array(joined(frames), 2)[0]
    assert dominant_frequency(left, 48000) == pytest.approx(text_frequency("Stereo prompt."), abs=5)
    await cached.aclose()


async def test_stream_adapter_caches_each_sentence(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    adapter = tts.StreamAdapter(tts=cached)  # what AgentSession does with a non-streaming TTS

    async def turn(text: str) -> list[rtc.AudioFrame]:
        stream = adapter.stream(conn_options=NO_RETRY)
        stream.push_text(text)
        stream.end_input()
        return await collect(stream)

    await turn("Thank you for calling Acme support. Your order has shipped this morning.")
    assert inner.calls == [
        "Thank you for calling Acme support.",
        "Your order has shipped this morning.",
    ]
    frames = await turn("Thank you for calling Acme support. Is there anything else I can do?")
    # The recurring sentence was a hit; only the new one reached the TTS.
    assert inner.calls[2:] == ["Is there anything else I can do?"]
    audio = joined(frames)
    expected = inner.pcm_for("Thank you for calling Acme support.") + inner.pcm_for(
        "Is there anything else I can do?"
    )
    assert audio == expected  # in order, nothing lost or doubled
    await cached.cache.drain()
    assert entries(tmp_path) == 3
    # CachedTTS.stream() is the same path.
    stream = cached.stream(conn_options=NO_RETRY)
    stream.push_text("Your order has shipped this morning.")
    stream.end_input()
    assert joined(await collect(stream)) == inner.pcm_for("Your order has shipped this morning.")
    assert len(inner.calls) == 3
    await adapter.aclose()
    await cached.aclose()


async def test_an_interrupted_session_never_stores_a_truncated_phrase(tmp_path: Path) -> None:
    """A barge-in stops the session's playback; the synthesis itself completes (other
    sessions may be following it) and is stored whole, never cut where the session left."""
    inner = livekit_counting_tts()
    inner.delay = 0.05
    cached = CachedTTS(inner, cache_dir=tmp_path)
    stream = cached.synthesize("This reply gets cut off.", conn_options=NO_RETRY)
    frames = []
    async for ev in stream:  # the user barges in after the first frame
        frames.append(ev.frame)
        break
    await stream.aclose()
    whole = inner.pcm_for("This reply gets cut off.")
    assert frames and len(joined(frames)) < len(whole)
    await cached.cache.drain()
    with AudioCache(tmp_path) as cache:
        key = cached.key("This reply gets cut off.")
        assert cache.get(key, rate=24000, channels=1) == whole
    assert joined(await collect(cached.synthesize("This reply gets cut off."))) == whole
    assert inner.calls == ["This reply gets cut off."]  # the replay was a hit
    await cached.aclose()


async def test_closing_cancels_a_synthesis_in_flight_and_stores_nothing(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    inner.delay = 0.05
    cached = CachedTTS(inner, cache_dir=tmp_path)
    stream = cached.synthesize("Closing time.", conn_options=NO_RETRY)
    async for _ in stream:
        break
    await stream.aclose()
    await cached.aclose()  # the job ends: the wrapped synthesis is cancelled
    await asyncio.sleep(0.3)
    assert entries(tmp_path) == 0


async def test_a_failed_synthesis_is_never_stored(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    inner.fail = True
    cached = CachedTTS(inner, cache_dir=tmp_path)
    with pytest.raises(APIConnectionError):
        await collect(cached.synthesize("Doomed.", conn_options=NO_RETRY))
    assert entries(tmp_path) == 0
    await cached.aclose()


async def test_metrics_forward_misses_and_report_hits_as_free(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    seen: list[tuple[str, int]] = []
    cached.on("metrics_collected", lambda m: seen.append((m.label, m.characters_count)))
    await collect(cached.synthesize("Metered."))
    await collect(cached.synthesize("Metered."))
    await asyncio.sleep(0)
    assert seen == [(inner.label, len("Metered.")), (cached.label, 0)]
    assert (cached.model, cached.provider) == ("tone-1", "counting")
    await cached.aclose()
    await collect(inner.synthesize("after close"))
    assert len(seen) == 2  # aclose() stopped forwarding


async def test_cached_audio_frames_for_say(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    pcm = inner.pcm_for("Please hold.")
    frames = [f async for f in cached_audio("Please hold.", cached)]
    assert inner.calls == ["Please hold."]
    # 20 ms frames at the TTS's format; every sample there once.
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(24000, 1)}
    assert [f.samples_per_channel for f in frames[:-1]] == [480] * (len(frames) - 1)
    assert sum(f.samples_per_channel for f in frames) == len(pcm) // 2
    assert joined(frames) == pcm
    # At a 16 kHz track's rate: resampled (same pitch, same length), not replayed fast.
    low = [f async for f in cached_audio("Please hold.", cached, sample_rate=16000)]
    assert inner.calls == ["Please hold."]
    assert {(f.sample_rate, f.samples_per_channel) for f in low[:-1]} == {(16000, 320)}
    samples = pcm_to_array(joined(low), 1)[0]
    assert len(samples) == pytest.approx(len(pcm) // 2 * 2 / 3, abs=32)
    assert dominant_frequency(samples, 16000) == pytest.approx(
        text_frequency("Please hold."), abs=5
    )
    await cached.aclose()


async def test_audio_frames_cut_any_pcm() -> None:
    pcm = np.arange(1001 * 2, dtype="<i2").tobytes()  # 1001 stereo samples
    frames = [f async for f in audio_frames(pcm, sample_rate=8000, num_channels=2, frame_ms=10)]
    assert [f.samples_per_channel for f in frames] == [80] * 12 + [41]
    assert joined(frames) == pcm
    assert [f async for f in audio_frames(b"", sample_rate=8000)] == []


async def test_warmed_entries_are_hits_for_the_openai_plugin(
    tmp_path: Path, openai_server: FakeProvider
) -> None:
    from livekit.plugins import openai

    plugin = openai.TTS(
        voice="nova", base_url=openai_server.base_url, api_key=openai_server.api_key
    )
    cached = CachedTTS(plugin, cache_dir=tmp_path / "cache")
    assert cached.identity.name == "openai"
    done = warm(
        "-b", "openai", "--voice", "nova", "-O", "response_format=mp3",
        "-O", f"base_url={openai_server.base_url}", "-r", "24000",
        "--cache-dir", str(tmp_path / "cache"),
        stdin="Your call matters to us.\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert openai_server.request_count == 1
    frames = await collect(cached.synthesize("Your call matters to us."))
    assert openai_server.request_count == 1  # the warmed entry was the hit
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(24000, 1)}
    freq = dominant_frequency(pcm_to_array(joined(frames), 1)[0], 24000)
    assert freq == pytest.approx(voice_frequency("nova"), abs=5)
    # A miss goes to the server through the plugin, and is stored under warm's key.
    await collect(cached.synthesize("Something new."))
    assert openai_server.request_count == 2
    await cached.cache.drain()
    with AudioCache(tmp_path / "cache") as cache:
        assert cache.contains(cached.key("Something new."))
    await cached.aclose()
    await plugin.aclose()


class CaptureOutput(io.AudioOutput):
    """An AgentSession audio sink keeping every frame it is given (playback is instant)."""

    def __init__(self) -> None:
        super().__init__(
            label="capture",
            next_in_chain=None,
            sample_rate=None,
            capabilities=io.AudioOutputCapabilities(pause=False),
        )
        self.frames: list[rtc.AudioFrame] = []
        self._pushed = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._pushed:
            self.on_playback_started(created_at=time.time())
        self.frames.append(frame)
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        pushed, self._pushed = self._pushed, 0.0
        self.on_playback_finished(playback_position=pushed, interrupted=False)

    def clear_buffer(self) -> None:
        pass


async def test_session_say_plays_cached_frames(tmp_path: Path) -> None:
    inner = livekit_counting_tts()
    cached = CachedTTS(inner, cache_dir=tmp_path)
    session = AgentSession(tts=cached)  # no STT, LLM or VAD: nothing to download
    sink = CaptureOutput()
    session.output.audio = sink
    await session.start(agent=Agent(instructions="Say what you are told."), record=False)
    try:
        text = "Please hold the line."
        await session.say(text, audio=cached_audio(text, cached))
        pcm = inner.pcm_for(text)
        assert {(f.sample_rate, f.num_channels, f.samples_per_channel) for f in sink.frames} == {
            (24000, 1, 480)  # 20 ms frames at the TTS's format
        }
        assert joined(sink.frames) == pcm  # every sample, once, in order
        assert inner.calls == [text]

        sink.frames.clear()
        await session.say(text)  # through the session's TTS path: StreamAdapter, CachedTTS
        assert inner.calls == [text]  # a hit
        played = [f for f in sink.frames if any(f.data.tobytes())]
        assert {(f.sample_rate, f.num_channels) for f in played} == {(24000, 1)}
        assert joined(played).rstrip(b"\0") == pcm.rstrip(b"\0")
    finally:
        await session.aclose()
        await cached.aclose()
