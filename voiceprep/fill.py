"""The fill path: the audio of one text, for one identity, format and processing.

Every surface that hands out prompt audio (`warm`, `say`, `TTSAudioCache`, `serve`, the
LiveKit and Pipecat integrations) gets it here (docs/architecture.md, "The fill path"):

    memory → disk → remote → claim (lease) → synthesize (retries, gate)
           → process → hand out → store raw and processed

The one home of the key pair (`prompt_for`: `key` of the audio handed out, `raw_key` of
the synthesis it is made from) and the retry/gate loop (`Filler.synthesize`); the claim
step and its lease TTL are voiceprep.claims (`Filler.claims`). A miss is one
`Flight` that any number of consumers follow from its first chunk; once a chunk reached
a live consumer nothing is retried, and a failure raises in every consumer and stores
nothing. Consumers get the audio as soon as it is complete and past the gate; entries are
written afterwards in writer threads that `close()` waits for. With a processing chain
(loudness and trim need the whole phrase) a streamed miss is handed out once processed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceprep.backends.retry import retry_delay
from voiceprep.claims import Claims, lease_ttl
from voiceprep.errors import (
    BackendError,
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    CacheVersionError,
    EmptyAudioError,
    ImplausibleAudioError,
    TransientBackendError,
)
from voiceprep.flight import Flight, Memory
from voiceprep.gate import judge
from voiceprep.keys import BackendIdentity, cache_key, normalize_text
from voiceprep.process import NO_PROCESSING, Processed, ProcessSettings, produce
from voiceprep.secrets import redact
from voiceprep.sources import Attempt, BackendSource, Source, Timings
from voiceprep.timings import Words, shifted

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache, Lease
    from voiceprep.remote import ReadThrough

log = logging.getLogger(__name__)

# Writer threads per pool: two for puts, whose fsyncs overlap (a put is mostly the entry
# file's fsync: two threads store about twice as many entries a second); one for leases.
_THREADS = {"put": 2}

RetryHook = Callable[[int, float, Exception], object]  # (attempt, delay, error)
RefusedHook = Callable[[int, str], object]  # (attempt, the gate's reason)


# --- what is wanted ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)  # a warm plan holds one per phrase
class Prompt:
    """One text in one voice, keyed for one format and processing chain."""

    text: str  # normalized: exactly what the key covers and the source is asked for
    voice: str | None
    identity: BackendIdentity  # of the raw synthesis
    key: str  # the audio handed out (processed when a chain is active)
    raw_key: str  # the synthesis it is made from (== key without processing)

    @property
    def processed(self) -> bool:
        return self.raw_key != self.key


def prompt_for(
    identity: BackendIdentity,
    text: str,
    *,
    voice: str | None,
    rate: int,
    channels: int,
    process: ProcessSettings = NO_PROCESSING,
) -> Prompt:
    """The prompt of `text` in `identity`'s voice: its key pair (the one home of both)."""
    normalized, processed = normalize_text(text), process.identity(identity)
    key = cache_key(processed, normalized, rate=rate, channels=channels)
    same = processed == identity  # no processing: one key (one string) for both
    raw_key = key if same else cache_key(identity, normalized, rate=rate, channels=channels)
    return Prompt(normalized, voice, identity, key, raw_key)


# --- the filler ------------------------------------------------------------------------------


class Filler:
    """The fill path over one source, one cache directory (optional) and one format.

    Args:
        source: what synthesizes (`BackendSource`, `StreamSynthesizeSource`, or an
            integration's source).
        disk: the cache directory (None: memory only).
        rate, channels, process: the format and processing chain of what is handed out.
        gate: the plausibility gate of each synthesis (strict, relaxed, off).
        retries: more attempts after a transient failure, and after a refused synthesis.
        timeout: seconds per attempt (also sizes the lease).
        remote: a remote consulted on a local miss (and published to, when it pushes).
        memory: the memory tier (None: none).
        syntheses: at most this many source calls at once (None: no bound).
        best_effort: a disk that cannot store is logged, not raised (agents, serve);
            False raises the CacheError (warm stops on it).
        measure: measure the loudness of unprocessed audio too (warm records it).
    """

    def __init__(
        self,
        source: Source,
        disk: AudioCache | None,
        *,
        rate: int,
        channels: int,
        process: ProcessSettings = NO_PROCESSING,
        gate: str = "strict",
        retries: int = 3,
        timeout: float | None = 60.0,
        remote: ReadThrough | None = None,
        memory: Memory | None = None,
        syntheses: int | None = None,
        best_effort: bool = True,
        measure: bool = False,
    ) -> None:
        self.source, self.disk = source, disk
        self.rate, self.channels, self.process = rate, channels, process
        self.gate, self.retries, self.timeout = gate, retries, timeout
        self.remote, self.memory = remote, memory
        self.best_effort, self.measure = best_effort, measure
        self._slots = asyncio.Semaphore(syntheses) if syntheses is not None else None
        self.flights: dict[str, Flight] = {}
        # Word timings handed out but not yet on disk (the writer thread stores them).
        self.unwritten_words: dict[str, Words] = {}
        # Index writes go through writer threads, off the event loop, that close() waits
        # for: puts (file, fsync, commit) in their own, leases in one, so a claim on a miss
        # never queues behind the fsync of the previous phrase's put.
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self.closed = False
        ttl = lease_ttl(timeout, retries)
        self.claims = Claims(disk, ttl=ttl, read=self.read, pool=lambda: self._pool("lease"))

    def prompt(self, identity: BackendIdentity, text: str, voice: str | None) -> Prompt:
        return prompt_for(
            identity,
            text,
            voice=voice,
            rate=self.rate,
            channels=self.channels,
            process=self.process,
        )

    # --- handing out ---------------------------------------------------------------------

    def local(self, prompt: Prompt) -> bytes | None:
        """The audio from memory or disk, or None (a damaged entry is a miss)."""
        if self.memory is not None:
            pcm = self.memory.get(prompt.key)
            if pcm is not None:
                return pcm
        pcm = self.read(prompt.key)
        if pcm is not None and self.memory is not None:
            self.memory.put(prompt.key, pcm)
        return pcm

    async def fetch(self, prompt: Prompt) -> bytes:
        """The whole audio: local, else one shared fill (returns once the entry is stored)."""
        pcm = self.local(prompt)
        if pcm is not None:
            return pcm
        flight = self.flight(prompt)
        if flight.task is None:  # produced by a caller (see `produce_flight`)
            return await flight.audio()
        # shield: one caller giving up must not cancel the fill the others wait for.
        return await asyncio.shield(flight.task)

    async def stream(self, prompt: Prompt) -> AsyncIterator[bytes]:
        """The audio as chunks: a hit at once; a miss as it is synthesized (whole once
        processed, when a processing chain is active)."""
        pcm = self.local(prompt)
        if pcm is not None:
            yield pcm
            return
        flight = self.flight(prompt)
        if prompt.processed:
            yield await flight.audio()
            return
        async for _, chunk in flight.follow():
            yield chunk

    def flight(self, prompt: Prompt) -> Flight:
        """The fill of `prompt` in flight in this process, started when there is none."""
        flight = self.in_flight(prompt)
        if flight is None:
            flight = self.flights[prompt.key] = Flight()
            flight.task = asyncio.ensure_future(self._fill(prompt, flight))
            flight.task.add_done_callback(lambda task: self._forget(prompt.key, flight, task))
        return flight

    def in_flight(self, prompt: Prompt) -> Flight | None:
        """The unsettled fill of `prompt` this event loop can follow, if any."""
        flight = self.flights.get(prompt.key)
        if flight is None or flight.settled or flight.loop is not asyncio.get_running_loop():
            return None
        return flight

    def produce_flight(self, prompt: Prompt) -> Flight | None:
        """A flight the caller produces itself (a framework that synthesizes in its own
        generator): it `add`s the chunks, then `settle_flight`s. None when `prompt` is
        in flight already: follow that one."""
        if self.in_flight(prompt) is not None:
            return None
        flight = self.flights[prompt.key] = Flight()
        return flight

    async def settle_flight(
        self, prompt: Prompt, flight: Flight, error: BaseException | None = None
    ) -> None:
        """End a caller-produced flight: the error raises in its followers and nothing is
        stored; else its chunks (the synthesis, as produced) are handed out, then kept
        like `keep` does."""
        try:
            raw = b"".join(flight.chunks)
            if error is None and not raw:
                error = EmptyAudioError(f"{prompt.text!r}: the TTS returned no audio")
            if error is not None:
                flight.fail(error)
                return
            flight.finish(raw)
            await self.keep(prompt, raw, flight.words)
        finally:
            if self.flights.get(prompt.key) is flight:
                del self.flights[prompt.key]

    def _forget(self, key: str, flight: Flight, task: asyncio.Task[bytes]) -> None:
        if self.flights.get(key) is flight:
            del self.flights[key]
        if not task.cancelled():
            task.exception()  # its consumers were told; nothing is left unretrieved

    async def _fill(self, prompt: Prompt, flight: Flight) -> bytes:
        try:
            pcm = await self._fill_steps(prompt, flight)
        except asyncio.CancelledError:
            flight.fail(BackendError(f"{prompt.text!r}: cancelled (the cache was closed)"))
            raise
        except BaseException as exc:
            flight.fail(exc)
            raise
        return pcm

    async def _fill_steps(self, prompt: Prompt, flight: Flight) -> bytes:
        claim = await self.claims.claim(prompt.key, wait=True)
        if claim.pcm is not None:
            return self._handed(prompt, flight, claim.pcm)
        try:
            if self.remote is not None:
                pcm = await self.remote.fetch(prompt.key, self.disk)
                if pcm is not None:
                    return self._handed(prompt, flight, pcm)
            raw = self.read(prompt.raw_key) if prompt.processed else None
            had_raw = raw is not None
            words = self.words(prompt.raw_key) if had_raw else None
            if raw is None:
                raw = await self.synthesize(prompt, flight)
                words = flight.words
            produced = await self.produce(raw)
            moved = _moved(words, produced, self.rate, self.channels)
            if moved is not None and self.disk is not None and not self.closed:
                self.unwritten_words[prompt.key] = moved  # until put has stored them
            self._handed(prompt, flight, produced.pcm)
            await self.put(prompt, raw, produced, had_raw=had_raw, words=words)
            if self.remote is not None and self.disk is not None:
                await self.remote.publish(prompt.key, self.disk)
            return produced.pcm
        finally:
            self.claims.release(claim.lease)

    def _handed(self, prompt: Prompt, flight: Flight, pcm: bytes) -> bytes:
        if self.memory is not None:
            self.memory.put(prompt.key, pcm)
        flight.finish(pcm)
        return pcm

    # --- the steps (warm schedules them itself) -------------------------------------------

    def read(self, key: str) -> bytes | None:
        """An entry's PCM from disk, or None (absent, damaged, or an unreadable cache).
        Inline: an index lookup and one small file read cost less than a thread hop."""
        if self.disk is None:
            return None
        try:
            return self.disk.get(key, rate=self.rate, channels=self.channels)
        except CacheVersionError:
            raise  # a newer voiceprep's cache: say so rather than quietly bypass it
        except (CacheCorruptError, CacheFormatMismatchError) as exc:
            log.warning("ignoring cached entry %s: %s", key[:12], exc)
            return None
        except CacheError as exc:
            if not self.best_effort:
                raise
            log.warning("cache %s unreadable, synthesizing: %s", self.disk.directory, exc)
            return None

    def words(self, key: str) -> Words | None:
        """The word timings of an entry (None: none, or not readable), those of audio just
        handed out included."""
        if key in self.unwritten_words:
            return self.unwritten_words[key]
        if self.disk is None:
            return None
        try:
            return self.disk.words(key)
        except CacheError:
            return None

    async def synthesize(
        self,
        prompt: Prompt,
        flight: Flight | None = None,
        *,
        on_retry: RetryHook | None = None,
        on_refused: RefusedHook | None = None,
    ) -> bytes:
        """The raw synthesis of `prompt`, past the gate, published to `flight` as it comes.

        Transient errors and refused syntheses are tried again (`retries` more times
        each) until a chunk reached a live consumer; then the error is final. A source
        that does not stream (`streams` False: one chunk at the end) is judged before its
        audio is published, so its refusals are always tried again.
        """
        flight = flight if flight is not None else Flight()
        staged = Flight() if not getattr(self.source, "streams", True) else flight
        failures = refusals = 0
        while True:
            staged.begin()
            try:
                if self._slots is None:
                    await self._attempt(prompt, staged)
                else:
                    async with self._slots:
                        await self._attempt(prompt, staged)
            except self.source.retried as exc:
                assert isinstance(exc, TransientBackendError)
                if failures >= self.retries or flight.live:
                    raise _gave_up(exc, failures) from exc
                delay = retry_delay(exc, failures, timeout=self.timeout)
                failures += 1
                if on_retry is not None:
                    on_retry(failures, delay, exc)
                await asyncio.sleep(delay)
                continue
            pcm = b"".join(staged.chunks)
            if not pcm:
                raise EmptyAudioError(f"{prompt.text!r}: the TTS returned no audio")
            reason = self._refusal(prompt, pcm)
            if reason is None:
                if staged is not flight:
                    flight.begin(staged.tag)
                    flight.add(pcm)
                    flight.words = staged.words
                return pcm
            if refusals >= self.retries or flight.live:
                tries = "1 attempt" if refusals == 0 else f"{refusals + 1} attempts"
                raise ImplausibleAudioError(
                    f"{self._name()}: implausible synthesis: {reason} (gave up after {tries}; "
                    "--gate relaxed widens the check)"
                )
            refusals += 1
            log.warning("%r: implausible synthesis (try %d): %s", prompt.text, refusals, reason)
            if on_refused is not None:
                on_refused(refusals, reason)

    async def _attempt(self, prompt: Prompt, flight: Flight) -> None:
        async for chunk in self.source.attempt(prompt.text, prompt.voice):
            if isinstance(chunk, Attempt):
                flight.begin(chunk.tag)
            elif isinstance(chunk, Timings):
                flight.words = chunk.words
            elif chunk:
                flight.add(chunk)

    def _refusal(self, prompt: Prompt, pcm: bytes) -> str | None:
        if self.gate == "off":
            return None
        rate, channels = self.rate, self.channels
        return judge(pcm, rate=rate, channels=channels, text=prompt.text, mode=self.gate).reason

    def _name(self) -> str:
        return str(getattr(self.source, "name", type(self.source).__name__))

    async def produce(self, raw: bytes) -> Processed:
        """The processing chain over a raw synthesis (CPU work: off the event loop)."""
        if self._processes:
            return await asyncio.to_thread(self._produce, raw)
        return self._produce(raw)

    @property
    def _processes(self) -> bool:
        return not self.process.is_empty or self.measure

    def _produce(self, raw: bytes) -> Processed:
        if self._processes:
            return produce(raw, self.rate, self.channels, self.process)
        return Processed(raw, None)

    async def keep(self, prompt: Prompt, raw: bytes, words: Words | None = None) -> bytes:
        """Audio synthesized elsewhere (a framework's TTS): processed, kept in memory and
        stored like a synthesis of ours, with its word timings when it had them. Returns
        what is handed out."""
        if not raw:
            raise EmptyAudioError(f"{prompt.text!r}: no audio to store")
        produced = await self.produce(raw)
        if self.memory is not None:
            self.memory.put(prompt.key, produced.pcm)
        await self.put(prompt, raw, produced, had_raw=False, words=words)
        return produced.pcm

    async def put(
        self,
        prompt: Prompt,
        raw: bytes,
        produced: Processed,
        *,
        had_raw: bool,
        words: Words | None = None,
    ) -> None:
        """Store the raw synthesis (when processed and new) and the handed-out audio, with
        the raw synthesis's word timings (moved as processing moved the audio), in the
        writer thread. Not cancelled with its caller: a write in flight completes, and
        `close()` waits for it."""
        if self.disk is None or self.closed:
            return
        future = self._pool("put").submit(self._put, prompt, raw, produced, had_raw, words)
        future.add_done_callback(lambda _: self.unwritten_words.pop(prompt.key, None))
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except (CacheError, OSError) as exc:
            self._unstored(prompt, exc)

    async def store(
        self,
        prompt: Prompt,
        raw: bytes,
        *,
        had_raw: bool,
        words: Words | None = None,
        lease: Lease | None = None,
    ) -> Processed:
        """`produce`, `put` and `release` of a synthesis nobody waits to hear (warm) in one
        writer-thread job: one hand-off per phrase instead of three. Returns what was
        stored; not cancelled with its caller, like `put`."""
        if self.disk is None or self.closed:
            self.claims.release(lease)
            return await self.produce(raw)
        job = self._pool("put").submit(self._store, prompt, raw, had_raw, words, lease)
        produced, error = await asyncio.shield(asyncio.wrap_future(job))
        if error is not None:
            self._unstored(prompt, error)
        return produced

    def _store(
        self, prompt: Prompt, raw: bytes, had_raw: bool, words: Words | None, lease: Lease | None
    ) -> tuple[Processed, CacheError | OSError | None]:
        try:
            produced = self._produce(raw)
            try:
                self._put(prompt, raw, produced, had_raw, words)
            except (CacheError, OSError) as exc:
                return produced, exc
            return produced, None
        finally:
            if lease is not None and self.disk is not None:
                self.disk.release_all([lease])

    def _unstored(self, prompt: Prompt, exc: CacheError | OSError) -> None:
        """A put that failed: raised, or only logged when the fill is best effort."""
        if not self.best_effort:
            raise exc
        assert self.disk is not None
        log.warning("could not store %r in %s: %s", prompt.text, self.disk.directory, exc)

    def _put(
        self, prompt: Prompt, raw: bytes, produced: Processed, had_raw: bool, words: Words | None
    ) -> None:
        disk = self.disk
        assert disk is not None
        rate, channels, text = self.rate, self.channels, prompt.text
        if prompt.processed and not had_raw:
            loudness = produced.source_loudness
            disk.put(prompt.raw_key, raw, rate=rate, channels=channels, text=text,
                     identity=prompt.identity, loudness=loudness, words=words)  # fmt: skip
        words = _moved(words, produced, rate, channels)
        identity = self.process.identity(prompt.identity)
        disk.put(prompt.key, produced.pcm, rate=rate, channels=channels, text=text,
                 identity=identity, loudness=produced.loudness, words=words)  # fmt: skip

    def _pool(self, name: str) -> ThreadPoolExecutor:
        if self.closed:
            raise CacheError("the cache was closed")
        pool = self._pools.get(name)
        if pool is None:
            prefix, workers = f"voiceprep-{name}", _THREADS.get(name, 1)
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)
            self._pools[name] = pool
        return pool

    # --- closing -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the fills in flight: nothing of them is stored (begun writes complete, and
        a fill whose audio was handed out whole is still stored and pushed)."""
        for flight in list(self.flights.values()):
            if flight.task is not None and not flight.settled:
                flight.task.cancel()

    def close(self) -> None:
        """Wait for the writes in flight, then refuse new ones. The disk stays open
        (its owner closes it)."""
        self.closed = True
        for pool in self._pools.values():
            pool.shutdown(wait=True)

    async def drain(self) -> None:
        """Wait for the fills in flight to settle, their stores included."""
        pending = [f.task for f in self.flights.values() if f.task is not None]
        await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        """`cancel()`, then `close()` off the event loop."""
        self.cancel()
        await self.drain()
        await asyncio.to_thread(self.close)


def backend_filler(
    backend: Backend,
    cache: AudioCache,
    *,
    rate: int,
    channels: int,
    process: ProcessSettings,
    gate: str,
    retries: int,
    timeout: float | None,
) -> Filler:
    """The fill path as warm and say use it over a voiceprep backend: nobody listens
    while it runs (the backend's whole-phrase `synthesize`), a cache that cannot store
    raises (warm stops on it), and every entry's loudness is measured."""
    return Filler(
        BackendSource(backend, rate=rate, channels=channels, timeout=timeout, live=False),
        cache,
        rate=rate,
        channels=channels,
        process=process,
        gate=gate,
        retries=retries,
        timeout=timeout,
        best_effort=False,
        measure=True,
    )


def _moved(words: Words | None, produced: Processed, rate: int, channels: int) -> Words | None:
    """A raw synthesis's word timings on its processed audio (trim and pads move them)."""
    if words is None:
        return None
    return shifted(words, produced.offset, len(produced.pcm) / (2 * channels * rate)) or None


def _gave_up(exc: TransientBackendError, failures: int) -> TransientBackendError:
    tries = "1 attempt" if failures == 0 else f"{failures + 1} attempts"
    return TransientBackendError(
        redact(f"{exc} (gave up after {tries})"), retry_after=exc.retry_after
    )
