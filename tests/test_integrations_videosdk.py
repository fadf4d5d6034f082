"""The VideoSDK example: `session.say(text, audio_data=await cache.fetch(text))`.

videosdk-agents cannot be installed next to voiceprep (its `vsaiortc` dependency pins
`av<17`; voiceprep needs PyAV >= 17.1), so `VideoSDKShapedTTS` is a copy of the shape of
its `videosdk.agents.TTS` (1.0.30): `sample_rate=16000, num_channels=1` by default,
`synthesize(text, voice_id=)` writing int16 PCM to `self.audio_track.add_new_bytes`, and the
base class's `stream_synthesize(text_stream)` that captures those bytes through a queue track.
`FakeSession.say` checks what VideoSDK's `AgentSession.say(audio_data=...)` expects: int16
bytes at the agent track's rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from audiogen import dominant_frequency, pcm_to_array
from integrations_helpers import text_frequency, tone_for, warm

from voiceprep import TTSAudioCache
from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity


class VideoSDKShapedTTS:
    """The shape of `videosdk.agents.TTS` with a tone-speaking `synthesize`."""

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1) -> None:
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self.audio_track: Any = None
        self.calls: list[tuple[str, str | None]] = []

    @property
    def label(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}"

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    async def synthesize(
        self, text: AsyncIterator[str] | str, voice_id: str | None = None, **kwargs: Any
    ) -> None:
        whole = text if isinstance(text, str) else "".join([t async for t in text])
        self.calls.append((whole, voice_id))
        pcm = tone_for(whole, self.sample_rate, self.num_channels)
        for start in range(0, len(pcm), 1600):
            await self.audio_track.add_new_bytes(pcm[start : start + 1600])

    async def interrupt(self) -> None:
        pass

    async def stream_synthesize(
        self, text_stream: AsyncIterator[str], **kwargs: Any
    ) -> AsyncIterator[bytes]:
        # As the base class does: swap in a track that queues what synthesize() writes.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        class QueueTrack:
            async def add_new_bytes(self, audio_data: bytes) -> None:
                await queue.put(audio_data)

        original, self.audio_track = self.audio_track, QueueTrack()

        async def run() -> None:
            try:
                await self.synthesize(text_stream, **kwargs)
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await task
        finally:
            self.audio_track = original


class FakeSession:
    """Records `say(message, audio_data=...)` as VideoSDK's AgentSession receives it."""

    def __init__(self, track_rate: int) -> None:
        self.track_rate = track_rate
        self.said: list[tuple[str, bytes]] = []

    async def say(self, message: str, *, audio_data: bytes | None = None) -> None:
        assert isinstance(audio_data, bytes) and len(audio_data) % 2 == 0  # int16
        self.said.append((message, audio_data))


async def test_say_with_cached_audio_at_the_track_rate(tmp_path: Path) -> None:
    tts = VideoSDKShapedTTS()  # 16 kHz, VideoSDK's default
    cache = TTSAudioCache(tts, directory=tmp_path)
    session = FakeSession(track_rate=tts.sample_rate)
    for _ in range(3):
        await session.say("One moment please.", audio_data=await cache.fetch("One moment please."))
    assert tts.calls == [("One moment please.", None)]  # synthesized once
    pcm = session.said[0][1]
    assert all(audio == pcm for _, audio in session.said)
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) == pytest.approx(0.4 * 16000, abs=2)  # 16 kHz samples, not 24 kHz
    assert dominant_frequency(samples, 16000) == pytest.approx(
        text_frequency("One moment please."), abs=5
    )
    assert cache.rate == 16000
    cache.close()


async def test_a_24k_track_never_gets_16k_audio(tmp_path: Path) -> None:
    tts = VideoSDKShapedTTS()
    at_16k = TTSAudioCache(tts, directory=tmp_path)
    await at_16k.fetch("Goodbye.")
    # The same TTS feeding a 24 kHz track (load_audio_file's default): another key, and
    # audio converted to 24 kHz: the same length in seconds, the same pitch.
    at_24k = TTSAudioCache(tts, directory=tmp_path, rate=24000)
    assert at_24k.key("Goodbye.") != at_16k.key("Goodbye.")
    pcm = await at_24k.fetch("Goodbye.")
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) == pytest.approx(0.4 * 24000, abs=32)
    assert dominant_frequency(samples, 24000) == pytest.approx(text_frequency("Goodbye."), abs=5)
    with AudioCache(tmp_path) as disk:
        assert {e.rate for e in disk.entries()} == {16000, 24000}
    at_16k.close()
    at_24k.close()


async def test_warm_fills_what_the_agent_fetches(tmp_path: Path) -> None:
    """CI warms with a voiceprep backend; the agent fetches with that backend's identity."""
    done = warm(
        "-b", "espeak", "--voice", "en", "-r", "16000", "--cache-dir", str(tmp_path),
        stdin="Welcome to the clinic.\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from voiceprep.backends import get_backend

    identity: BackendIdentity = get_backend("espeak", voice="en").identity("en")
    tts = VideoSDKShapedTTS()
    cache = TTSAudioCache(tts, directory=tmp_path, identity=identity)
    pcm = await cache.fetch("Welcome to the clinic.", voice_id="en")
    assert tts.calls == []  # the warmed entry
    assert len(pcm) > 16000  # over half a second of speech at 16 kHz
    cache.close()
