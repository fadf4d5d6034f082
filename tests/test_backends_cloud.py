"""The cartesia, deepgram, azure and google backends against local servers speaking each
provider's request and response shapes (tests/fakeproviders.py), over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import (
    MSTTS_NS,
    SSML_NS,
    FakeProvider,
    Fault,
    fake_provider,
    parse_ssml,
    seconds_for,
    voice_frequency,
    wav_file,
)
from helpers import CLI

from voiceprep.backends import describe_backends, get_backend
from voiceprep.backends.azure import AzureBackend, output_format_for
from voiceprep.backends.base import Backend
from voiceprep.backends.cartesia import CartesiaBackend
from voiceprep.backends.deepgram import DeepgramBackend
from voiceprep.backends.google import GoogleBackend, audio_content
from voiceprep.backends.retry import synthesize_with_retries
from voiceprep.errors import (
    AuthenticationError,
    BackendUnavailableError,
    DecodeError,
    EmptyAudioError,
    PermanentBackendError,
    TransientBackendError,
    UsageError,
)
from voiceprep.keys import cache_key

KINDS = ("cartesia", "deepgram", "azure", "google")
KEY_ENVS = {
    "cartesia": ("CARTESIA_API_KEY",),
    "deepgram": ("DEEPGRAM_API_KEY",),
    "azure": ("AZURE_SPEECH_KEY", "AZURE_SPEECH_REGION", "AZURE_SPEECH_ENDPOINT"),
    "google": ("GOOGLE_API_KEY", "GOOGLE_ACCESS_TOKEN", "GOOGLE_CLOUD_PROJECT"),
}
DEFAULT_VOICES = {
    "cartesia": "694f9389-aac1-45b6-b726-9d9369183238",
    "deepgram": "aura-2-thalia-en",
    "azure": "en-US-AvaMultilingualNeural",
    "google": "en-US-Chirp3-HD-Charon",
}


class Sleeps:
    """An injected sleep: records the delays asked for instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass
class Provider:
    kind: str
    fake: FakeProvider

    def backend(self, voice: str | None = None, **options: str) -> Backend:
        return get_backend(
            self.kind, voice=voice, options={"base_url": self.fake.base_url, **options}
        )


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's keys."""
    for names in KEY_ENVS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)


def _serve(kind: str, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> Iterator[Provider]:
    with fake_provider(kind, **kwargs) as fake:  # type: ignore[arg-type]
        monkeypatch.setenv(KEY_ENVS[kind][0], fake.api_key)
        yield Provider(kind, fake)


@pytest.fixture(params=KINDS)
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    yield from _serve(request.param, monkeypatch)


@pytest.fixture
def cartesia(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    yield from _serve("cartesia", monkeypatch)


@pytest.fixture
def deepgram(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    yield from _serve("deepgram", monkeypatch)


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    yield from _serve("azure", monkeypatch)


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    yield from _serve("google", monkeypatch)


def _check_tone(pcm: bytes, rate: int, *, voice: str, text: str, speed: float = 1.0) -> None:
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) / rate == pytest.approx(seconds_for(text) / speed, abs=0.03)
    assert dominant_frequency(samples, rate) == pytest.approx(voice_frequency(voice), abs=4)


# --- each provider's request and answer --------------------------------------------------


async def test_cartesia_request_shape_and_raw_pcm(cartesia: Provider) -> None:
    backend = cartesia.backend(speed="1.25", language="en", emotion="calm")
    audio = await backend.synthesize("Your table is ready.", rate=16000, channels=1)
    request = cartesia.fake.requests[-1]
    assert request.path == "/tts/sse"  # the endpoint that times the words
    assert request.headers["cartesia-version"] == "2025-04-16"
    assert request.headers["authorization"] == f"Bearer {cartesia.fake.api_key}"
    assert request.json == {
        "model_id": "sonic-3",
        "transcript": "Your table is ready.",
        "voice": {"mode": "id", "id": DEFAULT_VOICES["cartesia"]},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "language": "en",
        "generation_config": {"speed": 1.25, "emotion": "calm"},
        "add_timestamps": True,
    }
    # Raw PCM at the target rate: taken as is, no resampling.
    assert (audio.rate, audio.channels) == (16000, 1)
    assert audio.to_pcm(rate=16000, channels=1) == audio.data
    _check_tone(
        audio.data, 16000, voice=DEFAULT_VOICES["cartesia"], text="Your table is ready.", speed=1.25
    )


async def test_cartesia_asks_for_the_next_offered_rate(cartesia: Provider) -> None:
    audio = await cartesia.backend(voice="voice-b").synthesize("Hi there.", rate=11025, channels=1)
    assert cartesia.fake.requests[-1].json["output_format"]["sample_rate"] == 16000
    pcm = await audio.to_pcm_async(rate=11025, channels=1)
    _check_tone(pcm, 11025, voice="voice-b", text="Hi there.")


async def test_deepgram_request_shape_and_wav_answer(deepgram: Provider) -> None:
    backend = deepgram.backend(voice="aura-2-apollo-en", speed="0.9")
    audio = await backend.synthesize("Please hold.", rate=24000, channels=1)
    request = deepgram.fake.requests[-1]
    assert request.path == "/v1/speak"
    assert request.headers["authorization"] == f"Token {deepgram.fake.api_key}"
    assert request.query == {
        "model": "aura-2-apollo-en",
        "encoding": "linear16",
        "container": "wav",
        "sample_rate": "24000",
        "speed": "0.9",
    }
    assert request.json == {"text": "Please hold."}
    assert audio.data[:4] == b"RIFF" and audio.rate is None  # a WAV with its header
    pcm = audio.to_pcm(rate=24000, channels=1)
    assert len(pcm) == len(audio.data) - 44  # the header is dropped, nothing else
    _check_tone(pcm, 24000, voice="aura-2-apollo-en", text="Please hold.", speed=0.9)


async def test_deepgram_unoffered_rate_asks_higher(deepgram: Provider) -> None:
    audio = await deepgram.backend().synthesize("Twenty two.", rate=22050, channels=1)
    assert deepgram.fake.requests[-1].query["sample_rate"] == "24000"
    pcm = await audio.to_pcm_async(rate=22050, channels=1)
    _check_tone(pcm, 22050, voice=DEFAULT_VOICES["deepgram"], text="Twenty two.")


async def test_azure_request_shape_ssml_and_riff_answer(azure: Provider) -> None:
    backend = azure.backend(style="cheerful", style_degree="1.5", rate="+10%", pitch="-2st")
    audio = await backend.synthesize(
        "Welcome back.", voice="en-GB-SoniaNeural", rate=22050, channels=1
    )
    request = azure.fake.requests[-1]
    assert request.path == "/cognitiveservices/v1"
    assert request.headers["ocp-apim-subscription-key"] == azure.fake.api_key
    assert request.headers["content-type"].startswith("application/ssml+xml")
    assert request.headers["x-microsoft-outputformat"] == "riff-22050hz-16bit-mono-pcm"
    assert request.headers["user-agent"].startswith("voiceprep/")
    ssml = parse_ssml(request.body)
    assert ssml is not None
    assert (ssml.language, ssml.voices, ssml.text) == (
        "en-GB",
        ["en-GB-SoniaNeural"],
        "Welcome back.",
    )
    assert ssml.attributes[f"{{{MSTTS_NS}}}express-as"] == {
        "style": "cheerful",
        "styledegree": "1.5",
    }
    assert ssml.attributes[f"{{{SSML_NS}}}prosody"] == {"rate": "+10%", "pitch": "-2st"}
    assert audio.data[:4] == b"RIFF"
    _check_tone(
        audio.to_pcm(rate=22050, channels=1), 22050, voice="en-GB-SoniaNeural", text="Welcome back."
    )


@pytest.mark.parametrize(
    "text",
    [
        "</voice><voice name='evil'>pwned",
        "Tom & Jerry say \"<b>hi</b>\" & 'bye'",
        "<![CDATA[ x ]]> and ]]> alone",
        "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'boom'>]>&e;",
        "<!-- comment --> <break time='5s'/> &amp; &#x3C;",
    ],
)
async def test_azure_text_can_never_inject_markup(azure: Provider, text: str) -> None:
    await azure.backend().synthesize(text, rate=24000, channels=1)
    ssml = parse_ssml(azure.fake.requests[-1].body)
    assert ssml is not None  # still well-formed
    assert ssml.text == text  # every character arrived as text, none as markup
    assert ssml.voices == [DEFAULT_VOICES["azure"]]
    assert ssml.elements == [f"{{{SSML_NS}}}speak", f"{{{SSML_NS}}}voice"]


async def test_azure_refuses_text_xml_cannot_carry(azure: Provider) -> None:
    with pytest.raises(PermanentBackendError, match="U\\+0007"):
        await azure.backend().synthesize("bell \x07 here", rate=24000, channels=1)
    assert azure.fake.request_count == 0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (8000, "riff-8khz-16bit-mono-pcm"),
        (16000, "riff-16khz-16bit-mono-pcm"),
        (32000, "riff-44100hz-16bit-mono-pcm"),
        (96000, "riff-48khz-16bit-mono-pcm"),
    ],
)
def test_azure_output_format_for_rate(rate: int, expected: str) -> None:
    assert output_format_for(rate) == expected


async def test_azure_region_and_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SPEECH_KEY", "k" * 32)
    assert AzureBackend().unavailable_reason() == (
        "neither AZURE_SPEECH_REGION nor AZURE_SPEECH_ENDPOINT is set"
    )
    monkeypatch.setenv("AZURE_SPEECH_REGION", " westeurope\n")
    assert AzureBackend().endpoint() == "https://westeurope.tts.speech.microsoft.com"
    assert AzureBackend().unavailable_reason() is None
    monkeypatch.setenv("AZURE_SPEECH_REGION", "evil.example.com/")
    with pytest.raises(UsageError, match="not a region name"):
        AzureBackend().endpoint()
    with fake_provider("azure", api_key="k" * 32) as fake:
        monkeypatch.setenv("AZURE_SPEECH_ENDPOINT", f"{fake.base_url}/cognitiveservices/v1")
        audio = await AzureBackend().synthesize("Endpoint.", rate=24000, channels=1)
        assert fake.requests[-1].path == "/cognitiveservices/v1"
    assert audio.data[:4] == b"RIFF"


async def test_google_request_shape_and_base64_wav(google: Provider) -> None:
    backend = google.backend(speaking_rate="1.5", pitch="-2", volume_gain_db="3")
    audio = await backend.synthesize("Goodbye for now.", rate=16000, channels=1)
    request = google.fake.requests[-1]
    assert request.path == "/v1/text:synthesize"
    assert request.headers["x-goog-api-key"] == google.fake.api_key
    assert "key" not in request.query  # never in the URL, where proxies log it
    assert request.json == {
        "input": {"text": "Goodbye for now."},
        "voice": {"languageCode": "en-US", "name": DEFAULT_VOICES["google"]},
        "audioConfig": {
            "audioEncoding": "LINEAR16",
            "sampleRateHertz": 16000,
            "speakingRate": 1.5,
            "pitch": -2.0,
            "volumeGainDb": 3.0,
        },
    }
    assert audio.data[:4] == b"RIFF"  # base64 decoded; LINEAR16 carries a WAV header
    pcm = audio.to_pcm(rate=16000, channels=1)
    assert len(pcm) == len(audio.data) - 44
    _check_tone(pcm, 16000, voice=DEFAULT_VOICES["google"], text="Goodbye for now.", speed=1.5)


async def test_google_access_token_and_quota_project(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_provider("google", api_key="ya29.fake-access-token-0123456789") as fake:
        monkeypatch.setenv("GOOGLE_ACCESS_TOKEN", "ya29.fake-access-token-0123456789\n")
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
        backend = GoogleBackend(voice="fr-FR-Neural2-A", options={"base_url": fake.base_url})
        assert backend.unavailable_reason() is None
        await backend.synthesize("Bonjour.", rate=24000, channels=1)
        request = fake.requests[-1]
    assert request.headers["authorization"] == "Bearer ya29.fake-access-token-0123456789"
    assert request.headers["x-goog-user-project"] == "my-project"
    assert "x-goog-api-key" not in request.headers
    assert request.json["voice"] == {"languageCode": "fr-FR", "name": "fr-FR-Neural2-A"}


def test_google_answer_that_is_not_audio() -> None:
    with pytest.raises(PermanentBackendError, match="base64 audioContent"):
        audio_content(b"<html>proxy error</html>")
    with pytest.raises(PermanentBackendError):
        audio_content(json.dumps({"audioContent": "not base64!"}).encode())
    with pytest.raises(EmptyAudioError):
        audio_content(b'{"audioContent": ""}')
    wav = wav_file(b"\x01\x00" * 10, 8000)
    assert (
        audio_content(json.dumps({"audioContent": base64.b64encode(wav).decode()}).encode()) == wav
    )


async def test_google_refuses_long_input_before_sending(google: Provider) -> None:
    with pytest.raises(PermanentBackendError, match="5000"):
        await google.backend().synthesize("é" * 2501, rate=24000, channels=1)
    assert google.fake.request_count == 0


async def test_deepgram_refuses_long_input_before_sending(deepgram: Provider) -> None:
    with pytest.raises(PermanentBackendError, match="2000"):
        await deepgram.backend().synthesize("a" * 2001, rate=24000, channels=1)
    assert deepgram.fake.request_count == 0


# --- what all four share -----------------------------------------------------------------


async def test_default_voice_audio_through_the_retry_policy(provider: Provider) -> None:
    audio = await synthesize_with_retries(
        provider.backend(), "Hello there.", rate=24000, channels=1
    )
    pcm = await audio.to_pcm_async(rate=24000, channels=1)
    _check_tone(pcm, 24000, voice=DEFAULT_VOICES[provider.kind], text="Hello there.")
    assert provider.fake.requests[-1].text == "Hello there."


async def test_5xx_then_success_is_retried(provider: Provider) -> None:
    provider.fake.push(500, 503)
    sleeps = Sleeps()
    audio = await synthesize_with_retries(
        provider.backend(), "Retry me.", rate=16000, channels=1, retries=3, sleep=sleeps
    )
    assert provider.fake.request_count == 3 and len(sleeps.delays) == 2
    _check_tone(
        await audio.to_pcm_async(rate=16000, channels=1),
        16000,
        voice=DEFAULT_VOICES[provider.kind],
        text="Retry me.",
    )


async def test_429_retry_after_is_honoured(provider: Provider) -> None:
    provider.fake.push(Fault(429, retry_after="4"))
    sleeps = Sleeps()
    await synthesize_with_retries(provider.backend(), "Busy.", rate=24000, channels=1, sleep=sleeps)
    assert sleeps.delays == [4.0]
    assert provider.fake.request_count == 2


async def test_out_of_retries_is_transient_with_the_status(provider: Provider) -> None:
    provider.fake.push(500, 500, 500)
    with pytest.raises(TransientBackendError, match="HTTP 500") as info:
        await synthesize_with_retries(
            provider.backend(), "Down.", rate=24000, channels=1, retries=2, sleep=Sleeps()
        )
    assert "gave up after 3 attempts" in str(info.value)
    assert str(info.value).startswith(f"{provider.kind}: ")


async def test_wrong_key_is_not_retried_and_never_shown(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wrong-SECRET-key-0123456789abcdefXYZ"
    monkeypatch.setenv(KEY_ENVS[provider.kind][0], f"  {secret}\n")  # stripped when read
    backend = provider.backend()
    with pytest.raises(AuthenticationError) as info:
        await synthesize_with_retries(backend, "Hi", rate=24000, channels=1, sleep=Sleeps())
    assert provider.fake.request_count == 1
    assert provider.fake.requests[-1].status == 401
    sent = provider.fake.requests[-1].headers.values()
    assert any(value in (secret, f"Bearer {secret}", f"Token {secret}") for value in sent)
    for text in (str(info.value), repr(info.value), repr(backend), str(backend.identity())):
        assert secret not in text
        assert "SECRET" not in text  # not even a part of it (the fake echoes it back)
    assert "HTTP 401" in str(info.value)


async def test_timeouts_are_retried(provider: Provider) -> None:
    # The first answer would take 30 s (the fake's stop() cuts that short); each attempt
    # gets 3 s, ample for a local answer even on a loaded machine, and retries to spare.
    provider.fake.push(Fault(200, delay=30))
    sleeps = Sleeps()
    audio = await synthesize_with_retries(
        provider.backend(), "Slow.", rate=24000, channels=1, timeout=3, retries=3, sleep=sleeps
    )
    assert sleeps.delays and provider.fake.request_count == len(sleeps.delays) + 1
    pcm = await audio.to_pcm_async(rate=24000, channels=1)
    _check_tone(pcm, 24000, voice=DEFAULT_VOICES[provider.kind], text="Slow.")


async def test_empty_audio_is_an_error_not_retried(provider: Provider) -> None:
    provider.fake.push(Fault(200, empty=True))
    with pytest.raises(EmptyAudioError):
        await synthesize_with_retries(provider.backend(), "Nothing.", rate=24000, channels=1)
    assert provider.fake.request_count == 1


async def test_latency_does_not_change_the_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind in KINDS:
        for provider in _serve(kind, monkeypatch, latency=0.2):
            audio = await provider.backend().synthesize("Patience.", rate=24000, channels=1)
            pcm = await audio.to_pcm_async(rate=24000, channels=1)
            _check_tone(pcm, 24000, voice=DEFAULT_VOICES[kind], text="Patience.")


async def test_header_only_wav_is_empty_audio(deepgram: Provider) -> None:
    deepgram.fake.push(Fault(200, body=wav_file(b"", 24000)))
    audio = await deepgram.backend().synthesize("Silence.", rate=24000, channels=1)
    with pytest.raises((EmptyAudioError, DecodeError)):  # an error, never a silent entry
        await audio.to_pcm_async(rate=24000, channels=1)


async def test_missing_key_is_unavailable_before_any_request(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENVS[provider.kind][0])
    backend = provider.backend()
    assert KEY_ENVS[provider.kind][0] in (backend.unavailable_reason() or "")
    with pytest.raises(BackendUnavailableError):
        await backend.synthesize("Hi", rate=24000, channels=1)
    assert provider.fake.request_count == 0


def test_identities_are_what_the_board_promised() -> None:
    ids = {kind: get_backend(kind).identity() for kind in KINDS}
    assert {k: (i.name, i.model, i.voice, dict(i.options)) for k, i in ids.items()} == {
        "cartesia": ("cartesia", "sonic-3", DEFAULT_VOICES["cartesia"], {}),
        "deepgram": ("deepgram", None, DEFAULT_VOICES["deepgram"], {}),
        "azure": ("azure", None, DEFAULT_VOICES["azure"], {}),
        "google": ("google", None, DEFAULT_VOICES["google"], {}),
    }
    assert CartesiaBackend(options={"speed": "1.1", "language": "fr"}).identity("v").options == {
        "speed": 1.1,
        "language": "fr",
    }
    assert DeepgramBackend(options={"speed": "1.2"}).identity().options == {"speed": 1.2}
    assert AzureBackend(options={"style": "calm", "language": "en-GB"}).identity().options == {
        "style": "calm",
        "language": "en-GB",
    }
    assert GoogleBackend(options={"speaking_rate": "0.9"}).identity().options == {
        "speaking_rate": 0.9
    }


def test_same_text_keys_differ_across_providers_voices_and_options() -> None:
    identities = [get_backend(kind).identity() for kind in (*KINDS, "openai", "elevenlabs")]
    identities += [
        get_backend("cartesia", options={"model": "sonic-2"}).identity(),
        get_backend("cartesia").identity("another-voice-id"),
        get_backend("deepgram").identity("aura-2-apollo-en"),
        get_backend("azure", options={"style": "cheerful"}).identity(),
        get_backend("google", options={"speaking_rate": "1.1"}).identity(),
    ]
    keys = {cache_key(identity, "Hello there.", rate=24000, channels=1) for identity in identities}
    assert len(keys) == len(identities)


def test_identity_has_neither_key_nor_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SPEECH_KEY", "azure-SECRET-0123456789")
    monkeypatch.setenv("AZURE_SPEECH_REGION", "eastus")
    a = get_backend("azure").identity()
    b = get_backend("azure", options={"base_url": "http://proxy.local:8080"}).identity()
    assert a == b
    assert "SECRET" not in json.dumps(a.as_dict()) and "eastus" not in json.dumps(a.as_dict())


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("cartesia", {"speed": "3"}, "0.6–1.5"),
        ("cartesia", {"sped": "1"}, "unknown option 'sped'"),
        ("cartesia", {"language": "en US"}, "language"),
        ("deepgram", {"speed": "fast"}, "a number"),
        ("azure", {"rate": "1.2'/><x"}, "option rate"),
        ("azure", {"style": "<b>"}, "option style"),
        ("azure", {"style_degree": "5"}, "0.01–2"),
        ("google", {"pitch": "30"}, "-20–20"),
        ("google", {"base_url": "ftp://x"}, "invalid base URL"),
    ],
)
def test_bad_options_are_usage_errors(kind: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        get_backend(kind, options=options)


async def test_deepgram_refuses_a_voice_that_is_not_a_model_name(deepgram: Provider) -> None:
    with pytest.raises(UsageError, match="invalid voice"):
        await deepgram.backend(voice="aura&model=x").synthesize("Hi", rate=24000, channels=1)
    assert deepgram.fake.request_count == 0


# --- the CLI -----------------------------------------------------------------------------


def test_backends_lists_each_with_the_reason(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-SECRET-0123456789abcdef")
    code, out, err = cli("backends", "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["deepgram"]["usable"] is True and rows["deepgram"]["voice"] == "aura-2-thalia-en"
    assert rows["cartesia"]["usable"] is False
    assert rows["cartesia"]["reason"] == "CARTESIA_API_KEY is not set"
    assert rows["cartesia"]["model"] == "sonic-3"
    assert rows["azure"]["reason"] == "AZURE_SPEECH_KEY is not set"
    assert rows["google"]["reason"] == "neither GOOGLE_API_KEY nor GOOGLE_ACCESS_TOKEN is set"
    assert "SECRET" not in out + err
    code, out, err = cli("backends")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "no" in lines["azure"].split() and "AZURE_SPEECH_KEY is not set" in lines["azure"]
    assert "yes" in lines["deepgram"].split()
    assert {s.name: s.model for s in describe_backends()}["cartesia"] == "sonic-3"


@pytest.mark.parametrize("kind", KINDS)
def test_cli_say_through_each_provider(
    kind: str, cli: CLI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from voiceprep.decoding import probe

    for provider in _serve(kind, monkeypatch):
        args = ["say", "Thanks for calling.", "--backend", kind, "--rate", "16000"]
        args += ["-O", f"base_url={provider.fake.base_url}", "--cache-dir", str(tmp_path)]
        for name in ("first.wav", "again.wav"):  # the second is served from the cache
            code, stdout, err = cli(*args, "-o", str(tmp_path / name))
            assert code == 0, err
            assert provider.fake.api_key not in stdout + err
            info = probe(str(tmp_path / name))
            assert (info.rate, info.channels) == (16000, 1)
        assert provider.fake.request_count == 1


def test_cli_wrong_key_is_one_line_exit_1(
    cli: CLI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for provider in _serve("google", monkeypatch):
        secret = "AIza-SECRET-wrong-0123456789abcdef"
        monkeypatch.setenv("GOOGLE_API_KEY", secret)
        args = ["say", "Hi", "--backend", "google", "-O", f"base_url={provider.fake.base_url}"]
        args += ["-o", str(tmp_path / "o.wav"), "--cache-dir", str(tmp_path / "cache")]
        result = cli(*args)
        assert result.code == 1
        assert len(result.errors) == 1 and len(result.err_lines) == 1
        assert "HTTP 401" in result.err and "SECRET" not in result.text + result.err
        assert not (tmp_path / "o.wav").exists()
