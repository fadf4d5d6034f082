"""`voiceprep serve` as a real process on 127.0.0.1 with the espeak backend: the official
openai SDK, every response format, the key shared with `warm`, and every bad request."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from helpers import CLI
from servehelpers import ServerProcess, clean_env, stored_entry

from voiceprep.cache import AudioCache
from voiceprep.decoding import decode
from voiceprep.wav import parse_wav_header

SPEECH = "/v1/audio/speech"
TOKEN = "serve-test-token-0123456789"


def espeak_args(cache: Path, *more: str) -> list[str]:
    return ["-b", "espeak", "-r", "24000", "--cache-dir", str(cache), *more]


def body(text: str = "Hello from the cache.", **more: object) -> dict[str, object]:
    return {"model": "tts-1", "input": text, "voice": "alloy", **more}


def entry_seconds(cache: Path, text: str) -> float:
    entry = stored_entry(cache, text)
    assert entry is not None
    return entry.duration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("serve")
    with ServerProcess(espeak_args(home / "cache"), cwd=home) as running:
        running.cache = home / "cache"  # type: ignore[attr-defined]
        yield running
        assert running.stop() == 0


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.root, timeout=60) as http:
        yield http


# --- the official SDK --------------------------------------------------------------------


def test_openai_sdk_create_and_streaming_get_the_same_cached_audio(server: ServerProcess) -> None:
    sdk = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    text = "Thanks for calling, how can I help?"
    # A miss streams: OpenAI's streamed WAV header, whose sizes say "unknown length".
    first = sdk.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
    streamed = first.read()
    assert streamed[4:8] == streamed[40:44] == b"\xff\xff\xff\xff"
    server.wait_for_line(r"POST /v1/audio/speech 200 miss")

    # A hit: the whole file, its header stating the length.
    with sdk.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="nova", input=text, response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        audio = b"".join(response.iter_bytes(4096))
    fmt = parse_wav_header(audio)
    assert (fmt.rate, fmt.channels) == (24000, 1)
    seconds = fmt.data_bytes / 48000
    assert seconds == pytest.approx(entry_seconds(server.cache, text), abs=1e-3)  # type: ignore[attr-defined]
    assert streamed[44:] == audio[44:]  # any OpenAI voice name means the server's voice: one entry
    server.wait_for_line(r"POST /v1/audio/speech 200 hit")


@pytest.mark.parametrize(
    ("fmt", "content_type", "tolerance"),
    [
        ("pcm", "audio/pcm", 0.0),
        ("wav", "audio/wav", 0.0),
        ("flac", "audio/flac", 0.0),
        ("mp3", "audio/mpeg", 0.03),
        ("opus", "audio/opus", 0.03),
        ("aac", "audio/aac", 0.1),  # ADTS carries no priming info: up to two AAC frames more
    ],
)
def test_every_format_decodes_to_the_right_duration(
    server: ServerProcess, client: httpx.Client, fmt: str, content_type: str, tolerance: float
) -> None:
    text = "Every format says the same thing."
    response = client.post(SPEECH, json=body(text, response_format=fmt))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    expected = entry_seconds(server.cache, text)  # type: ignore[attr-defined]
    if fmt == "pcm":  # OpenAI's pcm: s16le mono at 24 kHz, no header
        seconds = len(response.content) / 48000
    else:
        seconds = len(b"".join(decode(response.content, rate=24000, channels=1))) / 48000
    assert expected > 0.5
    assert expected - 0.005 <= seconds <= expected + tolerance + 0.005
    # The second request is a hit, served from the variants already encoded: same bytes.
    again = client.post(SPEECH, json=body(text, response_format=fmt))
    assert again.content == response.content


def test_a_cache_at_another_rate_still_sends_24khz_pcm(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["-b", "espeak", "-r", "16000", "-c", "2", "--cache-dir", str(cache)]
    with ServerProcess(args, cwd=tmp_path) as server:
        text = "A stereo cache at sixteen kilohertz."
        pcm = httpx.post(server.url(SPEECH), json=body(text, response_format="pcm"), timeout=60)
        wav = httpx.post(server.url(SPEECH), json=body(text, response_format="wav"), timeout=60)
        assert server.stop() == 0
    with AudioCache(cache) as store:
        (entry,) = store.entries()
    assert (entry.rate, entry.channels) == (16000, 2)
    assert len(pcm.content) / 48000 == pytest.approx(entry.duration, abs=0.002)
    fmt = parse_wav_header(wav.content)
    assert (fmt.rate, fmt.channels) == (16000, 2)  # wav states its format: sent as cached


# --- the key is warm's -------------------------------------------------------------------


def test_warmed_phrases_are_hits_and_served_phrases_pass_warm_check(
    tmp_path: Path, cli: CLI
) -> None:
    cache = tmp_path / "cache"
    warmed = tmp_path / "warmed.txt"
    warmed.write_text("Welcome back.\n")
    code, _, err = cli("warm", warmed, *espeak_args(cache))
    assert code == 0, err

    with ServerProcess(espeak_args(cache), cwd=tmp_path) as server:
        hit = httpx.post(server.url(SPEECH), json=body("Welcome back."), timeout=60)
        assert hit.status_code == 200
        server.wait_for_line(r"POST /v1/audio/speech 200 hit")
        miss = httpx.post(server.url(SPEECH), json=body("First heard here."), timeout=60)
        assert miss.status_code == 200
        server.wait_for_line(r"POST /v1/audio/speech 200 miss")
        metrics = httpx.get(server.url("/metrics"), timeout=10).text
        assert server.stop() == 0
    assert "voiceprep_cache_hits_total 1.0" in metrics
    assert "voiceprep_syntheses_total 1.0" in metrics

    served = tmp_path / "served.txt"
    served.write_text("Welcome back.\nFirst heard here.\n")
    code, _, err = cli("warm", served, "--check", *espeak_args(cache))
    assert code == 0, err


def test_read_only_serves_hits_and_answers_404_for_a_miss(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ServerProcess(espeak_args(cache), cwd=tmp_path) as server:
        assert httpx.post(server.url(SPEECH), json=body("Stored."), timeout=60).status_code == 200
        assert server.stop() == 0
    with ServerProcess(espeak_args(cache, "--read-only"), cwd=tmp_path) as server:
        hit = httpx.post(server.url(SPEECH), json=body("Stored.", response_format="opus"))
        miss = httpx.post(server.url(SPEECH), json=body("Never stored."), timeout=60)
        health = httpx.get(server.url("/healthz"))
        assert server.stop() == 0
    assert hit.status_code == 200 and hit.content[:4] == b"OggS"
    assert miss.status_code == 404
    assert miss.json()["error"]["code"] == "not_cached"
    assert health.status_code == 200
    with AudioCache(cache) as store:
        assert [e.text for e in store.entries()] == ["Stored."]


# --- bad requests ----------------------------------------------------------------------


BAD_REQUESTS = [
    ("not json", b"{", 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("not utf-8", b'{"input": "\xff"}', 400, None),
    ("no input", json.dumps({"model": "tts-1", "voice": "alloy"}).encode(), 400, "input"),
    ("empty input", json.dumps(body("")).encode(), 400, "input"),
    ("blank input", json.dumps(body(" \n\t ")).encode(), 400, "input"),
    ("input too long", json.dumps(body("a" * 4097)).encode(), 400, "input"),
    ("input not a string", json.dumps(body(42)).encode(), 400, "input"),  # type: ignore[arg-type]
    ("no model", json.dumps({"input": "Hi.", "voice": "alloy"}).encode(), 400, "model"),
    ("no voice", json.dumps({"model": "tts-1", "input": "Hi."}).encode(), 400, "voice"),
    ("unknown voice", json.dumps({**body(), "voice": "../../etc/passwd"}).encode(), 400, "voice"),
    ("unknown format", json.dumps(body(response_format="ogg")).encode(), 400, "response_format"),
    ("format not a string", json.dumps(body(response_format=3)).encode(), 400, "response_format"),
    ("speed out of range", json.dumps(body(speed=9)).encode(), 400, "speed"),
    ("speed not a number", json.dumps(body(speed="fast")).encode(), 400, "speed"),
    ("speed unsupported", json.dumps(body(speed=1.5)).encode(), 400, "speed"),
    ("instructions", json.dumps(body(instructions="whisper")).encode(), 400, "instructions"),
]


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_openai_errors(
    client: httpx.Client, raw: bytes, status: int, param: str | None
) -> None:
    response = client.post(SPEECH, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in response.text and error["message"]


def test_the_4096_character_limit_is_inclusive(client: httpx.Client) -> None:
    response = client.post(SPEECH, json=body("Hi. " * 1024, response_format="pcm"))
    assert response.status_code == 200


def test_an_oversized_body_is_413(client: httpx.Client) -> None:
    huge = json.dumps(body("x" * 200_000)).encode()
    response = client.post(SPEECH, content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "tts-1", "voice": "alloy", "input": "'
        for _ in range(40):
            yield b"y" * 4096
        yield b'"}'

    streamed = client.post(SPEECH, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_unknown_routes_and_methods_answer_in_openai_shape(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    wrong = client.get(SPEECH)
    assert wrong.status_code == 405 and wrong.json()["error"]["message"]


def test_models_health_and_metrics(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert {"tts-1", "gpt-4o-mini-tts"} <= {m["id"] for m in models["data"]}
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post(SPEECH, json=body("Counted."))
    text = client.get("/metrics").text
    for name in (
        "voiceprep_requests_total",
        "voiceprep_cache_hits_total",
        "voiceprep_cache_misses_total",
        "voiceprep_syntheses_total",
        "voiceprep_synthesis_failures_total",
        "voiceprep_request_duration_seconds_bucket",
    ):
        assert name in text


def test_health_is_503_with_the_reason_when_the_backend_cannot_run(tmp_path: Path) -> None:
    args = ["-b", "openai", "--cache-dir", str(tmp_path / "cache")]  # no OPENAI_API_KEY
    with ServerProcess(args, cwd=tmp_path) as server:
        health = httpx.get(server.url("/healthz"), timeout=10)
        miss = httpx.post(server.url(SPEECH), json=body(), timeout=30)
        assert server.stop() == 0
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "reason": "OPENAI_API_KEY is not set"}
    assert miss.status_code == 502
    assert miss.json()["error"]["message"] == "the TTS backend cannot run on this server"


# --- security -----------------------------------------------------------------------------


def test_a_token_is_required_on_every_route(tmp_path: Path) -> None:
    env = {"MY_TOKEN": f"  {TOKEN}\n"}  # stripped, as every secret from the environment
    args = espeak_args(tmp_path / "cache", "--token-env", "MY_TOKEN", "--json-logs")
    with ServerProcess(args, env=env, cwd=tmp_path) as server:
        url = server.url(SPEECH)
        none = httpx.post(url, json=body(), timeout=30)
        wrong = httpx.post(url, json=body(), headers={"authorization": "Bearer nope"})
        basic = httpx.post(url, json=body(), headers={"authorization": f"Basic {TOKEN}"})
        health = httpx.get(server.url("/healthz"))
        sdk = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0)
        audio = sdk.audio.speech.create(model="tts-1", voice="echo", input="Allowed.").read()
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
        assert server.stop() == 0
    for response in (none, wrong, basic, health):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert len(audio) > 1000
    assert TOKEN not in server.stderr
    logged = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert {"method", "path", "status", "cache", "ms"} <= set(logged[0])
    assert [e["status"] for e in logged if e["path"] == SPEECH] == [401, 401, 401, 200]


def test_listening_beyond_loopback_needs_a_token(cli: CLI) -> None:
    result = cli.process("serve", "--host", "0.0.0.0", "--port", "0", env=clean_env())
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "refusing to listen on 0.0.0.0 without a token" in result.err


def test_a_port_in_use_is_one_line_and_exit_2(cli: CLI) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli.process("serve", "--port", str(port), "-b", "espeak", env=clean_env())
    assert result.code == 2
    assert result.err.startswith(f"voiceprep: error: cannot listen on 127.0.0.1:{port}: ")
    assert result.err.count("\n") == 1


def test_connections_are_accepted_with_nagle_off() -> None:
    """Small responses (an 8 KB mp3, a JSON error) leave at once instead of waiting ~40 ms
    for the client's delayed ACK: every accepted connection has TCP_NODELAY set."""
    import asyncio

    from voiceprep.server.run import bind

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = bind("127.0.0.1", 0)
        server = await asyncio.start_server(on_connection, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


def test_processing_flags_match_warms_and_shape_what_is_served(tmp_path: Path, cli: CLI) -> None:
    """`serve --loudness -16` finds what `warm --loudness -16` stored (same key), and a
    miss is served loudness-matched: -16 LUFS by ffmpeg's own meter."""
    import numpy as np
    from loudmeter import ffmpeg_loudness

    cache = tmp_path / "cache"
    shaped = ("--loudness", "-16", "--trim-silence")
    warmed = tmp_path / "warmed.txt"
    warmed.write_text("Welcome back to the clinic.\n")
    code, _, err = cli("warm", warmed, *espeak_args(cache, *shaped))
    assert code == 0, err

    with ServerProcess(espeak_args(cache, *shaped), cwd=tmp_path) as server:
        hit = httpx.post(server.url(SPEECH), json=body("Welcome back to the clinic."), timeout=60)
        assert hit.status_code == 200
        server.wait_for_line(r"POST /v1/audio/speech 200 hit")
        text = "Your appointment is confirmed for Monday morning."
        miss = httpx.post(server.url(SPEECH), json=body(text, response_format="pcm"), timeout=60)
        assert miss.status_code == 200
        server.wait_for_line(r"POST /v1/audio/speech 200 miss")
        assert server.stop() == 0

    samples = np.frombuffer(miss.content, dtype="<i2").astype(np.float32) / 32768
    integrated, true_peak = ffmpeg_loudness(samples, 24000)
    assert abs(integrated + 16) <= 0.5 and true_peak <= -1.5 + 0.1
    # The settings are in the key: the processed prompt and its raw synthesis (kept so
    # that a new house level re-synthesizes nothing) are two entries.
    with AudioCache(cache) as store:
        entries = [e for e in store.entries() if e.text == text]
    assert len({e.key for e in entries}) == 2
    assert any("process" in e.options for e in entries)
