"""Sources: what the fill path (voiceprep.fill) synthesizes with, one attempt at a time.

An attempt is an async iterator of s16le PCM chunks already in the filler's format (rate,
channels), as they are produced, or `Attempt` markers from a source that retries by
itself (a framework's TTS: the chunks after a marker are a new attempt, those before it
are stale), or `Timings`: the attempt's word timings, when the backend gave them.
Retrying, the gate and sharing are the filler's job, not the source's.

- `BackendSource`: a voiceprep backend; its `stream` when it has one (converted chunk by
  chunk with one stateful resampler, `PcmConverter`), else `synthesize` as one chunk.
- `StreamSynthesizeSource`: the seed's `stream_synthesize(text_iter, voice_id=)` objects.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from voiceprep import defaults
from voiceprep.backends.base import Backend, PcmConverter, SynthesizedAudio
from voiceprep.errors import BackendError, EmptyAudioError, TransientBackendError, VoiceprepError
from voiceprep.secrets import redact
from voiceprep.timings import Words, shifted

DEFAULT_STREAM_RATE = defaults.RATE


class Attempt:
    """A source's marker: the chunks that follow are a new attempt (named `tag`), the
    earlier ones are stale. For sources that retry by themselves (a framework's TTS)."""

    def __init__(self, tag: str | None) -> None:
        self.tag = tag


@dataclass(frozen=True)
class Timings:
    """The word timings of the attempt so far, in seconds from its first sample."""

    words: Words


Chunk = bytes | Attempt | Timings


class Source(Protocol):
    """What a `Filler` synthesizes with: one attempt at a time, as PCM chunks in the
    filler's format (or `Attempt` markers). `retried` are the errors worth another try;
    anything else raises as it is. A source may set `streams = False` when its audio
    comes as one chunk at the end (then it is judged before anyone hears it)."""

    retried: tuple[type[BaseException], ...]

    def attempt(self, text: str, voice: str | None) -> AsyncIterator[Chunk]: ...


class BackendSource:
    """A voiceprep backend: `stream` when it has one (and `live`), else `synthesize` as
    one chunk. `live=False` is for fills nobody listens to while they run (warm, say):
    the backend's whole-phrase path, with no per-chunk work."""

    retried: tuple[type[BaseException], ...] = (TransientBackendError,)

    def __init__(
        self,
        backend: Backend,
        *,
        rate: int,
        channels: int,
        timeout: float | None,
        live: bool = True,
    ) -> None:
        self.backend, self.rate, self.channels, self.timeout = backend, rate, channels, timeout
        self.name = getattr(backend, "name", type(backend).__name__)
        self.streams = live and callable(getattr(backend, "stream", None))

    async def attempt(self, text: str, voice: str | None) -> AsyncIterator[Chunk]:
        try:
            async with asyncio.timeout(self.timeout):
                async for chunk in self._chunks(text, voice):
                    yield chunk
        except TimeoutError:
            within = f" within {self.timeout:g} s" if self.timeout is not None else ""
            raise TransientBackendError(f"{self.name}: no answer{within}") from None
        except VoiceprepError:
            raise
        except Exception as exc:  # a third-party plugin's bug: still one line
            raise BackendError(redact(f"{self.name}: {type(exc).__name__}: {exc}")) from exc

    async def _chunks(self, text: str, voice: str | None) -> AsyncIterator[bytes | Timings]:
        shape = {"rate": self.rate, "channels": self.channels}
        stream = getattr(self.backend, "stream", None) if self.streams else None
        if stream is None:
            audio = await self.backend.synthesize(text, voice=voice, **shape)
            if not audio.data:
                raise EmptyAudioError(f"{self.name}: the backend returned no audio")
            yield await audio.to_pcm_async(**shape)
            if audio.words:
                yield Timings(audio.words)
            return
        converter = PcmConverter(**shape)
        words: list[Any] = []
        played = 0.0  # seconds of the stream before this piece (each piece's words start at 0)
        async for piece in stream(text, voice=voice, **shape):
            if piece.words:
                words += shifted(piece.words, played, math.inf)
            if piece.rate:
                played += len(piece.data) / (2 * (piece.channels or 1) * piece.rate)
            if pcm := converter.push(piece):
                yield pcm
        if tail := converter.flush():
            yield tail
        if words:
            yield Timings(tuple(words))


class StreamSynthesizeSource:
    """An object with the seed's `stream_synthesize(text_iter, voice_id=)` (s16le chunks
    at `tts.sample_rate` Hz, else 24000, and `tts.num_channels`, else 1). Its errors are
    raised as they are, as the seed did; only the gate's refusals are tried again."""

    retried: tuple[type[BaseException], ...] = ()

    def __init__(self, tts: Any, *, rate: int, channels: int, timeout: float | None) -> None:
        self.tts, self.rate, self.channels, self.timeout = tts, rate, channels, timeout
        self.source_rate, self.source_channels = stream_format(tts)

    async def attempt(self, text: str, voice: str | None) -> AsyncIterator[Chunk]:
        async def text_iter() -> AsyncIterator[str]:
            yield text

        converter = PcmConverter(rate=self.rate, channels=self.channels)
        async with asyncio.timeout(self.timeout):
            async for data in self.tts.stream_synthesize(text_iter(), voice_id=voice):
                audio = SynthesizedAudio(
                    bytes(data), rate=self.source_rate, channels=self.source_channels
                )
                if pcm := converter.push(audio):
                    yield pcm
        if tail := converter.flush():
            yield tail


def stream_format(tts: Any) -> tuple[int, int]:
    """(rate, channels) a `stream_synthesize` object emits."""
    rate = int(getattr(tts, "sample_rate", None) or DEFAULT_STREAM_RATE)
    return rate, int(getattr(tts, "num_channels", None) or 1)
