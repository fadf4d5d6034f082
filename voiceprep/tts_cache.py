"""TTSAudioCache: the original voice-agent API, with its defects fixed.

`TTSAudioCache(tts, max_entries=128)` keeps synthesized PCM in an in-memory LRU, exactly
like the original `audio_cache.TTSAudioCache`; with `directory=` the LRU sits in front of
an `AudioCache`, so a restart or another process finds what was synthesized before.

`tts` is either

- a voiceprep backend (the `Backend` protocol: `identity()`, `synthesize()`), keyed by
  `backend.identity(voice_id)` and synthesized through `synthesize_with_retries`; or
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
reprocess it rather than synthesize again. Every synthesis passes the plausibility gate
(`gate="strict"`, `"relaxed"` or `"off"`, voiceprep.gate) or is retried, then raised as
`ImplausibleAudioError`, never cached.

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
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    CacheVersionError,
    EmptyAudioError,
    ImplausibleAudioError,
)
from voiceprep.gate import check_mode, judge
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.process import NO_PROCESSING, Processed, ProcessSettings
from voiceprep.units import RATE_MAX, RATE_MIN

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache, Lease
    from voiceprep.remote import ReadThrough, Remote

__all__ = ["TTSAudioCache"]

log = logging.getLogger(__name__)
_LEASE_POLL_SECONDS = 0.05

DEFAULT_STREAM_RATE = 24000
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
        retries, timeout: per synthesis (retries apply to backends only).
        concurrency: default bound of `preload`.
        syntheses: at most this many backend calls at once, across every fetch (None: no
            bound). Only the call is bounded: storing one phrase overlaps the next's call.
        remote, push_remote: a remote store consulted on a miss, and whether to push
            what is synthesized to it (needs `directory`).
        process: the processing chain applied to every prompt (None: none).
        gate: the plausibility gate of each synthesis: strict, relaxed or off.
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
        gate: str = "strict",
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if syntheses is not None and syntheses < 1:
            raise ValueError("syntheses must be at least 1")
        self._tts = tts
        self._max_entries = max_entries
        self._is_backend = _is_voiceprep_backend(tts)
        if not self._is_backend and not hasattr(tts, "stream_synthesize"):
            raise TypeError(
                "tts must be a voiceprep backend or have stream_synthesize(text_iter, voice_id=)"
            )
        # The format the TTS itself emits (only meaningful for stream_synthesize objects).
        self._source_rate = int(getattr(tts, "sample_rate", None) or DEFAULT_STREAM_RATE)
        self._source_channels = int(getattr(tts, "num_channels", None) or 1)
        default_rate = DEFAULT_STREAM_RATE if self._is_backend else self._source_rate
        default_channels = 1 if self._is_backend else self._source_channels
        self.rate = rate if rate is not None else default_rate
        self.channels = channels if channels is not None else default_channels
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {self.channels}")
        if not RATE_MIN <= self.rate <= RATE_MAX:
            raise ValueError(f"rate must be {RATE_MIN}–{RATE_MAX} Hz, not {self.rate}")
        self._identity_template = identity
        self._retries = retries
        self._timeout = timeout
        # A claim outlives every attempt a synthesis may make; waiting for another
        # process's claim is bounded by the same.
        attempt = timeout if timeout is not None else 60.0
        self._lease_ttl = attempt * (retries + 1) + 30.0
        self._lease_wait = self._lease_ttl
        self._concurrency = concurrency
        self._slots: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(syntheses) if syntheses is not None else contextlib.nullcontext()
        )
        self._process = process or NO_PROCESSING
        self._gate = check_mode(gate)
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        # One in-flight synthesis per key; removed as soon as it settles (success or not).
        self._inflight: dict[str, asyncio.Task[bytes]] = {}
        self._disk: AudioCache | None = _open_disk(directory)
        # An AudioCache handed in belongs to the caller: close() leaves it open.
        self._owns_disk = self._disk is not None and self._disk is not directory
        self._remote = _read_through(remote, push_remote)

    # --- the original API ---------------------------------------------------------------

    async def fetch(self, text: str, *, voice_id: str | None = None) -> bytes:
        """s16le PCM for `text` in `voice_id`: memory, then disk, then one synthesis
        (processed when `process` was given)."""
        key, identity = self._key(text, voice_id)
        pcm = self._memory_get(key)
        if pcm is not None:
            return pcm
        pcm = self._disk_get(key)
        if pcm is not None:
            self._memory_put(key, pcm)
            return pcm
        task = self._inflight.get(key)
        if task is None or task.done():
            task = asyncio.ensure_future(self._fill(key, identity, text, voice_id))
            self._inflight[key] = task
            task.add_done_callback(self._forget)
        # shield: one caller giving up must not cancel the synthesis the others wait for.
        return await asyncio.shield(task)

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

    async def lookup(self, text: str, *, voice_id: str | None = None) -> bytes | None:
        """PCM for `text` from memory or disk, never synthesizing; None on a miss.

        For frameworks that synthesize themselves (the agent integrations). When the
        entry is absent at this cache's format but the same text and identity is stored
        at another rate or channel count (say `warm --rate 24000` for a 16 kHz track),
        that audio is converted, stored under this format's key and returned: a format
        mismatch is resampled, never played at the wrong speed. The closest rate at or
        above this one is preferred (nothing lost); a lower one is the last resort.
        """
        key, identity = self._key(text, voice_id)
        pcm = self._memory_get(key)
        if pcm is None:
            pcm = self._disk_get(key)
            if pcm is None:
                pcm = await self._converted_from_other_format(text, identity)
                if pcm is None:
                    return None
                await self._disk_put(key, pcm, text, identity)
            self._memory_put(key, pcm)
        return pcm

    async def store(
        self,
        text: str,
        pcm: bytes,
        *,
        voice_id: str | None = None,
        rate: int | None = None,
        channels: int | None = None,
    ) -> bytes:
        """Keep PCM synthesized elsewhere under the key of `text`: memory and disk.

        `rate`/`channels` give the format of `pcm` (default: this cache's); other formats
        are converted first. Returns the PCM as stored. Empty audio raises
        `EmptyAudioError` and is never stored.
        """
        if not pcm:
            raise EmptyAudioError(f"{text!r}: no audio to store")
        source = (rate or self.rate, channels or self.channels)
        if source != (self.rate, self.channels):
            from voiceprep.backends.base import SynthesizedAudio

            raw = SynthesizedAudio(pcm, rate=source[0], channels=source[1])
            pcm = await raw.to_pcm_async(rate=self.rate, channels=self.channels)
        key, identity = self._key(text, voice_id)
        if self._process.is_empty:
            self._memory_put(key, pcm)
            if self._disk is not None:
                await self._disk_put(key, pcm, text, identity)
            return pcm
        from voiceprep.process import produce

        produced = await asyncio.to_thread(produce, pcm, self.rate, self.channels, self._process)
        self._memory_put(key, produced.pcm)
        if self._disk is not None:
            raw_key = cache_key(identity, text, rate=self.rate, channels=self.channels)
            await self._disk_put(raw_key, pcm, text, identity, produced.source_loudness)
            keyed = self._process.identity(identity)
            await self._disk_put(key, produced.pcm, text, keyed, produced.loudness)
        return produced.pcm

    @property
    def has_remote(self) -> bool:
        """True while a remote is consulted on a miss (False without one, or once it failed)."""
        return self._remote is not None and self._remote.disabled is None

    @property
    def disk(self) -> AudioCache | None:
        """The AudioCache behind the memory tier, if any."""
        return self._disk

    def close(self) -> None:
        """Close the AudioCache this object opened (writing its batched hit counts)."""
        if self._disk is not None and self._owns_disk:
            self._disk.close()

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

    def _key(self, text: str, voice_id: str | None) -> tuple[str, BackendIdentity]:
        """The key of what `fetch` hands out, and the raw synthesis' identity."""
        identity = self._identity(voice_id)
        keyed = self._process.identity(identity)
        return cache_key(keyed, text, rate=self.rate, channels=self.channels), identity

    def _forget(self, task: asyncio.Task[bytes]) -> None:
        for key, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[key]

    def _memory_get(self, key: str) -> bytes | None:
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
        return pcm

    def _memory_put(self, key: str, pcm: bytes) -> None:
        self._memory[key] = pcm
        self._memory.move_to_end(key)
        while len(self._memory) > self._max_entries:
            self._memory.popitem(last=False)

    def _disk_get(self, key: str) -> bytes | None:
        # Read inline: an index lookup plus one small file read takes well under a
        # millisecond, less than a hop to a worker thread would cost.
        if self._disk is None:
            return None
        try:
            return self._disk.get(key, rate=self.rate, channels=self.channels)
        except CacheVersionError:
            raise  # a newer voiceprep's cache: say so rather than quietly bypass it
        except (CacheCorruptError, CacheFormatMismatchError) as exc:
            # A damaged entry is a miss: synthesize again and overwrite it.
            log.warning("ignoring cached entry %s: %s", key[:12], exc)
            return None
        except CacheError as exc:
            # The disk tier is best-effort: an unreadable index must not stop the agent.
            log.warning("cache %s unreadable, synthesizing: %s", self._disk.directory, exc)
            return None

    async def _converted_from_other_format(
        self, text: str, identity: BackendIdentity
    ) -> bytes | None:
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
                other = cache_key(identity, text, rate=rate, channels=channels)
                if not self._disk.contains(other):
                    continue
                try:
                    pcm = self._disk.get(other, rate=rate, channels=channels)
                except CacheError as exc:
                    log.warning("ignoring cached entry %s: %s", other[:12], exc)
                    continue
                if pcm:
                    from voiceprep.backends.base import SynthesizedAudio

                    raw = SynthesizedAudio(pcm, rate=rate, channels=channels)
                    return await raw.to_pcm_async(rate=self.rate, channels=self.channels)
        return None

    async def _fill(
        self, key: str, identity: BackendIdentity, text: str, voice_id: str | None
    ) -> bytes:
        # Another process (a `serve` replica, a warm) may be synthesizing this key: claim
        # it first, and wait for theirs instead of paying for the same audio twice.
        lease, pcm = await self._claim_or_wait(key)
        if pcm is not None:
            self._memory_put(key, pcm)
            return pcm
        try:
            from voiceprep.process import produce

            remote = self._remote
            pcm = await remote.fetch(key, self._disk) if remote is not None else None
            if pcm is not None:
                self._memory_put(key, pcm)
                return pcm

            raw_key = cache_key(identity, text, rate=self.rate, channels=self.channels)
            raw = self._disk_get(raw_key) if raw_key != key else None
            had_raw = raw is not None
            if raw is None:
                async with self._slots:
                    raw = await self._synthesize(text, voice_id)  # never empty: EmptyAudioError
            if self._process.is_empty:
                produced = Processed(raw, None)
            else:
                produced = await asyncio.to_thread(
                    produce, raw, self.rate, self.channels, self._process
                )
            self._memory_put(key, produced.pcm)
            if self._disk is not None:
                if raw_key != key and not had_raw:
                    await self._disk_put(raw_key, raw, text, identity, produced.source_loudness)
                keyed = self._process.identity(identity)
                await self._disk_put(key, produced.pcm, text, keyed, produced.loudness)
                if remote is not None:
                    await remote.publish(key, self._disk)
            return produced.pcm
        finally:
            if lease is not None:
                await asyncio.to_thread(lease.release)

    async def _claim_or_wait(self, key: str) -> tuple[Lease | None, bytes | None]:
        """(our lease, None) to synthesize, or (None, pcm) another process stored.

        Bounded: a lease lapses after its ttl (at once when its writer died on this host),
        and after `lease_wait` seconds we synthesize regardless. Best effort: a cache that
        cannot lease (read-only, full) just means no sharing.
        """
        disk = self._disk
        if disk is None:
            return None, None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lease_wait
        try:
            if disk.read_only:
                return None, None
            while True:
                lease = await asyncio.to_thread(disk.claim, key, ttl=self._lease_ttl)
                if lease is not None:
                    pcm = self._disk_get(key)  # stored just before our claim?
                    if pcm is not None:
                        await asyncio.to_thread(lease.release)
                    return (None, pcm) if pcm is not None else (lease, None)
                while disk.lease_holder(key) is not None and loop.time() < deadline:
                    await asyncio.sleep(_LEASE_POLL_SECONDS)
                pcm = self._disk_get(key)
                if pcm is not None or loop.time() >= deadline:
                    return None, pcm
        except CacheError as exc:
            log.warning("cache %s cannot share work (%s); synthesizing", disk.directory, exc)
            return None, None

    async def _disk_put(
        self,
        key: str,
        pcm: bytes,
        text: str,
        identity: BackendIdentity,
        loudness: float | None = None,
    ) -> None:
        # fsync can take milliseconds: keep it off the event loop. The disk tier is
        # best-effort (as pip's cache): a read-only or full disk never fails a fetch.
        disk = self._disk
        assert disk is not None
        try:
            from voiceprep.warm import put_entry

            await asyncio.to_thread(
                put_entry,
                disk,
                key,
                pcm,
                rate=self.rate,
                channels=self.channels,
                text=text,
                identity=identity,
                loudness=loudness,
            )
        except (CacheError, OSError) as exc:
            log.warning("could not store %r in %s: %s", text, disk.directory, exc)

    async def _synthesize(self, text: str, voice_id: str | None) -> bytes:
        if self._is_backend:
            from voiceprep.gate import synthesize_checked

            return await synthesize_checked(
                self._tts,
                text,
                voice=voice_id,
                rate=self.rate,
                channels=self.channels,
                retries=self._retries,
                timeout=self._timeout,
                gate=self._gate,
            )
        for attempt in range(self._retries + 1):
            pcm = await self._stream_pcm(text, voice_id)
            verdict = judge(pcm, rate=self.rate, channels=self.channels, text=text, mode=self._gate)
            if verdict.reason is None:
                return pcm
            log.warning("%r: implausible synthesis (try %d): %s", text, attempt + 1, verdict.reason)
        raise ImplausibleAudioError(f"{text!r}: implausible synthesis: {verdict.reason}")

    async def _stream_pcm(self, text: str, voice_id: str | None) -> bytes:
        if self._timeout is None:
            pcm = await self._stream(text, voice_id)
        else:
            async with asyncio.timeout(self._timeout):
                pcm = await self._stream(text, voice_id)
        if not pcm:
            raise EmptyAudioError(f"{text!r}: the TTS returned no audio")
        if (self.rate, self.channels) != (self._source_rate, self._source_channels):
            from voiceprep.backends.base import SynthesizedAudio

            raw = SynthesizedAudio(pcm, rate=self._source_rate, channels=self._source_channels)
            pcm = await raw.to_pcm_async(rate=self.rate, channels=self.channels)
        return pcm

    async def _stream(self, text: str, voice_id: str | None) -> bytes:
        async def text_iter() -> AsyncIterator[str]:
            yield text

        chunks = bytearray()
        async for chunk in self._tts.stream_synthesize(text_iter(), voice_id=voice_id):
            chunks += chunk
        return bytes(chunks)


def _is_voiceprep_backend(tts: Any) -> bool:
    return callable(getattr(tts, "identity", None)) and callable(getattr(tts, "synthesize", None))


def _read_through(remote: Any, push: bool) -> ReadThrough | None:
    if remote is None:
        return None
    from voiceprep.remote import read_through

    return read_through(remote, push=push)


def _open_disk(directory: str | os.PathLike[str] | AudioCache | None) -> AudioCache | None:
    if directory is None:
        return None
    from voiceprep.cache import AudioCache

    if isinstance(directory, AudioCache):
        return directory
    return AudioCache(directory)
