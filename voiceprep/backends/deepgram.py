"""The `deepgram` backend: Aura `POST {base}/v1/speak?model=…&encoding=linear16&…`.

- Key: `DEEPGRAM_API_KEY`, sent as `Authorization: Token …`.
- Base URL: `-O base_url=…`, else https://api.deepgram.com.
- The voice is the Aura model name (`aura-2-thalia-en`, `aura-asteria-en`…): Deepgram has
  no separate voice parameter, so `--voice` names the model.
- Query: `model`, `encoding=linear16`, `container=wav`, `sample_rate` = the target rate
  when Aura offers it (8, 16, 24, 32, 48 kHz), else the next higher offered one;
  `speed` when given. Body: `{"text": …}`. The answer is a WAV with its header.
- The cache identity holds the Aura model name (as the voice) and speed when given.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from voiceprep.backends._cloud import HostedBackend, offered_rate
from voiceprep.backends._http import post_for_audio, stream_audio
from voiceprep.backends._options import as_float
from voiceprep.backends._stream import pcm_chunks
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import PermanentBackendError, UsageError
from voiceprep.keys import BackendIdentity

OFFICIAL_BASE_URL = "https://api.deepgram.com"
DEFAULT_VOICE = "aura-2-thalia-en"
RATES = (8000, 16000, 24000, 32000, 48000)
MAX_INPUT_CHARS = 2000
KEY_ENV = "DEEPGRAM_API_KEY"
OPTIONS = {
    "speed": "speaking rate multiplier, 0.7–1.5 (Aura-2)",
    "base_url": f"API base URL (default {OFFICIAL_BASE_URL})",
}
_MODEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class DeepgramBackend(HostedBackend):
    """Deepgram Aura text-to-speech."""

    name = "deepgram"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    key_env = KEY_ENV
    official_base_url = OFFICIAL_BASE_URL

    def configure(self, options: Mapping[str, str]) -> None:
        self.speed = (
            as_float(self.name, "speed", options["speed"], low=0.7, high=1.5)
            if "speed" in options
            else None
        )

    def identity(self, voice: str | None = None) -> BackendIdentity:
        options: dict[str, object] = {} if self.speed is None else {"speed": self.speed}
        return BackendIdentity(
            name=self.name, model=None, voice=voice or self.default_voice, options=options
        )

    def query(self, *, voice: str | None, rate: int, container: str = "wav") -> dict[str, str]:
        model = (voice or self.default_voice).strip()
        if not _MODEL.match(model):
            raise UsageError(f"deepgram: invalid voice {model!r} (expected e.g. {DEFAULT_VOICE})")
        query = {
            "model": model,
            "encoding": "linear16",
            "container": container,
            "sample_rate": str(offered_rate(rate, RATES)),
        }
        if self.speed is not None:
            query["speed"] = f"{self.speed:g}"
        return query

    def _post(self, text: str, query: dict[str, str]) -> dict[str, Any]:
        """The keyword arguments of one POST /v1/speak (post_for_audio / stream_audio)."""
        if len(text) > MAX_INPUT_CHARS:
            raise PermanentBackendError(
                f"deepgram: text of {len(text)} characters is over the API's limit of "
                f"{MAX_INPUT_CHARS}"
            )
        key = self._key()
        return {
            "backend": self.name,
            "url": f"{self.base_url}/v1/speak",
            "headers": {"Authorization": f"Token {key}", "Accept": "audio/*"},
            "body": {"text": text},
            "params": query,
            "secret": key,
        }

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        query = self.query(voice=voice, rate=rate)
        return SynthesizedAudio(await post_for_audio(self._pool, **self._post(text, query)))

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """`/v1/speak` streams its answer: asked with `container=none` (raw linear16, as
        Deepgram advises for streaming: no header to skip), passed on chunk by chunk."""
        query = self.query(voice=voice, rate=rate, container="none")
        async for chunk in pcm_chunks(
            stream_audio(self._pool, **self._post(text, query)),
            rate=int(query["sample_rate"]),
            channels=1,
            empty="deepgram: the provider returned no audio",
        ):
            yield chunk
