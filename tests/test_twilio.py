"""voiceprep.integrations.twilio: a cached prompt played into a Twilio-style websocket
by the Starlette example (docs/examples/twilio_app.py) under a real uvicorn, with a real
websocket client acting as Twilio; payloads decoded back by ffmpeg."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI
from test_telephony import ffmpeg, snr_db
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from voiceprep.integrations.twilio import inbound_pcm, media_messages

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
PROMPT = "Thank you for calling."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_media_messages_are_20ms_ulaw_frames_then_a_mark() -> None:
    pcm = (np.sin(np.arange(8000 * 3 // 4) / 5) * 8000).astype("<i2").tobytes()  # 0.75 s at 8 kHz
    messages = list(media_messages(pcm, sample_rate=8000, stream_sid="MZ1", mark="done"))
    media, mark = messages[:-1], messages[-1]
    assert mark == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "done"}}
    frames = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(m["event"] == "media" and m["streamSid"] == "MZ1" for m in media)
    assert [len(f) for f in frames] == [160] * 38  # 6000 samples: 37.5 frames, padded
    assert frames[-1][80:] == b"\xff" * 80  # μ-law silence
    heard = ffmpeg(
        "-f", "mulaw", "-ar", "8000", "-i", "-", "-f", "s16le", "-", data=b"".join(frames)
    )
    assert snr_db(pcm, heard[: len(pcm)]) >= 30
    json.dumps(messages)  # JSON-ready
    assert list(media_messages(pcm, sample_rate=8000, stream_sid="MZ1"))[-1]["event"] == "media"


def test_inbound_pcm_decodes_a_media_message() -> None:
    ulaw = bytes(range(256))[:160]
    message = {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(ulaw).decode()},
    }
    expected = ffmpeg("-f", "mulaw", "-ar", "8000", "-i", "-", "-f", "s16le", "-", data=ulaw)
    assert inbound_pcm(message, sample_rate=8000) == expected
    assert inbound_pcm(json.dumps(message), sample_rate=8000) == expected
    assert len(inbound_pcm(message, sample_rate=16000)) == 2 * len(expected)


@pytest.mark.parametrize(
    "message",
    [
        '{"event": "start"}',
        "not json",
        {"event": "media", "media": {"payload": "@@"}},
        {"event": "media"},
    ],
)
def test_inbound_pcm_refuses_other_messages(message: object) -> None:
    from voiceprep.errors import UsageError

    with pytest.raises(UsageError, match="not a Twilio media message"):
        inbound_pcm(message, sample_rate=8000)  # type: ignore[arg-type]


def test_the_starlette_example_plays_a_cached_prompt(cli: CLI) -> None:
    (cli.cwd / "prompts.txt").write_text(PROMPT + "\n", encoding="utf-8")
    assert cli("warm", "prompts.txt", "-b", "espeak", "--cache-dir", "cache").code == 0
    cached = cli("cache", "get", PROMPT, "-b", "espeak", "--cache-dir", "cache", "-o", "-").out
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
        "VOICEPREP_BACKEND": "espeak",
        "VOICEPREP_CACHE_DIR": str(cli.cwd / "cache"),
        "VOICEPREP_RATE": "24000",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "twilio_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"ws://127.0.0.1:{port}/media"
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = connect(url, open_timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, (
                    "uvicorn did not start"
                )
                time.sleep(0.1)
        with ws:
            ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {"streamSid": "MZ42", "customParameters": {"prompt": PROMPT}}
            ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
            frames = []
            while True:
                message = json.loads(ws.recv(timeout=30))
                assert message["streamSid"] == "MZ42"
                if message["event"] == "mark":
                    break
                frames.append(base64.b64decode(message["media"]["payload"]))
            caller = base64.b64encode(b"\xff" * 160).decode()
            ws.send(
                json.dumps({"event": "media", "streamSid": "MZ42", "media": {"payload": caller}})
            )
            ws.send(json.dumps({"event": "mark", "streamSid": "MZ42", "mark": {"name": "prompt"}}))
            with pytest.raises(ConnectionClosed):  # the prompt played: the app hangs up
                ws.recv(timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert all(len(f) == 160 for f in frames)
    heard = ffmpeg(
        "-f", "mulaw", "-ar", "8000", "-i", "-", "-f", "s16le", "-", data=b"".join(frames)
    )
    reference = ffmpeg(
        "-f", "s16le", "-ar", "24000", "-i", "-", "-ar", "8000", "-f", "s16le", "-", data=cached
    )
    assert len(heard) - len(reference) < 320  # only the last frame's padding
    assert snr_db(reference, heard[: len(reference)]) >= 30


def test_caller_audio_resamples_a_calls_messages_as_one_signal() -> None:
    from voiceprep.integrations.twilio import CallerAudio

    tone = (np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 12000).astype("<i2").tobytes()
    ulaw = ffmpeg("-f", "s16le", "-ar", "8000", "-i", "-", "-f", "mulaw", "-", data=tone)
    messages = [
        {"event": "media", "media": {"payload": base64.b64encode(ulaw[i : i + 160]).decode()}}
        for i in range(0, len(ulaw), 160)
    ]
    caller = CallerAudio(16000)
    joined = b"".join(caller.feed(m) for m in messages) + caller.flush()
    whole = ffmpeg(
        "-f", "mulaw", "-ar", "8000", "-i", "-", "-ar", "16000", "-f", "s16le", "-", data=ulaw
    )
    assert abs(len(joined) - len(whole)) <= 8
    n = min(len(joined), len(whole)) - 64  # the resamplers' last few samples may differ
    # one signal: ffmpeg's own resampling within rounding (message by message: ~42 dB)
    assert snr_db(whole[64:n], joined[64:n]) > 70
    assert CallerAudio(8000).feed(messages[0]) == inbound_pcm(messages[0], sample_rate=8000)
