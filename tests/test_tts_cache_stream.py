"""TTSAudioCache.stream and the fill path's streaming: a miss plays as it is synthesized,
is shared by every caller (a late joiner from the first sample), is stored only when
complete and past the gate; the seed's drop-in (no gate without a directory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array, sine_pcm

from voiceprep import SynthesizedAudio, TTSAudioCache
from voiceprep.cache import AudioCache
from voiceprep.errors import ImplausibleAudioError, TransientBackendError
from voiceprep.keys import BackendIdentity
from voiceprep.process import ProcessSettings

CHUNK_SECONDS = 0.1


class NamedBackend:
    """What every voiceprep backend has besides its synthesis: a name and an identity."""

    name = "test"

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity(self.name, None, voice)

    def unavailable_reason(self) -> str | None:
        return None


class StreamingBackend(NamedBackend):
    """A voiceprep backend with `stream`: a 440 Hz tone, 0.1 s a chunk, at `rate`.

    `hold` pauses the stream after `hold_after` chunks until set; `fail_after` raises a
    transient error after that many chunks (once, or always with `fail_always`).
    """

    name = "streaming-test"

    def __init__(self, *, rate: int = 24000, seconds: float = 1.0) -> None:
        self.rate, self.seconds = rate, seconds
        self.calls = 0
        self.hold: asyncio.Event | None = None
        self.hold_after = 1
        self.fail_after: int | None = None
        self.fail_always = False
        self.produced: list[bytes] = []  # chunks yielded, as the provider produced them

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        chunks = [c.data async for c in self.stream(text, voice=voice, rate=rate, channels=1)]
        return SynthesizedAudio(b"".join(chunks), rate=self.rate, channels=1)

    async def stream(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> AsyncIterator[SynthesizedAudio]:
        self.calls += 1
        pcm = sine_pcm(440.0, self.seconds, self.rate)
        step = int(self.rate * CHUNK_SECONDS) * 2
        for index, start in enumerate(range(0, len(pcm), step)):
            if self.hold is not None and index == self.hold_after:
                await self.hold.wait()
            failing = self.fail_always or self.calls == 1
            if index == self.fail_after and failing:
                raise TransientBackendError(f"{self.name}: connection reset mid-stream")
            chunk = pcm[start : start + step]
            self.produced.append(chunk)
            yield SynthesizedAudio(chunk, rate=self.rate, channels=1)
            await asyncio.sleep(0)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_a_miss_yields_the_first_chunk_before_the_synthesis_ends(tmp_path: Path) -> None:
    backend = StreamingBackend()
    backend.hold = asyncio.Event()
    cache = TTSAudioCache(backend, directory=tmp_path)
    stream = cache.stream("Please hold while I check.")
    first = await asyncio.wait_for(stream.__anext__(), 5)
    assert first == backend.produced[0]  # chunk 1 heard while the provider is still busy
    assert not cache.contains("Please hold while I check.")  # nothing stored mid-way
    backend.hold.set()
    rest = await collect(stream)
    whole = first + b"".join(rest)
    assert whole == b"".join(backend.produced)
    cache.close()
    reopened = TTSAudioCache(backend, directory=tmp_path)
    assert reopened.contains("Please hold while I check.")
    assert await collect(reopened.stream("Please hold while I check.")) == [whole]  # a hit
    assert backend.calls == 1


async def test_concurrent_streams_share_one_synthesis_and_a_late_joiner_hears_it_all(
    tmp_path: Path,
) -> None:
    backend = StreamingBackend()
    backend.hold = asyncio.Event()
    backend.hold_after = 3
    cache = TTSAudioCache(backend, directory=tmp_path)
    early = cache.stream("One new sentence.")
    heard = [await early.__anext__() for _ in range(3)]  # three chunks played already
    late = asyncio.ensure_future(collect(cache.stream("One new sentence.")))
    fetched = asyncio.ensure_future(cache.fetch("One new sentence."))
    await settle()
    backend.hold.set()
    heard += await collect(early)
    assert b"".join(heard) == b"".join(backend.produced)
    assert b"".join(await late) == b"".join(heard)  # from its first sample
    assert await fetched == b"".join(heard)
    assert backend.calls == 1 and cache.in_flight == 0


async def test_a_failure_mid_stream_raises_in_every_consumer_and_stores_nothing(
    tmp_path: Path,
) -> None:
    backend = StreamingBackend()
    backend.fail_after = 2
    backend.fail_always = True
    cache = TTSAudioCache(backend, directory=tmp_path)
    first, second = cache.stream("Doomed."), cache.stream("Doomed.")
    got = [await first.__anext__(), await second.__anext__()]
    assert all(got)
    results = await asyncio.gather(collect(first), collect(second), return_exceptions=True)
    assert all(isinstance(r, TransientBackendError) for r in results)
    assert "mid-stream" in str(results[0])
    assert not cache.contains("Doomed.") and cache.in_flight == 0
    assert backend.calls == 1  # audio was played: a retry would play the phrase twice
    backend.fail_after = None
    assert await collect(cache.stream("Doomed."))  # the next request synthesizes again
    assert backend.calls == 2 and cache.contains("Doomed.")


async def test_a_failure_before_any_audio_was_heard_is_retried_transparently(
    tmp_path: Path,
) -> None:
    backend = StreamingBackend()
    backend.fail_after = 0  # the first attempt fails before its first chunk
    cache = TTSAudioCache(backend, directory=tmp_path)
    whole = b"".join(await collect(cache.stream("Try again.")))
    assert backend.calls == 2
    assert whole == sine_pcm(440.0, 1.0, 24000) and cache.contains("Try again.")


async def test_audio_the_gate_refuses_after_streaming_raises_and_is_not_stored(
    tmp_path: Path,
) -> None:
    backend = StreamingBackend(seconds=0.2)  # far too short for this text
    cache = TTSAudioCache(backend, directory=tmp_path)
    text = "This sentence is much too long to be spoken in two tenths of a second."
    with pytest.raises(ImplausibleAudioError, match="too short"):
        await collect(cache.stream(text))
    assert not cache.contains(text) and backend.calls == 1


async def test_streamed_chunks_are_resampled_without_seams(tmp_path: Path) -> None:
    backend = StreamingBackend(rate=16000)
    cache = TTSAudioCache(backend, directory=tmp_path, rate=24000)
    chunks = await collect(cache.stream("Resampled as it streams."))
    assert len(chunks) > 5
    whole = SynthesizedAudio(sine_pcm(440.0, 1.0, 16000), rate=16000, channels=1)
    assert b"".join(chunks) == whole.to_pcm(rate=24000, channels=1)  # as if decoded at once
    assert abs(dominant_frequency(pcm_to_array(b"".join(chunks), 1)[0], 24000) - 440) < 3


async def test_a_processed_stream_hands_out_the_processed_audio(tmp_path: Path) -> None:
    backend = StreamingBackend()
    settings = ProcessSettings(loudness=-20.0)
    cache = TTSAudioCache(backend, directory=tmp_path, process=settings)
    streamed = b"".join(await collect(cache.stream("Level me.")))
    assert streamed == await cache.fetch("Level me.")
    assert streamed != b"".join(backend.produced)  # the chain ran: not the raw synthesis
    assert backend.calls == 1


async def test_a_stream_waits_for_another_writer_holding_the_lease(tmp_path: Path) -> None:
    backend = StreamingBackend()
    cache = TTSAudioCache(backend, directory=tmp_path)
    other = AudioCache(tmp_path)  # another writer (its own lease owner)
    key = cache.key("Shared.")
    lease = other.claim(key, ttl=30)
    assert lease is not None
    waiting = asyncio.ensure_future(collect(cache.stream("Shared.")))
    await asyncio.sleep(0.2)
    assert not waiting.done() and backend.calls == 0
    theirs = sine_pcm(330.0, 0.6, 24000)
    other.put(key, theirs, rate=24000, channels=1, text="Shared.", identity=backend.identity())
    lease.release()
    assert b"".join(await asyncio.wait_for(waiting, 5)) == theirs
    assert backend.calls == 0
    other.close()
    cache.close()


# --- the seed's drop-in (issue #22) ----------------------------------------------------


class SeedTTS:
    """The seed's interface: `stream_synthesize` yielding s16le chunks at 16 kHz."""

    sample_rate = 16000

    def __init__(self, pcm: bytes) -> None:
        self.pcm = pcm
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def stream_synthesize(
        self, text_iter: AsyncIterator[str], voice_id: str | None = None
    ) -> AsyncIterator[bytes]:
        _ = [t async for t in text_iter]
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("provider down")
        for start in range(0, len(self.pcm), 99):  # odd chunk sizes, as a provider sends
            yield self.pcm[start : start + 99]


async def test_the_drop_in_returns_and_caches_short_odd_audio_as_the_tts_made_it() -> None:
    blip = sine_pcm(500.0, 0.02, 16000)  # "One moment." → 0.02 s: the gate would refuse it
    tts = SeedTTS(blip)
    cache = TTSAudioCache(tts)
    assert await cache.fetch("One moment.") == blip
    assert await cache.fetch("One moment.") == blip
    assert "One moment." in cache and len(cache) == 1 and tts.calls == 1


async def test_the_drop_in_shares_one_flight_and_caches_no_failure() -> None:
    tts = SeedTTS(sine_pcm(500.0, 0.05, 16000))
    tts.gate = asyncio.Event()
    cache = TTSAudioCache(tts)
    waiting = [asyncio.ensure_future(cache.fetch("Hi.")) for _ in range(5)]
    await settle()
    tts.gate.set()
    assert len(set(await asyncio.gather(*waiting))) == 1 and tts.calls == 1
    tts.fail = True
    for _ in range(2):
        with pytest.raises(RuntimeError, match="provider down"):
            await cache.fetch("Bye.")
    assert tts.calls == 3 and "Bye." not in cache  # each failure asked again
    tts.fail = False
    assert await cache.fetch("Bye.") == tts.pcm


async def test_the_gate_stays_on_with_a_directory_or_when_asked(tmp_path: Path) -> None:
    blip = sine_pcm(500.0, 0.02, 16000)
    with pytest.raises(ImplausibleAudioError):
        await TTSAudioCache(SeedTTS(blip), directory=tmp_path, retries=0).fetch("One moment.")
    with pytest.raises(ImplausibleAudioError):
        await TTSAudioCache(SeedTTS(blip), gate="strict", retries=0).fetch("One moment.")
    assert await TTSAudioCache(SeedTTS(blip), directory=tmp_path, gate="off").fetch("Hm.")


class WholeBackend(NamedBackend):
    """A backend without `stream`: a blip first (the gate refuses it), then real audio."""

    name = "whole-test"

    def __init__(self) -> None:
        self.calls = 0

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        self.calls += 1
        seconds = 0.02 if self.calls == 1 else 1.0
        return SynthesizedAudio(sine_pcm(440.0, seconds, 24000), rate=24000, channels=1)


async def test_a_backend_without_stream_is_one_chunk_judged_before_anyone_hears_it(
    tmp_path: Path,
) -> None:
    backend = WholeBackend()
    cache = TTSAudioCache(backend, directory=tmp_path)
    chunks = await collect(cache.stream("Thanks for waiting."))
    assert chunks == [sine_pcm(440.0, 1.0, 24000)]  # the refused blip was never played
    assert backend.calls == 2 and cache.contains("Thanks for waiting.")


async def test_real_piper_streams_a_miss_sentence_by_sentence(tmp_path: Path) -> None:
    """Piper's `stream` through the cache: the first sentence is handed out while the
    others are synthesized, resampled seamlessly to 24 kHz; the entry is the whole."""
    from voiceprep.backends import get_backend

    text = "Thank you for calling. Your order has shipped. It arrives on Friday."
    cache = TTSAudioCache(get_backend("piper"), directory=tmp_path)
    stream = cache.stream(text)
    first = await stream.__anext__()
    assert not cache.contains(text)  # the rest is still being synthesized
    rest = await collect(stream)
    assert len(rest) >= 2  # one chunk a sentence (at least)
    await cache.drain()
    cache.close()
    again = TTSAudioCache(get_backend("piper"), directory=tmp_path)
    assert await again.fetch(text) == first + b"".join(rest)
    again.close()
