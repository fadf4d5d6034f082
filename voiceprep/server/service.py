"""SpeechService: a request's text and voice → audio bytes, through the shared cache.

- The cache is a `TTSAudioCache` over the cache directory, so keys are exactly `warm`'s
  (backend identity, voice, rate, channels, normalized text).
- A hit never waits behind a miss: hits are answered on the event loop from memory or one
  small disk read; syntheses and encodings run as tasks and off the loop (threads).
- A miss streams: its PCM chunks are handed on as the backend produces them
  (`TTSAudioCache.stream`), encoded incrementally for mp3/opus/aac/flac (one encoder per
  phrase and format). Concurrent requests for one uncached phrase share one synthesis
  (one producer task per key for every connection of this process) and each reads it from
  its first byte; a client that hangs up does not cancel it. A failure before the first
  chunk is an error status; after it, the readers' streams raise where it happened.
- At most `jobs` backend calls run at once (the cache's `syntheses` bound: storing one
  phrase overlaps the next one's call); up to `queue` more distinct misses wait; beyond
  that a miss is refused at once with 429 and Retry-After.
- Encoded variants (mp3, opus…) are kept in a small LRU bounded in bytes, so a hit in
  mp3 is encoded once, not per request.
- A miss the disk refused (full) is served from memory; once its write has ended (never
  racing it), it is remembered and logged, and when the phrase is asked for again it is
  written before that answer if the disk takes it now, and at shutdown otherwise
  (without a processing chain: memory holds the processed audio only).
- Read-only: nothing is ever synthesized or pushed. Without a remote a miss is a 404 at
  once; with one (`TTSAudioCache(remote=...)`) a miss is looked up there, as one task per
  key like a synthesis: found and checked, it is served (and kept in the cache directory
  when that is writable); not there, or the remote down, it is a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voiceprep.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    CacheError,
    CacheIndexError,
    EmptyAudioError,
    NotCachedError,
    PermanentBackendError,
    TransientBackendError,
)
from voiceprep.flight import Flight
from voiceprep.server.errors import SERVER_ERROR, ApiError
from voiceprep.server.formats import FORMATS, PCM_RATE, StreamEncoder, encode
from voiceprep.server.logs import Redactor
from voiceprep.server.request import SpeechRequest
from voiceprep.timings import Words
from voiceprep.tts_cache import TTSAudioCache

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache
    from voiceprep.keys import BackendIdentity
    from voiceprep.server.metrics import Metrics

log = logging.getLogger("voiceprep.server")

DEFAULT_VARIANT_BYTES = 64 * 1024 * 1024
DEFAULT_MEMORY_ENTRIES = 256
MAX_REMEMBERED_KEYS = 65536
QUEUE_RETRY_AFTER = 1.0  # seconds a client refused for a full queue is asked to wait


@dataclass(frozen=True)
class Speech:
    content_type: str
    cached: bool  # True: no synthesis was needed for this request
    body: bytes | None = None  # the whole answer (a hit)
    chunks: AsyncIterator[bytes] | None = None  # the answer as it is produced (a miss)


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
        rewritable: bool = True,
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
        self._misses: dict[str, Flight] = {}  # key → its producer's PCM
        self._encodings: dict[tuple[str, str], Flight] = {}  # a miss in a codec
        self._hit_encodings: dict[tuple[str, str], asyncio.Task[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # producers and encoders: drained
        self.redactor = Redactor()
        # Misses the disk refused, by key: (text, voice), written when asked for again.
        self._unwritten: dict[str, tuple[str, str | None]] = {}
        self._rewritable = rewritable

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
        process = (cache_options or {}).get("process")
        return cls(
            tts_cache,
            backend,
            jobs=jobs,
            queue=queue,
            read_only=read_only,
            metrics=metrics,
            rewritable=process is None or process.is_empty,
        )

    # --- requests -------------------------------------------------------------------

    async def speak(self, request: SpeechRequest) -> Speech:
        fmt = request.response_format
        content_type = FORMATS[fmt].content_type
        voice = request.backend_voice
        key = self._key(request.text, voice)
        if key in self._unwritten:
            await self._rewrite(key)
        variant = _variant(fmt, request.sample_rate)  # pcm/wav at another rate: another one
        body = self._variants.get((key, variant))
        if body is not None:
            self._count("hit")
            return Speech(content_type, cached=True, body=body)
        pcm = self._misses.get(key)
        if pcm is None and self._contains(request.text, voice):
            self._count("hit")
            # A memory or disk hit: fetch returns without awaiting anything. If the entry
            # vanished meanwhile (evicted, pruned) it synthesizes, as a miss would.
            whole = await self._fetch(request.text, voice)
            body = await self._encoded(key, whole, fmt, request.sample_rate)
            return Speech(content_type, cached=True, body=body)
        self._count("miss")
        if pcm is None:
            if self.read_only and not self.cache.has_remote:
                raise _not_cached()
            pcm = self._start(key, request.text, voice)
        chunks = _chunks(self._formatted(key, fmt, request.sample_rate, pcm))
        try:  # a failure before any audio is still an error status
            first = await anext(chunks)
        except StopAsyncIteration:
            first = b""
        return Speech(content_type, cached=False, chunks=_then(first, chunks))

    def words_of(self, request: SpeechRequest) -> Callable[[], Words | None] | None:
        """When the request asks for word timestamps: how to read them once its audio is
        complete (the entry's, or a miss's just handed out); else None."""
        if not request.word_timestamps:
            return None
        return lambda: self.cache.words(request.text, voice_id=request.backend_voice)

    def prepare(self) -> None:
        """Import now what the first miss would import (the encoders, an HTTP backend's
        client): seconds without bytecode caches, otherwise counted in that miss' time
        to first byte and in its backend's --timeout."""
        importlib.import_module("av")
        importlib.import_module("numpy")
        if not self.read_only:
            importlib.import_module("httpx")

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
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cache.drain()  # a streamed miss is stored (and pushed) after its last chunk
        for key in list(self._unwritten):  # refused by a full disk: there may be space now
            with contextlib.suppress(ApiError):  # (logged)
                await self._rewrite(key)
            if key in self._unwritten:
                break  # refused again: still full

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

    def _contains(self, text: str, voice: str | None) -> bool:
        try:
            return self.cache.contains(text, voice_id=voice)
        except CacheError as exc:
            raise cache_failure(self.cache, exc) from None

    def _start(self, key: str, text: str, voice: str | None) -> Flight:
        """The producer of a new miss: a task of its own, so no client can cancel it."""
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
        pcm = self._misses[key] = Flight()
        self._spawn(self._produce(key, text, voice, pcm))
        return pcm

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _produce(self, key: str, text: str, voice: str | None, out: Flight) -> None:
        """Feed `out` with the miss' PCM as the cache yields it (fill.Flight: every
        request follows it from its first chunk)."""
        metrics = None if self.read_only else self._metrics
        started = time.perf_counter()
        self.redactor.hide(text)
        try:
            async for chunk in self._source(text, voice):
                out.add(chunk)
        except BaseException as exc:
            out.fail(self._failure(exc, text))
            if metrics is not None and not isinstance(exc, NotCachedError):
                metrics.failures.inc()
            if not isinstance(exc, Exception):
                raise
        else:
            out.finish(b"".join(out.chunks))
            if not self.read_only and self._rewritable and self.cache.disk is not None:
                self._spawn(self._check_written(key, text, voice))
            if metrics is not None:
                metrics.syntheses.inc()
                metrics.synthesis_seconds.observe(time.perf_counter() - started)
        finally:
            del self._misses[key]

    async def _check_written(self, key: str, text: str, voice: str | None) -> None:
        """The cache writes a miss just after handing it out: once that write has ended,
        remember a miss the disk refused."""
        # The fills in flight, this one's write included (shielded: cancelling this check
        # must not cancel them, as cancelling a gather does).
        await asyncio.shield(self.cache.drain())
        disk = self.cache.disk
        assert disk is not None
        with contextlib.suppress(CacheError):  # an unreadable index: nothing to rewrite
            if not disk.contains(key):
                self._unwritten_later(key, text, voice)

    def _unwritten_later(self, key: str, text: str, voice: str | None) -> None:
        if len(self._unwritten) >= MAX_REMEMBERED_KEYS:
            self._unwritten.pop(next(iter(self._unwritten)))
        self._unwritten[key] = (text, voice)
        log.info("the disk refused a phrase (%s…): written when asked for again", key[:12])

    async def _rewrite(self, key: str) -> None:
        """A miss the disk refused (full) is still in memory: write it now that the phrase
        is asked for again. Unprocessed audio only: memory holds what was handed out,
        which for a processing chain is not the raw synthesis the cache keeps too."""
        text, voice = self._unwritten.pop(key)
        disk = self.cache.disk
        assert disk is not None
        try:
            if disk.contains(key) or not self.cache.contains(text, voice_id=voice):
                return  # written, or gone from memory too (the next request is a miss)
            pcm = await self.cache.fetch(text, voice_id=voice)  # from memory
            await self.cache.store(text, pcm, voice_id=voice)
            if disk.contains(key):
                log.info("stored a phrase the disk had refused (%s…)", key[:12])
            else:
                self._unwritten_later(key, text, voice)  # still refused: next time
        except CacheError as exc:
            raise cache_failure(self.cache, exc) from None

    def _source(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        return self.cache.stream(text, voice_id=voice)

    def _failure(self, exc: BaseException, text: str) -> ApiError:
        """What the readers of a failed miss see (and the log, without the text)."""
        if isinstance(exc, NotCachedError):
            return _not_cached()
        if isinstance(exc, BackendError):
            log.warning("synthesis failed: %s", self.redactor.scrub(str(exc), text))
            return _backend_failure(exc)
        if isinstance(exc, CacheError):
            return cache_failure(self.cache, exc)
        log.error("synthesis failed: unexpected %s", type(exc).__name__)
        return ApiError(500, "internal server error", type=SERVER_ERROR, code="internal")

    async def _fetch(self, text: str, voice: str | None) -> bytes:
        try:
            return await self.cache.fetch(text, voice_id=voice)
        except (NotCachedError, BackendError, CacheError) as exc:
            raise self._failure(exc, text) from None

    def _formatted(self, key: str, fmt: str, sample_rate: int | None, pcm: Flight) -> Flight:
        """The miss' bytes in `fmt`: one encoder per phrase and variant, read by every
        request for them (byte-identical bodies, one encoding's CPU)."""
        if fmt == "pcm" and (self.rate, self.channels) == (sample_rate or PCM_RATE, 1):
            return pcm
        variant = (key, _variant(fmt, sample_rate))
        out = self._encodings.get(variant)
        if out is None:
            out = self._encodings[variant] = Flight()
            encoder = StreamEncoder(
                fmt, rate=self.rate, channels=self.channels, sample_rate=sample_rate
            )
            self._spawn(self._encode(variant, encoder, pcm, out))
        return out

    async def _encode(
        self, variant: tuple[str, str], encoder: StreamEncoder, pcm: Flight, out: Flight
    ) -> None:
        async def run(step: Callable[..., bytes], *args: bytes) -> None:
            data = await asyncio.to_thread(step, *args) if encoder.needs_cpu else step(*args)
            if data:
                out.add(data)

        try:
            async for chunk in _chunks(pcm):
                await run(encoder.feed, chunk)
            await run(encoder.finish)
        except ApiError as exc:
            out.fail(exc)
        except Exception as exc:
            log.error("encoding %s failed: unexpected %s", variant[1], type(exc).__name__)
            out.fail(ApiError(500, "internal server error", type=SERVER_ERROR, code="internal"))
        else:
            out.finish(b"".join(out.chunks))
        finally:
            del self._encodings[variant]

    async def _encoded(
        self, key: str, pcm: bytes, fmt: str, sample_rate: int | None = None
    ) -> bytes:
        """A hit in `fmt`: encoded once (the whole file), then kept in the LRU."""
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
        task = self._hit_encodings.get(variant)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(shaped, pcm))
            self._hit_encodings[variant] = task
            task.add_done_callback(functools.partial(_forget, self._hit_encodings, variant))
        body = await asyncio.shield(task)
        self._variants.put(variant, body)
        return body

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            (self._metrics.hits if result == "hit" else self._metrics.misses).inc()


async def _chunks(flight: Flight) -> AsyncIterator[bytes]:
    async for _, chunk in flight.follow():
        yield chunk


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _variant(fmt: str, sample_rate: int | None) -> str:
    """The name an encoded variant is kept under: `pcm`, or `pcm@16000` for a sample_rate."""
    return fmt if sample_rate is None else f"{fmt}@{sample_rate}"


def _forget(tasks: dict[Any, Any], key: Any, _task: object) -> None:
    tasks.pop(key, None)


def _not_cached() -> ApiError:
    return ApiError(404, "not cached, and this server is read-only", code="not_cached")


def cache_failure(cache: TTSAudioCache, exc: CacheError) -> ApiError:
    """503 naming the cure: a damaged index is what `cache verify --repair` rebuilds."""
    where = cache.disk.directory if cache.disk is not None else "the cache"
    log.error("cache %s: %s", where, exc)
    if isinstance(exc, CacheIndexError):
        message = (
            f"the cache index in {where} is damaged; `voiceprep cache verify --repair` "
            "rebuilds it (then restart the server)"
        )
    else:
        message = f"the cache in {where} cannot be used: {type(exc).__name__}"
    return ApiError(503, message, type=SERVER_ERROR, code="cache_unavailable")


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
