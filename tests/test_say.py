"""`voiceprep say`: one phrase through the cache into a file or stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audiogen import pcm_to_array
from helpers import CLI

from voiceprep.cache import AudioCache
from voiceprep.wav import parse_wav_header


def rms(pcm: bytes, channels: int = 1) -> float:
    return float(np.sqrt(np.mean(pcm_to_array(pcm, channels) ** 2)))


def only_entry_pcm(cache_dir: Path) -> bytes:
    with AudioCache(cache_dir) as cache:
        (entry,) = cache.entries()
        pcm = cache.get(entry.key, rate=entry.rate, channels=entry.channels)
    assert pcm is not None
    return pcm


def test_say_to_wav_then_from_the_cache(tmp_path: Path, cli: CLI) -> None:
    cache_dir = tmp_path / "cache"
    out = tmp_path / "hello.wav"
    args = ["say", "Hello, how can I help?", "-b", "espeak", "-r", "16000", "-o", str(out)]
    code, stdout, err = cli(*[*args, "--cache-dir", str(cache_dir)])
    assert code == 0, err
    assert stdout == ""
    assert "synthesized with espeak" in err
    blob = out.read_bytes()
    fmt = parse_wav_header(blob)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (16000, 1, "s16")
    pcm = blob[fmt.data_offset :]
    assert pcm == only_entry_pcm(cache_dir) and rms(pcm) > 0.01

    out.unlink()
    code, _, err = cli(*[*args, "--cache-dir", str(cache_dir)])
    assert code == 0 and "from the cache" in err
    assert out.read_bytes() == blob
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp


def test_say_raw_pcm_by_suffix_with_piper(tmp_path: Path, cli: CLI) -> None:
    out = tmp_path / "moment.pcm"
    args = ["say", "One moment.", "-o", str(out), "-c", "2", "--cache-dir", str(tmp_path / "c")]
    code, _, err = cli(*args)
    assert code == 0, err
    pcm = out.read_bytes()
    assert not pcm.startswith(b"RIFF")
    assert pcm == only_entry_pcm(tmp_path / "c")
    left, right = pcm_to_array(pcm, 2)
    assert len(left) > 0.3 * 24000 and rms(pcm, 2) > 0.01
    assert np.array_equal(left, right)


def test_say_finds_what_warm_stored(tmp_path: Path, cli: CLI) -> None:
    phrases = tmp_path / "p.txt"
    phrases.write_text("Please  hold.\n")
    cache = ["--cache-dir", str(tmp_path / "c"), "-b", "espeak", "--voice", "en-gb"]
    assert cli(*["warm", str(phrases), *cache]).code == 0
    code, _, err = cli(*["say", " Please hold. ", "-o", str(tmp_path / "x.wav"), *cache])
    assert code == 0 and "from the cache" in err


def test_say_to_stdout_when_piped(tmp_path: Path) -> None:
    args = ["say", "Goodbye.", "-b", "espeak", "--cache-dir", str(tmp_path / "c")]
    result = subprocess.run(
        [sys.executable, "-m", "voiceprep", *args], capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == only_entry_pcm(tmp_path / "c")
    assert b"from the cache" not in result.stderr
    dash = subprocess.run(
        [sys.executable, "-m", "voiceprep", *args, "-o", "-"], capture_output=True, check=False
    )
    assert dash.stdout == result.stdout and b"from the cache" in dash.stderr


def test_say_refuses_to_write_audio_to_a_terminal(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "voiceprep", "say", "Hi.", "-b", "espeak"]
            + ["--cache-dir", str(tmp_path / "c")],
            stdout=follower,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert b"refusing to write binary audio to a terminal" in result.stderr
    assert not (tmp_path / "c").exists()  # nothing synthesized


def test_say_replaces_a_damaged_entry(tmp_path: Path, cli: CLI) -> None:
    cache_dir = tmp_path / "c"
    args = ["say", "Thanks for waiting.", "-b", "espeak", "--cache-dir", str(cache_dir)]
    assert cli(*[*args, "-o", str(tmp_path / "a.pcm")]).code == 0
    with AudioCache(cache_dir) as cache:
        path = cache.entries()[0].path
    blob = bytearray(path.read_bytes())
    middle = len(blob) // 2
    blob[middle : middle + 100] = bytes(b ^ 0xFF for b in blob[middle : middle + 100])
    path.write_bytes(bytes(blob))
    code, _, err = cli(*[*args, "-o", str(tmp_path / "b.pcm")])
    assert code == 0, err
    assert "synthesized with espeak" in err
    assert (tmp_path / "b.pcm").read_bytes() == (tmp_path / "a.pcm").read_bytes()
    with AudioCache(cache_dir) as cache:
        assert not cache.verify().damaged


@pytest.mark.parametrize(
    ("text", "message"),
    [("   ", "nothing to say"), ("Hi", "say: invalid -r/--rate 5: expected a sample")],
)
def test_say_usage_errors(tmp_path: Path, cli: CLI, text: str, message: str) -> None:
    rate = "24000" if text.strip() == "" else "5"
    args = ["say", text, "-b", "espeak", "-r", rate, "-o", str(tmp_path / "x.wav")]
    code, _, err = cli(*[*args, "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and message in err
    assert not (tmp_path / "x.wav").exists()
