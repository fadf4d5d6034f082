"""SpeechService: a request's text and voice → audio bytes, through the shared cache.

- The cache is a `TTSAudioCache` over the cache directory, so keys are exactly `warm`'s
  (backend identity, voice, rate, channels, normalized text).
- A hit never waits behind a miss: hits are answered on the event loop from memory or one
  small disk read; syntheses and encodings run as tasks and off the loop (threads).
- Concurrent requests for one uncached phrase share one synthesis (one task per key for
  every connection of this process); a client that hangs up does not cancel it.
- At most `jobs` backend calls run at once (the cache's `syntheses` bound: storing one
  phrase overlaps the next one's call); up to `queue` more distinct misses wait; beyond
  that a miss is refused at once with 429 and Retry-After.
- Encoded variants (mp3, opus…) are kept in a small LRU bounded in bytes, so a hit in
  mp3 is encoded once, not per request.
- Read-only: nothing is ever synthesized or pushed. Without a remote a miss is a 404 at
  once; with one (`TTSAudioCache(remote=...)`) a miss is looked up there, as one task per
  key like a synthesis: found and checked, it is served (and kept in the cache directory
  when that is writable); not there, or the remote down, it is a 404.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceprep.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    EmptyAudioError,
    NotCachedError,
    PermanentBackendError,
    TransientBackendError,
)
from voiceprep.server.errors import SERVER_ERROR, ApiError
from voiceprep.server.formats import FORMATS, PCM_RATE, encode
from voiceprep.server.request import SpeechRequest

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache
    from voiceprep.keys import BackendIdentity
    from voiceprep.server.metrics import Metrics
    from voiceprep.tts_cache import TTSAudioCache

log = logging.getLogger("voiceprep.server")

DEFAULT_VARIANT_BYTES = 64 * 1024 * 1024
DEFAULT_MEMORY_ENTRIES = 256
MAX_REMEMBERED_KEYS = 65536
QUEUE_RETRY_AFTER = 1.0  # seconds a client refused for a full queue is asked to wait


@dataclass(frozen=True)
class Speech:
    body: bytes
    content_type: str
    cached: bool  # True: no synthesis was needed for this request


class ReadOnlyBackend:
    """Keys like the configured backend; never synthesizes (a miss is NotCachedError)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.name = inner.name

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return self._inner.identity(voice)

    async def synthesize(self, text: str, **_: Any) -> Any:
        raise NotCachedError("not cached")

    def unavailable_reason(self) -> str | None:
        return None


class _Variants:
    """LRU of encoded bytes by (key, format), bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[str, str]) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        return body

    def put(self, key: tuple[str, str], body: bytes) -> None:
        if len(body) > self._max or key in self._items:
            return
        self._items[key] = body
        self._bytes += len(body)
        while self._bytes > self._max:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)


class SpeechService:
    """See the module docstring. Build with `SpeechService.open(...)`; `close()` at the end."""

    def __init__(
        self,
        tts_cache: TTSAudioCache,
        backend: Backend,
        *,
        jobs: int,
        queue: int,
        read_only: bool,
        metrics: Metrics | None = None,
        variant_bytes: int = DEFAULT_VARIANT_BYTES,
    ) -> None:
        self.cache = tts_cache
        self.backend = backend
        self.read_only = read_only
        self.rate = tts_cache.rate
        self.channels = tts_cache.channels
        self._admit = jobs + queue
        self._metrics = metrics
        self._variants = _Variants(variant_bytes)
        self._keys: dict[tuple[str, str | None], str] = {}  # (text, voice) → key
        self._misses: dict[str, asyncio.Task[bytes]] = {}
        self._encodings: dict[tuple[str, str], asyncio.Task[bytes]] = {}

    @classmethod
    def open(
        cls,
        backend: Backend,
        cache: AudioCache,
        *,
        rate: int,
        channels: int,
        jobs: int,
        queue: int,
        retries: int,
        timeout: float,
        read_only: bool = False,
        metrics: Metrics | None = None,
        cache_options: Mapping[str, Any] | None = None,
    ) -> SpeechService:
        """`cache_options`: more TTSAudioCache keyword arguments (processing, remote…)."""
        from voiceprep.tts_cache import TTSAudioCache

        source: Any = ReadOnlyBackend(backend) if read_only else backend
        tts_cache = TTSAudioCache(
            source,
            DEFAULT_MEMORY_ENTRIES,
            directory=cache,
            rate=rate,
            channels=channels,
            retries=retries,
            timeout=timeout,
            syntheses=jobs,
            **dict(cache_options or {}),
        )
        return cls(
            tts_cache,
            backend,
            jobs=jobs,
            queue=queue,
            read_only=read_only,
            metrics=metrics,
        )

    # --- requests -------------------------------------------------------------------

    async def speak(self, request: SpeechRequest) -> Speech:
        fmt = request.response_format
        voice = request.backend_voice
        key = self._key(request.text, voice)
        rate = request.sample_rate  # pcm/wav at another rate: another variant
        body = self._variants.get((key, _variant(fmt, rate)))
        if body is not None:
            self._count("hit")
            return Speech(body, FORMATS[fmt].content_type, cached=True)
        cached = key not in self._misses and self.cache.contains(request.text, voice_id=voice)
        self._count("hit" if cached else "miss")
        if not cached and self.read_only and not self.cache.has_remote:
            raise _not_cached()
        pcm = await self._pcm(key, request.text, voice, cached)
        body = await self._encoded(key, pcm, fmt, rate)
        return Speech(body, FORMATS[fmt].content_type, cached=cached)

    def unavailable_reason(self) -> str | None:
        """Why the server cannot answer misses (None: it can). Read-only needs no backend."""
        if self.read_only:
            return None
        try:
            return self.backend.unavailable_reason()
        except Exception as exc:  # a third-party backend's check must not take /healthz down
            return f"{type(exc).__name__}"

    async def drain(self) -> None:
        """Wait for the syntheses and encodings still running (their clients may have hung
        up): what was paid for is stored before the server exits."""
        pending = [*self._misses.values(), *self._encodings.values()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        self.cache.close()

    async def aclose_backend(self) -> None:
        aclose: Callable[[], Awaitable[None]] | None = getattr(self.backend, "aclose", None)
        if aclose is not None:
            await aclose()

    # --- internals ------------------------------------------------------------------

    def _key(self, text: str, voice: str | None) -> str:
        # The key is a sha256 over the identity and the normalized text: worth remembering
        # for the phrases a server hears again and again.
        key = self._keys.get((text, voice))
        if key is None:
            if len(self._keys) >= MAX_REMEMBERED_KEYS:
                self._keys.clear()
            key = self._keys[(text, voice)] = self.cache.key(text, voice_id=voice)
        return key

    async def _pcm(self, key: str, text: str, voice: str | None, cached: bool) -> bytes:
        if cached:
            # A memory or disk hit: fetch returns without awaiting anything. If the entry
            # vanished meanwhile (evicted, pruned) it synthesizes, as a miss would.
            return await self._fetch(text, voice)
        task = self._misses.get(key)
        if task is None:
            if len(self._misses) >= self._admit:
                if self._metrics is not None:
                    self._metrics.rejected.inc()
                raise ApiError(
                    429,
                    "the synthesis queue is full; retry later",
                    type="rate_limit_error",
                    code="queue_full",
                    retry_after=QUEUE_RETRY_AFTER,
                )
            # Read-only: the miss can only be answered from the remote; no synthesis.
            fill = self._fetch if self.read_only else self._synthesize
            task = asyncio.ensure_future(fill(text, voice))
            self._misses[key] = task
            task.add_done_callback(functools.partial(_forget, self._misses, key))
        # shield: a client hanging up must not cancel what the others (and the cache) wait for.
        return await asyncio.shield(task)

    async def _synthesize(self, text: str, voice: str | None) -> bytes:
        metrics = self._metrics
        if metrics is None:
            return await self._fetch(text, voice)
        with metrics.synthesis_seconds.time():
            try:
                pcm = await self._fetch(text, voice)
            except ApiError:
                metrics.failures.inc()
                raise
        metrics.syntheses.inc()
        return pcm

    async def _fetch(self, text: str, voice: str | None) -> bytes:
        try:
            return await self.cache.fetch(text, voice_id=voice)
        except NotCachedError:
            raise _not_cached() from None
        except BackendError as exc:
            log.warning("synthesis failed: %s", exc)
            raise _backend_failure(exc) from None

    async def _encoded(
        self, key: str, pcm: bytes, fmt: str, sample_rate: int | None = None
    ) -> bytes:
        variant = (key, _variant(fmt, sample_rate))
        shaped = functools.partial(
            encode, rate=self.rate, channels=self.channels, fmt=fmt, sample_rate=sample_rate
        )
        pcm_rate = sample_rate or PCM_RATE
        if sample_rate in (None, self.rate) and (
            fmt == "wav" or (fmt == "pcm" and (self.rate, self.channels) == (pcm_rate, 1))
        ):
            body = shaped(pcm)  # no CPU work
            self._variants.put(variant, body)
            return body
        task = self._encodings.get(variant)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(shaped, pcm))
            self._encodings[variant] = task
            task.add_done_callback(functools.partial(_forget, self._encodings, variant))
        body = await asyncio.shield(task)
        self._variants.put(variant, body)
        return body

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            (self._metrics.hits if result == "hit" else self._metrics.misses).inc()


def _variant(fmt: str, sample_rate: int | None) -> str:
    """The name an encoded variant is kept under: `pcm`, or `pcm@16000` for a sample_rate."""
    return fmt if sample_rate is None else f"{fmt}@{sample_rate}"


def _forget(tasks: dict[Any, Any], key: Any, _task: object) -> None:
    tasks.pop(key, None)


def _not_cached() -> ApiError:
    return ApiError(404, "not cached, and this server is read-only", code="not_cached")


def _backend_failure(exc: BackendError) -> ApiError:
    """502 for the client: what kind of failure, never the backend's own message (it may
    hold internals); the server's log has the details."""
    retry_after = None
    if isinstance(exc, AuthenticationError):
        reason = "the TTS backend refused the server's credentials"
    elif isinstance(exc, BackendUnavailableError):
        reason = "the TTS backend cannot run on this server"
    elif isinstance(exc, EmptyAudioError):
        reason = "the TTS backend returned no audio"
    elif isinstance(exc, TransientBackendError):
        reason = "the TTS backend did not answer or was overloaded, after retries"
        retry_after = exc.retry_after
    elif isinstance(exc, PermanentBackendError):
        reason = "the TTS backend rejected the request"
    else:
        reason = "the TTS backend failed"
    return ApiError(502, reason, type=SERVER_ERROR, code="backend_error", retry_after=retry_after)
