"""Self-describing entry files: the metadata chunk, read_entry, entry_bytes, import_entry,
keys(), loudness, and caches written before files described themselves (schema 1)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from audiogen import sine_pcm
from cache_v1 import make_v1_cache

from voiceprep.cache import SCHEMA_VERSION, AudioCache, CacheEntry, read_entry
from voiceprep.errors import CacheCorruptError
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.wav import parse_wav_header, wav_bytes

IDENTITY = BackendIdentity("openai", "tts-1", "alloy", {"speed": 1.25})


def put(cache: AudioCache, text: str, freq: float = 440.0, **kwargs: object) -> str:
    rate = int(kwargs.pop("rate", 24000))  # type: ignore[call-overload]
    channels = int(kwargs.pop("channels", 1))  # type: ignore[call-overload]
    key = cache_key(IDENTITY, text, rate=rate, channels=channels)
    pcm = sine_pcm(freq, 0.5, rate, channels)
    cache.put(key, pcm, rate=rate, channels=channels, text=text, identity=IDENTITY, **kwargs)  # type: ignore[arg-type]
    return key


def ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    info: dict[str, object] = json.loads(out)
    return info


def ffmpeg_pcm(path: Path) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout


def pyav_pcm(path: Path) -> bytes:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    return np.concatenate(frames).astype("<i2").tobytes()


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (16000, 2)])
def test_entry_file_decodes_exactly_like_a_plain_wav_in_ffprobe_ffmpeg_and_pyav(
    tmp_path: Path, rate: int, channels: int
) -> None:
    with AudioCache(tmp_path / "cache") as cache:
        key = put(cache, "Please hold.", rate=rate, channels=channels)
        entry_path = cache.wav_path(key)
        pcm = cache.get(key, rate=rate, channels=channels)
    assert pcm is not None
    plain = tmp_path / "plain.wav"
    plain.write_bytes(wav_bytes(pcm, rate=rate, channels=channels))

    assert entry_path.read_bytes()[: 44 + len(pcm)][44:] == pcm  # header, audio, then chunk
    ours, reference = ffprobe(entry_path), ffprobe(plain)
    stream, ref_stream = ours["streams"][0], reference["streams"][0]  # type: ignore[index]
    for field in ("codec_name", "sample_rate", "channels", "duration_ts", "duration"):
        assert stream[field] == ref_stream[field], field  # type: ignore[index]
    assert stream["codec_name"] == "pcm_s16le"  # type: ignore[index]
    assert ours["format"]["duration"] == reference["format"]["duration"]  # type: ignore[index]
    assert ffmpeg_pcm(entry_path) == ffmpeg_pcm(plain) == pcm
    assert pyav_pcm(entry_path) == pcm


def test_read_entry_returns_the_metadata_and_checks_everything(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "cache") as cache:
        key = put(cache, "  Thank you\nfor calling. ", loudness=-18.5)
        entry = cache.entry(key)
        data = cache.entry_bytes(key)
    assert entry is not None and data == entry.path.read_bytes()
    meta, pcm = read_entry(data)
    assert meta.key == key and meta.text == "  Thank you\nfor calling. "
    assert meta.identity == IDENTITY and (meta.rate, meta.channels) == (24000, 1)
    assert meta.sha256 == entry.sha256 and meta.created == entry.created
    assert meta.loudness == -18.5
    assert pcm == sine_pcm(440.0, 0.5, 24000, 1)

    fmt = parse_wav_header(data)
    end = fmt.data_offset + fmt.data_bytes
    altered_audio = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    altered_text = data.replace(b"for calling", b"for calking")
    plain = wav_bytes(pcm, rate=24000, channels=1)
    for bad, reason in [
        (altered_audio, "sha256"),
        (altered_text, "key does not match"),
        (data[: end + 20], "metadata"),
        (plain, "no voiceprep metadata"),
        (b"not audio at all", "not a valid WAV"),
        (b"", "not a valid WAV"),
    ]:
        with pytest.raises(CacheCorruptError, match=reason):
            read_entry(bad)


def test_import_entry_copies_an_entry_between_caches_once(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "a") as source:
        key = put(source, "Goodbye.", 660.0, loudness=-20.0)
        data = source.entry_bytes(key)
        original = source.entry(key)
    with AudioCache(tmp_path / "b") as target:
        imported = target.import_entry(data)
        assert imported is not None and imported.key == key
        assert target.import_entry(data) is None  # already there: nothing changes
        assert target.keys() == {key} and len(target) == 1
        assert target.get(key, rate=24000, channels=1) == sine_pcm(660.0, 0.5, 24000, 1)
        copied = target.entry(key)
        assert copied is not None and original is not None
        for field in ("text", "backend", "model", "voice", "options", "sha256", "created"):
            assert getattr(copied, field) == getattr(original, field), field
        assert copied.loudness == -20.0 and copied.size == len(data)
        assert target.verify().clean
        with pytest.raises(CacheCorruptError):
            target.import_entry(data[:-3])
        assert len(target) == 1
    with pytest.raises(KeyError):
        AudioCache(tmp_path / "b").entry_bytes("0" * 64)


def test_import_entries_stores_a_batch_and_says_what_became_of_each_file(
    tmp_path: Path,
) -> None:
    with AudioCache(tmp_path / "a") as source:
        keys = [put(source, f"Prompt {i}.", 300.0 + 50 * i) for i in range(5)]
        files = [source.entry_bytes(key) for key in keys]
    with AudioCache(tmp_path / "b") as target:
        assert target.import_entry(files[0]) is not None  # already cached before the batch
        batch = [files[0], files[1], files[2], files[2], files[3][:-3], files[4]]
        names = [keys[0], keys[1], keys[2], keys[2], keys[3], keys[1]]  # the last one lies
        outcomes = target.import_entries(batch, keys=names)
        assert outcomes[0] is None  # already there: left alone
        assert isinstance(outcomes[1], CacheEntry) and outcomes[1].key == keys[1]
        assert isinstance(outcomes[2], CacheEntry) and outcomes[2].key == keys[2]
        assert outcomes[3] is None  # the same file twice in one batch: stored once
        assert isinstance(outcomes[4], CacheCorruptError)  # truncated
        assert isinstance(outcomes[5], CacheCorruptError)  # a valid entry of another key
        assert "another key" in str(outcomes[5])
        assert target.keys() == {keys[0], keys[1], keys[2]}
        for i in range(3):
            assert target.get(keys[i], rate=24000, channels=1) == sine_pcm(
                300.0 + 50 * i, 0.5, 24000, 1
            )
        report = target.verify()
        assert report.clean, report.as_dict()
        entry_files = sorted((tmp_path / "b" / "audio").rglob("*.wav"))
        assert len(entry_files) == 3  # nothing refused or duplicated left a file behind
        assert target.import_entries([]) == []


def test_import_entries_keeps_the_limits(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "a") as source:
        keys = [put(source, f"Prompt {i}.", 300.0 + 50 * i) for i in range(5)]
        files = [source.entry_bytes(key) for key in keys]
    with AudioCache(tmp_path / "b", max_entries=3) as target:
        outcomes = target.import_entries(files)
        assert all(isinstance(outcome, CacheEntry) for outcome in outcomes)
        assert target.keys() == set(keys[2:])  # the limit holds after the batch
        assert target.verify().clean


def test_import_entries_that_fail_midway_store_nothing_of_the_batch(tmp_path: Path) -> None:
    """A real kernel error (EFBIG under RLIMIT_FSIZE) on the third file of a batch, in
    another process: one CacheError, and neither a row nor a file of the batch is left."""
    with AudioCache(tmp_path / "a") as source:
        small = [put(source, f"Short {i}.", 300.0 + 50 * i) for i in range(3)]
        big = cache_key(IDENTITY, "Long.", rate=24000, channels=1)
        pcm = sine_pcm(500.0, 2.0, 24000, 1)  # 96 KB: over the limit below
        source.put(big, pcm, rate=24000, channels=1, text="Long.", identity=IDENTITY)
        batch = tmp_path / "batch"
        batch.mkdir()
        for i, key in enumerate([small[0], small[1], big, small[2]]):
            (batch / f"{i}.wav").write_bytes(source.entry_bytes(key))
    target = tmp_path / "b"
    with AudioCache(target) as cache:
        put(cache, "Kept.")
    script = (
        "import pathlib, resource, signal, sys\n"
        "from voiceprep.cache import AudioCache\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "files = [p.read_bytes() for p in sorted(pathlib.Path(sys.argv[2]).iterdir())]\n"
        "cache = AudioCache(sys.argv[1])\n"
        "cache.entries()\n"  # opens the index before the limit
        "resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000))\n"
        "cache.import_entries(files)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target), str(batch)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "voiceprep.errors.CacheError" in proc.stderr and "nothing was stored" in proc.stderr
    with AudioCache(target) as cache:
        assert [entry.text for entry in cache.entries()] == ["Kept."]
        assert cache.verify().clean
    assert len(list((target / "audio").rglob("*.wav"))) == 1
    assert not list((target / "audio").rglob("*.tmp"))


def test_keys_and_loudness(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        assert cache.keys() == set()
        loud = put(cache, "one", loudness=-16.0)
        quiet = put(cache, "two")
        assert cache.keys() == {loud, quiet}
        entries = {e.key: e for e in cache.entries()}
        assert entries[loud].loudness == -16.0 and entries[quiet].loudness is None
        assert entries[loud].as_dict()["loudness"] == -16.0
        assert read_entry(entries[loud].path.read_bytes())[0].loudness == -16.0


# --- schema 1 caches --------------------------------------------------------------------


def v1_items() -> list[tuple[str, bytes]]:
    return [(f"old phrase {i}", sine_pcm(300.0 + 50 * i, 0.5, 24000, 1)) for i in range(3)]


def test_an_old_format_cache_is_read_without_writing_to_it(tmp_path: Path) -> None:
    keys = make_v1_cache(tmp_path, v1_items(), identity=IDENTITY)
    before = (tmp_path / "index.sqlite").read_bytes()
    with AudioCache(tmp_path) as cache:
        entries = {e.text: e for e in cache.entries()}
        assert set(entries) == {text for text, _ in v1_items()}
        assert all(e.loudness is None for e in entries.values())
        assert cache.keys() == set(keys.values()) and len(cache) == 3
        assert all(cache.contains(key) for key in keys.values())
        assert cache.stats().entries == 3
        report = cache.verify()
        assert not report.damaged and report.old_format == 3
        data = cache.entry_bytes(keys["old phrase 1"])  # built from the row
    meta, pcm = read_entry(data)
    assert meta.text == "old phrase 1" and pcm == v1_items()[1][1]
    # Look-only use changed nothing: still schema 1, byte for byte.
    assert (tmp_path / "index.sqlite").read_bytes() == before
    with AudioCache(tmp_path) as cache:
        for text, pcm in v1_items():
            assert cache.get(keys[text], rate=24000, channels=1) == pcm


def test_an_old_format_cache_is_migrated_by_a_write_and_upgraded_by_repair(
    tmp_path: Path,
) -> None:
    keys = make_v1_cache(tmp_path, v1_items(), identity=IDENTITY)
    with AudioCache(tmp_path) as cache:
        new = put(cache, "a new phrase", loudness=-23.0)
        with sqlite3.connect(tmp_path / "index.sqlite") as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert cache.entry(new).loudness == -23.0  # type: ignore[union-attr]
        old_files = [cache.wav_path(key) for key in keys.values()]
        report = cache.verify(repair=True)
        assert report.repaired and report.old_format == 3
        for text, pcm in v1_items():
            entry = cache.entry(keys[text])
            assert entry is not None and entry.hits == int(text[-1])  # hit counts kept
            meta, stored = read_entry(entry.path.read_bytes())
            assert meta.text == text and stored == pcm
            assert cache.get(keys[text], rate=24000, channels=1) == pcm
        assert not any(path.exists() for path in old_files)  # replaced, after the commit
        after = cache.verify()
        assert after.clean and after.old_format == 0 and after.checked == 4
