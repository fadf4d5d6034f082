"""The index rebuilt from the entry files alone; a damaged index never costs audio.

Issue 10 item 1/4 and issue 12 item 5: a deleted, garbage or 0-byte index; entries moved
file by file into an empty directory; look-only commands never write; repair moves a
damaged index aside and deletes no audio it could index again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from audiogen import sine_pcm
from cache_v1 import make_v1_cache
from helpers import CLI

from voiceprep.cache import AudioCache
from voiceprep.errors import CacheCorruptError, CacheIndexError
from voiceprep.keys import BackendIdentity, cache_key

IDENTITY = BackendIdentity("piper", None, "en_US-joe-medium", {"length_scale": 1.1})
TEXTS = [f"Menu option {i}." for i in range(6)]


def fill(directory: Path) -> dict[str, bytes]:
    """Six entries, two of them used; returns {key: the exact entry file bytes}."""
    with AudioCache(directory) as cache:
        for i, text in enumerate(TEXTS):
            key = cache_key(IDENTITY, text, rate=16000, channels=1)
            pcm = sine_pcm(200.0 + 40 * i, 0.4, 16000, 1)
            cache.put(key, pcm, rate=16000, channels=1, text=text, identity=IDENTITY)
        for key in list(cache.keys())[:2]:
            cache.get(key, rate=16000, channels=1)
        return {key: cache.entry_bytes(key) for key in sorted(cache.keys())}


def assert_all_hits(directory: Path, files: dict[str, bytes]) -> None:
    with AudioCache(directory) as cache:
        assert cache.keys() == set(files)
        for i, text in enumerate(TEXTS):
            key = cache_key(IDENTITY, text, rate=16000, channels=1)
            assert cache.get(key, rate=16000, channels=1) == sine_pcm(200.0 + 40 * i, 0.4, 16000, 1)
            assert cache.entry_bytes(key) == files[key]  # the same bytes, file and all
            entry = cache.entry(key)
            assert entry is not None and entry.text == text and entry.identity == IDENTITY
        report = cache.verify()
        assert report.clean and report.checked == len(TEXTS), report.as_dict()


def audio_files(directory: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in (directory / "audio").rglob("*.wav"))


def test_a_deleted_index_is_rebuilt_and_every_entry_is_still_a_hit(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    files = fill(directory)
    for name in os.listdir(directory):
        if name.startswith("index.sqlite"):
            os.unlink(directory / name)
    with AudioCache(directory) as cache:
        assert cache.keys() == set()  # no index: an empty cache, until repaired
        report = cache.verify(repair=True)
        assert report.rebuilt and report.repaired and report.moved_aside is None
    assert_all_hits(directory, files)


def test_garbage_over_the_index_is_a_clear_error_naming_the_repair(
    tmp_path: Path, cli: CLI
) -> None:
    directory = tmp_path / "cache"
    files = fill(directory)
    garbage = b"\x00garbage, not sqlite\xff" * 300
    (directory / "index.sqlite").write_bytes(garbage)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (directory / name).unlink(missing_ok=True)
    before = audio_files(directory)

    with pytest.raises(CacheIndexError, match="verify --repair") as caught:
        AudioCache(directory).entries()
    assert isinstance(caught.value, CacheCorruptError) and "\n" not in str(caught.value)
    listed = cli("cache", "ls", "--cache-dir", directory)
    assert listed.code == 1 and "Traceback" not in listed.err
    assert "damaged" in listed.err and "voiceprep cache verify --repair" in listed.err
    assert listed.err.count("\n") == 1
    assert (directory / "index.sqlite").read_bytes() == garbage  # looking wrote nothing

    repaired = cli.process("cache", "verify", "--repair", "--cache-dir", directory)
    assert repaired.code == 0, repaired.err
    assert audio_files(directory) == before  # no audio deleted
    aside = [p for p in directory.iterdir() if p.name.startswith("index.sqlite.moved-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # moved aside, not deleted
    assert_all_hits(directory, files)


def test_a_zero_byte_index_is_damage_not_an_empty_cache(tmp_path: Path, cli: CLI) -> None:
    directory = tmp_path / "cache"
    files = fill(directory)
    for name in os.listdir(directory):
        if name.startswith("index.sqlite"):
            os.unlink(directory / name)
    (directory / "index.sqlite").write_bytes(b"")
    before = audio_files(directory)

    for argv in (["ls"], ["stats"], ["verify"]):
        result = cli("cache", *argv, "--cache-dir", directory)
        assert result.code == 1, argv
        assert "0 bytes" in result.err and "verify --repair" in result.err
        assert "Traceback" not in result.err
    with pytest.raises(CacheIndexError):
        AudioCache(directory).put(
            "a" * 64, b"\0\0", rate=16000, channels=1, text="x", identity=IDENTITY
        )
    assert (directory / "index.sqlite").stat().st_size == 0  # nothing wrote a schema
    assert sorted(os.listdir(directory)) == ["audio", "index.sqlite"]
    assert audio_files(directory) == before

    repaired = cli.process("cache", "verify", "--repair", "--cache-dir", directory)
    assert repaired.code == 0, repaired.err
    assert audio_files(directory) == before  # repair deleted no audio
    assert_all_hits(directory, files)


def test_entries_moved_file_by_file_into_an_empty_directory_are_all_found(
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    files = fill(source)
    for path in (source / "audio").rglob("*.wav"):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, destination)
    with AudioCache(target) as cache:
        report = cache.rebuild()
        assert report.indexed == len(TEXTS) and report.unreadable == []
        assert report.moved_aside is None
        # Hit counts are lost, last use comes from the files' times.
        for entry in cache.entries():
            assert entry.hits == 0 and entry.last_used == pytest.approx(entry.path.stat().st_mtime)
    assert_all_hits(target, files)


def test_rebuild_of_an_old_format_cache_upgrades_it_and_keeps_hits(tmp_path: Path) -> None:
    items = [(f"old {i}", sine_pcm(300.0 + 30 * i, 0.3, 24000, 1)) for i in range(3)]
    keys = make_v1_cache(tmp_path, items, identity=IDENTITY)
    with AudioCache(tmp_path) as cache:
        report = cache.rebuild()
        assert report.indexed == 3 and report.upgraded == 3
        assert report.moved_aside is not None and report.moved_aside.exists()
        for n, (text, pcm) in enumerate(items):
            entry = cache.entry(keys[text])
            assert entry is not None and entry.hits == n  # the old index was readable
            assert cache.get(keys[text], rate=24000, channels=1) == pcm
        assert cache.verify().clean


def test_unreadable_files_are_reported_and_left_alone_by_rebuild(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    files = fill(directory)
    stray = directory / "audio" / "ab" / ("ab" + "0" * 62 + ".1a2b3c4d-1-00000000abcd.wav")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"RIFF not really")
    with AudioCache(directory) as cache:
        report = cache.rebuild()
    assert report.indexed == len(TEXTS) and [p for p, _ in report.unreadable] == [stray]
    assert stray.exists()  # a rebuild never deletes a file
    stray.unlink()
    assert_all_hits(directory, files)


def test_a_newer_index_is_never_rebuilt_over(tmp_path: Path) -> None:
    import sqlite3

    from voiceprep.errors import CacheVersionError

    directory = tmp_path / "cache"
    fill(directory)
    with sqlite3.connect(directory / "index.sqlite") as db:
        db.execute("PRAGMA user_version = 50")
    db.close()
    before = (directory / "index.sqlite").read_bytes()
    with AudioCache(directory) as cache, pytest.raises(CacheVersionError):
        cache.rebuild()
    assert (directory / "index.sqlite").read_bytes() == before
