"""AudioCache: the store (get, put, evict, remove, prune) over the index and entry files.

Why it is safe to share (several processes warming, reading, evicting and verifying one
directory; see docs/cache.md):

- An entry file is written to a temporary file in its final directory, flushed, fsynced
  and renamed to a name no other write uses, *then* its row is committed. A reader only
  learns a file name from a committed row, so it never sees a partial file; a crash
  leaves at most a temporary or an unreferenced file, both ignored and cleaned by
  `verify(repair=True)` / `prune()` (an unreferenced, self-describing file is indexed
  again, never deleted).
- A file is deleted only after the commit that stopped referencing it. A reader that
  finds its file gone (an eviction won the race) counts a miss; a reader that already
  has the file open keeps its content (POSIX unlink semantics).
- Every read checks the format it was asked for and the sha256 of the PCM, and reads
  only the cache's own regular files. Nothing relies on an advisory lock; SQLite's own
  transactions serialize the index updates. Leases only save duplicate work.
- Hits are counted in memory and written in batches, so a hit stays a read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

from voiceprep.cache import faults
from voiceprep.cache import leases as _leases
from voiceprep.cache.entries import (
    SAMPLE_WIDTH,
    UnsafeEntry,
    check_entry,
    check_key,
    encode_entry,
    entry_name,
    read_entry,
    unlink_quietly,
    valid_name,
)
from voiceprep.cache.index import (
    SCHEMA_VERSION,
    Index,
    Transaction,
    delete_rows,
    in_chunks,
    select_rows,
)
from voiceprep.cache.records import (
    CacheEntry,
    CacheStats,
    EntryMeta,
    MergeReport,
    RebuildReport,
    VerifyReport,
)
from voiceprep.errors import CacheCorruptError, CacheError, CacheFormatMismatchError
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Words

_PUBLISH_ATTEMPTS = 3


class AudioCache:
    """One cache directory: an SQLite index (WAL) plus one self-describing WAV per entry.

    `max_entries` / `max_bytes` (bytes of WAV files) are enforced after every put, least
    recently used first. Safe to share between threads and processes; usable as a context
    manager (close() writes the pending hit counts).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if max_entries is not None and max_entries < 0:
            raise CacheError(f"max_entries must be >= 0, not {max_entries}")
        if max_bytes is not None and max_bytes < 0:
            raise CacheError(f"max_bytes must be >= 0, not {max_bytes}")
        self.directory = Path(directory).expanduser().absolute()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._index = Index(self.directory)
        self._files = self._index.files
        self._finalizer = weakref.finalize(self, self._index.close)

    # context manager -------------------------------------------------------------------

    def __enter__(self) -> AudioCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write pending hit counts and close the index connections."""
        self._index.close()

    def __repr__(self) -> str:
        return f"AudioCache({str(self.directory)!r})"

    @property
    def read_only(self) -> bool:
        """True when the directory or index cannot be written (decided on first use)."""
        if self._index.read_only is None:
            self._index.reader()
        if self._index.read_only is not None:
            return self._index.read_only
        # No index yet: read-only if the nearest existing directory cannot be written.
        existing = self.directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        return not os.access(existing, os.W_OK)

    # internals -------------------------------------------------------------------------

    def _entry(self, row: sqlite3.Row) -> CacheEntry:
        return CacheEntry(
            key=row["key"],
            text=row["text"],
            backend=row["backend"],
            model=row["model"],
            voice=row["voice"],
            options=json.loads(row["options"]),
            rate=row["rate"],
            channels=row["channels"],
            duration=row["duration"],
            size=row["size"],
            sha256=row["sha256"],
            created=row["created"],
            last_used=row["last_used"],
            hits=row["hits"],
            path=self.directory / row["file"],
            loudness=row["loudness"],
        )

    def _read_file(self, key: str, file: str) -> bytes | None:
        """A row's file bytes; None when gone; CacheCorruptError when it is not ours."""
        try:
            return self._files.read(key, file)
        except UnsafeEntry as exc:
            raise CacheCorruptError(
                f"{key[:16]}: the index points at {exc} (refused); "
                "run `voiceprep cache verify --repair`"
            ) from exc

    def _read_pcm(self, key: str, file: str, rate: int, channels: int, sha256: str) -> bytes | None:
        """The PCM of a row's file, checked; None when the file is gone (evicted meanwhile)."""
        blob = self._read_file(key, file)
        if blob is None:
            return None
        where = f"{self.directory}/{file}"
        return check_entry(blob, key=key, rate=rate, channels=channels, sha256=sha256, where=where)[
            0
        ]

    def _row(self, key: str, columns: str = "") -> sqlite3.Row | None:
        rows = self._index.query(
            f"SELECT {columns or self._index.columns} FROM entries WHERE key = ?", (key,)
        )
        return rows[0] if rows else None

    # reads ----------------------------------------------------------------------------

    def get(self, key: str, *, rate: int, channels: int) -> bytes | None:
        """The PCM (s16le) stored under `key`, or None when it is not cached.

        Raises CacheFormatMismatchError when the entry holds another rate or channel count
        than asked for, CacheCorruptError when its audio fails the sha256 check.
        """
        row = self._row(key, "file, rate, channels, sha256")
        if row is None:
            return None
        if (row["rate"], row["channels"]) != (rate, channels):
            raise CacheFormatMismatchError(
                f"{key[:16]}: cached at {row['rate']} Hz / {row['channels']} ch, "
                f"asked for {rate} Hz / {channels} ch"
            )
        pcm = self._read_pcm(key, row["file"], rate, channels, row["sha256"])
        if pcm is None and self.restore_interrupted(key, row["file"]):
            pcm = self._read_pcm(key, row["file"], rate, channels, row["sha256"])
        if pcm is not None:
            self._index.record_hit(key)
        return pcm

    def restore_interrupted(self, key: str, file: str) -> bool:
        """Finish the rollback of a writer killed inside its transaction, as SQLite rolls
        back a hot journal: a dropped row's file is renamed `<name>.del` before the commit,
        so a row that still names a missing file beside its `.del` is one whose drop never
        committed. True when the file is back. Checked under the write lock (a drop still
        in flight commits first, and then the row no longer names it)."""
        if self._index.read_only or not valid_name(key, file):
            return False  # (a row is input: never look outside the cache)
        if not os.path.lexists((self.directory / file).with_suffix(".del")):
            return False
        try:
            with self._index.write() as (conn, _):
                sql = "SELECT 1 FROM entries WHERE key = ? AND file = ?"
                if conn.execute(sql, (key, file)).fetchone() is None:
                    return False
                return self._files.undoom(key, file)
        except CacheError:
            return False

    def contains(self, key: str) -> bool:
        """Whether `key` has a committed entry whose file is present."""
        row = self._row(key, "file")
        return row is not None and self._files.exists(key, row["file"])

    __contains__ = contains

    def is_intact(self, key: str) -> bool:
        """Whether `key` is cached and its file passes the checks `get` makes.

        Counts no hit: checking an entry is not a use of its audio.
        """
        row = self._row(key, "file, rate, channels, sha256")
        if row is None:
            return False
        try:
            pcm = self._read_pcm(key, row["file"], row["rate"], row["channels"], row["sha256"])
        except CacheError:
            return False
        return pcm is not None

    def __len__(self) -> int:
        rows = self._index.query("SELECT count FROM totals WHERE id = 0")
        return int(rows[0][0]) if rows else 0

    def keys(self) -> set[str]:
        """Every cached key (one query; files are not checked)."""
        return {row[0] for row in self._index.query("SELECT key FROM entries")}

    def entry(self, key: str) -> CacheEntry | None:
        self._index.quiet_flush()
        row = self._row(key)
        return self._entry(row) if row is not None else None

    def entries(self) -> list[CacheEntry]:
        """Every entry, most recently used first."""
        self._index.quiet_flush()
        rows = self._index.query(
            f"SELECT {self._index.columns} FROM entries ORDER BY last_used DESC, key"
        )
        return [self._entry(row) for row in rows]

    def wav_path(self, key: str) -> Path:
        """The WAV file of a cached entry. Raises KeyError when `key` is not cached."""
        row = self._row(key, "file")
        if row is None:
            raise KeyError(key)
        return self.directory / row["file"]

    def entry_bytes(self, key: str) -> bytes:
        """The whole self-describing entry file of `key`, checked (KeyError if not cached).

        An entry written before files described themselves is returned in the current
        format, built from its row.
        """
        row = self._row(key)
        if row is None:
            raise KeyError(key)
        blob = self._read_file(key, row["file"])
        if blob is None:
            raise KeyError(key)
        pcm, described = self._check_row(row, blob)
        return blob if described else encode_entry(pcm, self._meta(self._entry(row)))

    def _check_row(self, row: sqlite3.Row, blob: bytes) -> tuple[bytes, bool]:
        """Every check of a row's file, metadata included: (PCM, whether self-describing)."""
        return check_entry(
            blob,
            key=row["key"],
            rate=row["rate"],
            channels=row["channels"],
            sha256=row["sha256"],
            where=str(self.directory / row["file"]),
            full=True,
        )

    @staticmethod
    def _meta(entry: CacheEntry) -> EntryMeta:
        return EntryMeta(
            key=entry.key,
            text=entry.text,
            identity=entry.identity,
            rate=entry.rate,
            channels=entry.channels,
            sha256=entry.sha256,
            created=entry.created,
            loudness=entry.loudness,
        )

    def stats(self) -> CacheStats:
        self._index.quiet_flush()
        rows = self._index.query(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(duration), 0), "
            "coalesce(sum(hits), 0), min(created), max(created), max(last_used) FROM entries"
        )
        count, size, duration, hits, oldest, newest, last_used = (
            tuple(rows[0]) if rows else (0,) * 7
        )
        return CacheStats(
            directory=self.directory,
            entries=count or 0,
            bytes=size or 0,
            duration=float(duration or 0.0),
            hits=hits or 0,
            oldest=oldest,
            newest=newest,
            last_used=last_used,
            read_only=self.read_only,
            schema_version=SCHEMA_VERSION,
        )

    # writes ---------------------------------------------------------------------------

    def put(
        self,
        key: str,
        pcm: bytes,
        *,
        rate: int,
        channels: int,
        text: str,
        identity: BackendIdentity,
        loudness: float | None = None,
        words: Words | None = None,
    ) -> CacheEntry:
        """Store PCM (s16le, interleaved) under `key`, replacing any previous entry, with
        its word timings when the backend gave them.

        Returns the new entry. With limits set, least recently used entries are evicted in
        the same transaction; an entry larger than `max_bytes` on its own is not kept.
        """
        check_key(key)
        if not pcm:
            raise CacheError(f"{text!r}: empty audio is never cached")
        if channels < 1 or rate < 1 or len(pcm) % (SAMPLE_WIDTH * channels):
            raise CacheError(
                f"{text!r}: {len(pcm)} bytes is not whole s16 frames of {channels} channel(s)"
            )
        options = json.loads(
            json.dumps(dict(identity.options), sort_keys=True, ensure_ascii=False, default=str)
        )
        now = round(time.time(), 6)  # what the entry file records (whole microseconds)
        meta = EntryMeta(
            key=key,
            text=text,
            identity=BackendIdentity(identity.name, identity.model, identity.voice, options),
            rate=rate,
            channels=channels,
            sha256=hashlib.sha256(pcm).hexdigest(),
            created=now,
            loudness=loudness,
            words=words,
        )
        return self._store(meta, pcm, last_used=now)[0]

    def _new_entry(
        self, meta: EntryMeta, pcm: bytes, blob: bytes, *, last_used: float, hits: int = 0
    ) -> CacheEntry:
        """The entry a write of `meta` makes (its path is set once the file is named)."""
        identity = meta.identity
        return CacheEntry(
            key=meta.key,
            text=meta.text,
            backend=identity.name,
            model=identity.model,
            voice=identity.voice,
            options=dict(identity.options),
            rate=meta.rate,
            channels=meta.channels,
            duration=len(pcm) / (SAMPLE_WIDTH * meta.channels * meta.rate),
            size=len(blob),
            sha256=meta.sha256,
            created=meta.created,
            last_used=last_used,
            hits=hits,
            path=self.directory,
            loudness=meta.loudness,
        )

    def _store(
        self,
        meta: EntryMeta,
        pcm: bytes,
        *,
        last_used: float,
        hits: int = 0,
        blob: bytes | None = None,
        replace: bool = True,
    ) -> tuple[CacheEntry, bool]:
        """Write the file, then commit its row: (the entry, whether it was stored).

        With `replace` false, a key already present is left alone (False).
        """
        self._index.writable()  # fail before writing any file
        blob = encode_entry(pcm, meta) if blob is None else blob
        template = self._new_entry(meta, pcm, blob, last_used=last_used, hits=hits)
        for _ in range(_PUBLISH_ATTEMPTS):
            relative = entry_name(meta.key)
            entry = dataclasses.replace(template, path=self.directory / relative)
            self._files.write(relative, meta.key, blob)
            faults.reached("renamed")
            published = self._publish([entry], replace=replace)[0]
            if published is not None:
                return entry, published
        raise CacheError(
            f"{self.directory}: a concurrent `verify --repair` kept removing the new file; "
            "nothing was stored"
        )

    def _publish(self, entries: list[CacheEntry], *, replace: bool) -> list[bool | None]:
        """Commit the rows of files already in place, in one transaction.

        Per entry: True when committed, False when `replace` is false and the key was
        already there (the new file is removed), None when the file vanished before the
        commit.
        """
        outcomes: list[bool | None] = []
        with self._index.write() as (conn, tx):
            for entry in entries:
                tx.on_rollback(functools.partial(unlink_quietly, entry.path))
            keys = [entry.key for entry in entries]
            old = {row["key"]: row["file"] for row in select_rows(conn, "key, file", keys)}
            for entry in entries:
                relative = entry.path.relative_to(self.directory).as_posix()
                if not entry.path.exists():
                    # verify(repair=True) took it for an orphan before our row existed;
                    # it deletes orphans under this same lock, so checking here is enough.
                    outcomes.append(None)
                    continue
                previous = old.get(entry.key)
                if previous is not None:
                    if not replace:
                        tx.delete_after_commit(entry.key, relative)
                        outcomes.append(False)
                        continue
                    conn.execute("DELETE FROM entries WHERE key = ?", (entry.key,))
                    if previous != relative:  # a repair may have indexed our file already
                        tx.delete_after_commit(entry.key, previous)
                insert_row(conn, entry, relative)
                old[entry.key] = relative
                outcomes.append(True)
            self._evict(conn, tx, self.max_entries, self.max_bytes)
        return outcomes

    def _evict(
        self,
        conn: sqlite3.Connection,
        tx: Transaction,
        max_entries: int | None,
        max_bytes: int | None,
    ) -> list[sqlite3.Row]:
        """Delete least recently used rows until both limits hold; returns their rows.

        Walks the last_used index from the oldest end, so the cost is the number of
        entries evicted, not the number cached. Files go after the commit.
        """
        if max_entries is None and max_bytes is None:
            return []
        count, size = conn.execute("SELECT count, size FROM totals WHERE id = 0").fetchone()

        def over() -> bool:
            return (max_entries is not None and count > max_entries) or (
                max_bytes is not None and size > max_bytes
            )

        if not over():
            return []
        victims: list[sqlite3.Row] = []
        cursor = conn.execute(
            f"SELECT {self._index.columns} FROM entries ORDER BY last_used, created"
        )
        for row in cursor:
            if not over():
                break
            victims.append(row)
            count -= 1
            size -= row["size"]
        cursor.close()
        self._drop(conn, tx, victims)
        return victims

    @staticmethod
    def _drop(conn: sqlite3.Connection, tx: Transaction, rows: list[sqlite3.Row]) -> None:
        delete_rows(conn, [row["key"] for row in rows])
        for row in rows:
            tx.delete_after_commit(row["key"], row["file"])

    def import_entry(self, data: bytes) -> CacheEntry | None:
        """Store a self-describing entry file (from `entry_bytes`, another cache, a remote).

        Verified with `read_entry` (CacheCorruptError if it fails), written atomically,
        committed. Returns None when the key was already cached (nothing changes).
        """
        outcome = self.import_entries([data])[0]
        if isinstance(outcome, CacheCorruptError):
            raise outcome
        return outcome

    def import_entries(
        self, blobs: Sequence[bytes], *, keys: Sequence[str] | None = None
    ) -> list[CacheEntry | None | CacheCorruptError]:
        """`import_entry` for many files at once (a pull's batch): one transaction.

        Each file is verified, and with `keys` must hold the entry of `keys[i]`. Returns,
        per file: the entry stored; None when its key was already cached; or the
        CacheCorruptError that refused it (nothing of it is stored). A failing cache (read
        only, full) raises, and stores nothing of the files not yet committed.
        """
        self._index.writable()  # fail before writing any file
        outcomes: list[CacheEntry | None | CacheCorruptError] = [None] * len(blobs)
        new: dict[str, tuple[int, EntryMeta, bytes, bytes]] = {}  # key -> (i, meta, pcm, file)
        for i, data in enumerate(blobs):
            key = None if keys is None else keys[i]
            try:
                meta, pcm = read_entry(data, where=f"entry {key[:12]}" if key else "entry", key=key)
            except CacheCorruptError as exc:
                outcomes[i] = exc
                continue
            new.setdefault(meta.key, (i, meta, pcm, data))
        for key in self._cached(list(new)):
            del new[key]
        now = time.time()
        written: list[CacheEntry] = []
        try:
            for key, (_, meta, pcm, data) in new.items():
                relative = entry_name(key)
                self._files.write(relative, key, data)
                entry = self._new_entry(meta, pcm, data, last_used=now)
                written.append(dataclasses.replace(entry, path=self.directory / relative))
        except BaseException:
            for entry in written:  # no row names them yet
                unlink_quietly(entry.path)
            raise
        faults.reached("renamed")
        published = self._publish(written, replace=False)  # a rollback removes them
        for entry, done in zip(written, published, strict=True):
            i, meta, pcm, data = new[entry.key]
            if done is None:
                # A racing `verify --repair` took the file for an orphan: the one-entry
                # path writes it again.
                entry, done = self._store(meta, pcm, last_used=now, blob=data, replace=False)
            outcomes[i] = entry if done else None
        return outcomes

    def _cached(self, keys: list[str]) -> set[str]:
        """Which of `keys` have a row."""
        found: set[str] = set()
        for chunk, marks in in_chunks(keys):
            rows = self._index.query(f"SELECT key FROM entries WHERE key IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    def remove(self, keys: Iterable[str]) -> int:
        """Remove the entries of `keys` (unknown keys are ignored); returns how many went."""
        wanted = list(dict.fromkeys(keys))
        if not wanted or self._index.reader() is None:
            return 0
        with self._index.write() as (conn, tx):
            rows = select_rows(conn, "key, file", wanted)
            self._drop(conn, tx, rows)
        return len(rows)

    def prune(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        older_than: float | None = None,
    ) -> list[CacheEntry]:
        """Evict entries not used for `older_than` seconds, then LRU down to the limits.

        With no argument the cache's own limits apply. Also removes stale temporaries of
        crashed writers. Returns the entries removed.
        """
        if max_entries is None and max_bytes is None and older_than is None:
            max_entries, max_bytes = self.max_entries, self.max_bytes
        if self._index.reader() is None:
            return []
        removed: list[sqlite3.Row] = []
        with self._index.write() as (conn, tx):
            if older_than is not None:
                cutoff = time.time() - older_than
                removed = conn.execute(
                    f"SELECT {self._index.columns} FROM entries WHERE last_used < ? "
                    "ORDER BY last_used, created",
                    (cutoff,),
                ).fetchall()
                self._drop(conn, tx, removed)
            removed += self._evict(conn, tx, max_entries, max_bytes)
        from voiceprep.cache.maintenance import remove_stale_temps

        remove_stale_temps(self)
        return [self._entry(row) for row in removed]

    def clear(self) -> int:
        """Remove every entry (and stale temporaries); returns how many entries went."""
        if self._index.reader() is None:
            return 0
        with self._index.write() as (conn, tx):
            rows = conn.execute("SELECT key, file FROM entries").fetchall()
            conn.execute("DELETE FROM entries")
            for row in rows:
                tx.delete_after_commit(row["key"], row["file"])
        from voiceprep.cache.maintenance import remove_stale_temps

        remove_stale_temps(self)
        return len(rows)

    # leases ---------------------------------------------------------------------------

    def claim(self, key: str, *, ttl: float = _leases.DEFAULT_TTL) -> _leases.Lease | None:
        """Claim `key` before synthesizing it; None when another live writer holds it.

        See `voiceprep.cache.leases`. A lease only saves duplicate work: correctness never
        depends on it.
        """
        return _leases.claim(self._index, key, ttl=ttl)

    def lease_holder(self, key: str) -> _leases.LeaseInfo | None:
        """The live lease on `key`, if any (lapsed ones and dead local writers are ignored)."""
        return _leases.holder(self._index, key)

    def wait_for(self, key: str, *, timeout: float, poll: float = 0.05) -> bool:
        """Wait (blocking) until `key` is cached or nobody holds a live lease on it.

        Returns whether it is cached. Bounded by `timeout` seconds.
        """
        return _leases.wait_for(self, key, timeout=timeout, poll=poll)

    # maintenance ----------------------------------------------------------------------

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check the index and every entry's file (presence, size, format, sha256).

        Also lists leftovers: WAVs no row refers to and stale temporaries. With `repair`,
        rows of missing or corrupt entries are dropped, their files and the leftovers are
        removed, self-describing files no row refers to are indexed, old-format files
        rewritten, the running totals recomputed, and a damaged index rebuilt from the
        files (the damaged one is moved aside). Safe while other processes use the
        cache, except the rebuild of a damaged index.
        """
        from voiceprep.cache.maintenance import verify

        return verify(self, repair=repair)

    def rebuild(self) -> RebuildReport:
        """Build a new index from the entry files alone; the old index is moved aside.

        Loses only hit counts and last-used times (taken from the files' times) of
        entries the old index cannot tell. Run it when no other process uses the cache.
        """
        from voiceprep.cache.maintenance import rebuild

        return rebuild(self)

    def merge(self, source_dir: str | os.PathLike[str]) -> MergeReport:
        """Import the entries of another cache directory; keys present here are skipped.

        Entries keep their metadata (text, identity, created, last used, hits). Source
        entries that are missing or fail their checks are reported, never imported.
        """
        from voiceprep.cache.maintenance import merge

        return merge(self, source_dir)


def insert_row(conn: sqlite3.Connection, entry: CacheEntry, relative: str) -> None:
    conn.execute(
        "INSERT INTO entries (key, file, text, backend, model, voice, options, rate, "
        "channels, duration, size, sha256, created, last_used, hits, loudness) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.key,
            relative,
            entry.text,
            entry.backend,
            entry.model,
            entry.voice,
            json.dumps(entry.options, sort_keys=True, ensure_ascii=False, default=str),
            entry.rate,
            entry.channels,
            entry.duration,
            entry.size,
            entry.sha256,
            entry.created,
            entry.last_used,
            entry.hits,
            entry.loudness,
        ),
    )
