"""`voiceprep serve` streams a miss while the provider synthesizes it (issue 19 items 4, 7):
a real server process on 127.0.0.1 over the streaming fake OpenAI provider, read by the
openai SDK, plain httpx and LiveKit's OpenAI plugin. "As it streams" is proven without
timing anything: the fake holds its answer after the first chunk until the test lets it
go, so a client that has audio by then got it before the synthesis ended."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from fakeproviders import FakeProvider, Fault, seconds_for
from servehelpers import ServerProcess, stored_entry

from voiceprep.decoding import decode

SPEECH = "/v1/audio/speech"


def body(text: str, fmt: str = "pcm") -> dict[str, object]:
    return {"model": "gpt-4o-mini-tts", "input": text, "voice": "alloy", "response_format": fmt}


def stored(cache: Path, text: str, *, wait: float = 30) -> bool:
    return stored_entry(cache, text, wait=wait) is not None


def wait_for_misses(server: ServerProcess, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"^voiceprep_cache_misses_total (\S+)$", re.M)
    while True:
        match = pattern.search(httpx.get(server.url("/metrics")).text)
        if match and float(match.group(1)) >= count:
            return
        assert time.monotonic() < deadline, f"fewer than {count} misses counted"
        time.sleep(0.02)


@pytest.fixture
def held(openai_server: FakeProvider) -> Iterator[threading.Event]:
    """The fake sends a miss' first chunk, then waits for this event (at most 10 s)."""
    openai_server.chunk_interval = 0.005
    openai_server.after_first_chunk = threading.Event()
    yield openai_server.after_first_chunk
    openai_server.after_first_chunk.set()


@pytest.fixture
def server(tmp_path: Path, openai_server: FakeProvider) -> Iterator[ServerProcess]:
    args = ["-b", "openai", "-O", f"base_url={openai_server.base_url}"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    env = {"OPENAI_API_KEY": openai_server.api_key}
    with ServerProcess(args, env=env, cwd=tmp_path) as running:
        running.cache = tmp_path / "cache"  # type: ignore[attr-defined]
        # The first miss of a process imports the HTTP stack; not what these tests are about.
        warm = httpx.post(running.url(SPEECH), json=body("Warm up."), timeout=60)
        assert warm.status_code == 200
        openai_server.reset()
        yield running
        assert running.stop() == 0


# --- the openai SDK ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "opus", "aac", "flac"])
def test_the_sdk_reads_a_miss_as_it_streams_in_every_format(
    server: ServerProcess, openai_server: FakeProvider, held: threading.Event, fmt: str
) -> None:
    text = f"Streaming in {fmt} while it is synthesized."
    sdk = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    with sdk.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=text, response_format=fmt
    ) as response:
        chunks = response.iter_bytes()
        first = next(chunks)  # the fake is holding the rest of its answer
        assert first and openai_server.in_flight == 1
        held.set()
        audio = first + b"".join(chunks)
    if fmt == "wav":  # OpenAI's streamed header: sizes unknown
        assert audio[4:8] == audio[40:44] == b"\xff\xff\xff\xff"
    if fmt == "pcm":
        seconds = len(audio) / 48000
    else:
        seconds = len(b"".join(decode(audio, rate=24000, channels=1))) / 48000
    # mp3 and aac streamed carry their encoder's delay (no header rewritten at the end)
    assert seconds == pytest.approx(seconds_for(text), abs=0.01 if fmt in "pcm wav flac" else 0.12)
    assert stored(server.cache, text)  # type: ignore[attr-defined]
    assert openai_server.request_count == 1


def test_sse_events_are_openais_for_a_miss_and_for_a_hit(
    server: ServerProcess, openai_server: FakeProvider, held: threading.Event
) -> None:
    text = "Server-sent events, please."
    sdk = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    bodies = []
    for _ in ("miss", "hit"):
        with sdk.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts",
            voice="alloy",
            input=text,
            response_format="pcm",
            stream_format="sse",
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            lines = response.iter_lines()
            first = next(line for line in lines if line)
            held.set()
            bodies.append([first, *lines])
    for lines in bodies:
        events = [json.loads(line.removeprefix("data: ")) for line in lines if line]
        assert all(line.startswith("data: ") for line in lines if line)
        *deltas, done = events
        assert {e["type"] for e in deltas} == {"speech.audio.delta"}
        assert done["type"] == "speech.audio.done"
        assert set(done["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
        pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
        assert len(pcm) / 48000 == pytest.approx(seconds_for(text), abs=0.001)
    assert openai_server.request_count == 1


# --- faults --------------------------------------------------------------------------------


def test_a_client_hanging_up_mid_stream_does_not_cancel_the_synthesis(
    server: ServerProcess, openai_server: FakeProvider, held: threading.Event
) -> None:
    text = "The caller hung up, the prompt is kept."
    with httpx.stream("POST", server.url(SPEECH), json=body(text), timeout=60) as response:
        next(response.iter_bytes())
    # hung up with the synthesis held mid-answer
    held.set()
    assert stored(server.cache, text)  # type: ignore[attr-defined]
    again = httpx.post(server.url(SPEECH), json=body(text), timeout=60)
    assert again.status_code == 200
    assert len(again.content) / 48000 == pytest.approx(seconds_for(text), abs=0.001)
    assert openai_server.request_count == 1


def test_an_upstream_dying_mid_stream_cuts_the_body_stores_nothing_and_is_retried(
    server: ServerProcess, openai_server: FakeProvider
) -> None:
    text = "The provider dies half way through this sentence."
    openai_server.push(Fault(200, cut_after=0.3))
    got = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        httpx.stream("POST", server.url(SPEECH), json=body(text), timeout=60) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            got += chunk
    assert 0 < len(got) < seconds_for(text) * 48000
    server.wait_for_line("the stream was cut short")
    assert not stored(server.cache, text, wait=1)  # type: ignore[attr-defined]
    again = httpx.post(server.url(SPEECH), json=body(text), timeout=60)
    assert again.status_code == 200
    assert len(again.content) / 48000 == pytest.approx(seconds_for(text), abs=0.001)
    assert openai_server.request_count == 2
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_32_requests_for_one_new_phrase_half_of_them_mid_stream_share_one_synthesis(
    server: ServerProcess, openai_server: FakeProvider, held: threading.Event, fmt: str
) -> None:
    text = f"Thirty-two callers ask for this at once, in {fmt}."
    started = threading.Barrier(17)

    def early() -> bytes:
        with httpx.stream("POST", server.url(SPEECH), json=body(text, fmt), timeout=60) as r:
            chunks = r.iter_bytes()
            first = next(chunks)
            started.wait(timeout=30)  # all 16 have audio while the synthesis is held
            return first + b"".join(chunks)

    def late() -> bytes:
        return httpx.post(server.url(SPEECH), json=body(text, fmt), timeout=60).content

    with ThreadPoolExecutor(32) as pool:
        first_half = [pool.submit(early) for _ in range(16)]
        started.wait(timeout=30)
        second_half = [pool.submit(late) for _ in range(16)]
        # all 32 were counted as misses by the server while the synthesis is still held:
        # the late ones joined it mid-stream (a request after its end would be a hit)
        wait_for_misses(server, 1 + 32)  # the fixture's warm-up, then these
        assert openai_server.in_flight == 1
        held.set()
        bodies = [f.result() for f in first_half + second_half]
    assert len(set(bodies)) == 1
    assert openai_server.request_count == 1
    if fmt == "pcm":
        assert len(bodies[0]) / 48000 == pytest.approx(seconds_for(text), abs=0.001)


# --- LiveKit's OpenAI plugin ---------------------------------------------------------------


async def test_livekit_plays_a_miss_as_it_streams(
    server: ServerProcess, openai_server: FakeProvider, held: threading.Event
) -> None:
    from livekit.plugins import openai as lk_openai

    text = "LiveKit hears this before the provider is done."
    tts = lk_openai.TTS(
        base_url=server.base_url,
        api_key="unused",
        model="gpt-4o-mini-tts",  # LiveKit asks this model for stream_format "sse"
        voice="ash",
        response_format="pcm",
    )
    try:
        samples = 0
        async with tts.synthesize(text) as stream:
            async for event in stream:
                if samples == 0:
                    assert openai_server.in_flight == 1  # the provider is still held
                    held.set()
                assert (event.frame.sample_rate, event.frame.num_channels) == (24000, 1)
                samples += event.frame.samples_per_channel
    finally:
        await tts.aclose()
    assert samples / 24000 == pytest.approx(seconds_for(text), abs=0.011)
    assert openai_server.request_count == 1
