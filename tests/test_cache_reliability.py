"""AudioCache under crashes, concurrency, full disks, read-only media and live readers.

Real processes on real files: tests/cache_worker.py is the other process.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_worker import CHANNELS, IDENTITY, RATE, key_for, pcm_for

from voiceprep.cache import AudioCache, faults
from voiceprep.cache import entries as cache_entries
from voiceprep.errors import CacheError, CacheReadOnlyError

WORKER = str(Path(__file__).with_name("cache_worker.py"))
NOBODY = 65534


def run_worker(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, WORKER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


# --- crashes -----------------------------------------------------------------------------


KILLS = [(point, nth) for point in faults.POINTS for nth in (1, 4, 45)]


def test_writer_killed_at_each_named_point_loses_nothing_committed(tmp_path: Path) -> None:
    """SIGKILL a writer at every named point of a put (tmp written, renamed, committed),
    early and once eviction runs; every entry it reported committed is whole and correct."""
    directory = tmp_path / "cache"
    max_entries = 40
    committed: list[int] = []
    next_index = 0
    for point, nth in KILLS:
        proc = subprocess.Popen(
            [sys.executable, WORKER, "killed-at", str(directory), str(next_index)]
            + [str(max_entries), point, str(nth)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (point, nth, err)
        done = [int(line) for line in out.split() if line.isdigit()]
        committed += done
        next_index = (done[-1] if done else next_index) + 2  # one more may be committed

        with AudioCache(directory) as cache:
            report = cache.verify()
            assert not report.damaged, report.as_dict()
            entries = {entry.text: entry for entry in cache.entries()}
            # LRU by count: the newest entries this writer reported committed must all be
            # there (one more may have been committed unreported and evicted one of them;
            # our own reads below make older entries recent, so only this run is certain).
            for index in done[-(max_entries - 1) :]:
                assert f"phrase {index}" in entries
            for text, entry in entries.items():
                pcm = cache.get(entry.key, rate=RATE, channels=CHANNELS)
                assert pcm == pcm_for(text), f"{text}: partial or wrong audio served"
            assert len(cache) <= max_entries

    with AudioCache(directory) as cache:
        first = cache.verify()
        # Leftovers of the killed writers are found (their pids are dead) and repaired.
        repaired = cache.verify(repair=True)
        assert repaired.repaired and not repaired.damaged
        after = cache.verify()
        assert after.clean, after.as_dict()
        assert all(not name.endswith(".tmp") for name in files_under(directory))
        assert len(cache.entries()) == after.checked
    assert first.checked >= max_entries - 1
    # The kills did land mid-write: crashed writers' temporaries were found (and removed).
    assert first.stale_temps and repaired.stale_temps == first.stale_temps


def test_a_drop_killed_before_its_commit_is_rolled_back_by_the_next_user(
    tmp_path: Path,
) -> None:
    """A writer SIGKILLed while evicting, after renaming the evicted file `.del` and
    before committing: SQLite rolls the row back, and the cache renames the file back
    (as SQLite rolls back a hot journal) before a prune's clean-up could delete it."""
    directory = tmp_path / "cache"
    max_entries = 5
    proc = subprocess.Popen(
        [sys.executable, WORKER, "killed-at", str(directory), "0", str(max_entries)]
        + ["doomed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert [int(n) for n in out.split()] == list(range(max_entries))  # the 6th put died
    assert [name for name in files_under(directory) if name.endswith(".del")]
    with AudioCache(directory) as cache:
        cache.prune()  # deletes stale temporaries: must restore this one instead
        report = cache.verify()
        assert not report.damaged and report.checked == max_entries, report.as_dict()
        for index in range(max_entries):
            key = next(e.key for e in cache.entries() if e.text == f"phrase {index}")
            assert cache.get(key, rate=RATE, channels=CHANNELS) == pcm_for(f"phrase {index}")
    assert not [name for name in files_under(directory) if name.endswith(".del")]


# --- concurrency -------------------------------------------------------------------------


def test_four_processes_writing_reading_evicting_one_directory(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    workers, per_worker, max_entries = 4, 50, 100
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                "mixed",
                str(directory),
                str(w),
                str(workers),
                str(per_worker),
                str(max_entries),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for result in results:
        assert result["errors"] == []
        assert result["puts"] == per_worker + 20
    assert results[0]["verifies"] > 0
    assert sum(r["hits"] for r in results) > 0

    with AudioCache(directory) as cache:
        # 4 × 50 own + 20 shared = 220 distinct phrases went in; LRU kept exactly 100.
        assert len(cache) == max_entries
        entries = cache.entries()
        assert len(entries) == max_entries
        assert cache.stats().bytes == sum(entry.size for entry in entries)
        for entry in entries:
            assert cache.get(entry.key, rate=RATE, channels=CHANNELS) == pcm_for(entry.text)
        report = cache.verify()
        assert report.clean, report.as_dict()
    wavs = [name for name in files_under(directory) if name.endswith(".wav")]
    assert len(wavs) == max_entries


def test_repair_racing_writers_never_loses_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify --repair` deletes unreferenced WAVs; with the grace period at 0 it also sees
    the files writers have renamed but not yet committed. They must detect that and write
    again: no put fails, no committed entry loses its file."""
    monkeypatch.setattr(cache_entries, "ORPHAN_GRACE_SECONDS", 0)
    directory = tmp_path / "cache"
    writers = [
        subprocess.Popen(
            [sys.executable, WORKER, "writer", str(directory), str(w * 100_000), "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(2)
    ]
    try:
        for proc in writers:
            assert proc.stdout is not None and proc.stdout.readline().strip().isdigit()
        removed = 0
        with AudioCache(directory) as cache:
            for _ in range(150):
                report = cache.verify(repair=True)
                assert not report.damaged, report.as_dict()
                # In-flight files describe themselves: repair indexes them (adoptable)
                # where it used to delete them as orphans; both are the race happening.
                removed += len(report.orphans) + len(report.adoptable)
        # Both writers still running: none of their puts raised.
        assert [proc.poll() for proc in writers] == [None, None]
    finally:
        for proc in writers:
            proc.kill()
            proc.communicate()
    assert removed > 0  # the race did happen
    with AudioCache(directory) as cache:
        report = cache.verify()
        assert not report.damaged and report.checked == len(cache) > 0
        for entry in cache.entries():
            assert cache.get(entry.key, rate=RATE, channels=CHANNELS) == pcm_for(entry.text)


def test_eight_processes_storing_one_key_leave_one_whole_entry(tmp_path: Path) -> None:
    """No lock involved: simultaneous writers of one key cannot mix their audio."""
    directory = tmp_path / "cache"
    AudioCache(directory).close()  # the index exists before the race starts
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "same-key", str(directory), str(w)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    for proc in procs:  # the barrier: every writer is ready before any may go
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with AudioCache(directory) as cache:
        assert len(cache) == 1
        pcm = cache.get(key_for("the same phrase"), rate=RATE, channels=CHANNELS)
        assert pcm in {pcm_for("the same phrase", variant=str(w)) for w in range(8)}
        assert cache.verify().clean
    assert len([n for n in files_under(directory) if n.startswith("audio/")]) == 1


# --- full disk, I/O errors ------------------------------------------------------------------


def _put(cache: AudioCache, text: str) -> None:
    cache.put(
        key_for(text), pcm_for(text), rate=RATE, channels=CHANNELS, text=text, identity=IDENTITY
    )


@pytest.mark.parametrize(
    ("failing", "err", "phrase"),
    [
        ("write", errno.ENOSPC, "no space left on device"),
        ("fsync", errno.EIO, "I/O error"),
    ],
)
def test_disk_full_or_io_error_while_writing_commits_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, err: int, phrase: str
) -> None:
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        _put(cache, "kept")
        before = files_under(directory / "audio")
        real = getattr(os, failing)
        calls = {"n": 0}

        def failing_call(fd: int, *args: object) -> object:
            # The OS fails part-way: the first chunk lands, then the device is full / fails.
            calls["n"] += 1
            if calls["n"] == 1 and failing == "write":
                return real(fd, bytes(args[0])[:1000])  # type: ignore[index]
            raise OSError(err, os.strerror(err))

        monkeypatch.setattr(os, failing, failing_call)
        with pytest.raises(CacheError) as caught:
            _put(cache, "lost")
        monkeypatch.undo()
        assert phrase in str(caught.value)
        assert str(directory) in str(caught.value)
        assert "\n" not in str(caught.value)
        assert cache.get(key_for("lost"), rate=RATE, channels=CHANNELS) is None
        assert not cache.contains(key_for("lost"))
        assert len(cache) == 1
        assert files_under(directory / "audio") == before
        assert cache.get(key_for("kept"), rate=RATE, channels=CHANNELS) == pcm_for("kept")
        assert cache.verify().clean


def test_file_size_limit_in_a_real_process_fails_cleanly(tmp_path: Path) -> None:
    """A real kernel error (EFBIG under RLIMIT_FSIZE) in another process: nothing stored."""
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        _put(cache, "kept")
    script = (
        "import resource, signal, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from cache_worker import put\n"
        "from voiceprep.cache import AudioCache\n"
        "cache = AudioCache(sys.argv[1])\n"
        "cache.entries()\n"  # opens the index before the limit
        "resource.setrlimit(resource.RLIMIT_FSIZE, (16000, 16000))\n"
        "put(cache, 'too big for this process')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(directory), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "voiceprep.errors.CacheError" in proc.stderr
    assert "File too large" in proc.stderr and "nothing was stored" in proc.stderr
    with AudioCache(directory) as cache:
        assert len(cache) == 1
        assert cache.get(key_for("too big for this process"), rate=RATE, channels=CHANNELS) is None
        assert cache.verify().clean
    assert all(not name.endswith(".tmp") for name in files_under(directory))
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY


def test_reads_keep_working_when_sqlite_cannot_create_its_shm_file(tmp_path: Path) -> None:
    """Issue 12 item 5: on a nearly full disk SQLite cannot size index.sqlite-shm; every
    read used to fail ("I/O error … nothing was stored") and TTSAudioCache re-synthesized
    everything. Reads work; TTSAudioCache hits (its TTS raises if called); a write fails
    with one line saying why."""
    directory = tmp_path / "cache"
    assert run_worker("fill", directory, 6).returncode == 0
    assert sorted(os.listdir(directory)) == ["audio", "index.sqlite"]  # closed: no -shm

    proc = run_worker("read-on-a-full-disk", directory)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["entries"] == 6 and result["ok"] == 6 and result["bad"] == []
    assert result["tts_hits"] == 6  # served from disk, nothing synthesized
    assert result["read_only"] is True
    kind, message = result["write_error"]
    assert kind == "CacheReadOnlyError" and "\n" not in message and str(directory) in message
    assert "index.sqlite-shm" in message and "nothing was stored" in message
    with AudioCache(directory) as cache:  # and once space is back, it is a normal cache
        assert len(cache) == 6 and cache.verify().clean
        _put(cache, "after")
        assert len(cache) == 7


# --- read-only caches --------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="voiceprep-ro-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def read_as_nobody(directory: Path) -> dict[str, object]:
    """The worker drops to uid 65534 itself, after its imports: our interpreter may live in
    a directory that user cannot enter."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the reader drops to uid 65534 (root ignores permissions)")
    proc = run_worker("read-all", directory, "--as-nobody", env={**os.environ, "HOME": "/tmp"})
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    assert result["uid"] == NOBODY
    assert result["can_create_files"] is False
    return result


def make_read_only(directory: Path) -> None:
    """`chmod -R a-w`."""
    for path in [directory, *directory.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)


@pytest.mark.parametrize("state", ["closed", "crashed", "crashed-no-shm"])
def test_read_only_cache_is_fully_readable(shared_dir: Path, state: str) -> None:
    """`chmod -R a-w` as a non-root user: get, entries, verify, stats and TTSAudioCache
    hits work; a put fails with one clear line; nothing in the directory changes."""
    directory = shared_dir / "cache"
    proc = run_worker("fill", directory, 12, *(["crash"] if state != "closed" else []))
    assert proc.returncode == 0, proc.stderr
    names = os.listdir(directory)
    if state == "closed":
        assert names == ["audio", "index.sqlite"] or sorted(names) == ["audio", "index.sqlite"]
    else:
        assert "index.sqlite-wal" in names  # committed pages still in the WAL
        if state == "crashed-no-shm":
            os.unlink(directory / "index.sqlite-shm")
    make_read_only(directory)
    before = sorted(os.listdir(directory))

    result = read_as_nobody(directory)

    assert result["entries"] == 12 and result["ok"] == 12 and result["bad"] == []
    assert result["read_only"] is True
    assert result["stats_entries"] == 12
    assert result["tts_hits"] == 12  # TTSAudioCache hits, nothing synthesized
    assert result["verify"]["damaged"] is False  # type: ignore[index]
    assert result["verify"]["checked"] == 12  # type: ignore[index]
    kind, message = result["write_error"]  # type: ignore[misc]
    assert kind == "CacheReadOnlyError"
    assert "read-only" in message and str(directory) in message and "\n" not in message
    assert result["files_after"] == before


def test_read_only_filesystem_mount_is_readable(shared_dir: Path) -> None:
    """The same through a read-only bind mount (a cache baked into an image)."""
    directory = shared_dir / "cache"
    mount = shared_dir / "ro"
    mount.mkdir()
    assert run_worker("fill", directory, 5).returncode == 0
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(directory), str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        # (test_read_only_cache_is_fully_readable covers an unwritable directory.)
        pytest.skip(f"cannot bind-mount read-only here: {mounted.stderr.decode().strip()}")
    try:
        with AudioCache(mount) as cache:
            assert cache.read_only
            texts = sorted(entry.text for entry in cache.entries())
            assert texts == [f"phrase {i}" for i in range(5)]
            for entry in cache.entries():
                assert cache.get(entry.key, rate=RATE, channels=CHANNELS) == pcm_for(entry.text)
            assert cache.verify().clean
            with pytest.raises(CacheReadOnlyError, match="read-only"):
                _put(cache, "new")
            with pytest.raises(CacheReadOnlyError):
                cache.remove([key_for("phrase 1")])
            with pytest.raises(CacheReadOnlyError):
                cache.verify(repair=True)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- live readers ------------------------------------------------------------------------


def test_reader_holding_a_file_keeps_its_content_while_prune_evicts_it(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    with AudioCache(directory) as cache:
        for i in range(5):
            _put(cache, f"phrase {i}")
        oldest = cache.entry(key_for("phrase 0"))
        assert oldest is not None
        handle = open(oldest.path, "rb")  # noqa: SIM115 - held open across the prune
    try:
        header = handle.read(44)
        proc = run_worker("prune", directory, 2)
        assert proc.returncode == 0, proc.stderr
        assert "phrase 0" in json.loads(proc.stdout)["removed"]
        assert not oldest.path.exists()
        pcm = pcm_for("phrase 0")
        assert handle.read(len(pcm)) == pcm  # the rest is intact: the audio,
        assert handle.read(4) == b"vpmd"  # then its metadata chunk
        assert header[:4] == b"RIFF"
    finally:
        handle.close()
    with AudioCache(directory) as cache:
        assert cache.get(key_for("phrase 0"), rate=RATE, channels=CHANNELS) is None
        assert len(cache) == 2
        assert cache.verify().clean


def test_newer_schema_in_another_process_is_refused_and_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    assert run_worker("fill", directory, 2).returncode == 0
    with sqlite3.connect(directory / "index.sqlite") as conn:
        conn.execute("PRAGMA user_version = 7")
    proc = run_worker(
        "read-all", directory, env={**os.environ, "PYTHONPATH": str(Path(WORKER).parent)}
    )
    assert proc.returncode == 1
    assert "CacheVersionError" in proc.stderr and "schema version 7" in proc.stderr
    with sqlite3.connect(directory / "index.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 2
