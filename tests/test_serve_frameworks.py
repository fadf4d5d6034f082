"""Agent frameworks' own OpenAI TTS classes pointed at `voiceprep serve` (a real process on
127.0.0.1), each playing a phrase warmed by `voiceprep warm` (the provider behind the
server is never called) and a miss (called once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeproviders import FakeProvider
from helpers import CLI
from servehelpers import ServerProcess, stored_entry

WARMED = "Welcome to the clinic."
MISS = "Your appointment is confirmed."


@pytest.fixture
def server(
    tmp_path: Path,
    openai_server: FakeProvider,
    cli: CLI,
) -> Iterator[ServerProcess]:
    """A cache with WARMED in it (through the fake provider), served over that provider."""
    cache = tmp_path / "cache"
    upstream = [
        "-b",
        "openai",
        "-O",
        f"base_url={openai_server.base_url}",
        "--cache-dir",
        str(cache),
    ]
    phrases = tmp_path / "phrases.txt"
    phrases.write_text(WARMED + "\n")
    code, _, err = cli("warm", phrases, *upstream)
    assert code == 0, err
    openai_server.reset()
    env = {"OPENAI_API_KEY": openai_server.api_key}
    with ServerProcess(upstream, env=env, cwd=tmp_path) as running:
        yield running
        assert running.stop() == 0


def seconds_cached(server: ServerProcess, text: str) -> float:
    entry = stored_entry(Path(server.args[server.args.index("--cache-dir") + 1]), text)
    assert entry is not None
    return entry.duration


async def test_livekit_openai_tts_plays_a_warmed_phrase_and_a_miss(
    server: ServerProcess, openai_server: FakeProvider
) -> None:
    from livekit.plugins import openai as lk_openai

    # LiveKit pads the last frame to its 10 ms frames, and its MP3 decoder keeps the
    # encoder's delay (about 35 ms at 24 kHz).
    for response_format, tolerance in (("mp3", 0.06), ("pcm", 0.011)):
        tts = lk_openai.TTS(
            base_url=server.base_url,
            api_key="unused",
            model="gpt-4o-mini-tts",
            voice="ash",
            response_format=response_format,
        )
        try:
            for text in (WARMED, MISS):
                samples = 0
                async with tts.synthesize(text) as stream:
                    async for event in stream:
                        frame = event.frame
                        assert (frame.sample_rate, frame.num_channels) == (24000, 1)
                        samples += frame.samples_per_channel
                assert samples / 24000 == pytest.approx(seconds_cached(server, text), abs=tolerance)
        finally:
            await tts.aclose()
    assert openai_server.request_count == 1  # only the miss, once, for both formats
    assert openai_server.requests[0].json["input"] == MISS


async def test_pipecat_openai_tts_service_plays_a_warmed_phrase_and_a_miss(
    server: ServerProcess, openai_server: FakeProvider
) -> None:
    from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.pipeline.task import PipelineParams
    from pipecat.services.openai.tts import OpenAITTSService
    from pipecat.tests.utils import run_test

    service = OpenAITTSService(
        base_url=server.base_url,
        api_key="unused",
        settings=OpenAITTSService.Settings(voice="alloy"),
    )
    down, _ = await run_test(
        service,
        frames_to_send=[TTSSpeakFrame(WARMED), TTSSpeakFrame(MISS)],
        pipeline_params=PipelineParams(audio_out_sample_rate=24000),
        start_timeout=60,
    )
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {(f.sample_rate, f.num_channels) for f in audio} == {(24000, 1)}
    total = sum(len(f.audio) for f in audio) / 2 / 24000
    expected = seconds_cached(server, WARMED) + seconds_cached(server, MISS)
    assert total == pytest.approx(expected, abs=0.01)
    assert [r.json["input"] for r in openai_server.requests] == [MISS]
