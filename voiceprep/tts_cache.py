"""TTSAudioCache: the original voice-agent API, with its defects fixed.

`TTSAudioCache(tts, max_entries=128)` keeps synthesized PCM in an in-memory LRU, exactly
like the original `audio_cache.TTSAudioCache`; with `directory=` the LRU sits in front of
an `AudioCache`, so a restart or another process finds what was synthesized before.

`tts` is either

- a voiceprep backend (the `Backend` protocol: `identity()`, `synthesize()`, optionally
  `stream()`), keyed by `backend.identity(voice_id)`; or
- any object with the original `stream_synthesize(async_text_iter, voice_id=...)` (an async
  iterator of s16le PCM chunks). Its identity is `BackendIdentity(name="<module>.<qualname>"
  of its type, voice=voice_id)` unless `identity=` names one. Its PCM is taken to be at
  `tts.sample_rate` Hz (else 24000) with `tts.num_channels` channels (else 1).

Every key also holds the target rate and channel count (`rate=`/`channels=`; by default
the backend's native format for `stream_synthesize` objects, 24000 Hz mono for backends),
so audio cached for a 16 kHz track is never served to a 24 kHz one.

With `process=ProcessSettings(...)` (voiceprep.process) every prompt is processed
(loudness, trim, fades, pads) before it is handed out or cached; the settings are part of
the key, and the raw synthesis is kept on disk under the plain key, so new settings
reprocess it rather than synthesize again. With a directory, or with a voiceprep backend,
every synthesis passes the plausibility gate (`gate="strict"` by default, `"relaxed"` or
`"off"`, voiceprep.gate) or is retried, then raised as `ImplausibleAudioError`, never
cached. A `stream_synthesize` object without a directory is the seed's drop-in: no gate
unless one is asked for (what the TTS produced, if not empty, is returned and cached).

Every miss goes through the fill path (voiceprep.fill), which `warm`, `say`, `serve` and
the agent integrations share; `stream()` plays a miss while it is synthesized.

Fixed relative to the original: `contains(text, voice_id=)` respects the voice (`text in
cache` means the default voice); an empty result raises `EmptyAudioError` and is never
cached; a failed synthesis is not cached and leaves no lock behind; concurrent fetches of
one key share one synthesis (and its failure); `preload` runs with bounded concurrency.
With a directory, processes share work too: a key is claimed in the cache (a lease)
before it is synthesized, and a key another process is synthesizing is waited for.
With `remote=` (an fsspec URL, see `voiceprep.remote`) a local miss looks in the remote
before synthesizing (and `push_remote=True` uploads what was synthesized); a remote that
is down is dropped after one logged warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

from voiceprep import defaults
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.cache import AudioCache
from voiceprep.errors import CacheError
from voiceprep.fill import Filler, Prompt
from voiceprep.flight import Memory
from voiceprep.gate import check_mode
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.process import NO_PROCESSING, ProcessSettings
from voiceprep.remote import ReadThrough, Remote, read_through
from voiceprep.sources import BackendSource, Source, StreamSynthesizeSource, stream_format
from voiceprep.timings import Words
from voiceprep.units import RATE_MAX, RATE_MIN

__all__ = ["TTSAudioCache"]

log = logging.getLogger(__name__)

DEFAULT_STREAM_RATE = defaults.RATE
DEFAULT_PRELOAD_CONCURRENCY = 8
# Where `lookup` looks for the same prompt stored at another format (the rates TTS
# providers and agent tracks use), before calling it a miss.
OTHER_FORMAT_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


class TTSAudioCache:
    """Synthesized prompts by text and voice: memory LRU, optionally over an AudioCache.

    Args:
        tts: a voiceprep backend, or any object with `stream_synthesize`.
        max_entries: size of the in-memory LRU (ValueError when < 1).
        directory: a cache directory (or an open `AudioCache`) to read and fill; None for
            the original memory-only behaviour.
        rate, channels: the PCM format handed out (and part of every key). Default: the
            native format of a `stream_synthesize` object, 24000 Hz mono for a backend.
        identity: for `stream_synthesize` objects, the identity to key by (its `voice` is
            replaced by each call's voice_id). Default: the object's type.
        retries, timeout: per synthesis (transient errors are retried for backends only).
        concurrency: default bound of `preload`.
        syntheses: at most this many backend calls at once, across every fetch (None: no
            bound). Only the call is bounded: storing one phrase overlaps the next's call.
        remote, push_remote: a remote store consulted on a miss, and whether to push
            what is synthesized to it (needs `directory`).
        process: the processing chain applied to every prompt (None: none).
        gate: the plausibility gate of each synthesis: strict, relaxed or off. Default:
            off for a `stream_synthesize` object without a directory (the seed's drop-in:
            what the TTS produced is what is cached), strict otherwise.
    """

    def __init__(
        self,
        tts: Any,
        max_entries: int = 128,
        *,
        directory: str | os.PathLike[str] | AudioCache | None = None,
        rate: int | None = None,
        channels: int | None = None,
        identity: BackendIdentity | None = None,
        retries: int = 3,
        timeout: float | None = 60.0,
        concurrency: int = DEFAULT_PRELOAD_CONCURRENCY,
        syntheses: int | None = None,
        remote: str | Remote | ReadThrough | None = None,
        push_remote: bool = False,
        process: ProcessSettings | None = None,
        gate: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if syntheses is not None and syntheses < 1:
            raise ValueError("syntheses must be at least 1")
        memory = Memory(max_entries)
        self._tts = tts
        self._is_backend = _is_voiceprep_backend(tts)
        # An integration hands in a voiceprep.sources.Source (its framework's TTS) itself.
        is_source = not self._is_backend and callable(getattr(tts, "attempt", None))
        if not (self._is_backend or is_source or hasattr(tts, "stream_synthesize")):
            raise TypeError(
                "tts must be a voiceprep backend or have stream_synthesize(text_iter, voice_id=)"
            )
        native = (DEFAULT_STREAM_RATE, 1) if self._is_backend else stream_format(tts)
        self.rate = rate if rate is not None else native[0]
        self.channels = channels if channels is not None else native[1]
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {self.channels}")
        if not RATE_MIN <= self.rate <= RATE_MAX:
            raise ValueError(f"rate must be {RATE_MIN}–{RATE_MAX} Hz, not {self.rate}")
        self._identity_template = identity
        self._concurrency = concurrency
        self._disk: AudioCache | None = _open_disk(directory)
        # An AudioCache handed in belongs to the caller: close() leaves it open.
        self._owns_disk = self._disk is not None and self._disk is not directory
        if gate is None:
            seed_drop_in = not self._is_backend and directory is None
            gate = "off" if seed_drop_in else "strict"
        kind = BackendSource if self._is_backend else StreamSynthesizeSource
        source: Source = (
            tts if is_source else kind(tts, rate=self.rate, channels=self.channels, timeout=timeout)
        )
        self._filler = Filler(
            source,
            self._disk,
            rate=self.rate,
            channels=self.channels,
            process=process or NO_PROCESSING,
            gate=check_mode(gate),
            retries=retries,
            timeout=timeout,
            remote=_read_through(remote, push_remote),
            memory=memory,
            syntheses=syntheses,
        )
        self._memory = memory

    # --- the original API ---------------------------------------------------------------

    async def fetch(self, text: str, *, voice_id: str | None = None) -> bytes:
        """s16le PCM for `text` in `voice_id`: memory, then disk, then one synthesis
        (processed when `process` was given)."""
        return await self._filler.fetch(self._prompt(text, voice_id))

    async def stream(self, text: str, *, voice_id: str | None = None) -> AsyncIterator[bytes]:
        """s16le PCM chunks of `text` in this cache's format, as soon as there are any.

        A hit yields at once. A miss yields each chunk as the backend produces it (a
        backend with `stream`; others as one chunk) and is stored once complete and past
        the gate. Concurrent callers of one phrase share one synthesis (across processes,
        the lease); one that joins late gets the phrase from its first sample, then the
        rest live. A failure mid-stream raises in every consumer and stores nothing. With
        a processing chain, a miss yields the processed audio once the synthesis is
        complete (loudness and trim need the whole phrase).
        """
        async for chunk in self._filler.stream(self._prompt(text, voice_id)):
            yield chunk

    async def preload(
        self,
        texts: Iterable[str],
        *,
        voice_id: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        """Fetch every text, at most `concurrency` at a time.

        Every text is attempted even when some fail; afterwards the first failure is
        raised (the others are logged).
        """
        bound = asyncio.Semaphore(concurrency or self._concurrency)

        async def one(text: str) -> None:
            async with bound:
                await self.fetch(text, voice_id=voice_id)

        results = await asyncio.gather(
            *(one(t) for t in dict.fromkeys(texts)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for extra in failures[1:]:
            log.warning("preload: %s", extra)
        if failures:
            raise failures[0]

    def contains(self, text: str, *, voice_id: str | None = None) -> bool:
        """True when `fetch(text, voice_id=)` would not synthesize (memory or disk)."""
        key, _ = self._key(text, voice_id)
        if key in self._memory:
            return True
        return self._disk is not None and self._disk.contains(key)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.contains(text)

    def __len__(self) -> int:
        """Entries held in memory (the disk tier is shared; see `AudioCache.stats`)."""
        return len(self._memory)

    def clear(self) -> None:
        """Empty the memory tier. The shared disk cache is left alone (use AudioCache.clear)."""
        self._memory.clear()

    # --- extras ---------------------------------------------------------------------------

    def key(self, text: str, *, voice_id: str | None = None) -> str:
        """The cache key `fetch(text, voice_id=)` uses (no I/O)."""
        return self._key(text, voice_id)[0]

    def identity(self, voice_id: str | None = None) -> BackendIdentity:
        """The backend identity keys of `voice_id` are made from (no I/O)."""
        return self._identity(voice_id)

    @property
    def filler(self) -> Filler:
        """The fill path behind this cache (voiceprep.fill): for integrations that follow
        a synthesis in flight (`filler.flight(prompt)`)."""
        return self._filler

    def prompt(self, text: str, *, voice_id: str | None = None) -> Prompt:
        """The prompt (keys, identity) `fetch(text, voice_id=)` fills (no I/O)."""
        return self._prompt(text, voice_id)

    @property
    def in_flight(self) -> int:
        """Fills running in this process right now (each shared by all its callers)."""
        return len(self._filler.flights)

    async def lookup(self, text: str, *, voice_id: str | None = None) -> bytes | None:
        """PCM for `text` from memory or disk, never synthesizing; None on a miss.

        For frameworks that synthesize themselves (the agent integrations). When the
        entry is absent at this cache's format but the same text and identity is stored
        at another rate or channel count (say `warm --rate 24000` for a 16 kHz track),
        that audio is converted, stored under this format's key and returned: a format
        mismatch is resampled, never played at the wrong speed. The closest rate at or
        above this one is preferred (nothing lost); a lower one is the last resort.
        """
        prompt = self._prompt(text, voice_id)
        pcm = self._filler.local(prompt)
        if pcm is None:
            pcm = await self._converted_from_other_format(prompt)
            if pcm is not None:
                pcm = await self._filler.keep(prompt, pcm)
        return pcm

    async def store(
        self,
        text: str,
        pcm: bytes,
        *,
        voice_id: str | None = None,
        rate: int | None = None,
        channels: int | None = None,
        words: Words | None = None,
    ) -> bytes:
        """Keep PCM synthesized elsewhere under the key of `text`: memory and disk.

        `rate`/`channels` give the format of `pcm` (default: this cache's); other formats
        are converted first. `words`: when each word is spoken, seconds from the start of
        `pcm` (stored with it; see `words()`). Returns the PCM as stored (processed when a
        chain is set). Empty audio raises `EmptyAudioError` and is never stored.
        """
        source = (rate or self.rate, channels or self.channels)
        if pcm and source != (self.rate, self.channels):
            raw = SynthesizedAudio(pcm, rate=source[0], channels=source[1])
            pcm = await raw.to_pcm_async(rate=self.rate, channels=self.channels)
        return await self._filler.keep(self._prompt(text, voice_id), pcm, words)

    def words(self, text: str, *, voice_id: str | None = None) -> Words | None:
        """When each word of `text`'s cached audio is spoken (seconds from its start), as
        the backend said when it was synthesized; None when it is not on disk or its
        backend gave no timings (memory-only caches keep none)."""
        return self._filler.words(self._prompt(text, voice_id).key)

    @property
    def has_remote(self) -> bool:
        """True while a remote is consulted on a miss (False without one, or once it failed)."""
        remote = self._filler.remote
        return remote is not None and remote.disabled is None

    @property
    def disk(self) -> AudioCache | None:
        """The AudioCache behind the memory tier, if any."""
        return self._disk

    def close(self) -> None:
        """Wait for the writes in flight, then close the AudioCache this object opened
        (writing its batched hit counts)."""
        self._filler.close()
        if self._filler.remote is not None:
            self._filler.remote.close()  # its pushes read the disk
        if self._disk is not None and self._owns_disk:
            self._disk.close()

    async def drain(self) -> None:
        """Wait until the fills in flight have settled and stored what they will store (a
        stream ends as soon as its audio is complete; its entry is written just after)."""
        await self._filler.drain()

    async def aclose(self) -> None:
        """Cancel the syntheses in flight (nothing of them is stored), wait for the writes
        already begun (a phrase handed out whole is still stored, and pushed), then
        `close()`. Safe while stores are running."""
        await self._filler.aclose()
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _identity(self, voice_id: str | None) -> BackendIdentity:
        if self._is_backend:
            identity: BackendIdentity = self._tts.identity(voice_id)
            return identity
        template = self._identity_template
        if template is not None:
            return BackendIdentity(template.name, template.model, voice_id, template.options)
        cls = type(self._tts)
        return BackendIdentity(name=f"{cls.__module__}.{cls.__qualname__}", voice=voice_id)

    def _prompt(self, text: str, voice_id: str | None) -> Prompt:
        return self._filler.prompt(self._identity(voice_id), text, voice_id)

    def _key(self, text: str, voice_id: str | None) -> tuple[str, BackendIdentity]:
        """The key of what `fetch` hands out, and the raw synthesis' identity."""
        prompt = self._prompt(text, voice_id)
        return prompt.key, prompt.identity

    async def _converted_from_other_format(self, prompt: Prompt) -> bytes | None:
        """The raw audio of `prompt` stored at another rate or channel count, converted."""
        if self._disk is None:
            return None
        # Closest rate at or above this one first (downsampling loses nothing this format
        # can carry), then the lower ones, highest first.
        higher = [r for r in OTHER_FORMAT_RATES if r >= self.rate]
        lower = [r for r in reversed(OTHER_FORMAT_RATES) if r < self.rate]
        for rate in higher + lower:
            for channels in (1, 2) if self.channels == 1 else (2, 1):
                if (rate, channels) == (self.rate, self.channels):
                    continue
                other = cache_key(prompt.identity, prompt.text, rate=rate, channels=channels)
                if not self._disk.contains(other):
                    continue
                try:
                    pcm = self._disk.get(other, rate=rate, channels=channels)
                except CacheError as exc:
                    log.warning("ignoring cached entry %s: %s", other[:12], exc)
                    continue
                if pcm:
                    raw = SynthesizedAudio(pcm, rate=rate, channels=channels)
                    return await raw.to_pcm_async(rate=self.rate, channels=self.channels)
        return None


def _is_voiceprep_backend(tts: Any) -> bool:
    return callable(getattr(tts, "identity", None)) and callable(getattr(tts, "synthesize", None))


def _read_through(remote: Any, push: bool) -> ReadThrough | None:
    if remote is None:
        return None
    return read_through(remote, push=push)


def _open_disk(directory: str | os.PathLike[str] | AudioCache | None) -> AudioCache | None:
    if directory is None:
        return None
    if isinstance(directory, AudioCache):
        return directory
    return AudioCache(directory)
