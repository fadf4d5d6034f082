"""Prebuilding phrase audio into the cache: the library behind `voiceprep warm` and `say`.

A warm is three steps the CLI drives one by one, so it can stop after any of them:

1. `plan_warm`: the cache key of every phrase (backend identity, voice, rate, channels,
   text), duplicates by key dropped, only this shard's keys kept (`--shard K/N`), and
   each marked cached or missing. Planning never synthesizes and never needs an API key,
   which is what makes `--dry-run` and `--check` cheap CI gates.
2. `run_warm`: the missing phrases synthesized concurrently (at most `jobs` requests in
   flight) through the fill path's steps (voiceprep.fill: claim, synthesize with retries
   and the gate, process, store raw and processed). Each result is processed and stored
   in a task of its own, so the request slot is free for the next phrase at once. An
   entry is committed as soon as it is ready, so an interrupted run keeps everything it
   finished and a re-run resumes. An authentication failure stops the run: the requests
   in flight are cancelled and nothing more is sent (audio already received is still
   stored). A phrase another warm (or a `serve` replica) holds the lease of is set aside
   and waited for, not paid for twice.
3. `prune_unlisted` / `export_plan`: optional afterwards.

Nothing here prints: progress goes to the callback the caller passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voiceprep import defaults
from voiceprep.audio_format import AudioFormat
from voiceprep.claims import LEASE_POLL_SECONDS, Claim
from voiceprep.errors import (
    AuthenticationError,
    CacheError,
    CacheReadOnlyError,
    ImplausibleAudioError,
    UsageError,
    VoiceprepError,
)
from voiceprep.export import ExportItem, ExportOptions, ExportReport, export_entries
from voiceprep.fill import Filler, backend_filler
from voiceprep.flight import Flight
from voiceprep.phrases import Phrase
from voiceprep.plan import (
    PlanItem,
    PlanQueue,
    Shard,
    WarmPlan,
    parse_shard,
    plan_warm,
    shard_of,
)
from voiceprep.process import NO_PROCESSING, ProcessSettings
from voiceprep.remote import scrub
from voiceprep.say import SayResult, say
from voiceprep.timings import Words
from voiceprep.warm_remote import (
    RemoteFailure,
    RemotePull,
    RemotePush,
    pull_missing,
    push_listed,
)

# The plan (voiceprep.plan) is part of this API: `from voiceprep.warm import plan_warm`.
__all__ = [
    "Failure",
    "PlanItem",
    "ProgressEvent",
    "RemoteFailure",
    "RemotePull",
    "RemotePush",
    "RetryEvent",
    "SayResult",
    "Shard",
    "WarmPlan",
    "WarmSummary",
    "export_plan",
    "parse_shard",
    "plan_warm",
    "prune_unlisted",
    "pull_missing",
    "push_listed",
    "record_remote",
    "run_warm",
    "say",
    "shard_of",
    "warm",
]

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache, CacheEntry, Lease

# "shared": another process stored the phrase while this run waited for its lease.
Outcome = Literal["synthesized", "failed", "shared"]


# --- running --------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    phrase: Phrase
    reason: str
    key: str = ""


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
    filler = backend_filler(
        backend,
        cache,
        rate=plan.rate,
        channels=plan.channels,
        process=process,
        gate=gate,
        retries=retries,
        timeout=timeout,
    )
    runner = _Runner(plan, filler, jobs, summary)
    runner.on_progress, runner.on_retry = on_progress, on_retry
    try:
        await runner.run()
    finally:
        summary.elapsed += time.monotonic() - started
        await asyncio.to_thread(filler.close)  # the writes in flight complete
    return summary


class _Runner:
    """A pool of `jobs` workers draining one queue of missing phrases through the fill
    path's steps (voiceprep.fill): claim, synthesize, then process and store.

    A worker only waits for the backend: the next phrases' leases are claimed ahead, a
    batch at a time in one transaction while the requests run, and as soon as audio
    arrives a worker hands it to a store task (process, put, release: one job of a writer
    thread) and takes the next claimed phrase, so claims, processing and disk writes never
    hold a request slot. At most `jobs` stores are pending (so a cache that cannot store
    wastes at most that many syntheses) and 1.5 × `jobs` phrases claimed ahead, so memory
    and the leases held stay bounded. A phrase another process
    holds the lease of is set aside and taken up again once it is stored (then it is
    "shared") or let go.
    """

    def __init__(self, plan: WarmPlan, filler: Filler, jobs: int, summary: WarmSummary) -> None:
        self.plan, self.filler, self.jobs, self.summary = plan, filler, jobs, summary
        self.queue = PlanQueue(plan.missing)  # items made as they are taken
        self.total = len(self.queue)
        self.done = 0
        self.on_progress: ProgressCallback | None = None
        self.on_retry: RetryCallback | None = None
        self.stop_error: VoiceprepError | None = None
        self.in_flight: set[str] = set()
        self.claimed: deque[PlanItem] = deque()  # leased, waiting for a worker
        self.claiming: asyncio.Task[None] | None = None  # the batch being claimed
        # Phrases whose lease another process holds: retried once it lets go.
        self.waiting: list[PlanItem] = []
        self.leases: dict[str, Lease] = {}
        self.workers: list[asyncio.Task[None]] = []
        self.tasks: set[asyncio.Task[None]] = set()  # stores and claims

    async def run(self) -> None:
        if not self.queue:
            return
        self.store_slots = asyncio.Semaphore(self.jobs)
        self.workers = [
            asyncio.create_task(self._worker()) for _ in range(min(self.jobs, self.total))
        ]
        try:
            results = await asyncio.gather(*self.workers, return_exceptions=True)
            # Audio already paid for is stored even when the run stopped.
            results += await asyncio.gather(*self.tasks, return_exceptions=True)
        except BaseException:  # cancelled from outside (Ctrl-C): stop everything
            pending = [*self.workers, *self.tasks]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
        finally:
            for key in list(self.leases):  # claimed, never stored (stopped, cancelled)
                self.filler.claims.release(self.leases.pop(key))
        # Failures in list order, not in the order the requests happened to finish.
        failed = {failure.key for failure in self.summary.failed}
        order = {
            item.key: index for index, item in enumerate(self.plan.items) if item.key in failed
        }
        self.summary.failed.sort(key=lambda failure: order.get(failure.key, len(order)))
        for result in results:
            # Workers cancelled by an authentication stop end with CancelledError; any
            # other exception is a bug and must not pass silently.
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        if self.stop_error is not None:
            left = len(self.queue) + len(self.in_flight) + len(self.waiting)
            self.summary.skipped = left + len(self.claimed)
            self.summary.stopped = str(self.stop_error)

    async def _worker(self) -> None:
        while self.stop_error is None:
            item = await self._next()
            if item is None:
                return
            self.in_flight.add(item.key)
            try:
                raw, words = await self._raw(item)
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
            self._start(self._store(item, raw, words))

    async def _next(self) -> PlanItem | None:
        """The next phrase to synthesize, its lease taken; None when none is left."""
        while self.stop_error is None:
            if self.claimed:
                item = self.claimed.popleft()
                self._claim_ahead()
                return item
            claiming = self._claim_ahead()
            if claiming is not None:
                await asyncio.wait([claiming])  # cancelling a worker leaves the claim be
                claiming.result()  # a claim that failed (not a CacheError) stops the worker
            elif self.waiting:
                released = await self._next_released()
                if released is not None and await self._claim(released):
                    return released
            else:
                return None
        return None

    def _claim_ahead(self) -> asyncio.Task[None] | None:
        """The claim of the next phrases under way, started when few are claimed ahead."""
        if self.claiming is None and self.queue and len(self.claimed) <= self.jobs // 2:
            batch = [self.queue.popleft() for _ in range(min(self.jobs, len(self.queue)))]
            self.claiming = self._start(self._claim_batch(batch))
        return self.claiming

    async def _claim_batch(self, batch: list[PlanItem]) -> None:
        try:
            claims = await self.filler.claims.claim_many([item.key for item in batch])
        finally:
            self.claiming = None
        for item, claim in zip(batch, claims, strict=True):
            if self._claimed(item, claim):
                self.claimed.append(item)

    async def _claim(self, item: PlanItem) -> bool:
        return self._claimed(item, await self.filler.claims.claim(item.key, wait=False))

    def _claimed(self, item: PlanItem, claim: Claim) -> bool:
        """Whether `item` is ours to synthesize: False when another process has its lease
        (then it waits) or stored it meanwhile (then it is done)."""
        if claim.held:
            self.waiting.append(item)
            return False
        if claim.pcm is not None:
            self._finish(item, "shared", None)
            return False
        if claim.lease is not None:
            self.leases[item.key] = claim.lease
        return True

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        return task

    def _release(self, item: PlanItem) -> None:
        self.filler.claims.release(self.leases.pop(item.key, None))

    async def _next_released(self) -> PlanItem | None:
        """Wait until a phrase another process holds is stored (done) or let go (ours)."""
        while self.waiting and self.stop_error is None:
            for item in list(self.waiting):
                if self.filler.read(item.key) is not None:
                    self.waiting.remove(item)
                    self._finish(item, "shared", None)
                elif not self.filler.claims.held_elsewhere(item.key):
                    self.waiting.remove(item)
                    return item
            if self.waiting:
                await asyncio.sleep(LEASE_POLL_SECONDS)
        return None

    async def _raw(self, item: PlanItem) -> tuple[bytes, Words | None]:
        """The raw synthesis of `item` and its word timings: the cached one when processing
        settings changed, else a new one that passed the plausibility gate."""
        if item.raw_cached:
            pcm = self.filler.read(item.raw_key)
            if pcm is not None:
                return pcm, self.filler.words(item.raw_key)
        flight = Flight()
        pcm = await self.filler.synthesize(
            item.prompt,
            flight,
            on_retry=lambda attempt, delay, exc: self._retrying(item, attempt, delay, exc),
            on_refused=lambda attempt, reason: self._retrying(
                item, attempt, 0.0, ImplausibleAudioError(reason)
            ),
        )
        return pcm, flight.words

    async def _store(self, item: PlanItem, raw: bytes, words: Words | None) -> None:
        rate, channels = self.plan.rate, self.plan.channels
        lease = self.leases.pop(item.key, None)  # released by the store, once stored
        try:
            produced = await self.filler.store(
                item.prompt, raw, had_raw=item.raw_cached, words=words, lease=lease
            )
        except CacheError as exc:
            # Read-only, disk full, index broken: every further synthesis would be paid
            # for and thrown away.
            self._stop(item, exc)
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
            self.store_slots.release()

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
    rate: int = defaults.RATE,
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


# --- warm --remote (voiceprep.warm_remote: pull before, push after) -------------------


def record_remote(summary: WarmSummary, pulled: RemotePull, pushed: RemotePush | None) -> None:
    """Put what `warm --remote` moved into the summary (pulled entries count as pulled,
    not as already cached)."""
    summary.remote = scrub(pulled.url)
    summary.pulled = len(pulled.pulled)
    summary.already_cached -= len(pulled.pulled)
    summary.remote_failures = [*pulled.refused]
    if pulled.failure is not None:
        summary.remote_failures.append(pulled.failure)
    if pushed is not None:
        summary.pushed = pushed.pushed
        summary.remote_failures += pushed.failures


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
    *,
    review: bool = True,
) -> ExportReport:
    """Each phrase of the plan as `<id or slug>.wav` (or as `options` lay it out) plus
    manifest.json in `directory`, and with `review` the review page, index.html."""
    items = [
        ExportItem(key=i.key, text=i.phrase.text, id=i.phrase.id, lang=i.phrase.lang)
        for i in plan.items
    ]
    return export_entries(cache, items, directory, options, review=review)
