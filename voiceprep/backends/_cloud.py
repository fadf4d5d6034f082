"""What the hosted-provider backends (openai, elevenlabs, cartesia, deepgram, azure, google)
share beyond HTTP: reading a key from the environment, choosing the base URL, and asking for
the target rate.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import ClassVar

from voiceprep.backends._http import ClientPool, clean_base_url
from voiceprep.backends._options import ConfiguredBackend
from voiceprep.errors import BackendUnavailableError, UsageError
from voiceprep.secrets import env_secret as env_secret  # re-exported: keys read here

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


def env_setting(name: str) -> str | None:
    """A setting that is not a secret (a region, a project) from the environment, stripped;
    keys are read with `voiceprep.secrets.env_secret`, which also redacts them."""
    value = os.environ.get(name, "").strip()
    return value or None


class HostedBackend(ConfiguredBackend):
    """What the hosted backends share: where requests go, one pooled HTTP client per
    event loop, and a repr that names the voice (never a key). A backend declares
    `official_base_url` (None: no default, e.g. Azure's regional endpoints), the environment
    variable `base_url_env` that may replace it and, when it needs exactly one key, the
    variable `key_env` that holds it (`unavailable_reason` and `_key` read it)."""

    key_env: ClassVar[str]
    official_base_url: ClassVar[str | None]
    base_url_env: ClassVar[str | None] = None
    base_url: str | None

    def __init__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(voice=voice, options=options)
        self.base_url = self._base_url((options or {}).get("base_url"))
        self._pool = ClientPool()

    def _base_url(self, option: str | None) -> str | None:
        """`-O base_url=`, else the environment variable `base_url_env`, else the
        official base URL."""
        if option:
            return clean_base_url(option, source=f"{self.name}: option base_url")
        if self.base_url_env and (url := env_setting(self.base_url_env)):
            return clean_base_url(url, source=self.base_url_env)
        if self.official_base_url is None:
            return None
        return clean_base_url(self.official_base_url, source=self.name)

    def unavailable_reason(self) -> str | None:
        return None if env_secret(self.key_env) else f"{self.key_env} is not set"

    def _key(self) -> str:
        """The API key; BackendUnavailableError when its variable is not set."""
        key = env_secret(self.key_env)
        if key is None:
            raise BackendUnavailableError(f"{self.name}: {self.key_env} is not set")
        return key

    def __repr__(self) -> str:
        model = getattr(self, "model", None)
        shown = f"model={model!r}, " if model else ""
        return f"{type(self).__name__}({shown}voice={self.default_voice!r})"

    async def aclose(self) -> None:
        """Close the pooled HTTP connections of the current event loop."""
        await self._pool.aclose()


def offered_rate(rate: int, offered: Iterable[int]) -> int:
    """`rate` when offered, else the nearest offered rate above it (or the highest).

    Asking for a higher rate and resampling down loses nothing a lower one would keep.
    """
    rates = sorted(offered)
    for candidate in rates:
        if candidate >= rate:
            return candidate
    return rates[-1]


def language_option(backend: str, value: str) -> str:
    """A BCP-47 language tag such as `en`, `en-US` or `zh-Hant-TW`."""
    value = value.strip()
    if not _LANGUAGE.match(value):
        raise UsageError(f"{backend}: option language={value!r}: expected a tag such as en-US")
    return value


def language_of_voice(voice: str) -> str | None:
    """`en-US` from voice names such as `en-US-AvaMultilingualNeural` (None otherwise)."""
    parts = voice.split("-")
    if len(parts) >= 3 and _LANGUAGE.match(f"{parts[0]}-{parts[1]}"):
        return f"{parts[0]}-{parts[1]}"
    return None
