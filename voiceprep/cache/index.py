"""The index: SQLite connections, fork and read-only handling, schema and migrations,
transactions that delete files only after they commit, and SQLite errors made clear.

One SQLite file in WAL mode (`synchronous=NORMAL`); a connection per thread, opened
again after fork(); rows read as `sqlite3.Row`; errors classified by `sqlite_errorcode`.
A new index is built in a temporary file and linked into place, so an index file is
never seen half-created: a 0-byte or foreign index is damage, never "an empty cache".
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from voiceprep.cache import faults
from voiceprep.cache.entries import AUDIO_DIR, EntryFiles, unlink_quietly, writer_tag
from voiceprep.errors import CacheError, CacheIndexError, CacheReadOnlyError, CacheVersionError

SCHEMA_VERSION = 2
INDEX_NAME = "index.sqlite"
REPAIR_HINT = "run `voiceprep cache verify --repair` to rebuild it from the audio files"

# Hits are written to the index in batches: after this many, or this many seconds.
HIT_FLUSH_COUNT = 256
HIT_FLUSH_SECONDS = 10.0
_BUSY_TIMEOUT_SECONDS = 10.0
# "database is locked" past SQLite's own busy timeout is retried up to this long.
_LOCKED_RETRY_SECONDS = 60.0
SQL_CHUNK = 500  # host parameters per statement stay well under SQLite's limit

_ENTRIES = """
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
        hits INTEGER NOT NULL DEFAULT 0,
        loudness REAL                -- integrated LUFS, NULL when unknown (schema 2)
    )
"""
_LEASES = """
    CREATE TABLE leases (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,         -- <host>-<pid> of the writer synthesizing the key
        expires REAL NOT NULL        -- unix time; a lapsed lease may be taken over
    )
"""
_SCHEMA = (
    _ENTRIES,
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
    _LEASES,
)
# MIGRATIONS[v]: the statements that take an index from version v to v + 1.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE entries ADD COLUMN loudness REAL", _LEASES),
}

_BASE_COLUMNS = (
    "key, file, text, backend, model, voice, options, rate, channels, duration, size, "
    "sha256, created, last_used, hits"
)
COLUMNS = _BASE_COLUMNS + ", loudness"
# Connections inherited through fork() belong to the parent: never closed by the child.
_INHERITED: list[sqlite3.Connection] = []

T = TypeVar("T")


# --- errors ------------------------------------------------------------------------------


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_locked(exc: sqlite3.Error) -> bool:
    code = _code(exc)
    if code is not None:
        return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc).lower()  # raised by the sqlite3 module itself


def is_damage(exc: sqlite3.Error) -> bool:
    return _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def is_unwritable(exc: sqlite3.Error) -> bool:
    """SQLite cannot write here: read-only, full, an I/O error (its -shm file), cannot open."""
    return _code(exc) in (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
    )


def _unwritable_reason(exc: sqlite3.Error) -> str:
    extended = getattr(exc, "sqlite_errorcode", None)
    if extended in (
        sqlite3.SQLITE_IOERR_SHMOPEN,
        sqlite3.SQLITE_IOERR_SHMSIZE,
        sqlite3.SQLITE_IOERR_SHMMAP,
    ):
        return f"SQLite cannot create {INDEX_NAME}-shm: the disk is full or not writable"
    code = _code(exc)
    if code == sqlite3.SQLITE_FULL:
        return "no space left on device"
    if code == sqlite3.SQLITE_READONLY:
        return "read-only"
    return str(exc)


def damaged_index(directory: Path, reason: str) -> CacheIndexError:
    return CacheIndexError(
        f"{directory}: the cache index is damaged ({reason}); {REPAIR_HINT} "
        "(the damaged index is kept beside it)"
    )


def index_error(directory: Path, exc: sqlite3.Error) -> CacheError:
    """A clear CacheError for what SQLite reported."""
    code = _code(exc)
    if code == sqlite3.SQLITE_READONLY:
        return CacheReadOnlyError(f"{directory}: cache is read-only; nothing was stored")
    if code == sqlite3.SQLITE_FULL:
        return CacheError(f"{directory}: no space left on device; nothing was stored")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return damaged_index(directory, str(exc))
    if code == sqlite3.SQLITE_IOERR:
        return CacheError(f"{directory}: I/O error on the cache index; nothing was stored")
    if code == sqlite3.SQLITE_CANTOPEN:
        return CacheError(f"{directory}: cannot open the cache index ({exc})")
    return CacheError(f"{directory}: cache index error ({exc})")


def retry_locked(action: Callable[[], T]) -> T:
    """Run `action`, retrying "database is locked" with jittered backoff for a while."""
    deadline = time.monotonic() + _LOCKED_RETRY_SECONDS
    delay = 0.002
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.2)


# --- transactions -------------------------------------------------------------------------


class Transaction:
    """BEGIN IMMEDIATE … COMMIT. Files handed to `delete_after_commit` are deleted only
    once the commit happened; callbacks given to `on_rollback` run when it did not.

    A doomed file is renamed to `<name>.del` at once, under the write lock, so a repair
    (which indexes entry files no row refers to, under the same lock) never takes it for
    an entry the index lost; it is unlinked after the commit, renamed back on rollback.
    Readers holding an older snapshot then find it gone: a miss, as after a deletion.
    """

    def __init__(self, conn: sqlite3.Connection, files: EntryFiles | None = None) -> None:
        self.conn = conn
        self.files = files
        self.committed = False
        self._doomed: list[tuple[Path, Path]] = []  # (doomed name, original name)
        self._undo: list[Callable[[], object]] = []

    def delete_after_commit(self, key: str, relative: str) -> None:
        if self.files is None:
            return
        doomed = self.files.doom(key, relative)
        if doomed is not None:
            self._doomed.append((doomed, self.files.directory / relative))
            faults.reached("doomed")

    def on_rollback(self, action: Callable[[], object]) -> None:
        self._undo.append(action)

    def __enter__(self) -> Transaction:
        retry_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
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
        finally:
            if self.committed:
                # Only now, with the commit done, may the files it stopped referencing go.
                if self._doomed:
                    faults.reached("committed")
                for doomed, _ in self._doomed:
                    unlink_quietly(doomed)
            else:
                for doomed, original in self._doomed:
                    with contextlib.suppress(OSError):
                        os.rename(doomed, original)
                for action in self._undo:
                    with contextlib.suppress(OSError):
                        action()


# --- the index -------------------------------------------------------------------------


class Index:
    """Connections and pending hits of one cache directory's index."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / INDEX_NAME
        self.files = EntryFiles(directory)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.pid = os.getpid()
        self.read_only: bool | None = None  # decided when the index is first opened
        self.read_only_reason = "cache is read-only"
        self.version = SCHEMA_VERSION  # of the index as opened (lower until migrated)
        self.copy_dir: str | None = None  # private copy of an index we could not open in place
        self.pending: dict[str, list[float]] = {}  # key -> [hits, last_used]
        self.last_flush = time.monotonic()

    @property
    def columns(self) -> str:
        """The entry columns to select, whatever the version of the index as opened."""
        self.reader()  # the version is known once the index is open
        return COLUMNS if self.version >= 2 else _BASE_COLUMNS + ", NULL AS loudness"

    # connections ------------------------------------------------------------------------

    def connection(self, *, create: bool) -> sqlite3.Connection | None:
        """This thread's connection; None when there is no index and `create` is false."""
        if os.getpid() != self.pid:
            self._after_fork()
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is not None:
            return conn
        try:
            size = self.path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            if not create:
                return None
            self._create()  # raises a clear CacheError when the directory cannot be made
        else:
            if size == 0:
                raise damaged_index(self.directory, f"{INDEX_NAME} is empty, 0 bytes")
        conn = self._open()
        self.local.conn = conn
        with self.lock:
            self.connections.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection | None:
        try:
            return self.connection(create=False)
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    def check_replaceable(self) -> None:
        """Before replacing the index (rebuild): the directory is writable and the index is
        not a newer voiceprep's (a damaged one is fine: it is moved aside)."""
        if os.path.isdir(self.directory) and not os.access(self.directory, os.W_OK):
            raise CacheReadOnlyError(f"{self.directory}: cache is read-only; nothing was changed")
        with contextlib.suppress(CacheIndexError):
            self.reader()

    def writable(self) -> sqlite3.Connection:
        """A connection that may write: the index exists at the current schema version."""
        try:
            conn = self.connection(create=True)
            assert conn is not None
            if self.read_only:
                raise CacheReadOnlyError(
                    f"{self.directory}: {self.read_only_reason}; nothing was stored"
                )
            if self.version < SCHEMA_VERSION:
                self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc
        return conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = self.reader()
        if conn is None:
            return []
        try:
            return retry_locked(lambda: conn.execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[tuple[sqlite3.Connection, Transaction]]:
        """A short write transaction; pending hits ride along for free."""
        try:
            conn = self.writable()
            transaction = Transaction(conn, self.files)
            with transaction:
                rows = self.take_pending()
                if rows:
                    self.apply_hits(conn, rows)
                yield conn, transaction
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc

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

    def _create(self) -> None:
        """Build an empty index in a temporary file and link it into place (never replacing)."""
        self._create_directory()
        temp = self.directory / f"{INDEX_NAME}.{writer_tag()}.tmp"
        try:
            create_index_file(temp)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if not self.path.exists():  # a filesystem without hard links
                    os.rename(temp, self.path)
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc
        except OSError as exc:
            from voiceprep.cache.entries import write_error

            raise write_error(self.directory, exc) from exc
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                unlink_quietly(f"{temp}{suffix}")

    def _open(self) -> sqlite3.Connection:
        writable = os.access(self.directory, os.W_OK) and os.access(self.path, os.W_OK)
        try:
            if writable:
                try:
                    conn = self._open_read_write()
                except sqlite3.OperationalError as exc:
                    if not is_unwritable(exc) or is_damage(exc):
                        raise
                    # A nearly full disk (SQLite cannot create its -shm file), an I/O error:
                    # reads still work through a read-only connection.
                    conn = self._open_read_only()
                    self.read_only_reason = (
                        f"cannot write the cache index ({_unwritable_reason(exc)}); "
                        "reads work, writes do not"
                    )
                    writable = False
            else:
                conn = self._open_read_only()
        except sqlite3.DatabaseError as exc:
            raise index_error(self.directory, exc) from exc
        self.read_only = not writable
        return conn

    def _connect(self, target: str | Path, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False, **kwargs
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _open_read_write(self) -> sqlite3.Connection:
        conn = self._connect(self.path, isolation_level=None)
        try:
            retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous=NORMAL")
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        # A WAL database in a directory we cannot write: `mode=ro` works when the -shm
        # file exists; otherwise an index whose WAL is empty opens with `immutable=1`, and
        # one with committed pages still in its WAL is read from a private copy.
        uri = self.path.resolve().as_uri()
        conn = self._connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        try:
            self._check_schema(conn)
            return conn
        except sqlite3.OperationalError:
            conn.close()
        wal = self.path.with_name(INDEX_NAME + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            with self.lock:  # one copy per AudioCache, shared by its threads
                if self.copy_dir is None:
                    copy_dir = tempfile.mkdtemp(prefix="voiceprep-index-")
                    for name in (INDEX_NAME, INDEX_NAME + "-wal"):
                        shutil.copyfile(self.directory / name, Path(copy_dir) / name)
                    self.copy_dir = copy_dir
            conn = self._connect(Path(self.copy_dir) / INDEX_NAME, isolation_level=None)
        else:
            conn = self._connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        try:
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CacheVersionError(
                f"{self.directory}: the cache index has schema version {version}, written by "
                f"a newer voiceprep (this one reads version {SCHEMA_VERSION}); upgrade "
                "voiceprep or use another cache directory"
            )
        if version < 1:
            raise damaged_index(self.directory, f"{INDEX_NAME} holds no voiceprep index")
        self.version = min(self.version, version)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older index to SCHEMA_VERSION (only ever when something is written)."""
        with Transaction(conn):
            # Another process may have migrated it while we waited for the lock.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.version = SCHEMA_VERSION

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
                len(self.pending) >= HIT_FLUSH_COUNT
                or time.monotonic() - self.last_flush >= HIT_FLUSH_SECONDS
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
        with Transaction(conn):
            self.apply_hits(conn, rows)

    def quiet_flush(self) -> None:
        with contextlib.suppress(CacheError, sqlite3.Error, OSError):
            self.flush_hits()


def create_index_file(path: Path) -> None:
    """An empty index at the current schema version, in WAL mode, at `path` (closed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        with Transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    finally:
        conn.close()


def in_chunks(keys: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """`keys` in chunks of SQL_CHUNK, each with its `?,?,…` for `key IN (…)`."""
    for start in range(0, len(keys), SQL_CHUNK):
        chunk = keys[start : start + SQL_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def select_rows(conn: sqlite3.Connection, columns: str, keys: Sequence[str]) -> list[sqlite3.Row]:
    """`columns` of the rows of `keys`."""
    rows: list[sqlite3.Row] = []
    for chunk, marks in in_chunks(keys):
        sql = f"SELECT {columns} FROM entries WHERE key IN ({marks})"
        rows += conn.execute(sql, chunk).fetchall()
    return rows


def delete_rows(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    for chunk, marks in in_chunks(keys):
        conn.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)
