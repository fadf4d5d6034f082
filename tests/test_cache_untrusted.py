"""The index is untrusted input (issue 12 item 1): a row can never make voiceprep read,
replace or delete a path outside the cache, nor read a device forever."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from audiogen import sine_pcm
from helpers import CLI

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.errors import CacheCorruptError, CacheError, CacheIndexError
from voiceprep.keys import cache_key

IDENTITY = get_backend("espeak").identity(None)  # what `cache get -b espeak` looks up
RATE = 24000


def key_of(text: str) -> str:
    return cache_key(IDENTITY, text, rate=RATE, channels=1)


def put(cache: AudioCache, text: str) -> str:
    key = key_of(text)
    cache.put(
        key, sine_pcm(440.0, 0.5, RATE, 1), rate=RATE, channels=1, text=text, identity=IDENTITY
    )
    return key


def point_row_at(directory: Path, key: str, file: str) -> None:
    with sqlite3.connect(directory / "index.sqlite") as db:
        db.execute("UPDATE entries SET file = ? WHERE key = ?", (file, key))
    db.close()


def hostile_rows(tmp_path: Path, directory: Path, key: str) -> dict[str, Callable[[], str]]:
    """Ways a row can point outside the cache: each sets it up, returns the row's file."""
    outside = tmp_path / "outside.wav"

    def symlinked_file() -> str:
        link = directory / "audio" / key[:2] / f"{key}.0a0b0c0d-1-00000000abcd.wav"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)
        return link.relative_to(directory).as_posix()

    def symlinked_shard() -> str:
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        name = f"{key}.0a0b0c0d-1-00000000abcd.wav"
        (tmp_path / "elsewhere" / name).write_bytes(outside.read_bytes())
        shard = directory / "audio" / key[:2]
        for item in shard.iterdir():
            item.unlink()
        shard.rmdir()
        shard.symlink_to(tmp_path / "elsewhere")
        return f"audio/{key[:2]}/{name}"

    return {
        "absolute": lambda: str(outside),
        "dotdot": lambda: "../outside.wav",
        "audio-dotdot": lambda: "audio/../../outside.wav",
        "shard-dotdot": lambda: f"audio/{key[:2]}/../../../outside.wav",
        "device": lambda: "/dev/zero",
        "symlinked-file": symlinked_file,
        "symlinked-shard": symlinked_shard,
    }


CASES = [
    "absolute",
    "dotdot",
    "audio-dotdot",
    "shard-dotdot",
    "device",
    "symlinked-file",
    "symlinked-shard",
]


@pytest.mark.parametrize("case", CASES)
def test_a_row_pointing_outside_is_corrupt_never_followed(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        victim = put(cache, "victim")
        kept = put(cache, "kept")
        real = cache.wav_path(victim).read_bytes()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(real)  # a valid entry file, to be sure it is refused for its place
    (tmp_path / "elsewhere").mkdir()
    point_row_at(directory, victim, hostile_rows(tmp_path, directory, victim)[case]())
    watched = [outside, *(tmp_path / "elsewhere").iterdir()]

    with AudioCache(directory) as cache:
        with pytest.raises(CacheCorruptError, match="refused"):
            cache.get(victim, rate=RATE, channels=1)
        with pytest.raises(CacheCorruptError):
            cache.entry_bytes(victim)
        assert not cache.contains(victim) and not cache.is_intact(victim)
        report = cache.verify()
        assert [key for key, _ in report.corrupt] == [victim]
        assert "refused" in dict(report.corrupt)[victim]
        repaired = cache.verify(repair=True)
        assert repaired.repaired and victim not in cache.keys()  # noqa: SIM118 - the index, not the files
        assert cache.get(kept, rate=RATE, channels=1) is not None
        assert cache.verify().clean or case == "symlinked-file"  # the link is a leftover
    for path in watched:
        assert path.exists() and path.read_bytes() == real, case


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("action", ["remove", "clear", "prune", "replace", "evict"])
def test_removing_or_replacing_such_a_row_never_deletes_outside(
    tmp_path: Path, case: str, action: str
) -> None:
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        victim = put(cache, "victim")
        real = cache.wav_path(victim).read_bytes()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(real)
    (tmp_path / "elsewhere").mkdir()
    point_row_at(directory, victim, hostile_rows(tmp_path, directory, victim)[case]())
    watched = [outside, *(tmp_path / "elsewhere").iterdir()]
    with AudioCache(directory, max_entries=1) as cache:
        if action == "remove":
            assert cache.remove([victim]) == 1
        elif action == "clear":
            assert cache.clear() == 1
        elif action == "prune":
            assert len(cache.prune(max_entries=0)) == 1
        elif action == "replace" and case == "symlinked-shard":
            # Never written through a link out of the cache: one clear error instead.
            with pytest.raises(CacheError, match="not a directory of this cache"):
                put(cache, "victim")
        elif action == "replace":  # what `warm` does with an entry it cannot read
            put(cache, "victim")
            assert cache.get(victim, rate=RATE, channels=1) == sine_pcm(440.0, 0.5, RATE, 1)
        else:
            put(cache, "newer")  # max_entries=1 evicts the victim
            assert victim not in cache.keys()  # noqa: SIM118 - the index, not the files
    for path in watched:
        assert path.exists() and path.read_bytes() == real, (case, action)


def test_cli_get_export_and_merge_of_a_device_row_end_with_an_error(
    tmp_path: Path, cli: CLI
) -> None:
    """`cache get`, `export` and `merge` used to read /dev/zero forever."""
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        victim = put(cache, "victim")
        put(cache, "kept")
    point_row_at(directory, victim, "/dev/zero")
    got = cli.process(  # a child process: reading the device forever fails its timeout
        "cache", "get", "victim", "-b", "espeak", "-o", tmp_path / "v.wav", "--cache-dir", directory
    )
    assert got.code == 1 and "refused" in got.err and "Traceback" not in got.err
    assert not (tmp_path / "v.wav").exists()
    exported = cli.process("cache", "export", tmp_path / "export", "--cache-dir", directory)
    assert exported.code == 1 and "Traceback" not in exported.err
    merged_into = tmp_path / "other"
    merged = cli.process("cache", "merge", directory, "--cache-dir", merged_into)
    assert "Traceback" not in merged.err and "refused" in merged.err
    with AudioCache(merged_into) as other:
        assert other.keys() == {key_of("kept")}


@pytest.mark.parametrize("what", ["fifo", "garbage", "symlink to /dev/zero"])
def test_an_index_file_replaced_under_an_open_cache_is_damage_at_the_next_read(
    tmp_path: Path, what: str
) -> None:
    """Connections opened before would answer from SQLite's page cache: the next read
    says the index is damaged (naming the repair), and never blocks on a FIFO."""
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        key = put(cache, "Before the damage.")
        assert cache.get(key, rate=24000, channels=1) is not None
        index = directory / "index.sqlite"
        if what == "garbage":  # overwritten in place: the connection's file is the same
            index.write_bytes(b"\x00not sqlite\xff" * 400)
        else:
            index.unlink()
            if what == "fifo":
                os.mkfifo(index)
            else:
                index.symlink_to("/dev/zero")
        outcome: list[object] = []

        def read() -> None:
            try:
                outcome.append(cache.get(key, rate=24000, channels=1))
            except CacheError as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(20)
        assert not reader.is_alive(), "the read blocked"
        (error,) = outcome
        assert isinstance(error, CacheIndexError) and "verify --repair" in str(error), error
