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

import hashlib
import json
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from voiceprep.audio_format import AudioFormat
from voiceprep.cache import faults, maintenance
from voiceprep.cache import leases as _leases
from voiceprep.cache.entries import (
    check_key,
    entry_name,
    read_entry,
    unlink_quietly,
)
from voiceprep.cache.index import Index
from voiceprep.cache.maintenance import remove_stale_temps
from voiceprep.cache.records import CacheEntry, CacheStats, EntryMeta
from voiceprep.cache.schema import POLICY, SCHEMA_VERSION
from voiceprep.cache.sqlite import select_rows
from voiceprep.cache.writes import Limits, drop, evict, publish, store_entry
from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    InvalidValueError,
)
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Words

if TYPE_CHECKING:  # what maintenance returns
    from voiceprep.cache.records import MergeReport, RebuildReport, VerifyReport


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
    def _limits(self) -> Limits:
        return Limits(self.max_entries, self.max_bytes)

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

    # reads ----------------------------------------------------------------------------

    def get(self, key: str, *, rate: int, channels: int) -> bytes | None:
        """The PCM (s16le) stored under `key`, or None when it is not cached.

        Raises CacheFormatMismatchError when the entry holds another rate or channel count
        than asked for, CacheCorruptError when its audio fails the sha256 check.
        """
        row = self._index.row(key, "file, rate, channels, sha256")
        if row is None:
            return None
        if (row["rate"], row["channels"]) != (rate, channels):
            raise CacheFormatMismatchError(
                f"{key[:16]}: cached at {row['rate']} Hz / {row['channels']} ch, "
                f"asked for {rate} Hz / {channels} ch"
            )
        pcm = self._index.read_pcm(key, row["file"], rate, channels, row["sha256"])
        if pcm is None and self._index.restore_interrupted(key, row["file"]):
            pcm = self._index.read_pcm(key, row["file"], rate, channels, row["sha256"])
        if pcm is not None:
            self._index.record_hit(key)
        return pcm

    def contains(self, key: str) -> bool:
        """Whether `key` has a committed entry whose file is present."""
        return self._index.contains(key)

    __contains__ = contains

    def is_intact(self, key: str) -> bool:
        """Whether `key` is cached and its file passes the checks `get` makes.

        Counts no hit: checking an entry is not a use of its audio.
        """
        row = self._index.row(key, "file, rate, channels, sha256")
        if row is None:
            return False
        try:
            pcm = self._index.read_pcm(
                key, row["file"], row["rate"], row["channels"], row["sha256"]
            )
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
        row = self._index.row(key)
        return self._index.entry_of(row) if row is not None else None

    def entries(self) -> list[CacheEntry]:
        """Every entry, most recently used first."""
        self._index.quiet_flush()
        rows = self._index.query(f"SELECT {self._index.columns} FROM entries {POLICY['listing']}")
        return [self._index.entry_of(row) for row in rows]

    def wav_path(self, key: str) -> Path:
        """The WAV file of a cached entry. Raises KeyError when `key` is not cached."""
        row = self._index.row(key, "file")
        if row is None:
            raise KeyError(key)
        return self.directory / row["file"]

    def entry_bytes(self, key: str) -> bytes:
        """The whole self-describing entry file of `key`, checked (KeyError if not cached).

        An entry written before files described themselves is returned in the current
        format, built from its row.
        """
        return self._index.entry_bytes(key)

    def words(self, key: str) -> Words | None:
        """The word timings stored with `key`'s entry (None: it has none, or `key` is not
        cached). Raises CacheCorruptError for a damaged entry."""
        try:
            blob = self._index.entry_bytes(key)
        except KeyError:
            return None
        return read_entry(blob, where=f"entry {key[:12]}", key=key)[0].words

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
        try:
            shape = AudioFormat(rate, channels)  # the cache keeps what the CLI accepts
        except InvalidValueError as exc:
            raise CacheError(f"{text!r}: {exc}") from None
        if len(pcm) % shape.frame_bytes:
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
        return store_entry(self._index, meta, pcm, limits=self._limits, last_used=now)[0]

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
        for key in self._index.cached(list(new)):
            del new[key]
        now = time.time()
        written: list[CacheEntry] = []
        try:
            for key, (_, meta, pcm, data) in new.items():
                relative = entry_name(key)
                self._files.write(relative, key, data)
                path = self.directory / relative
                written.append(
                    CacheEntry.from_meta(
                        meta, path=path, size=len(data), pcm_bytes=len(pcm), last_used=now
                    )
                )
        except BaseException:
            for entry in written:  # no row names them yet
                unlink_quietly(entry.path)
            raise
        faults.reached("renamed")
        published = publish(self._index, written, limits=self._limits, replace=False)
        for entry, done in zip(written, published, strict=True):
            i, meta, pcm, data = new[entry.key]
            if done is None:
                # A racing `verify --repair` took the file for an orphan: the one-entry
                # path writes it again.
                entry, done = store_entry(
                    self._index,
                    meta,
                    pcm,
                    limits=self._limits,
                    last_used=now,
                    blob=data,
                    replace=False,
                )
            outcomes[i] = entry if done else None
        return outcomes

    def remove(self, keys: Iterable[str]) -> int:
        """Remove the entries of `keys` (unknown keys are ignored); returns how many went."""
        wanted = list(dict.fromkeys(keys))
        if not wanted or self._index.reader() is None:
            return 0
        with self._index.write() as (conn, tx):
            rows = select_rows(conn, "key, file", wanted)
            drop(conn, tx, rows)
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
                    f"SELECT {self._index.columns} FROM entries "
                    f"{POLICY['unused_since']} {POLICY['cull']}",
                    (cutoff,),
                ).fetchall()
                drop(conn, tx, removed)
            removed += evict(self._index, conn, tx, Limits(max_entries, max_bytes))
        remove_stale_temps(self._index)
        return [self._index.entry_of(row) for row in removed]

    def clear(self) -> int:
        """Remove every entry (and stale temporaries); returns how many entries went."""
        if self._index.reader() is None:
            return 0
        with self._index.write() as (conn, tx):
            rows = conn.execute("SELECT key, file FROM entries").fetchall()
            conn.execute("DELETE FROM entries")
            for row in rows:
                tx.delete_after_commit(row["key"], row["file"])
        remove_stale_temps(self._index)
        return len(rows)

    # leases ---------------------------------------------------------------------------

    def claim(self, key: str, *, ttl: float = _leases.DEFAULT_TTL) -> _leases.Lease | None:
        """Claim `key` before synthesizing it; None when another live writer holds it.

        See `voiceprep.cache.leases`. A lease only saves duplicate work: correctness never
        depends on it.
        """
        return self.claim_many([key], ttl=ttl)[0]

    def claim_many(
        self, keys: Sequence[str], *, ttl: float = _leases.DEFAULT_TTL
    ) -> list[_leases.Lease | None]:
        """`claim` of each of `keys`, in one write transaction (warm claims ahead)."""
        return _leases.claim(self._index, keys, ttl=ttl)

    @staticmethod
    def release_all(leases: Iterable[_leases.Lease]) -> None:
        """Release `leases`, one write transaction per cache (never raises)."""
        _leases.release_all(leases)

    def lease_holder(self, key: str) -> _leases.LeaseInfo | None:
        """The live lease on `key`, if any (lapsed ones and dead local writers are ignored)."""
        return _leases.holder(self._index, key)

    def wait_for(self, key: str, *, timeout: float, poll: float = 0.05) -> bool:
        """Wait (blocking) until `key` is cached or nobody holds a live lease on it.

        Returns whether it is cached. Bounded by `timeout` seconds.
        """
        return _leases.wait_for(self._index, key, timeout=timeout, poll=poll)

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
        return maintenance.verify(self._index, repair=repair)

    def rebuild(self) -> RebuildReport:
        """Build a new index from the entry files alone; the old index is moved aside.

        Loses only hit counts and last-used times (taken from the files' times) of
        entries the old index cannot tell. Run it when no other process uses the cache.
        """
        return maintenance.rebuild(self._index)

    def merge(self, source_dir: str | os.PathLike[str]) -> MergeReport:
        """Import the entries of another cache directory; keys present here are skipped.

        Entries keep their metadata (text, identity, created, last used, hits). Source
        entries that are missing or fail their checks are reported, never imported.
        """
        return maintenance.merge(self._index, source_dir, limits=self._limits)
