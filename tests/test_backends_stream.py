"""`Backend.stream()`: audio passed on as the provider produces it — the hosted backends
against the streaming fakes (tests/fakeproviders.py), Piper, espeak-ng and the command
backend for real. What a voice agent relies on: the first chunk comes before the synthesis
ends, the chunks add up to what `synthesize` returns, a failure mid-stream raises a typed
error from the iterator, and no key ever shows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import (
    CartesiaEvents,
    FakeProvider,
    Fault,
    fake_provider,
    seconds_for,
    voice_frequency,
)

from voiceprep.backends._stream import ServerEvent, server_events
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.backends.cartesia import CartesiaBackend
from voiceprep.backends.command import CommandBackend
from voiceprep.backends.deepgram import DeepgramBackend
from voiceprep.backends.elevenlabs import ElevenLabsBackend
from voiceprep.backends.espeak import EspeakBackend
from voiceprep.backends.openai import OpenAIBackend
from voiceprep.backends.piper import PiperBackend, iterate_in_thread
from voiceprep.errors import (
    AuthenticationError,
    EmptyAudioError,
    PermanentBackendError,
    TransientBackendError,
)

TEXT = "Thank you for calling. Your call is important to us; please stay on the line."

# fake kind, backend class, options, voice, key variable
PCM = {"response_format": "pcm"}
HOSTED = {
    "openai-wav": ("openai", OpenAIBackend, {}, "alloy", "OPENAI_API_KEY"),
    "openai-pcm": ("openai", OpenAIBackend, PCM, "alloy", "OPENAI_API_KEY"),
    "elevenlabs": (
        "elevenlabs",
        ElevenLabsBackend,
        {},
        "JBFqnCBsd6RMkjVDRZzb",
        "ELEVENLABS_API_KEY",
    ),
    "cartesia": ("cartesia", CartesiaBackend, {}, "694f9389-aac1-45b6", "CARTESIA_API_KEY"),
    "deepgram": ("deepgram", DeepgramBackend, {}, "aura-2-thalia-en", "DEEPGRAM_API_KEY"),
}
RATE = 24000  # each of them streams at 24 kHz when asked for it


@pytest.fixture(params=sorted(HOSTED))
def hosted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeProvider, Any, str, int]]:
    kind, cls, options, voice, key_env = HOSTED[request.param]
    with fake_provider(kind, chunk_seconds=0.1) as fake:
        monkeypatch.setenv(key_env, fake.api_key)
        yield fake, cls(options={"base_url": fake.base_url, **options}), voice, RATE


async def _collect(chunks: AsyncIterator[SynthesizedAudio]) -> list[SynthesizedAudio]:
    return [chunk async for chunk in chunks]


def _check_shape(chunks: list[SynthesizedAudio], rate: int, channels: int = 1) -> bytes:
    """Every chunk raw s16le at one rate and channel count, frame-aligned, with audio (or,
    without, the words a provider timed after their audio: Cartesia); their PCM."""
    assert chunks
    for chunk in chunks:
        assert (chunk.rate, chunk.channels) == (rate, channels)
        assert chunk.data or chunk.words
        assert len(chunk.data) % (2 * channels) == 0
    return b"".join(chunk.data for chunk in chunks)


# --- hosted providers against the streaming fakes ---------------------------------------


async def test_first_chunk_arrives_while_the_provider_is_still_sending(
    hosted: tuple[FakeProvider, Any, str, int],
) -> None:
    fake, backend, voice, rate = hosted
    fake.after_first_chunk = threading.Event()  # the fake sends the rest only when told
    chunks = backend.stream(TEXT, voice=voice, rate=24000, channels=1)
    async with asyncio.timeout(5):  # a backend that buffers the answer never gets here
        first = await anext(chunks)
    assert fake.in_flight == 1  # the answer has not ended
    fake.after_first_chunk.set()
    rest = await _collect(chunks)
    pcm = _check_shape([first, *rest], rate)
    assert len(rest) >= 5  # 4 s of audio in 100 ms chunks: passed on piece by piece
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) / rate == pytest.approx(seconds_for(TEXT), abs=0.01)
    assert dominant_frequency(samples, rate) == pytest.approx(voice_frequency(voice), abs=4)


async def test_chunks_add_up_to_what_synthesize_returns(
    hosted: tuple[FakeProvider, Any, str, int],
) -> None:
    fake, backend, voice, rate = hosted
    streamed = _check_shape(
        await _collect(backend.stream(TEXT, voice=voice, rate=24000, channels=1)), rate
    )
    whole = await backend.synthesize(TEXT, voice=voice, rate=24000, channels=1)
    assert streamed == whole.to_pcm(rate=rate, channels=1)


async def test_a_provider_dying_mid_stream_raises_after_the_audio_that_came(
    hosted: tuple[FakeProvider, Any, str, int],
) -> None:
    fake, backend, voice, rate = hosted
    fake.push(Fault(200, cut_after=0.5))
    received: list[SynthesizedAudio] = []
    with pytest.raises(TransientBackendError, match="broke off") as caught:
        async for chunk in backend.stream(TEXT, voice=voice, rate=24000, channels=1):
            received.append(chunk)
    assert received  # the audio before the cut was passed on...
    assert len(_check_shape(received, rate)) < 2 * rate * seconds_for(TEXT)  # ...not more
    assert fake.api_key not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (503, TransientBackendError), (400, PermanentBackendError)],
)
async def test_an_error_answer_raises_its_typed_error_without_the_key(
    hosted: tuple[FakeProvider, Any, str, int], status: int, error: type[Exception]
) -> None:
    fake, backend, voice, _ = hosted
    fake.push(Fault(status, body=f'{{"error": "bad key {fake.api_key}"}}'.encode()))
    with pytest.raises(error) as caught:
        await _collect(backend.stream(TEXT, voice=voice, rate=24000, channels=1))
    assert f"HTTP {status}" in str(caught.value)
    assert fake.api_key not in str(caught.value)
    assert fake.api_key not in repr(caught.value)


async def test_a_200_error_page_and_an_empty_answer_are_not_audio(
    hosted: tuple[FakeProvider, Any, str, int],
) -> None:
    fake, backend, voice, _ = hosted
    fake.push(Fault(200, body=b'{"error": "quota"}', content_type="application/json"))
    with pytest.raises(PermanentBackendError, match="not audio"):
        await _collect(backend.stream(TEXT, voice=voice, rate=24000, channels=1))
    fake.push(Fault(200, empty=True))
    with pytest.raises(EmptyAudioError):
        await _collect(backend.stream(TEXT, voice=voice, rate=24000, channels=1))


async def test_elevenlabs_streams_from_its_stream_endpoint_at_the_target_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_provider("elevenlabs") as fake:
        monkeypatch.setenv("ELEVENLABS_API_KEY", fake.api_key)
        backend = ElevenLabsBackend(options={"base_url": fake.base_url})
        chunks = await _collect(backend.stream("Hello there.", rate=16000, channels=1))
    assert fake.requests[-1].path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"
    assert fake.requests[-1].query["output_format"] == "pcm_16000"
    _check_shape(chunks, 16000)


@pytest.fixture
def cartesia(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeProvider, CartesiaBackend]]:
    with fake_provider("cartesia") as fake:
        monkeypatch.setenv("CARTESIA_API_KEY", fake.api_key)
        yield fake, CartesiaBackend(options={"base_url": fake.base_url})


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TransientBackendError), (400, PermanentBackendError), (401, AuthenticationError)],
)
async def test_cartesia_error_event_mid_stream_raises_its_typed_error(
    cartesia: tuple[FakeProvider, CartesiaBackend], status: int, error: type[Exception]
) -> None:
    # Once its events have begun (HTTP 200), Cartesia reports a failure as an error event.
    fake, backend = cartesia
    fake.push(Fault(200, error_event_after=0.3, status_in_event=status))
    received: list[SynthesizedAudio] = []
    with pytest.raises(error, match=f"error {status} mid-stream: Generation failed"):
        async for chunk in backend.stream(TEXT, rate=16000, channels=1):
            received.append(chunk)
    assert len(_check_shape(received, 16000)) == 2 * int(0.3 * 16000)  # what came first
    assert all(chunk.words is None for chunk in received)


async def test_cartesias_newer_error_events_are_read_too(
    cartesia: tuple[FakeProvider, CartesiaBackend],
) -> None:
    # From API version 2026-03-01 an error event has a title and a message.
    fake, backend = cartesia
    events = CartesiaEvents.of(b"\0\1" * 3200, 16000, "hello", timestamps=True)
    events.version = "2026-03-01"
    fault = Fault(200, error_event_after=0.1, status_in_event=429)
    fake.push(
        Fault(200, body=b"".join(events.pieces(0.1, fault)), content_type="text/event-stream")
    )
    with pytest.raises(TransientBackendError, match="429 mid-stream: Generation failed: fake"):
        await backend.synthesize("hello", rate=16000, channels=1)


async def test_a_cartesia_answer_cut_before_its_done_event_is_transient(
    cartesia: tuple[FakeProvider, CartesiaBackend],
) -> None:
    fake, backend = cartesia
    events = CartesiaEvents.of(b"\0\1" * 1600, 16000, "hello", timestamps=True)
    whole = b"".join(events.pieces(0.05, None))
    cut = whole[: whole.index(b"event: done")]  # a proxy ended the body early
    fake.push(Fault(200, body=cut, content_type="text/event-stream"))
    with pytest.raises(TransientBackendError, match="ended before its done event"):
        await backend.synthesize("hello", rate=16000, channels=1)


async def test_openai_formats_that_cannot_stream_come_as_one_decoded_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_provider("openai") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
        backend = OpenAIBackend(options={"base_url": fake.base_url, "response_format": "flac"})
        chunks = await _collect(backend.stream(TEXT, rate=16000, channels=1))
        whole = await backend.synthesize(TEXT, rate=16000, channels=1)
    assert len(chunks) == 1
    assert _check_shape(chunks, 16000) == whole.to_pcm(rate=16000, channels=1)


async def test_deepgram_streams_raw_linear16_without_a_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_provider("deepgram") as fake:
        monkeypatch.setenv("DEEPGRAM_API_KEY", fake.api_key)
        backend = DeepgramBackend(options={"base_url": fake.base_url})
        chunks = await _collect(backend.stream("Hello there.", rate=16000, channels=1))
    assert fake.requests[-1].query["container"] == "none"
    assert not _check_shape(chunks, 16000).startswith(b"RIFF")


# --- piper ------------------------------------------------------------------------------

THREE_SENTENCES = (
    "Thank you for calling the city library. "
    "Our opening hours have changed this week. "
    "Please stay on the line for the next librarian."
)


async def test_piper_streams_sentence_by_sentence() -> None:
    # Without noise the synthesis is deterministic, so the streams can be compared exactly.
    piper = PiperBackend(options={"noise_scale": "0", "noise_w_scale": "0"})
    chunks = await _collect(piper.stream(THREE_SENTENCES, rate=22050, channels=1))
    assert len(chunks) == 3
    pcm = _check_shape(chunks, 22050)
    whole = await piper.synthesize(THREE_SENTENCES, rate=22050, channels=1)
    assert pcm == whole.data
    first = await piper.synthesize(
        "Thank you for calling the city library.", rate=22050, channels=1
    )
    assert chunks[0].data == first.data  # the first chunk is the first sentence alone


async def test_iterate_in_thread_yields_each_item_as_it_is_made() -> None:
    release = threading.Event()

    def items() -> Iterator[int]:
        yield 1
        release.wait(10)  # the second item is not made until the first has been received
        yield 2

    stream = iterate_in_thread(items)
    async with asyncio.timeout(5):
        assert await anext(stream) == 1
    release.set()
    assert [item async for item in stream] == [2]


async def test_iterate_in_thread_stops_the_worker_when_the_consumer_stops() -> None:
    made: list[int] = []
    step = threading.Event()

    def items() -> Iterator[int]:
        for number in range(100):
            made.append(number)
            yield number
            step.wait(10)

    stream = iterate_in_thread(items)
    assert await anext(stream) == 0
    await stream.aclose()
    step.set()
    await asyncio.sleep(0.2)
    assert len(made) <= 2  # it stopped after the item it was making


async def test_iterate_in_thread_raises_the_worker_error_in_the_consumer() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise EmptyAudioError("nothing more")

    received: list[int] = []
    with pytest.raises(EmptyAudioError, match="nothing more"):
        async for item in iterate_in_thread(items):
            received.append(item)
    assert received == [1]


# --- espeak-ng and the command backend --------------------------------------------------


async def test_espeak_streams_its_wav_as_pcm() -> None:
    espeak = EspeakBackend()
    text = " ".join([TEXT] * 4)
    chunks = await _collect(espeak.stream(text, rate=22050, channels=1))
    assert len(chunks) > 1
    pcm = _check_shape(chunks, 22050)
    whole = await espeak.synthesize(text, rate=22050, channels=1)
    assert pcm == whole.to_pcm(rate=22050, channels=1)


async def test_espeak_unknown_voice_raises_its_error() -> None:
    with pytest.raises(PermanentBackendError, match="espeak-ng"):
        await _collect(EspeakBackend(voice="xx-no-such").stream(TEXT, rate=22050, channels=1))


def _writer_program(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, str(script)]


async def test_command_raw_pcm_is_passed_on_as_the_program_writes_it(tmp_path: Path) -> None:
    go = tmp_path / "go"
    argv = _writer_program(
        tmp_path,
        f"""
        import os, sys, time
        sys.stdin.read()
        out = sys.stdout.buffer
        out.write(b"\\x01\\x00" * 1600 + b"\\x02")  # 0.1 s at 16 kHz, and half a sample
        out.flush()
        deadline = time.monotonic() + 10
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        out.write(b"\\x00" + b"\\x03\\x00" * 1599)
        """,
    )
    backend = CommandBackend(options={"cmd": json.dumps(argv), "rate": "16000"})
    chunks = backend.stream("hello", rate=16000, channels=1)
    async with asyncio.timeout(5):
        first = await anext(chunks)
    assert first.data == b"\x01\x00" * 1600  # whole samples only; the odd byte waits
    go.touch()
    rest = await _collect(chunks)
    assert (
        _check_shape([first, *rest], 16000) == b"\x01\x00" * 1600 + b"\x02\x00" + b"\x03\x00" * 1599
    )


async def test_command_failing_mid_stream_raises_after_its_audio(tmp_path: Path) -> None:
    argv = _writer_program(
        tmp_path,
        """
        import sys
        sys.stdin.read()
        sys.stdout.buffer.write(b"\\x01\\x00" * 800)
        sys.stdout.flush()
        sys.exit("model crashed")
        """,
    )
    backend = CommandBackend(options={"cmd": json.dumps(argv), "rate": "16000"})
    received: list[SynthesizedAudio] = []
    with pytest.raises(PermanentBackendError, match="exit status 1: model crashed"):
        async for chunk in backend.stream("hello", rate=16000, channels=1):
            received.append(chunk)
    assert b"".join(chunk.data for chunk in received) == b"\x01\x00" * 800


async def test_command_stopped_consumer_kills_the_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    argv = _writer_program(
        tmp_path,
        f"""
        import os, sys, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        sys.stdin.read()
        while True:
            sys.stdout.buffer.write(b"\\x01\\x00" * 1600)
            sys.stdout.flush()
            time.sleep(0.05)
        """,
    )
    backend = CommandBackend(options={"cmd": json.dumps(argv), "rate": "16000"})
    stream = backend.stream("hello", rate=16000, channels=1)
    await anext(stream)
    await stream.aclose()
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the program kept running after the consumer stopped")


# --- the pooled HTTP client ---------------------------------------------------------------


async def test_a_plain_http_url_gets_a_client_without_tls_set_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    from voiceprep.backends._http import ClientPool

    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    pool = ClientPool()
    plain = pool.get("http://127.0.0.1:8000/v1")
    assert loads == []  # no CA bundle read for a URL that never uses TLS
    secure = pool.get("https://api.openai.com/v1")
    assert loads and secure is not plain  # an https URL verifies certificates
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    assert pool.get("http://127.0.0.1:8000/v1") is secure  # a proxy may need TLS
    await pool.aclose()


def test_httpx_is_imported_without_its_command_line_trio_or_http2() -> None:
    import subprocess

    code = textwrap.dedent(
        """
        import asyncio, importlib.util, sys
        from voiceprep.backends._http import ClientPool
        async def main():
            pool = ClientPool()
            pool.get("http://127.0.0.1:9/v1")
            await pool.aclose()
        asyncio.run(main())
        assert "httpx" in sys.modules
        assert "httpx._main" not in sys.modules, "httpx's CLI was imported"
        assert "trio" not in sys.modules, "trio was imported"
        assert "h2" not in sys.modules, "h2 (HTTP/2) was imported"
        if importlib.util.find_spec("trio") is not None:
            import trio  # still importable for whoever wants it
        if importlib.util.find_spec("h2") is not None:
            import h2.connection  # likewise
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- server-sent events (Cartesia's /tts/sse) ---------------------------------------------


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def test_server_events_are_read_as_the_format_defines_them() -> None:
    body = (
        b": a comment, then an event in CRLF lines cut mid-line\r\n"
        b'event: chunk\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"data: unnamed\n\n"
        b"event: done\ndata: {}\n"  # never ended by a blank line: dropped
    )
    expected = [ServerEvent("chunk", '{"a":\n1}'), ServerEvent("message", "unnamed")]
    for size in (1, 7, len(body)):  # byte by byte: CR and LF of one line apart too
        source = _pieces(*(body[i : i + size] for i in range(0, len(body), size)))
        assert [e async for e in server_events(source, backend="test")] == expected


async def test_an_endless_server_event_is_refused() -> None:
    endless = _pieces(b"data: ", *([b"A" * (1 << 20)] * 17))
    with pytest.raises(PermanentBackendError, match="over 16 MiB"):
        async for _ in server_events(endless, backend="test"):
            pass
