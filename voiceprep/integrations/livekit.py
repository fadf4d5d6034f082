"""LiveKit Agents: play cached prompts with no network (`pip install voiceprep[livekit]`).

    from livekit.plugins import openai
    from voiceprep.integrations.livekit import CachedTTS, cached_audio

    tts = CachedTTS(openai.TTS(voice="ash"))          # any livekit.agents.tts.TTS
    session = AgentSession(tts=tts, ...)
    await session.say("One moment.", audio=cached_audio("One moment.", tts))

`CachedTTS` is a non-streaming `tts.TTS`, so `AgentSession` (and `stream()`) put LiveKit's
`StreamAdapter` in front of it and it is asked one sentence at a time: a sentence that
recurs across turns is a hit even inside a longer reply. A hit is served from the voiceprep
cache at the wrapped TTS's rate and channel count. A miss goes through voiceprep's fill
path (voiceprep.fill): the wrapped TTS synthesizes it once, however many sessions of this
process ask for it at the same time, and each of them plays it from its first frame as it
arrives; it is stored once the synthesis completed (a failed one stores nothing; a session
that is interrupted stops listening, the synthesis still completes and is stored whole).
When the wrapped TTS retries after partial audio, the frames keep the request ids it gave
them (the failed attempt's, then the retry's) and only the complete attempt is stored.
Model, provider, metrics, errors (`error` events, recoverable ones too), `prewarm()` and
`aclose()` behave as in LiveKit's own `StreamAdapter`/`FallbackAdapter`.

Keys: the LiveKit OpenAI, ElevenLabs, Cartesia and Deepgram plugins map onto voiceprep's
backends of those names (see docs/integrations.md for the matching `voiceprep warm` line);
any other plugin is keyed by its class, provider, model and voice.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from livekit import rtc
from livekit.agents import tts as lktts
from livekit.agents import utils
from livekit.agents.metrics import TTSMetrics
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    USERDATA_TIMED_TRANSCRIPT,
    APIConnectOptions,
    TimedString,
)

from voiceprep.backends.base import SynthesizedAudio
from voiceprep.backends.elevenlabs import output_format_for
from voiceprep.integrations._common import (
    close_prompt_cache,
    fallback_identity,
    open_prompt_cache,
    plugin_identity,
)
from voiceprep.keys import BackendIdentity
from voiceprep.sources import Attempt, Chunk, Timings
from voiceprep.timings import Word, Words
from voiceprep.tts_cache import TTSAudioCache

__all__ = ["CachedTTS", "audio_frames", "cached_audio", "livekit_identity"]

DEFAULT_FRAME_MS = 20
HIT_FRAME_MS = 200  # what LiveKit's AudioEmitter cuts a ChunkedStream's audio into
# The connection options of the synthesize() call that starts a fill (read by _Source in
# the fill's task, which inherits the caller's context).
_CONN_OPTIONS: ContextVar[APIConnectOptions] = ContextVar(
    "voiceprep_livekit_conn_options", default=DEFAULT_API_CONNECT_OPTIONS
)


class CachedTTS(lktts.TTS):
    """A `livekit.agents.tts.TTS` serving `tts`'s prompts from the voiceprep cache.

    Args:
        tts: the TTS to wrap (any `livekit.agents.tts.TTS`).
        cache_dir: the cache directory; None: the one `voiceprep warm` uses.
        voice: the voice for the key when it cannot be read from the plugin.
        max_entries, max_bytes: limits of the on-disk cache (LRU eviction on write).
    """

    def __init__(
        self,
        tts: lktts.TTS,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        voice: str | None = None,
        max_entries: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__(
            # Not streaming: LiveKit then sends one sentence per synthesize(), each a key.
            # Aligned transcripts when the wrapped TTS has them: its words are stored with
            # the audio, and a hit sends them as a miss does.
            capabilities=lktts.TTSCapabilities(
                streaming=False, aligned_transcript=tts.capabilities.aligned_transcript
            ),
            sample_rate=tts.sample_rate,
            num_channels=tts.num_channels,
        )
        self._wrapped = tts
        self._identity = livekit_identity(tts, voice=voice)
        self._cache = open_prompt_cache(
            _Source(tts),
            identity=self._identity,
            rate=tts.sample_rate,
            channels=tts.num_channels,
            cache_dir=cache_dir,
            max_entries=max_entries,
            max_bytes=max_bytes,
        )
        self._stream_adapter: lktts.StreamAdapter | None = None
        self._wrapped.on("metrics_collected", self._on_metrics_collected)
        self._wrapped.on("error", self._on_error)

    @property
    def wrapped(self) -> lktts.TTS:
        return self._wrapped

    @property
    def identity(self) -> BackendIdentity:
        """The backend identity this TTS's entries are keyed by."""
        return self._identity

    @property
    def cache(self) -> TTSAudioCache:
        """The cache behind this TTS (`.key(text)`, `.contains(text)`, `.disk`)."""
        return self._cache

    @property
    def model(self) -> str:
        return self._wrapped.model

    @property
    def provider(self) -> str:
        return self._wrapped.provider

    def key(self, text: str) -> str:
        """The cache key of `text` (what `voiceprep warm` with the matching backend writes)."""
        return self._cache.key(text, voice_id=self._identity.voice)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> lktts.ChunkedStream:
        return _CachedChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> lktts.SynthesizeStream:
        """Sentence by sentence through LiveKit's `StreamAdapter`, each sentence cached."""
        if self._stream_adapter is None:
            self._stream_adapter = lktts.StreamAdapter(tts=self)
        return self._stream_adapter.stream(conn_options=conn_options)

    async def preload(self, texts: AsyncIterable[str] | list[str]) -> None:
        """Synthesize (through the wrapped TTS) and store every text not cached yet."""
        items = [t async for t in texts] if isinstance(texts, AsyncIterable) else list(texts)
        await self._cache.preload(items, voice_id=self._identity.voice)

    def prewarm(self) -> None:
        self._wrapped.prewarm()

    def _on_metrics_collected(self, *args: Any, **kwargs: Any) -> None:
        self.emit("metrics_collected", *args, **kwargs)

    def _on_error(self, *args: Any, **kwargs: Any) -> None:
        # FallbackAdapter and metrics see the wrapped TTS's errors, retries included.
        self.emit("error", *args, **kwargs)

    async def aclose(self) -> None:
        """Stop listening to the wrapped TTS and give the cache back (the wrapped TTS stays
        open). The last user of a shared cache cancels its syntheses in flight, waits for
        the writes already begun, then closes the directory: never under a write."""
        self._wrapped.off("metrics_collected", self._on_metrics_collected)
        self._wrapped.off("error", self._on_error)
        if self._stream_adapter is not None:
            await self._stream_adapter.aclose()
        await close_prompt_cache(self._cache)


class _CachedChunkedStream(lktts.ChunkedStream):
    # The wrapped TTS retries by itself: no second layer of retries here.
    def __init__(self, *, tts: CachedTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(
            tts=tts,
            input_text=input_text,
            conn_options=dataclasses.replace(conn_options, max_retry=0),
        )
        self._cached_tts = tts
        self._wrapped_conn_options = conn_options
        self._hit = False

    async def _main_task(self) -> None:
        # Straight to the stream's channel, as ChunkedStream's own emitter would deliver
        # it (frames of at most HIT_FRAME_MS), without the emitter's task, decoder and
        # retry loop: that hop is most of a hit's time to first frame.
        owner = self._cached_tts
        cache = owner.cache
        pcm = await cache.lookup(self._input_text, voice_id=owner.identity.voice)
        if pcm is not None:
            self._hit = True
            frames = list(_cut(pcm, owner.sample_rate, owner.num_channels, HIT_FRAME_MS))
            words = None  # (read from the entry only for a TTS that has them: a disk read)
            if owner.capabilities.aligned_transcript:
                words = cache.words(self._input_text, voice_id=owner.identity.voice)
            if words and frames:  # as LiveKit's emitter attaches them: to a frame
                frames[0].userdata[USERDATA_TIMED_TRANSCRIPT] = _timed_strings(words)
            request_id = utils.shortuuid()
            for i, frame in enumerate(frames):
                self._send(frame, request_id, final=i == len(frames) - 1)
            return
        # A miss: the fill of this sentence in flight in this process (another session's,
        # or a new one through the wrapped TTS), followed from its first frame.
        prompt = cache.prompt(self._input_text, voice_id=owner.identity.voice)
        self._hit = cache.filler.in_flight(prompt) is not None  # joined: billed to its starter
        token = _CONN_OPTIONS.set(self._wrapped_conn_options)
        try:
            flight = cache.filler.flight(prompt)
        finally:
            _CONN_OPTIONS.reset(token)
        request_id, told = "", 0  # words of the attempt sent so far
        async for tag, chunk in flight.follow(restarts=True):
            if tag != request_id:
                told = 0
            request_id = tag or request_id or utils.shortuuid()
            frames = list(_cut(chunk, owner.sample_rate, owner.num_channels, HIT_FRAME_MS))
            words = flight.words or ()
            if len(words) > told and frames:  # the wrapped TTS's words, as they came
                frames[0].userdata[USERDATA_TIMED_TRANSCRIPT] = _timed_strings(words[told:])
                told = len(words)
            for frame in frames:
                self._send(frame, request_id, final=False)
        # As LiveKit's emitter ends a segment whose last audio went out: 10 ms of silence.
        silence = b"\0\0" * (owner.sample_rate // 100 * owner.num_channels)
        end = next(_cut(silence, owner.sample_rate, owner.num_channels, 10))
        self._send(end, request_id or utils.shortuuid(), final=True)

    def _send(self, frame: rtc.AudioFrame, request_id: str, *, final: bool) -> None:
        self._event_ch.send_nowait(
            lktts.SynthesizedAudio(frame=frame, request_id=request_id, is_final=final)
        )

    async def _run(self, output_emitter: lktts.AudioEmitter) -> None:
        raise NotImplementedError  # _main_task above does the work (never called)

    async def _metrics_monitor_task(
        self, event_aiter: AsyncIterable[lktts.SynthesizedAudio]
    ) -> None:
        # A miss reports the wrapped TTS's own metrics (forwarded by CachedTTS); a hit
        # reports its own, with no characters synthesized (nothing was billed).
        start = time.perf_counter()
        ttfb = -1.0
        audio_duration = 0.0
        request_id = ""
        async for ev in event_aiter:
            request_id = ev.request_id
            if ttfb < 0:
                ttfb = time.perf_counter() - start
            audio_duration += ev.frame.duration
        if not self._hit:
            return
        self._cached_tts.emit(
            "metrics_collected",
            TTSMetrics(
                timestamp=time.time(),
                request_id=request_id,
                ttfb=ttfb,
                duration=time.perf_counter() - start,
                characters_count=0,
                audio_duration=audio_duration,
                cancelled=self._synthesize_task.cancelled(),
                label=self._cached_tts.label,
                streamed=False,
            ),
        )


def _is_end_marker(ev: lktts.SynthesizedAudio) -> bool:
    """The empty marker LiveKit's AudioEmitter ends a segment with: 10 ms of zeros."""
    frame = ev.frame
    return (
        ev.is_final
        and frame.samples_per_channel == frame.sample_rate // 100
        and not any(frame.data.tobytes())
    )


def _in_format(frame: rtc.AudioFrame, rate: int, channels: int) -> rtc.AudioFrame:
    if frame.sample_rate == rate and frame.num_channels == channels:
        return frame
    raise ValueError(
        f"the wrapped TTS produced {frame.sample_rate} Hz × {frame.num_channels} audio, "
        f"not the {rate} Hz × {channels} it declares"
    )


class _Source:
    """The wrapped TTS as the fill path synthesizes through it (a voiceprep.sources.Source):
    its frames as chunks, an `Attempt` marker each time its request id changes (it retried
    after partial audio: what came before is stale)."""

    retried: tuple[type[BaseException], ...] = ()  # the wrapped TTS retries by itself

    def __init__(self, wrapped: lktts.TTS) -> None:
        self._tts = wrapped
        self.name = wrapped.label
        self.sample_rate = wrapped.sample_rate
        self.num_channels = wrapped.num_channels

    async def attempt(self, text: str, voice: str | None) -> AsyncIterator[Chunk]:
        request_id = None
        words: list[Word] = []  # its aligned transcript, when it has one
        async with self._tts.synthesize(text, conn_options=_CONN_OPTIONS.get()) as stream:
            async for ev in stream:
                if not _is_end_marker(ev) and ev.request_id != request_id:
                    request_id = ev.request_id
                    words = []
                    yield Attempt(request_id)
                timed = ev.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT)
                if timed:  # (the closing marker may carry the last words)
                    words += _words_of(timed)
                    yield Timings(tuple(words))
                if _is_end_marker(ev):
                    continue  # LiveKit's 10 ms of silence closing a segment: ours adds one
                yield _in_format(ev.frame, self.sample_rate, self.num_channels).data.tobytes()


def _words_of(timed: list[Any]) -> list[Word]:
    """LiveKit's TimedStrings as stored words (those with both times; the others say
    nothing of when they are spoken)."""
    words = []
    for piece in timed:
        start, end = getattr(piece, "start_time", None), getattr(piece, "end_time", None)
        if str(piece).strip() and isinstance(start, int | float) and isinstance(end, int | float):
            words.append(Word(str(piece).strip(), float(start), max(float(start), float(end))))
    return words


def _timed_strings(words: Words) -> list[TimedString]:
    return [TimedString(f"{w.text} ", start_time=w.start, end_time=w.end) for w in words]


# --- playing cached audio with session.say(text, audio=...) -----------------------------


async def audio_frames(
    pcm: bytes, *, sample_rate: int, num_channels: int = 1, frame_ms: int = DEFAULT_FRAME_MS
) -> AsyncIterator[rtc.AudioFrame]:
    """s16le PCM as `rtc.AudioFrame`s of `frame_ms` each (the last one may be shorter)."""
    for frame in _cut(pcm, sample_rate, num_channels, frame_ms):
        yield frame


def _cut(pcm: bytes, rate: int, channels: int, frame_ms: int) -> Iterator[rtc.AudioFrame]:
    if frame_ms < 1:
        raise ValueError("frame_ms must be at least 1")
    width = channels * 2
    step = max(1, rate * frame_ms // 1000) * width
    usable = len(pcm) - len(pcm) % width
    view = memoryview(pcm)
    for start in range(0, usable, step):
        chunk = view[start : min(start + step, usable)]
        yield rtc.AudioFrame(
            data=chunk.tobytes(),
            sample_rate=rate,
            num_channels=channels,
            samples_per_channel=len(chunk) // width,
        )


async def cached_audio(
    text: str,
    tts: lktts.TTS,
    *,
    sample_rate: int | None = None,
    num_channels: int | None = None,
    frame_ms: int = DEFAULT_FRAME_MS,
    cache_dir: str | os.PathLike[str] | None = None,
    voice: str | None = None,
) -> AsyncIterator[rtc.AudioFrame]:
    """Frames of `text` for `session.say(text, audio=...)`, through the voiceprep cache.

    `tts` is a `CachedTTS` (its cache is used) or any LiveKit TTS (wrapped for the call).
    A miss synthesizes the whole text with that TTS and stores it. The frames are at
    `sample_rate`/`num_channels` (default: the TTS's), converted when they differ.
    """
    owned = not isinstance(tts, CachedTTS)
    cached = CachedTTS(tts, cache_dir=cache_dir, voice=voice) if owned else tts
    assert isinstance(cached, CachedTTS)
    try:
        pcm = await cached.cache.fetch(text, voice_id=cached.identity.voice)
    finally:
        if owned:
            await cached.aclose()
    rate = sample_rate or cached.sample_rate
    channels = num_channels or cached.num_channels
    if (rate, channels) != (cached.sample_rate, cached.num_channels):
        raw = SynthesizedAudio(pcm, rate=cached.sample_rate, channels=cached.num_channels)
        pcm = await raw.to_pcm_async(rate=rate, channels=channels)
    async for frame in audio_frames(
        pcm, sample_rate=rate, num_channels=channels, frame_ms=frame_ms
    ):
        yield frame


# --- key identities ------------------------------------------------------------------------


def livekit_identity(plugin: lktts.TTS, *, voice: str | None = None) -> BackendIdentity:
    """The identity a LiveKit TTS's prompts are keyed by (see the module docstring)."""
    module = type(plugin).__module__
    opts = getattr(plugin, "_opts", None)
    if module.startswith("livekit.plugins.openai") and opts is not None:
        return _openai_identity(opts, voice)
    if module.startswith("livekit.plugins.elevenlabs") and opts is not None:
        return _elevenlabs_identity(opts, plugin.sample_rate, voice)
    if module.startswith("livekit.plugins.cartesia") and opts is not None:
        return _cartesia_identity(opts, voice)
    if module.startswith("livekit.plugins.deepgram") and opts is not None:
        speed = {"speed": opts.speed} if opts.speed is not None else {}
        # Aura has no voice parameter: the model name is the voice.
        return plugin_identity("deepgram", model=None, voice=voice or opts.model, options=speed)
    return fallback_identity(
        plugin, provider=plugin.provider, model=plugin.model, voice=voice or _voice_of(opts)
    )


def _openai_identity(opts: Any, voice: str | None) -> BackendIdentity:
    options: dict[str, Any] = {"response_format": opts.response_format}
    if opts.speed is not None and float(opts.speed) != 1.0:
        options["speed"] = opts.speed
    if opts.instructions:
        options["instructions"] = opts.instructions
    return plugin_identity(
        "openai", model=str(opts.model), voice=voice or str(opts.voice), options=options
    )


def _elevenlabs_identity(opts: Any, rate: int, voice: str | None) -> BackendIdentity:
    options: dict[str, Any] = {}
    settings = opts.voice_settings
    if utils.is_given(settings) and settings is not None:
        options.update(_given_fields(dataclasses.asdict(settings)))
    if opts.encoding != output_format_for(rate):
        options["output_format"] = opts.encoding
    extra = {"language": opts.language} if utils.is_given(opts.language) else None
    return plugin_identity(
        "elevenlabs",
        model=str(opts.model),
        voice=voice or str(opts.voice_id),
        options={k: _option_text(v) for k, v in options.items()},
        extra=extra,
    )


def _cartesia_identity(opts: Any, voice: str | None) -> BackendIdentity:
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if opts.language:
        options["language"] = str(opts.language)
    for name in ("speed", "volume"):
        value = getattr(opts, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            options[name] = value
        elif value is not None:
            extra[name] = str(value)  # "fast", "slow": no backend option says that
    emotion = opts.emotion
    if emotion:
        if len(emotion) == 1:
            options["emotion"] = str(emotion[0])
        else:
            extra["emotion"] = [str(e) for e in emotion]
    chosen: str | None
    if isinstance(opts.voice, str):
        chosen = voice or opts.voice
    else:  # a voice embedding: keyed by its values
        chosen = voice
        extra["voice_embedding"] = [float(x) for x in opts.voice]
    if getattr(opts, "pronunciation_dict_id", None):
        extra["pronunciation_dict_id"] = opts.pronunciation_dict_id
    return plugin_identity(
        "cartesia", model=str(opts.model), voice=chosen, options=options, extra=extra
    )


def _given_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if utils.is_given(v) and v is not None}


def _option_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _voice_of(opts: Any) -> str | None:
    for name in ("voice", "voice_id", "voice_name", "speaker"):
        value = getattr(opts, name, None)
        if isinstance(value, str) and value:
            return value
    return None
