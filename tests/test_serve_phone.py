"""`serve` for phone lines (#20): response_format ulaw/alaw (8 kHz G.711) and speaches'
`sample_rate` for pcm and wav, against a real server process with espeak; ffmpeg decodes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from servehelpers import ServerProcess
from test_telephony import ffmpeg, snr_db

from voiceprep.wav import parse_wav_header

SPEECH = "/v1/audio/speech"
TEXT = "Press one for sales."


def body(**more: object) -> dict[str, object]:
    return {"model": "tts-1", "input": TEXT, "voice": "alloy", **more}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("serve-phone")
    args = ["-b", "espeak", "-r", "24000", "--cache-dir", str(home / "cache")]
    with (
        ServerProcess(args, cwd=home) as server,
        httpx.Client(base_url=server.root, timeout=60) as http,
    ):
        yield http
        assert server.stop() == 0


@pytest.fixture(scope="module")
def wav24(client: httpx.Client) -> bytes:
    response = client.post(SPEECH, json=body(response_format="wav"))
    assert response.status_code == 200
    fmt = parse_wav_header(response.content)
    assert fmt.rate == 24000
    return response.content[fmt.data_offset : fmt.data_offset + fmt.data_bytes]


@pytest.mark.parametrize(
    ("fmt", "content_type", "ffmpeg_format"),
    [("ulaw", "audio/basic", "mulaw"), ("alaw", "audio/x-alaw-basic", "alaw")],
)
def test_g711_formats_are_8khz(
    client: httpx.Client, wav24: bytes, fmt: str, content_type: str, ffmpeg_format: str
) -> None:
    response = client.post(SPEECH, json=body(response_format=fmt))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    heard = ffmpeg(
        "-f", ffmpeg_format, "-ar", "8000", "-i", "-", "-f", "s16le", "-", data=response.content
    )
    reference = ffmpeg(
        "-f", "s16le", "-ar", "24000", "-i", "-", "-ar", "8000", "-f", "s16le", "-", data=wav24
    )
    assert abs(len(heard) - len(reference)) <= 4
    n = min(len(heard), len(reference))
    assert snr_db(reference[:n], heard[:n]) >= 30
    assert client.post(SPEECH, json=body(response_format=fmt)).content == response.content  # kept


def test_sample_rate_for_pcm_and_wav(client: httpx.Client, wav24: bytes) -> None:
    pcm = client.post(SPEECH, json=body(response_format="pcm", sample_rate=16000))
    assert pcm.status_code == 200, pcm.text
    reference = ffmpeg(
        "-f", "s16le", "-ar", "24000", "-i", "-", "-ar", "16000", "-f", "s16le", "-", data=wav24
    )
    assert abs(len(pcm.content) - len(reference)) <= 8
    n = min(len(pcm.content), len(reference))
    assert snr_db(reference[:n], pcm.content[:n]) >= 40
    wav = client.post(SPEECH, json=body(response_format="wav", sample_rate=8000))
    fmt = parse_wav_header(wav.content)
    assert (fmt.rate, fmt.channels) == (8000, 1)
    assert abs(fmt.data_bytes - len(wav24) / 3) <= 8
    # the default variants are untouched by the resampled ones
    assert client.post(SPEECH, json=body(response_format="pcm")).content != pcm.content
    assert len(
        client.post(SPEECH, json=body(response_format="pcm", sample_rate=24000)).content
    ) == len(wav24)


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"response_format": "pcm", "sample_rate": 7999}, "outside 8000–48000"),
        ({"response_format": "wav", "sample_rate": 96000}, "outside 8000–48000"),
        ({"response_format": "pcm", "sample_rate": "16000"}, "must be an integer"),
        ({"response_format": "mp3", "sample_rate": 16000}, "applies to pcm and wav"),
        ({"response_format": "ulaw", "sample_rate": 16000}, "applies to pcm and wav"),
        ({"response_format": "mulaw"}, "unknown response_format"),
    ],
)
def test_bad_phone_requests_are_400(
    client: httpx.Client, more: dict[str, object], message: str
) -> None:
    response = client.post(SPEECH, json=body(**more))
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
