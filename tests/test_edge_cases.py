"""Issue 12 item 7, the smaller cases: control characters never reach a terminal raw,
`warm --cache-dir FILE` is refused before any request, `say --timeout/--retries`, and
files that lie about their length or grow while they are decoded."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fakeproviders import FakeProvider, Fault, fake_openai
from helpers import run_voiceprep as voiceprep

from voiceprep.cache import AudioCache
from voiceprep.decoding import decode
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.wav import wav_bytes

NASTY = "Hi\x1b[2J\x1b]0;pwned\x07 there\u202e"  # clear screen, set title, bidi override
ESCAPED = "Hi\\x1b[2J\\x1b]0;pwned\\x07 there\\u202e"


def assert_no_controls(data: bytes) -> None:
    text = data.decode()
    assert not any(ord(c) < 32 and c not in "\n" for c in text), text
    assert "\u202e" not in text and "\x7f" not in text


# --- control characters -------------------------------------------------------------


@pytest.fixture
def nasty_cache(tmp_path: Path) -> Path:
    identity = BackendIdentity(name="espeak", voice="en-us")
    with AudioCache(tmp_path / "c") as cache:
        key = cache_key(identity, NASTY, rate=16000, channels=1)
        cache.put(key, b"\0\0" * 1600, rate=16000, channels=1, text=NASTY, identity=identity)
    return tmp_path / "c"


def test_cache_ls_escapes_control_characters(nasty_cache: Path) -> None:
    result = voiceprep("cache", "ls", "--cache-dir", nasty_cache)

    assert result.returncode == 0
    assert_no_controls(result.stdout)
    assert ESCAPED in result.stdout.decode()


def test_cache_ls_json_escapes_them_as_json_does(nasty_cache: Path) -> None:
    result = voiceprep("cache", "ls", "--json", "--cache-dir", nasty_cache)

    assert b"\x1b" not in result.stdout and b"\\u001b[2J" in result.stdout
    assert json.loads(result.stdout)[0]["text"] == NASTY


def test_warm_dry_run_escapes_control_characters(tmp_path: Path) -> None:
    phrases = tmp_path / "p.txt"
    phrases.write_text(NASTY + "\n")

    result = voiceprep("warm", phrases, "--dry-run", "-b", "espeak", "--cache-dir", tmp_path / "c")

    assert result.returncode == 0, result.stderr
    assert_no_controls(result.stdout)
    assert f"would synthesize: {ESCAPED}" in result.stdout.decode()


def test_errors_escape_control_characters(tmp_path: Path) -> None:
    result = voiceprep("cache", "get", NASTY, "-o", tmp_path / "x.wav", "-b", "espeak",
                       "--cache-dir", tmp_path)  # fmt: skip

    assert result.returncode == 1
    assert_no_controls(result.stderr)
    assert ESCAPED in result.stderr.decode()


# --- warm --cache-dir FILE, say --timeout / --retries ----------------------------------


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    with fake_openai() as server:
        yield server


def openai_args(fake: FakeProvider) -> list[str]:
    return ["-b", "openai", "-O", f"base_url={fake.base_url}"]


def test_warm_into_a_file_as_cache_dir_is_refused_before_any_request(
    fake: FakeProvider, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file")
    phrases = tmp_path / "p.txt"
    phrases.write_text("Hello.\nGoodbye.\n")

    result = voiceprep("warm", phrases, *openai_args(fake), "--cache-dir", not_a_dir,
                       env={"OPENAI_API_KEY": fake.api_key})  # fmt: skip

    assert result.returncode == 2 and fake.request_count == 0
    assert result.stderr.decode().splitlines() == [
        f"voiceprep: error: {not_a_dir}: cannot be a cache directory "
        f"({not_a_dir} is not a directory)"
    ]


def test_say_takes_retries(fake: FakeProvider, tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": fake.api_key}
    args = ["say", "Hello.", "-o", tmp_path / "x.wav", *openai_args(fake), "--cache-dir", tmp_path]
    fake.push(500)
    assert voiceprep(*args, "--retries", "0", env=env).returncode == 1
    fake.push(500)
    assert voiceprep(*args, "--retries", "1", env=env).returncode == 0
    assert fake.request_count == 3


def test_say_takes_timeout(fake: FakeProvider, tmp_path: Path) -> None:
    fake.push(Fault(200, delay=5))
    result = voiceprep("say", "Hello.", "-o", tmp_path / "x.wav", *openai_args(fake),
                       "--cache-dir", tmp_path, "--timeout", "0.5", "--retries", "0",
                       env={"OPENAI_API_KEY": fake.api_key})  # fmt: skip

    assert result.returncode == 1
    assert "no answer within 0.5 s" in result.stderr.decode()


# --- files that lie about their length, files that grow --------------------------------


def tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


@pytest.mark.parametrize("seconds", [1, 40], ids=["small", "fast-path"])
def test_a_wav_header_promising_more_than_the_file_holds(tmp_path: Path, seconds: int) -> None:
    pcm = tone(seconds)
    liar = bytearray(wav_bytes(pcm, rate=16000, channels=1))
    struct.pack_into("<I", liar, 40, len(pcm) * 10)  # the data chunk claims 10x
    path = tmp_path / "liar.wav"
    path.write_bytes(liar)
    warnings: list[str] = []

    out = b"".join(decode(path, rate=16000, on_warning=warnings.append))

    assert out == pcm
    assert warnings == [
        f"{path}: the WAV header promises {len(pcm) * 10} bytes of audio, the file holds "
        f"{len(pcm)} (truncated?): decoded what is there"
    ]
    result = voiceprep("decode", path, "-o", "-", "-r", "16000")
    assert result.returncode == 0 and result.stdout == pcm
    assert result.stderr.decode().startswith("voiceprep: warning: ")


def test_an_honest_wav_and_a_streamed_one_give_no_warning(tmp_path: Path) -> None:
    pcm = tone(1)
    honest = tmp_path / "honest.wav"
    honest.write_bytes(wav_bytes(pcm, rate=16000, channels=1))
    streamed = bytearray(honest.read_bytes())
    struct.pack_into("<I", streamed, 40, 0xFFFFFFFF)  # "length unknown", as ffmpeg pipes
    (tmp_path / "streamed.wav").write_bytes(streamed)
    for path in (honest, tmp_path / "streamed.wav"):
        warnings: list[str] = []
        assert b"".join(decode(path, rate=16000, on_warning=warnings.append)) == pcm
        assert warnings == []


def test_a_file_that_grows_while_decoding(tmp_path: Path) -> None:
    pcm = tone(40)
    path = tmp_path / "growing.wav"
    header = bytearray(wav_bytes(pcm, rate=16000, channels=1))
    struct.pack_into("<I", header, 40, 0xFFFFFFFF)  # a recorder still writing it
    path.write_bytes(header)
    warnings: list[str] = []
    chunks = decode(path, rate=16000, on_warning=warnings.append)

    first = next(chunks)
    with path.open("ab") as more:  # the recorder goes on while we decode
        more.write(tone(1))
    rest = b"".join(chunks)

    assert len(first + rest) >= len(pcm)
    assert warnings == [
        f"{path}: the file grew by {len(tone(1))} bytes while it was decoded "
        "(still being written?): the output may end before the file does"
    ]
