"""AudioCache: the on-disk store that warm, say, `cache …` and TTSAudioCache share.

Layout of a cache directory::

    index.sqlite                     the index (SQLite, WAL mode; -wal/-shm beside it)
    audio/ab/<key>.<id>.wav          one WAV (s16le) per entry, sharded by the key's
                                     first two hex digits; <id> = <host>-<pid>-<random>
                                     names the writer and is unique per write
    audio/ab/<key>.<id>.tmp          a write in progress (or the leftover of a crash)

Why it is safe to share (several processes warming, reading, evicting and verifying one
directory; see docs/cache.md):

- A WAV is written to a temporary file in its final directory, flushed, fsynced and
  renamed to a name no other write uses, *then* its row is committed. A reader only
  learns a file name from a committed row, so it never sees a partial file; a crash
  leaves at most a temporary or an unreferenced WAV, both ignored and cleaned by
  `verify(repair=True)` / `prune()`.
- A file is deleted only after the commit that stopped referencing it. A reader that
  finds its file gone (an eviction won the race) counts a miss; a reader that already
  has the file open keeps its content (POSIX unlink semantics).
- Every read checks the format it was asked for and the sha256 of the PCM. Nothing
  relies on an advisory lock; SQLite's own transactions serialize the index updates.
- Hits are counted in memory and written in batches, so a hit stays a read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import struct
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    CacheFormatMismatchError,
    CacheReadOnlyError,
    CacheVersionError,
    InputError,
)
from voiceprep.keys import BackendIdentity
from voiceprep.wav import parse_wav_header, wav_bytes

SCHEMA_VERSION = 1
INDEX_NAME = "index.sqlite"
AUDIO_DIR = "audio"
SAMPLE_WIDTH = 2  # s16le

# A temporary whose writer cannot be checked (another host) is stale after this long.
STALE_TEMP_SECONDS = 15 * 60
# An unreferenced WAV of a live writer younger than this may be a write about to commit.
ORPHAN_GRACE_SECONDS = 60
# Hits are written to the index in batches: after this many, or this many seconds.
_HIT_FLUSH_COUNT = 256
_HIT_FLUSH_SECONDS = 10.0
_BUSY_TIMEOUT_SECONDS = 10.0
# "database is locked" past SQLite's own busy timeout is retried up to this long.
_LOCKED_RETRY_SECONDS = 60.0
_SQL_CHUNK = 500
_PUBLISH_ATTEMPTS = 3  # host parameters per statement stay well under SQLite's limit

_SCHEMA = (
    """
    CREATE TABLE entries (
        key TEXT PRIMARY KEY,
        file TEXT NOT NULL,          -- path of the WAV, relative to the cache directory
        text TEXT NOT NULL,
        backend TEXT NOT NULL,
        model TEXT,
        voice TEXT,
        options TEXT NOT NULL,       -- canonical JSON of the backend options
        rate INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        duration REAL NOT NULL,      -- seconds
        size INTEGER NOT NULL,       -- bytes of the WAV file
        sha256 TEXT NOT NULL,        -- of the PCM payload (what get() returns)
        created REAL NOT NULL,       -- unix time
        last_used REAL NOT NULL,     -- unix time, updated in batches
        hits INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX entries_lru ON entries (last_used, created)",
    # Running totals, kept by triggers, so eviction never scans the table.
    """
    CREATE TABLE totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        count INTEGER NOT NULL,
        size INTEGER NOT NULL
    )
    """,
    "INSERT INTO totals (id, count, size) VALUES (0, 0, 0)",
    """
    CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
        UPDATE totals SET count = count + 1, size = size + NEW.size WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
        UPDATE totals SET count = count - 1, size = size - OLD.size WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER entries_resize AFTER UPDATE OF size ON entries BEGIN
        UPDATE totals SET size = size - OLD.size + NEW.size WHERE id = 0;
    END
    """,
)

_COLUMNS = (
    "key, file, text, backend, model, voice, options, rate, channels, duration, size, "
    "sha256, created, last_used, hits"
)

_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# Connections inherited through fork() belong to the parent: never closed by the child.
_INHERITED: list[sqlite3.Connection] = []

T = TypeVar("T")


# --- public records ------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """One cached synthesis, as recorded in the index."""

    key: str
    text: str
    backend: str
    model: str | None
    voice: str | None
    options: dict[str, Any]
    rate: int
    channels: int
    duration: float
    size: int
    sha256: str
    created: float
    last_used: float
    hits: int
    path: Path

    @property
    def identity(self) -> BackendIdentity:
        return BackendIdentity(self.backend, self.model, self.voice, dict(self.options))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the path as a string."""
        return {
            "key": self.key,
            "text": self.text,
            "backend": self.backend,
            "model": self.model,
            "voice": self.voice,
            "options": self.options,
            "rate": self.rate,
            "channels": self.channels,
            "duration": self.duration,
            "size": self.size,
            "sha256": self.sha256,
            "created": self.created,
            "last_used": self.last_used,
            "hits": self.hits,
            "path": str(self.path),
        }


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    entries: int
    bytes: int
    duration: float
    hits: int
    oldest: float | None  # created time of the oldest entry
    newest: float | None  # created time of the newest entry
    last_used: float | None
    read_only: bool
    schema_version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "entries": self.entries,
            "bytes": self.bytes,
            "duration": self.duration,
            "hits": self.hits,
            "oldest": self.oldest,
            "newest": self.newest,
            "last_used": self.last_used,
            "read_only": self.read_only,
            "schema_version": self.schema_version,
        }


@dataclass
class VerifyReport:
    """What verify() found. Damage: missing files, corrupt files, a damaged index.

    Leftovers (WAVs no row refers to, stale temporaries, once their writer is gone) waste
    space but never reach a reader; they are reported and removed by `repair`, not
    counted as damage.
    """

    checked: int = 0
    missing: list[str] = field(default_factory=list)  # keys whose file is gone
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    index_errors: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    stale_temps: list[Path] = field(default_factory=list)
    repaired: bool = False

    @property
    def damaged(self) -> bool:
        return bool(self.missing or self.corrupt or self.index_errors)

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.orphans or self.stale_temps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "missing": self.missing,
            "corrupt": [{"key": key, "reason": reason} for key, reason in self.corrupt],
            "index_errors": self.index_errors,
            "orphans": [str(p) for p in self.orphans],
            "stale_temps": [str(p) for p in self.stale_temps],
            "damaged": self.damaged,
            "repaired": self.repaired,
        }


@dataclass
class MergeReport:
    imported: int = 0
    skipped: int = 0  # keys already present
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


# --- helpers ----------------------------------------------------------------------------


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _retry_locked(action: Callable[[], T]) -> T:
    """Run `action`, retrying "database is locked" with jittered backoff for a while."""
    deadline = time.monotonic() + _LOCKED_RETRY_SECONDS
    delay = 0.002
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


def _unlink_quietly(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
        os.unlink(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _writer_tag() -> str:
    """`<host>-<pid>-<random>`: names each file a write creates, unique per write."""
    return f"{_HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _writer_of(path: Path) -> tuple[str, int] | None:
    """(host tag, pid) from a name written by `_writer_tag`, else None."""
    parts = path.name.split(".")
    host, _, rest = (parts[1] if len(parts) >= 3 else "").partition("-")
    pid_text = rest.partition("-")[0]
    return (host, int(pid_text)) if host and pid_text.isdigit() else None


def _writer_gone(path: Path) -> bool:
    """Whether the process that wrote `path` (per its name) has exited on this host."""
    writer = _writer_of(path)
    return writer is not None and writer[0] == _HOST_TAG and not _pid_alive(writer[1])


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _check_key(key: str) -> str:
    # The key names files: only a lowercase hex sha256 is accepted (no path tricks).
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise CacheError(f"{key!r}: not a cache key (expected a hex sha256)")
    return key


class _FileVanished(Exception):
    """A put's renamed file disappeared before its row was committed."""


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT; records whether the commit happened."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.committed = False

    def __enter__(self) -> sqlite3.Connection:
        _retry_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) leaves the transaction open.
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
            self.committed = True
        elif self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


class _State:
    """Connections and pending hits; kept apart from AudioCache so a finalizer can flush."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index_path = directory / INDEX_NAME
        self.lock = threading.Lock()
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.pid = os.getpid()
        self.read_only: bool | None = None  # decided when the index is first opened
        self.copy_dir: str | None = None  # private copy of an index we could not open in place
        self.pending: dict[str, list[float]] = {}  # key -> [hits, last_used]
        self.last_flush = time.monotonic()

    # connections ------------------------------------------------------------------------

    def connection(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None when there is no index and `create` is false."""
        if os.getpid() != self.pid:
            self._after_fork()
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is not None:
            return conn
        if not self.index_path.exists():
            if not create:
                return None
            self._create_directory()
        conn = self._open()
        self.local.conn = conn
        with self.lock:
            self.connections.append(conn)
        return conn

    def writable(self) -> sqlite3.Connection:
        conn = self.connection(create=True)
        assert conn is not None
        if self.read_only:
            raise CacheReadOnlyError(f"{self.directory}: cache is read-only; nothing was stored")
        return conn

    def _after_fork(self) -> None:
        # SQLite connections must not cross fork(): keep the parent's alive, never use them.
        _INHERITED.extend(self.connections)
        self.connections = []
        self.local = threading.local()
        self.lock = threading.Lock()
        self.pending = {}
        self.pid = os.getpid()

    def _create_directory(self) -> None:
        try:
            (self.directory / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheReadOnlyError(
                    f"{self.directory}: cannot create the cache here ({exc.strerror})"
                ) from exc
            raise CacheError(f"{self.directory}: cannot create the cache ({exc.strerror})") from exc

    def _open(self) -> sqlite3.Connection:
        writable = os.access(self.directory, os.W_OK) and (
            not self.index_path.exists() or os.access(self.index_path, os.W_OK)
        )
        try:
            conn = self._open_read_write() if writable else self._open_read_only()
        except sqlite3.DatabaseError as exc:
            raise _index_error(self.directory, exc) from exc
        self.read_only = not writable
        return conn

    def _open_read_write(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.index_path,
            timeout=_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._check_schema(conn, initialize=True)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        # A WAL database in a directory we cannot write: `mode=ro` works when the -shm
        # file exists; otherwise an index whose WAL is empty opens with `immutable=1`, and
        # one with committed pages still in its WAL is read from a private copy.
        uri = self.index_path.resolve().as_uri()
        conn = sqlite3.connect(
            f"{uri}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False
        )
        try:
            self._check_schema(conn, initialize=False)
            return conn
        except sqlite3.OperationalError:
            conn.close()
        wal = self.index_path.with_name(INDEX_NAME + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            with self.lock:  # one copy per AudioCache, shared by its threads
                if self.copy_dir is None:
                    copy_dir = tempfile.mkdtemp(prefix="voiceprep-index-")
                    for name in (INDEX_NAME, INDEX_NAME + "-wal"):
                        shutil.copyfile(self.directory / name, Path(copy_dir) / name)
                    self.copy_dir = copy_dir
            conn = sqlite3.connect(
                Path(self.copy_dir) / INDEX_NAME,
                timeout=_BUSY_TIMEOUT_SECONDS,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                f"{uri}?immutable=1",
                uri=True,
                timeout=_BUSY_TIMEOUT_SECONDS,
                check_same_thread=False,
            )
        try:
            self._check_schema(conn, initialize=False)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection, *, initialize: bool) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CacheVersionError(
                f"{self.directory}: the cache index has schema version {version}, written by "
                f"a newer voiceprep (this one reads version {SCHEMA_VERSION}); upgrade "
                "voiceprep or use another cache directory"
            )
        if version == SCHEMA_VERSION or not initialize:
            return
        with _Transaction(conn):
            # Another process may have initialized it while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        with contextlib.suppress(CacheError, sqlite3.Error, OSError):
            self.flush_hits()
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self.local = threading.local()
        if self.copy_dir is not None:
            shutil.rmtree(self.copy_dir, ignore_errors=True)
            self.copy_dir = None

    # hits ---------------------------------------------------------------------------

    def record_hit(self, key: str) -> None:
        now = time.time()
        with self.lock:
            slot = self.pending.setdefault(key, [0, now])
            slot[0] += 1
            slot[1] = now
            due = (
                len(self.pending) >= _HIT_FLUSH_COUNT
                or time.monotonic() - self.last_flush >= _HIT_FLUSH_SECONDS
            )
        if due:
            # Statistics only: a hit never fails because they could not be written.
            with contextlib.suppress(CacheError, sqlite3.Error, OSError):
                self.flush_hits()

    def take_pending(self) -> list[tuple[int, float, str]]:
        with self.lock:
            pending, self.pending = self.pending, {}
            self.last_flush = time.monotonic()
        return [(int(hits), last_used, key) for key, (hits, last_used) in pending.items()]

    def apply_hits(self, conn: sqlite3.Connection, rows: Sequence[tuple[int, float, str]]) -> None:
        conn.executemany(
            "UPDATE entries SET hits = hits + ?, last_used = max(last_used, ?) WHERE key = ?",
            rows,
        )

    def flush_hits(self) -> None:
        if not self.pending or os.getpid() != self.pid:
            return
        rows = self.take_pending()
        if self.read_only:
            return
        conn = self.connection(create=False)
        if conn is None or self.read_only:
            return
        with _Transaction(conn):
            self.apply_hits(conn, rows)


def _index_error(directory: Path, exc: sqlite3.Error) -> CacheError:
    """A clear CacheError for what SQLite reported."""
    message = str(exc)
    lowered = message.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return CacheReadOnlyError(f"{directory}: cache is read-only; nothing was stored")
    if "full" in lowered:
        return CacheError(f"{directory}: no space left on device; nothing was stored")
    if "malformed" in lowered or "not a database" in lowered:
        return CacheCorruptError(
            f"{directory}: the cache index is damaged ({message}); "
            f"remove {INDEX_NAME}* and {AUDIO_DIR}/ (or the directory) and warm again"
        )
    if "disk i/o" in lowered:
        return CacheError(f"{directory}: I/O error on the cache index; nothing was stored")
    if "unable to open" in lowered:
        return CacheError(f"{directory}: cannot open the cache index ({message})")
    return CacheError(f"{directory}: cache index error ({message})")


def _write_error(directory: Path, exc: OSError) -> CacheError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CacheReadOnlyError(f"{directory}: cache is read-only ({reason}); nothing was stored")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheError(f"{directory}: no space left on device; nothing was stored")
    if exc.errno == errno.EIO:
        return CacheError(f"{directory}: I/O error while writing; nothing was stored")
    return CacheError(f"{directory}: cannot write an entry ({reason}); nothing was stored")


# --- the store --------------------------------------------------------------------------


class AudioCache:
    """One cache directory: an SQLite index (WAL) plus one WAV (s16le) per entry.

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
        self._state = _State(self.directory)
        self._finalizer = weakref.finalize(self, self._state.close)

    # context manager -------------------------------------------------------------------

    def __enter__(self) -> AudioCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write pending hit counts and close the index connections."""
        self._state.close()

    def __repr__(self) -> str:
        return f"AudioCache({str(self.directory)!r})"

    @property
    def read_only(self) -> bool:
        """True when the directory or index cannot be written (decided on first use)."""
        if self._state.read_only is None:
            self._reader()
        if self._state.read_only is not None:
            return self._state.read_only
        # No index yet: read-only if the nearest existing directory cannot be written.
        existing = self.directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        return not os.access(existing, os.W_OK)

    # internals -------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection | None:
        try:
            return self._state.connection(create=False)
        except sqlite3.DatabaseError as exc:
            raise _index_error(self.directory, exc) from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._reader()
        if conn is None:
            return []
        try:
            return _retry_locked(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise _index_error(self.directory, exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[sqlite3.Connection, _Transaction]]:
        """A short write transaction; pending hits ride along for free."""
        try:
            conn = self._state.writable()
            transaction = _Transaction(conn)
            with transaction:
                rows = self._state.take_pending()
                if rows:
                    self._state.apply_hits(conn, rows)
                yield conn, transaction
        except sqlite3.DatabaseError as exc:
            raise _index_error(self.directory, exc) from exc

    def _entry(self, row: Sequence[Any]) -> CacheEntry:
        (key, file, text, backend, model, voice, options, rate, channels) = row[:9]
        (duration, size, sha256, created, last_used, hits) = row[9:]
        return CacheEntry(
            key=key,
            text=text,
            backend=backend,
            model=model,
            voice=voice,
            options=json.loads(options),
            rate=rate,
            channels=channels,
            duration=duration,
            size=size,
            sha256=sha256,
            created=created,
            last_used=last_used,
            hits=hits,
            path=self.directory / file,
        )

    def _read_pcm(self, key: str, file: str, rate: int, channels: int, sha256: str) -> bytes | None:
        """The PCM of a file, checked; None when the file is gone (evicted meanwhile)."""
        try:
            with open(self.directory / file, "rb") as handle:
                blob = handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CacheError(
                f"{self.directory / file}: cannot read ({exc.strerror or exc})"
            ) from exc
        try:
            fmt = parse_wav_header(blob)
        except (ValueError, struct.error) as exc:  # struct.error: a truncated header
            raise CacheCorruptError(
                f"{self.directory / file}: not a valid WAV ({exc}); "
                "run `voiceprep cache verify --repair`"
            ) from exc
        if (fmt.rate, fmt.channels, fmt.sample_format) != (rate, channels, "s16"):
            raise CacheCorruptError(
                f"{self.directory / file}: the file holds {fmt.rate} Hz / {fmt.channels} ch "
                f"{fmt.sample_format}, the index says {rate} Hz / {channels} ch s16"
            )
        pcm = blob[fmt.data_offset : fmt.data_offset + fmt.data_bytes]
        if hashlib.sha256(pcm).hexdigest() != sha256:
            raise CacheCorruptError(
                f"{self.directory / file}: audio does not match its recorded sha256 "
                "(altered or damaged); run `voiceprep cache verify --repair`"
            )
        return pcm

    # reads ----------------------------------------------------------------------------

    def get(self, key: str, *, rate: int, channels: int) -> bytes | None:
        """The PCM (s16le) stored under `key`, or None when it is not cached.

        Raises CacheFormatMismatchError when the entry holds another rate or channel count
        than asked for, CacheCorruptError when its audio fails the sha256 check.
        """
        rows = self._query("SELECT file, rate, channels, sha256 FROM entries WHERE key = ?", (key,))
        if not rows:
            return None
        file, stored_rate, stored_channels, sha256 = rows[0]
        if (stored_rate, stored_channels) != (rate, channels):
            raise CacheFormatMismatchError(
                f"{key[:16]}: cached at {stored_rate} Hz / {stored_channels} ch, "
                f"asked for {rate} Hz / {channels} ch"
            )
        pcm = self._read_pcm(key, file, rate, channels, sha256)
        if pcm is not None:
            self._state.record_hit(key)
        return pcm

    def contains(self, key: str) -> bool:
        """Whether `key` has a committed entry whose file is present."""
        rows = self._query("SELECT file FROM entries WHERE key = ?", (key,))
        return bool(rows) and os.path.exists(self.directory / rows[0][0])

    __contains__ = contains

    def is_intact(self, key: str) -> bool:
        """Whether `key` is cached and its file passes the checks `get` makes.

        Counts no hit: checking an entry is not a use of its audio.
        """
        entry = self.entry(key)
        if entry is None:
            return False
        try:
            pcm = self._read_pcm(key, str(entry.path), entry.rate, entry.channels, entry.sha256)
        except CacheError:
            return False
        return pcm is not None

    def __len__(self) -> int:
        rows = self._query("SELECT count FROM totals WHERE id = 0")
        return int(rows[0][0]) if rows else 0

    def entry(self, key: str) -> CacheEntry | None:
        self._flush_hits()
        rows = self._query(f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,))
        return self._entry(rows[0]) if rows else None

    def entries(self) -> list[CacheEntry]:
        """Every entry, most recently used first."""
        self._flush_hits()
        rows = self._query(f"SELECT {_COLUMNS} FROM entries ORDER BY last_used DESC, key")
        return [self._entry(row) for row in rows]

    def wav_path(self, key: str) -> Path:
        """The WAV file of a cached entry. Raises KeyError when `key` is not cached."""
        rows = self._query("SELECT file FROM entries WHERE key = ?", (key,))
        if not rows:
            raise KeyError(key)
        return self.directory / rows[0][0]

    def stats(self) -> CacheStats:
        self._flush_hits()
        rows = self._query(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(duration), 0), "
            "coalesce(sum(hits), 0), min(created), max(created), max(last_used) FROM entries"
        )
        count, size, duration, hits, oldest, newest, last_used = rows[0] if rows else (0,) * 7
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

    def _flush_hits(self) -> None:
        with contextlib.suppress(CacheError, sqlite3.Error, OSError):
            self._state.flush_hits()

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
    ) -> CacheEntry:
        """Store PCM (s16le, interleaved) under `key`, replacing any previous entry.

        Returns the new entry. With limits set, least recently used entries are evicted in
        the same transaction; an entry larger than `max_bytes` on its own is not kept.
        """
        return self._store(
            key,
            pcm,
            rate=rate,
            channels=channels,
            text=text,
            backend=identity.name,
            model=identity.model,
            voice=identity.voice,
            options=dict(identity.options),
        )

    def _store(
        self,
        key: str,
        pcm: bytes,
        *,
        rate: int,
        channels: int,
        text: str,
        backend: str,
        model: str | None,
        voice: str | None,
        options: dict[str, Any],
        created: float | None = None,
        last_used: float | None = None,
        hits: int = 0,
    ) -> CacheEntry:
        _check_key(key)
        if not pcm:
            raise CacheError(f"{text!r}: empty audio is never cached")
        if channels < 1 or rate < 1 or len(pcm) % (SAMPLE_WIDTH * channels):
            raise CacheError(
                f"{text!r}: {len(pcm)} bytes is not whole s16 frames of {channels} channel(s)"
            )
        self._state.writable()  # fail before writing any file
        options_json = json.dumps(options, sort_keys=True, ensure_ascii=False, default=str)
        blob = wav_bytes(pcm, rate=rate, channels=channels)
        now = time.time()
        template = CacheEntry(
            key=key,
            text=text,
            backend=backend,
            model=model,
            voice=voice,
            options=json.loads(options_json),
            rate=rate,
            channels=channels,
            duration=len(pcm) / (SAMPLE_WIDTH * channels * rate),
            size=len(blob),
            sha256=hashlib.sha256(pcm).hexdigest(),
            created=now if created is None else created,
            last_used=now if last_used is None else last_used,
            hits=hits,
            path=self.directory,
        )
        for _ in range(_PUBLISH_ATTEMPTS):
            relative = f"{AUDIO_DIR}/{key[:2]}/{key}.{_writer_tag()}.wav"
            entry = dataclasses.replace(template, path=self.directory / relative)
            self._write_file(entry.path, key, blob)
            if self._publish(entry, relative, options_json):
                return entry
        raise CacheError(
            f"{self.directory}: a concurrent `verify --repair` kept removing the new file; "
            "nothing was stored"
        )

    def _publish(self, entry: CacheEntry, relative: str, options_json: str) -> bool:
        """Commit the row of a file already in place; False if the file vanished first."""
        transaction: _Transaction | None = None
        doomed: list[str] = []
        try:
            with self._write() as (conn, transaction):
                if not entry.path.exists():
                    # verify(repair=True) took it for an orphan before our row existed;
                    # it deletes orphans under this same lock, so checking here is enough.
                    raise _FileVanished
                old = conn.execute(
                    "SELECT file FROM entries WHERE key = ?", (entry.key,)
                ).fetchone()
                if old is not None:
                    conn.execute("DELETE FROM entries WHERE key = ?", (entry.key,))
                    doomed.append(old[0])
                conn.execute(
                    f"INSERT INTO entries ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.key,
                        relative,
                        entry.text,
                        entry.backend,
                        entry.model,
                        entry.voice,
                        options_json,
                        entry.rate,
                        entry.channels,
                        entry.duration,
                        entry.size,
                        entry.sha256,
                        entry.created,
                        entry.last_used,
                        entry.hits,
                    ),
                )
                doomed += [row[1] for row in self._evict(conn, self.max_entries, self.max_bytes)]
        except _FileVanished:
            return False
        finally:
            if transaction is None or not transaction.committed:
                _unlink_quietly(entry.path)
        # Only now, with the commit done, may the files it stopped referencing go.
        for file in doomed:
            _unlink_quietly(self.directory / file)
        return True

    def _write_file(self, path: Path, key: str, blob: bytes) -> None:
        """Temp file in the same directory, fsync, rename: the name appears complete or not."""
        temp = path.with_name(f"{key}.{_writer_tag()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except OSError as exc:
            _unlink_quietly(temp)
            raise _write_error(self.directory, exc) from exc

    def _evict(
        self,
        conn: sqlite3.Connection,
        max_entries: int | None,
        max_bytes: int | None,
    ) -> list[tuple[Any, ...]]:
        """Delete least recently used rows until both limits hold; returns (key, file, …).

        Walks the last_used index from the oldest end, so the cost is the number of
        entries evicted, not the number cached.
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
        victims: list[tuple[Any, ...]] = []
        cursor = conn.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY last_used, created")
        for row in cursor:
            if not over():
                break
            victims.append(row)
            count -= 1
            size -= row[10]
        cursor.close()
        self._delete_rows(conn, [row[0] for row in victims])
        return victims

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = keys[start : start + _SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)

    def remove(self, keys: Iterable[str]) -> int:
        """Remove the entries of `keys` (unknown keys are ignored); returns how many went."""
        wanted = list(dict.fromkeys(keys))
        if not wanted or self._reader() is None:
            return 0
        files: list[str] = []
        with self._write() as (conn, _):
            for start in range(0, len(wanted), _SQL_CHUNK):
                chunk = wanted[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, file FROM entries WHERE key IN ({marks})", chunk
                ).fetchall()
                self._delete_rows(conn, [row[0] for row in rows])
                files += [row[1] for row in rows]
        for file in files:
            _unlink_quietly(self.directory / file)
        return len(files)

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
        if self._reader() is None:
            return []
        removed: list[tuple[Any, ...]] = []
        with self._write() as (conn, _):
            if older_than is not None:
                cutoff = time.time() - older_than
                removed = conn.execute(
                    f"SELECT {_COLUMNS} FROM entries WHERE last_used < ? "
                    "ORDER BY last_used, created",
                    (cutoff,),
                ).fetchall()
                self._delete_rows(conn, [row[0] for row in removed])
            removed += self._evict(conn, max_entries, max_bytes)
        for row in removed:
            _unlink_quietly(self.directory / row[1])
        for temp in self._scan()[1]:
            if self._temp_is_stale(temp):
                _unlink_quietly(temp)
        return [self._entry(row) for row in removed]

    def clear(self) -> int:
        """Remove every entry (and stale temporaries); returns how many entries went."""
        if self._reader() is None:
            return 0
        with self._write() as (conn, _):
            files = [row[0] for row in conn.execute("SELECT file FROM entries").fetchall()]
            conn.execute("DELETE FROM entries")
        for file in files:
            _unlink_quietly(self.directory / file)
        for temp in self._scan()[1]:
            if self._temp_is_stale(temp):
                _unlink_quietly(temp)
        return len(files)

    # verify / merge -------------------------------------------------------------------

    def _scan(self) -> tuple[list[Path], list[Path]]:
        """(WAV files, temporaries) under audio/."""
        wavs: list[Path] = []
        temps: list[Path] = []
        audio = self.directory / AUDIO_DIR
        try:
            shards = list(os.scandir(audio))
        except (FileNotFoundError, NotADirectoryError):
            return wavs, temps
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for item in os.scandir(shard.path):
                    if item.name.endswith(".tmp"):
                        temps.append(Path(item.path))
                    elif item.name.endswith(".wav"):
                        wavs.append(Path(item.path))
        return wavs, temps

    @staticmethod
    def _settled(path: Path) -> bool:
        """Whether an unreferenced WAV is a leftover rather than a write about to commit.

        Its name carries its writer (`<key>.<host>-<pid>-<random>.wav`): a leftover when
        that process is gone from this host, when the name carries no writer, or once it
        is older than ORPHAN_GRACE_SECONDS (a live writer commits within moments).
        """
        if _writer_of(path) is None or _writer_gone(path):
            return True
        return _older_than(path, ORPHAN_GRACE_SECONDS)

    @staticmethod
    def _temp_is_stale(path: Path) -> bool:
        """A temporary is stale when its writer (pid on this host) is gone, or it is old."""
        return _writer_gone(path) or _older_than(path, STALE_TEMP_SECONDS)

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check the index and every entry's file (presence, size, format, sha256).

        Also lists leftovers: WAVs no row refers to and stale temporaries. With `repair`,
        rows of missing or corrupt entries are dropped, their files and the leftovers are
        removed and the running totals recomputed. Safe while other processes use the
        cache: an entry replaced or evicted during the check is not reported.
        """
        self._flush_hits()
        report = VerifyReport()
        conn = self._reader()
        if conn is None:
            return report
        if repair:
            self._state.writable()
        rows = self._query("SELECT key, file, rate, channels, size, sha256 FROM entries")
        report.index_errors = self._index_problems()
        referenced = {row[1] for row in rows}
        for key, file, rate, channels, size, sha256 in rows:
            report.checked += 1
            problem = self._entry_problem(file, rate, channels, size, sha256)
            if problem is None or not self._still_refers(key, file):
                continue
            if problem == "missing":
                report.missing.append(key)
            else:
                report.corrupt.append((key, problem))
        wavs, temps = self._scan()
        report.orphans = sorted(
            p
            for p in wavs
            if p.relative_to(self.directory).as_posix() not in referenced and self._settled(p)
        )
        report.stale_temps = sorted(p for p in temps if self._temp_is_stale(p))
        if repair:
            self._repair(report, {row[0]: row[1] for row in rows})
        return report

    def _index_problems(self) -> list[str]:
        problems = [row[0] for row in self._query("PRAGMA quick_check")]
        problems = [] if problems == ["ok"] else problems
        totals = self._query("SELECT count, size FROM totals WHERE id = 0")
        actual = self._query("SELECT count(*), coalesce(sum(size), 0) FROM entries")
        # Writers may commit between the two reads: only a difference that persists counts.
        if totals and actual and tuple(totals[0]) != tuple(actual[0]):
            again = self._query(
                "SELECT (SELECT count FROM totals WHERE id = 0) - count(*), "
                "(SELECT size FROM totals WHERE id = 0) - coalesce(sum(size), 0) FROM entries"
            )
            if again and tuple(again[0]) != (0, 0):
                problems.append(f"running totals off by {again[0][0]} entries, {again[0][1]} bytes")
        return problems

    def _entry_problem(
        self, file: str, rate: int, channels: int, size: int, sha256: str
    ) -> str | None:
        path = self.directory / file
        try:
            actual = path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        if actual != size:
            return f"size {actual} bytes, recorded {size}"
        try:
            pcm = self._read_pcm("", file, rate, channels, sha256)
        except CacheCorruptError as exc:
            return str(exc).split(": ", 1)[-1]
        return "missing" if pcm is None else None

    def _still_refers(self, key: str, file: str) -> bool:
        return bool(self._query("SELECT 1 FROM entries WHERE key = ? AND file = ?", (key, file)))

    def _repair(self, report: VerifyReport, files_by_key: dict[str, str]) -> None:
        bad = report.missing + [key for key, _ in report.corrupt]
        with self._write() as (conn, _):
            for key in bad:
                conn.execute(
                    "DELETE FROM entries WHERE key = ? AND file = ?", (key, files_by_key[key])
                )
            conn.execute(
                "UPDATE totals SET count = (SELECT count(*) FROM entries), "
                "size = (SELECT coalesce(sum(size), 0) FROM entries) WHERE id = 0"
            )
            # Orphans go while we hold the write lock, after checking again that no row
            # refers to them: a put that renamed its file but has not committed yet checks,
            # under the same lock, that its file still exists.
            for orphan in report.orphans:
                relative = orphan.relative_to(self.directory).as_posix()
                if conn.execute("SELECT 1 FROM entries WHERE file = ?", (relative,)).fetchone():
                    continue
                _unlink_quietly(orphan)
        for key, _ in report.corrupt:
            _unlink_quietly(self.directory / files_by_key[key])
        for temp in report.stale_temps:
            _unlink_quietly(temp)
        report.repaired = True

    def merge(self, source_dir: str | os.PathLike[str]) -> MergeReport:
        """Import the entries of another cache directory; keys present here are skipped.

        Entries keep their metadata (text, identity, created, last used, hits). Source
        entries that are missing or fail their checks are reported, never imported.
        """
        source_path = Path(source_dir).expanduser().absolute()
        if not (source_path / INDEX_NAME).is_file():
            raise InputError(f"{source_path}: not a voiceprep cache (no {INDEX_NAME})")
        if source_path.resolve() == self.directory.resolve():
            raise InputError(f"{source_path}: cannot merge a cache into itself")
        report = MergeReport()
        with AudioCache(source_path) as source:
            for item in source.entries():
                if self._has_row(item.key):
                    report.skipped += 1
                    continue
                try:
                    rows = source._query(
                        "SELECT file, sha256 FROM entries WHERE key = ?", (item.key,)
                    )
                    pcm = (
                        source._read_pcm(item.key, rows[0][0], item.rate, item.channels, rows[0][1])
                        if rows
                        else None
                    )
                except CacheCorruptError as exc:
                    report.failed.append((item.key, str(exc)))
                    continue
                if pcm is None:
                    report.failed.append((item.key, f"{item.path}: file missing"))
                    continue
                self._store(
                    item.key,
                    pcm,
                    rate=item.rate,
                    channels=item.channels,
                    text=item.text,
                    backend=item.backend,
                    model=item.model,
                    voice=item.voice,
                    options=item.options,
                    created=item.created,
                    last_used=item.last_used,
                    hits=item.hits,
                )
                report.imported += 1
        return report

    def _has_row(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM entries WHERE key = ?", (key,)))
