"""One phrase through the cache: the library behind `voiceprep say` (the fill path)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceprep import defaults
from voiceprep.errors import UsageError
from voiceprep.fill import backend_filler
from voiceprep.keys import normalize_text
from voiceprep.process import NO_PROCESSING, ProcessSettings

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache


@dataclass(frozen=True)
class SayResult:
    pcm: bytes
    key: str
    cached: bool  # True when served from the cache, False when synthesized now


async def say(
    text: str,
    backend: Backend,
    cache: AudioCache,
    *,
    voice: str | None = None,
    rate: int = defaults.RATE,
    channels: int = 1,
    retries: int = 3,
    timeout: float | None = 60.0,
    process: ProcessSettings = NO_PROCESSING,
    gate: str = "strict",
) -> SayResult:
    """One phrase through the cache (the fill path): served when cached, else
    synthesized and stored.

    A damaged entry is synthesized again and replaced rather than served. With `process`,
    the processed audio is served; on a miss it is made from the cached raw synthesis
    when there is one, else from a new synthesis (which must pass the `gate`), and both
    are stored.
    """
    if not normalize_text(text):
        raise UsageError("nothing to say: the text is empty")
    filler = backend_filler(
        backend,
        cache,
        rate=rate,
        channels=channels,
        process=process,
        gate=gate,
        retries=retries,
        timeout=timeout,
    )
    prompt = filler.prompt(backend.identity(voice), text, voice)
    pcm = filler.local(prompt)
    if pcm is not None:
        return SayResult(pcm, prompt.key, cached=True)
    try:
        pcm = await filler.fetch(prompt)
    finally:
        await asyncio.to_thread(filler.close)
    return SayResult(pcm, prompt.key, cached=False)
