"""The `cartesia` backend: `POST {base}/tts/bytes` (Cartesia Sonic).

- Key: `CARTESIA_API_KEY`, sent as `Authorization: Bearer …` with the `Cartesia-Version`
  header (API version 2025-04-16).
- Base URL: `-O base_url=…`, else https://api.cartesia.ai.
- Body: `{model_id, transcript, voice: {mode: "id", id}, output_format: {container: "raw",
  encoding: "pcm_s16le", sample_rate}, language?, generation_config?}`; the sample rate is
  the target rate when Cartesia offers it (8, 16, 22.05, 24, 44.1, 48 kHz), else the next
  higher offered one, so nothing is resampled needlessly.
- The cache identity holds model, voice id and the options given (language, speed,
  volume, emotion); never the key or the base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from voiceprep.backends._cloud import HostedBackend, env_secret, language_option, offered_rate
from voiceprep.backends._http import post_for_audio, stream_audio, whole_samples
from voiceprep.backends._options import as_float
from voiceprep.backends._stream import pcm_chunks
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import BackendUnavailableError, UsageError
from voiceprep.keys import BackendIdentity

OFFICIAL_BASE_URL = "https://api.cartesia.ai"
API_VERSION = "2025-04-16"
DEFAULT_MODEL = "sonic-3"
DEFAULT_VOICE = "694f9389-aac1-45b6-b726-9d9369183238"  # the voice of Cartesia's quickstart
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
KEY_ENV = "CARTESIA_API_KEY"
OPTIONS = {
    "model": f"model_id (default {DEFAULT_MODEL})",
    "language": "language code, e.g. en, fr (default: Cartesia's, en)",
    "speed": "generation_config.speed, 0.6–1.5 (sonic-3)",
    "volume": "generation_config.volume, 0.5–2.0 (sonic-3)",
    "emotion": "generation_config.emotion, e.g. calm, excited (sonic-3)",
    "base_url": f"API base URL (default {OFFICIAL_BASE_URL})",
}
_RANGES = {"speed": (0.6, 1.5), "volume": (0.5, 2.0)}


class CartesiaBackend(HostedBackend):
    """Cartesia text-to-speech (Sonic models)."""

    name = "cartesia"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    key_env = KEY_ENV
    official_base_url = OFFICIAL_BASE_URL

    def configure(self, options: Mapping[str, str]) -> None:
        self.model = options.get("model") or DEFAULT_MODEL
        language = options.get("language")
        self.language = language_option(self.name, language) if language else None
        self.generation: dict[str, float | str] = {}
        for key, (low, high) in _RANGES.items():
            if key in options:
                self.generation[key] = as_float(self.name, key, options[key], low=low, high=high)
        if options.get("emotion"):
            self.generation["emotion"] = options["emotion"].strip()

    def identity(self, voice: str | None = None) -> BackendIdentity:
        options: dict[str, object] = dict(self.generation)
        if self.language is not None:
            options["language"] = self.language
        return BackendIdentity(
            name=self.name, model=self.model, voice=voice or self.default_voice, options=options
        )

    def request_body(self, text: str, *, voice: str | None, sample_rate: int) -> dict[str, object]:
        voice_id = (voice or self.default_voice).strip()
        if not voice_id:
            raise UsageError("cartesia: the voice id is empty")
        body: dict[str, object] = {
            "model_id": self.model,
            "transcript": text,
            "voice": {"mode": "id", "id": voice_id},
            "output_format": {
                "container": "raw",
                "encoding": "pcm_s16le",
                "sample_rate": sample_rate,
            },
        }
        if self.language is not None:
            body["language"] = self.language
        if self.generation:
            body["generation_config"] = dict(self.generation)
        return body

    def _post(self, text: str, voice: str | None, sample_rate: int) -> dict[str, Any]:
        """The keyword arguments of one POST /tts/bytes (post_for_audio / stream_audio)."""
        key = env_secret(KEY_ENV)
        if key is None:
            raise BackendUnavailableError(f"cartesia: {KEY_ENV} is not set")
        return {
            "backend": self.name,
            "url": f"{self.base_url}/tts/bytes",
            "headers": {"Authorization": f"Bearer {key}", "Cartesia-Version": API_VERSION},
            "body": self.request_body(text, voice=voice, sample_rate=sample_rate),
            "secret": key,
        }

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        sample_rate = offered_rate(rate, RATES)
        data = await post_for_audio(self._pool, **self._post(text, voice, sample_rate))
        return SynthesizedAudio(whole_samples(data), rate=sample_rate, channels=1)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """/tts/bytes sends the raw PCM as it is generated: passed on chunk by chunk."""
        sample_rate = offered_rate(rate, RATES)
        async for chunk in pcm_chunks(
            stream_audio(self._pool, **self._post(text, voice, sample_rate)),
            rate=sample_rate,
            channels=1,
            empty="cartesia: the provider returned no audio",
        ):
            yield chunk
