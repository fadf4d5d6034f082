"""Word timestamps through the Pipecat mixin: what pipecat's own
tests/test_tts_frame_ordering.py checks with its word-timestamp mock services, run with
pipecat's `run_test` on a miss and then on a hit of the same cache, and the hit held to the
miss: the same frames in the same order, the same words, presentation times within 30 ms.

The services here behave as pipecat's `_MockWordTimestampHttpTTSService` (audio yielded
from run_tts, add_word_timestamps called first) and `_MockWordTimestampWSTTSService` (run_tts
yields nothing; a task delivers the words and the audio to the audio context after 10 ms),
with the same word tokens (verbatim, with spaces and punctuation tokens, merged or not) and
the same 20 ms audio chunks. Unlike theirs, a service sends as many chunks as its words
last (theirs sends one 20 ms chunk for words 0.1 s apart): a cache entry's words lie inside
its audio, as a real provider's do. Interruptions: a miss interrupted mid-way is not stored;
played through an output transport that takes audio in real time and interrupted 0.6 s in,
a hit releases the words the miss released by then (Pipecat's clock emits each word's frame
at its presentation time), not the whole sentence.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipecat.frames.frames import (
    AggregatedTextFrame,
    DataFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    StartFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

from voiceprep.integrations.pipecat import CachedTTSMixin

RATE = 16000
CHUNK = b"\x00\x01" * 320  # 20 ms at 16 kHz: the chunk of pipecat's mocks
CHUNK_SECONDS = len(CHUNK) / 2 / RATE
WordTimes = list[tuple[str, float]]


@dataclass
class FooFrame(DataFrame):
    """After each sentence: it must come after that sentence's Stopped frame."""

    label: str = ""


def spaced(text: str) -> WordTimes:
    """What pipecat's mocks report when no tokens are pinned: the words 0.1 s apart."""
    return [(word, 0.1 * i) for i, word in enumerate(text.split())]


def chunks_for(word_times: WordTimes) -> list[bytes]:
    """20 ms chunks until 0.1 s past the last word's onset."""
    last = max((t for _, t in word_times), default=0.0)
    return [CHUNK] * max(1, math.ceil((last + 0.1) / CHUNK_SECONDS))


class _WordService(TTSService):
    def __init__(
        self,
        *,
        word_times: WordTimes | None = None,
        includes_inter_frame_spaces: bool = False,
        pre_merge_tokens: bool = False,
        pace: float = 0.0,
        **kwargs: Any,
    ) -> None:
        settings = TTSSettings(model="words-1", voice="words", language=None)
        super().__init__(push_text_frames=False, sample_rate=RATE, settings=settings, **kwargs)
        self.word_times = word_times
        self.spaces = includes_inter_frame_spaces
        self.merge = pre_merge_tokens
        self.pace = pace  # seconds between chunks (0: all at once, as pipecat's mocks)
        self.calls: list[str] = []

    def can_generate_metrics(self) -> bool:
        return False

    def _words(self, text: str) -> WordTimes:
        self.calls.append(text)
        return self.word_times or spaced(text)

    async def _report(self, word_times: WordTimes, context_id: str) -> None:
        await self.add_word_timestamps(
            word_times,
            context_id=context_id,
            includes_inter_frame_spaces=self.spaces,
            pre_merge_tokens=self.merge,
        )


class WordHttpService(_WordService):
    """As pipecat's HTTP word-timestamp mock: words reported, then the audio yielded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        word_times = self._words(text)
        await self._report(word_times, context_id)
        for chunk in chunks_for(word_times):
            await asyncio.sleep(self.pace)
            yield TTSAudioRawFrame(chunk, RATE, 1, context_id=context_id)


class WordWsService(_WordService):
    """As pipecat's websocket word-timestamp mock: run_tts yields nothing; 10 ms later a
    task reports the words and appends the audio and a Stopped frame to the context."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, pause_frame_processing=False, **kwargs)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        word_times = self._words(text)

        async def deliver() -> None:
            await asyncio.sleep(0.01)
            await self._report(word_times, context_id)
            for chunk in chunks_for(word_times):
                await asyncio.sleep(self.pace)
                await self.append_to_audio_context(
                    context_id, TTSAudioRawFrame(chunk, RATE, 1, context_id=context_id)
                )
            await self.append_to_audio_context(context_id, TTSStoppedFrame(context_id=context_id))
            await self.remove_audio_context(context_id)

        self.create_task(deliver(), name=f"word_ws_deliver_{context_id}")
        if False:  # an async generator that yields nothing, as pipecat's mock
            yield


class CachedWordHttp(CachedTTSMixin, WordHttpService):
    pass


class CachedWordWs(CachedTTSMixin, WordWsService):
    pass


SERVICES = {"http": CachedWordHttp, "ws": CachedWordWs}


async def miss_then_hit(
    kind: str, cache_dir: Path, frames: Sequence[Frame], **options: Any
) -> tuple[Sequence[Frame], Sequence[Frame]]:
    """The downstream frames of `frames` on a miss, then on a hit (the service not called)."""
    miss = SERVICES[kind](cache_dir=cache_dir, **options)
    heard, _ = await run_test(miss, frames_to_send=list(frames))
    assert miss.calls
    hit = SERVICES[kind](cache_dir=cache_dir, **options)
    replayed, _ = await run_test(hit, frames_to_send=list(frames))
    assert hit.calls == []  # every sentence played from the cache
    return heard, replayed


KINDS = (TTSStartedFrame, TTSAudioRawFrame, TTSTextFrame, TTSStoppedFrame, FooFrame)


def timeline(down: Sequence[Frame]) -> list[tuple[str, str, float | None]]:
    """(frame type, text, presentation time from the first word of its sentence) of the
    frames a TTS service is judged by; each run of audio frames as one entry. (When a
    sentence starts depends on the pipeline's pace; where its words fall in it must not.)"""
    first: int | None = None
    out: list[tuple[str, str, float | None]] = []
    for frame in down:
        if not isinstance(frame, (*KINDS, AggregatedTextFrame)):
            continue
        name = type(frame).__name__
        if isinstance(frame, TTSStartedFrame):
            first = None
        if isinstance(frame, TTSAudioRawFrame) and out and out[-1][0] == name:
            continue
        text = getattr(frame, "text", "") or getattr(frame, "label", "")
        at = None
        if isinstance(frame, TTSTextFrame):
            assert frame.pts, frame
            first = frame.pts if first is None else first
            at = (frame.pts - first) / 1e9
        out.append((name, text, at))
    return out


def assert_same(heard: Sequence[Frame], replayed: Sequence[Frame]) -> None:
    miss, hit = timeline(heard), timeline(replayed)
    assert [(name, text) for name, text, _ in hit] == [(name, text) for name, text, _ in miss]
    for (name, text, at), (_, _, again) in zip(miss, hit, strict=True):
        if at is not None:
            assert again is not None and abs(at - again) <= 0.03, (name, text, at, again)
    audio = [
        b"".join(f.audio for f in d if isinstance(f, TTSAudioRawFrame)) for d in (heard, replayed)
    ]
    assert audio[0] == audio[1]


def words_of(down: Sequence[Frame]) -> list[str]:
    return [f.text for f in down if isinstance(f, TTSTextFrame)]


def assert_words_before_audio(down: Sequence[Frame]) -> None:
    """Pipecat's checks: word PTS strictly increasing, the words before the audio."""
    texts = [f for f in down if isinstance(f, TTSTextFrame)]
    pts = [f.pts for f in texts]
    assert pts == sorted(pts) and len(set(pts)) == len(pts), pts
    first_audio = next(i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    assert max(down.index(f) for f in texts) < first_audio


def groups_in_order(down: Sequence[Frame], labels: list[str]) -> None:
    """Pipecat's `_assert_group_ordering`: Started → audio (and words) → Stopped → Foo."""
    relevant = [f for f in down if isinstance(f, (*KINDS, AggregatedTextFrame))]
    ends = [i for i, f in enumerate(relevant) if isinstance(f, FooFrame)]
    assert len(ends) == len(labels)
    start = 0
    for end, label in zip(ends, labels, strict=True):
        types = [type(f) for f in relevant[start : end + 1]]
        start = end + 1
        for needed in (AggregatedTextFrame, TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame):
            assert needed in types, (label, types)
        begin, stop = types.index(TTSStartedFrame), types.index(TTSStoppedFrame)
        assert begin < stop < types.index(FooFrame)
        assert all(t in (TTSAudioRawFrame, TTSTextFrame) for t in types[begin + 1 : stop])


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_verbatim_tokens_replay_as_on_the_miss(kind: str, tmp_path: Path) -> None:
    said = [TTSSpeakFrame(text="hello world", append_to_context=False)]
    pinned = [("hello", 0.0), ("world", 0.2)]
    heard, replayed = await miss_then_hit(
        kind, tmp_path, said, word_times=pinned, includes_inter_frame_spaces=True
    )
    for down in (heard, replayed):
        assert words_of(down) == ["hello", "world"]
        assert_words_before_audio(down)
    assert_same(heard, replayed)
    assert timeline(replayed)[3][2] == pytest.approx(0.2, abs=0.03)  # "world", 0.2 s in


PUNCTUATED = [("hello", 0.0), (" world", 0.15), ("! ", 0.3), ("How", 0.45)]
PUNCTUATED += [(" are", 0.6), (" you", 0.75), ("?", 0.9)]


@pytest.mark.parametrize("kind", sorted(SERVICES))
@pytest.mark.parametrize(
    ("merge", "expected"),
    [
        (True, ["hello", "world!", "How", "are", "you?"]),
        (False, ["hello", "world", "!", "How", "are", "you", "?"]),
    ],
)
async def test_punctuation_tokens_replay_as_on_the_miss(
    kind: str, merge: bool, expected: list[str], tmp_path: Path
) -> None:
    said = [TTSSpeakFrame(text="hello world! How are you?", append_to_context=False)]
    heard, replayed = await miss_then_hit(
        kind, tmp_path, said, word_times=PUNCTUATED, pre_merge_tokens=merge
    )
    assert words_of(heard) == expected
    assert_same(heard, replayed)


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_japanese_tokens_carry_their_own_spacing_on_a_hit(kind: str, tmp_path: Path) -> None:
    # As Pipecat's Cartesia service reports Japanese: a token per character, punctuation
    # merged, and frames that carry their own spacing.
    tokens = [("こ", 0.0), ("ん", 0.1), ("に", 0.2), ("ち", 0.3), ("は", 0.4), ("。", 0.5)]
    said = [TTSSpeakFrame(text="こんにちは。", append_to_context=False)]
    heard, replayed = await miss_then_hit(
        kind,
        tmp_path,
        said,
        word_times=tokens,
        pre_merge_tokens=True,
        includes_inter_frame_spaces=True,
    )
    assert words_of(heard) == ["こ", "ん", "に", "ち", "は。"]
    assert_same(heard, replayed)
    for down in (heard, replayed):
        frames = [f for f in down if isinstance(f, TTSTextFrame)]
        assert all(f.includes_inter_frame_spaces for f in frames)


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_sentence_after_sentence_keeps_its_words_in_its_group(
    kind: str, tmp_path: Path
) -> None:
    said = [
        TTSSpeakFrame(text="test one please", append_to_context=False),
        FooFrame(label="1"),
        TTSSpeakFrame(text="and test two", append_to_context=False),
        FooFrame(label="2"),
    ]
    if kind == "ws":  # no pause: give each context time to drain, as pipecat's tests do
        said.insert(2, SleepFrame(sleep=0.2))
    heard, replayed = await miss_then_hit(kind, tmp_path, said)
    for down in (heard, replayed):
        groups_in_order(down, ["1", "2"])
        assert words_of(down) == ["test", "one", "please", "and", "test", "two"]
    assert_same(heard, replayed)


async def test_an_llm_turn_of_two_sentences_replays_each_sentences_words(
    tmp_path: Path,
) -> None:
    turn = [
        LLMFullResponseStartFrame(),
        TextFrame(text="Hello there. "),
        TextFrame(text="How are you?"),
        LLMFullResponseEndFrame(),
    ]
    heard, replayed = await miss_then_hit("http", tmp_path, turn)
    assert words_of(heard) == ["Hello", "there.", "How", "are", "you?"]
    assert_same(heard, replayed)
    order = [type(f) for f in replayed if isinstance(f, (TTSTextFrame, LLMFullResponseEndFrame))]
    assert order[-1] is LLMFullResponseEndFrame  # after every word, as on the miss


LONG = "one two three four five six seven eight nine"


def interrupted(kind: str) -> list[Frame]:
    """LONG (1 s of audio, delivered over 1 s when paced), interrupted 0.2 s in; then a
    new sentence."""
    said: list[Frame] = [
        TTSSpeakFrame(text=LONG, append_to_context=False),
        SleepFrame(sleep=0.2),
        InterruptionFrame(),
        SleepFrame(sleep=0.1),
        TTSSpeakFrame(text="after that", append_to_context=False),
        FooFrame(label="after"),
    ]
    if kind == "ws":  # no pause: let the last context drain
        said.append(SleepFrame(sleep=0.2))
    return said


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_an_interrupted_miss_is_not_stored_and_the_next_sentence_is(
    kind: str, tmp_path: Path
) -> None:
    service = SERVICES[kind](cache_dir=tmp_path, pace=CHUNK_SECONDS)
    down, _ = await run_test(service, frames_to_send=interrupted(kind))
    assert any(isinstance(f, FooFrame) for f in down)
    cache = service.voiceprep_cache()
    voice = service.voiceprep_identity().voice
    assert await cache.lookup(LONG, voice_id=voice) is None
    stored = cache.words("after that", voice_id=voice)
    assert stored is not None and [w.text for w in stored] == ["after", "that"]
    await service.cleanup()


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_an_interrupted_hit_lets_the_next_sentence_play_its_words(
    kind: str, tmp_path: Path
) -> None:
    warm = SERVICES[kind](cache_dir=tmp_path)
    said = [TTSSpeakFrame(text=text, append_to_context=False) for text in (LONG, "after that")]
    for frame in said:  # one at a time, as whole sentences: both stored
        await run_test(warm, frames_to_send=[frame, SleepFrame(sleep=0.1)])
    hit = SERVICES[kind](cache_dir=tmp_path, pace=CHUNK_SECONDS)
    down, _ = await run_test(hit, frames_to_send=interrupted(kind))
    assert hit.calls == []  # both sentences played from the cache
    texts = words_of(down)
    assert texts[-2:] == ["after", "that"]  # the sentence after the interruption, word by word
    assert any(isinstance(f, FooFrame) for f in down)  # nothing stuck behind the interruption


class PacedOutput(BaseOutputTransport):
    """An output transport that plays audio in real time (as a phone line or a WebRTC
    track takes it): Pipecat's own clock then releases each word's TTSTextFrame at its
    presentation time, and an interruption drops the words not yet due."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=RATE))

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)  # as a connected transport does

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        await asyncio.sleep(len(frame.audio) / 2 / frame.sample_rate)
        return True


SPREAD = "one two three four five six seven eight nine"  # 0.25 s apart: 2.25 s of words


@pytest.mark.parametrize("kind", sorted(SERVICES))
async def test_an_interrupted_hit_is_heard_as_far_as_the_miss_was(
    kind: str, tmp_path: Path
) -> None:
    # The case: played through a transport and interrupted 0.6 s in, a hit must
    # say its first words, as the miss did — not the whole sentence.
    pinned = [(word, 0.25 * i) for i, word in enumerate(SPREAD.split())]
    said = [
        TTSSpeakFrame(text=SPREAD, append_to_context=False),
        SleepFrame(sleep=0.6),
        InterruptionFrame(),
        SleepFrame(sleep=0.3),
    ]
    heard = []
    for round_ in ("miss", "hit"):
        if round_ == "hit":  # the whole sentence stored first
            filler = SERVICES[kind](cache_dir=tmp_path, word_times=pinned)
            await run_test(filler, frames_to_send=[said[0], SleepFrame(sleep=0.2)])
        service = SERVICES[kind](cache_dir=tmp_path, word_times=pinned)
        down, _ = await run_test(Pipeline([service, PacedOutput()]), frames_to_send=said)
        assert service.calls == ([SPREAD] if round_ == "miss" else [])
        heard.append(words_of(down))
    miss, hit = heard
    assert 1 <= len(miss) < 9 and miss == SPREAD.split()[: len(miss)]
    assert hit == SPREAD.split()[: len(hit)] and abs(len(hit) - len(miss)) <= 1
