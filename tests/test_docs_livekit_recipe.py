"""The documented LiveKit recipe works: `voiceprep decode FILE -r 48000` (README, docs/decode.md)
makes PCM that LiveKit's own `rtc.AudioFrame(data, 48000, 1, …)` and `AudioSource(48000, 1)`
take whole, with the source's duration and pitch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array, write_sine
from helpers import CLI

rtc = pytest.importorskip("livekit.rtc")


def test_decode_at_48_khz_is_what_a_livekit_audio_source_plays(cli: CLI, tmp_path: Path) -> None:
    source = write_sine(tmp_path / "hold-music.mp3", freq=440.0, seconds=1.0, codec="mp3")
    out = tmp_path / "hold-music.pcm"

    result = cli("decode", source, "-r", "48000", "-o", out)

    assert result.code == 0, result.err
    pcm = out.read_bytes()
    frame = rtc.AudioFrame(
        data=pcm, sample_rate=48000, num_channels=1, samples_per_channel=len(pcm) // 2
    )
    assert frame.duration == pytest.approx(1.0, abs=0.05)  # mp3 adds a few ms of padding
    assert dominant_frequency(pcm_to_array(pcm, 1)[0], 48000) == pytest.approx(440, abs=5)

    async def play() -> None:
        audio = rtc.AudioSource(48000, 1)
        try:
            await audio.capture_frame(frame)  # LiveKit refuses a frame it cannot play
        finally:
            await audio.aclose()

    asyncio.run(play())
