"""Prebuilding phrase audio into the cache: the library behind `voiceprep warm` and `say`.

A warm is three steps the CLI drives one by one, so it can stop after any of them:

1. `plan_warm`: the cache key of every phrase (backend identity, voice, rate, channels,
   text), duplicates by key dropped, only this shard's keys kept (`--shard K/N`), and
   each marked cached or missing. Planning never synthesizes and never needs an API key,
   which is what makes `--dry-run` and `--check` cheap CI gates.
2. `run_warm`: the missing phrases synthesized concurrently (at most `jobs` requests in
   flight), each through `synthesize_with_retries`. Each result is then normalized to the
   target rate and channels (the decoder runs in a worker thread: it is CPU work) and
   stored with the cache's atomic put, in a task of its own so the request slot is free
   for the next phrase at once. An entry is committed as soon as it is ready, so an
   interrupted run keeps everything it finished and a re-run resumes. An authentication
   failure stops the run: the requests in flight are cancelled and nothing more is sent
   (audio already received is still stored). Before synthesizing a phrase, the run claims
   its key in the cache (a lease, see `voiceprep.cache.leases`): a phrase another warm
   (or a `serve` replica) is synthesizing right now is waited for, not paid for twice.
3. `prune_unlisted` / `export_plan`: optional afterwards.

Nothing here prints: progress goes to the callback the caller passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voiceprep.audio_format import AudioFormat
from voiceprep.errors import (
    AuthenticationError,
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    CacheReadOnlyError,
    ImplausibleAudioError,
    UsageError,
    VoiceprepError,
)
from voiceprep.keys import BackendIdentity, cache_key, normalize_text
from voiceprep.phrases import Phrase
from voiceprep.process import NO_PROCESSING, Processed, ProcessSettings, produce

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache, CacheEntry, Lease
    from voiceprep.export import ExportOptions, ExportReport

Shard = tuple[int, int]
_LEASE_POLL_SECONDS = 0.05
# "shared": another process stored the phrase while this run waited for its lease.
Outcome = Literal["synthesized", "failed", "shared"]


# --- planning -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanItem:
    """One distinct phrase to have in the cache, and whether it already is."""

    phrase: Phrase
    voice: str | None  # what the backend is asked for: the phrase's voice or the default
    identity: BackendIdentity
    key: str
    cached: bool
    damaged: bool = False  # an entry exists but its audio failed the check: redo it
    # With processing, `key` names the processed audio and `raw_key` the synthesis it was
    # made from (kept too, so new processing settings never pay for a synthesis again).
    raw_key: str = ""
    raw_cached: bool = False

    @property
    def text(self) -> str:
        """The text sent to the backend: normalized, exactly what the key covers."""
        return normalize_text(self.phrase.text)

    @property
    def characters(self) -> int:
        return len(self.text)

    @property
    def processed(self) -> bool:
        return bool(self.raw_key) and self.raw_key != self.key


@dataclass(frozen=True)
class WarmPlan:
    items: list[PlanItem]  # this shard's distinct phrases, in list order
    all_keys: frozenset[str]  # the keys of every shard (what --prune keeps)
    identities: frozenset[tuple[str, str | None]]  # (backend, voice) pairs of the lists
    total: int  # distinct phrases in the lists, all shards
    rate: int
    channels: int

    @property
    def cached(self) -> list[PlanItem]:
        return [item for item in self.items if item.cached]

    @property
    def missing(self) -> list[PlanItem]:
        return [item for item in self.items if not item.cached]

    @property
    def damaged(self) -> list[PlanItem]:
        return [item for item in self.items if item.damaged]

    @property
    def billable_characters(self) -> int:
        """What the missing phrases cost: those whose raw synthesis is cached cost nothing
        (they are only processed again)."""
        return sum(item.characters for item in self.missing if not item.raw_cached)


def parse_shard(text: str) -> Shard:
    """`"2/4"` → (2, 4); shards are 1-based."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or n < 1 or not 1 <= k <= n:
        raise UsageError(f"invalid shard {text!r}: expected K/N with 1 <= K <= N (e.g. 1/4)")
    return k, n


def shard_of(key: str, count: int) -> int:
    """The 1-based shard a key falls in: keys are uniform hashes, so shards are even."""
    return int(key[:16], 16) % count + 1


def plan_warm(
    phrases: Iterable[Phrase],
    backend: Backend,
    cache: AudioCache,
    *,
    voice: str | None = None,
    rate: int,
    channels: int,
    shard: Shard | None = None,
    verify: bool = False,
    process: ProcessSettings = NO_PROCESSING,
) -> WarmPlan:
    """Key every phrase and look it up. `voice` is the default for phrases without one.

    With `verify`, a cached entry also has to pass its sha256 check to count as cached
    (a damaged one is planned again, and its put replaces it). Without, presence is enough:
    what `--check` and `--dry-run` use, so they stay fast over large caches.

    With `process`, keys name the processed audio (the settings are part of the identity);
    a phrase whose raw synthesis is cached is marked `raw_cached`: it needs no request.
    """
    identities: dict[str | None, BackendIdentity] = {}
    keyed: dict[str, tuple[Phrase, str | None, BackendIdentity]] = {}
    for phrase in phrases:
        phrase_voice = phrase.voice or voice
        identity = identities.get(phrase_voice)
        if identity is None:
            identity = identities[phrase_voice] = backend.identity(phrase_voice)
        key = cache_key(process.identity(identity), phrase.text, rate=rate, channels=channels)
        # Two spellings of one phrase (or a voice given explicitly that is the default)
        # share a key: synthesize it once.
        keyed.setdefault(key, (phrase, phrase_voice, identity))
    items = []
    raw_keys = set()
    for key, (phrase, phrase_voice, identity) in keyed.items():
        raw_key = cache_key(identity, phrase.text, rate=rate, channels=channels)
        raw_keys.add(raw_key)
        if shard is not None and shard_of(key, shard[1]) != shard[0]:
            continue
        present = cache.contains(key)
        damaged = present and verify and not cache.is_intact(key)
        raw_cached = raw_key != key and cache.contains(raw_key)
        if raw_cached and verify:
            raw_cached = cache.is_intact(raw_key)
        items.append(
            PlanItem(
                phrase,
                phrase_voice,
                identity,
                key,
                present and not damaged,
                damaged,
                raw_key=raw_key,
                raw_cached=raw_cached,
            )
        )
    return WarmPlan(
        items=items,
        all_keys=frozenset(keyed) | frozenset(raw_keys),
        identities=frozenset((i.name, i.voice) for i in identities.values()),
        total=len(keyed),
        rate=rate,
        channels=channels,
    )


# --- running --------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    phrase: Phrase
    reason: str
    key: str = ""


@dataclass(frozen=True)
class RemoteFailure:
    """What went wrong moving entries to or from a remote (`warm --remote`)."""

    direction: str  # "pull" or "push"
    key: str | None  # None: the remote as a whole (unreachable, stopped mid-way)
    reason: str


@dataclass
class WarmSummary:
    """What a warm did. Filled in as it goes, so an interrupted run still reports.

    With a remote (`warm --remote`): `pulled` entries came from it (they are not counted in
    `already_cached`), `pushed` went to it, and `remote_failures` says what did not move;
    a remote failure never fails the warm.
    """

    phrases: int = 0
    already_cached: int = 0
    synthesized: int = 0
    shared: int = 0  # stored meanwhile by another process holding its lease
    failed: list[Failure] = field(default_factory=list)
    skipped: int = 0  # not attempted because the run stopped (authentication failure)
    characters_sent: int = 0
    audio_seconds: float = 0.0  # of the phrases synthesized in this run
    cached_audio_seconds: float = 0.0  # of the phrases that were already cached
    elapsed: float = 0.0
    stopped: str | None = None  # why the run stopped early, if it did
    reprocessed: int = 0  # of `synthesized`: made from a cached raw synthesis, no request
    loudness: list[float] = field(default_factory=list)  # LUFS of each entry produced
    remote: str | None = None  # the remote's URL (scrubbed), when there was one
    pulled: int = 0
    pushed: int = 0
    remote_failures: list[RemoteFailure] = field(default_factory=list)

    @property
    def loudness_range(self) -> tuple[float, float] | None:
        """(min, max) integrated LUFS of what this run produced; None if nothing."""
        return (min(self.loudness), max(self.loudness)) if self.loudness else None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and self.stopped is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "phrases": self.phrases,
            "already_cached": self.already_cached,
            "synthesized": self.synthesized,
            "shared": self.shared,
            "failed": [
                {"text": f.phrase.text, "source": f.phrase.source, "reason": f.reason}
                for f in self.failed
            ],
            "skipped": self.skipped,
            "characters_sent": self.characters_sent,
            "audio_seconds": round(self.audio_seconds, 3),
            "cached_audio_seconds": round(self.cached_audio_seconds, 3),
            "elapsed": round(self.elapsed, 3),
            "stopped": self.stopped,
            "reprocessed": self.reprocessed,
            "loudness_min": _rounded(self.loudness_range, 0),
            "loudness_max": _rounded(self.loudness_range, 1),
            "remote": self.remote,
            "pulled": self.pulled,
            "pushed": self.pushed,
            "remote_failed": len(self.remote_failures),
            "remote_failures": [
                {"direction": f.direction, "key": f.key, "reason": f.reason}
                for f in self.remote_failures
            ],
        }


def _rounded(pair: tuple[float, float] | None, index: int) -> float | None:
    return None if pair is None else round(pair[index], 2)


@dataclass(frozen=True)
class ProgressEvent:
    item: PlanItem
    outcome: Outcome
    error: str | None
    done: int  # phrases finished so far (synthesized or failed)
    total: int  # phrases to synthesize


@dataclass(frozen=True)
class RetryEvent:
    item: PlanItem
    attempt: int
    delay: float
    error: str


ProgressCallback = Callable[[ProgressEvent], object]
RetryCallback = Callable[[RetryEvent], object]


def audio_seconds(pcm: bytes, *, rate: int, channels: int) -> float:
    return AudioFormat(rate, channels).seconds(len(pcm))


def put_entry(
    cache: AudioCache,
    key: str,
    pcm: bytes,
    *,
    rate: int,
    channels: int,
    text: str,
    identity: BackendIdentity,
    loudness: float | None,
) -> None:
    """`cache.put` with the entry's measured loudness (LUFS), where the cache records it."""
    if _records_loudness(cache):
        cache.put(
            key,
            pcm,
            rate=rate,
            channels=channels,
            text=text,
            identity=identity,
            loudness=loudness,
        )  # type: ignore[call-arg,unused-ignore]
    else:
        cache.put(key, pcm, rate=rate, channels=channels, text=text, identity=identity)


def _records_loudness(cache: AudioCache) -> bool:
    import inspect

    return "loudness" in inspect.signature(cache.put).parameters


async def run_warm(
    plan: WarmPlan,
    backend: Backend,
    cache: AudioCache,
    *,
    jobs: int = 4,
    retries: int = 3,
    timeout: float | None = 60.0,
    on_progress: ProgressCallback | None = None,
    on_retry: RetryCallback | None = None,
    summary: WarmSummary | None = None,
    process: ProcessSettings = NO_PROCESSING,
    gate: str = "strict",
) -> WarmSummary:
    """Synthesize and cache every missing phrase of `plan`; return (and fill) the summary.

    Pass your own `summary` to read the counts after a cancellation (Ctrl-C). `process`
    must be the settings the plan was made with; each synthesis must pass the `gate`
    (voiceprep.gate) or is retried, then reported as failed, never cached.
    """
    if jobs < 1:
        raise UsageError(f"invalid jobs {jobs}: must be at least 1")
    if plan.missing and cache.read_only:
        raise CacheReadOnlyError(
            f"{cache.directory}: cache is read-only; "
            f"cannot store the {len(plan.missing)} phrases that are not cached"
        )
    summary = summary if summary is not None else WarmSummary()
    summary.phrases = len(plan.items)
    summary.already_cached = len(plan.cached)
    started = time.monotonic()
    runner = _Runner(plan, backend, cache, jobs, retries, timeout, summary)
    runner.on_progress, runner.on_retry = on_progress, on_retry
    runner.process, runner.gate = process, gate
    try:
        await runner.run()
    finally:
        summary.elapsed += time.monotonic() - started
    return summary


class _Runner:
    """A pool of `jobs` workers draining one queue of missing phrases.

    A worker only waits for the backend: as soon as audio arrives it hands it to a store
    task (normalize, then put) and takes the next phrase, so decoding and disk writes never
    hold a request slot. At most `jobs` stores are pending, so memory stays bounded.
    """

    def __init__(
        self,
        plan: WarmPlan,
        backend: Backend,
        cache: AudioCache,
        jobs: int,
        retries: int,
        timeout: float | None,
        summary: WarmSummary,
    ) -> None:
        self.plan, self.backend, self.cache = plan, backend, cache
        self.jobs, self.retries, self.timeout = jobs, retries, timeout
        self.summary = summary
        self.queue: deque[PlanItem] = deque(plan.missing)
        self.total = len(self.queue)
        self.done = 0
        self.on_progress: ProgressCallback | None = None
        self.on_retry: RetryCallback | None = None
        self.process: ProcessSettings = NO_PROCESSING
        self.gate = "strict"
        self.stop_error: VoiceprepError | None = None
        self.in_flight: set[str] = set()
        # Phrases whose lease another process holds: retried once it lets go.
        self.waiting: list[PlanItem] = []
        self.leases: dict[str, Lease] = {}
        # A claim outlives every attempt a synthesis may make, then lapses by itself.
        attempt = timeout if timeout is not None else 60.0
        self.lease_ttl = attempt * (retries + 1) + 30.0
        self.workers: list[asyncio.Task[None]] = []
        self.stores: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if not self.queue:
            return
        self.store_slots = asyncio.Semaphore(self.jobs)
        # Cache writes go through one thread: SQLite serializes writers anyway, and the
        # event loop stays free to keep `jobs` requests in flight.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="voiceprep-put") as writer:
            self.writer = writer
            self.workers = [
                asyncio.create_task(self._worker()) for _ in range(min(self.jobs, self.total))
            ]
            try:
                results = await asyncio.gather(*self.workers, return_exceptions=True)
                # Audio already paid for is stored even when the run stopped.
                results += await asyncio.gather(*self.stores, return_exceptions=True)
            except BaseException:  # cancelled from outside (Ctrl-C): stop everything
                pending = [*self.workers, *self.stores]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise
        # Failures in list order, not in the order the requests happened to finish.
        order = {item.key: index for index, item in enumerate(self.plan.items)}
        self.summary.failed.sort(key=lambda failure: order.get(failure.key, len(order)))
        for result in results:
            # Workers cancelled by an authentication stop end with CancelledError; any
            # other exception is a bug and must not pass silently.
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        if self.stop_error is not None:
            self.summary.skipped = len(self.queue) + len(self.in_flight) + len(self.waiting)
            self.summary.stopped = str(self.stop_error)

    async def _worker(self) -> None:
        while (self.queue or self.waiting) and self.stop_error is None:
            item = self.queue.popleft() if self.queue else await self._next_released()
            if item is None:
                continue
            if not await self._claim(item):
                continue
            self.in_flight.add(item.key)
            try:
                pcm = await self._raw(item)
            except AuthenticationError as exc:
                self.in_flight.discard(item.key)
                self._release(item)
                self._stop(item, exc)
                return
            except VoiceprepError as exc:
                self.in_flight.discard(item.key)
                self._release(item)
                self._finish(item, "failed", str(exc))
                continue
            self.in_flight.discard(item.key)
            await self.store_slots.acquire()
            task = asyncio.create_task(self._store(item, pcm))
            self.stores.add(task)

    async def _claim(self, item: PlanItem) -> bool:
        """Take the phrase's lease: False when another process has it (then it waits) or
        stored it meanwhile (then it is done). A cache that cannot lease does not stop us."""
        loop = asyncio.get_running_loop()
        try:
            lease = await loop.run_in_executor(
                self.writer, lambda: self.cache.claim(item.key, ttl=self.lease_ttl)
            )
        except CacheError:
            return True  # best effort: a lease only ever saves duplicate work
        if lease is None:
            self.waiting.append(item)
            return False
        self.leases[item.key] = lease
        if self.cache.is_intact(item.key):  # stored by another process just before our claim
            self._release(item)
            self._finish(item, "shared", None)
            return False
        return True

    def _release(self, item: PlanItem) -> None:
        lease = self.leases.pop(item.key, None)
        if lease is not None:
            self.writer.submit(lease.release)

    async def _next_released(self) -> PlanItem | None:
        """Wait until a phrase another process holds is stored (done) or let go (ours)."""
        while self.waiting and self.stop_error is None:
            for item in list(self.waiting):
                if self.cache.is_intact(item.key):
                    self.waiting.remove(item)
                    self._finish(item, "shared", None)
                elif self.cache.lease_holder(item.key) is None:
                    self.waiting.remove(item)
                    return item
            if self.waiting:
                await asyncio.sleep(_LEASE_POLL_SECONDS)
        return None

    async def _raw(self, item: PlanItem) -> bytes:
        """The raw synthesis of `item`: the cached one when processing settings changed,
        else a new one that passed the plausibility gate."""
        from voiceprep.gate import synthesize_checked

        if item.raw_cached:
            try:
                pcm = self.cache.get(item.raw_key, rate=self.plan.rate, channels=self.plan.channels)
            except (CacheCorruptError, CacheFormatMismatchError):
                pcm = None
            if pcm is not None:
                return pcm
        return await synthesize_checked(
            self.backend,
            item.text,
            voice=item.voice,
            rate=self.plan.rate,
            channels=self.plan.channels,
            retries=self.retries,
            timeout=self.timeout,
            gate=self.gate,
            on_retry=lambda attempt, delay, exc: self._retrying(item, attempt, delay, exc),
            on_refused=lambda attempt, reason: self._retrying(
                item, attempt, 0.0, ImplausibleAudioError(reason)
            ),
        )

    async def _store(self, item: PlanItem, raw: bytes) -> None:
        rate, channels = self.plan.rate, self.plan.channels
        try:
            produced = await asyncio.to_thread(produce, raw, rate, channels, self.process)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self.writer, self._put, item, raw, produced)
            except CacheError as exc:
                # Read-only, disk full, index broken: every further synthesis would be
                # paid for and thrown away.
                self._stop(item, exc)
                return
        except VoiceprepError as exc:
            self._finish(item, "failed", str(exc))
        else:
            self.summary.synthesized += 1
            if item.raw_cached:
                self.summary.reprocessed += 1
            else:
                self.summary.characters_sent += item.characters
            self.summary.audio_seconds += audio_seconds(produced.pcm, rate=rate, channels=channels)
            if produced.loudness is not None:
                self.summary.loudness.append(produced.loudness)
            self._finish(item, "synthesized", None)
        finally:
            self._release(item)
            self.store_slots.release()

    def _put(self, item: PlanItem, raw: bytes, produced: Processed) -> None:
        rate, channels = self.plan.rate, self.plan.channels
        if item.processed and not item.raw_cached:
            put_entry(
                self.cache,
                item.raw_key,
                raw,
                rate=rate,
                channels=channels,
                text=item.text,
                identity=item.identity,
                loudness=produced.source_loudness,
            )
        put_entry(
            self.cache,
            item.key,
            produced.pcm,
            rate=rate,
            channels=channels,
            text=item.text,
            identity=self.process.identity(item.identity),
            loudness=produced.loudness,
        )

    def _retrying(self, item: PlanItem, attempt: int, delay: float, exc: Exception) -> None:
        if self.on_retry is not None:
            self.on_retry(RetryEvent(item, attempt, delay, str(exc)))

    def _stop(self, item: PlanItem, exc: VoiceprepError) -> None:
        """A failure no other phrase can get past (authentication refused, a cache that
        cannot store): no more requests; the others in flight are cancelled."""
        self._finish(item, "failed", str(exc))
        if self.stop_error is None:
            self.stop_error = exc
            current = asyncio.current_task()
            for task in self.workers:
                if task is not current:
                    task.cancel()

    def _finish(self, item: PlanItem, outcome: Outcome, error: str | None) -> None:
        if outcome == "shared":
            self.summary.shared += 1
        if outcome == "failed":
            self.summary.failed.append(Failure(item.phrase, error or "failed", item.key))
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(item, outcome, error, self.done, self.total))


async def warm(
    phrases: Iterable[Phrase],
    backend: Backend,
    cache: AudioCache,
    *,
    voice: str | None = None,
    rate: int = 24000,
    channels: int = 1,
    jobs: int = 4,
    retries: int = 3,
    timeout: float | None = 60.0,
    shard: Shard | None = None,
    on_progress: ProgressCallback | None = None,
    process: ProcessSettings = NO_PROCESSING,
    gate: str = "strict",
) -> WarmSummary:
    """Plan and run in one call, for library users."""
    plan = plan_warm(
        phrases,
        backend,
        cache,
        voice=voice,
        rate=rate,
        channels=channels,
        shard=shard,
        verify=True,
        process=process,
    )
    return await run_warm(
        plan,
        backend,
        cache,
        jobs=jobs,
        retries=retries,
        timeout=timeout,
        on_progress=on_progress,
        process=process,
        gate=gate,
    )


# --- afterwards -----------------------------------------------------------------------


def prune_unlisted(cache: AudioCache, plan: WarmPlan) -> list[CacheEntry]:
    """Remove the entries of the lists' backends and voices whose key is in no list.

    Every shard's keys count as listed, so one shard never prunes another's phrases.
    """
    stale = [
        entry
        for entry in cache.entries()
        if (entry.backend, entry.voice) in plan.identities and entry.key not in plan.all_keys
    ]
    if stale:
        cache.remove([entry.key for entry in stale])
    return stale


def export_plan(
    cache: AudioCache,
    plan: WarmPlan,
    directory: str | Path,
    options: ExportOptions | None = None,
) -> ExportReport:
    """Each phrase of the plan as `<id or slug>.wav` (or as `options` lay it out) plus
    manifest.json in `directory`."""
    from voiceprep.export import ExportItem, export_entries

    items = [
        ExportItem(key=i.key, text=i.phrase.text, id=i.phrase.id, lang=i.phrase.lang)
        for i in plan.items
    ]
    return export_entries(cache, items, directory, options)


# --- say ------------------------------------------------------------------------------


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
    rate: int = 24000,
    channels: int = 1,
    retries: int = 3,
    timeout: float | None = 60.0,
    process: ProcessSettings = NO_PROCESSING,
    gate: str = "strict",
) -> SayResult:
    """One phrase through the cache: served when cached, else synthesized and stored.

    A damaged entry is synthesized again and replaced rather than served. With `process`,
    the processed audio is served; on a miss it is made from the cached raw synthesis
    when there is one, else from a new synthesis (which must pass the `gate`), and both
    are stored.
    """
    import asyncio

    from voiceprep.gate import synthesize_checked

    normalized = normalize_text(text)
    if not normalized:
        raise UsageError("nothing to say: the text is empty")
    identity = backend.identity(voice)
    key = cache_key(process.identity(identity), normalized, rate=rate, channels=channels)
    raw_key = cache_key(identity, normalized, rate=rate, channels=channels)
    pcm = _get_intact(cache, key, rate, channels)
    if pcm is not None:
        return SayResult(pcm, key, cached=True)
    raw = _get_intact(cache, raw_key, rate, channels) if raw_key != key else None
    had_raw = raw is not None
    if raw is None:
        raw = await synthesize_checked(
            backend,
            normalized,
            voice=voice,
            rate=rate,
            channels=channels,
            retries=retries,
            timeout=timeout,
            gate=gate,
        )
    produced = await asyncio.to_thread(produce, raw, rate, channels, process)
    common: dict[str, Any] = {"rate": rate, "channels": channels, "text": normalized}
    if raw_key != key and not had_raw:
        put_entry(
            cache, raw_key, raw, identity=identity, loudness=produced.source_loudness, **common
        )
    put_entry(
        cache,
        key,
        produced.pcm,
        identity=process.identity(identity),
        loudness=produced.loudness,
        **common,
    )
    return SayResult(produced.pcm, key, cached=False)


def _get_intact(cache: AudioCache, key: str, rate: int, channels: int) -> bytes | None:
    try:
        return cache.get(key, rate=rate, channels=channels)
    except (CacheCorruptError, CacheFormatMismatchError):
        return None
