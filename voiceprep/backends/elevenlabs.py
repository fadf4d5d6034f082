"""The `elevenlabs` backend: `POST {base}/v1/text-to-speech/{voice_id}?output_format=…`.

- Key: `ELEVENLABS_API_KEY`, sent as the `xi-api-key` header (always required).
- Base URL: `-O base_url=…`, else `ELEVENLABS_BASE_URL`, else https://api.elevenlabs.io.
- Output: raw PCM at the target rate when ElevenLabs offers it (`pcm_16000`, `pcm_22050`,
  `pcm_24000`, `pcm_44100`), otherwise the nearest offered rate above it (or the highest),
  which the cache resamples. `-O output_format=mp3_44100_128` (any of theirs) overrides.
- Model: `eleven_multilingual_v2` by default — prompts are prebuilt ahead of time, so
  quality matters more than the latency `eleven_flash_v2_5` is made for.
- The cache identity holds model, voice id, the voice settings given and an explicit
  output_format; never the key or the base URL.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from voiceprep.backends._cloud import HostedBackend, offered_rate
from voiceprep.backends._http import post_for_audio, stream_audio, whole_samples
from voiceprep.backends._options import as_bool, as_float
from voiceprep.backends._stream import pcm_chunks, whole
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import EmptyAudioError, PermanentBackendError, UsageError
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Words, from_characters

OFFICIAL_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_MODEL = "eleven_multilingual_v2"
DEFAULT_VOICE = "JBFqnCBsd6RMkjVDRZzb"  # "George", a premade voice every account has
PCM_RATES = (16000, 22050, 24000, 44100)
KEY_ENV = "ELEVENLABS_API_KEY"
BASE_URL_ENV = "ELEVENLABS_BASE_URL"
_FLOAT_SETTINGS = {
    "stability": (0.0, 1.0),
    "similarity_boost": (0.0, 1.0),
    "style": (0.0, 1.0),
    "speed": (0.7, 1.2),
}
OPTIONS = {
    "model": f"model_id (default {DEFAULT_MODEL})",
    "stability": "voice setting, 0–1",
    "similarity_boost": "voice setting, 0–1",
    "style": "voice setting, 0–1",
    "use_speaker_boost": "voice setting, true/false",
    "speed": "voice setting, 0.7–1.2",
    "output_format": "e.g. mp3_44100_128, pcm_24000 (default: PCM at the target rate)",
    "base_url": f"API base URL (default ${BASE_URL_ENV} or {OFFICIAL_BASE_URL})",
}
_FORMAT = re.compile(r"^(?:pcm|mp3|opus)_\d+(?:_\d+)?$")  # ulaw/alaw: headerless, undecodable
_VOICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def output_format_for(rate: int) -> str:
    """`pcm_<rate>` when offered, else the nearest higher offered rate (or the highest)."""
    return f"pcm_{offered_rate(rate, PCM_RATES)}"


def _pcm_rate(output_format: str) -> int | None:
    """The sample rate of a `pcm_<rate>` output format (None for mp3_…, opus_…)."""
    return int(output_format.split("_")[1]) if output_format.startswith("pcm_") else None


class ElevenLabsBackend(HostedBackend):
    """ElevenLabs text-to-speech."""

    name = "elevenlabs"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    key_env = KEY_ENV
    official_base_url = OFFICIAL_BASE_URL
    base_url_env = BASE_URL_ENV

    def configure(self, options: Mapping[str, str]) -> None:
        self.model = options.get("model") or DEFAULT_MODEL
        self.voice_settings: dict[str, float | bool] = {}
        for key, (low, high) in _FLOAT_SETTINGS.items():
            if key in options:
                self.voice_settings[key] = as_float(
                    self.name, key, options[key], low=low, high=high
                )
        if "use_speaker_boost" in options:
            self.voice_settings["use_speaker_boost"] = as_bool(
                self.name, "use_speaker_boost", options["use_speaker_boost"]
            )
        self.output_format = options.get("output_format") or None
        if self.output_format is not None and not _FORMAT.match(self.output_format):
            raise UsageError(
                f"elevenlabs: option output_format={self.output_format!r}: "
                "expected e.g. pcm_24000 or mp3_44100_128"
            )

    def identity(self, voice: str | None = None) -> BackendIdentity:
        options: dict[str, object] = dict(self.voice_settings)
        if self.output_format is not None:
            options["output_format"] = self.output_format
        return BackendIdentity(
            name=self.name, model=self.model, voice=voice or self.default_voice, options=options
        )

    def request(
        self, text: str, *, voice: str | None, rate: int
    ) -> tuple[str, dict[str, str], dict[str, object]]:
        """(url, query, JSON body) of one synthesis."""
        voice_id = voice or self.default_voice
        if not _VOICE_ID.match(voice_id):
            # It goes into the URL path: refuse anything that could change the path.
            raise UsageError(f"elevenlabs: invalid voice id {voice_id!r}")
        body: dict[str, object] = {"text": text, "model_id": self.model}
        if self.voice_settings:
            body["voice_settings"] = dict(self.voice_settings)
        query = {"output_format": self.output_format or output_format_for(rate)}
        return f"{self.base_url}/v1/text-to-speech/{voice_id}", query, body

    def _post(self, text: str, voice: str | None, rate: int, *, stream: bool) -> dict[str, Any]:
        """The keyword arguments of one POST (post_for_audio / stream_audio): the whole
        answer from `/with-timestamps` (the audio and when each character is spoken), the
        streaming one from `/stream`."""
        key = self._key()
        url, query, body = self.request(text, voice=voice, rate=rate)
        return {
            "backend": self.name,
            "url": f"{url}/stream" if stream else f"{url}/with-timestamps",
            "headers": {"xi-api-key": key, "Accept": "audio/*" if stream else "application/json"},
            "body": body,
            "params": query,
            "secret": key,
        }

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        post = self._post(text, voice, rate, stream=False)
        data, words = _timestamped(await post_for_audio(self._pool, **post, json_answer=True))
        pcm_rate = _pcm_rate(post["params"]["output_format"])
        if pcm_rate is not None:
            return SynthesizedAudio(whole_samples(data), rate=pcm_rate, channels=1, words=words)
        return SynthesizedAudio(data, words=words)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """`POST …/stream`: PCM at the target rate (or the next offered one) chunk by chunk;
        an explicit non-PCM output_format (mp3_…) arrives whole, decoded in one chunk."""
        post = self._post(text, voice, rate, stream=True)
        pcm_rate = _pcm_rate(post["params"]["output_format"])
        if pcm_rate is None:
            audio = SynthesizedAudio(await post_for_audio(self._pool, **post))
            chunks = whole(audio, rate=rate, channels=channels)
        else:
            chunks = pcm_chunks(
                stream_audio(self._pool, **post),
                rate=pcm_rate,
                channels=1,
                empty="elevenlabs: the provider returned no audio",
            )
        async for chunk in chunks:
            yield chunk


def _timestamped(answer: bytes) -> tuple[bytes, Words | None]:
    """The audio of a `/with-timestamps` answer, and its words from the characters'
    alignment (None when it has none or it is malformed: the audio still counts)."""
    try:
        document = json.loads(answer)
        audio = base64.b64decode(document["audio_base64"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentBackendError(
            f"elevenlabs: the answer is not audio with timestamps ({type(exc).__name__})"
        ) from None
    if not audio:
        raise EmptyAudioError("elevenlabs: the provider returned no audio")
    alignment = document.get("alignment")
    try:
        words = from_characters(
            alignment["characters"],
            alignment["character_start_times_seconds"],
            alignment["character_end_times_seconds"],
        )
    except (ValueError, KeyError, TypeError):
        words = ()
    return audio, words or None
