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

Errors: raise `TransientBackendError` for what is worth retrying, `PermanentBackendError`
/ `AuthenticationError` for what is not, `EmptyAudioError` for no audio.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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
        from voiceprep.decoding import decode  # deferred: PyAV is heavy

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


@runtime_checkable
class Backend(Protocol):
    name: str

    def identity(self, voice: str | None = None) -> BackendIdentity: ...

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio: ...

    def unavailable_reason(self) -> str | None: ...


class BackendFactory(Protocol):
    def __call__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> Backend: ...
