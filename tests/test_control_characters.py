"""Control characters in phrases, voices and errors never reach a terminal raw: `cache ls`,
`warm --dry-run` and error lines escape them (JSON escapes them as JSON does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_voiceprep as voiceprep

from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key

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
