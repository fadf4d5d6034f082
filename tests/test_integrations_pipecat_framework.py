"""The Pipecat mixin held to what pipecat's own tests/test_tts_frame_ordering.py requires of
every TTS service (AggregatedText → Started → audio → Stopped → the next frame, group by
group), driven by pipecat's own `pipecat.tests.utils.run_test`, on a miss and on a hit,
for an HTTP-style service and one that pushes its own TTSStartedFrame; plus misses
shared between two sessions and cleanup() while a store is writing. (Word-timestamp
services: tests/test_integrations_pipecat_words.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiogen import sine_pcm
from pipecat.frames.frames import (
    AggregatedTextFrame,
    DataFrame,
    Frame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.tests.utils import run_test

from voiceprep.cache import AudioCache
from voiceprep.integrations.pipecat import CachedTTSMixin

RATE = 16000


@dataclass
class MarkFrame(DataFrame):
    """Sent after each sentence: it must come after that sentence's Stopped frame."""

    label: str = ""


class ToneService(TTSService):
    """An HTTP-style service: its audio yielded from run_tts, 0.3 s of tone in 3 chunks."""

    def __init__(self, *, push_start_frame: bool = True, **kwargs: Any) -> None:
        super().__init__(
            push_start_frame=push_start_frame,
            push_stop_frames=True,
            push_text_frames=False,
            sample_rate=RATE,
            settings=TTSSettings(model="tone-2", voice="tone", language=None),
            **kwargs,
        )
        self.calls: list[str] = []
        self.delay = 0.0

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        self.calls.append(text)
        if not self._push_start_frame:  # as the websocket services and Nvidia's do
            await self.create_audio_context(context_id)
            yield TTSStartedFrame(context_id=context_id)
        pcm = sine_pcm(330.0, 0.3, RATE)
        for start in range(0, len(pcm), len(pcm) // 3):
            await asyncio.sleep(self.delay)
            yield TTSAudioRawFrame(pcm[start : start + len(pcm) // 3], RATE, 1, context_id)


class CachedTone(CachedTTSMixin, ToneService):
    pass


def assert_groups(down: Sequence[Frame], labels: list[str]) -> None:
    """What `_assert_group_ordering` of pipecat's test checks, group by group."""
    kinds = (AggregatedTextFrame, TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame, MarkFrame)
    relevant = [f for f in down if isinstance(f, kinds)]
    ends = [i for i, f in enumerate(relevant) if isinstance(f, MarkFrame)]
    assert len(ends) == len(labels), [type(f).__name__ for f in relevant]
    start = 0
    for end, label in zip(ends, labels, strict=True):
        group = relevant[start : end + 1]
        start = end + 1
        types = [type(f) for f in group]
        for needed in (AggregatedTextFrame, TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame):
            assert needed in types, (label, [t.__name__ for t in types])
        begin, stop = types.index(TTSStartedFrame), types.index(TTSStoppedFrame)
        assert begin < stop < types.index(MarkFrame)
        assert all(t in (TTSAudioRawFrame, TTSTextFrame) for t in types[begin + 1 : stop])
        assert group[-1].label == label


def sentences() -> list[Frame]:
    return [
        TTSSpeakFrame(text="test one", append_to_context=False),
        MarkFrame(label="1"),
        TTSSpeakFrame(text="test two", append_to_context=False),
        MarkFrame(label="2"),
    ]


def entries(cache_dir: Path) -> int:
    with AudioCache(cache_dir) as cache:
        return len(cache)


async def test_frame_ordering_holds_on_a_miss_and_on_a_hit(tmp_path: Path) -> None:
    for push_start in (True, False):
        directory = tmp_path / str(push_start)
        for round_ in ("miss", "hit"):
            service = CachedTone(cache_dir=directory, push_start_frame=push_start)
            down, _ = await run_test(service, frames_to_send=sentences())
            assert_groups(down, ["1", "2"])
            audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
            assert audio == sine_pcm(330.0, 0.3, RATE) * 2
            assert service.calls == (["test one", "test two"] if round_ == "miss" else [])
        assert entries(directory) == 2


async def test_two_sessions_share_one_synthesis(tmp_path: Path) -> None:
    first, second = CachedTone(cache_dir=tmp_path), CachedTone(cache_dir=tmp_path)
    first.delay = 0.05
    runs = await asyncio.gather(
        run_test(first, frames_to_send=[TTSSpeakFrame("Shared news.", append_to_context=False)]),
        run_test(second, frames_to_send=[TTSSpeakFrame("Shared news.", append_to_context=False)]),
    )
    for down, _ in runs:
        audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
        assert audio == sine_pcm(330.0, 0.3, RATE)
        types = [type(f) for f in down]
        assert types.index(TTSStartedFrame) < types.index(TTSStoppedFrame)
    assert len(first.calls) + len(second.calls) == 1
    assert entries(tmp_path) == 1


async def test_cleanup_while_a_store_is_writing_is_safe(tmp_path: Path) -> None:
    service = CachedTone(cache_dir=tmp_path)
    await run_test(service, frames_to_send=[TTSSpeakFrame("Warm up.", append_to_context=False)])
    for i in range(30):
        cache = service.voiceprep_cache()
        task = asyncio.ensure_future(cache.store(f"phrase {i}", sine_pcm(330.0, 0.2, RATE)))
        for _ in range(i % 3 + 1):
            await asyncio.sleep(0)
        task.cancel()
        await service.cleanup()
    assert entries(tmp_path) >= 1
