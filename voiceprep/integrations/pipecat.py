"""Pipecat: cache any TTSService's prompts on disk (`pip install voiceprep[pipecat]`).

    from pipecat.services.openai.tts import OpenAITTSService
    from voiceprep.integrations.pipecat import CachedTTSMixin

    class CachedOpenAITTS(CachedTTSMixin, OpenAITTSService):
        pass

    tts = CachedOpenAITTS(cache_dir="prompts", settings=OpenAITTSService.Settings(voice="nova"))

The mixin takes the cache settings as keyword arguments (`cache_dir=`, `voice=`,
`max_entries=`, `max_bytes=`) and passes the rest to the service. Its `run_tts` is called
once per sentence (Pipecat's text aggregator splits the turn), so each sentence is a key:

- hit: `TTSAudioRawFrame`s at the service's sample rate with the call's context id, yielded
  where the service's own audio would be (inside the same audio context, so ordering,
  interruptions and bot-speaking state behave as for live audio); the service is not
  called. A service that leaves `TTSStartedFrame`/`TTSStoppedFrame` to its `run_tts` gets
  them from the hit too.
- miss: the service's frames pass through unchanged; the audio is stored once `run_tts`
  ended without an error frame and without being cancelled (an interruption cancels it).
- word timestamps: what a word-timestamp service reports while it speaks a miss
  (`add_word_timestamps`) is stored with the audio, and a hit reports the same words at
  the same offsets from its first audio, so Pipecat emits one `TTSTextFrame` per word at
  its presentation time, as on the miss (an interrupted hit records only what was heard);
  words of a script written without spaces (Chinese, Japanese) are replayed with
  `includes_inter_frame_spaces`, as Pipecat's services declare them for those languages.
  Services of one identity and sample rate in one process share their misses through
  voiceprep's fill path (voiceprep.fill): a second session asking for a sentence that is
  being synthesized follows that synthesis from its first chunk (Started, its audio,
  Stopped, as for a hit) instead of paying for it again; if the first one fails or is
  interrupted, the follower gets an `ErrorFrame`.

Services that deliver audio from a websocket receive loop (`run_tts` yields None, or
nothing, and the audio reaches the call's audio context later) are served hits when no
earlier sentence of the same audio context is still arriving (a hit is never played ahead
of live audio), and store a miss, with the words reported for it, when its context held
that one sentence and completed uninterrupted.

Key identity: from the service's class and settings (model, voice, language) and its
sample rate; OpenAI, ElevenLabs, Cartesia and Deepgram services map onto voiceprep's
backends of those names, so `voiceprep warm` fills what the pipeline plays (docs/integrations.md).

`pcm_frames(pcm, ...)` cuts cached or decoded PCM into `OutputAudioRawFrame`s for sound
effects and hold music (`voiceprep.decode` gives PCM at the transport's rate).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    OutputAudioRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.utils.text.word_timestamp_utils import merge_punct_tokens
from pipecat.utils.types import is_given

from voiceprep.backends.elevenlabs import output_format_for
from voiceprep.errors import BackendError
from voiceprep.flight import Flight
from voiceprep.integrations._common import (
    close_prompt_cache,
    fallback_identity,
    open_prompt_cache,
    plugin_identity,
)
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Word, Words

if TYPE_CHECKING:
    from voiceprep.tts_cache import TTSAudioCache

__all__ = ["CachedTTSMixin", "pcm_frames", "pipecat_identity"]

DEFAULT_FRAME_MS = 20


class CachedTTSMixin:
    """Caching for a Pipecat `TTSService`: `class Cached(CachedTTSMixin, SomeTTSService)`."""

    def __init__(
        self,
        *args: Any,
        cache_dir: str | os.PathLike[str] | None = None,
        voice: str | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._vp_cache_dir = cache_dir
        self._vp_voice = voice
        self._vp_limits = (max_entries, max_bytes)
        # One cache per (identity, rate): settings and the sample rate can change at run time.
        self._vp_caches: dict[tuple[str, int], TTSAudioCache] = {}
        # Websocket-style services: per open audio context, the sentences sent, the audio
        # and words received, so a context of one sentence can be stored when it completes.
        self._vp_live: dict[str, _Live] = {}
        # The words a miss's service reports while run_tts runs, by context.
        self._vp_words: dict[str | None, list[tuple[str, float]]] = {}
        self._vp_speaking: str | None = None  # the context whose run_tts is running

    # --- the cache -------------------------------------------------------------------------

    def voiceprep_identity(self) -> BackendIdentity:
        """The identity this service's prompts are keyed by, with its current settings."""
        return pipecat_identity(self, voice=self._vp_voice)

    def voiceprep_cache(self) -> TTSAudioCache:
        """The cache for the current settings and sample rate (`.key(text)`, `.disk`)."""
        identity = self.voiceprep_identity()
        rate = int(self.sample_rate)  # type: ignore[attr-defined]
        slot = (json.dumps(identity.as_dict(), sort_keys=True, default=str), rate)
        cache = self._vp_caches.get(slot)
        if cache is None:
            cache = self._vp_caches[slot] = open_prompt_cache(
                None,
                identity=identity,
                rate=rate,
                channels=1,
                cache_dir=self._vp_cache_dir,
                max_entries=self._vp_limits[0],
                max_bytes=self._vp_limits[1],
            )
        return cache

    def voiceprep_key(self, text: str) -> str:
        """The cache key of `text` (what `voiceprep warm` with the matching backend writes)."""
        return self.voiceprep_cache().key(text, voice_id=self.voiceprep_identity().voice)

    # --- synthesis -------------------------------------------------------------------------

    async def run_tts(
        self, text: str, context_id: str, *args: Any, **kwargs: Any
    ) -> AsyncGenerator[Frame | None, None]:
        cache = self.voiceprep_cache()
        voice = self.voiceprep_identity().voice
        pcm = None
        if context_id not in self._vp_live:  # never play a hit ahead of live audio
            pcm = await cache.lookup(text, voice_id=voice)
        if pcm is not None:
            # A service that reports its words (and so leaves text frames to them): the
            # words stored with the audio (a disk read, only for those).
            speaks_words = not getattr(self, "_push_text_frames", True)
            words = cache.words(text, voice_id=voice) if speaks_words else None
            async for frame in self._vp_play(_once(pcm), context_id, words):
                yield frame
            return
        prompt = cache.prompt(text, voice_id=voice)
        flight = cache.filler.produce_flight(prompt)
        if flight is None:  # another session is synthesizing it: follow that one
            followed = cache.filler.in_flight(prompt)
            if followed is not None and await _shared(followed):
                async for frame in self._vp_play(_chunks(followed), context_id):
                    yield frame
                return
            flight = Flight()  # nothing to follow: synthesize here, unshared
        flight.begin()
        error: BaseException | None = None
        went_async = False
        heard = self._vp_words[context_id] = []
        self._vp_speaking = context_id
        try:
            async for frame in super().run_tts(text, context_id, *args, **kwargs):  # type: ignore[misc]
                if isinstance(frame, TTSAudioRawFrame):
                    if (frame.sample_rate, frame.num_channels) == (cache.rate, 1):
                        flight.add(frame.audio)
                    else:  # a format change mid-sentence: play it, never store it
                        error = error or BackendError(f"{text!r}: the audio changed format")
                elif isinstance(frame, ErrorFrame):
                    error = error or BackendError(f"{text!r}: {frame.error}")
                elif frame is None and not went_async:
                    went_async = True  # websocket-style: the audio comes to the context
                    live = self._vp_goes_live(text, context_id, heard)
                    error = error or live
                yield frame
            if not (went_async or error or flight.chunks) and self.audio_context_available(  # type: ignore[attr-defined]
                context_id
            ):  # yielded nothing: its audio comes to the context later (pipecat's WS mocks)
                went_async = True
                error = self._vp_goes_live(text, context_id, heard)
        except BaseException as exc:  # an interruption cancels run_tts: store nothing
            error = error or BackendError(f"{text!r}: interrupted ({type(exc).__name__})")
            raise
        finally:
            self._vp_words.pop(context_id, None)
            self._vp_speaking = None
            flight.words = _timed(heard, len(b"".join(flight.chunks)) / 2 / cache.rate)
            await cache.filler.settle_flight(prompt, flight, error)
        if error is not None and not went_async:
            self._vp_live.pop(context_id, None)

    def _vp_goes_live(
        self, text: str, context_id: str, heard: list[tuple[str, float]]
    ) -> BackendError:
        """A websocket-style miss: its audio and words are collected as the context
        receives them (the words so far move there). The error settles the flight."""
        live = self._vp_live.setdefault(context_id, _Live())
        live.sentences.append(text)
        live.words += heard
        heard.clear()
        return _NotShared(f"{text!r}: delivered to its audio context")

    async def _vp_play(
        self, pieces: AsyncIterator[bytes], context_id: str, words: Words | None = None
    ) -> AsyncGenerator[Frame, None]:
        """Audio played like the service's own: Started (when the service leaves it to
        run_tts), the stored word timestamps, frames of `chunk_size`, Stopped; a failure
        mid-way is an ErrorFrame."""
        service: Any = self
        rate = int(service.sample_rate)
        if not service._push_start_frame:
            if not service.audio_context_available(context_id):
                await service.create_audio_context(context_id)
            yield TTSStartedFrame(context_id=context_id)
        await service.stop_ttfb_metrics()
        if words:  # queued ahead of the audio: timed from its first frame, as live words are
            await service.add_word_timestamps(
                [(w.text, w.start) for w in words],
                context_id,
                includes_inter_frame_spaces=True if _unspaced(words) else None,
            )
        step = max(2, int(service.chunk_size) // 2 * 2)
        try:
            async for pcm in pieces:
                for start in range(0, len(pcm), step):
                    yield TTSAudioRawFrame(
                        pcm[start : start + step], rate, 1, context_id=context_id
                    )
        except Exception as exc:
            yield ErrorFrame(error=str(exc))
        if not service._push_stop_frames:
            yield TTSStoppedFrame(context_id=context_id)

    # --- websocket-style services: audio appended to the context by a receive loop ----------

    async def add_word_timestamps(
        self,
        word_times: list[tuple[str, float]],
        context_id: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        key = context_id or self._vp_speaking
        live = self._vp_live.get(key) if key else None
        heard = live.words if live is not None else self._vp_words.get(key)
        if heard is not None:
            # The words as Pipecat emits them: punctuation tokens merged when asked.
            merge = kwargs.get("pre_merge_tokens", args[1] if len(args) > 1 else False)
            said = merge_punct_tokens(word_times) if merge else word_times
            heard += [(w, float(t)) for w, t in said if w not in _MARKERS]
        await super().add_word_timestamps(word_times, context_id, *args, **kwargs)  # type: ignore[misc]

    async def append_to_audio_context(self, context_id: str | None, frame: Any) -> None:
        live = self._vp_live.get(context_id) if context_id else None
        if live is not None and isinstance(frame, TTSAudioRawFrame):
            live.audio.extend(frame.audio)
        await super().append_to_audio_context(context_id, frame)  # type: ignore[misc]

    async def on_audio_context_completed(self, context_id: str) -> None:
        live = self._vp_live.pop(context_id, None)
        if live is not None and len(live.sentences) == 1 and live.audio:
            cache = self.voiceprep_cache()
            words = _timed(live.words, len(live.audio) / 2 / cache.rate)
            voice = self.voiceprep_identity().voice
            await cache.store(live.sentences[0], bytes(live.audio), voice_id=voice, words=words)
        await super().on_audio_context_completed(context_id)  # type: ignore[misc]

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        self._vp_live.pop(context_id, None)
        await super().on_audio_context_interrupted(context_id)  # type: ignore[misc]

    async def cleanup(self) -> None:
        """The service's cleanup, then the caches given back: syntheses in flight are
        cancelled, writes already begun complete, then the directory closes."""
        await super().cleanup()  # type: ignore[misc]
        caches, self._vp_caches = list(self._vp_caches.values()), {}
        for cache in caches:
            await close_prompt_cache(cache)


@dataclass
class _Live:
    """A websocket-style audio context: the sentences sent, the audio and words received."""

    sentences: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    words: list[tuple[str, float]] = field(default_factory=list)


class _NotShared(BackendError):
    """The first session's service delivers audio through its audio context (websocket
    style), not through run_tts: nothing to follow."""


# What services report through add_word_timestamps that is not a word they spoke.
_MARKERS = frozenset({"Reset", "TTSStoppedFrame", "LLMFullResponseEndFrame"})


def _timed(heard: list[tuple[str, float]], seconds: float) -> Words | None:
    """Words reported at their onsets, as stored: each ends where the next begins (the
    last with the audio). None when there are none or they do not fit the audio."""
    heard = [(w.strip(), t) for w, t in heard if w.strip() and 0 <= t <= seconds]
    if not heard or any(b[1] < a[1] for a, b in zip(heard, heard[1:], strict=False)):
        return None
    ends = [t for _, t in heard[1:]] + [seconds]
    return tuple(Word(w, t, end) for (w, t), end in zip(heard, ends, strict=True))


def _unspaced(words: Words) -> bool:
    """Whether the words are of a script written without spaces (Chinese, Japanese): then
    each TTSTextFrame carries its own spacing, as Pipecat's Cartesia and ElevenLabs
    services declare for those languages (`includes_inter_frame_spaces`)."""
    return any(unicodedata.east_asian_width(c) in "WF" for w in words for c in w.text)


async def _once(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm


async def _chunks(flight: Flight) -> AsyncIterator[bytes]:
    async for _, chunk in flight.follow():
        yield chunk


async def _shared(flight: Flight) -> bool:
    """Whether `flight` carries audio to follow (waits for its first chunk or its end);
    False when its service delivers audio to its own context (then synthesize here)."""
    try:
        async for _ in flight.follow():
            return True
    except _NotShared:
        return False
    except Exception:
        return True  # its failure is played as an ErrorFrame by the follower
    return False


def pcm_frames(
    pcm: bytes, *, sample_rate: int, num_channels: int = 1, frame_ms: int = DEFAULT_FRAME_MS
) -> Iterator[OutputAudioRawFrame]:
    """s16le PCM as `OutputAudioRawFrame`s of `frame_ms` (the last may be shorter).

    For sound effects and hold music: a plain `OutputAudioRawFrame` plays without driving
    the bot-speaking state. Give PCM at the transport's rate (`voiceprep.decode(path,
    rate=...)` or a cache entry fetched at that rate).
    """
    if frame_ms < 1:
        raise ValueError("frame_ms must be at least 1")
    width = num_channels * 2
    step = max(1, sample_rate * frame_ms // 1000) * width
    usable = len(pcm) - len(pcm) % width
    for start in range(0, usable, step):
        yield OutputAudioRawFrame(
            pcm[start : min(start + step, usable)],
            sample_rate=sample_rate,
            num_channels=num_channels,
        )


# --- key identities ------------------------------------------------------------------------


def pipecat_identity(service: Any, *, voice: str | None = None) -> BackendIdentity:
    """The identity a Pipecat TTS service's prompts are keyed by (module docstring)."""
    settings = service._settings
    model = _given(getattr(settings, "model", None))
    voice = voice or _given(getattr(settings, "voice", None))
    language = _given(getattr(settings, "language", None))
    names = {cls.__name__ for cls in type(service).__mro__}
    if "OpenAITTSService" in names:
        options: dict[str, Any] = {"response_format": "pcm"}  # what the service requests
        speed = _given(getattr(settings, "speed", None))
        if speed and float(speed) != 1.0:
            options["speed"] = speed
        instructions = _given(getattr(settings, "instructions", None))
        if instructions:
            options["instructions"] = instructions
        extra = {"language": str(language)} if language else None
        return plugin_identity("openai", model=model, voice=voice, options=options, extra=extra)
    if names & {"ElevenLabsTTSService", "ElevenLabsHttpTTSService"}:
        options = {}
        for name in ("stability", "similarity_boost", "style", "use_speaker_boost", "speed"):
            value = _given(getattr(settings, name, None))
            if value is not None:
                options[name] = str(value).lower() if isinstance(value, bool) else str(value)
        fmt = getattr(service, "_output_format", "") or ""
        if fmt and fmt != output_format_for(int(service.sample_rate)):
            options["output_format"] = fmt
        extra = {"language": str(language)} if language else None
        return plugin_identity("elevenlabs", model=model, voice=voice, options=options, extra=extra)
    if names & {"CartesiaTTSService", "CartesiaHttpTTSService"}:
        options = {"language": str(language)} if language else {}
        extra = {}
        generation = _given(getattr(settings, "generation_config", None))
        if generation is not None:
            for name in ("speed", "volume", "emotion"):
                value = getattr(generation, name, None)
                if value is not None:
                    options[name] = value
        pronunciations = _given(getattr(settings, "pronunciation_dict_id", None))
        if pronunciations:
            extra["pronunciation_dict_id"] = pronunciations
        return plugin_identity(
            "cartesia", model=model, voice=voice, options=options, extra=extra or None
        )
    if names & {"DeepgramTTSService", "DeepgramHttpTTSService"}:
        speed = _given(getattr(settings, "speed", None))
        # Aura has no voice parameter: the model name is the voice.
        return plugin_identity(
            "deepgram",
            model=None,
            voice=voice or model,
            options={"speed": speed} if speed is not None else None,
        )
    identity = fallback_identity(service, provider=None, model=model, voice=voice)
    if language:
        identity = BackendIdentity(
            identity.name, identity.model, identity.voice, {"language": str(language)}
        )
    return identity


def _given(value: Any) -> Any:
    return value if value is not None and is_given(value) else None
