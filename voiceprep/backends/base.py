"""The one small protocol every TTS backend speaks, built-in or third-party.

A backend is found through the `voiceprep.backends` entry-point group. The entry point
names a factory (usually the class) called as `factory(voice=..., options=...)`, where
`options` holds the `-O key=value` pairs (strings) and config-file values. The object it
returns must offer:

- `name`: the entry-point name;
- `identity(voice)`: a `BackendIdentity` for the cache key (model, voice, options that
  change the sound; never an API key);
- `await synthesize(text, voice=..., rate=..., channels=...)`: a `SynthesizedAudio` —
  bytes in any format libav decodes, or raw s16le PCM with `rate` and `channels` set.
  The target rate/channels are hints (a backend may ask its provider for them); the cache
  normalizes whatever comes back;
- `unavailable_reason()`: None when usable here, else a short reason ("espeak-ng not
  found on PATH", "OPENAI_API_KEY is not set").

Optionally, for audio that plays while it is synthesized (`TTSAudioCache.stream`, serve):

- `stream(text, *, voice=None, rate, channels)`: an async generator of
  `SynthesizedAudio`, each item RAW s16le PCM (`rate` and `channels` set, the same for
  every item of one stream, whole frames), yielded as soon as the provider produces it.
  `rate`/`channels` are hints as for `synthesize`; the fill path (voiceprep.fill) converts
  the chunks to the target shape with one stateful resampler (`PcmConverter`), so chunk
  boundaries leave no seams. A backend without `stream` works as one chunk: its
  `synthesize` result. An item's `words` are timed from that item's first sample. A
  provider that times words only after sending their audio (Cartesia) yields them on an
  item without audio (`data` empty), timed from where it stands, the end of the audio
  before it: negative times.

Errors: raise `TransientBackendError` for what is worth retrying, `PermanentBackendError`
/ `AuthenticationError` for what is not, `EmptyAudioError` for no audio. A `stream` raises
the same errors from the iterator, also after some chunks (the fill path then stores
nothing; it retries only while no audio has been handed out).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from voiceprep.decoding import decode
from voiceprep.errors import EmptyAudioError
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Words
from voiceprep.wav import parse_wav_header, wav_bytes


@dataclass(frozen=True)
class SynthesizedAudio:
    """What a backend returns: a container libav decodes, or raw s16le PCM.

    `rate` and `channels` are None for containers (WAV, MP3, Opus…) and set for raw PCM.
    `words`: when the provider said when each word is spoken (seconds from the start of
    this audio); None when it did not.
    """

    data: bytes
    rate: int | None = None
    channels: int | None = None
    words: Words | None = None

    @property
    def is_raw_pcm(self) -> bool:
        return self.rate is not None

    def to_pcm(self, *, rate: int, channels: int) -> bytes:
        """s16le PCM at `rate`/`channels`. Raises EmptyAudioError when there is no audio.

        Audio already in that shape (raw PCM, or a plain s16 WAV such as OpenAI's answer at
        24 kHz) is taken as is; anything else goes through the decoder. This is CPU work:
        async callers run it with `to_pcm_async`.
        """
        if not self.data:
            raise EmptyAudioError("the backend returned no audio")
        as_is = self._payload_if_shaped(rate, channels)
        if as_is is not None:
            return as_is

        blob = self.data
        if self.is_raw_pcm:
            blob = wav_bytes(blob, rate=self.rate or rate, channels=self.channels or 1)
        pcm = b"".join(decode(blob, rate=rate, channels=channels))
        if not pcm:
            raise EmptyAudioError("the backend's audio decoded to no samples")
        return pcm

    async def to_pcm_async(self, *, rate: int, channels: int) -> bytes:
        """`to_pcm` off the event loop when it has to decode."""
        if self._payload_if_shaped(rate, channels) is not None:
            return self.to_pcm(rate=rate, channels=channels)
        return await asyncio.to_thread(self.to_pcm, rate=rate, channels=channels)

    def _payload_if_shaped(self, rate: int, channels: int) -> bytes | None:
        """The s16 samples themselves when the audio is already at `rate`/`channels`."""
        frame = 2 * channels
        if self.is_raw_pcm:
            if (self.rate, self.channels) == (rate, channels) and len(self.data) >= frame:
                return self.data[: len(self.data) - len(self.data) % frame]
            return None
        if self.data[:4] != b"RIFF":
            return None
        try:
            fmt = parse_wav_header(self.data)
        except (ValueError, struct.error):
            return None  # let the decoder judge it
        if (fmt.rate, fmt.channels, fmt.sample_format) != (rate, channels, "s16"):
            return None
        if fmt.data_bytes < frame:
            return None
        end = fmt.data_offset + fmt.data_bytes - fmt.data_bytes % frame
        return self.data[fmt.data_offset : end]


class PcmConverter:
    """Streamed chunks of one synthesis to s16le PCM at `rate`/`channels`, seamlessly.

    Chunks already in the target shape pass through (whole frames only; a split frame
    is carried to the next chunk). Others go through one libswresample resampler kept
    for the whole stream, so its filter state spans chunk boundaries; `flush()` returns
    what it still holds. Chunks that are not raw PCM (a container) are collected and
    decoded by `flush()`.
    """

    def __init__(self, *, rate: int, channels: int) -> None:
        self.rate, self.channels = rate, channels
        self._carry = b""
        self._source: tuple[int, int] | None = None
        self._resampler: Any = None
        self._container = bytearray()
        self._samples = 0

    def push(self, audio: SynthesizedAudio) -> bytes:
        """The PCM `audio` completes (may be empty: held in the resampler or the carry)."""
        if not audio.is_raw_pcm or self._container:
            self._container += audio.data
            return b""
        source = (audio.rate or self.rate, audio.channels or 1)
        if self._source is None:
            self._source = source
        elif source != self._source:
            raise EmptyAudioError(
                f"a stream changed format mid-way ({self._source} to {source}): not supported"
            )
        data = self._carry + audio.data
        frame = 2 * source[1]
        whole = len(data) - len(data) % frame
        self._carry = data[whole:]
        if not whole:
            return b""
        if source == (self.rate, self.channels):
            return data[:whole]
        return self._resample(data[:whole], source)

    def flush(self) -> bytes:
        """The end of the stream: what the resampler holds, or the decoded container."""
        if self._container:
            blob = SynthesizedAudio(bytes(self._container))
            return blob.to_pcm(rate=self.rate, channels=self.channels)
        if self._resampler is None:
            return b""
        return _joined(self._resampler.resample(None), self.channels)

    def _resample(self, data: bytes, source: tuple[int, int]) -> bytes:
        import av  # deferred: PyAV is heavy, and only needed when the shape differs
        import numpy as np

        layouts = {1: "mono", 2: "stereo"}
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout=layouts[self.channels], rate=self.rate
            )
        samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layouts[source[1]])
        frame.sample_rate = source[0]
        frame.pts = self._samples
        self._samples += frame.samples
        return _joined(self._resampler.resample(frame), self.channels)


def _joined(frames: list[Any], channels: int) -> bytes:
    # A plane's buffer may be padded past its samples: cut it to the frame's length.
    return b"".join(bytes(out.planes[0])[: out.samples * channels * 2] for out in frames)


@runtime_checkable
class Backend(Protocol):
    name: str

    def identity(self, voice: str | None = None) -> BackendIdentity: ...

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio: ...

    def unavailable_reason(self) -> str | None: ...


class StreamingBackend(Backend, Protocol):
    """A backend that also streams (the optional `stream` method, see the module doc)."""

    def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]: ...


class BackendFactory(Protocol):
    def __call__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> Backend: ...
