"""The `azure` backend: Azure AI Speech, `POST {base}/cognitiveservices/v1` with an SSML body.

- Key: `AZURE_SPEECH_KEY`, sent as `Ocp-Apim-Subscription-Key`.
- Where: `-O base_url=…`, else `AZURE_SPEECH_ENDPOINT` (e.g. a custom domain), else
  `https://{AZURE_SPEECH_REGION}.tts.speech.microsoft.com`.
- The SSML is built from the text with every markup character escaped (`<`, `>`, `&`,
  quotes), so no text can add or close an element; characters XML cannot carry at all
  (control characters) make the phrase fail instead of reaching the service.
- Output: `X-Microsoft-OutputFormat: riff-<rate>-16bit-mono-pcm` at the target rate when
  Azure offers it (8, 16, 22.05, 24, 44.1, 48 kHz), else the next higher offered rate.
- The cache identity holds the voice and the options given (language, style,
  style_degree, rate, pitch); never the key, region or endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from voiceprep import __version__
from voiceprep.backends._cloud import (
    HostedBackend,
    env_setting,
    language_of_voice,
    language_option,
    offered_rate,
)
from voiceprep.backends._http import post_for_audio
from voiceprep.backends._options import as_float
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import BackendUnavailableError, PermanentBackendError, UsageError
from voiceprep.keys import BackendIdentity

DEFAULT_VOICE = "en-US-AvaMultilingualNeural"
KEY_ENV = "AZURE_SPEECH_KEY"
REGION_ENV = "AZURE_SPEECH_REGION"
ENDPOINT_ENV = "AZURE_SPEECH_ENDPOINT"
PATH = "/cognitiveservices/v1"
FORMATS = {
    8000: "8khz",
    16000: "16khz",
    22050: "22050hz",
    24000: "24khz",
    44100: "44100hz",
    48000: "48khz",
}
OPTIONS = {
    "language": "xml:lang of the SSML (default: from the voice name, e.g. en-US)",
    "style": "speaking style (mstts:express-as), e.g. cheerful, calm",
    "style_degree": "style intensity, 0.01–2",
    "rate": "prosody rate, e.g. +10%, -5%, 1.2, slow",
    "pitch": "prosody pitch, e.g. +5%, -2st, high",
    "base_url": f"endpoint (default ${ENDPOINT_ENV}, or the ${REGION_ENV} endpoint)",
}
_REGION = re.compile(r"^[a-z0-9]{2,40}$")
_STYLE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PROSODY = re.compile(
    r"^(?:[+-]?\d+(?:\.\d+)?(?:%|st|Hz)?|x-slow|slow|medium|fast|x-fast"
    r"|x-low|low|high|x-high|default)$"
)
# XML 1.0 cannot carry these at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def output_format_for(rate: int) -> str:
    """Azure's RIFF PCM format name at `rate`, or the next higher offered rate."""
    return f"riff-{FORMATS[offered_rate(rate, FORMATS)]}-16bit-mono-pcm"


class AzureBackend(HostedBackend):
    """Azure AI Speech text-to-speech (neural voices)."""

    name = "azure"
    known_options = OPTIONS
    fallback_voice = DEFAULT_VOICE
    key_env = KEY_ENV
    official_base_url = None
    base_url_env = ENDPOINT_ENV

    def configure(self, options: Mapping[str, str]) -> None:
        self.sound: dict[str, object] = {}
        if options.get("language"):
            self.sound["language"] = language_option(self.name, options["language"])
        if options.get("style"):
            self.sound["style"] = _checked(options["style"], _STYLE, "style", "e.g. cheerful")
        if "style_degree" in options:
            self.sound["style_degree"] = as_float(
                self.name, "style_degree", options["style_degree"], low=0.01, high=2.0
            )
        for key in ("rate", "pitch"):
            if options.get(key):
                self.sound[key] = _checked(options[key], _PROSODY, key, "e.g. +10%")

    def _base_url(self, option: str | None) -> str | None:
        """An endpoint given with the request path is taken without it."""
        url = super()._base_url(option)
        return url[: -len(PATH)] if url is not None and url.endswith(PATH) else url

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(
            name=self.name, model=None, voice=voice or self.default_voice, options=self.sound
        )

    def endpoint(self) -> str | None:
        """The base URL requests go to, or None when neither endpoint nor region is set."""
        if self.base_url is not None:
            return self.base_url
        region = env_setting(REGION_ENV)
        if region is None:
            return None
        if not _REGION.match(region.lower()):
            raise UsageError(f"azure: {REGION_ENV}={region!r} is not a region name (e.g. eastus)")
        return f"https://{region.lower()}.tts.speech.microsoft.com"

    def unavailable_reason(self) -> str | None:
        reason = super().unavailable_reason()  # the key
        if reason is None and self.endpoint() is None:
            return f"neither {REGION_ENV} nor {ENDPOINT_ENV} is set"
        return reason

    def ssml(self, text: str, voice: str | None = None) -> str:
        """The SSML document for `text`: the text is character data, never markup."""
        bad = _NOT_XML.search(text)
        if bad is not None:
            raise PermanentBackendError(
                f"azure: the text contains U+{ord(bad.group()):04X}, which SSML cannot carry"
            )
        name = (voice or self.default_voice).strip()
        language = self.sound.get("language") or language_of_voice(name) or "en-US"
        body = escape(text, {'"': "&quot;", "'": "&apos;"})
        prosody = {k: self.sound[k] for k in ("rate", "pitch") if k in self.sound}
        if prosody:
            attrs = "".join(f" {k}={quoteattr(str(v))}" for k, v in prosody.items())
            body = f"<prosody{attrs}>{body}</prosody>"
        if "style" in self.sound:
            attrs = f" style={quoteattr(str(self.sound['style']))}"
            if "style_degree" in self.sound:
                attrs += f' styledegree="{self.sound["style_degree"]:g}"'
            body = f"<mstts:express-as{attrs}>{body}</mstts:express-as>"
        return (
            '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" '
            'xmlns:mstts="https://www.w3.org/2001/mstts" '
            f"xml:lang={quoteattr(str(language))}>"
            f"<voice name={quoteattr(name)}>{body}</voice></speak>"
        )

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        key = self._key()
        endpoint = self.endpoint()
        if endpoint is None:
            raise BackendUnavailableError(f"azure: neither {REGION_ENV} nor {ENDPOINT_ENV} is set")
        data = await post_for_audio(
            self._pool,
            backend=self.name,
            url=f"{endpoint}{PATH}",
            headers={
                "Ocp-Apim-Subscription-Key": key,
                "Content-Type": "application/ssml+xml; charset=utf-8",
                "X-Microsoft-OutputFormat": output_format_for(rate),
                "User-Agent": f"voiceprep/{__version__}",
            },
            content=self.ssml(text, voice).encode("utf-8"),
            secret=key,
        )
        return SynthesizedAudio(data)


def _checked(value: str, pattern: re.Pattern[str], option: str, example: str) -> str:
    value = value.strip()
    if not pattern.match(value):
        raise UsageError(f"azure: option {option}={value!r}: expected {example}")
    return value
