"""The `openai` backend: `POST {base}/audio/speech`, OpenAI's API or any server speaking it.

- Base URL: `-O base_url=…`, else `OPENAI_BASE_URL`, else https://api.openai.com/v1.
- Key: `OPENAI_API_KEY`, sent as `Authorization: Bearer …`. Required for api.openai.com;
  optional for any other base URL, since self-hosted servers often have none.
- Asks for `response_format: "wav"` by default: lossless like `pcm`, but self-describing,
  so a self-hosted server that produces another rate than OpenAI's 24 kHz still decodes
  right.
- The cache identity holds model, voice, speed, instructions and response_format — not
  the key, and not the base URL, so a cache warmed through a proxy or at another address
  serves the same model. A self-hosted server with a different model behind the same
  model name would share entries: give it its own model name or cache directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from voiceprep.backends._cloud import HostedBackend
from voiceprep.backends._http import post_for_audio, stream_audio, whole_samples
from voiceprep.backends._options import as_float
from voiceprep.backends._stream import pcm_chunks, wav_chunks, whole
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import BackendUnavailableError, PermanentBackendError, UsageError
from voiceprep.keys import BackendIdentity
from voiceprep.secrets import env_secret

OFFICIAL_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
DEFAULT_FORMAT = "wav"
MAX_INPUT_CHARS = 4096
PCM_RATE = 24000  # response_format "pcm": raw s16le mono at 24 kHz, no header
FORMATS = ("wav", "pcm", "mp3", "opus", "aac", "flac")
OPTIONS = {
    "model": f"model name (default {DEFAULT_MODEL})",
    "speed": "0.25–4.0 (default 1.0)",
    "instructions": "how to speak (gpt-4o-mini-tts): tone, accent, pace…",
    "response_format": f"one of {', '.join(FORMATS)} (default {DEFAULT_FORMAT})",
    "base_url": "API base URL (default $OPENAI_BASE_URL or " + OFFICIAL_BASE_URL + ")",
}
KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAIBackend(HostedBackend):
    """OpenAI text-to-speech (and compatible servers)."""

    name = "openai"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    official_base_url = OFFICIAL_BASE_URL
    base_url_env = BASE_URL_ENV
    base_url: str  # never None: there is an official one

    def configure(self, options: Mapping[str, str]) -> None:
        self.model = options.get("model") or DEFAULT_MODEL
        self.response_format = (options.get("response_format") or DEFAULT_FORMAT).lower()
        if self.response_format not in FORMATS:
            raise UsageError(
                f"openai: option response_format={self.response_format!r}: "
                f"expected one of {', '.join(FORMATS)}"
            )
        self.speed = (
            as_float(self.name, "speed", options["speed"], low=0.25, high=4.0)
            if "speed" in options
            else None
        )
        self.instructions = options.get("instructions") or None

    @property
    def is_official(self) -> bool:
        return urlsplit(self.base_url).hostname == "api.openai.com"

    def identity(self, voice: str | None = None) -> BackendIdentity:
        options: dict[str, object] = {"response_format": self.response_format}
        if self.speed is not None:
            options["speed"] = self.speed
        if self.instructions is not None:
            options["instructions"] = self.instructions
        return BackendIdentity(
            name=self.name, model=self.model, voice=voice or self.default_voice, options=options
        )

    def unavailable_reason(self) -> str | None:
        if self.is_official and not env_secret(KEY_ENV):
            return f"{KEY_ENV} is not set"
        return None

    def request_body(self, text: str, voice: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.model,
            "input": text,
            "voice": voice or self.default_voice,
            "response_format": self.response_format,
        }
        if self.speed is not None:
            body["speed"] = self.speed
        if self.instructions is not None:
            body["instructions"] = self.instructions
        return body

    def _request(self, text: str, voice: str | None) -> dict[str, Any]:
        """The keyword arguments of one POST (post_for_audio / stream_audio)."""
        if len(text) > MAX_INPUT_CHARS:
            raise PermanentBackendError(
                f"openai: text of {len(text)} characters is over the API's limit of "
                f"{MAX_INPUT_CHARS}"
            )
        key = env_secret(KEY_ENV)
        if key is None and self.is_official:
            raise BackendUnavailableError(f"openai: {KEY_ENV} is not set")
        return {
            "backend": self.name,
            "url": f"{self.base_url}/audio/speech",
            "headers": {"Authorization": f"Bearer {key}"} if key else {},
            "body": self.request_body(text, voice),
            "secret": key,
        }

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        data = await post_for_audio(self._pool, **self._request(text, voice))
        if self.response_format == "pcm":
            return SynthesizedAudio(whole_samples(data), rate=PCM_RATE, channels=1)
        return SynthesizedAudio(data)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """The audio as OpenAI sends it: `pcm` (24 kHz mono) and `wav` (a header whose sizes
        are 0xFFFFFFFF, then the samples) chunk by chunk; other formats in one chunk."""
        request = self._request(text, voice)
        empty = "openai: the provider returned no audio"
        if self.response_format == "pcm":
            chunks = pcm_chunks(
                stream_audio(self._pool, **request), rate=PCM_RATE, channels=1, empty=empty
            )
        elif self.response_format == "wav":
            chunks = wav_chunks(
                stream_audio(self._pool, **request), rate=rate, channels=channels, empty=empty
            )
        else:
            audio = SynthesizedAudio(await post_for_audio(self._pool, **request))
            chunks = whole(audio, rate=rate, channels=channels)
        async for chunk in chunks:
            yield chunk
