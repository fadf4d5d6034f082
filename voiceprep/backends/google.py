"""The `google` backend: Cloud Text-to-Speech `POST {base}/text:synthesize`, no SDK needed.

- Credentials: `GOOGLE_API_KEY` (sent as the `X-Goog-Api-Key` header, never in the URL),
  or else an OAuth access token in `GOOGLE_ACCESS_TOKEN` (`Authorization: Bearer …`, e.g.
  from `gcloud auth print-access-token`; `GOOGLE_CLOUD_PROJECT`, when set, is sent as the
  quota project).
- Base URL: `-O base_url=…`, else https://texttospeech.googleapis.com/v1.
- Body: `{input: {text}, voice: {languageCode, name}, audioConfig: {audioEncoding:
  "LINEAR16", sampleRateHertz: <target rate>, speakingRate?, pitch?, volumeGainDb?}}`.
  The answer is JSON whose `audioContent` is base64 of a WAV (LINEAR16 comes with its
  header), at exactly the rate asked for.
- The cache identity holds the voice name and the options given (language,
  speaking_rate, pitch, volume_gain_db); never the credentials or the base URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from voiceprep.backends._cloud import (
    HostedBackend,
    env_secret,
    env_setting,
    language_of_voice,
    language_option,
)
from voiceprep.backends._http import post_for_audio
from voiceprep.backends._options import as_float
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import (
    BackendUnavailableError,
    EmptyAudioError,
    PermanentBackendError,
    UsageError,
)
from voiceprep.keys import BackendIdentity

OFFICIAL_BASE_URL = "https://texttospeech.googleapis.com/v1"
DEFAULT_VOICE = "en-US-Chirp3-HD-Charon"
KEY_ENV = "GOOGLE_API_KEY"
TOKEN_ENV = "GOOGLE_ACCESS_TOKEN"
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"
MAX_INPUT_BYTES = 5000  # the API's limit on input.text
_FLOATS = {
    "speaking_rate": ("speakingRate", 0.25, 4.0),
    "pitch": ("pitch", -20.0, 20.0),
    "volume_gain_db": ("volumeGainDb", -96.0, 16.0),
}
OPTIONS = {
    "language": "languageCode (default: from the voice name, e.g. en-US)",
    "speaking_rate": "0.25–4.0 (default 1.0)",
    "pitch": "semitones, -20–20 (not all voices)",
    "volume_gain_db": "-96–16",
    "base_url": f"API base URL (default {OFFICIAL_BASE_URL})",
}


class GoogleBackend(HostedBackend):
    """Google Cloud Text-to-Speech."""

    name = "google"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    official_base_url = OFFICIAL_BASE_URL

    def configure(self, options: Mapping[str, str]) -> None:
        self.language = (
            language_option(self.name, options["language"]) if options.get("language") else None
        )
        self.audio_config: dict[str, float] = {}
        self.sound: dict[str, object] = {}
        for option, (field, low, high) in _FLOATS.items():
            if option in options:
                value = as_float(self.name, option, options[option], low=low, high=high)
                self.audio_config[field] = value
                self.sound[option] = value
        if self.language is not None:
            self.sound["language"] = self.language

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(
            name=self.name, model=None, voice=voice or self.default_voice, options=self.sound
        )

    def unavailable_reason(self) -> str | None:
        if env_secret(KEY_ENV) or env_secret(TOKEN_ENV):
            return None
        return f"neither {KEY_ENV} nor {TOKEN_ENV} is set"

    def request_body(self, text: str, *, voice: str | None, rate: int) -> dict[str, object]:
        name = (voice or self.default_voice).strip()
        language = self.language or language_of_voice(name)
        if language is None:
            raise UsageError(f"google: voice {name!r} names no language: give -O language=")
        if len(text.encode("utf-8")) > MAX_INPUT_BYTES:
            raise PermanentBackendError(
                f"google: text of {len(text.encode('utf-8'))} bytes is over the API's limit "
                f"of {MAX_INPUT_BYTES}"
            )
        config: dict[str, object] = {"audioEncoding": "LINEAR16", "sampleRateHertz": rate}
        config.update(self.audio_config)
        return {
            "input": {"text": text},
            "voice": {"languageCode": language, "name": name},
            "audioConfig": config,
        }

    def _headers(self) -> tuple[dict[str, str], str]:
        key = env_secret(KEY_ENV)
        if key is not None:
            return {"X-Goog-Api-Key": key}, key
        token = env_secret(TOKEN_ENV)
        if token is None:
            raise BackendUnavailableError(f"google: neither {KEY_ENV} nor {TOKEN_ENV} is set")
        headers = {"Authorization": f"Bearer {token}"}
        project = env_setting(PROJECT_ENV)
        if project is not None:
            headers["X-Goog-User-Project"] = project
        return headers, token

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        headers, secret = self._headers()
        body = self.request_body(text, voice=voice, rate=rate)
        data = await post_for_audio(
            self._pool,
            backend=self.name,
            url=f"{self.base_url}/text:synthesize",
            headers=headers,
            body=body,
            secret=secret,
            json_answer=True,
        )
        return SynthesizedAudio(audio_content(data))


def audio_content(answer: bytes) -> bytes:
    """The audio bytes of a `text:synthesize` answer (`{"audioContent": base64}`)."""
    try:
        payload = json.loads(answer)
        encoded = payload["audioContent"] if isinstance(payload, dict) else None
        if not isinstance(encoded, str):
            raise KeyError("audioContent")
        audio = base64.b64decode(encoded, validate=True)
    except (ValueError, KeyError, binascii.Error):
        raise PermanentBackendError(
            "google: the answer is not JSON with a base64 audioContent"
        ) from None
    if not audio:
        raise EmptyAudioError("google: the provider returned no audio")
    return audio
