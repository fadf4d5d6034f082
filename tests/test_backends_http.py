"""The openai and elevenlabs backends against local servers speaking each provider's shapes
(tests/fakeproviders.py), and the retry policy they share, over real HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import (
    ELEVENLABS_KEY,
    OPENAI_KEY,
    FakeProvider,
    Fault,
    fake_elevenlabs,
    fake_openai,
    seconds_for,
    voice_frequency,
)

from voiceprep.backends import get_backend
from voiceprep.backends._http import parse_retry_after
from voiceprep.backends.elevenlabs import ElevenLabsBackend, output_format_for
from voiceprep.backends.openai import OpenAIBackend
from voiceprep.backends.retry import (
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    backoff_delay,
    synthesize_with_retries,
)
from voiceprep.errors import (
    AuthenticationError,
    BackendUnavailableError,
    EmptyAudioError,
    PermanentBackendError,
    TransientBackendError,
    UsageError,
)


class Sleeps:
    """An injected sleep: records the delays asked for instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _openai(fake: FakeProvider, **options: str) -> OpenAIBackend:
    return OpenAIBackend(options={"base_url": fake.base_url, **options})


def _eleven(fake: FakeProvider, **options: str) -> ElevenLabsBackend:
    return ElevenLabsBackend(options={"base_url": fake.base_url, **options})


def _check_tone(pcm: bytes, rate: int, *, voice: str, text: str, speed: float = 1.0) -> None:
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) / rate == pytest.approx(seconds_for(text) / speed, abs=0.03)
    assert dominant_frequency(samples, rate) == pytest.approx(voice_frequency(voice), abs=4)


# --- openai: request shapes and audio ---------------------------------------------------


async def test_openai_request_shape_and_wav_audio(openai_server: FakeProvider) -> None:
    backend = _openai(openai_server, speed="1.25", instructions="Warm and calm.")
    audio = await backend.synthesize("One moment, please.", voice="nova", rate=24000, channels=1)
    request = openai_server.requests[-1]
    assert request.path == "/v1/audio/speech"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "model": "gpt-4o-mini-tts",
        "input": "One moment, please.",
        "voice": "nova",
        "response_format": "wav",
        "speed": 1.25,
        "instructions": "Warm and calm.",
    }
    _check_tone(
        audio.to_pcm(rate=24000, channels=1),
        24000,
        voice="nova",
        text="One moment, please.",
        speed=1.25,
    )


async def test_openai_pcm_format_is_raw_24k(openai_server: FakeProvider) -> None:
    backend = _openai(openai_server, response_format="pcm", model="tts-1")
    audio = await backend.synthesize("Hello there", rate=16000, channels=1)
    assert (audio.rate, audio.channels) == (24000, 1)
    assert openai_server.requests[-1].json["model"] == "tts-1"
    _check_tone(audio.to_pcm(rate=16000, channels=1), 16000, voice="alloy", text="Hello there")


async def test_openai_mp3_format_decodes(openai_server: FakeProvider) -> None:
    backend = _openai(openai_server, response_format="mp3")
    audio = await backend.synthesize("A longer phrase in mp3.", rate=24000, channels=1)
    assert audio.rate is None
    samples = pcm_to_array(audio.to_pcm(rate=24000, channels=1), 1)[0]
    assert dominant_frequency(samples, 24000) == pytest.approx(voice_frequency("alloy"), abs=4)


async def test_openai_base_url_from_environment(
    openai_server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url + "/")
    backend = get_backend("openai")
    await backend.synthesize("Hi", rate=24000, channels=1)
    assert openai_server.request_count == 1


async def test_openai_self_hosted_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with fake_openai(require_key=False) as fake:
        backend = _openai(fake)
        assert backend.unavailable_reason() is None
        await backend.synthesize("Local server.", rate=24000, channels=1)
        assert "authorization" not in fake.requests[-1].headers


async def test_openai_official_api_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    backend = OpenAIBackend()
    assert backend.unavailable_reason() == "OPENAI_API_KEY is not set"
    with pytest.raises(BackendUnavailableError, match="OPENAI_API_KEY"):
        await backend.synthesize("Hi", rate=24000, channels=1)


async def test_openai_refuses_long_input_before_sending(openai_server: FakeProvider) -> None:
    with pytest.raises(PermanentBackendError, match="4097 characters"):
        await synthesize_with_retries(_openai(openai_server), "a" * 4097, rate=24000, channels=1)
    assert openai_server.request_count == 0


def test_openai_identity_has_sound_options_not_key_or_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    local = OpenAIBackend(options={"base_url": "http://127.0.0.1:9/v1", "speed": "1.5"})
    official = OpenAIBackend(options={"speed": "1.5"})
    assert local.identity("echo") == official.identity("echo")
    identity = official.identity("echo")
    assert (identity.model, identity.voice) == ("gpt-4o-mini-tts", "echo")
    assert dict(identity.options) == {"response_format": "wav", "speed": 1.5}
    assert OpenAIBackend(options={"instructions": "whisper"}).identity() != official.identity()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": "9"}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"base_url": "ftp://example.com"}, "base URL"),
        ({"voice_id": "x"}, "unknown option"),
    ],
)
def test_openai_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        OpenAIBackend(options=options)


# --- elevenlabs: request shapes and audio -----------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (16000, "pcm_16000"),
        (22050, "pcm_22050"),
        (24000, "pcm_24000"),
        (44100, "pcm_44100"),
        (8000, "pcm_16000"),
        (32000, "pcm_44100"),
        (48000, "pcm_44100"),
    ],
)
def test_elevenlabs_output_format_for_rate(rate: int, expected: str) -> None:
    assert output_format_for(rate) == expected


async def test_elevenlabs_request_shape_and_pcm_at_target_rate(
    eleven_server: FakeProvider,
) -> None:
    backend = _eleven(
        eleven_server, stability="0.4", similarity_boost="0.8", use_speaker_boost="yes", speed="1.1"
    )
    text = "Your appointment is confirmed."
    audio = await backend.synthesize(text, voice="voice123", rate=22050, channels=1)
    request = eleven_server.requests[-1]
    # The endpoint that also says when each character is spoken (word timings).
    assert request.path == "/v1/text-to-speech/voice123/with-timestamps"
    assert request.query == {"output_format": "pcm_22050"}
    assert request.headers["xi-api-key"] == ELEVENLABS_KEY
    assert request.json == {
        "text": text,
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {
            "stability": 0.4,
            "similarity_boost": 0.8,
            "use_speaker_boost": True,
            "speed": 1.1,
        },
    }
    assert (audio.rate, audio.channels) == (22050, 1)
    _check_tone(audio.data, 22050, voice="voice123", text=text, speed=1.1)
    assert audio.words is not None
    assert [w.text for w in audio.words] == text.split()
    duration = len(audio.data) / 2 / 22050
    assert 0 == audio.words[0].start < audio.words[-1].end <= duration + 0.01


async def test_elevenlabs_unoffered_rate_is_resampled(eleven_server: FakeProvider) -> None:
    audio = await _eleven(eleven_server).synthesize("Eight kilohertz.", rate=8000, channels=1)
    assert eleven_server.requests[-1].query["output_format"] == "pcm_16000"
    voice = "JBFqnCBsd6RMkjVDRZzb"
    _check_tone(audio.to_pcm(rate=8000, channels=1), 8000, voice=voice, text="Eight kilohertz.")


async def test_elevenlabs_mp3_output_format_option(eleven_server: FakeProvider) -> None:
    backend = _eleven(eleven_server, output_format="mp3_44100_128")
    audio = await backend.synthesize("Compressed.", rate=24000, channels=1)
    assert eleven_server.requests[-1].query["output_format"] == "mp3_44100_128"
    assert audio.rate is None
    samples = pcm_to_array(audio.to_pcm(rate=24000, channels=1), 1)[0]
    assert dominant_frequency(samples, 24000) == pytest.approx(
        voice_frequency("JBFqnCBsd6RMkjVDRZzb"), abs=4
    )
    assert dict(backend.identity().options) == {"output_format": "mp3_44100_128"}


async def test_elevenlabs_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    backend = ElevenLabsBackend()
    assert backend.unavailable_reason() == "ELEVENLABS_API_KEY is not set"
    with pytest.raises(BackendUnavailableError):
        await backend.synthesize("Hi", rate=24000, channels=1)


def test_elevenlabs_refuses_a_voice_id_that_changes_the_path() -> None:
    with pytest.raises(UsageError, match="voice id"):
        ElevenLabsBackend().request("Hi", voice="../../v1/user", rate=24000)


# --- retry policy, over HTTP ------------------------------------------------------------


async def test_5xx_then_success_is_retried(openai_server: FakeProvider) -> None:
    openai_server.push(500, 502, 503)
    sleeps = Sleeps()
    audio = await synthesize_with_retries(
        _openai(openai_server), "Retry me.", rate=24000, channels=1, retries=3, sleep=sleeps
    )
    assert openai_server.request_count == 4
    assert len(sleeps.delays) == 3
    _check_tone(audio.to_pcm(rate=24000, channels=1), 24000, voice="alloy", text="Retry me.")


async def test_backoff_is_exponential_with_full_jitter(openai_server: FakeProvider) -> None:
    openai_server.push(500, 500, 500, 500)
    sleeps = Sleeps()
    await synthesize_with_retries(
        _openai(openai_server),
        "Backoff.",
        rate=24000,
        channels=1,
        retries=4,
        sleep=sleeps,
        rng=random.Random(7),
    )
    rng = random.Random(7)
    expected = [backoff_delay(i, rng=rng) for i in range(4)]
    assert sleeps.delays == expected
    for attempt, delay in enumerate(sleeps.delays):
        assert 0 <= delay <= min(MAX_BACKOFF, 0.5 * 2**attempt)


async def test_429_retry_after_seconds_is_honoured(eleven_server: FakeProvider) -> None:
    eleven_server.push(Fault(429, retry_after="7"), Fault(429, retry_after="2"))
    sleeps = Sleeps()
    events: list[tuple[int, float, str]] = []
    await synthesize_with_retries(
        _eleven(eleven_server),
        "Busy.",
        rate=24000,
        channels=1,
        sleep=sleeps,
        on_retry=lambda attempt, delay, exc: events.append((attempt, delay, str(exc))),
    )
    assert sleeps.delays == [7.0, 2.0]
    assert eleven_server.request_count == 3
    assert [(a, d) for a, d, _ in events] == [(1, 7.0), (2, 2.0)]
    assert all("HTTP 429" in message for _, _, message in events)


async def test_retry_after_http_date_and_cap(openai_server: FakeProvider) -> None:
    in_20s = email.utils.formatdate(time.time() + 20, usegmt=True)
    openai_server.push(Fault(503, retry_after=in_20s), Fault(429, retry_after="86400"))
    sleeps = Sleeps()
    await synthesize_with_retries(
        _openai(openai_server), "Later.", rate=24000, channels=1, sleep=sleeps
    )
    assert 15 <= sleeps.delays[0] <= 20
    # capped, and never longer than one attempt's --timeout (60 s by default)
    assert sleeps.delays[1] == min(MAX_RETRY_AFTER, 60.0)


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


async def test_transient_failures_give_up_after_retries(openai_server: FakeProvider) -> None:
    openai_server.push(*[503] * 10)
    sleeps = Sleeps()
    with pytest.raises(TransientBackendError, match=r"HTTP 503.*gave up after 3 attempts"):
        await synthesize_with_retries(
            _openai(openai_server), "Down.", rate=24000, channels=1, retries=2, sleep=sleeps
        )
    assert openai_server.request_count == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_is_not_retried(openai_server: FakeProvider, status: int) -> None:
    openai_server.push(status)
    sleeps = Sleeps()
    with pytest.raises(AuthenticationError, match=f"HTTP {status}"):
        await synthesize_with_retries(
            _openai(openai_server), "No.", rate=24000, channels=1, sleep=sleeps
        )
    assert openai_server.request_count == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_permanent_failures_are_not_retried(eleven_server: FakeProvider, status: int) -> None:
    eleven_server.push(status)
    sleeps = Sleeps()
    with pytest.raises(PermanentBackendError, match=f"HTTP {status}") as info:
        await synthesize_with_retries(
            _eleven(eleven_server), "Bad.", rate=24000, channels=1, sleep=sleeps
        )
    assert not isinstance(info.value, AuthenticationError)
    assert eleven_server.request_count == 1 and sleeps.delays == []


async def test_timeouts_are_retried(openai_server: FakeProvider) -> None:
    # Two answers that would take 60 s; each attempt gives up after 2 s and is retried.
    openai_server.push(Fault(200, delay=60), Fault(200, delay=60))
    sleeps = Sleeps()
    audio = await synthesize_with_retries(
        _openai(openai_server), "Slow.", rate=24000, channels=1, timeout=2.0, sleep=sleeps
    )
    assert len(sleeps.delays) == 2
    assert openai_server.request_count == 3
    _check_tone(audio.to_pcm(rate=24000, channels=1), 24000, voice="alloy", text="Slow.")


async def test_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with fake_openai() as fake:
        base_url = fake.base_url  # the port is closed once the server stops
    sleeps = Sleeps()
    backend = OpenAIBackend(options={"base_url": base_url})
    with pytest.raises(TransientBackendError, match="connection failed.*gave up after 2"):
        await synthesize_with_retries(
            backend, "Anyone?", rate=24000, channels=1, retries=1, sleep=sleeps
        )
    assert len(sleeps.delays) == 1


async def test_empty_audio_is_an_error_not_retried(eleven_server: FakeProvider) -> None:
    eleven_server.push(Fault(200, empty=True))
    sleeps = Sleeps()
    with pytest.raises(EmptyAudioError):
        await synthesize_with_retries(
            _eleven(eleven_server), "Nothing.", rate=24000, channels=1, sleep=sleeps
        )
    assert eleven_server.request_count == 1


async def test_concurrent_requests_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server answers only once eight requests are in flight together: the backend does
    # not serialize them (what `warm -j 8` relies on).
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with fake_openai(latency=0.05) as fake:
        fake.hold_until_in_flight = 8
        backend = OpenAIBackend(options={"base_url": fake.base_url})
        texts = [f"Phrase number {i}." for i in range(8)]
        results = await asyncio.gather(
            *(backend.synthesize(t, rate=24000, channels=1) for t in texts)
        )
        await backend.aclose()
    assert fake.peak_in_flight == 8
    assert fake.chars_received == sum(len(t) for t in texts)
    assert all(r.data[:4] == b"RIFF" for r in results)


# --- secrets -----------------------------------------------------------------------------


async def test_openai_key_never_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-proj-SECRET0123456789abcdefXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with fake_openai(api_key="sk-the-right-one-0000000000") as fake:
        backend = OpenAIBackend(options={"base_url": fake.base_url})
        with pytest.raises(AuthenticationError) as info:
            await synthesize_with_retries(backend, "Hi", rate=24000, channels=1)
    assert secret in fake.requests[-1].headers["authorization"]  # the server did get it…
    for text in (str(info.value), repr(info.value), repr(backend), str(backend.identity())):
        assert secret not in text  # …and it appears nowhere else
        assert "SECRET0123" not in text
    assert "HTTP 401" in str(info.value)


async def test_elevenlabs_key_never_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk_0123456789abcdefSECRETelevenlabs"
    monkeypatch.setenv("ELEVENLABS_API_KEY", secret)
    with fake_elevenlabs() as fake:
        backend = ElevenLabsBackend(options={"base_url": fake.base_url})
        with pytest.raises(AuthenticationError) as info:
            await synthesize_with_retries(backend, "Hi", rate=24000, channels=1)
    for text in (str(info.value), repr(info.value), repr(backend), str(backend.identity())):
        assert secret not in text
    assert "Invalid API key" in str(info.value)


async def test_key_not_in_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-conn-SECRET-abcdef0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    backend = OpenAIBackend(options={"base_url": "http://user:pa55word@127.0.0.1:9/v1"})
    with pytest.raises(TransientBackendError) as info:
        await synthesize_with_retries(backend, "Hi", rate=24000, channels=1, retries=0)
    assert secret not in str(info.value)
    assert "pa55word" not in str(info.value)


def test_cli_auth_failure_is_one_line_without_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voiceprep.cli import main

    secret = "sk-cli-SECRET-9876543210fedcba"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with fake_openai() as fake:
        argv = ["say", "Hello", "--backend", "openai", "-O", f"base_url={fake.base_url}"]
        argv += ["-o", str(tmp_path / "out.wav"), "--cache-dir", str(tmp_path / "cache")]
        with pytest.raises(SystemExit) as info:
            main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 1
    assert captured.err.startswith("voiceprep: error: ")
    assert "HTTP 401" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert secret not in captured.out + captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out.wav").exists()
    assert fake.request_count == 1  # not retried
