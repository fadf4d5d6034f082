"""The `cartesia` backend: `POST {base}/tts/sse` (Cartesia Sonic), with word timestamps.

- Key: `CARTESIA_API_KEY`, sent as `Authorization: Bearer …` with the `Cartesia-Version`
  header (API version 2025-04-16).
- Base URL: `-O base_url=…`, else https://api.cartesia.ai.
- Body: `{model_id, transcript, voice: {mode: "id", id}, output_format: {container: "raw",
  encoding: "pcm_s16le", sample_rate}, language?, generation_config?}`; the sample rate is
  the target rate when Cartesia offers it (8, 16, 22.05, 24, 44.1, 48 kHz), else the next
  higher offered one, so nothing is resampled needlessly.
- Answer: server-sent events, as Cartesia generates: `chunk` (base64 PCM), `timestamps`
  (`add_timestamps: true` in the body: `word_timestamps: {words, start, end}`, seconds from
  the first sample), `done`, or `error` mid-stream (`status_code` and `error`; from API
  version 2026-03-01 `title` and `message`). The
  audio is passed on chunk by chunk as the events arrive; the words travel with it
  (`SynthesizedAudio.words`), or not at all when any timestamps event is malformed or they
  do not fit the audio. (`/tts/bytes` streams the same audio without timestamps.)
- The cache identity holds model, voice id and the options given (language, speed,
  volume, emotion); never the key or the base URL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from voiceprep.backends._cloud import HostedBackend, language_option, offered_rate
from voiceprep.backends._http import (
    error_for_status,
    redact,
    stream_audio,
)
from voiceprep.backends._options import as_float
from voiceprep.backends._stream import ServerEvent, pcm_chunks, server_events
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import (
    PermanentBackendError,
    TransientBackendError,
    UsageError,
)
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Word, Words, from_word_lists, words_from_json, words_to_json

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
            "add_timestamps": True,
        }
        if self.language is not None:
            body["language"] = self.language
        if self.generation:
            body["generation_config"] = dict(self.generation)
        return body

    def _post(self, text: str, voice: str | None, sample_rate: int) -> dict[str, Any]:
        """The keyword arguments of one POST /tts/sse (stream_audio)."""
        key = self._key()
        return {
            "backend": self.name,
            "url": f"{self.base_url}/tts/sse",
            "headers": {
                "Authorization": f"Bearer {key}",
                "Cartesia-Version": API_VERSION,
                "Accept": "text/event-stream",
            },
            "body": self.request_body(text, voice=voice, sample_rate=sample_rate),
            "secret": key,
            "events": True,
        }

    async def _audio(
        self, text: str, voice: str | None, sample_rate: int, timestamps: _Timestamps
    ) -> AsyncIterator[bytes]:
        """The PCM of one answer's chunk events as they arrive; its word timestamps go to
        `timestamps`. Raises the typed error of an error event, and TransientBackendError
        when the answer ends before its `done` event (a proxy cut it)."""
        post = self._post(text, voice, sample_rate)
        done = False
        async for event in server_events(stream_audio(self._pool, **post), backend=self.name):
            if done:
                continue  # read to the end: the connection is reused only then
            kind, fields = _parsed(event)
            if kind == "chunk":
                yield _chunk_audio(fields)
            elif kind == "timestamps":
                timestamps.add(fields.get("word_timestamps"))
            elif kind == "done":
                done = True
            elif kind == "error":
                raise _failure(fields, post["secret"])
        if not done:
            raise TransientBackendError("cartesia: the answer ended before its done event")

    def _chunks(
        self, text: str, voice: str | None, sample_rate: int, timestamps: _Timestamps
    ) -> AsyncIterator[SynthesizedAudio]:
        return pcm_chunks(
            self._audio(text, voice, sample_rate, timestamps),
            rate=sample_rate,
            channels=1,
            empty="cartesia: the provider returned no audio",
        )

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        sample_rate = offered_rate(rate, RATES)
        timestamps = _Timestamps()
        chunks = self._chunks(text, voice, sample_rate, timestamps)
        pcm = b"".join([chunk.data async for chunk in chunks])
        words = timestamps.fitted(len(pcm) / (2 * sample_rate))
        return SynthesizedAudio(pcm, rate=sample_rate, channels=1, words=words)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        """The PCM chunk by chunk as the events bring it; then, when Cartesia timed the
        words, one item without audio carrying them. Cartesia times a word after sending
        its audio, so they are timed, as every item's words are, from where that item
        stands in the stream (the end of the audio): negative (backends/base.py)."""
        sample_rate = offered_rate(rate, RATES)
        timestamps = _Timestamps()
        played = 0
        async for chunk in self._chunks(text, voice, sample_rate, timestamps):
            played += len(chunk.data)
            yield chunk
        seconds = played / (2 * sample_rate)
        words = timestamps.fitted(seconds)
        if words:
            back = tuple(Word(w.text, w.start - seconds, w.end - seconds) for w in words)
            yield SynthesizedAudio(b"", rate=sample_rate, channels=1, words=back)


class _Timestamps:
    """The word timestamps of one answer, from its `timestamps` events."""

    def __init__(self) -> None:
        self.words: list[Word] = []
        self.malformed = False

    def add(self, value: object) -> None:
        try:
            if not isinstance(value, dict):
                raise TypeError("word_timestamps is not an object")
            self.words += from_word_lists(value["words"], value["start"], value["end"])
        except (KeyError, TypeError, ValueError):
            self.malformed = True

    def fitted(self, seconds: float) -> Words | None:
        """The words when they are well formed, in order and inside `seconds` of audio."""
        if self.malformed or not self.words:
            return None
        try:  # the checks an entry's words pass when read back
            return words_from_json(words_to_json(self.words), duration=seconds) or None
        except ValueError:
            return None


def _parsed(event: ServerEvent) -> tuple[str, dict[str, Any]]:
    """(type, fields) of one event: its JSON's `type`, else the SSE event name."""
    try:
        fields = json.loads(event.data)
    except ValueError:
        raise PermanentBackendError("cartesia: an event of the answer is not JSON") from None
    if not isinstance(fields, dict):
        raise PermanentBackendError("cartesia: an event of the answer is not a JSON object")
    kind = fields.get("type")
    return (kind if isinstance(kind, str) else event.name), fields


def _chunk_audio(fields: dict[str, Any]) -> bytes:
    data = fields.get("data")
    try:
        return base64.b64decode(data or "", validate=True)
    except (ValueError, TypeError):
        raise PermanentBackendError("cartesia: a chunk event's audio is not base64") from None


def _failure(fields: dict[str, Any], secret: str) -> Exception:
    """The typed error of an `error` event (its status as an HTTP status would be)."""
    status = fields.get("status_code")
    status = status if isinstance(status, int) and status >= 400 else 500
    said = [fields.get(name) for name in ("title", "message", "error")]
    detail = redact(": ".join(str(part) for part in said if part), secret)
    return error_for_status(status, f"cartesia: error {status} mid-stream: {detail or 'no detail'}")
