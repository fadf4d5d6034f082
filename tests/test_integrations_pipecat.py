"""voiceprep.integrations.pipecat in a real Pipecat pipeline: a test source, the cached
service, a recording sink, run by Pipecat's worker and runner (PipelineWorker/WorkerRunner:
the current names of PipelineTask/PipelineRunner); plus the real OpenAITTSService against
the local fake OpenAI server, warmed by `voiceprep warm`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import FakeProvider, voice_frequency
from integrations_helpers import pipecat_counting_service, text_frequency, warm
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from voiceprep.cache import AudioCache
from voiceprep.integrations.pipecat import CachedTTSMixin, pcm_frames

logger.remove()  # Pipecat logs every frame link at DEBUG: keep only its warnings
logger.add(sys.stderr, level="WARNING")


class Recorder(FrameProcessor):
    """A pass-through processor keeping every frame that goes downstream through it."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(frame)
        await self.push_frame(frame, direction)


def cached_service(cache_dir: Path, sample_rate: int | None = 24000, **kwargs: Any) -> Any:
    """The counting service with the mixin; `sample_rate=None` takes the pipeline's."""
    base = type(pipecat_counting_service(sample_rate))

    class CachedCounting(CachedTTSMixin, base):  # type: ignore[misc, valid-type]
        pass

    return CachedCounting(cache_dir=cache_dir, **kwargs)


async def run_pipeline(
    service: Any,
    frames: list[Frame],
    *,
    rate: int = 24000,
    during: Callable[[PipelineWorker], Awaitable[None]] | None = None,
) -> list[Frame]:
    """Run source → service → sink until every frame (then an EndFrame) went through."""
    source, sink = Recorder(), Recorder()
    worker = PipelineWorker(
        Pipeline([source, service, sink]),
        params=PipelineParams(audio_out_sample_rate=rate),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: Any, _frame: Frame) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), 30)
        for frame in frames:
            await worker.queue_frame(frame)
        if during is not None:
            await during(worker)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 60)
    return sink.frames


def speech(frames: list[Frame]) -> list[Frame]:
    """The TTS frames, in order: Started, audio..., Stopped."""
    kinds = (TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame)
    return [f for f in frames if isinstance(f, kinds)]


def audio_of(frames: list[Frame]) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))


def shape(frames: list[Frame]) -> list[str]:
    """Started/Stopped and runs of audio, as a short list: ['S', 'a', 'E', ...]."""
    out: list[str] = []
    for f in speech(frames):
        mark = {TTSStartedFrame: "S", TTSAudioRawFrame: "a", TTSStoppedFrame: "E"}[type(f)]
        if not (mark == "a" and out and out[-1] == "a"):
            out.append(mark)
    return out


def entries(cache_dir: Path) -> int:
    with AudioCache(cache_dir) as cache:
        return len(cache)


async def test_a_hit_plays_like_live_audio_without_calling_the_service(tmp_path: Path) -> None:
    first = cached_service(tmp_path)
    live = await run_pipeline(first, [TTSSpeakFrame("Hello and welcome.")])
    assert first.calls == ["Hello and welcome."]
    assert entries(tmp_path) == 1

    second = cached_service(tmp_path)  # a new agent process on the same cache
    hit = await run_pipeline(second, [TTSSpeakFrame("Hello and welcome.")])
    assert second.calls == []
    assert shape(hit) == shape(live) == ["S", "a", "E"]
    assert audio_of(hit) == audio_of(live) == second.pcm_for("Hello and welcome.")
    started = next(f for f in hit if isinstance(f, TTSStartedFrame))
    context_ids = {f.context_id for f in speech(hit)}
    assert context_ids == {started.context_id} and started.context_id
    assert {(f.sample_rate, f.num_channels) for f in hit if isinstance(f, TTSAudioRawFrame)} == {
        (24000, 1)
    }


async def test_each_sentence_of_a_turn_is_its_own_entry_in_order(tmp_path: Path) -> None:
    def turn(*sentences: str) -> list[Frame]:
        return [
            LLMFullResponseStartFrame(),
            *(TextFrame(s + " ") for s in sentences),
            LLMFullResponseEndFrame(),
        ]

    one = cached_service(tmp_path)
    await run_pipeline(one, turn("Your table is booked.", "See you at eight."))
    assert one.calls == ["Your table is booked.", "See you at eight."]
    assert entries(tmp_path) == 2

    two = cached_service(tmp_path)
    frames = await run_pipeline(
        two, turn("Your table is booked.", "Parking is free.", "See you at eight.")
    )
    assert two.calls == ["Parking is free."]  # the two known sentences were hits
    expected = b"".join(
        two.pcm_for(s) for s in ("Your table is booked.", "Parking is free.", "See you at eight.")
    )
    assert audio_of(frames) == expected  # hit, miss, hit: played in the order spoken
    assert shape(frames)[0] == "S" and shape(frames)[-1] == "E"


async def test_an_interruption_mid_synthesis_stores_nothing(tmp_path: Path) -> None:
    service = cached_service(tmp_path)
    service.delay = 0.2

    async def barge_in(worker: PipelineWorker) -> None:
        await asyncio.wait_for(service.chunk_started.wait(), 10)
        await worker.queue_frame(InterruptionFrame())
        # The synthesis ends: cancelled by the interruption, or (the bug) run to the end.
        await asyncio.wait_for(service.run_ended.wait(), 10)

    frames = await run_pipeline(
        service, [TTSSpeakFrame("A long answer nobody waits for.")], during=barge_in
    )
    assert service.calls == ["A long answer nobody waits for."]
    assert len(audio_of(frames)) < len(service.pcm_for("A long answer nobody waits for."))
    assert entries(tmp_path) == 0


async def test_a_failed_synthesis_stores_nothing(tmp_path: Path) -> None:
    service = cached_service(tmp_path)
    service.fail = True
    frames = await run_pipeline(service, [TTSSpeakFrame("This one breaks.")])
    assert service.calls == ["This one breaks."]
    assert audio_of(frames)  # the half that arrived was played...
    assert entries(tmp_path) == 0  # ...and not stored
    again = cached_service(tmp_path)
    await run_pipeline(again, [TTSSpeakFrame("This one breaks.")])
    assert again.calls == ["This one breaks."]  # synthesized again, whole this time
    assert entries(tmp_path) == 1


async def test_the_key_holds_the_sample_rate(tmp_path: Path) -> None:
    at_24k = cached_service(tmp_path, sample_rate=None)
    await run_pipeline(at_24k, [TTSSpeakFrame("Rate matters.")], rate=24000)
    # A 16 kHz pipeline gets the entry converted (same pitch and length), never the 24 kHz
    # samples played at 16 kHz (a deeper, slower voice).
    at_16k = cached_service(tmp_path, sample_rate=None)
    frames = await run_pipeline(at_16k, [TTSSpeakFrame("Rate matters.")], rate=16000)
    assert at_16k.calls == []
    audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in audio} == {16000}
    samples = pcm_to_array(audio_of(frames), 1)[0]
    assert len(samples) == pytest.approx(0.4 * 16000, abs=32)
    assert dominant_frequency(samples, 16000) == pytest.approx(
        text_frequency("Rate matters."), abs=5
    )
    assert at_16k.voiceprep_key("Rate matters.") != at_24k.voiceprep_key("Rate matters.")


def test_pcm_frames_for_sound_effects() -> None:
    pcm = bytes(range(256)) * 10  # 1280 mono samples
    frames = list(pcm_frames(pcm, sample_rate=16000, frame_ms=20))
    assert all(type(f) is OutputAudioRawFrame for f in frames)  # not TTS audio
    assert [len(f.audio) // 2 for f in frames] == [320] * 4
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(16000, 1)}
    assert b"".join(f.audio for f in frames) == pcm


async def test_warmed_entries_are_hits_for_the_openai_service(
    tmp_path: Path, openai_server: FakeProvider
) -> None:
    from pipecat.services.openai.tts import OpenAITTSService

    class CachedOpenAITTS(CachedTTSMixin, OpenAITTSService):
        pass

    done = warm(
        "-b", "openai", "--voice", "shimmer", "-O", "model=tts-1", "-O", "response_format=pcm",
        "-O", f"base_url={openai_server.base_url}", "-r", "24000",
        "--cache-dir", str(tmp_path),
        stdin="Thanks for waiting.\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert openai_server.request_count == 1

    service = CachedOpenAITTS(
        cache_dir=tmp_path,
        api_key=openai_server.api_key,
        base_url=openai_server.base_url,
        settings=OpenAITTSService.Settings(voice="shimmer", model="tts-1"),
    )
    frames = await run_pipeline(
        service, [TTSSpeakFrame("Thanks for waiting."), TTSSpeakFrame("Anything else?")]
    )
    assert openai_server.request_count == 2  # only "Anything else?" went to the server
    assert [r.json["input"] for r in openai_server.requests[1:]] == ["Anything else?"]
    samples = pcm_to_array(audio_of(frames), 1)[0]
    assert dominant_frequency(samples, 24000) == pytest.approx(voice_frequency("shimmer"), abs=5)
    with AudioCache(tmp_path) as cache:
        assert cache.contains(service.voiceprep_key("Anything else?"))
        assert len(cache) == 2


async def test_websocket_style_services_store_whole_contexts_and_keep_order(
    tmp_path: Path,
) -> None:
    from integrations_helpers import pipecat_websocket_style_service

    base = type(pipecat_websocket_style_service())

    class CachedWebsocket(CachedTTSMixin, base):  # type: ignore[misc, valid-type]
        pass

    first = CachedWebsocket(cache_dir=tmp_path)
    await run_pipeline(first, [TTSSpeakFrame("Live from the socket.")])
    assert first.calls == ["Live from the socket."]
    assert entries(tmp_path) == 1  # its context held that one sentence, completed

    second = CachedWebsocket(cache_dir=tmp_path)
    second.latency = 0.3  # the live sentence's audio arrives well after the hit's
    frames = await run_pipeline(
        second, [TTSSpeakFrame("Something not cached."), TTSSpeakFrame("Live from the socket.")]
    )
    assert second.calls == ["Something not cached."]
    # The hit waits its turn: live audio first, as the text was sent.
    expected = second.pcm_for("Something not cached.") + second.pcm_for("Live from the socket.")
    assert audio_of(frames) == expected
    assert entries(tmp_path) == 2
