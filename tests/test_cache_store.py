"""AudioCache as a store: keys, round trips, format checks, LRU, verify, merge, schema."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from audiogen import dominant_frequency, pcm_to_array
from audiogen import sine_pcm as tone

from voiceprep.cache import AudioCache
from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    CacheVersionError,
    InputError,
    VoiceprepError,
)
from voiceprep.keys import BackendIdentity, cache_key

PIPER = BackendIdentity("piper", None, "en_US-joe-medium", {})
OPENAI = BackendIdentity("openai", "tts-1", "alloy", {"speed": 1.25, "instructions": "calm"})


def store(
    cache: AudioCache,
    text: str,
    freq: float = 440.0,
    *,
    rate: int = 24000,
    channels: int = 1,
    seconds: float = 0.5,
    identity: BackendIdentity = PIPER,
) -> str:
    key = cache_key(identity, text, rate=rate, channels=channels)
    pcm = tone(freq, seconds, rate, channels)
    cache.put(key, pcm, rate=rate, channels=channels, text=text, identity=identity)
    return key


@pytest.fixture
def cache(tmp_path: Path) -> AudioCache:
    with AudioCache(tmp_path / "cache") as opened:
        yield opened  # type: ignore[misc]


# --- keys ------------------------------------------------------------------------------


def test_golden_key_vectors() -> None:
    """Fixed on purpose: a change here means old caches stop matching (bump KEY_VERSION)."""
    assert (
        cache_key(PIPER, "One moment.", rate=24000, channels=1)
        == "eb6e34ece16c6598823be7dda6322c55cb1afa3d5745f4882a3526a4d6a1083a"
    )
    assert (
        cache_key(OPENAI, "  Café\u0301  au\tlait ", rate=16000, channels=2)
        == "d07662b4b4359449fb72163bf4af880cf179be120e69000c9501d71af5f33ace"
    )
    assert (
        cache_key(BackendIdentity("espeak"), "Ünïcödé – „quotes“", rate=8000, channels=1)
        == "8c9b788b92bd6bac79933afc19b128b0fc12e05727047b795d3c99213c4cfb49"
    )


def test_key_normalizes_text_and_option_order_but_not_format_or_voice() -> None:
    reordered = BackendIdentity("openai", "tts-1", "alloy", {"instructions": "calm", "speed": 1.25})
    # "e" + combining acute composes to "é" under NFC; whitespace runs collapse.
    assert cache_key(reordered, "Caf\u00e9\u0301 au lait", rate=16000, channels=2) == cache_key(
        OPENAI, "  Cafe\u0301\u0301  au\tlait ", rate=16000, channels=2
    )
    base = cache_key(PIPER, "Hello", rate=24000, channels=1)
    assert base != cache_key(PIPER, "Hello", rate=16000, channels=1)
    assert base != cache_key(PIPER, "Hello", rate=24000, channels=2)
    assert base != cache_key(
        BackendIdentity("piper", None, "other"), "Hello", rate=24000, channels=1
    )
    assert base != cache_key(PIPER, "hello", rate=24000, channels=1)


def test_computing_a_key_never_touches_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache_key(PIPER, "One moment.", rate=24000, channels=1)
    AudioCache(tmp_path / "nowhere")  # constructing a cache does not create it either
    assert list(tmp_path.iterdir()) == []


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "channels"), [(24000, 1), (16000, 2), (8000, 1)])
def test_put_then_get_returns_the_same_pcm_and_a_playable_wav(
    cache: AudioCache, rate: int, channels: int
) -> None:
    key = store(cache, "One moment.", 440.0, rate=rate, channels=channels)
    pcm = cache.get(key, rate=rate, channels=channels)
    assert pcm == tone(440.0, 0.5, rate, channels)
    samples = pcm_to_array(pcm, channels)
    assert dominant_frequency(samples[0], rate) == pytest.approx(440.0, abs=3)

    # The file on disk is an ordinary WAV any player (here libav) reads back.
    path = cache.wav_path(key)
    assert path.parent.name == key[:2] and path.suffix == ".wav"
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.rate, stream.channels, stream.codec_context.name) == (
            rate,
            channels,
            "pcm_s16le",
        )
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    assert decoded.astype("<i2").tobytes() == pcm


def test_entry_records_text_identity_format_duration_size_and_sha(cache: AudioCache) -> None:
    before = time.time()
    key = store(cache, "  Thank you\nfor calling. ", identity=OPENAI, seconds=1.5, rate=16000)
    entry = cache.entry(key)
    assert entry is not None
    assert entry.text == "  Thank you\nfor calling. "
    assert (entry.backend, entry.model, entry.voice) == ("openai", "tts-1", "alloy")
    assert entry.options == {"instructions": "calm", "speed": 1.25}
    assert entry.identity == OPENAI
    assert (entry.rate, entry.channels) == (16000, 1)
    assert entry.duration == pytest.approx(1.5)
    # The 44-byte header, the PCM, then the metadata chunk (8-byte chunk header + JSON).
    blob = entry.path.read_bytes()
    chunk = blob[44 + 16000 * 2 * 3 // 2 :]
    assert chunk[:4] == b"vpmd"
    assert entry.size == entry.path.stat().st_size == 44 + 16000 * 2 * 3 // 2 + len(chunk)
    assert len(chunk) == 8 + int.from_bytes(chunk[4:8], "little") + (chunk[4] & 1)
    assert entry.hits == 0 and before <= entry.created <= entry.last_used <= time.time()
    pcm = cache.get(key, rate=16000, channels=1)
    import hashlib

    assert entry.sha256 == hashlib.sha256(pcm or b"").hexdigest()
    # as_dict is JSON-ready
    assert json.loads(json.dumps(entry.as_dict()))["path"] == str(entry.path)


def test_hits_and_last_used_are_recorded(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        key = store(cache, "Hello")
        created = cache.entry(key).last_used  # type: ignore[union-attr]
        for _ in range(3):
            assert cache.get(key, rate=24000, channels=1) is not None
    with AudioCache(tmp_path) as reopened:  # written to the index by close()
        entry = reopened.entry(key)
        assert entry is not None and entry.hits == 3 and entry.last_used >= created
        assert reopened.stats().hits == 3


def test_missing_key_is_a_miss_and_a_missing_cache_is_not_created(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path / "absent")
    key = cache_key(PIPER, "Hello", rate=24000, channels=1)
    assert cache.get(key, rate=24000, channels=1) is None
    assert not cache.contains(key) and key not in cache
    assert cache.entry(key) is None and cache.entries() == [] and len(cache) == 0
    assert cache.verify().clean and cache.stats().entries == 0
    with pytest.raises(KeyError):
        cache.wav_path(key)
    assert not (tmp_path / "absent").exists()


def test_audio_stored_at_16k_is_never_handed_out_as_24k(cache: AudioCache) -> None:
    key = store(cache, "Hello", rate=16000)
    with pytest.raises(CacheFormatMismatchError, match="16000 Hz / 1 ch, asked for 24000 Hz"):
        cache.get(key, rate=24000, channels=1)
    with pytest.raises(CacheFormatMismatchError):
        cache.get(key, rate=16000, channels=2)
    assert cache.get(key, rate=16000, channels=1) == tone(440.0, 0.5, 16000)


def test_put_replaces_an_entry_and_removes_the_old_file(cache: AudioCache) -> None:
    key = store(cache, "Hello", 300.0)
    old = cache.wav_path(key)
    key_again = store(cache, "Hello", 600.0)
    assert key_again == key and len(cache) == 1
    assert not old.exists()
    samples = pcm_to_array(cache.get(key, rate=24000, channels=1) or b"", 1)
    assert dominant_frequency(samples[0], 24000) == pytest.approx(600.0, abs=3)


@pytest.mark.parametrize(
    ("pcm", "message"),
    [(b"", "empty audio is never cached"), (b"\x00\x01\x02", "not whole s16 frames")],
)
def test_empty_or_ragged_audio_is_refused(cache: AudioCache, pcm: bytes, message: str) -> None:
    key = cache_key(PIPER, "Hello", rate=24000, channels=1)
    with pytest.raises(CacheError, match=message):
        cache.put(key, pcm, rate=24000, channels=1, text="Hello", identity=PIPER)
    assert len(cache) == 0 and not list((cache.directory / "audio").rglob("*.*"))


@pytest.mark.parametrize(("rate", "channels"), [(24000, 3), (4000, 1), (24000, 0)])
def test_a_format_the_command_line_refuses_is_refused(
    cache: AudioCache, rate: int, channels: int
) -> None:
    key = cache_key(PIPER, "Hello", rate=rate, channels=channels)
    pcm = b"\x00\x00" * 6 * 100  # whole frames of 1, 2 or 3 channels
    with pytest.raises(CacheError, match="invalid (rate|channels)"):
        cache.put(key, pcm, rate=rate, channels=channels, text="Hello", identity=PIPER)
    assert len(cache) == 0


def test_a_key_that_is_not_a_sha256_is_refused(cache: AudioCache) -> None:
    with pytest.raises(CacheError, match="not a cache key"):
        cache.put("../../etc/x", tone(440), rate=24000, channels=1, text="x", identity=PIPER)


def test_cache_errors_are_voiceprep_errors_with_exit_code_1() -> None:
    for error in (CacheError, CacheCorruptError, CacheFormatMismatchError, CacheVersionError):
        assert issubclass(error, VoiceprepError) and error.exit_code == 1


# --- eviction ----------------------------------------------------------------------------


def test_lru_eviction_by_count_keeps_recently_used(tmp_path: Path) -> None:
    with AudioCache(tmp_path, max_entries=3) as cache:
        a, b, c = (store(cache, text) for text in ("a", "b", "c"))
        assert cache.get(a, rate=24000, channels=1) is not None  # a is now the most recent
        d = store(cache, "d")
        assert len(cache) == 3
        assert not cache.contains(b)
        assert all(cache.contains(k) for k in (a, c, d))
        assert len(list((tmp_path / "audio").rglob("*.wav"))) == 3


def test_lru_eviction_by_bytes(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "probe") as probe:  # one "phrase N" entry file's bytes
        one = probe.entry(store(probe, "phrase 0")).size  # type: ignore[union-attr]
    assert 44 + 24000 < one < 44 + 24000 + 1024  # 0.5 s at 24 kHz mono + its metadata
    with AudioCache(tmp_path / "cache", max_bytes=int(2.5 * one)) as cache:
        keys = [store(cache, f"phrase {i}") for i in range(5)]
        assert cache.stats().bytes == 2 * one
        assert [cache.contains(k) for k in keys] == [False, False, False, True, True]
        # An entry larger than the whole limit is not kept.
        big = store(cache, "long", seconds=2.0)
        assert not cache.contains(big) and cache.stats().bytes <= int(2.5 * one)


def test_prune_by_age_count_and_size(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        keys = [store(cache, f"phrase {i}") for i in range(6)]
        with sqlite3.connect(tmp_path / "index.sqlite") as conn:  # age two entries
            conn.execute(
                "UPDATE entries SET last_used = ? WHERE key IN (?, ?)",
                (time.time() - 3 * 86400, keys[4], keys[5]),
            )
        removed = cache.prune(older_than=2 * 86400)
        assert sorted(e.text for e in removed) == ["phrase 4", "phrase 5"]
        removed = cache.prune(max_entries=3)
        assert [e.text for e in removed] == ["phrase 0"]
        one = cache.entry(keys[2]).size  # type: ignore[union-attr]
        removed = cache.prune(max_bytes=2 * one)
        assert [e.text for e in removed] == ["phrase 1"]
        assert sorted(e.text for e in cache.entries()) == ["phrase 2", "phrase 3"]
        assert cache.verify().clean


def test_remove_and_clear(cache: AudioCache) -> None:
    keys = [store(cache, f"phrase {i}") for i in range(4)]
    assert cache.remove([keys[0], keys[0], "f" * 64]) == 1
    assert not cache.contains(keys[0]) and len(cache) == 3
    assert cache.clear() == 3
    assert len(cache) == 0 and cache.entries() == []
    assert not list((cache.directory / "audio").rglob("*.wav"))


# --- integrity ---------------------------------------------------------------------------


def test_altered_file_is_reported_by_verify_and_refused_by_get(cache: AudioCache) -> None:
    key = store(cache, "Hello")
    good = store(cache, "Goodbye")
    path = cache.wav_path(key)
    blob = bytearray(path.read_bytes())
    blob[1000] ^= 0xFF
    path.write_bytes(bytes(blob))

    with pytest.raises(CacheCorruptError, match="sha256"):
        cache.get(key, rate=24000, channels=1)
    report = cache.verify()
    assert report.damaged and [k for k, _ in report.corrupt] == [key]
    assert "sha256" in report.corrupt[0][1]
    assert cache.get(good, rate=24000, channels=1) is not None

    repaired = cache.verify(repair=True)
    assert repaired.repaired
    assert cache.get(key, rate=24000, channels=1) is None and not path.exists()
    assert cache.verify().clean


def test_truncated_or_foreign_files_are_damage(cache: AudioCache) -> None:
    truncated = store(cache, "one")
    foreign = store(cache, "two")
    cache.wav_path(truncated).write_bytes(cache.wav_path(truncated).read_bytes()[:30])
    header = cache.wav_path(foreign).read_bytes()
    cache.wav_path(foreign).write_bytes(b"ID3" + header[3:])  # same size, not a WAV
    report = cache.verify()
    reasons = dict(report.corrupt)
    assert "size 30 bytes" in reasons[truncated]
    assert "not a valid WAV" in reasons[foreign]
    with pytest.raises(CacheCorruptError):
        cache.get(foreign, rate=24000, channels=1)


def test_missing_files_orphans_and_stale_temps_are_found_and_repaired(cache: AudioCache) -> None:
    from voiceprep.cache import HOST_TAG

    gone = store(cache, "gone")
    kept = store(cache, "kept")
    cache.wav_path(gone).unlink()
    shard = cache.directory / "audio" / "ab"
    shard.mkdir(parents=True, exist_ok=True)
    # Unreferenced WAVs: one of unknown origin, one of a crashed writer (pid 999999999
    # does not exist on this host), one of a live writer that may be about to commit.
    foreign = shard / ("ab" + "0" * 62 + ".deadbeef.wav")
    crashed = shard / f"{'ab' + '2' * 62}.{HOST_TAG}-999999999-00000000abcd.wav"
    in_flight = shard / f"{'ab' + '3' * 62}.{HOST_TAG}-{os.getpid()}-00000000abcd.wav"
    temp = shard / f"{'ab' + '1' * 62}.{HOST_TAG}-999999999-00000000abcd.tmp"
    for path in (foreign, crashed, in_flight, temp):
        path.write_bytes(b"RIFF partial")

    assert cache.get(gone, rate=24000, channels=1) is None  # a missing file is a miss
    assert not cache.contains(gone)
    report = cache.verify()
    assert report.missing == [gone] and report.damaged
    assert report.orphans == sorted([foreign, crashed]) and report.stale_temps == [temp]
    cache.verify(repair=True)
    assert not foreign.exists() and not crashed.exists() and not temp.exists()
    assert in_flight.exists()
    after = cache.verify()
    assert after.clean and after.checked == 1
    assert cache.get(kept, rate=24000, channels=1) is not None
    # A minute later a live writer's unreferenced WAV is no longer "about to commit".
    an_hour_ago = time.time() - 3600
    os.utime(in_flight, (an_hour_ago, an_hour_ago))
    assert cache.verify().orphans == [in_flight]


def test_a_live_writers_temporary_is_not_stale(cache: AudioCache) -> None:
    from voiceprep.cache import HOST_TAG

    shard = cache.directory / "audio" / "cd"
    shard.mkdir(parents=True)
    temp = shard / f"{'cd' * 32}.{HOST_TAG}-{os.getpid()}-0000abcd.tmp"
    temp.write_bytes(b"RIFF in progress")
    store(cache, "Hello")
    assert cache.verify(repair=True).stale_temps == []
    cache.prune()
    assert temp.exists()


def test_running_totals_drift_is_found_and_repaired(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        store(cache, "Hello")
        with sqlite3.connect(tmp_path / "index.sqlite") as conn:
            conn.execute("UPDATE totals SET count = 7, size = 1")
        report = cache.verify()
        assert report.damaged and "running totals off by 6 entries" in report.index_errors[0]
        cache.verify(repair=True)
        assert cache.verify().clean and len(cache) == 1


# --- schema, damaged index ---------------------------------------------------------------


def test_index_from_a_newer_schema_is_refused_and_not_overwritten(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        store(cache, "Hello")
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("PRAGMA user_version = 3")
    before = (tmp_path / "index.sqlite").read_bytes()
    with AudioCache(tmp_path) as cache:
        with pytest.raises(CacheVersionError, match="schema version 3.*newer voiceprep"):
            cache.entries()
        with pytest.raises(CacheVersionError):
            store(cache, "Other")
    assert (tmp_path / "index.sqlite").read_bytes() == before


def test_a_file_that_is_not_an_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "index.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheCorruptError, match="index.*damaged|not a database"):
        AudioCache(tmp_path).entries()


# --- merge -------------------------------------------------------------------------------


def test_merge_imports_new_entries_with_metadata_and_skips_existing(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "shard1") as one:
        a = store(one, "a", 300.0)
        b = store(one, "b", 400.0)
        one.get(a, rate=24000, channels=1)
    with AudioCache(tmp_path / "shard2") as two:
        store(two, "b", 900.0)  # the same key, other audio: the target's copy wins
        c = store(two, "c", 500.0, identity=OPENAI)
    with AudioCache(tmp_path / "main") as main:
        first = main.merge(tmp_path / "shard1")
        second = main.merge(tmp_path / "shard2")
        assert (first.imported, first.skipped, first.failed) == (2, 0, [])
        assert (second.imported, second.skipped) == (1, 1)
        assert sorted(e.text for e in main.entries()) == ["a", "b", "c"]
        pcm_b = main.get(b, rate=24000, channels=1)
        assert dominant_frequency(pcm_to_array(pcm_b or b"", 1)[0], 24000) == pytest.approx(
            400.0, abs=3
        )
        merged_a = main.entry(a)
        assert merged_a is not None and merged_a.hits == 1
        merged_c = main.entry(c)
        assert merged_c is not None and merged_c.identity == OPENAI
        assert main.verify().clean


def test_merge_reports_damaged_source_entries_and_refuses_non_caches(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "src") as src:
        bad = store(src, "bad")
        bad_meta = store(src, "bad metadata")
        store(src, "good")
        path = src.wav_path(bad)
        end = 44 + 24000  # the last two bytes of the audio (the metadata chunk follows)
        blob = path.read_bytes()
        path.write_bytes(blob[: end - 2] + b"\x01\x02" + blob[end:])
        path = src.wav_path(bad_meta)
        path.write_bytes(path.read_bytes()[:-2] + b"\x01\x02")  # the metadata's end
    with AudioCache(tmp_path / "dst") as dst:
        report = dst.merge(tmp_path / "src")
        assert report.imported == 1 and sorted(k for k, _ in report.failed) == sorted(
            [bad, bad_meta]
        )
        reasons = dict(report.failed)
        assert "sha256" in reasons[bad] and "metadata" in reasons[bad_meta]
        assert not dst.contains(bad) and not dst.contains(bad_meta)
        with pytest.raises(InputError, match="not a voiceprep cache"):
            dst.merge(tmp_path / "empty")
        with pytest.raises(InputError, match="into itself"):
            dst.merge(tmp_path / "dst")


# --- threads -----------------------------------------------------------------------------


def test_threads_share_one_cache_object(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with AudioCache(tmp_path, max_entries=30) as cache:

        def work(i: int) -> bool:
            key = store(cache, f"phrase {i}", 200.0 + i)
            pcm = cache.get(key, rate=24000, channels=1)
            return pcm is None or pcm == tone(200.0 + i)

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(60)))
        assert len(cache) == 30 and cache.verify().clean


def test_a_forked_child_uses_its_own_connection(tmp_path: Path) -> None:
    with AudioCache(tmp_path) as cache:
        parent_key = store(cache, "from the parent", 300.0)
        pid = os.fork()
        if pid == 0:  # the child: read the parent's entry, write its own, exit
            ok = cache.get(parent_key, rate=24000, channels=1) == tone(300.0)
            store(cache, "from the child", 500.0)
            cache.close()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child_key = cache_key(PIPER, "from the child", rate=24000, channels=1)
        assert cache.get(child_key, rate=24000, channels=1) == tone(500.0)
        assert cache.get(parent_key, rate=24000, channels=1) == tone(300.0)
        assert cache.verify().clean


def test_close_waits_for_a_write_in_flight_in_another_thread(tmp_path: Path) -> None:
    """close() while another thread is inside a put's transaction: the put commits, the
    index is not left locked, and a new writer stores at once."""
    from voiceprep.cache import faults

    cache = AudioCache(tmp_path / "cache")
    key = store(cache, "replaced while closing", 300.0)
    inside, go = threading.Event(), threading.Event()

    def hold(point: str) -> None:
        if point == "doomed" and threading.current_thread().name == "writer":
            inside.set()
            go.wait(10)

    outcome: list[object] = []

    def replace() -> None:
        try:
            outcome.append(store(cache, "replaced while closing", 600.0))
        except Exception as exc:  # noqa: BLE001  the failure is the outcome to check
            outcome.append(exc)

    faults.install(hold)
    try:
        writer = threading.Thread(target=replace, name="writer")
        writer.start()
        assert inside.wait(10)
        cache.close()
        go.set()
        writer.join(10)
    finally:
        faults.install(None)
    assert outcome == [key]
    with AudioCache(tmp_path / "cache") as again:
        assert again.get(key, rate=24000, channels=1) == tone(600.0)
        store(again, "a new writer is not blocked", 700.0)
        assert len(again) == 2 and again.verify().clean


def test_closing_while_another_thread_reads_never_fails_its_reads(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "cache") as cache:
        keys = [store(cache, f"read while closing {i}", 200.0 + 50 * i) for i in range(4)]
        stop = threading.Event()
        errors: list[Exception] = []
        reads = 0

        def read() -> None:
            nonlocal reads
            while not stop.is_set():
                for i, key in enumerate(keys):
                    try:
                        assert cache.get(key, rate=24000, channels=1) == tone(200.0 + 50 * i)
                        assert cache.keys() == set(keys) and len(cache) == 4
                    except Exception as exc:  # noqa: BLE001  any failure fails the test
                        errors.append(exc)
                        return
                    reads += 1

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not errors:
            cache.close()
        stop.set()
        for reader in readers:
            reader.join(10)
        assert not errors, errors[:3]
        assert reads > 0
        assert cache.verify().clean
