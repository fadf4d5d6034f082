"""Text that is not valid Unicode (arguments that are not UTF-8, a lone surrogate in a JSON
phrase list, TTSAudioCache given such text) is refused: one clear line and exit 2, no
traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import run_voiceprep as voiceprep

from voiceprep.errors import PhraseListError, UsageError
from voiceprep.phrases import read_phrase_list
from voiceprep.tts_cache import TTSAudioCache


def one_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("voiceprep: error: "), err
    return lines[0]


def test_cache_get_of_text_that_is_not_utf8(tmp_path: Path) -> None:
    result = voiceprep("cache", "get", b"caf\xe9", "-o", str(tmp_path / "x.wav"),
                       "--cache-dir", str(tmp_path), "-b", "espeak")  # fmt: skip
    assert result.returncode == 2
    assert one_error(result) == "voiceprep: error: text 'caf\\xe9' is not valid UTF-8"


def test_a_voice_that_is_not_utf8(tmp_path: Path) -> None:
    result = voiceprep("say", "Hello.", "-o", str(tmp_path / "x.wav"), "--voice", b"\xff",
                       "--cache-dir", str(tmp_path), "-b", "espeak")  # fmt: skip
    assert result.returncode == 2
    assert one_error(result) == "voiceprep: error: voice '\\xff' is not valid UTF-8"


def test_warm_with_a_voice_that_is_not_utf8(tmp_path: Path) -> None:
    result = voiceprep("warm", "-", "--voice", b"\xff", "--cache-dir", str(tmp_path),
                       "-b", "espeak", input=b"Hello.\n")  # fmt: skip
    assert result.returncode == 2 and "is not valid UTF-8" in one_error(result)


def test_a_lone_surrogate_in_a_json_phrase_list(tmp_path: Path) -> None:
    phrases = tmp_path / "p.json"
    phrases.write_bytes(b'["Hello.",\n "bad \\ud800 text"]')

    with pytest.raises(PhraseListError, match=r"p.json:2: text 'bad \\ud800 text' holds a lone"):
        read_phrase_list(phrases)
    result = voiceprep("warm", str(phrases), "--dry-run", "--cache-dir", str(tmp_path / "c"),
                       "-b", "espeak")  # fmt: skip
    assert result.returncode == 2 and "p.json:2" in one_error(result)


async def test_tts_audio_cache_raises_voiceprep_errors_for_invalid_text(tmp_path: Path) -> None:
    from voiceprep.backends import get_backend

    cache = TTSAudioCache(get_backend("espeak"), directory=tmp_path)
    try:
        with pytest.raises(UsageError, match="lone surrogate"):
            await cache.fetch("caf\ud800")
        with pytest.raises(UsageError, match="not valid UTF-8"):
            await cache.fetch("x", voice_id="\udcff")
        assert not cache.contains("Hello.")  # still usable
    finally:
        cache.close()
